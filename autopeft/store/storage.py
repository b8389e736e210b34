"""The trial database: Optuna studies on SQLAlchemy storage, plus what autopeft keeps on each trial.

Only controllers write. A search is an Optuna study whose user attributes hold the resolved spec (so resume
needs only the name) and the identity of its controllers (so a second `run` or `resume` cannot drive a search that
is running, while `join` adds controllers on purpose). Each trial's user attributes hold its decoded
configuration, every measurement and the controller that runs it, so views never re-derive them and a resume
closes only the trials of controllers that are gone.

Optuna owns the schema (its own tables, migrated with `optuna storage upgrade --storage URL`); autopeft adds no
tables, only attributes, so an upgrade of Optuna is the only migration there is.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Container
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from optuna.trial import FrozenTrial, TrialState

from autopeft.errors import UserError
from autopeft.spec import SearchSpec, normalise_storage_url, parse_spec
from autopeft.store.resilient_storage import ResilientRDBStorage

optuna.logging.set_verbosity(optuna.logging.WARNING)

# Trial attribute names, in one place because the controller writes them and every view reads them.
CONFIG = "config"
MEASUREMENTS = "measurements"
LOSS_CURVE = "loss_curve"
ADAPTER_DIR = "adapter_dir"
WORKER = "worker"
EXECUTION = "execution"  # how the worker ran the trial: precision, frozen layers cached, cached examples reused
FAIL_REASON = "fail_reason"
REJECTED = "rejected"
INFEASIBLE = "infeasible"  # rejected because its costs known before training break a constraint (told PRUNED)
INTERRUPTED = "interrupted"
DUPLICATE = "duplicate"  # a proposal equal to a trained configuration: told its values, not trained, not counted
DUPLICATE_OF = "duplicate_of"  # ... and the number of the trial whose values it was told
RETRY_OF = "retry_of"
WARM_START = "warm_start"  # a first proposal re-training an earlier search's trial: {"search", "trial", "storage"}
PREDICTIONS = "predictions"  # the final evaluation's prediction per eval example (autopeft/store/predictions.py)
VIOLATIONS = "constraint_violations"
PREDICTED = "predicted"  # costs computed before training (meta-device build): trainable params, adapter bytes
OWNER = "controller"  # on a trial: the controller ("host:pid") that runs it
RUNGS = "rungs"  # early stopping: [[step, {objective: value}], ...] at each rung the trial reached
STOPPED_AT = "stopped_at"  # the rung step where early stopping ended the trial (told as PRUNED)
FINISHES = "finishes"  # an early-stopped trial's configuration trained again to the end, no rungs: that trial's number
BASELINE = "baseline"  # a standard configuration trained for comparison: outside the budget and the front
PROBE = "probe"  # on a trial: a learnability-probe run {"reference", "steps"} (search/probe.py), outside both too;
# with "seed" where it repeats its rung's run with another seed;
# on the study: the probe's decision {"chosen", "reason", "seconds", "rungs"}
# Retraining with more seeds (autopeft.results.confirm): per-seed values, mean and std. Kept on the study as
# "confirmation.<trial number>", since Optuna refuses to change a finished trial's attributes.
CONFIRMATION = "confirmation."

SPEC = "spec"
CONTROLLER = "controller"
FINISHED = "finished"
STARTED_AT, FINISHED_AT = "started_at", "finished_at"  # a run's times in its result's ``execution`` (retrain.py)
WALL_CLOCK = "wall_clock"  # the wall-clock limit stopped the search before its budget: {"minutes", "spent"}
LABELS = "labels"  # label names in head order, needed to rebuild the base for an exported adapter
CHANCE = "chance"  # the task metrics of the constant prediction on the eval set (autopeft/results/chance.py)
EVAL_ROWS = "eval_rows"  # with data.eval_size: the eval rows used (positions in the file), written by export
EVAL_TARGETS = "eval_targets"  # the eval split's gold values, for the noise model (autopeft/store/predictions.py)
UNTOUCHED = "untouched"  # a decoder's base model evaluated as loaded: {"metrics", "predictions", "tokens"}
DATA_NOTES = "data_notes"  # what reading the data noted (left out, cut, ...) when the search started
JOINED = "controller."  # prefix of the study attributes naming the controllers that joined a running search

SQLITE_BUSY_TIMEOUT_S = 60


def mask_url(url: str) -> str:
    """The URL with its password replaced by ***, for anything printed or logged."""
    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy can parse: hide everything between the scheme and the last @
        credentials, at, host = url.rpartition("@")
        if not at:
            return url
        scheme, sep, _ = credentials.partition("://")
        return (scheme + sep if sep else "") + "***@" + host


def open_storage(url: str, create: bool = True) -> optuna.storages.RDBStorage:
    """Optuna's RDB storage on SQLite (WAL mode) or PostgreSQL (``postgresql+psycopg://``), or any SQLAlchemy URL.

    Optuna creates its tables on first use and refuses a schema older than its own: ``optuna storage upgrade``
    migrates it (see docs/cluster.md). ``create=False`` is for commands that only read an existing search: a
    mistyped SQLite path is then an error, not a new empty database file.
    """
    url = normalise_storage_url(url)
    if not create and url.startswith("sqlite:///") and ":memory:" not in url:
        path = url.split("?", 1)[0].removeprefix("sqlite:///")
        if not os.path.isfile(path):
            raise UserError(f"storage: no database file at {path}; check --storage or $AUTOPEFT_STORAGE")
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        # Readers (the CLI, the dashboard) may hold the file briefly; wait instead of failing the search.
        kwargs = {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}}
    elif url.startswith("postgresql"):
        # A restarted database server leaves dead pooled connections: test each one before use.
        kwargs = {"pool_pre_ping": True}
    try:
        store = ResilientRDBStorage(url, engine_kwargs=kwargs)
        if url.startswith("sqlite") and ":memory:" not in url:
            _use_wal(store.engine)
        return store
    except Exception as exc:  # bad URL, unreachable server, missing driver: all need the user's fix
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"storage: cannot open {mask_url(url)}: {reason}{_url_hint(url, reason)}") from None


def _url_hint(url: str, reason: str) -> str:
    """The likely fix for a database URL that could not be opened."""
    forms = ("sqlite:///relative/file.db, sqlite:////absolute/file.db, or "
             "postgresql+psycopg://user:password@host/database")
    if "://" not in url:  # a file's path where a URL belongs
        return f"; a SQLite file is named by a URL: sqlite:///{url}"  # four slashes before an absolute path
    if "Could not parse" in reason or "Can't load plugin" in reason:
        return f"; a database is named by a SQLAlchemy URL: {forms}"
    if url.startswith("sqlite:///") and "unable to open database file" in reason:
        folder = Path(url.split("?", 1)[0].removeprefix("sqlite:///")).parent
        if not folder.is_dir():
            return f"; the folder {folder} does not exist: create it, or name a file in a folder that does"
    return ""


def _use_wal(engine: sqlalchemy.engine.Engine) -> None:
    """Write-ahead logging: readers (the CLI, the dashboard) never block the controller's writes, nor they them.

    The mode is a property of the database file, so it is set once and every later connection has it.
    """
    with engine.connect() as connection:
        mode = connection.exec_driver_sql("PRAGMA journal_mode").scalar()
        if str(mode).lower() != "wal":
            connection.exec_driver_sql("PRAGMA journal_mode=WAL")


def search_names(storage: optuna.storages.BaseStorage, *, stored_only: bool = False) -> list[str]:
    """Every search's name. ``stored_only``: only searches whose spec is stored. A search's study exists a moment
    before its spec does (``create_search``: two writes), so a listing read while another process creates a search
    leaves that one out instead of failing on it."""
    return [s.study_name for s in storage.get_all_studies() if not stored_only or SPEC in s.user_attrs]


def found_search(storage: optuna.storages.BaseStorage, name: str) -> tuple[optuna.Study, SearchSpec | None]:
    """The search ``name`` and its spec: None where its creation stopped before the spec was written (or another
    process is creating it this moment)."""
    if name not in search_names(storage):
        raise UserError(f"no search named {name!r} in this storage; `autopeft search list` shows the searches")
    study = optuna.load_study(study_name=name, storage=storage)
    spec = (parse_spec(study.user_attrs[SPEC], f"stored spec of {name}", stored=True) if SPEC in study.user_attrs
            else None)
    return study, spec


def load_search(storage: optuna.storages.BaseStorage, name: str) -> tuple[optuna.Study, SearchSpec]:
    study, spec = found_search(storage, name)
    if spec is None:
        raise UserError(f"search {name!r} has no stored spec yet: another process is creating it (try again in a "
                        f"moment), its creation was interrupted before the spec was written (`autopeft search "
                        f"delete {name} --force` removes it), or it is another tool's study in the same database")
    return study, spec


def delete_search(storage: optuna.storages.BaseStorage, name: str, *, force: bool = False) -> SearchSpec | None:
    """Remove the search ``name`` and all its trials from the database; returns its spec.

    Refused while a controller runs it: its workers would go on writing trials into a study that is gone. Refused
    too for a study without an autopeft spec (a search whose creation stopped before the spec was written, or
    another tool's study in the same database; None is returned for it). ``force`` deletes anyway: for such a
    study, or a search recorded as run from another machine that is gone (a controller there cannot be checked
    from here, so it counts as running)."""
    study, spec = found_search(storage, name)
    if spec is None and not force:
        # Optuna studies of other tools may share the database; none of them is autopeft's to delete unasked.
        raise UserError(f"{name!r} holds no autopeft spec: a search another process is creating this moment, one whose "
                        f"creation stopped before its spec was written, or another tool's study in the same "
                        f"database; pass --force (force=True from Python) to delete it all the same")
    running = [f"{o['host']}:{o['pid']}" for o in _recorded_controllers(study) if _running(o)]
    if running and not force:
        raise UserError(f"search {name!r} is running (controller {', '.join(running)}); stop it first (Ctrl-C in "
                        f"its terminal, or stop it on the dashboard), or pass --force (force=True from Python) if "
                        f"that controller's machine is gone")
    optuna.delete_study(study_name=name, storage=storage)
    return spec


def check_name_free(storage: optuna.storages.BaseStorage, name: str) -> None:
    """Refuse a new search under a name the database already has (the service checks before it launches)."""
    if name in search_names(storage):
        raise UserError(f"a search named {name!r} exists; resume it with `autopeft search resume {name}`, "
                        f"add a controller to it with `autopeft search join {name}`, or pick another --name")


def create_search(storage: optuna.storages.BaseStorage, name: str, spec: SearchSpec,
                  sampler: optuna.samplers.BaseSampler) -> optuna.Study:
    check_name_free(storage, name)
    study = optuna.create_study(study_name=name, storage=storage, sampler=sampler,
                                directions=[o.resolved_direction for o in spec.objectives])
    # Named, so Optuna's own tools (optuna-dashboard, trials_dataframe, plots) say "accuracy", not "Objective 0".
    study.set_metric_names(spec.objective_names)
    study.set_user_attr(SPEC, spec.to_stored())
    return study


def controller_id() -> str:
    """This process as a controller: "host:pid", recorded on the study and on every trial it runs."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _recorded_controllers(study: optuna.Study) -> list[dict[str, Any]]:
    attrs = study.user_attrs
    owners = [attrs.get(CONTROLLER)] + [v for k, v in attrs.items() if k.startswith(JOINED)]
    return [o for o in owners if o]


def live_controllers(study: optuna.Study) -> set[str]:
    """Controllers recorded on the study that are alive on this host (other than this process).

    A process on another host cannot be checked from here; `resume` is the user's statement that the search is
    stopped, so controllers elsewhere are taken to be gone (use `join` to add a controller to a running search).
    """
    me = controller_id()
    return {f"{o['host']}:{o['pid']}" for o in _recorded_controllers(study)
            if f"{o['host']}:{o['pid']}" != me and o["host"] == socket.gethostname() and _alive(o["pid"])}


def _running(owner: dict[str, Any]) -> bool:
    """A recorded controller is alive; one on another host, which cannot be checked from here, counts as running
    until it releases its record."""
    return owner["host"] != socket.gethostname() or _alive(owner["pid"])


def any_controller_running(study: optuna.Study) -> bool:
    """Whether a recorded controller (the first or one that joined) is running."""
    return any(_running(o) for o in _recorded_controllers(study))


def claim_controller(study: optuna.Study, join: bool = False) -> None:
    """Record this process as a controller of the search.

    Without ``join``: refuse while another controller on this host is alive (two `run`/`resume` of one search
    are a mistake). With ``join``: run beside the live ones; the budget is shared through the database.
    """
    me = {"host": socket.gethostname(), "pid": os.getpid()}
    if join:
        study.set_user_attr(f"{JOINED}{controller_id()}", me)
        return
    for owner in _recorded_controllers(study):
        if owner["host"] == me["host"] and owner["pid"] != me["pid"] and _alive(owner["pid"]):
            raise UserError(f"search {study.study_name!r} is being run by process {owner['pid']}; stop it first, "
                            f"or add a controller with `autopeft search join {study.study_name}`")
    study.set_user_attr(CONTROLLER, me)


def release_controller(study: optuna.Study) -> None:
    key = f"{JOINED}{controller_id()}"
    if key in study.user_attrs:
        study.set_user_attr(key, None)
    owner = study.user_attrs.get(CONTROLLER)
    if owner and f"{owner['host']}:{owner['pid']}" == controller_id():
        study.set_user_attr(CONTROLLER, None)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def counts_against_budget(trial: FrozenTrial) -> bool:
    """A trial spends budget once it trained to an end: rejected proposals, interrupted runs and baselines do not."""
    if is_reference(trial) or trial.user_attrs.get(DUPLICATE) or trial.user_attrs.get(REJECTED):
        return False
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return trial.state == TrialState.FAIL and not trial.user_attrs.get(INTERRUPTED)


def is_reference(trial: FrozenTrial) -> bool:
    """A baseline or a probe run: trained for comparison or to find the fidelity, never one of the search's trials."""
    return bool(trial.user_attrs.get(BASELINE) or trial.user_attrs.get(PROBE))


def finished_trial(spec: SearchSpec, config: dict[str, Any], result: Any, marks: dict[str, Any]) -> FrozenTrial:
    """A run made outside the search loop (a baseline, a probe run) as a finished trial to add to the study, with
    ``marks`` (e.g. ``{BASELINE: name}``) among its attributes; a failed run is stored failed with its reason.

    It keeps the times the run ran (``started_at`` / ``finished_at`` in its ``execution``, autopeft/results/retrain.py):
    Optuna would date a trial made afterwards at the moment it is stored, and the dashboard's timeline would draw
    every baseline as an instant at the end."""
    attrs: dict[str, Any] = {**marks, CONFIG: config, WORKER: result.worker}
    if not result.ok:
        trial = optuna.trial.create_trial(state=TrialState.FAIL, user_attrs={**attrs, FAIL_REASON: result.fail_reason})
        return _dated(trial, result.execution)
    measured = result.measurements
    violations = [c.violation(measured[c.name]) for c in spec.constraints]
    attrs |= {MEASUREMENTS: measured, LOSS_CURVE: [list(p) for p in result.loss_curve],
              ADAPTER_DIR: result.adapter_dir, VIOLATIONS: violations}
    if result.predictions:
        attrs[PREDICTIONS] = result.predictions
    trial = optuna.trial.create_trial(values=[measured[n] for n in spec.objective_names], user_attrs=attrs,
                                      constraints={c.name: v for c, v in zip(spec.constraints, violations)} or None)
    return _dated(trial, result.execution)


def _dated(trial: FrozenTrial, execution: dict[str, Any]) -> FrozenTrial:
    """``trial`` with the start and end its run recorded, where it recorded them."""
    started, finished = execution.get(STARTED_AT), execution.get(FINISHED_AT)
    if started and finished:
        trial.datetime_start = datetime.fromisoformat(started)
        trial.datetime_complete = datetime.fromisoformat(finished)
    return trial


def budget_spent(trials: list[FrozenTrial]) -> int:
    """Trials that spent the budget or hold a share of it now: counted ones plus those running anywhere."""
    return sum(counts_against_budget(t) or t.state == TrialState.RUNNING for t in trials)


def ahead_of(trials: list[FrozenTrial], number: int) -> int:
    """Budget taken by trials numbered before ``number`` (queued ones included: someone will run them).

    Trial numbers are handed out by the database in order, so of two controllers racing for the last unit of
    budget exactly one sees the other's trial ahead of its own and stands back.
    """
    return sum(counts_against_budget(t) or t.state in (TrialState.RUNNING, TrialState.WAITING)
               for t in trials if t.number < number)


def requeue_interrupted(study: optuna.Study, reason: str, owners: Container[str] | None = None,
                        keep: Container[str] = ()) -> list[int]:
    """Mark RUNNING trials (their controller is gone) as failed-interrupted and queue their configurations again.

    ``owners``: close only the trials these controllers run (a stopping controller closes its own); otherwise
    every running trial except those of the controllers in ``keep`` (the live ones, when a search is resumed
    while other controllers still run it). The new trials keep the same parameters, so the sampler's choices are
    not lost and nothing runs twice: the old trial is closed before its replacement exists.
    """
    requeued = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = trial.user_attrs.get(OWNER)
        if (owners is not None and owner not in owners) or (owner is not None and owner in keep):
            continue
        study._storage.set_trial_user_attr(trial._trial_id, INTERRUPTED, True)
        study._storage.set_trial_user_attr(trial._trial_id, FAIL_REASON, reason)
        study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
        # Only a whole proposal is queued again: a controller killed while the space was still drawing the
        # parameters leaves some of them, and the sampler proposes afresh instead.
        if not trial.user_attrs.get(REJECTED) and CONFIG in trial.user_attrs and trial.params:
            study.enqueue_trial(trial.params, user_attrs={RETRY_OF: trial.number})
        requeued.append(trial.number)
    return requeued


@dataclass
class TrialRecord:
    """One trial as the views see it."""

    number: int
    state: str
    config: dict[str, Any]
    values: dict[str, float]
    measurements: dict[str, float]
    fail_reason: str | None
    adapter_dir: str | None
    feasible: bool
    loss_curve: list[list[float]] = field(default_factory=list)
    worker: str = ""
    duration_s: float | None = None
    retry_of: int | None = None
    finishes: int | None = None  # the early-stopped trial whose configuration it trained to the end
    pareto: bool = False
    baseline: str | None = None  # the standard configuration's name (autopeft.results.baselines)
    rungs: list[list[Any]] = field(default_factory=list)
    stopped_at: int | None = None
    confirmation: dict[str, Any] | None = None
    execution: dict[str, Any] = field(default_factory=dict)  # precision, frozen layers cached, examples reused
    predictions: dict[str, Any] | None = None  # encoded (autopeft/store/predictions.py); left out of to_json
    probe: dict[str, Any] | None = None  # a learnability-probe run: {"reference", "steps"} (autopeft/search/probe.py)
    warm_start: dict[str, Any] | None = None  # the earlier search's trial it re-trains (autopeft/search/warm_start.py)

    @property
    def reference(self) -> bool:
        """A baseline or a probe run: outside the search's budget and front."""
        return bool(self.baseline or self.probe)

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "predictions"}


