"""The dashboard with 2,000 trials: every view rendered headless, its time measured and reported.

The trials are synthetic but shaped like a real mixed-method search (five methods with their sizes, accuracy
rising with log-parameters plus noise, failures with reasons, pruned, rejected and running trials, a baseline,
four workers over ten hours, loss curves) and are written into a SQLite file in Optuna's own tables, to read back
exactly as what the controller stores through Optuna's API (a test below compares the two). A second, smaller
search feeds the comparison view.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time

import numpy as np
import optuna
import pytest
import sqlalchemy as sa
from optuna.distributions import FloatDistribution
from optuna.trial import FrozenTrial, TrialState
from streamlit.testing.v1 import AppTest

from autopeft.results.pareto import pareto_front
from autopeft.spec import load_spec
from autopeft.store import storage
from dashboard import cache, data
from dashboard.navigation import VIEWS
from tests.conftest import ROOT, tiny_spec, write_spec

APP = str(ROOT / "dashboard" / "app.py")
TRIALS = 2000
METHODS = {"lora": ("r", [1, 2, 4, 8, 16, 32, 64], 1_536), "pfeiffer": ("bottleneck", [16, 64, 256], 6_500),
           "parallel": ("bottleneck", [16, 64, 256], 6_200), "prefix": ("prefix_length", [5, 10, 30], 2_300),
           "ia3": (None, [None], 9_216)}
MODULES = ["query", "key", "value", "attention_output", "ffn_up", "ffn_down"]


def synthetic_trial(number: int, rng: np.random.Generator, t0: dt.datetime, baseline: bool = False) -> FrozenTrial:
    method = "full" if baseline else rng.choice(list(METHODS))
    key, choices, per_unit = METHODS.get(method, (None, [None], 0))
    size = choices[rng.integers(len(choices))]
    layers = sorted(rng.choice(6, size=rng.integers(1, 7), replace=False).tolist())
    options = {key: int(size)} if key else {}
    if method == "lora":
        options["target_modules"] = sorted(rng.choice(MODULES, size=rng.integers(1, 4), replace=False).tolist())
    lr = float(10 ** rng.uniform(-4, -2.5))
    params = 22_713_216 if baseline else int(per_unit * (size or 1) * len(layers) * (1 + rng.random()) + 770)
    accuracy = float(np.clip(0.5 + 0.045 * np.log10(params) + rng.normal(0, 0.03), 0.45, 0.93))
    start = t0 + dt.timedelta(seconds=18 * number + float(rng.uniform(0, 5)))
    duration = float(rng.uniform(20, 70))
    draw = rng.random()
    state, attrs = TrialState.COMPLETE, {}
    if number >= TRIALS - 3 and not baseline:
        state = TrialState.RUNNING
    elif draw < 0.05:
        state, attrs = TrialState.FAIL, {storage.FAIL_REASON: rng.choice(
            ["non-finite loss at step 40", "out of memory", "worker process died"])}
    elif draw < 0.08:
        state = TrialState.PRUNED
    elif draw < 0.11:
        state, attrs = TrialState.FAIL, {storage.REJECTED: True,
                                         storage.FAIL_REASON: "invalid configuration: layers: 0 layers switched on"}
    config = {"method": method, method: options, "layers": layers, "learning_rate": lr}
    measured = {"accuracy": accuracy, "macro_f1": accuracy - 0.02, "trainable_params": params,
                "trainable_percent": 100 * params / 22_713_216, "peak_memory_mb": 900 + params / 4e4,
                "train_time_s": duration * 0.9, "eval_time_s": duration * 0.1, "adapter_bytes": params * 4 + 900,
                "total_params": 22_713_216 + params}
    attrs |= {storage.CONFIG: config, storage.WORKER: f"node{number % 4}:{4100 + number % 4}"}
    if baseline:
        attrs["baseline"] = True
    values = None
    if state in (TrialState.COMPLETE, TrialState.PRUNED):
        attrs[storage.MEASUREMENTS] = measured
        attrs[storage.LOSS_CURVE] = [[s, float(0.7 * np.exp(-s / 60) + 0.2)] for s in range(10, 160, 15)]
        attrs[storage.ADAPTER_DIR] = f"/runs/load/trial-{number:04d}/adapter"
        attrs[storage.VIOLATIONS] = [measured["trainable_percent"] - 1.0]
    if state == TrialState.COMPLETE:
        values = [accuracy, float(params)]
    return FrozenTrial(number=number, state=state, value=None, values=values, datetime_start=start,
                       datetime_complete=None if state == TrialState.RUNNING else
                       start + dt.timedelta(seconds=duration),
                       params={"learning_rate": lr}, distributions={"learning_rate": FloatDistribution(1e-4, 1e-2)},
                       user_attrs=attrs, system_attrs={}, trial_id=number,
                       intermediate_values={} if values is None and state != TrialState.PRUNED else
                       {50: accuracy - 0.06, 100: accuracy - 0.02, **({} if state == TrialState.PRUNED else
                                                                       {150: accuracy})})


def write_search(store: optuna.storages.RDBStorage, name: str, spec, count: int, seed: int) -> None:
    study = optuna.create_study(study_name=name, storage=store, directions=["maximize", "minimize"])
    study.set_user_attr(storage.SPEC, spec.to_stored())
    study.set_user_attr(storage.FINISHED, True)
    rng = np.random.default_rng(seed)
    t0 = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(seconds=18 * count + 60)
    trials = [synthetic_trial(i, rng, t0) for i in range(count - 1)]
    trials.append(synthetic_trial(count - 1, rng, t0, baseline=True))
    add_trials_in_one_transaction(store, study, trials)


def add_trials_in_one_transaction(store: optuna.storages.RDBStorage, study: optuna.Study,
                                  trials: list[FrozenTrial]) -> None:
    """What ``study.add_trials`` stores, in Optuna's own tables (its ORM models), in one transaction: add_trials
    runs a query per attribute, 34 ms a trial here, which made this module's set-up the suite's slowest (44 s).
    ``test_one_transaction_stores_what_add_trials_stores`` proves the two read back the same."""
    from optuna.distributions import distribution_to_json
    from optuna.storages._rdb import models

    start = len(study.get_trials(deepcopy=False))
    rows = []
    for offset, trial in enumerate(trials):
        row = models.TrialModel(study_id=study._study_id, number=start + offset, state=trial.state,
                                datetime_start=trial.datetime_start, datetime_complete=trial.datetime_complete)
        for objective, value in enumerate(trial.values or []):
            stored, kind = models.TrialValueModel.value_to_stored_repr(value)
            row.values.append(models.TrialValueModel(objective=objective, value=stored, value_type=kind))
        for name, value in trial.params.items():
            distribution = trial.distributions[name]
            row.params.append(models.TrialParamModel(param_name=name, param_value=distribution.to_internal_repr(
                value), distribution_json=distribution_to_json(distribution)))
        row.user_attributes.extend(models.TrialUserAttributeModel(key=key, value_json=json.dumps(value))
                                   for key, value in trial.user_attrs.items())
        row.system_attributes.extend(models.TrialSystemAttributeModel(key=key, value_json=json.dumps(value))
                                     for key, value in trial.system_attrs.items())
        for step, value in trial.intermediate_values.items():
            stored, kind = models.TrialIntermediateValueModel.intermediate_value_to_stored_repr(value)
            row.intermediate_values.append(models.TrialIntermediateValueModel(
                step=step, intermediate_value=stored, intermediate_value_type=kind))
        rows.append(row)
    with sa.orm.Session(store.engine) as session, session.begin():
        session.add_all(rows)


def test_one_transaction_stores_what_add_trials_stores(tmp_path):
    store = storage.open_storage(f"sqlite:///{tmp_path / 'two.db'}")
    rng = np.random.default_rng(3)
    t0 = dt.datetime(2026, 1, 1)
    trials = [synthetic_trial(i, rng, t0) for i in range(60)] + [synthetic_trial(60, rng, t0, baseline=True)]
    by_optuna = optuna.create_study(study_name="optuna", storage=store, directions=["maximize", "minimize"])
    by_optuna.add_trials(trials)
    at_once = optuna.create_study(study_name="at-once", storage=store, directions=["maximize", "minimize"])
    add_trials_in_one_transaction(store, at_once, trials)
    fields = ("number", "state", "values", "params", "distributions", "user_attrs", "system_attrs",
              "intermediate_values", "datetime_start", "datetime_complete")
    read = [[tuple(getattr(t, f) for f in fields) for t in optuna.load_study(study_name=name, storage=store).trials]
            for name in ("optuna", "at-once")]
    assert {t.state for t in trials} >= {TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED}
    assert len(read[1]) == 61 and read[0] == read[1]


@pytest.fixture(scope="module")
def big_database(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("load")
    spec = load_spec(write_spec(tmp_path, tiny_spec(tmp_path, budget={"trials": TRIALS, "steps_per_trial": 150})))
    url = f"sqlite:///{tmp_path / 'load.db'}"
    store = storage.open_storage(url)
    # Test data only: skip fsync while writing it (the file is the same SQLite database either way).
    store.engine.dispose()
    sa.event.listen(store.engine, "connect", lambda connection, _: connection.execute("PRAGMA synchronous = OFF"))
    started = time.perf_counter()
    write_search(store, "mixed-2000", spec, TRIALS, seed=0)
    write_search(store, "lora-300", spec, 300, seed=1)
    written_s = time.perf_counter() - started
    previous = os.environ.get("AUTOPEFT_STORAGE")
    os.environ["AUTOPEFT_STORAGE"] = url
    yield url, written_s
    if previous is None:
        os.environ.pop("AUTOPEFT_STORAGE", None)
    else:
        os.environ["AUTOPEFT_STORAGE"] = previous


def test_every_view_renders_2000_trials_quickly(big_database, record_property):
    url, written_s = big_database
    started = time.perf_counter()
    trials, _ = data.load_trials(url, "mixed-2000")
    sql_s = time.perf_counter() - started
    assert len(trials) == TRIALS
    started = time.perf_counter()
    study = optuna.load_study(study_name="mixed-2000", storage=storage.open_storage(url))
    study.get_trials()
    optuna_s = time.perf_counter() - started
    AppTest.from_file(APP, default_timeout=120).run()  # imports streamlit, plotly and the app once, untimed
    timings = {}
    for view in VIEWS:
        app = AppTest.from_file(APP, default_timeout=120)
        app.session_state["view"] = view
        app.session_state["search"] = "mixed-2000"
        cache.clear()
        started = time.perf_counter()
        app.run()  # cold: empty cache, so the SQL reads are included
        cold = time.perf_counter() - started
        assert not app.exception, (view, [e.value for e in app.exception])
        started = time.perf_counter()
        app.run()  # warm: what a widget click or a live refresh within the cache's lifetime costs
        timings[view] = (cold, time.perf_counter() - started)
        if view == "Pareto front":
            shown = {m.label: m.value for m in app.metric}
            assert shown["Trials"] == str(TRIALS - 1)  # the search's own trials; its one baseline is counted apart
            assert "Besides these: 1 baseline, a reference point outside the budget and the front." in [
                c.value for c in app.caption]
            assert shown["Running"] == "2"
    report = {"trials": TRIALS, "write_s": round(written_s, 1), "dashboard_sql_read_s": round(sql_s, 3),
              "optuna_get_trials_s": round(optuna_s, 3),
              "render_cold_warm_s": {view: [round(c, 2), round(w, 2)] for view, (c, w) in timings.items()}}
    record_property("dashboard_load", json.dumps(report))
    print("\ndashboard load:", json.dumps(report))
    assert sql_s < 5
    assert max(cold for cold, _ in timings.values()) < 15, timings


def test_cold_pareto_page_with_2000_trials(big_database, record_property):
    """What a user waits for when opening the dashboard on a 2,000-trial search: reads plus the first render."""
    url, _ = big_database
    cache.clear()
    app = AppTest.from_file(APP, default_timeout=120)
    app.session_state["search"] = "mixed-2000"
    started = time.perf_counter()
    app.run()
    cold_s = time.perf_counter() - started
    assert not app.exception
    assert {m.label: m.value for m in app.metric}["Trials"] == str(TRIALS - 1)
    record_property("pareto_cold_s", round(cold_s, 3))
    print(f"\nPareto page, 2,000 trials, cold: {cold_s:.2f} s")
    assert cold_s < 15


def test_compare_overlays_two_searches_fronts(big_database):
    url, _ = big_database
    app = AppTest.from_file(APP, default_timeout=120)
    app.session_state["view"] = "Compare"
    app.session_state["search"] = "mixed-2000"
    app.session_state["compare_searches"] = ["mixed-2000", "lora-300"]
    app.run()
    assert not app.exception
    figure = json.loads(app.get("plotly_chart")[0].proto.spec)
    legend = sorted(t["name"] for t in figure["data"] if t.get("name"))
    expected = []
    for name in ("lora-300", "mixed-2000"):
        study, spec = storage.load_search(storage.open_storage(url), name)
        expected.append(f"{name} ({len(pareto_front(storage.trial_records(study, spec), spec))})")
    assert legend == expected


def test_front_and_hypervolume_agree_with_autopeft_and_optuna(big_database):
    """The vectorised front equals autopeft.results.pareto's; the incremental hypervolume equals a from-scratch one."""
    from optuna._hypervolume import compute_hypervolume

    from dashboard import analysis

    url, _ = big_database
    trials, spec = data.load_trials(url, "mixed-2000")
    study, stored = storage.load_search(storage.open_storage(url), "mixed-2000")
    expected = {r.number for r in pareto_front(storage.trial_records(study, stored), stored)}
    assert set(trials.loc[analysis.front(trials, spec), "number"]) == expected
    history = analysis.hypervolume_history(trials, spec)
    assert history["hypervolume"].is_monotonic_increasing
    done = trials[analysis.candidates(trials)]
    losses = np.column_stack([-done["accuracy"].to_numpy(), np.log10(done["trainable_params"].to_numpy())])
    scaled = (losses - losses.min(axis=0)) / (losses.max(axis=0) - losses.min(axis=0))
    assert history["hypervolume"].iloc[-1] == pytest.approx(compute_hypervolume(scaled, np.array([1.1, 1.1])))
    assert len(history) == len(done)


