"""`autopeft confirm` on a real search: the knee retrained with new seeds through the real worker, per-seed values
and mean ± std stored on the original trial and shown by `search show`."""

from __future__ import annotations

import json
import statistics

import pytest

from autopeft import storage
from autopeft.pareto import pareto_front
from autopeft.pick import choose, parse_pick
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
    assert code == 2 and "one or the other" in err
