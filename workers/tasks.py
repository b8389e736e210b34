"""How a worker trains and evaluates for each task: the batches it feeds and the metrics it reports.

- sequence-classification: batches of (padded) texts with their label; evaluation predicts a label per example
  and reports accuracy, macro F1 and Matthews correlation.
- sequence-regression: the same batches with a float target (the one-output head is trained on the MSE);
  evaluation takes the single output as the prediction and reports Spearman and Pearson correlation and the MSE.
- causal-lm: batches of prompt + response with the prompt masked out of the loss; evaluation reports the mean
  token loss of the gold responses and the share of prompts whose greedy generation gives the gold answer
  (LLM-Adapters' scoring: the last number for math, the first choice token such as ``answer2`` or ``true`` else).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from autopeft.data import TaskData, TokenizedSplit
from autopeft.errors import TrialFailure
from autopeft.predictions import ANSWERS, LABELS, VALUES, encode
from workers.prefix_cache import FrozenPrefix
from workers.training import classification_metrics, collate, predict_logits, regression_metrics


@dataclass
class Evaluation:
    """One evaluation pass: the task metrics, and the prediction per eval example (encoded for storage,
    autopeft/predictions.py) from which the noise model recomputes them."""

    metrics: dict[str, float]
    predictions: dict[str, Any] = field(default_factory=dict)


class _TextRunner:
    """Single texts or text pairs with one label (classification) or target (regression) each."""

    def __init__(self, data: TaskData, tokenizer, device: torch.device):
        self.data = data
        self.pad_id = tokenizer.pad_token_id or 0
        self.device = device
        self.labels = torch.tensor(data.train.labels)  # a copy: arrays from the object store are read-only

    def train_batch(self, indices: np.ndarray) -> dict[str, torch.Tensor]:
        batch = collate(self.data.train, indices, self.pad_id, self.device)
        batch["labels"] = self.labels[indices].to(self.device)
        return batch

    def _eval_outputs(self, model: nn.Module, batch_size: int, prefix: FrozenPrefix | None) -> np.ndarray:
        """The head's outputs on the evaluation split (examples × outputs)."""
        forward = None if prefix is None else (lambda indices, batch: prefix.forward("eval", indices, batch))
        return predict_logits(model, self.data.eval, batch_size=batch_size, pad_id=self.pad_id,
                              device=self.device, forward=forward)


class ClassificationRunner(_TextRunner):
    name: ClassVar[str] = "sequence-classification"

    def evaluate(self, model: nn.Module, batch_size: int, prefix: FrozenPrefix | None = None) -> Evaluation:
        predictions = self._eval_outputs(model, batch_size, prefix).argmax(axis=-1)
        metrics = classification_metrics(predictions, self.data.eval.labels, self.data.num_labels,
                                         positive=self.data.f1_positive)
        return Evaluation(metrics, encode(LABELS, predictions))


class RegressionRunner(_TextRunner):
    name: ClassVar[str] = "sequence-regression"

    def evaluate(self, model: nn.Module, batch_size: int, prefix: FrozenPrefix | None = None) -> Evaluation:
        predictions = self._eval_outputs(model, batch_size, prefix)[:, 0]
        if not np.isfinite(predictions).all():
            raise TrialFailure("the model's predictions are not finite numbers; lower the learning rate")
        return Evaluation(regression_metrics(predictions, self.data.eval.labels), encode(VALUES, predictions))


def _pad(rows: list[np.ndarray], value: int, left: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    padded = np.full((len(rows), width), value, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, row in enumerate(rows):
        where = slice(width - len(row), width) if left else slice(0, len(row))
        padded[i, where] = row
        mask[i, where] = 1
    return torch.from_numpy(padded), torch.from_numpy(mask)


_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def extract_answer(generated: str, gold: str) -> str:
    """The answer a response gives, read the way the gold answer is written."""
    text = generated.replace(",", "")
    if _NUMBER.fullmatch(gold.strip()):
        numbers = _NUMBER.findall(text)
        return numbers[-1] if numbers else ""
    stem = re.fullmatch(r"([A-Za-z]+)\d+", gold.strip())
    if stem:  # answer1..5, option1/2, solution1/2, ending1..4
        found = re.search(rf"{stem.group(1)}\d+", text, flags=re.IGNORECASE)
    elif gold.strip().lower() in ("true", "false"):
        found = re.search(r"\b(true|false)\b", text, flags=re.IGNORECASE)
    elif re.fullmatch(r"[A-E]", gold.strip()):
        found = re.search(r"\b([A-E])\b", text)
    else:
        found = re.search(r"\S+", text)
    return found.group(0) if found else ""


def answers_match(predicted: str, gold: str) -> bool:
    if _NUMBER.fullmatch(gold.strip()) and _NUMBER.fullmatch(predicted):
        return abs(float(predicted) - float(gold)) < 1e-4
    return predicted.strip().lower() == gold.strip().lower()


class CausalLmRunner:
    name: ClassVar[str] = "causal-lm"

    def __init__(self, data: TaskData, tokenizer, device: torch.device, max_new_tokens: int = 32):
        self.data = data
        self.tokenizer = tokenizer
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
        self.device = device
        self.max_new_tokens = max_new_tokens

    def _batch(self, split: TokenizedSplit, indices: np.ndarray) -> dict[str, torch.Tensor]:
        input_ids, mask = _pad([split.input_ids[i] for i in indices], self.pad_id)
        labels, _ = _pad([split.token_labels[i] for i in indices], -100)
        return {"input_ids": input_ids.to(self.device), "attention_mask": mask.to(self.device),
                "labels": labels.to(self.device)}

    def train_batch(self, indices: np.ndarray) -> dict[str, torch.Tensor]:
        return self._batch(self.data.train, indices)

    @torch.inference_mode()
    def evaluate(self, model: nn.Module, batch_size: int, prefix: FrozenPrefix | None = None) -> Evaluation:
        """Generation re-enters the layers with a key/value cache, so it always runs the whole model (``prefix``
        is accepted and not used)."""
        model.eval()
        split = self.data.eval
        order = np.argsort(split.lengths, kind="stable")
        losses, tokens = 0.0, 0
        for start in range(0, len(order), batch_size):
            batch = self._batch(split, order[start:start + batch_size])
            scored = int((batch["labels"][:, 1:] != -100).sum())
            losses += model(**batch).loss.item() * scored
            tokens += scored
        given: list[str] = []
        generation_batch = max(1, batch_size // 4)
        for start in range(0, len(split), generation_batch):
            rows = list(range(start, min(start + generation_batch, len(split))))
            prompt_ids, mask = _pad([split.prompts[i] for i in rows], self.pad_id, left=True)
            generated = model.generate(input_ids=prompt_ids.to(self.device), attention_mask=mask.to(self.device),
                                       max_new_tokens=self.max_new_tokens, do_sample=False,
                                       pad_token_id=self.pad_id)
            texts = self.tokenizer.batch_decode(generated[:, prompt_ids.shape[1]:], skip_special_tokens=True)
            given += [extract_answer(text, split.answers[i]) for i, text in zip(rows, texts)]
        correct = sum(answers_match(answer, gold) for answer, gold in zip(given, split.answers))
        return Evaluation({"eval_loss": losses / max(tokens, 1), "answer_accuracy": correct / len(split)},
                          encode(ANSWERS, given))


RUNNERS = {runner.name: runner for runner in (ClassificationRunner, RegressionRunner, CausalLmRunner)}
