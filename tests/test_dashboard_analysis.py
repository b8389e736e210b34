"""The dashboard's picks and measures on trial tables whose answer is known by construction."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from autopeft.spec import load_spec
from dashboard import analysis
from tests.conftest import tiny_spec, write_spec


@pytest.fixture
def spec(tmp_path):
    return load_spec(write_spec(tmp_path, tiny_spec(tmp_path)))


def table(rows: list[tuple[float, float]], **extra) -> pd.DataFrame:
    """Completed feasible trials with (trainable_params, accuracy), numbered in order."""
    frame = pd.DataFrame(rows, columns=["trainable_params", "accuracy"])
    frame["number"] = range(len(frame))
    frame["state"] = "COMPLETE"
    frame["feasible"] = True
    frame["baseline"] = False
    frame["method"] = "lora"
    frame["complete"] = pd.date_range("2026-01-01", periods=len(frame), freq="min")
    for key, value in extra.items():
        frame[key] = value
    return frame


def test_knee_is_where_accuracy_stops_paying_for_parameters(spec):
    trials = table([(1e3, 0.60), (1e4, 0.80), (1e5, 0.82), (1e6, 0.83), (1e5, 0.70)])
    assert analysis.front(trials, spec).tolist() == [True, True, True, True, False]
    assert analysis.knee(trials, spec) == 1


def test_best_under_a_budget(spec):
    trials = table([(1e3, 0.60), (1e4, 0.80), (1e5, 0.82), (1e6, 0.83)])
    assert analysis.best_under_budget(trials, spec, "trainable_params", 5e4) == 1
    assert analysis.best_under_budget(trials, spec, "trainable_params", 2e5) == 2
    assert analysis.best_under_budget(trials, spec, "trainable_params", 10) is None


def test_infeasible_failed_and_baseline_trials_never_reach_the_front(spec):
    trials = table([(1e3, 0.60), (1e2, 0.90), (1e2, 0.95), (1e2, 0.99)])
    trials.loc[1, "feasible"] = False
    trials.loc[2, "baseline"] = True
    trials.loc[3, "state"] = "PRUNED"
    assert analysis.front(trials, spec).tolist() == [True, False, False, False]


def test_hypervolume_grows_only_when_the_front_moves(spec):
    trials = table([(1e4, 0.70), (1e5, 0.60), (1e3, 0.80)])
    history = analysis.hypervolume_history(trials, spec)
    assert history["hypervolume"].tolist()[0] == history["hypervolume"].tolist()[1]  # dominated: no change
    assert history["hypervolume"].iloc[2] > history["hypervolume"].iloc[1]
    # After the third trial one point dominates everything: normalised it sits at (0, 0), so 1.1 * 1.1.
    assert history["hypervolume"].iloc[2] == pytest.approx(1.21)


def test_importance_finds_the_parameter_that_decides_the_metric(spec):
    rng = np.random.default_rng(0)
    size = rng.choice([4, 8, 16, 32], 200)
    trials = table([(float(s) * 1000, 0.5 + 0.01 * s + rng.normal(0, 0.005)) for s in size],
                   size=size, learning_rate=rng.uniform(1e-4, 1e-3, 200))
    ranked = analysis.importance(trials, "accuracy")
    assert ranked["parameter"].iloc[0] == "size" and ranked["importance"].iloc[0] > 0.9
    assert ranked.set_index("parameter").loc["learning_rate", "importance"] < 0.1
