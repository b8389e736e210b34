"""The training loop and the evaluation pass of one trial.

A plain loop rather than ``transformers.Trainer``: a trial is a few hundred steps, and the Trainer's per-run set-up
(accelerate state, callbacks, logging, fixed padding by the collator's defaults) is a cost every trial would pay.
Batches are padded to their own longest example; evaluation runs without gradients over length-sorted batches
bounded by tokens on a CPU (workers/batching.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from transformers import get_linear_schedule_with_warmup

from autopeft.errors import TrialFailure
from autopeft.tasks.data import TokenizedSplit
from workers.batching import eval_batches


def collate(split: TokenizedSplit, indices: np.ndarray, pad_id: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Pad the chosen examples to their longest one."""
    width = max(len(split.input_ids[i]) for i in indices)
    input_ids = np.full((len(indices), width), pad_id, dtype=np.int64)
    attention = np.zeros((len(indices), width), dtype=np.int64)
    types = None if split.token_type_ids is None else np.zeros((len(indices), width), dtype=np.int64)
    for row, i in enumerate(indices):
        length = len(split.input_ids[i])
        input_ids[row, :length] = split.input_ids[i]
        attention[row, :length] = 1
        if types is not None:
            types[row, :length] = split.token_type_ids[i]
    batch = {"input_ids": input_ids, "attention_mask": attention}
    if types is not None:
        batch["token_type_ids"] = types
    return {k: torch.from_numpy(v).to(device) for k, v in batch.items()}


GROUP_MULTIPLIER = 50  # examples sorted together for length grouping: batch_size × this (as Trainer's sampler)


def training_batches(size: int, batch_size: int, seed: int,
                     lengths: np.ndarray | None = None) -> Iterator[np.ndarray]:
    """Endless shuffled batches, a fresh permutation each epoch.

    With ``lengths``, batches are length-grouped: each run of ``batch_size × 50`` shuffled examples is sorted by
    length and cut into batches, and the batches are shuffled; a batch then pads to a length close to its
    members' own, with every example still seen once per epoch in random company.
    """
    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(size)
        usable = size - size % batch_size if size >= batch_size else size
        if lengths is None:
            batches = [order[start:start + batch_size] for start in range(0, usable, batch_size)]
        else:
            group = batch_size * GROUP_MULTIPLIER
            batches = []
            for start in range(0, usable, group):
                chunk = order[start:min(start + group, usable)]
                chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
                batches.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
            batches = [batches[i] for i in rng.permutation(len(batches))]
        yield from batches


def train(
    model: nn.Module,
    loss_of: Callable[[np.ndarray], torch.Tensor],
    size: int,
    *,
    steps: int,
    learning_rate: float,
    training: dict[str, Any],
    seed: int,
    go_on: Callable[[int], bool] | None = None,
    lengths: np.ndarray | None = None,
    after_step: Callable[[int], None] | None = None,
) -> list[tuple[int, float]]:
    """Train for ``steps`` optimizer steps on batches of the ``size`` training examples; return the loss curve.

    ``loss_of`` turns example indices into the batch's loss (the task and the frozen-prefix cache decide how);
    ``lengths`` (the examples' token counts) turns on length-grouped batches; ``after_step(step)`` runs after
    each optimizer step while the gradients are still there (a method's own schedule, e.g. AdaLoRA's). ``go_on``,
    called after each step, may end training early by returning False (early stopping at a rung). Raises
    TrialFailure on a non-finite loss.
    """
    parameters = [p for p in model.parameters() if p.requires_grad]
    if not parameters:
        raise TrialFailure("the configuration leaves no trainable parameter")
    optimizer = torch.optim.AdamW(parameters, lr=learning_rate, weight_decay=training["weight_decay"])
    scheduler = get_linear_schedule_with_warmup(optimizer, math.ceil(steps * training["warmup_ratio"]), steps)
    model.train()
    curve: list[tuple[int, float]] = []
    running, counted = 0.0, 0
    batches = training_batches(size, training["batch_size"], seed, lengths)
    for step in range(1, steps + 1):
        loss = loss_of(next(batches))
        if not torch.isfinite(loss):
            raise TrialFailure(f"loss became {loss.item()} at step {step}; lower the learning rate")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, training["max_grad_norm"])
        optimizer.step()
        if after_step is not None:
            after_step(step)
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        running += loss.item()
        counted += 1
        stop = go_on is not None and not go_on(step)
        if step % training["log_every"] == 0 or step == steps or (stop and counted):
            curve.append((step, running / counted))
            running, counted = 0.0, 0
        if stop:
            break
    return curve


