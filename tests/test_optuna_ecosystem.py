"""A finished search is an Optuna study that Optuna's own tools read: `optuna.load_study`, its DataFrame, its plots,
and optuna-dashboard's web API (its WSGI app, called in this process), on a real search in a real SQLite file.

The search trains real MiniLM trials, rejects proposals whose known costs break its constraint, and gets a
baseline trained into it, so the trials that are not part of the search's front are there to be told apart."""

from __future__ import annotations

import csv
import io
import json
import re
from wsgiref.util import setup_testing_defaults

import optuna
import pytest
from optuna.trial import TrialState
from optuna.visualization import plot_optimization_history, plot_param_importances, plot_pareto_front

from autopeft.results.baselines import train_baselines
from autopeft.results.pareto import dominates
from autopeft.search.launch import start_search
from autopeft.spec import load_spec
from autopeft.store import storage
from tests.conftest import ONE_AT_A_TIME, run_cli, tiny_spec, write_spec

# Ped-ANOVA, on a handful of trials, warns that each parameter's regimes are thin, and that it ranks for low targets.
pytestmark = [pytest.mark.filterwarnings("ignore:Some regimes for parameter:UserWarning"),
              pytest.mark.filterwarnings("ignore:PedAnovaImportanceEvaluator computes:UserWarning")]

NAME = "eco"
OBJECTIVES = ["accuracy", "trainable_params"]
# Documented in README.md ("Optuna and optuna-dashboard").
STUDY_ATTRS = {storage.SPEC, storage.LABELS, storage.CHANCE, storage.EVAL_ROWS, storage.EVAL_TARGETS,
               storage.FINISHED}
TRAINED_ATTRS = {storage.CONFIG, storage.MEASUREMENTS, storage.LOSS_CURVE, storage.ADAPTER_DIR, storage.WORKER,
                 storage.VIOLATIONS, storage.PREDICTIONS}


@pytest.fixture(scope="module")
def search(tmp_path_factory):
    """One finished search (4 LoRA trials of 4 steps: the tests read what Optuna stores, not what they learn; with
    trainable_percent <= 0.3 some proposals of this seed are rejected before training) plus the BitFit baseline:
    (storage URL, study as Optuna loads it, spec)."""
    tmp_path = tmp_path_factory.mktemp("optuna-ecosystem")
    spec = load_spec(write_spec(tmp_path, tiny_spec(
        tmp_path, budget={"trials": 4, "steps_per_trial": 4},
        # TPE proposes some configurations over the constraint, rejected before training: records Optuna's tools
        # must read too. The default sampler never proposes them.
        sampler="tpe", constraints=[{"name": "trainable_percent", "max": 0.3}], workers=ONE_AT_A_TIME)))
    start_search(spec, name=NAME, executor="local")
    study, stored = storage.load_search(storage.open_storage(spec.storage), NAME)
    train_baselines(study, stored, ["bitfit"], executor="local")
    return spec.storage, optuna.load_study(study_name=NAME, storage=spec.storage), stored


def kinds(study: optuna.Study) -> dict[str, list[optuna.trial.FrozenTrial]]:
    trials = study.get_trials()
    return {
        "trained": [t for t in trials if t.state == TrialState.COMPLETE and not storage.is_reference(t)
                    and not t.user_attrs.get(storage.DUPLICATE)],
        "rejected": [t for t in trials if t.user_attrs.get(storage.REJECTED)],
        "baseline": [t for t in trials if t.user_attrs.get(storage.BASELINE)],
    }


