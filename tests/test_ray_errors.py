"""Which Ray actor deaths are the trial's fault: a worker process killed on a live node (perhaps by the trial's own
memory use) fails the trial; a node that died takes the trial with it through no fault of its own, so the trial
runs again. The messages here are Ray's, produced for real: a SIGKILL of a live actor's process."""

from __future__ import annotations

import os
import signal
import time

from autopeft.search.executor import death_cause, node_died


def test_a_killed_worker_process_is_not_a_node_death(ray_cluster):
    ray = ray_cluster

    @ray.remote(num_cpus=0)
    class Sleeper:
        def pid(self) -> int:
            return os.getpid()

        def sleep(self) -> None:
            time.sleep(60)

    sleeper = Sleeper.remote()
    pid = ray.get(sleeper.pid.remote())
    pending = sleeper.sleep.remote()
    time.sleep(0.5)
    os.kill(pid, signal.SIGKILL)
    try:
        ray.get(pending, timeout=60)
    except ray.exceptions.RayActorError as exc:
        cause = death_cause(exc)
    else:
        raise AssertionError("the killed actor returned")
    assert cause.startswith("The actor is dead because its worker process has died"), cause
    assert "Some common causes" not in cause and "\n" not in cause
    assert not node_died(cause)


def test_ray_words_for_a_dead_node_are_recognised():
    # The GCS's text when a node is lost (seen in tests/test_cluster.py, where a node is removed for real).
    assert node_died("The actor died because its node has died. Node Id: 3f2a")


def test_a_cluster_without_the_gpus_a_trial_asks_is_refused_not_waited_on(ray_cluster, tmp_path):
    """Every actor asking for a GPU the cluster lacks would wait for one for ever, and the search with it."""
    import pytest

    from autopeft.errors import UserError
    from autopeft.search.executor import RayExecutor
    from autopeft.spec import load_spec
    from autopeft.tasks.data import load_task_data
    from tests.conftest import tiny_spec, write_spec

    spec = load_spec(write_spec(tmp_path, tiny_spec(tmp_path, workers={"parallel": 1, "cpus_per_trial": 1,
                                                                       "device": "cuda"})))
    data = load_task_data(spec.data, spec.model, spec.seed)
    with pytest.raises(UserError, match=r"workers.device: each trial asks for 1 GPU and the Ray cluster has 0"):
        RayExecutor(spec, data)
