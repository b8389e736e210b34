"""Every method through the real worker on MiniLM and the bundled SST-2 sample: the trial's measured costs equal the
costs predicted before training, and the saved adapter reloads (``autopeft.load_adapter``, and merged where the
method merges) to the predictions the trial recorded."""

from __future__ import annotations

import pytest
import torch

from autopeft import load_adapter, load_merged
from autopeft.methods import available_methods, get_method
from autopeft.models.base import load_base_model
from autopeft.search.cost import predict_cost
from autopeft.search.trial import TrialRequest
from autopeft.spec import load_spec
from autopeft.store.predictions import decode
from autopeft.tasks.data import TokenizedSplit, load_task_data
from tests.conftest import tiny_spec, write_spec
from workers.training import predict_logits
from workers.worker import TrialWorker

RELOAD_CHECKED = 24

OPTIONS = {
    "lora": {"lora": {"r": 4, "target_modules": ["query", "value"]}},
    "dora": {"dora": {"r": 2, "target_modules": ["value"]}},
    "houlsby": {"houlsby": {"bottleneck": 16}},
    "pfeiffer": {"pfeiffer": {"bottleneck": 16}},
    "parallel": {"parallel": {"bottleneck": 16}},
    "prefix": {"prefix": {"prefix_length": 5}},
    "autopeft": {"autopeft": {"serial": 6, "parallel": 12, "prefix_length": 3}},
    "mam": {"mam": {"prefix_length": 5, "bottleneck": 16}},
    "sparse": {"sparse": {"density": 0.01}},
}
CASES = [(m, 16) for m in available_methods()] + [("lora", 8), ("lora", 4), ("ia3", 4), ("bitfit", 8),
                                                  ("lora-eva", 16), ("lora-pissa", 16), ("lora-olora", 16),
                                                  ("lora-corda", 16), ("sparse-gradient", 16)]
VARIANTS = {"lora-eva": ("lora", {"lora": {"r": 4, "init": "eva"}}),
            "lora-pissa": ("lora", {"lora": {"r": 4, "init": "pissa"}}),
            "lora-olora": ("lora", {"lora": {"r": 4, "init": "olora"}}),
            "lora-corda": ("lora", {"lora": {"r": 4, "init": "corda"}}),
            "sparse-gradient": ("sparse", {"sparse": {"density": 0.01, "selection": "gradient"}})}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("methods")
    spec = tiny_spec(tmp_path)
    # Each case evaluates three times (the trial, the reloaded adapter, the merged model) and trains only 6 steps:
    # at 160 eval sentences the evaluations were half its compute. 64 still tell a reload that differs by one.
    spec["data"]["eval_size"] = 64
    spec = load_spec(write_spec(tmp_path, spec))
    data = load_task_data(spec.data, spec.model, spec.seed)
    worker = TrialWorker(spec.model.model_dump(), data, threads=2)
    worker.loaded = {name: p.detach().clone() for name, p in worker.base.named_parameters()}
    return worker, spec, data, tmp_path


@pytest.mark.parametrize("method,bits", CASES, ids=[f"{m}-{b}bit" for m, b in CASES])
def test_trial_measures_what_was_predicted_and_reloads(setup, method, bits):
    worker, spec, data, tmp_path = setup
    method, options = VARIANTS.get(method, (method, OPTIONS.get(method, {})))
    config = {"method": method, "layers": [4, 5], "learning_rate": 2e-3, "base_bits": bits, **options}
    predicted = predict_cost(spec.model, data.num_labels, config)
    result = worker.run(TrialRequest(0, config, 0, 6, spec.training.model_dump(), str(tmp_path / f"{method}{bits}")))
    assert result.ok, result.fail_reason
    # Trials that share the worker's frozen base (keeps_base_weights) leave it exactly as loaded, for the next.
    changed = [n for n, p in worker.base.named_parameters() if p.requires_grad or not torch.equal(p, worker.loaded[n])]
    assert not changed, f"{method} changed the worker's base: {changed[:3]}"
    measured = result.measurements
    assert measured["trainable_params"] == predicted["trainable_params"]
    if get_method(method).saved_size_known_before_training:
        assert measured["adapter_bytes"] >= predicted["adapter_tensor_bytes"]  # files add headers and the config
    if bits < 16:
        assert measured["frozen_base_mb"] < 0.9 * 86.6  # the 22.7M-parameter base is 86.6 MiB in fp32

    # The reloaded adapter predicts what the trial predicted, example by example, on the first RELOAD_CHECKED eval
    # sentences (a stricter test than equal accuracy, and these evaluations were half of each case's time); the
    # merged model gives the reloaded one's logits.
    checked = TokenizedSplit(data.eval.input_ids[:RELOAD_CHECKED], None if data.eval.token_type_ids is None
                             else data.eval.token_type_ids[:RELOAD_CHECKED], data.eval.labels[:RELOAD_CHECKED])
    base = load_base_model(spec.model, data.label_names)
    reloaded = predict_logits(load_adapter(base, result.adapter_dir), checked, batch_size=64, pad_id=0,
                              device=torch.device("cpu"))
    assert reloaded.argmax(-1).tolist() == decode(result.predictions)[:RELOAD_CHECKED].tolist()
    if get_method(method).mergeable and bits == 16:
        merged = load_merged(load_base_model(spec.model, data.label_names), result.adapter_dir)
        merged_logits = predict_logits(merged, checked, batch_size=64, pad_id=0, device=torch.device("cpu"))
        assert abs(merged_logits - reloaded).max() < 1e-3, method


