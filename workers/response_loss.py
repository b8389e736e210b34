"""A decoder's training loss on prompt + response records, computed without the work the loss never reads.

Instruction records (LLM-Adapters', Alpaca's) score only the response: the prompt is masked out of the loss, yet it
is most of each sequence, and every prompt begins with the same template. Two savings, each exact:

- **Logits only where a response token is predicted** (``logits_to_keep``): the vocabulary projection and its
  softmax are computed from the first position that predicts a response token on, not over the prompts. On
  SmolLM2-135M (a 49k vocabulary) with BoolQ-style records that is a fifth of a training step.
- **The shared template once per batch** (of at least ``MIN_SHARED_ROWS`` rows): the first tokens every row of
  the batch shares (the template, about half of a BoolQ-style record) are run once, as one row, and their keys
  and values are handed to the rest of the batch as a cache (repeated per row, so the gradient from every row
  flows back into the one computation). Position ids
  continue after the head, so every row is computed as it would be whole. One difference only: dropout in the head
  draws one mask for the batch instead of one per row.

The head is shared only where that is the same computation: a transformers decoder whose forward takes a cache and
position ids, with no method that puts tokens or a cache of its own in front of the sequence (peft's prompt
learning, AdapterHub's prefix: ``shares_prompt_cache``), whose cache a step really reads (``cache_is_faithful``),
without gradient checkpointing (transformers turns the cache off under it), and from the first layer (the
frozen-prefix path feeds cached states into a later layer instead). Otherwise only the logits are cut.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from workers.generation import cache_is_faithful, keeps_some_logits, shares_prompt_cache, transformers_model
from workers.head_loss import chunked_head_loss, deferred

# Shorter shared heads save too little to pay for a second forward call.
MIN_SHARED_HEAD = 8
# Fewer rows save too little to pay for the second forward call and attention over a cache: on SmolLM2-135M with
# BoolQ-style records (a 36-token template in 67) and bf16 on 2 CPU threads, sharing cost 7% at 4 rows and saved 14%
# at 8 and 26% at 16 (bench/decoders/response_loss.py).
MIN_SHARED_ROWS = 8

# Runs the model on a batch: ``forward(batch, **options)`` is the model's output (options such as ``logits_to_keep``
# go to the model's forward). The worker hands runners the plain model or the frozen-prefix path through it.
Forward = Callable[..., Any]


def shared_head_length(batch: dict[str, torch.Tensor], limit: int) -> int:
    """How many first tokens every row of the batch shares (real tokens, at most ``limit``)."""
    ids, mask = batch["input_ids"], batch["attention_mask"]
    same = (ids == ids[:1]).all(dim=0) & (mask == 1).all(dim=0)
    return min(int(same.long().cumprod(dim=0).sum()), limit)


def _after_shared_head(model: nn.Module, batch: dict[str, torch.Tensor], head: int, kept: int):
    """The model's output on the batch, its first ``head`` tokens (the same in every row) computed once; None
    where the model makes no cache while training (Gemma 2 builds its cache only in eval mode)."""
    ids = batch["input_ids"]
    rows = ids.shape[0]
    cache = model(input_ids=ids[:1, :head], use_cache=True, logits_to_keep=1).past_key_values
    if cache is None:
        return None
    cache.batch_repeat_interleave(rows)
    positions = torch.arange(head, ids.shape[1], device=ids.device).expand(rows, -1)
    return model(input_ids=ids[:, head:], attention_mask=batch["attention_mask"], position_ids=positions,
                 past_key_values=cache, use_cache=True, logits_to_keep=kept)


def response_loss(model: nn.Module, forward: Forward, batch: dict[str, torch.Tensor], *,
                  share_head: bool, output_head: nn.Linear | None = None) -> torch.Tensor:
    """The mean token loss of the batch's responses: the model's own loss (tokens predicted from the position
    before them, ignored where the label is -100, averaged over scored tokens), computed as the module says;
    with ``output_head`` (``DeferredHead.head_of``), from the last hidden states a chunk of tokens at a time
    (workers/head_loss.py), never holding the whole vocabulary's logits, also where the forward cannot cut them."""
    labels = batch["labels"]
    scored = torch.nonzero((labels != -100).any(dim=0))
    cuts = keeps_some_logits(model)  # else a forward that makes logits at every position (a model's own code)
    if not len(scored) or not (cuts or output_head is not None):
        return forward(batch).loss
    first = max(int(scored[0]), 1) if cuts else 1  # the first token is never predicted
    kept = labels.shape[1] - first + 1
    head = shared_head_length(batch, first - 1) if share_head and labels.shape[0] >= MIN_SHARED_ROWS else 0
    with deferred(output_head) if output_head is not None else contextlib.nullcontext():
        output = _after_shared_head(model, batch, head, kept) if head >= MIN_SHARED_HEAD else None
        if output is None:
            output = forward({k: v for k, v in batch.items() if k != "labels"},
                             **({"logits_to_keep": kept} if cuts else {}))
    # the last ``kept`` positions: prompt tuning puts its virtual tokens in front of the input's own
    if output_head is not None:  # the output's "logits" are the last hidden states
        return chunked_head_loss(output.logits[:, -kept:-1], output_head, labels[:, first:])
    logits = output.logits[:, -kept:-1].float()
    return functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels[:, first:].reshape(-1),
                                    ignore_index=-100)


class HeadSharing:
    """Whether a model may share the template head (see the module's docstring), checked once per model: the
    answer cannot change during a trial, and the check costs three small forward passes. The cache check inside it
    is kept too (``faithful``), for the evaluation to reuse: whether a model's layers read the key/value cache is a
    property of their code, not of the weights training changes."""

    def __init__(self) -> None:
        self._checked: weakref.WeakKeyDictionary[nn.Module, bool] = weakref.WeakKeyDictionary()
        self._faithful: weakref.WeakKeyDictionary[nn.Module, bool] = weakref.WeakKeyDictionary()

    def allowed(self, model: nn.Module, sample: np.ndarray, device: torch.device) -> bool:
        if model not in self._checked:
            self._checked[model] = (shares_prompt_cache(model)
                                    and not getattr(transformers_model(model), "is_gradient_checkpointing", False)
                                    and self.faithful(model, sample, device))
        return self._checked[model]

    def faithful(self, model: nn.Module, sample: np.ndarray, device: torch.device) -> bool:
        """``cache_is_faithful``, once per model, in eval mode (dropout would make the cached step differ from the
        full pass for no fault of the cache)."""
        if model not in self._faithful:
            training = model.training
            model.eval()
            try:
                self._faithful[model] = cache_is_faithful(model, sample, device)
            except Exception:  # a model the check's bare call does not suit: its cache is not trusted, and it trains
                self._faithful[model] = False
            finally:
                model.train(training)
        return self._faithful[model]
