"""Pareto-aware early stopping: the ranking rule on known points, and a real search with a rung where the worker
evaluates, the rule stops dominated trials, and the controller stores them as PRUNED, outside the front."""

from __future__ import annotations

import optuna
import pytest

from autopeft import storage
from autopeft.errors import UserError
from autopeft.pareto import pareto_front
from autopeft.scheduler import goes_on, nondominated_ranks, rung_steps
from autopeft.search import start_search
from autopeft.spec import load_spec
from tests.conftest import tiny_spec, write_spec

SIGNS = {"accuracy": 1.0, "trainable_params": -1.0}


def test_ranks_and_the_rule_on_known_points():
    points = [[0.8, -100], [0.7, -50], [0.7, -100], [0.6, -200]]  # (accuracy, -params): maximise both
    assert nondominated_ranks(points, [1.0, 1.0]) == [0, 0, 1, 2]
    others = [{"accuracy": 0.8, "trainable_params": 100}, {"accuracy": 0.7, "trainable_params": 50},
              {"accuracy": 0.7, "trainable_params": 100}]
    # Four points, factor 2: the two on the first front go on; a dominated one stops.
    assert not goes_on({"accuracy": 0.6, "trainable_params": 200}, others, SIGNS, 2)
    assert goes_on({"accuracy": 0.9, "trainable_params": 1000}, others, SIGNS, 2)  # best metric, costly: on front
    assert goes_on({"accuracy": 0.1, "trainable_params": 10}, others, SIGNS, 2)  # cheapest: on the front too
    assert goes_on({"accuracy": 0.0, "trainable_params": 10**6}, others[:1], SIGNS, 3)  # too few points to judge
    assert rung_steps([0.25, 0.5], 10) == [2, 5] and rung_steps([0.5], 1) == []


def test_a_search_with_a_rung_stops_dominated_trials(tmp_path):
    spec = load_spec(write_spec(tmp_path, tiny_spec(
        tmp_path, constraints=[], budget={"trials": 5, "steps_per_trial": 8, "rungs": [0.5], "reduction_factor": 2})))
    start_search(spec, name="rungs", executor="local")
    study, stored = storage.load_search(storage.open_storage(spec.storage), "rungs")
    records = storage.trial_records(study, stored)
    assert len(records) == 5
    seen: list[dict] = []
    for record in records:  # one at a time (local executor): each trial was judged against all earlier ones
        [[step, point]] = record.rungs
        assert step == 4 and set(point) == set(SIGNS)
        assert (record.state == "PRUNED") == (not goes_on(point, seen, SIGNS, 2))
        seen.append(point)
        if record.state == "PRUNED":
            assert record.stopped_at == 4 and record.loss_curve[-1][0] == 4 and not record.values
            assert record.measurements["accuracy"] == point["accuracy"]  # its last values are kept
        else:
            assert record.state == "COMPLETE" and record.loss_curve[-1][0] == 8
    pruned = [r.number for r in records if r.state == "PRUNED"]
    assert pruned, "seed 0 gives dominated trials at the rung"
    assert not set(pruned) & {r.number for r in pareto_front(records, stored)}
    trials = study.get_trials()
    assert sum(storage.counts_against_budget(t) for t in trials) == 5
    assert {t.number for t in trials if t.state == optuna.trial.TrialState.PRUNED} == set(pruned)


def test_bad_rungs_are_named(tmp_path):
    for rungs in ([0.5, 0.25], [1.0], [0.0]):
        with pytest.raises(UserError, match="rungs: increasing fractions"):
            load_spec(write_spec(tmp_path, tiny_spec(tmp_path, budget={"trials": 2, "steps_per_trial": 8,
                                                                      "rungs": rungs})))
