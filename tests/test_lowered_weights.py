"""Frozen linear weights lowered once for the training forward (workers/lowered_weights.py) train exactly as
autocast's cast at every forward does, leave the fp32 parameters as they were, and run through the real worker on
a decoder whose template-sharing check compares fp32 passes."""

from __future__ import annotations

import contextlib
import json

import numpy as np
import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaForCausalLM

from autopeft.search.trial import TrialRequest
from autopeft.spec import load_spec
from autopeft.tasks.data import load_task_data
from tests.conftest import ROOT, save_tiny_decoder, tiny_spec, write_spec
from workers.lowered_weights import LoweredWeights
from workers.worker import TrialWorker

BOOLQ = ROOT / "examples" / "data" / "boolq"


@pytest.fixture(scope="module")
def decoder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("decoder")
    save_tiny_decoder(folder, json.loads((BOOLQ / "train.json").read_text()))
    return folder


def _train(folder, lowered: LoweredWeights | None, steps: int = 3) -> tuple[list[float], torch.nn.Module]:
    torch.manual_seed(0)
    model = get_peft_model(LlamaForCausalLM.from_pretrained(folder), LoraConfig(target_modules=["q_proj", "v_proj"],
                                                                                 r=4, init_lora_weights=False))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    ids = torch.randint(3, 200, (4, 24), generator=torch.Generator().manual_seed(0))
    losses = []
    for _ in range(steps):
        within = lowered.during(model, "bf16") if lowered is not None else contextlib.nullcontext()
        with torch.autocast("cpu", dtype=torch.bfloat16), within:
            loss = model(input_ids=ids, labels=ids).loss.float()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return losses, model


def test_lowered_weights_train_as_autocasts_casts_and_leave_the_fp32_parameters(decoder):
    cast_each_forward, _ = _train(decoder, None)
    lowered = LoweredWeights()
    once, model = _train(decoder, lowered)
    assert once == cast_each_forward  # to the last bit: the copy rounds as autocast's cast does
    frozen = {name: p for name, p in model.named_parameters() if not p.requires_grad and "proj" in name}
    assert frozen and all(p.dtype == torch.float32 for p in frozen.values())  # the originals, back after each step
    with lowered.during(model, "bf16"):
        inside = {name: p for name, p in model.named_parameters() if name in frozen}
        assert all(p.dtype == torch.bfloat16 for p in inside.values())
        assert all(p.requires_grad for n, p in model.named_parameters() if "lora_" in n)  # trained ones untouched
    with lowered.during(model, "bf16"):
        again = {name: p for name, p in model.named_parameters() if name in frozen}
    assert all(again[name] is inside[name] for name in frozen)  # made once, reused
    with lowered.during(model, "fp32"):
        assert all(p.dtype == torch.float32 for n, p in model.named_parameters() if n in frozen)


@pytest.mark.parametrize("method", ["lora", "dora"])
def test_the_worker_trains_a_decoder_the_same_with_its_frozen_weights_lowered(decoder, tmp_path, monkeypatch,
                                                                               method):
    """bf16 training at 8 rows, where the template-sharing check runs its fp32 passes: lowered or not, the same
    loss curve and answers. DoRA reads its base weight for a norm outside the product: that layer stays fp32."""
    spec = load_spec(write_spec(tmp_path, tiny_spec(
        tmp_path, model={"name_or_path": str(decoder), "task": "causal-lm"},
        data={"train": str(BOOLQ / "train.json"), "eval": str(BOOLQ / "test.json"), "max_length": 96,
              "train_size": 64, "eval_size": 8},
        objectives=[{"name": "answer_accuracy"}, {"name": "trainable_params"}], constraints=[])))
    worker = TrialWorker(spec.model.model_dump(), load_task_data(spec.data, spec.model, spec.seed), threads=2)
    config = {"method": method, "learning_rate": 3e-3, method: {"r": 4, "target_modules": ["query", "value"]}}
    training = {**spec.training.model_dump(), "batch_size": 8, "precision": "bf16"}
    lowered = worker.run(TrialRequest(0, config, 0, 4, training, str(tmp_path / "lowered")))
    monkeypatch.setattr(worker.lowered, "during", lambda model, precision: contextlib.nullcontext())
    cast_each_forward = worker.run(TrialRequest(0, config, 0, 4, training, str(tmp_path / "cast")))
    assert lowered.ok and cast_each_forward.ok, (lowered.fail_reason, cast_each_forward.fail_reason)
    assert lowered.execution["precision"] == "bf16"
    assert lowered.loss_curve == cast_each_forward.loss_curve
    assert lowered.measurements["eval_loss"] == cast_each_forward.measurements["eval_loss"]
    assert lowered.predictions == cast_each_forward.predictions
    assert np.isfinite(lowered.measurements["eval_loss"])
