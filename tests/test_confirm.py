"""`autopeft confirm` on a real search: the knee retrained with new seeds through the real worker, per-seed values
and mean ± std stored on the original trial and shown by `search show`."""

from __future__ import annotations

import json
import statistics

import pytest

from autopeft.results.pareto import pareto_front
from autopeft.results.pick import choose, parse_pick
from autopeft.store import storage
from tests.conftest import run_cli as cli


def test_confirm_the_knee_with_two_seeds(small_search, capsys):
    _, url, name = small_search
    code, out, err = cli(capsys, "confirm", name, "--pick", "knee", "--seeds", "2", "--executor", "local",
                         "--storage", url)
    assert code == 0, err
    study, spec = storage.load_search(storage.open_storage(url), name)
    records = storage.trial_records(study, spec)
    [knee] = choose(records, spec, [parse_pick("knee", spec)])
    confirmation = knee.confirmation
    assert confirmation is not None and confirmation["succeeded"] == 2
    assert len(set(confirmation["seeds"])) == 2 and spec.seed + knee.number not in confirmation["seeds"]
    assert confirmation["steps"] == spec.budget.steps_per_trial
    accuracies = [run["measurements"]["accuracy"] for run in confirmation["runs"]]
    assert all(0.0 <= a <= 1.0 for a in accuracies)
    assert confirmation["mean"]["accuracy"] == pytest.approx(statistics.fmean(accuracies))
    assert confirmation["std"]["accuracy"] == pytest.approx(statistics.stdev(accuracies))
    # Same configuration, same size: the cost objective does not move with the seed.
    assert confirmation["mean"]["trainable_params"] == knee.values["trainable_params"]
    assert confirmation["std"]["trainable_params"] == 0.0
    others = [r for r in records if r.number != knee.number]
    assert all(r.confirmation is None for r in others)

    code, shown, _ = cli(capsys, "search", "show", name, "--json", "--storage", url)
    trials = {t["number"]: t for t in json.loads(shown)["trials"]}
    assert trials[knee.number]["confirmation"]["mean"]["accuracy"] == pytest.approx(confirmation["mean"]["accuracy"])
    code, table, _ = cli(capsys, "search", "show", name, "--storage", url)
    assert code == 0 and "Confirmed trials" in table and "±" in table


def test_bad_trial_lists_are_one_line_errors(small_search, capsys):
    _, url, name = small_search
    study, spec = storage.load_search(storage.open_storage(url), name)
    front = pareto_front(storage.trial_records(study, spec), spec)
    for trials, words in (("x,1", "expected trial numbers"), ("999", "has no trial 999")):
        code, _, err = cli(capsys, "confirm", name, "--trials", trials, "--storage", url)
        assert code == 2 and err.startswith("error: --trials") and words in err and err.count("\n") == 1
    code, _, err = cli(capsys, "confirm", name, "--trials", str(front[0].number), "--pick", "knee", "--storage", url)
    assert code == 2 and "give one of them" in err
    code, _, err = cli(capsys, "confirm", name, "--near-chance", "--storage", url)  # its front point is below the bar
    assert code == 2 and err.startswith("error: near_chance: no front point") and err.count("\n") == 1


def test_a_front_point_near_its_bar_is_retrained_after_the_search_and_judged_by_the_new_seeds(tmp_path, monkeypatch,
                                                                                            capsys):
    """The search's last step, for real: every front point that cleared chance within ``NEAR_BAR`` standard
    deviations of noise (widened here, so that a point that learns in a few seconds counts) is trained again with
    ``budget.confirm_near_chance`` new seeds on the search's own workers, and its verdict comes from their mean."""
    from autopeft.results import chance
    from autopeft.results.noise import assess
    from autopeft.search.launch import start_search
    from autopeft.spec import load_spec
    from tests.conftest import ONE_AT_A_TIME, tiny_spec, write_spec

    monkeypatch.setattr(chance, "NEAR_BAR", 1e6)
    spec = load_spec(write_spec(tmp_path, tiny_spec(
        tmp_path, budget={"trials": 2, "steps_per_trial": 40, "confirm_near_chance": 2}, constraints=[],
        workers=ONE_AT_A_TIME)))
    said: list[str] = []
    name = start_search(spec, name="near", executor="local", on_progress=lambda event: said.append(event.message))
    study, spec = storage.load_search(storage.open_storage(spec.storage), name)
    records = storage.trial_records(study, spec)
    report = assess(study, records, spec)
    retrained = [r for r in records if r.confirmation]
    assert retrained, f"no front point cleared chance in this search: {report.to_json()}"
    assert {r.number for r in retrained} == set(report.single_seed) <= set(report.front)
    assert any("retrained with 2 new seeds" in m for m in said)
    for record in retrained:
        confirmation = record.confirmation
        assert confirmation["at_search_fidelity"] and confirmation["succeeded"] == 2
        assert confirmation["steps"] == 40 and spec.seed + record.number not in confirmation["seeds"]
        test = report.tests[record.number]
        assert test.method == "confirmed" and test.value == pytest.approx(confirmation["mean"]["accuracy"])
        assert report.single_seed[record.number].near_bar  # what sent it back, on the search's own seed
    assert not report.near_bar  # nothing left to retrain

    from dashboard import data as dashboard_data  # the dashboard reads the same verdicts from SQL alone

    frame, _ = dashboard_data.load_trials(spec.storage, name)
    shown_there = dashboard_data.noise_report(spec.storage, name, frame, spec)
    assert shown_there["confirmed"] == report.to_json()["confirmed"]

    code, shown, _ = cli(capsys, "search", "show", name, "--storage", spec.storage)
    assert code == 0 and "new seeds" in shown