def test_a_measured_precision_leaves_the_trial_as_it_would_have_trained(setup, monkeypatch):
    """On a GPU ``auto`` times a step of the trial's model in each precision first (workers/precision.py); here the
    measurement is made to run on the CPU: the trial must then train exactly as one that was not measured."""
    import workers.worker as worker_module

    worker, spec, data, tmp_path = setup
    config = {"method": "lora", "layers": [4, 5], "learning_rate": 2e-3, "lora": {"r": 4}}
    training = {**spec.training.model_dump(), "precision": "fp32"}
    plain = worker.run(TrialRequest(0, config, 0, 4, training, str(tmp_path / "plain")))

    def measured_then_fp32(requested, device, measure=None, width=768):
        measure()
        return "fp32"

    monkeypatch.setattr(worker_module, "resolve_precision", measured_then_fp32)
    worker.precision_timings.clear()
    measured = worker.run(TrialRequest(0, config, 0, 4, {**training, "precision": "auto"}, str(tmp_path / "timed")))
    assert plain.ok and measured.ok, (plain.fail_reason, measured.fail_reason)
    assert set(worker.precision_timings[("lora", 16, training["batch_size"], False)][1]) == {"fp32", "bf16"}
    assert set(measured.execution["precision_step_s"]) == {"fp32", "bf16"}
    assert measured.loss_curve == plain.loss_curve
    assert measured.measurements["accuracy"] == plain.measurements["accuracy"]


def test_auto_precision_on_a_cpu_follows_the_timed_product_and_records_it(setup):
    """The flags alone chose bf16 on a processor where it ran at half fp32's speed (workers/precision.py)."""
    from workers.precision import BF16_MIN_SPEEDUP, cpu_has_native_bf16

    worker, spec, data, tmp_path = setup
    worker.precision_timings.clear()  # a step timing made by another test would be recorded instead
    config = {"method": "lora", "layers": [5], "learning_rate": 2e-3, "lora": {"r": 2}}
    result = worker.run(TrialRequest(0, config, 0, 2, {**spec.training.model_dump(), "precision": "auto"},
                                     str(tmp_path / "auto")))
    assert result.ok, result.fail_reason
    if not cpu_has_native_bf16():
        assert result.execution["precision"] == "fp32" and "bf16_matmul_speedup" not in result.execution
        return
    speedup = result.execution["bf16_matmul_speedup"]
    assert speedup > 0
    assert result.execution["precision"] == ("bf16" if speedup >= BF16_MIN_SPEEDUP else "fp32")


def test_a_trial_shares_the_frozen_base_only_where_its_method_leaves_it_as_loaded(setup):
    worker = setup[0]
    loaded = dict(worker.base.named_parameters())

    def shared(method: str, config: dict, bits: int = 16) -> set[str]:
        model = worker._trial_base(get_method(method), config, bits)
        return {name for name, p in model.named_parameters() if p is loaded[name]}

    head = {name for name in loaded if name.startswith("classifier.")}
    for method, config in [("lora", {"lora": {"r": 4}}), ("lora", {"lora": {"r": 4, "init": "eva"}}),
                           ("ia3", {}), ("houlsby", {}), ("prefix", {})]:
        assert shared(method, config) == set(loaded) - head, method  # the task head is re-drawn: always a copy
    for method, config, bits in [("lora", {"lora": {"r": 4, "init": "pissa"}}, 16), ("partial", {}, 16),
                                 ("bitfit", {}, 16), ("sparse", {}, 16), ("full", {}, 16), ("lora", {}, 8)]:
        assert not shared(method, config, bits), (method, config, bits)
