"""Picking from the front of a real search: `export --pick` exports the dashboard's knee, the best under a budget,
the best of one measurement; bad picks are one-line errors that name the flag."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from autopeft.cli import entry_point
from autopeft.results.pareto import pareto_front
from autopeft.results.pick import knee_index
from autopeft.store import storage
from dashboard import analysis, data

NAME = "small"


@pytest.fixture(scope="module")
def searched(small_search):
    tmp_path, url, name = small_search
    study, spec = storage.load_search(storage.open_storage(url), name)
    front = pareto_front(storage.trial_records(study, spec), spec)
    return tmp_path, url, spec, front


def export(url: str, out: Path, capsys, *picks: str) -> tuple[int, str]:
    """The command line in this process (its entry point, exit code and stderr as a user sees them). The small
    search's 10-step trials are within noise of chance, which --pick refuses by default (tested in
    tests/test_nothing_learned.py and below); here the picking itself is tested, so they are let in."""
    args = ["export", NAME, "--out", str(out), "--storage", url, "--include-chance"]
    for pick in picks:
        args += ["--pick", pick]
    capsys.readouterr()
    try:
        entry_point(args)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


def exported_trials(out: Path) -> list[int]:
    return sorted(int(p.name.removeprefix("trial-")) for p in out.glob("trial-*"))


def test_knee_is_the_dashboards_knee_and_only_it_is_exported(searched, capsys):
    tmp_path, url, spec, front = searched
    code, err = export(url, tmp_path / "knee", capsys, "knee")
    assert code == 0, err
    trials, _ = data.load_trials(url, NAME)
    assert exported_trials(tmp_path / "knee") == [analysis.knee(trials, spec)]
    summary = (tmp_path / "knee" / "summary.csv").read_text().splitlines()
    assert len(summary) == 2  # header + the one picked trial


def test_budget_and_max_picks(searched, capsys):
    tmp_path, url, spec, front = searched
    params = sorted(r.values["trainable_params"] for r in front)
    limit = params[0]  # only the cheapest front point fits
    code, err = export(url, tmp_path / "budget", capsys, f"budget:trainable_params<={int(limit)}")
    assert code == 0, err
    [picked] = exported_trials(tmp_path / "budget")
    metrics = json.loads((tmp_path / "budget" / f"trial-{picked:04d}" / "metrics.json").read_text())
    assert metrics["objectives"]["trainable_params"] <= limit
    code, err = export(url, tmp_path / "max", capsys, "max:accuracy", "min:trainable_params")
    assert code == 0, err
    best = max(front, key=lambda r: r.values["accuracy"]).number
    cheapest = min(front, key=lambda r: r.values["trainable_params"]).number
    assert exported_trials(tmp_path / "max") == sorted({best, cheapest})


@pytest.mark.parametrize("pick, words", [
    ("elbow", "expected knee"),
    ("max:accurracy", "unknown measurement 'accurracy'"),
    ("budget:trainable_params<=lots", "expected knee"),
    ("budget:trainable_params<=1", "no Pareto-optimal trial fits (the front has"),
    ("budget:trainable_params<=1", ", the least trainable_params among them "),  # how far the bound is
    # A name with a digit was taken for a malformed pick ("expected knee | ..."): it is a measurement's name.
    ("budget:f2<=1", "unknown measurement 'f2'"),
])
def test_bad_picks_are_one_line_errors_naming_the_flag(searched, capsys, pick, words):
    tmp_path, url, _, _ = searched
    code, err = export(url, tmp_path / "bad", capsys, pick)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: --pick") and words in err
    assert not (tmp_path / "bad").exists()


def test_knee_on_a_known_front():
    """Accuracy against log10 parameters: the gain flattens after the second point, so that is the knee; with
    three objectives the point nearest the ideal point wins."""
    losses = np.array([[-0.60, 3.0], [-0.80, 4.0], [-0.82, 5.0], [-0.83, 6.0]])
    assert knee_index(losses) == 1
    assert knee_index(np.array([[0.0, 1.0, 1.0], [0.4, 0.3, 0.4], [1.0, 0.0, 0.0]])) == 1


def _record(number: int, accuracy: float, params: float):
    return storage.TrialRecord(number=number, state="COMPLETE", config={"method": "lora"},
                               values={"accuracy": accuracy, "trainable_params": params},
                               measurements={"accuracy": accuracy, "trainable_params": params}, fail_reason=None,
                               adapter_dir=None, feasible=True)


def test_picks_skip_points_at_chance_and_points_a_cheaper_one_matches(searched):
    from autopeft.errors import UserError
    from autopeft.results.chance import ChanceTest
    from autopeft.results.noise import NoiseReport
    from autopeft.results.pick import Pick, choose

    spec = searched[2]
    records = [_record(1, 0.90, 1e5), _record(2, 0.89, 1e4), _record(3, 0.80, 1e3), _record(4, 0.55, 1e2)]
    noise = NoiseReport("accuracy", True, None, 4, [1, 2, 3, 4],
                        tests={n: ChanceTest(v, 0.6, v > 0.6, "permutation")
                               for n, v in ((1, 0.9), (2, 0.89), (3, 0.8), (4, 0.55))},
                        matched_by={1: 2})
    numbers = lambda picks, **kw: [r.number for r in choose(records, spec, picks, noise, **kw)]  # noqa: E731
    assert numbers([Pick("max", "accuracy")]) == [2]  # trial 1 is matched within noise by the cheaper trial 2
    assert numbers([Pick("min", "trainable_params")]) == [3]  # trial 4 is at chance
    assert numbers([Pick("min", "trainable_params")], include_chance=True) == [4]
    assert numbers([Pick("max", "accuracy")], include_chance=True) == [2]
    everything_at_chance = NoiseReport("accuracy", True, None, 4, [1, 2, 3, 4],
                                       tests={n: ChanceTest(0.5, 0.95, False, "permutation") for n in (1, 2, 3, 4)})
    with pytest.raises(UserError, match="--include-chance"):
        choose(records, spec, [Pick("knee")], everything_at_chance)