def test_postgresql_is_read_in_read_only_transactions(tmp_path, postgres_url, monkeypatch):
    """The same reads on PostgreSQL: every view renders, and the dashboard's connection refuses to write."""
    spec = load_spec(write_spec(tmp_path, tiny_spec(tmp_path)))
    write_search(storage.open_storage(postgres_url), "pg", spec, 60, seed=2)
    data.engine_for.cache_clear()
    trials, _ = data.load_trials(postgres_url, "pg")
    assert len(trials) == 60
    with pytest.raises(sa.exc.InternalError, match="read-only transaction"):
        with data.engine_for(postgres_url).connect() as conn:
            conn.execute(sa.text("UPDATE studies SET study_name = 'x'"))
    monkeypatch.setenv("AUTOPEFT_STORAGE", postgres_url)
    for view in VIEWS:
        app = AppTest.from_file(APP, default_timeout=120)
        app.session_state["view"] = view
        app.run()
        assert not app.exception, (view, [e.value for e in app.exception])


def test_trial_page_shows_the_value_at_each_rung(big_database):
    url, _ = big_database
    trials, _ = data.load_trials(url, "mixed-2000")
    number = int(trials.loc[trials["state"] == "PRUNED", "number"].iloc[0])
    app = AppTest.from_file(APP, default_timeout=120)
    app.session_state["view"] = "Trial"
    app.session_state["search"] = "mixed-2000"
    app.session_state["trial_number"] = number
    app.run()
    assert not app.exception
    figure = json.loads(app.get("plotly_chart")[0].proto.spec)
    rungs = next(t for t in figure["data"] if t["name"].endswith("at rung"))
    study = optuna.load_study(study_name="mixed-2000", storage=storage.open_storage(url))
    reported = study.trials[number].intermediate_values
    assert dict(zip(rungs["x"], rungs["y"])) == pytest.approx(reported)
