"""Evaluation batches sized by tokens, not rows.

A batch is padded to its longest row, and its activations are rows × width × hidden wide. A fixed number of rows
(``training.eval_batch_size``, 128 by default) therefore costs little where texts are short and alike and a lot
where they are long and varied. Measured (bench/eval_batching, AMD EPYC with AVX-512 BF16, fp32, 2 threads; the
same predictions in every variant): on RTE's 277 dev pairs (65 tokens on average, up to 128) an evaluation of
SmolLM2-135M took 1.65x less time in length-sorted batches of at most 1,024 padded tokens than in batches of 128
rows, MiniLM-L6's 1.65x less; on SST-2's 872 short sentences 1.22x and 1.19x less. Part of that is padding (sorted
batches of fewer rows pad less), part is the working set: a CPU multiplies a batch whose activations stay in its
caches faster per token.

So on a CPU the rows of an evaluation are sorted by length and cut into batches of at most ``CPU_EVAL_TOKENS``
padded tokens (and at most ``eval_batch_size`` rows). An accelerator keeps wide batches, where a large batch is
what keeps it busy: there only the row limit applies.

A decoder's scoring passes that decode nothing after them (records without answers, ``answer_scoring: options``)
take the same bound on a CPU (bench/eval_batching/decoder_scoring.py: 1.11-1.71x against the 8,192 tokens they
held before, the same losses and options). Decoding does not: it steps one token at a time, and there batches of
1,024 tokens took 1.2x (BoolQ) to 2.3x (MultiArith) longer than batches of 8,192, so ``score_and_generate`` keeps
the wide budget.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import numpy as np
import torch

# Padded tokens per evaluation batch on a CPU: the budget with the best worst case over both models and both tasks
# measured (1.19-1.65x against rows only; 2,048 gave 1.15-1.78x, 512 0.96-1.65x, 8,192 1.0-1.34x:
# bench/eval_batching/results.json).
CPU_EVAL_TOKENS = 1024
# Tokens per batch of the decoder's evaluation passes wherever the CPU's bound does not apply (workers/generation.py's
# default), and always where the pass decodes.
WIDE_SCORE_TOKENS = 8192


def length_batches(lengths: Sequence[int], max_new_tokens: int, token_budget: int, max_rows: int) -> list[np.ndarray]:
    """Indices sorted by length, cut into batches whose rows × (longest prompt + new tokens) fit the budget (a row
    longer than the budget on its own is a batch of one)."""
    order = np.argsort(np.asarray(lengths), kind="stable")
    batches, start = [], 0
    while start < len(order):
        end = start + 1
        while (end < len(order) and end - start < max_rows
               and (end + 1 - start) * (lengths[order[end]] + max_new_tokens) <= token_budget):
            end += 1
        batches.append(order[start:end])
        start = end
    return batches


def eval_token_budget(device: torch.device) -> int | None:
    """Padded tokens an evaluation batch may hold on ``device``: ``CPU_EVAL_TOKENS`` on a CPU, no limit (rows
    only) on an accelerator."""
    return CPU_EVAL_TOKENS if device.type == "cpu" else None


def score_token_budget(device: torch.device) -> int:
    """Tokens a batch of the decoder's scoring passes may hold (workers/generation.py: a gold response's loss, an
    option's likelihood) when nothing is decoded after them: ``CPU_EVAL_TOKENS`` on a CPU, as for a classifier's
    evaluation; elsewhere ``WIDE_SCORE_TOKENS``, the wide batches that keep an accelerator busy. Where the pass also
    decodes (``score_and_generate``) the wide budget stays on every device (see the module's docstring)."""
    budget = eval_token_budget(device)
    return budget if budget is not None else WIDE_SCORE_TOKENS


def eval_batches(lengths: Sequence[int], max_rows: int, device: torch.device) -> list[np.ndarray]:
    """The evaluation's batches: length-sorted, at most ``max_rows`` rows and, on a CPU, at most
    ``CPU_EVAL_TOKENS`` padded tokens each."""
    budget = eval_token_budget(device)
    return length_batches(lengths, 0, budget if budget is not None else sys.maxsize, max_rows)
