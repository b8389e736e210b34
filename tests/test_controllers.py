"""Two controllers, in two processes with their own workers, drive one search on PostgreSQL: together they train
exactly the budget, both contribute, and no configuration is proposed twice."""

from __future__ import annotations

import subprocess
import sys
import time

import optuna
from optuna.trial import TrialState

from autopeft.store import storage
from tests.conftest import tiny_spec, write_spec

BUDGET = 5


def _wait_for_search(url: str, name: str, process: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if name in storage.search_names(storage.open_storage(url)):
            return
        assert process.poll() is None, process.communicate()[1][-2000:]
        time.sleep(0.5)
    raise AssertionError(f"search {name} was not created in {timeout} s")


def test_two_controllers_share_the_budget_without_duplicates(tmp_path, postgres_url):
    spec = tiny_spec(tmp_path, budget={"trials": BUDGET, "steps_per_trial": 30}, storage=postgres_url)
    command = [sys.executable, "-m", "autopeft.cli", "search"]
    first = subprocess.Popen([*command, "run", str(write_spec(tmp_path, spec)), "--name", "shared",
                              "--executor", "local"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_search(postgres_url, "shared", first)
    second = subprocess.Popen([*command, "join", "shared", "--storage", postgres_url, "--executor", "local"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for process in (first, second):
        _, err = process.communicate(timeout=600)
        assert process.returncode == 0, err[-2000:]

    study = optuna.load_study(study_name="shared", storage=storage.open_storage(postgres_url))
    trials = study.get_trials()
    counted = [t for t in trials if storage.counts_against_budget(t)]
    assert len(counted) == BUDGET, [(t.number, t.state, t.user_attrs.get(storage.FAIL_REASON)) for t in trials]
    assert all(t.state == TrialState.COMPLETE for t in counted)
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    owners = {t.user_attrs[storage.OWNER] for t in counted}
    assert len(owners) == 2, owners  # both controllers trained trials
    configurations = [tuple(sorted(t.params.items())) for t in counted]
    assert len(set(configurations)) == len(configurations)
    assert study.user_attrs[storage.FINISHED] is True


def test_the_last_unit_of_budget_goes_to_the_earlier_trial(tmp_path):
    """The race two controllers run for the last trial, set up deterministically on a real study: the trial
    numbered later stands back, closed as REJECTED (no budget spent), and the earlier one runs."""
    from autopeft.search.controller import SearchController
    from autopeft.search.samplers import make_sampler
    from autopeft.spec import parse_spec

    spec = parse_spec(tiny_spec(tmp_path, budget={"trials": 2, "steps_per_trial": 1}))
    study = storage.create_search(storage.open_storage(spec.storage), "race", spec, make_sampler(spec))
    distribution = {"x": optuna.distributions.FloatDistribution(0, 1)}
    study.tell(study.ask(distribution), [0.5, 1.0])  # one trial done
    theirs = study.ask(distribution)  # another controller's trial takes the last unit ...
    theirs.set_user_attr(storage.OWNER, "elsewhere:1")
    mine = study.ask(distribution)  # ... while this controller's ask raced it
    controller = SearchController(study, spec, space=None, executor=None, train_size=1)

    assert controller._claim(mine) is False
    closed = study.get_trials()[mine.number]
    assert closed.state == TrialState.FAIL and closed.user_attrs[storage.REJECTED] is True
    assert closed.user_attrs[storage.FAIL_REASON] == "not run: other controllers took the rest of the budget"
    assert not storage.counts_against_budget(closed)
    assert storage.ahead_of(study.get_trials(), theirs.number) < spec.budget.trials  # theirs keeps its place
