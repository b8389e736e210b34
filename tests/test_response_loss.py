"""A decoder's training loss computed with logits only where responses are scored (``CausalLmRunner.train_loss``)
is the model's own loss, with the same gradients, for every kind of method the adapter family puts on a decoder:
weights changed in place (LoRA, DoRA, IA3), AdapterHub's bottleneck adapters and prefix, and peft's prompt tuning
(virtual tokens in front of the sequence) and prefix tuning (a cache in front of it)."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from autopeft.data import TaskData, TokenizedSplit
from autopeft.methods import get_method
from workers.tasks import CausalLmRunner

CONFIGS = {
    "lora": {"method": "lora", "lora": {"r": 4, "target_modules": ["query", "value"]}},
    "dora": {"method": "dora", "dora": {"r": 4, "target_modules": ["query", "value"]}},
    "ia3": {"method": "ia3"},
    "pfeiffer": {"method": "pfeiffer", "pfeiffer": {"bottleneck": 8}},
    "prefix": {"method": "prefix", "prefix": {"prefix_length": 3}},
    "prompt": {"method": "prompt", "prompt": {"num_virtual_tokens": 3}},
}


class _Tokenizer:
    pad_token_id, eos_token_id = 0, 2


def _records() -> TokenizedSplit:
    """Three prompt + response records of different lengths, prompts masked out of the labels."""
    rng = np.random.default_rng(0)
    ids, labels = [], []
    for prompt, response in ((9, 3), (5, 6), (12, 1)):
        row = rng.integers(3, 100, prompt + response).astype(np.int32)
        ids.append(row)
        labels.append(np.concatenate([np.full(prompt, -100), row[prompt:]]).astype(np.int64))
    return TokenizedSplit(input_ids=ids, token_type_ids=None, labels=None, token_labels=labels,
                          prompts=[row[:len(row) - int((lab != -100).sum())] for row, lab in zip(ids, labels)],
                          answers=["x"] * 3)


@pytest.fixture(scope="module")
def base():
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=100, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2, pad_token_id=0)).eval()


@pytest.mark.parametrize("name", list(CONFIGS))
def test_response_only_logits_give_the_models_loss_and_gradients(base, name):
    records = _records()
    runner = CausalLmRunner(TaskData(train=records, eval=records, label_names=[], task="causal-lm"), _Tokenizer(),
                            torch.device("cpu"), max_new_tokens=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = get_method(name).build(copy.deepcopy(base), {**CONFIGS[name], "learning_rate": 1e-3})
    model.train()
    with torch.no_grad():  # a start away from the identity, so every trained parameter gets a gradient
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.add_(0.05 * torch.randn_like(parameter))
    batch = runner.train_batch(np.arange(3))
    assert int((batch["labels"] != -100).any(dim=0).nonzero()[0]) > 1  # some prompt logits are really left out
    asked = {}

    def forward(rows, **options):
        asked.update(options)
        return model(**rows, **options)

    trained = [p for p in model.parameters() if p.requires_grad]
    reference = model(**batch).loss
    expected = torch.autograd.grad(reference, trained)
    loss = runner.train_loss(model, forward, batch)
    got = torch.autograd.grad(loss, trained)
    assert 0 < asked["logits_to_keep"] < batch["input_ids"].shape[1]
    assert torch.allclose(loss, reference, atol=1e-5)
    for mine, theirs in zip(got, expected):
        assert torch.allclose(mine, theirs, atol=1e-5, rtol=1e-4)
    assert any(float(g.abs().max()) > 0 for g in got)
