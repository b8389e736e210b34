"""Evaluation batches bounded by tokens (workers/batching.py) and the predictions read through them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

from autopeft.tasks.data import TokenizedSplit
from workers import batching
from workers.batching import CPU_EVAL_TOKENS, eval_batches, length_batches
from workers.training import predict_logits


def test_length_batches_sort_and_fit_the_budget():
    lengths = [50, 10, 30, 10, 90]
    # rows x (longest prompt + new tokens) <= 80: two rows of 10 (2 x 20), then one row each (2 x 60 > 80)
    assert [list(b) for b in length_batches(lengths, max_new_tokens=10, token_budget=80, max_rows=3)] == [
        [1, 3], [2], [0], [4]]
    assert [list(b) for b in length_batches(lengths, max_new_tokens=10, token_budget=10_000, max_rows=3)] == [
        [1, 3, 2], [0, 4]]


def test_cpu_evaluation_batches_hold_every_row_once_within_the_token_budget():
    lengths = np.random.default_rng(0).integers(5, 300, size=500)
    batches = eval_batches(lengths, max_rows=128, device=torch.device("cpu"))
    assert sorted(np.concatenate(batches).tolist()) == list(range(500))
    for batch in batches:
        assert len(batch) <= 128
        assert len(batch) * lengths[batch].max() <= CPU_EVAL_TOKENS
    # short rows fill a batch to its row limit, long rows make batches of a few rows: fewer rows than 128 a batch
    assert len(batches) > 500 / 128 + 5


def test_an_accelerator_keeps_batches_of_rows():
    lengths = np.full(300, 200)
    batches = eval_batches(lengths, max_rows=128, device=torch.device("meta"))
    assert [len(b) for b in batches] == [128, 128, 44]


def test_predictions_through_token_bounded_batches_are_each_rows_own(monkeypatch):
    """Rows of many lengths, batched so that batch sizes differ: each row's logits are those it gets alone, in the
    split's order (a row written to another's place, or padding read as text, changes them)."""
    torch.manual_seed(0)
    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, num_labels=3)
    model = BertForSequenceClassification(config).eval()
    rng = np.random.default_rng(1)
    ids = [rng.integers(1, 100, size=n) for n in rng.integers(3, 60, size=40)]
    split = TokenizedSplit(input_ids=ids, token_type_ids=None, labels=np.zeros(40, dtype=np.int64))
    monkeypatch.setattr(batching, "CPU_EVAL_TOKENS", 200)
    assert len({len(b) for b in eval_batches(split.lengths, 16, torch.device("cpu"))}) > 2
    batched = predict_logits(model, split, batch_size=16, pad_id=0, device=torch.device("cpu"))
    alone = np.concatenate([
        predict_logits(model, TokenizedSplit(input_ids=[row], token_type_ids=None, labels=None), batch_size=1,
                       pad_id=0, device=torch.device("cpu")) for row in ids])
    assert batched == pytest.approx(alone, abs=1e-5)