def set_confirmation(study: optuna.Study, number: int, confirmation: dict[str, Any]) -> None:
    study.set_user_attr(f"{CONFIRMATION}{number}", confirmation)


def trial_records(study: optuna.Study, spec: SearchSpec) -> list[TrialRecord]:
    records = []
    study_attrs = study.user_attrs
    names = spec.objective_names
    for trial in study.get_trials(deepcopy=False):
        attrs = trial.user_attrs
        state = trial.state.name
        if attrs.get(REJECTED):
            state = "REJECTED"
        elif attrs.get(DUPLICATE):
            state = "DUPLICATE"
        elif attrs.get(INTERRUPTED):
            state = "INTERRUPTED"
        elif trial.state == TrialState.WAITING:
            state = "QUEUED"
        duration = None
        if trial.datetime_start and trial.datetime_complete:
            duration = (trial.datetime_complete - trial.datetime_start).total_seconds()
        records.append(TrialRecord(
            number=trial.number,
            state=state,
            config=attrs.get(CONFIG, {}),
            values=dict(zip(names, trial.values)) if trial.values else {},
            measurements=attrs.get(MEASUREMENTS, {}),
            fail_reason=attrs.get(FAIL_REASON),
            adapter_dir=attrs.get(ADAPTER_DIR),
            feasible=all(v <= 0 for v in attrs.get(VIOLATIONS, [])),
            loss_curve=attrs.get(LOSS_CURVE, []),
            worker=attrs.get(WORKER, ""),
            duration_s=duration,
            retry_of=attrs.get(RETRY_OF),
            finishes=attrs.get(FINISHES),
            baseline=attrs.get(BASELINE) or None,
            rungs=attrs.get(RUNGS, []),
            stopped_at=attrs.get(STOPPED_AT),
            confirmation=study_attrs.get(f"{CONFIRMATION}{trial.number}"),
            execution=attrs.get(EXECUTION, {}),
            warm_start=attrs.get(WARM_START),
            predictions=attrs.get(PREDICTIONS),
            probe=attrs.get(PROBE),
        ))
    return records
