"""A real multi-node Ray cluster on one machine (a head without CPUs and two 1-CPU worker nodes): the controller
joins it with --ray-address, one node is killed while it trains a trial; that trial runs again on the surviving
node, the search completes its budget, and no completed trial is lost."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import optuna
import psutil
import pytest
from optuna.trial import TrialState

from autopeft.store import storage
from tests.conftest import tiny_spec, write_spec

# Node death is noticed by the head's health checks: make them fast so the test does not wait 30 s for it.
FAST_HEALTH_CHECKS = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 500,
                      "health_check_failure_threshold": 4}
NODE_MEMORY = {"object_store_memory": 80 * 1024 * 1024}


@pytest.fixture
def cluster():
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False,
                                                            "_system_config": FAST_HEALTH_CHECKS, **NODE_MEMORY})
    workers = [cluster.add_node(num_cpus=1, **NODE_MEMORY) for _ in range(2)]
    cluster.wait_for_nodes()
    yield cluster, workers
    cluster.shutdown()


def _node_running_a_trial(workers) -> tuple[object, int] | None:
    """The worker node whose raylet is an ancestor of the process running TrialWorker.run, and that process."""
    raylets = {node.all_processes["raylet"][0].process.pid: node for node in workers}
    for process in psutil.process_iter(["cmdline"]):
        if any("TrialWorker.run" in part for part in process.info["cmdline"] or []):
            try:
                ancestors = process.parents()
            except psutil.NoSuchProcess:
                continue
            for ancestor in ancestors:
                if ancestor.pid in raylets:
                    return raylets[ancestor.pid], process.pid
    return None


def _trials(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    try:
        return optuna.load_study(study_name=name, storage=storage.open_storage(url)).get_trials()
    except KeyError:
        return []


def test_killing_a_node_mid_trial_loses_no_completed_trial(tmp_path, cluster):
    ray_cluster, workers = cluster
    spec = tiny_spec(tmp_path, budget={"trials": 2, "steps_per_trial": 20}, workers={"parallel": 1})
    url = spec["storage"]
    command = [sys.executable, "-m", "autopeft.cli", "search", "run", str(write_spec(tmp_path, spec)),
               "--name", "nodes", "--ray-address", ray_cluster.address]
    controller = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(controller.communicate(timeout=600)), daemon=True)
    reader.start()
    deadline = time.monotonic() + 300
    victim = None
    while victim is None and time.monotonic() < deadline:
        assert controller.poll() is None, "the search ended before a node could be killed"
        states = [t.state for t in _trials(url, "nodes")]
        if TrialState.COMPLETE in states and states[-1] == TrialState.RUNNING:
            victim = _node_running_a_trial(workers)
            interrupted = len(states) - 1
        time.sleep(0.3)
    assert victim is not None, "no trial ran on a worker node after a completed one"
    before = {t.number: t.values for t in _trials(url, "nodes") if t.state == TrialState.COMPLETE}
    node, killed_pid = victim
    ray_cluster.remove_node(node, allow_graceful=False)

    reader.join(timeout=600)
    assert controller.returncode == 0, output[1][-3000:] if len(output) > 1 else "controller did not finish"
    after = _trials(url, "nodes")
    trained = [t for t in after if not t.user_attrs.get(storage.REJECTED)]  # proposals refused before training aside
    assert [t.state for t in trained] == [TrialState.COMPLETE] * 2, \
        [(t.number, t.state, t.user_attrs.get(storage.FAIL_REASON)) for t in after]
    # The node's loss is not the trial's fault: the same trial ran again, in another worker process.
    assert not after[interrupted].user_attrs[storage.WORKER].endswith(f":{killed_pid}")
    assert "node died" in output[1] and f"trial {interrupted}" in output[1]
    # Completed trials survive the node, values unchanged.
    assert all(after[number].values == values for number, values in before.items())
