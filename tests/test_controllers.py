"""Two controllers, in two processes with their own workers, drive one search on PostgreSQL: together they train
exactly the budget, both contribute, and no configuration is proposed twice."""

from __future__ import annotations

import subprocess
import sys
import time

import optuna
from optuna.trial import TrialState

from autopeft import storage
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