@torch.no_grad()  # not inference_mode: states cached here by the frozen-prefix cache are reused in training
def predict_logits(model: nn.Module, split: TokenizedSplit, *, batch_size: int, pad_id: int, device: torch.device,
                   forward: Callable[[np.ndarray, dict[str, torch.Tensor]], Any] | None = None) -> np.ndarray:
    """The head's outputs per example (examples × outputs, float32), in the split's order (``forward(indices,
    batch)`` replaces ``model(**batch)``, e.g. to start from cached frozen layers). Batches are length-sorted, at
    most ``batch_size`` rows and, on a CPU, a bounded number of padded tokens (workers/batching.py)."""
    outputs: np.ndarray | None = None
    for indices, logits in _eval_logits(model, split, batch_size, pad_id, device, forward):
        if outputs is None:
            outputs = np.empty((len(split), logits.shape[-1]), dtype=np.float32)
        outputs[indices] = logits.float().cpu().numpy()
    if outputs is None:
        raise ValueError("nothing to predict: the split has no examples")
    return outputs


def _eval_logits(model: nn.Module, split: TokenizedSplit, batch_size: int, pad_id: int, device: torch.device,
                 forward: Callable[[np.ndarray, dict[str, torch.Tensor]], Any] | None
                 ) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """Each evaluation batch's examples and the head's logits on them (see :func:`predict_logits`)."""
    model.eval()
    for indices in eval_batches(split.lengths, batch_size, device):
        batch = collate(split, indices, pad_id, device)
        yield indices, (model(**batch) if forward is None else forward(indices, batch)).logits


@torch.no_grad()
def predict_word_tags(model: nn.Module, split: TokenizedSplit, *, batch_size: int, pad_id: int,
                      device: torch.device,
                      forward: Callable[[np.ndarray, dict[str, torch.Tensor]], Any] | None = None) -> np.ndarray:
    """A tagger's tag per word (sentences × words, -1 past a sentence's end and for a word cut away): the highest
    logit at each word's first token, as its tag was trained (``TokenizedSplit.word_starts``)."""
    tags = np.full(split.labels.shape, -1, dtype=np.int64)
    for indices, logits in _eval_logits(model, split, batch_size, pad_id, device, forward):
        width = max(len(split.input_ids[i]) for i in indices)
        # the input's own tokens are the last ones: prompt tuning puts its virtual tokens in front
        best = logits[:, -width:].argmax(dim=-1).cpu().numpy()
        for row, example in enumerate(indices):
            starts = split.word_starts[example]
            kept = np.flatnonzero(starts >= 0)
            tags[example, kept] = best[row, starts[kept]]
    return tags


def predict(model: nn.Module, split: TokenizedSplit, *, batch_size: int, pad_id: int, device: torch.device,
            forward: Callable[[np.ndarray, dict[str, torch.Tensor]], Any] | None = None) -> np.ndarray:
    """Predicted label per example (the highest logit), in the split's order; see :func:`predict_logits`."""
    return predict_logits(model, split, batch_size=batch_size, pad_id=pad_id, device=device,
                          forward=forward).argmax(axis=-1)