def test_load_study_reads_directions_attributes_and_the_trials(search):
    url, study, spec = search
    assert [d.name.lower() for d in study.directions] == [o.resolved_direction for o in spec.objectives]
    assert [o.name for o in spec.objectives] == OBJECTIVES
    assert STUDY_ATTRS <= set(study.user_attrs) and study.user_attrs[storage.FINISHED] is True
    assert [o["name"] for o in study.user_attrs[storage.SPEC]["objectives"]] == OBJECTIVES  # the resolved spec
    assert study.metric_names == OBJECTIVES  # named, in the spec's order of objectives

    trials = kinds(study)
    assert len(trials["trained"]) == spec.budget.trials
    assert trials["rejected"], "trainable_percent <= 0.3 should reject a proposal of seed 0 before training"
    assert len(trials["baseline"]) == 1
    for trial in trials["trained"]:
        assert TRAINED_ATTRS <= set(trial.user_attrs)
        assert trial.values == [trial.user_attrs[storage.MEASUREMENTS][n] for n in OBJECTIVES]
        assert trial.params and trial.constraints == {"trainable_percent": 0.0}
        assert not storage.is_reference(trial) and storage.counts_against_budget(trial)
    for trial in trials["rejected"]:  # told PRUNED with its constraint values, so samplers steer away
        assert trial.state == TrialState.PRUNED and trial.user_attrs[storage.INFEASIBLE] is True
        assert trial.user_attrs[storage.FAIL_REASON].startswith("infeasible before training: trainable_percent")
        assert trial.constraints["trainable_percent"] > 0 and trial.values is None
        assert not storage.counts_against_budget(trial)
    baseline = trials["baseline"][0]
    assert baseline.user_attrs[storage.BASELINE] == "bitfit" and baseline.state == TrialState.COMPLETE
    assert not baseline.params and baseline.values and storage.is_reference(baseline)

    frame = study.trials_dataframe()
    assert len(frame) == len(study.trials)
    assert {"values_accuracy", "values_trainable_params", "params_lora.r", "state", "user_attrs_baseline",
            "user_attrs_rejected", "user_attrs_fail_reason", "user_attrs_measurements"} <= set(frame.columns)
    by_number = frame.set_index("number")
    assert by_number.loc[baseline.number, "user_attrs_baseline"] == "bitfit"
    assert all(by_number.loc[t.number, "state"] == "PRUNED" for t in trials["rejected"])


def test_best_trials_are_the_front_plus_undominated_reference_trials(search, capsys):
    """Optuna's Pareto front (study.best_trials, and optuna-dashboard's) ranks every complete feasible trial;
    autopeft's leaves out baselines, probe runs and repeats. So: the front that `search show` reports, less any
    point a reference trial dominates, plus the reference trials and repeats that nothing dominates."""
    url, study, spec = search
    code, out, err = run_cli(capsys, "search", "show", NAME, "--json", "--storage", url)
    assert code == 0, err
    front = {t["number"] for t in json.loads(out)["trials"] if t["pareto"]}
    assert front and front <= {t.number for t in kinds(study)["trained"]}

    signs = [1.0 if d == optuna.study.StudyDirection.MAXIMIZE else -1.0 for d in study.directions]
    complete = [t for t in study.get_trials(states=(TrialState.COMPLETE,)) if all(v <= 0 for v in
                                                                                t.constraints.values())]
    others = [t for t in complete if storage.is_reference(t) or t.user_attrs.get(storage.DUPLICATE)]
    expected = {n for n in front if not any(dominates(o.values, study.trials[n].values, signs) for o in others)}
    expected |= {o.number for o in others if not any(dominates(t.values, o.values, signs) for t in complete)}
    assert {t.number for t in study.best_trials} == expected


def numbers_in(trace) -> list[int]:
    return [int(re.search(r'"number": (\d+)', text).group(1)) for text in trace.text or ()]


def test_visualization_plots_the_search(search):
    _, study, _ = search
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    best = sorted(t.number for t in study.best_trials)

    pareto = plot_pareto_front(study, target_names=OBJECTIVES)
    assert (pareto.layout.xaxis.title.text, pareto.layout.yaxis.title.text) == tuple(OBJECTIVES)
    plotted = [numbers_in(trace) for trace in pareto.data]
    assert sorted(n for numbers in plotted for n in numbers) == sorted(t.number for t in complete)
    assert best in [sorted(numbers) for numbers in plotted]  # the best trials are one trace
    baseline = kinds(study)["baseline"][0]
    hover = {n: text for trace in pareto.data for n, text in zip(numbers_in(trace), trace.text or ())}
    assert '"baseline": "bitfit"' in hover[baseline.number]  # told apart by its attributes on hover

    history = plot_optimization_history(study, target=lambda t: t.values[0], target_name="accuracy")
    points = [(x, y) for trace in history.data if trace.name == "accuracy" for x, y in zip(trace.x, trace.y)]
    assert sorted(points) == sorted((t.number, t.values[0]) for t in complete)

    # Ped-ANOVA (Optuna's default) ranks parameters by how they reach *low* targets: negate a maximised one.
    importances = plot_param_importances(study, target=lambda t: -t.values[0], target_name="accuracy")
    searched = set(kinds(study)["trained"][0].params)  # the baseline, with no parameters, is left out
    assert set(importances.data[0].y) == searched and len(searched) > 5


