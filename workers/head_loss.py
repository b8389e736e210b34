"""A decoder's token loss computed from the last hidden states in chunks, never holding the whole vocabulary's
logits.

The vocabulary projection of a decoder makes the largest tensors of its training step: SmolLM2-135M's 49,152
logits per token are 85 times its 576-wide hidden state, so a batch of 16 texts of 256 tokens makes 0.8 GB of fp32
logits, and the loss keeps several tensors of that size alive (the autocast product, its fp32 copy, the log-softmax
saved for the backward, then the gradient). Here the model's output head is deferred (its forward hands back its
input) and the loss is computed from those hidden states a chunk of tokens at a time: each chunk's logits, their
log-sum-exp and, at once, the chunk's gradient with respect to its hidden states, so that only one chunk's logits
ever exist and the backward has nothing left to do but scale. The arithmetic is that of the plain loss (the
product in the autocast dtype, softmax and loss in fp32, the gradient's product in the autocast dtype again); the
same losses are in tests/test_head_loss.py and the memory and time saved in bench/decoders/head_loss.json.

Only a head whose output is its plain product applies: an ``nn.Linear`` whose parameters are frozen (a trainable
head, a LoRA on it or a quantised head keep the model's own loss), and whose model hands its logits on unchanged
(Gemma 2 soft-caps them, Cohere scales them): checked once per model by comparing the two in fp32
(``DeferredHead.head_of``), as the template sharing is checked; a model the check's bare call does not suit keeps
its own loss.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from workers.generation import transformers_model

# The most fp32 logits one chunk makes: 64 MiB is 341 tokens of a 49k vocabulary, 131 of a 128k one, rows enough
# for the chunk's product to run at full speed.
CHUNK_LOGITS_BYTES = 64 * 2**20


def chunk_rows(vocabulary: int) -> int:
    """Tokens per chunk: at most CHUNK_LOGITS_BYTES of fp32 logits, and at least one token."""
    return max(1, CHUNK_LOGITS_BYTES // (4 * max(vocabulary, 1)))


class _ChunkedHeadLoss(torch.autograd.Function):
    """The mean cross-entropy of ``hidden @ weight.T (+ bias)`` against ``labels`` (ignoring -100), with the
    gradient with respect to ``hidden`` computed during the forward, chunk by chunk. The head's parameters are
    frozen, so no gradient is made for them."""

    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                labels: torch.Tensor) -> torch.Tensor:
        scored = labels != -100
        count = max(int(scored.sum()), 1)
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        gradient = torch.zeros_like(hidden) if ctx.needs_input_grad[0] else None
        step = chunk_rows(weight.shape[0])
        device = hidden.device.type
        if torch.is_autocast_enabled(device):  # the product's operands cast once, not at every chunk
            low = torch.get_autocast_dtype(device)
            weight, bias = weight.to(low), None if bias is None else bias.to(low)
        for start in range(0, hidden.shape[0], step):
            rows = slice(start, start + step)
            chosen = scored[rows]
            if not bool(chosen.any()):
                continue
            # the product as the model would make it under the ambient autocast; softmax and loss in fp32
            product = functional.linear(hidden[rows], weight, bias)
            logits = product.float()
            targets = labels[rows].clamp(min=0)
            picked = logits.gather(1, targets[:, None])[:, 0]
            top = logits.amax(dim=-1, keepdim=True)
            exponentials = logits.sub_(top).exp_()  # in place: the chunk's one buffer of the vocabulary's width
            sums = exponentials.sum(dim=-1)
            total += ((top[:, 0] + sums.log() - picked) * chosen).sum()
            if gradient is not None:
                # d(mean loss)/d(logits) = (softmax - one-hot) / count on the scored rows, scaled before it is
                # rounded to the product's dtype, as the plain loss's backward does
                weights = chosen / count
                exponentials.mul_((weights / sums)[:, None])
                exponentials[torch.arange(len(targets), device=logits.device), targets] -= weights
                gradient[rows] = (exponentials.to(product.dtype) @ weight).to(hidden.dtype)
        ctx.save_for_backward(gradient if gradient is not None else torch.empty(0))
        return total / count

    @staticmethod
    def backward(ctx, upstream: torch.Tensor):
        (gradient,) = ctx.saved_tensors
        return gradient * upstream.to(gradient.dtype), None, None, None


def chunked_head_loss(hidden: torch.Tensor, head: nn.Linear, labels: torch.Tensor) -> torch.Tensor:
    """The mean token cross-entropy of ``head(hidden)`` against ``labels`` (any leading shape, -100 ignored),
    never holding more than one chunk's logits."""
    width = hidden.shape[-1]
    return _ChunkedHeadLoss.apply(hidden.reshape(-1, width), head.weight, head.bias, labels.reshape(-1))


@contextlib.contextmanager
def deferred(head: nn.Module) -> Iterator[None]:
    """Inside: ``head`` hands back its input, so a model's ``logits`` are its last hidden states. An instance
    attribute shadows the class's forward for as long as it is set."""
    head.forward = _identity
    try:
        yield
    finally:
        del head.forward


def _identity(hidden: torch.Tensor) -> torch.Tensor:
    return hidden


class DeferredHead:
    """Whether a model's loss may be computed from its deferred head (see the module's docstring), checked once
    per model: which head a model has and what it does with the logits are fixed for a trial."""

    def __init__(self) -> None:
        self._heads: weakref.WeakKeyDictionary[nn.Module, nn.Linear | None] = weakref.WeakKeyDictionary()

    def head_of(self, model: nn.Module, sample: np.ndarray, device: torch.device) -> nn.Linear | None:
        """The model's output head where its logits are the head's plain product of the deferred output, else
        None. Checked in fp32 and in eval mode on the first tokens of ``sample``."""
        if model not in self._heads:
            self._heads[model] = _checked_head(model, sample, device)
        return self._heads[model]


def _checked_head(model: nn.Module, sample: np.ndarray, device: torch.device) -> nn.Linear | None:
    inner = transformers_model(model)
    head = inner.get_output_embeddings() if inner is not None else None
    if type(head) is not nn.Linear or any(p.requires_grad for p in head.parameters()):
        return None
    ids = torch.as_tensor(np.asarray(sample[:16], dtype=np.int64), device=device)[None]
    training = model.training
    model.eval()
    try:
        with torch.inference_mode(), torch.autocast(device.type, enabled=False):
            logits = model(input_ids=ids).logits.float()
            with deferred(head):
                hidden = model(input_ids=ids).logits
    except Exception:  # a model this bare call does not suit keeps its own loss, and trains
        return None
    finally:
        model.train(training)
    if hidden.shape[-1] != head.in_features:  # the model's logits do not come from this module
        return None
    rebuilt = functional.linear(hidden, head.weight, head.bias).float()
    return head if torch.allclose(rebuilt, logits, rtol=1e-4, atol=1e-4) else None