def classification_metrics(predictions: np.ndarray, labels: np.ndarray, num_labels: int,
                           positive: int = 1) -> dict[str, float]:
    """Accuracy, macro F1 and Matthews correlation (multi-class form, Gorodkin 2004); with two labels also ``f1``,
    the F1 of the class ``positive`` (the head index of ``TaskData.positive_index``), by which paraphrase tasks
    are scored. A class with no true positive has F1 0, as in macro F1."""
    accuracy = float((predictions == labels).mean())
    confusion = np.zeros((num_labels, num_labels), dtype=np.float64)
    np.add.at(confusion, (labels, predictions), 1)
    samples, correct = confusion.sum(), np.trace(confusion)
    true_counts, predicted_counts = confusion.sum(axis=1), confusion.sum(axis=0)
    denominator = math.sqrt((samples**2 - predicted_counts @ predicted_counts)
                            * (samples**2 - true_counts @ true_counts))
    matthews = 0.0 if denominator == 0 else float((correct * samples - predicted_counts @ true_counts) / denominator)
    f1s = []
    for label in range(num_labels):
        tp = np.sum((predictions == label) & (labels == label))
        fp = np.sum((predictions == label) & (labels != label))
        fn = np.sum((predictions != label) & (labels == label))
        f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    metrics = {"accuracy": accuracy, "macro_f1": float(np.mean(f1s)), "matthews": matthews}
    if num_labels == 2:
        metrics["f1"] = float(f1s[positive])
    return metrics


def multi_label_metrics(predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Micro F1 (every example-label decision pooled), macro F1 (the mean of each label's F1; a label with no
    true positive has F1 0, as in macro F1 of one label per example) and subset accuracy (the share of examples
    whose whole 0/1 row is predicted exactly), of 0/1 matrices (examples × labels)."""
    predicted, gold = np.asarray(predictions, dtype=bool), np.asarray(labels, dtype=bool)
    tp = (predicted & gold).sum(axis=0).astype(np.float64)
    fp = (predicted & ~gold).sum(axis=0).astype(np.float64)
    fn = (~predicted & gold).sum(axis=0).astype(np.float64)
    pooled = 2 * tp.sum() + fp.sum() + fn.sum()
    per_label = np.divide(2 * tp, 2 * tp + fp + fn, out=np.zeros_like(tp), where=tp > 0)
    return {"micro_f1": 0.0 if tp.sum() == 0 else float(2 * tp.sum() / pooled),
            "macro_f1": float(per_label.mean()),
            "subset_accuracy": float((predicted == gold).all(axis=1).mean())}


def _correlation(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson's r; 0.0 when either side is constant (undefined there; 0 = no association, as for Matthews)."""
    x, y = x - x.mean(), y - y.mean()
    denominator = math.sqrt(float(x @ x) * float(y @ y))
    return 0.0 if denominator == 0 else float(np.clip(x @ y / denominator, -1.0, 1.0))


def regression_metrics(predictions: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """Spearman rank correlation (tied values share their average rank), Pearson correlation and mean squared
    error of the predictions against the gold targets, computed in float64."""
    predictions = np.asarray(predictions, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.float64)
    ranks = [pd.Series(v).rank(method="average").to_numpy() for v in (predictions, targets)]
    return {"spearman": _correlation(*ranks), "pearson": _correlation(predictions, targets),
            "mse": float(np.mean((predictions - targets) ** 2))}


def enable_gradient_checkpointing(model: nn.Module) -> None:
    """Recompute each transformer layer's activations in the backward pass instead of keeping them from the forward
    (``training.gradient_checkpointing``): less memory for more time. Applies to the transformers model inside any
    wrapper (peft, AdapterHub); non-reentrant, so a frozen embedding needs no gradient-carrying input."""
    from transformers import PreTrainedModel

    inner = next((m for m in model.modules() if isinstance(m, PreTrainedModel)), None)
    if inner is None or not inner.supports_gradient_checkpointing:
        name = type(inner or model).__name__
        raise TrialFailure(f"{name} does not support gradient checkpointing; set training.gradient_checkpointing: "
                           "false")
    inner.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
