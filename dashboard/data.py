"""Read searches and trials straight from Optuna's tables with read-only SQL.

Why not Optuna's API: ``study.get_trials`` builds a FrozenTrial per trial with every attribute, which takes
seconds for a few thousand trials, and ``optuna.load_study`` may write (schema bookkeeping). A dashboard that
writes to a SQLite file can make a running search fail with "database is locked". So the dashboard opens SQLite
files with ``mode=ro`` (the driver refuses any write), sets ``PRAGMA query_only``, asks PostgreSQL/MySQL for
read-only transactions, and reads a whole search in three set-based queries. The attribute names and their
meaning are autopeft's own (``autopeft.store.storage``), so the dashboard shows exactly what the controller recorded.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from autopeft.objectives import MEASUREMENTS
from autopeft.results.noise import assess
from autopeft.results.views import PROBE_STOPPED, describe_config, layer_ranges, probe_stopped
from autopeft.spec import SearchSpec, normalise_storage_url, parse_spec
from autopeft.store import storage
from autopeft.store.storage import TrialRecord

# A trial marked with this user attribute is a reference point, not a proposal (as storage.is_reference reads it:
# a search may draw full fine-tuning itself, and such a trial is one of its own)
BASELINE = "baseline"

# Attributes read for every trial; the loss curve is read only for the one trial being looked at.
_LIST_ATTRS = (storage.CONFIG, storage.MEASUREMENTS, storage.FAIL_REASON, storage.ADAPTER_DIR, storage.WORKER,
               storage.REJECTED, storage.INTERRUPTED, storage.DUPLICATE, storage.RETRY_OF, storage.VIOLATIONS,
               BASELINE, storage.PROBE, storage.WARM_START, storage.FINISHES)
_STUDY_ATTRS = (storage.SPEC, storage.CONTROLLER, storage.FINISHED, storage.PROBE, storage.DATA_NOTES)
# A searched trial, in SQL over a trials table aliased ``t``: not a baseline nor a probe run (storage.is_reference),
# so the searches page counts and scores what `autopeft search list` does
_SEARCHED = ("NOT EXISTS (SELECT 1 FROM trial_user_attributes r WHERE r.trial_id = t.trial_id "
             f"AND r.key IN ('{BASELINE}', '{storage.PROBE}'))")
_JOINED = storage.JOINED  # prefix of the study attributes of controllers that joined a running search
_OPTION_COLUMNS = {"r": "rank", "bottleneck": "bottleneck", "prefix_length": "prefix_length",
                   "sparsity": "sparsity", "bits": "bits"}


class StorageUnavailable(RuntimeError):
    """The database cannot be read (missing file, unreachable server, not an autopeft database)."""


def read_only_url(url: str) -> str:
    """The URL the dashboard connects with: SQLite files are opened read-only through a file: URI."""
    url = normalise_storage_url(url)
    prefix = "sqlite:///"
    if url.startswith(prefix) and url != prefix + ":memory:":
        path = url.removeprefix(prefix).split("?", 1)[0]
        if not Path(path).is_file():
            raise StorageUnavailable(f"no database file at {path}")
        return f"sqlite:///file:{quote(path)}?mode=ro&uri=true"
    return url


@lru_cache(maxsize=8)
def engine_for(url: str) -> Engine:
    """One pooled read-only engine per storage URL for the life of the dashboard process."""
    ro_url = read_only_url(url)
    if ro_url.startswith("sqlite"):
        # Short busy timeout: a reader waits briefly for a committing writer, never the other way round.
        engine = sa.create_engine(ro_url, connect_args={"timeout": 5, "check_same_thread": False})

        @sa.event.listens_for(engine, "connect")
        def _query_only(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.execute("PRAGMA query_only = ON")

        return engine
    if ro_url.startswith("postgresql"):
        return sa.create_engine(ro_url, connect_args={"options": "-c default_transaction_read_only=on"},
                                pool_pre_ping=True)
    return sa.create_engine(ro_url, pool_pre_ping=True, execution_options={"isolation_level": "READ COMMITTED"})


def _query(url: str, sql: str, **params: Any) -> list[sa.Row]:
    try:
        with engine_for(url).connect() as conn:
            rows = list(conn.execute(sa.text(sql), params))
            conn.rollback()
            return rows
    except sa.exc.OperationalError as exc:
        raise StorageUnavailable(f"cannot read {url}: {exc.orig}") from None


def _json(value: str | None) -> Any:
    return None if value is None else json.loads(value)


@dataclass
class Search:
    """One search as the searches page lists it."""

    name: str
    study_id: int
    spec: SearchSpec | None
    state: str
    counts: dict[str, int]
    best: float | None
    elapsed_s: float | None
    started: pd.Timestamp | None
    probe: dict[str, Any] | None = None  # the learnability probe's decision (autopeft/search/probe.py), if it ran
    data_notes: list[str] = field(default_factory=list)  # what reading the data noted (storage.DATA_NOTES)


def _controller_state(attrs: dict[str, Any]) -> str:
    """As `autopeft search list` says it, counting controllers that joined the search too."""
    if attrs.get(storage.FINISHED):
        return "finished"
    owners = [v for k, v in attrs.items() if (k == storage.CONTROLLER or k.startswith(_JOINED)) and v]
    if not owners:
        return "stopped"
    # Another machine's controller cannot be checked from here, so it counts as alive (as storage does).
    alive = any(o.get("host") != socket.gethostname() or storage._alive(int(o["pid"])) for o in owners)
    return "running" if alive else "interrupted"


def list_searches(url: str) -> list[Search]:
    """Every search in the database with its state, trial counts by state, best task metric and elapsed time, all
    of its searched trials (baselines and probe runs are reference points, not the search's results)."""
    studies = _query(url, "SELECT study_id, study_name FROM studies ORDER BY study_id")
    attrs: dict[int, dict[str, Any]] = {}
    for sid, key, value in _query(url, "SELECT study_id, key, value_json FROM study_user_attributes "
                                       f"WHERE key IN {_in(_STUDY_ATTRS)} OR key LIKE '{_JOINED}%'"):
        attrs.setdefault(sid, {})[key] = _json(value)
    counts: dict[int, dict[str, int]] = {}
    for sid, state, n in _query(url, f"SELECT study_id, state, COUNT(*) FROM trials t WHERE {_SEARCHED} "
                                     "GROUP BY study_id, state"):
        counts.setdefault(sid, {})[_state_name(state)] = n
    # Rejected, interrupted and duplicate trials are counted apart from the state they were told Optuna as
    # (rejections FAIL, or PRUNED when infeasible before training; duplicates their twin's state).
    for sid, key, state, n in _query(url, "SELECT t.study_id, a.key, t.state, COUNT(*) FROM trial_user_attributes a "
                                          "JOIN trials t ON t.trial_id = a.trial_id WHERE a.key IN ('rejected', "
                                          "'interrupted', 'duplicate') AND a.value_json = 'true' "
                                          "GROUP BY t.study_id, a.key, t.state"):
        by_state = counts.setdefault(sid, {})
        by_state[key.upper()] = by_state.get(key.upper(), 0) + n
        told_as = _state_name(state)
        by_state[told_as] = by_state.get(told_as, 0) - n
    times = {sid: (start, end) for sid, start, end in _query(
        url, f"SELECT study_id, MIN(datetime_start), MAX(datetime_complete) FROM trials t WHERE {_SEARCHED} "
             "GROUP BY study_id")}
    extremes: dict[tuple[int, int], tuple[float, float]] = {
        (sid, obj): (lo, hi) for sid, obj, lo, hi in _query(
            url, "SELECT t.study_id, v.objective, MIN(v.value), MAX(v.value) FROM trial_values v "
                 f"JOIN trials t ON t.trial_id = v.trial_id WHERE t.state = 'COMPLETE' AND {_SEARCHED} "
                 "GROUP BY t.study_id, v.objective")}
    searches = []
    for sid, name in studies:
        study_attrs = attrs.get(sid, {})
        spec = _parse(study_attrs.get(storage.SPEC), name)
        best = None
        if spec is not None and spec.task_metric in spec.objective_names:
            index = spec.objective_names.index(spec.task_metric)
            lo_hi = extremes.get((sid, index))
            if lo_hi is not None:
                best = lo_hi[1] if spec.objectives[index].resolved_direction == "maximize" else lo_hi[0]
        start, end = times.get(sid, (None, None))
        start_ts = pd.Timestamp(start) if start else None
        elapsed = (pd.Timestamp(end) - start_ts).total_seconds() if start and end else None
        searches.append(Search(name, sid, spec, _controller_state(study_attrs), counts.get(sid, {}), best, elapsed,
                               start_ts, study_attrs.get(storage.PROBE), study_attrs.get(storage.DATA_NOTES) or []))
    return searches


def searches_frame(searches: list[Search]) -> pd.DataFrame:
    """The searches page's table."""
    rows = []
    for s in searches:
        metric = s.spec.task_metric if s.spec else ""
        rows.append({
            "search": s.name, "state": s.state,
            "done": s.counts.get("COMPLETE", 0) + s.counts.get("FAIL", 0) + s.counts.get("PRUNED", 0),
            "budget": s.spec.budget.trials if s.spec else None,
            "complete": s.counts.get("COMPLETE", 0), "running": s.counts.get("RUNNING", 0),
            "failed": s.counts.get("FAIL", 0), "pruned": s.counts.get("PRUNED", 0),
            "rejected": s.counts.get("REJECTED", 0), "interrupted": s.counts.get("INTERRUPTED", 0),
            "duplicates": s.counts.get("DUPLICATE", 0),
            "metric": metric, "best": s.best,
            "elapsed_min": None if s.elapsed_s is None else round(s.elapsed_s / 60, 2),
            "started": s.started,
            "fidelity": _fidelity(s.probe, s.spec),
        })
    return pd.DataFrame(rows)


def _fidelity(probe: dict[str, Any] | None, spec: SearchSpec | None) -> str | None:
    """The searches page's word on the training budget: the probe's verdict where it ran, else the steps given."""
    if probe:
        return PROBE_STOPPED if probe_stopped(probe) else f"{probe['chosen']} steps (probe)"
    steps = spec.budget.steps_per_trial if spec else None
    return None if steps is None else f"{steps} steps"


def _parse(raw: Any, name: str) -> SearchSpec | None:
    if raw is None:
        return None
    try:
        return parse_spec(raw, f"stored spec of {name}", stored=True)
    except Exception:  # a search written by a different autopeft version: list it, do not crash the page
        return None


def _in(values: tuple[str, ...]) -> str:
    return "(" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + ")"


def _state_name(state: Any) -> str:
    return getattr(state, "name", str(state))


def revision(url: str, name: str) -> tuple:
    """A fingerprint of everything the views show of one search, read in one cheap query: it changes whenever a
    trial is added or changes state, reports a rung, gains a value or an attribute, or the search's own
    attributes change.

    Why: a live view redraws every few seconds, and rebuilding its tables, noise tests and figures cost about a
    CPU-second each time on a 2-core machine, a third of a core taken from the search being watched while nothing
    had changed. Caches keyed by this fingerprint rebuild only when the database did change. Lengths as well as
    counts, because an attribute written again in place keeps its row."""
    rows = _query(url, """
        SELECT s.study_id,
               (SELECT COUNT(*) FROM trials t WHERE t.study_id = s.study_id),
               (SELECT COUNT(*) FROM trials t WHERE t.study_id = s.study_id AND t.state = 'RUNNING'),
               (SELECT COUNT(*) FROM trials t WHERE t.study_id = s.study_id AND t.state = 'WAITING'),
               (SELECT MAX(t.datetime_complete) FROM trials t WHERE t.study_id = s.study_id),
               (SELECT MAX(t.datetime_start) FROM trials t WHERE t.study_id = s.study_id),
               (SELECT COUNT(*) FROM trial_values v JOIN trials t ON t.trial_id = v.trial_id
                 WHERE t.study_id = s.study_id),
               (SELECT COUNT(*) FROM trial_intermediate_values v JOIN trials t ON t.trial_id = v.trial_id
                 WHERE t.study_id = s.study_id),
               (SELECT COUNT(*) FROM trial_user_attributes a JOIN trials t ON t.trial_id = a.trial_id
                 WHERE t.study_id = s.study_id),
               (SELECT SUM(LENGTH(a.value_json)) FROM trial_user_attributes a JOIN trials t ON t.trial_id = a.trial_id
                 WHERE t.study_id = s.study_id),
               (SELECT SUM(LENGTH(a.value_json)) FROM study_user_attributes a WHERE a.study_id = s.study_id)
        FROM studies s WHERE s.study_name = :name""", name=name)
    return tuple(str(value) for value in rows[0]) if rows else ()


def load_trials(url: str, name: str) -> tuple[pd.DataFrame, SearchSpec]:
    """All trials of one search, one row each: state, timing, configuration summary, every measurement."""
    found = _query(url, "SELECT study_id FROM studies WHERE study_name = :name", name=name)
    if not found:
        raise StorageUnavailable(f"no search named {name!r} in {url}")
    sid = found[0][0]
    raw_spec = _query(url, "SELECT value_json FROM study_user_attributes WHERE study_id = :sid AND key = :key",
                      sid=sid, key=storage.SPEC)
    spec = _parse(_json(raw_spec[0][0]) if raw_spec else None, name)
    if spec is None:
        raise StorageUnavailable(f"search {name!r} has no readable autopeft spec")
    trials = _query(url, "SELECT trial_id, number, state, datetime_start, datetime_complete FROM trials "
                         "WHERE study_id = :sid ORDER BY number", sid=sid)
    values: dict[int, dict[int, float]] = {}
    for tid, objective, value, value_type in _query(
            url, "SELECT v.trial_id, v.objective, v.value, v.value_type FROM trial_values v "
                 "JOIN trials t ON t.trial_id = v.trial_id WHERE t.study_id = :sid", sid=sid):
        kind = _state_name(value_type)
        values.setdefault(tid, {})[objective] = value if kind == "FINITE" else (
            float("inf") if kind == "INF_POS" else float("-inf"))
    attrs: dict[int, dict[str, Any]] = {}
    for tid, key, value in _query(
            url, "SELECT a.trial_id, a.key, a.value_json FROM trial_user_attributes a JOIN trials t "
                 f"ON t.trial_id = a.trial_id WHERE t.study_id = :sid AND a.key IN {_in(_LIST_ATTRS)}", sid=sid):
        attrs.setdefault(tid, {})[key] = _json(value)
    rows = [_trial_row(tid, number, _state_name(state), start, end, values.get(tid, {}), attrs.get(tid, {}), spec)
            for tid, number, state, start, end in trials]
    frame = pd.DataFrame(rows, columns=trial_columns(spec))
    for column in ("start", "complete"):
        frame[column] = pd.to_datetime(frame[column])
    return frame, spec


def chance_metrics(url: str, name: str) -> dict[str, float]:
    """The search's chance level per task metric (autopeft/results/chance.py); empty for a search stored without one."""
    return _stored_metrics(url, name, storage.CHANCE)


def label_names(url: str, name: str) -> list[str]:
    """The head's labels in order, as the search stored them (empty for regression and decoders)."""
    stored = _study_attr(url, name, storage.LABELS)
    return [str(label) for label in stored] if isinstance(stored, list) else []


def untouched_metrics(url: str, name: str) -> dict[str, float]:
    """A decoder search's base model evaluated as loaded, no adapter (autopeft/results/untouched_model.py): its metrics;
    empty for other searches."""
    return _stored_metrics(url, name, storage.UNTOUCHED)


def _study_attr(url: str, name: str, key: str) -> Any:
    """The study attribute ``key`` of search ``name``, or None."""
    found = _query(url, "SELECT a.value_json FROM study_user_attributes a JOIN studies s ON s.study_id = a.study_id "
                        "WHERE s.study_name = :name AND a.key = :key", name=name, key=key)
    return _json(found[0][0]) if found else None


def _stored_metrics(url: str, name: str, key: str) -> dict[str, float]:
    """The ``metrics`` of the study attribute ``key`` (a reference level the front is drawn against)."""
    stored = _study_attr(url, name, key)
    return dict(stored.get("metrics", {})) if isinstance(stored, dict) else {}


def noise_report(url: str, name: str, trials: pd.DataFrame, spec: SearchSpec) -> dict[str, Any] | None:
    """The search's front against chance (autopeft/results/noise.py), as ``autopeft search show`` reports it; None for a
    search stored without a chance level. Reads the study's chance level, gold values, confirmations and untouched
    model's evaluation (a decoder's) and the
    stored predictions of the trials that can be on the front or are baselines."""
    study_attrs = {key: _json(value) for key, value in _query(
        url, "SELECT a.key, a.value_json FROM study_user_attributes a JOIN studies s ON s.study_id = a.study_id "
             "WHERE s.study_name = :name AND (a.key IN (:chance, :targets, :untouched) OR a.key LIKE :confirmed)",
        name=name, chance=storage.CHANCE, targets=storage.EVAL_TARGETS, untouched=storage.UNTOUCHED,
        confirmed=f"{storage.CONFIRMATION}%")}
    if storage.CHANCE not in study_attrs:
        return None
    complete = trials[trials["state"] == "COMPLETE"]
    predictions = {}
    if len(complete):
        ids = ",".join(str(int(t)) for t in complete["trial_id"])
        predictions = {tid: _json(value) for tid, value in _query(
            url, f"SELECT trial_id, value_json FROM trial_user_attributes WHERE key = :key AND trial_id IN ({ids})",
            key=storage.PREDICTIONS)}
    records = [TrialRecord(number=int(row.number), state=row.state, config=json.loads(row.config),
                           values={n: getattr(row, n) for n in spec.objective_names},
                           measurements={m: getattr(row, m) for m in MEASUREMENTS if pd.notna(getattr(row, m))},
                           fail_reason=None, adapter_dir=row.adapter_dir, feasible=bool(row.feasible),
                           baseline="baseline" if row.baseline else None,
                           probe={"steps": 0} if row.probe else None,
                           predictions=predictions.get(int(row.trial_id)),
                           confirmation=study_attrs.get(f"{storage.CONFIRMATION}{int(row.number)}"))
               for row in complete.itertuples(index=False)
               if all(pd.notna(getattr(row, n)) for n in spec.objective_names)]
    report = assess(study_attrs, records, spec)
    return None if report is None else report.to_json()


def trial_columns(spec: SearchSpec) -> list[str]:
    return ["trial_id", "number", "state", "start", "complete", "duration_s", "method", "configuration", "layers",
            "n_layers", "modules", *_OPTION_COLUMNS.values(), "size", "learning_rate", *MEASUREMENTS,
            "feasible", "baseline", "probe", "fail_reason", "worker", "adapter_dir", "retry_of", "finishes",
            "warm_start", "execution", "config"]


def _execution(execution: dict[str, Any] | None) -> str:
    """How the worker ran a trial, in words: "bf16 training, head on the tokens' mean, layers 0-3 cached (2,400
    examples reused), rivals at rungs: 5 at step 62, 3 at step 125" (the rivals are the other trials' points its
    early stopping judged by)."""
    if not execution:
        return ""
    words = [f"{execution.get('precision', 'fp32')} training"]
    if execution.get("pooling") == "mean":
        words.append("head on the tokens' mean")
    if execution.get("frozen_layers"):
        words.append(f"layers 0-{execution['frozen_layers'] - 1} cached "
                     f"({execution.get('cached_examples_reused', 0):,} examples reused)")
    rivals = sorted((int(step), count) for step, count in execution.get("rung_rivals", {}).items())
    if rivals:
        words.append("rivals at rungs: " + ", ".join(f"{count} at step {step}" for step, count in rivals))
    return ", ".join(words)


def _warm_origin(origin: dict[str, Any] | None) -> str | None:
    """"sst2-demo #12 (sqlite:///laptop.db)": the earlier search's trial a warm-started one re-trains, or "probe
    run #3 (lora-r16-all)": the probe's reference that learned, queued first
    (autopeft/search/probe.py); "probe run #2 (full as partial)" where the space drew its stand-in."""
    if not origin:
        return None
    if "probe" in origin:
        stand_in = f" as {origin['as']}" if origin.get("as") else ""
        return f"probe run #{origin['trial']} ({origin['probe']}{stand_in})"
    return f"{origin['search']} #{origin['trial']} ({origin['storage']})"


def _trial_row(tid: int, number: int, optuna_state: str, start: Any, end: Any, values: dict[int, float],
               attrs: dict[str, Any], spec: SearchSpec) -> dict[str, Any]:
    state = optuna_state
    if attrs.get(storage.REJECTED):
        state = "REJECTED"
    elif attrs.get(storage.DUPLICATE):
        state = "DUPLICATE"
    elif attrs.get(storage.INTERRUPTED):
        state = "INTERRUPTED"
    elif optuna_state == "WAITING":
        state = "QUEUED"
    config = attrs.get(storage.CONFIG) or {}
    method = config.get("method")
    options = config.get(method, {}) if isinstance(config.get(method), dict) else {}
    layers = config.get("layers")
    measured = dict(attrs.get(storage.MEASUREMENTS) or {})
    for index, name in enumerate(spec.objective_names):
        if index in values:
            measured.setdefault(name, values[index])
    start_ts = pd.Timestamp(start) if start else None
    end_ts = pd.Timestamp(end) if end else None
    row: dict[str, Any] = {
        "trial_id": tid, "number": number, "state": state, "start": start_ts, "complete": end_ts,
        "duration_s": (end_ts - start_ts).total_seconds() if start_ts is not None and end_ts is not None else None,
        "method": method, "configuration": describe_config(config) if config else "",
        "layers": layer_ranges(layers) if layers else "", "n_layers": len(layers) if layers else None,
        "modules": "+".join(options.get("target_modules", [])) or None,
        "learning_rate": config.get("learning_rate"),
        "feasible": all(v <= 0 for v in attrs.get(storage.VIOLATIONS) or []),
        "baseline": bool(attrs.get(BASELINE)),
        "probe": bool(attrs.get(storage.PROBE)),
        "fail_reason": attrs.get(storage.FAIL_REASON), "worker": attrs.get(storage.WORKER) or "",
        "adapter_dir": attrs.get(storage.ADAPTER_DIR), "retry_of": attrs.get(storage.RETRY_OF),
        "finishes": attrs.get(storage.FINISHES),
        "warm_start": _warm_origin(attrs.get(storage.WARM_START)),
        "execution": _execution(attrs.get(storage.EXECUTION)),
        "config": json.dumps(config, sort_keys=True),
    }
    for key, column in _OPTION_COLUMNS.items():
        row[column] = options.get(key)
    # The method's own size knob, one column for all methods (sparsity and bits are not sizes).
    row["size"] = next((options[k] for k in ("r", "bottleneck", "prefix_length") if options.get(k) is not None),
                       None)
    for name in MEASUREMENTS:
        row[name] = measured.get(name)
    return row


def loss_curve(url: str, trial_id: int) -> list[list[float]]:
    """The loss curve of one trial: [[step, loss], ...] as the worker recorded it."""
    rows = _query(url, "SELECT value_json FROM trial_user_attributes WHERE trial_id = :tid AND key = :key",
                  tid=trial_id, key=storage.LOSS_CURVE)
    return _json(rows[0][0]) if rows else []


def rung_values(url: str, trial_id: int) -> list[list[float]]:
    """What the trial reported at each rung (Optuna's intermediate values): [[step, value], ...], step order."""
    rows = _query(url, "SELECT step, intermediate_value FROM trial_intermediate_values WHERE trial_id = :tid "
                       "ORDER BY step", tid=trial_id)
    return [[step, value] for step, value in rows if value is not None]


def default_storage_url() -> str:
    """The database the dashboard shows: $AUTOPEFT_STORAGE (set by `autopeft dashboard`) or ./autopeft.db."""
    return normalise_storage_url(os.environ.get("AUTOPEFT_STORAGE", "sqlite:///autopeft.db"))
