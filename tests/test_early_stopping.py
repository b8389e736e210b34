"""Pareto-aware early stopping: the ranking rule on known points; a real search with a rung where the worker
evaluates, the rule stops dominated trials, and the controller stores them as PRUNED, outside the front; and the
rung board, through which trials running at the same time judge each other (in process and on Ray)."""

from __future__ import annotations

import time

import optuna
import pytest

from autopeft.errors import UserError
from autopeft.results.pareto import pareto_front
from autopeft.search.launch import start_search
from autopeft.search.rung_board import RayRungBoard, RungBoard
from autopeft.search.scheduler import goes_on, nondominated_ranks, rung_steps
from autopeft.search.trial import RungPlan
from autopeft.spec import load_spec
from autopeft.store import storage
from dashboard.data import _execution
from tests.conftest import ONE_AT_A_TIME, tiny_spec, write_spec
from workers.tasks import Evaluation
from workers.worker import Rungs

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
        tmp_path, constraints=[], budget={"trials": 5, "steps_per_trial": 8, "rungs": [0.5], "reduction_factor": 2},
        # TPE, whose seed-0 proposals include trials dominated at the rung; the default sampler avoids proposing
        # what it expects to be stopped, and this test is about the rule, not the proposals.
        sampler="tpe", workers=ONE_AT_A_TIME)))
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


def _rungs(number: int, accuracy: float, params: float, plan: RungPlan) -> Rungs:
    return Rungs(plan, lambda: Evaluation({"accuracy": accuracy}), {"trainable_params": params}, number)


def test_the_board_shows_trials_running_alongside_and_counts_none_twice():
    board = RungBoard()
    recorded = [{"accuracy": 0.9, "trainable_params": 100.0}]  # trial 0, in the database when the others started
    plan = RungPlan((4,), {4: recorded}, SIGNS, 3.0, known=frozenset({0}), board=board)
    board.post(0, 4, recorded[0])  # trial 0 had posted too: it must not count twice
    first = _rungs(1, 0.85, 50.0, plan)
    assert first(4) and first.rivals == {4: 1}  # two points, factor 3: too few to judge
    # Trial 2 started with the same table, before trial 1 reached its rung; it sees trial 1 only through the board.
    second = _rungs(2, 0.8, 200.0, plan)
    assert not second(4) and second.rivals == {4: 2} and second.stopped_at == 4  # three points: dominated, stops
    assert set(board.read(4)) == {0, 1, 2}  # it posted its own point before stopping
    blind = _rungs(3, 0.8, 200.0, RungPlan((4,), {4: recorded}, SIGNS, 3.0, known=frozenset({0})))
    assert blind(4) and blind.rivals == {4: 1}  # with the table alone it would have gone on
    assert first(3) and first.rivals == {4: 1}  # a step that is no rung is not judged


def test_concurrent_ray_trials_see_each_others_rungs(tmp_path, ray_cluster):
    spec = load_spec(write_spec(tmp_path, tiny_spec(
        tmp_path, constraints=[], budget={"trials": 4, "steps_per_trial": 8, "rungs": [0.5], "reduction_factor": 2})))
    start_search(spec, name="board", executor="ray")
    study, stored = storage.load_search(storage.open_storage(spec.storage), "board")
    records = storage.trial_records(study, stored)
    judged = {r.number: r.execution["rung_rivals"] for r in records if r.rungs}
    assert sorted(judged) == [0, 1, 2, 3]
    # Trials 0 and 1 started together with an empty table. Each posts before it reads, so whichever decided
    # second saw the other: without the board both would have judged alone. (A trial slow to start can also see
    # trial 2, which starts when the other finishes: seen in CI as {0: 2, 1: 0}.)
    assert max(judged[0]["4"], judged[1]["4"]) >= 1, judged
    # Never more rivals than other trials, however the points arrived (none counted from both table and board).
    assert all(rivals["4"] <= len(judged) - 1 for rivals in judged.values()), judged
    shown = _execution(records[3].execution)  # the trial page says what each decision was judged by
    assert f"rivals at rungs: {judged[3]['4']} at step 4" in shown, shown


def test_a_lost_ray_board_leaves_trials_judging_by_their_table(ray_cluster):
    board = RayRungBoard(ray_cluster)
    board.post(1, 4, {"accuracy": 0.7, "trainable_params": 10.0})
    assert board.read(4) == {1: {"accuracy": 0.7, "trainable_params": 10.0}}
    ray_cluster.kill(board._actor)  # the board's actor dies for real
    # ray.kill returns before the actor is gone (on a loaded machine a call made right after still reached it):
    # wait until calls meet a dead actor.
    deadline = time.monotonic() + 60
    while True:
        try:
            ray_cluster.get(board._actor.read.remote(4), timeout=10)
        except ray_cluster.exceptions.RayActorError:
            break
        assert time.monotonic() < deadline, "the killed board still answers"
        time.sleep(0.1)
    board.post(2, 4, {"accuracy": 0.5, "trainable_params": 10.0})  # no error: the point is just not shared
    assert board.read(4) == {}
    plan = RungPlan((4,), {4: [{"accuracy": 0.9, "trainable_params": 1.0}]}, SIGNS, 2.0, board=board)
    assert not _rungs(3, 0.5, 10.0, plan)(4)  # judged by the table alone: dominated by the recorded point
    board.close(ray_cluster)
