"""Kill -9 the controller mid-search, resume with one command: the budget completes, nothing lost or run twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import optuna
from optuna.trial import TrialState

from autopeft.store import storage
from tests.conftest import ONE_AT_A_TIME, run_cli, tiny_spec, write_spec


def _trials(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    try:
        return optuna.load_study(study_name=name, storage=storage.open_storage(url)).get_trials()
    except KeyError:  # the study is not created yet
        return []


def test_resume_after_kill_completes_the_budget_without_duplicates(tmp_path, storage_url, capsys):
    spec = tiny_spec(tmp_path, budget={"trials": 3, "steps_per_trial": 25}, workers=ONE_AT_A_TIME,
                     storage=storage_url)  # on a SQLite file and on a PostgreSQL database
    spec_file = write_spec(tmp_path, spec)
    url = spec["storage"]
    command = [sys.executable, "-m", "autopeft.cli"]
    # Ray workers on SQLite (a killed controller takes its private Ray cluster with it); on PostgreSQL the storage
    # is what is under test, and trials in the controller's process spare a cluster start. The resume trains in
    # its own process either way: what is under test there is the study the kill left, not the executor.
    executor = ["--executor", "local"] if url.startswith("postgresql") else []
    controller = subprocess.Popen([*command, "search", "run", str(spec_file), "--name", "killed", *executor],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline:
            trials = _trials(url, "killed")
            states = [t.state for t in trials]
            # Killed while a trial trains (its configuration drawn and recorded), after one completed.
            if TrialState.COMPLETE in states and states[-1] == TrialState.RUNNING \
                    and storage.CONFIG in trials[-1].user_attrs:
                break
            assert controller.poll() is None, "the search ended before it could be killed"
            time.sleep(0.5)
        else:
            raise AssertionError("no trial completed in time")
    finally:
        # Kill the controller and everything it started (its Ray cluster too), as a crashed machine would.
        os.killpg(controller.pid, signal.SIGKILL)
        controller.wait()
    before = _trials(url, "killed")
    finished_before = [t.number for t in before if t.state == TrialState.COMPLETE]
    assert before[-1].state == TrialState.RUNNING

    # The one command, run in this process: a process of its own would only add the seconds of its imports.
    code, _, err = run_cli(capsys, "search", "resume", "killed", "--storage", url, "--executor", "local")
    assert code == 0, err[-2000:]

    after = _trials(url, "killed")
    complete = [t for t in after if t.state == TrialState.COMPLETE]
    assert len(complete) == 3, [(t.number, t.state) for t in after]
    interrupted = [t for t in after if t.user_attrs.get(storage.INTERRUPTED)]
    assert [t.number for t in interrupted] == [before[-1].number]
    retries = [t for t in after if t.user_attrs.get(storage.RETRY_OF) == interrupted[0].number]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE
    assert retries[0].params == interrupted[0].params
    # Trials that had finished before the kill are untouched and not run again.
    assert all(after[n].state == TrialState.COMPLETE and after[n].values == before[n].values
               for n in finished_before)
    assert sum(storage.counts_against_budget(t) for t in after) == 3
    # The resumed sampler does not replay the first run's proposals: every trained configuration is distinct.
    configurations = [tuple(sorted(t.params.items())) for t in complete]
    assert len(set(configurations)) == len(configurations)


def test_sigterm_closes_running_trials_and_leaves_no_ray_processes(tmp_path):
    import psutil

    # Trials far longer than the test waits: the signal must be handled mid-trial, not when a trial ends.
    spec = tiny_spec(tmp_path, budget={"trials": 3, "steps_per_trial": 5000}, workers={"parallel": 1})
    url = spec["storage"]
    controller = subprocess.Popen([sys.executable, "-m", "autopeft.cli", "search", "run",
                                   str(write_spec(tmp_path, spec)), "--name", "termed"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        trials = _trials(url, "termed")
        if trials and trials[-1].state == TrialState.RUNNING and storage.CONFIG in trials[-1].user_attrs:
            break  # proposed in full and sent to a worker (not caught mid-proposal)
        assert controller.poll() is None, controller.stderr.read()
        time.sleep(0.5)
    time.sleep(2)
    running = trials[-1].number
    children = psutil.Process(controller.pid).children(recursive=True)
    assert children, "the controller should have started its Ray processes"
    controller.send_signal(signal.SIGTERM)
    assert controller.wait(timeout=90) == 130
    assert "resume with: autopeft search resume termed" in controller.stderr.read()
    trials = _trials(url, "termed")
    assert trials[running].user_attrs.get(storage.INTERRUPTED), [(t.number, t.state) for t in trials]
    assert [t.user_attrs.get(storage.RETRY_OF) for t in trials if t.state == TrialState.WAITING] == [running]
    gone, alive = psutil.wait_procs(children, timeout=60)
    assert not alive, [p.info if hasattr(p, "info") else p.pid for p in alive]


def test_resume_with_more_trials_continues_a_finished_search(tmp_path, capsys):
    """`search resume NAME --trials N` raises the budget of a finished search: only the extra trials train, and a
    budget below what was spent is refused naming the option, with nothing changed."""
    from autopeft.search.launch import resume_search, start_search
    from autopeft.spec import load_spec

    spec = load_spec(write_spec(tmp_path, tiny_spec(tmp_path, budget={"trials": 2, "steps_per_trial": 4},
                                                             workers=ONE_AT_A_TIME)))
    start_search(spec, name="grown", executor="local")
    url = spec.storage
    study, _ = storage.load_search(storage.open_storage(url), "grown")
    first = [t.number for t in study.get_trials() if storage.counts_against_budget(t)]
    assert len(first) == 2 and study.user_attrs[storage.FINISHED] is True

    code, _, err = run_cli(capsys, "search", "resume", "grown", "--trials", "1", "--storage", url,
                           "--executor", "local")
    assert code == 2 and "--trials: 1 is below the 2 trials" in err
    study, stored = storage.load_search(storage.open_storage(url), "grown")
    assert stored.budget.trials == 2 and study.user_attrs[storage.FINISHED] is True

    resume_search("grown", storage_url=url, executor="local", trials=3)
    study, stored = storage.load_search(storage.open_storage(url), "grown")
    counted = [t for t in study.get_trials() if storage.counts_against_budget(t)]
    assert stored.budget.trials == 3 and len(counted) == 3 and study.user_attrs[storage.FINISHED] is True
    assert [t.number for t in counted][:2] == first  # the first two are kept, not retrained
