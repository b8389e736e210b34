"""Failures are recorded with their reason and the search goes on: a bad configuration, a NaN loss, a worker
process killed mid-trial (a real SIGKILL, not a mock), and bad data that must not leave an empty search behind."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from optuna.trial import TrialState

from autopeft.search.launch import start_search
from autopeft.search.trial import TrialRequest
from autopeft.spec import load_spec
from autopeft.store import storage
from autopeft.tasks.data import load_task_data
from tests.conftest import ONE_AT_A_TIME, run_cli, tiny_spec, write_spec
from workers.worker import TrialWorker

SANE_OR_EXPLODING = {
    "name": "sometimes-diverging",
    # 1e20 sends the LoRA weights on FFN-down to overflow within a few steps: the loss stops being finite.
    "parameters": {"learning_rate": {"type": "categorical", "choices": [1e-3, 1e20]}},
    "fixed": {"method": "lora", "layers": [0], "lora.target_modules": ["ffn_down"], "lora.r": 2},
}


def test_a_failing_trial_is_recorded_and_the_search_goes_on(tmp_path):
    spec = load_spec(write_spec(tmp_path, tiny_spec(
        tmp_path, search_space=SANE_OR_EXPLODING, sampler="random", budget={"trials": 4, "steps_per_trial": 8},
        workers=ONE_AT_A_TIME)))
    start_search(spec, name="mixed", executor="local")
    study, _ = storage.load_search(storage.open_storage(spec.storage), "mixed")
    trials = [t for t in study.get_trials() if not t.user_attrs.get(storage.DUPLICATE)]  # repeats: not trained
    failed = [t for t in trials if t.state == TrialState.FAIL]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(trials) == 4 and failed and complete
    for trial in failed:
        assert trial.user_attrs[storage.CONFIG]["learning_rate"] == 1e20
        assert re.match(r"loss became (nan|inf) at step \d+", trial.user_attrs[storage.FAIL_REASON])


def test_an_unbuildable_configuration_is_rejected_before_training(tmp_path):
    space = {"name": "rank", "parameters": {"lora.r": {"type": "categorical", "choices": [0, 4]}},
             "fixed": {"method": "lora", "layers": [5], "lora.target_modules": ["query"], "learning_rate": 1e-3}}
    spec = load_spec(write_spec(tmp_path, tiny_spec(
        tmp_path, search_space=space, sampler="random", budget={"trials": 2, "steps_per_trial": 3},
        workers=ONE_AT_A_TIME)))
    start_search(spec, name="rank", executor="local")
    study, _ = storage.load_search(storage.open_storage(spec.storage), "rank")
    rejected = [t for t in study.get_trials() if t.user_attrs.get(storage.REJECTED)]
    assert rejected, "random sampling of {0, 4} should draw r=0 at least once in this seed"
    for trial in rejected:
        assert "`r` should be a positive integer" in trial.user_attrs[storage.FAIL_REASON]
        assert storage.MEASUREMENTS not in trial.user_attrs  # never trained
    complete = [t for t in study.get_trials() if t.state == TrialState.COMPLETE]
    assert all(t.user_attrs[storage.PREDICTED]["trainable_params"] ==
               t.user_attrs[storage.MEASUREMENTS]["trainable_params"] for t in complete if storage.PREDICTED in
               t.user_attrs)
    # r=4 is the space's only valid point: trained once, then every proposal is invalid or a repeat, and the
    # search ends instead of spinning.
    trained = [t for t in complete if not t.user_attrs.get(storage.DUPLICATE)]
    assert len(trained) == 1 and study.user_attrs[storage.FINISHED] is True


@pytest.fixture(scope="module")
def tiny_worker(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("worker")
    spec = load_spec(write_spec(tmp_path, tiny_spec(tmp_path)))
    data = load_task_data(spec.data, spec.model, spec.seed)
    return TrialWorker(spec.model.model_dump(), data, threads=2), spec, tmp_path


def test_a_non_finite_loss_fails_the_trial_with_its_step(tiny_worker):
    worker, spec, tmp_path = tiny_worker
    config = {"method": "lora", "lora": {"r": 2, "target_modules": ["ffn_down"]}, "layers": [0],
              "learning_rate": 1e20}  # weights jump by ~1e20 a step: activations soon overflow
    result = worker.run(TrialRequest(0, config, 0, 8, spec.training.model_dump(), str(tmp_path / "t0")))
    assert not result.ok
    assert re.match(r"loss became (nan|inf) at step \d+; lower the learning rate", result.fail_reason)


def _kill_a_busy_trial_worker(stop: threading.Event) -> None:
    """SIGKILL the first Ray actor process seen running a trial of this test session's own Ray (a descendant of
    this process: another search on the same machine must not lose a worker to this test)."""
    while not stop.is_set():
        for process in psutil.Process().children(recursive=True):
            try:
                if any("TrialWorker.run" in part for part in process.cmdline()):
                    process.send_signal(signal.SIGKILL)
                    return
            except psutil.NoSuchProcess:
                continue
        time.sleep(0.2)


def test_a_killed_worker_process_fails_its_trial_and_is_replaced(tmp_path, ray_cluster):
    spec = load_spec(write_spec(tmp_path, tiny_spec(tmp_path, budget={"trials": 3, "steps_per_trial": 16},
                                                    workers=ONE_AT_A_TIME)))
    stop = threading.Event()
    killer = threading.Thread(target=_kill_a_busy_trial_worker, args=(stop,), daemon=True)
    killer.start()
    try:
        start_search(spec, name="crash")
    finally:
        stop.set()
    study, _ = storage.load_search(storage.open_storage(spec.storage), "crash")
    states = [t.state for t in study.get_trials()]
    assert states.count(TrialState.FAIL) == 1 and states.count(TrialState.COMPLETE) == 2, states
    failed = next(t for t in study.get_trials() if t.state == TrialState.FAIL)
    assert failed.user_attrs[storage.FAIL_REASON].startswith("worker process died")


def test_bad_data_columns_fail_before_any_search_is_created(tmp_path, capsys):
    spec = tiny_spec(tmp_path)
    spec["data"]["text_columns"] = ["text"]
    code, _, err = run_cli(capsys, "search", "run", str(write_spec(tmp_path, spec)))
    assert code == 2
    assert err.strip() == ("error: data.text_columns: column 'text' not in the train data; its columns are "
                           "['sentence', 'label']")
    assert storage.search_names(storage.open_storage(spec["storage"])) == []


def test_only_a_worker_alone_in_its_process_freezes_what_it_loaded(tmp_path):
    """A Ray actor's worker (``own_process``) moves the loaded base and data out of the cyclic collector's reach,
    so that the full collections run around each trial do not walk them; a worker sharing its process (an
    in-process run) leaves the collector as it was, since a frozen cycle would outlive its last use there. In a
    fresh process: this one's test set-up froze its imports already (conftest)."""
    spec_file = write_spec(tmp_path, tiny_spec(tmp_path))
    script = (
        "import gc\n"
        "from autopeft.tasks.data import load_task_data\n"
        "from autopeft.spec import load_spec\n"
        "from workers.worker import TrialWorker\n"
        f"spec = load_spec({str(spec_file)!r})\n"
        "data = load_task_data(spec.data, spec.model, spec.seed)\n"
        "counts = [gc.get_freeze_count()]\n"
        "TrialWorker(spec.model.model_dump(), data, threads=1)\n"
        "counts.append(gc.get_freeze_count())\n"
        "TrialWorker(spec.model.model_dump(), data, threads=1, own_process=True)\n"
        "print(*counts, gc.get_freeze_count())\n")
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=root)
    before, shared, alone = map(int, out.stdout.split()[-3:])
    assert before == shared == 0 and alone > 10_000  # the model's modules and tensors, the data's arrays