class Dashboard:
    """optuna-dashboard's WSGI app on the storage URL, called in this process without a server."""

    def __init__(self, url: str):
        import optuna_dashboard

        self.app = optuna_dashboard.wsgi(url)

    def get(self, path: str) -> tuple[str, bytes]:
        environ: dict = {}
        setup_testing_defaults(environ)
        environ.update(REQUEST_METHOD="GET", PATH_INFO=path, QUERY_STRING="")
        status: list[str] = []
        body = b"".join(self.app(environ, lambda s, headers, exc_info=None: status.append(s)))
        return status[0], body

    def json(self, path: str) -> dict:
        status, body = self.get(path)
        assert status.startswith("200"), (path, status, body[:300])
        return json.loads(body)


def test_optuna_dashboard_lists_the_search_and_its_trials(search):
    url, study, _ = search
    dashboard = Dashboard(url)
    listed = [s for s in dashboard.json("/api/studies")["study_summaries"] if s["study_name"] == NAME]
    assert len(listed) == 1 and listed[0]["directions"] == ["maximize", "minimize"]
    study_attrs = {a["key"]: a["value"] for a in listed[0]["user_attrs"]}
    assert STUDY_ATTRS <= set(study_attrs)
    # It cuts attribute values at 1,024 characters: the stored spec is whole only through Optuna.
    assert len(study_attrs[storage.SPEC]) == 1024 < len(json.dumps(study.user_attrs[storage.SPEC]))

    study_id = listed[0]["study_id"]
    detail = dashboard.json(f"/api/studies/{study_id}")
    assert detail["name"] == NAME and detail["directions"] == ["maximize", "minimize"]
    assert detail["objective_names"] == OBJECTIVES  # shown by name, in the spec's order
    assert len(detail["trials"]) == len(study.trials)
    assert sorted(t["number"] for t in detail["best_trials"]) == sorted(t.number for t in study.best_trials)

    shown = {t["number"]: t for t in detail["trials"]}
    # optuna-dashboard 0.21 reads only Optuna's older list of constraint values, so it shows none; the
    # constraint_violations attribute has them.
    assert all(t["constraints"] == [] for t in detail["trials"])
    for trial in kinds(study)["trained"]:
        got = shown[trial.number]
        assert got["state"] == "Complete" and got["values"] == trial.values
        assert {p["name"]: p["param_external_value"] for p in got["params"]} == {
            k: str(v) for k, v in trial.params.items()}
        attrs = {a["key"]: a["value"] for a in got["user_attrs"]}
        assert TRAINED_ATTRS <= set(attrs) and json.loads(attrs[storage.CONFIG]) == trial.user_attrs[storage.CONFIG]
        assert json.loads(attrs[storage.MEASUREMENTS]) == trial.user_attrs[storage.MEASUREMENTS]
    # What autopeft keeps outside its front is marked in the attributes the dashboard lists.
    for trial in kinds(study)["rejected"]:
        got = shown[trial.number]
        attrs = {a["key"]: a["value"] for a in got["user_attrs"]}
        assert got["state"] == "Pruned" and "values" not in got
        assert attrs[storage.REJECTED] == "True" and attrs[storage.FAIL_REASON].startswith("infeasible before")
    baseline = shown[kinds(study)["baseline"][0].number]
    assert baseline["state"] == "Complete" and not baseline["params"]
    assert {a["key"]: a["value"] for a in baseline["user_attrs"]}[storage.BASELINE] == "bitfit"

    importances = dashboard.json(f"/api/studies/{study_id}/param_importances")["param_importances"]
    assert len(importances) == 2  # one ranking per objective
    assert {i["name"] for i in importances[0]} == set(kinds(study)["trained"][0].params)

    status, body = dashboard.get(f"/csv/{study_id}")
    assert status.startswith("200")
    rows = list(csv.reader(io.StringIO(body.decode())))
    assert len(rows) == len(study.trials) + 1
    assert rows[0][:4] == ["Number", "State", *OBJECTIVES]
    assert "UserAttribute baseline" in rows[0] and "UserAttribute fail_reason" in rows[0]
