"""Frozen-prefix caching and length-grouped batches: faster, and the same model underneath.

Tiny BERT and LLaMA models built in code, dropout off (eval mode), so a forward from cached states must give the
same logits and the same gradients as the whole model; the cut layer is read from a real forward pass.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, LlamaConfig, LlamaForSequenceClassification

from autopeft.methods import get_method
from workers.prefix_cache import FrozenPrefix, PrefixStore, first_trained_layer
from workers.training import training_batches


def tiny(kind: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if kind == "llama":
        model = LlamaForSequenceClassification(LlamaConfig(
            vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
            num_key_value_heads=2, num_labels=2, pad_token_id=0))
    else:
        model = BertForSequenceClassification(BertConfig(
            vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
            num_labels=2))
    model.requires_grad_(False)
    return model


def batch_of(lengths: list[int], seed: int = 0) -> dict[str, torch.Tensor]:
    """Right-padded random token batch with labels, padded to its longest example."""
    generator = torch.Generator().manual_seed(seed)
    width = max(lengths)
    input_ids = torch.zeros((len(lengths), width), dtype=torch.long)
    mask = torch.zeros_like(input_ids)
    for row, length in enumerate(lengths):
        input_ids[row, :length] = torch.randint(2, 128, (length,), generator=generator)
        mask[row, :length] = 1
    return {"input_ids": input_ids, "attention_mask": mask, "labels": torch.arange(len(lengths)) % 2}


def build(kind: str, method: str, layers: list[int], **options) -> torch.nn.Module:
    return get_method(method).build(tiny(kind), {"method": method, "layers": layers, **options})


@pytest.mark.parametrize("kind,method,layers,options,cut", [
    ("bert", "lora", [2, 3], {"lora": {"r": 4, "target_modules": ["query", "value"]}}, 2),
    ("bert", "lora", [3], {"lora": {"r": 4, "target_modules": ["ffn_down"]}}, 3),
    ("bert", "ia3", [1, 3], {}, 1),  # IA3's vectors sit in ParameterDicts, read and never called
    ("bert", "dora", [2, 3], {"dora": {"r": 2, "target_modules": ["value"]}}, 2),
    ("bert", "vera", [1, 2], {"vera": {"r": 8}}, 1),
    ("bert", "sparse", [2, 3], {"sparse": {"density": 0.05}}, 2),
    ("bert", "bitfit", [2, 3], {}, 2),
    ("bert", "ln_tuning", [3], {}, 3),
    ("bert", "pfeiffer", [2, 3], {"pfeiffer": {"bottleneck": 8}}, 2),
    ("bert", "prefix", [2, 3], {"prefix": {"prefix_length": 3}}, 0),  # the prefix pool runs before layer 0
    ("bert", "prompt", [0, 1, 2, 3], {"prompt": {"num_virtual_tokens": 3}}, 0),
    ("bert", "full", [0, 1, 2, 3], {}, 0),
    ("llama", "lora", [3], {"lora": {"r": 4, "target_modules": ["query", "value"]}}, 3),
])
def test_the_cut_is_the_first_layer_anything_trained_runs_in(kind, method, layers, options, cut):
    model = build(kind, method, layers, **options)
    assert first_trained_layer(model, batch_of([5, 3])) == cut


@pytest.mark.parametrize("kind", ["bert", "llama"])
def test_starting_from_cached_states_gives_the_same_logits_and_gradients(kind):
    model = build(kind, "lora", [2, 3], lora={"r": 4, "target_modules": ["query", "value"]})
    model.eval()  # dropout off: the only difference the cache is allowed to make
    trained = [p for p in model.parameters() if p.requires_grad]
    for parameter in trained:  # LoRA's B starts at zero; make the adapter matter
        torch.nn.init.normal_(parameter, std=0.1)
    batch, indices = batch_of([7, 4, 6, 2]), np.arange(4)

    reference = model(**batch)
    reference.loss.backward()
    expected_grads = [p.grad.clone() for p in trained]
    model.zero_grad()

    prefix = FrozenPrefix(model, first_trained_layer(model, batch), PrefixStore(64), base_key=(16,))
    assert prefix.cut == 2
    for _ in range(2):  # computed the first time, read from the cache the second
        output = prefix.forward("train", indices, batch)
        torch.testing.assert_close(output.logits, reference.logits, rtol=1e-4, atol=1e-5)
        output.loss.backward()
        for grad, expected in zip([p.grad for p in trained], expected_grads):
            torch.testing.assert_close(grad, expected, rtol=1e-4, atol=1e-6)
        model.zero_grad()
    assert (prefix.computed, prefix.reused) == (4, 4)
    # The layer list is whole again after each forward.
    blocks = model.base_model.model.bert.encoder.layer if kind == "bert" else model.base_model.model.model.layers
    assert len(blocks) == 4


def test_a_changed_lower_layer_is_noticed_and_the_cache_rebuilt():
    store = PrefixStore(64)
    batch = batch_of([5, 3])

    def make_batch(indices):
        return {k: v[torch.as_tensor(indices)] for k, v in batch.items()}

    first = build("bert", "lora", [2, 3], lora={"r": 4, "target_modules": ["value"]})
    FrozenPrefix(first, 2, store, base_key=(16,)).states("train", np.arange(2), batch)
    key = (16, 2, "train", "float32")
    assert len(store.entries[key]) == 2

    same = build("bert", "lora", [2, 3], lora={"r": 4, "target_modules": ["value"]})
    FrozenPrefix(same, 2, store, base_key=(16,)).check_reuse(make_batch)
    assert key in store.entries, "an identical base must reuse the cache"

    changed = build("bert", "lora", [2, 3], lora={"r": 4, "target_modules": ["value"]})
    with torch.no_grad():
        changed.base_model.model.bert.encoder.layer[0].output.dense.weight.mul_(1.5)
    FrozenPrefix(changed, 2, store, base_key=(16,)).check_reuse(make_batch)
    assert key not in store.entries
    assert store.used == 0


def test_states_computed_under_bf16_autocast_are_cached_apart_from_fp32_ones():
    model = build("bert", "lora", [3], lora={"r": 4, "target_modules": ["value"]})
    store, batch = PrefixStore(64), batch_of([6, 4])
    prefix = FrozenPrefix(model, 3, store, (16,))
    exact = prefix.states("eval", np.arange(2), batch)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        lowered = prefix.states("eval", np.arange(2), batch)
    assert {(16, 3, "eval", "float32"), (16, 3, "eval", "bfloat16")} <= set(store.entries)
    assert not torch.equal(exact, lowered)
    torch.testing.assert_close(prefix.states("eval", np.arange(2), batch), exact, rtol=0, atol=0)


def test_the_store_keeps_to_its_budget_and_drops_the_least_recently_used():
    model = build("bert", "lora", [3], lora={"r": 4, "target_modules": ["value"]})
    batch = batch_of([8, 8, 8, 8])
    one_example = 8 * 64 * 4  # tokens × hidden × fp32
    store = PrefixStore(budget_mb=6 * one_example / 2**20)
    low, high = FrozenPrefix(model, 1, store, (16,)), FrozenPrefix(model, 3, store, (16,))
    low.states("train", np.arange(4), batch)
    assert store.used == 4 * one_example
    high.states("train", np.arange(4), batch)  # needs room: the older cut goes first
    assert (16, 1, "train", "float32") not in store.entries
    assert len(store.entries[(16, 3, "train", "float32")]) == 4
    assert store.used == 4 * one_example <= store.budget
    tight = PrefixStore(budget_mb=2 * one_example / 2**20)
    states = FrozenPrefix(model, 3, tight, (16,)).states("train", np.arange(4), batch)
    assert states.shape == (4, 8, 64)
    assert len(tight.entries[(16, 3, "train", "float32")]) == 2  # the rest computed, not kept


def test_length_grouped_batches_cover_every_example_once_per_epoch_with_less_padding():
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 64, size=800)
    size, batch_size = len(lengths), 16

    def epoch(grouped: bool) -> list[np.ndarray]:
        batches = training_batches(size, batch_size, seed=1, lengths=lengths if grouped else None)
        return [next(batches) for _ in range(size // batch_size)]

    def padded_tokens(batches) -> int:
        return sum(len(b) * lengths[b].max() for b in batches)

    grouped, plain = epoch(True), epoch(False)
    assert sorted(np.concatenate(grouped).tolist()) == list(range(size))
    assert all(len(b) == batch_size for b in grouped)
    assert padded_tokens(grouped) < 0.7 * padded_tokens(plain)
    assert [b.tolist() for b in grouped] == [b.tolist() for b in epoch(True)]  # the seed decides the order
