"""How a worker trains and evaluates for each task: the batches it feeds and the metrics it reports.

- sequence-classification: batches of (padded) texts with their label; evaluation predicts a label per example
  and reports accuracy, macro F1 and Matthews correlation.
- multi-label-classification: the same batches with a 0/1 row of labels (the head trained on each label's binary
  cross-entropy); evaluation takes every label whose logit is above 0 (probability above 0.5) and reports micro
  F1, macro F1 and subset accuracy.
- token-classification: the same batches with a tag per token (a word's tag at its first sub-word token, the
  rest not scored); evaluation takes each word's highest logit there and reports the entity F1 and the word
  accuracy (autopeft/tasks/tag_spans.py).
- multiple-choice: batches of questions, each with all its (question, option) pairs; a one-output head scores
  each pair, and the loss is the cross-entropy of the softmax over a question's options; evaluation takes the
  option scored highest and reports accuracy.
- sequence-regression: the same batches with a float target (the one-output head is trained on the MSE);
  evaluation takes the single output as the prediction and reports Spearman and Pearson correlation and the MSE.
- causal-lm: batches of prompt + response with the prompt masked out of the loss; evaluation reports the mean
  token loss of the gold responses and the share of prompts whose greedy generation gives the gold answer
  (LLM-Adapters' scoring: the last number for math, the first choice token such as ``answer2`` or ``true`` else).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from autopeft.errors import TrialFailure
from autopeft.models.base import padding_id
from autopeft.store.predictions import ANSWERS, LABEL_SETS, LABELS, LOSSES, TAGS, VALUES, encode, with_losses
from autopeft.tasks.answer_options import AnswerOptions
from autopeft.tasks.choices import option_scores
from autopeft.tasks.data import TaskData, TokenizedSplit
from autopeft.tasks.tag_spans import tag_metrics, tag_scheme
from workers.batching import length_batches, score_token_budget
from workers.generation import (  # extract_answer: re-exported for the task's own metrics
    AnswerReading,
    answers_match,
    extract_answer,  # noqa: F401
    generate_answers,
    pad_rows,
    score_and_choose,
    score_and_generate,
    score_responses,
    shares_prompt_cache,
    task_max_new_tokens,
)
from workers.head_loss import DeferredHead
from workers.prefix_cache import FrozenPrefix
from workers.response_loss import MIN_SHARED_ROWS, Forward, HeadSharing, response_loss
from workers.training import (
    classification_metrics,
    collate,
    multi_label_metrics,
    predict_logits,
    predict_word_tags,
    regression_metrics,
)


@dataclass
class Evaluation:
    """One evaluation pass: the task metrics, and the prediction per eval example (encoded for storage,
    autopeft/store/predictions.py) from which the noise model recomputes them."""

    metrics: dict[str, float]
    predictions: dict[str, Any] = field(default_factory=dict)


class _TextRunner:
    """Single texts or text pairs with one label (classification) or target (regression) each, or a sentence's
    words with a tag each (token classification)."""

    def __init__(self, data: TaskData, tokenizer, device: torch.device):
        self.data = data
        self.pad_id = padding_id(tokenizer)  # the id the base's head was told (autopeft.models.base.load_base_model)
        self.device = device
        self.labels = torch.tensor(data.train.labels)  # a copy: arrays from the object store are read-only

    def train_batch(self, indices: np.ndarray) -> dict[str, torch.Tensor]:
        batch = collate(self.data.train, indices, self.pad_id, self.device)
        batch["labels"] = self.labels[indices].to(self.device)
        return batch

    def check_before_lowering(self, model: nn.Module, batch: dict[str, torch.Tensor], *,
                              whole_model: bool = True) -> None:
        """Nothing here compares fp32 passes during training (see CausalLmRunner)."""

    def train_loss(self, model: nn.Module, forward: Forward, batch: dict[str, torch.Tensor], *,
                   whole_model: bool = True) -> torch.Tensor:
        """The batch's training loss: the head's own (cross-entropy, or MSE for one output)."""
        return forward(batch).loss

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


class MultiLabelRunner(_TextRunner):
    """The labels of a row as a float 0/1 row: transformers' head takes the binary cross-entropy of each label's
    logit for a head of problem_type multi_label_classification (autopeft.models.base.TASK_HEADS)."""

    name: ClassVar[str] = "multi-label-classification"

    def evaluate(self, model: nn.Module, batch_size: int, prefix: FrozenPrefix | None = None) -> Evaluation:
        # a label is predicted where its probability passes one half: its logit above 0, the sigmoid's midpoint
        predictions = (self._eval_outputs(model, batch_size, prefix) > 0).astype(np.uint8)
        return Evaluation(multi_label_metrics(predictions, self.data.eval.labels), encode(LABEL_SETS, predictions))


class TokenTaggingRunner(_TextRunner):
    """A tag per word: the head's cross-entropy at each word's first token (the other tokens' targets are -100,
    which transformers' token-classification loss skips)."""

    name: ClassVar[str] = "token-classification"

    def __init__(self, data: TaskData, tokenizer, device: torch.device):
        super().__init__(data, tokenizer, device)
        self.scheme = tag_scheme(data.label_names)

    def train_batch(self, indices: np.ndarray) -> dict[str, torch.Tensor]:
        batch = collate(self.data.train, indices, self.pad_id, self.device)
        targets, _ = pad_rows([self.data.train.token_labels[i] for i in indices], -100)
        batch["labels"] = targets.to(self.device)
        return batch

    def train_loss(self, model: nn.Module, forward: Forward, batch: dict[str, torch.Tensor], *,
                   whole_model: bool = True) -> torch.Tensor:
        """The head's cross-entropy over the scored tokens, taken here rather than by the head: prompt tuning puts
        its virtual tokens in front of the input, and peft hands the head the input's labels unchanged, which no
        longer line up with its outputs (the error "Expected input batch_size (40) to match target batch_size
        (36)"). The input's own tokens are the outputs' last ones, whatever a method puts in front."""
        labels = batch["labels"]
        logits = forward({name: value for name, value in batch.items() if name != "labels"}).logits
        own = logits[:, -labels.shape[1]:]
        return functional.cross_entropy(own.reshape(-1, own.shape[-1]), labels.reshape(-1), ignore_index=-100)

    def evaluate(self, model: nn.Module, batch_size: int, prefix: FrozenPrefix | None = None) -> Evaluation:
        forward = None if prefix is None else (lambda indices, batch: prefix.forward("eval", indices, batch))
        predictions = predict_word_tags(model, self.data.eval, batch_size=batch_size, pad_id=self.pad_id,
                                        device=self.device, forward=forward)
        return Evaluation(tag_metrics(predictions, self.data.eval.labels, self.scheme), encode(TAGS, predictions))


class ChoiceBatch(dict):
    """A multiple-choice batch: the model's inputs, a (question, option) pair per row, with each pair's target
    (1.0 for a right option, 0.0 else: what a forward with labels, as calibration runs it, scores pointwise); and,
    outside the keys the forward takes, how many pairs each question has, in order."""

    option_counts: torch.Tensor


class MultipleChoiceRunner(_TextRunner):
    """A question's options scored one pair at a time by a one-output head (autopeft/tasks/choices.py), trained
    on the cross-entropy of the softmax over each question's options (transformers' multiple-choice loss); the
    prediction is the option scored highest. A training batch holds ``batch_size`` questions, with all their
    options."""

    name: ClassVar[str] = "multiple-choice"

    def __init__(self, data: TaskData, tokenizer, device: torch.device):
        super().__init__(data, tokenizer, device)
        split = data.train
        self.pair_targets = torch.zeros(len(split.input_ids))
        self.pair_targets[split.option_starts[:-1] + split.labels] = 1.0
        self.counts = torch.from_numpy(np.diff(split.option_starts))

    def train_batch(self, indices: np.ndarray) -> ChoiceBatch:
        pairs = self.data.train.pair_indices(indices)
        batch = ChoiceBatch(collate(self.data.train, pairs, self.pad_id, self.device))
        batch["labels"] = self.pair_targets[pairs].to(self.device)
        batch.option_counts = self.counts[indices]
        return batch

    def cache_keys(self, indices: np.ndarray) -> np.ndarray:
        """The frozen-layer cache's key of each row of the batch of these questions: its pair (workers/prefix_cache.py
        keeps a state per row)."""
        return self.data.train.pair_indices(indices)

    def keyed_batch(self, keys: np.ndarray) -> dict[str, torch.Tensor]:
        """The pairs ``keys`` name, as a batch (the cache's check that a cached state is still this base's)."""
        return collate(self.data.train, keys, self.pad_id, self.device)

    def train_loss(self, model: nn.Module, forward: Forward, batch: ChoiceBatch, *,
                   whole_model: bool = True) -> torch.Tensor:
        """The cross-entropy of each question's right option among its options' scores."""
        scores = forward({name: value for name, value in batch.items() if name != "labels"}).logits[:, 0]
        counts = batch.option_counts.to(scores.device)
        grid = torch.full((len(counts), int(counts.max())), float("-inf"), dtype=scores.dtype, device=scores.device)
        question = torch.repeat_interleave(torch.arange(len(counts), device=scores.device), counts)
        starts = torch.cumsum(counts, 0) - counts
        grid[question, torch.arange(len(question), device=scores.device) - starts[question]] = scores
        right = (batch["labels"].view(-1) > 0).nonzero().view(-1) - starts
        return functional.cross_entropy(grid.float(), right)

    def evaluate(self, model: nn.Module, batch_size: int, prefix: FrozenPrefix | None = None) -> Evaluation:
        split = self.data.eval
        forward = None if prefix is None else (lambda pairs, batch: prefix.forward("eval", pairs, batch))
        logits = predict_logits(model, split.pairs, batch_size=batch_size, pad_id=self.pad_id, device=self.device,
                                forward=forward)
        predictions = option_scores(logits[:, 0], split.option_starts).argmax(axis=-1)
        return Evaluation({"accuracy": float((predictions == split.labels).mean())}, encode(LABELS, predictions))


class RegressionRunner(_TextRunner):
    name: ClassVar[str] = "sequence-regression"

    def evaluate(self, model: nn.Module, batch_size: int, prefix: FrozenPrefix | None = None) -> Evaluation:
        predictions = self._eval_outputs(model, batch_size, prefix)[:, 0]
        if not np.isfinite(predictions).all():
            raise TrialFailure("the model's predictions are not finite numbers; lower the learning rate")
        return Evaluation(regression_metrics(predictions, self.data.eval.labels), encode(VALUES, predictions))


# The most fp32 logits one teacher-forced evaluation pass may hold (a logits-bound batch; see CausalLmRunner._loss)
LOGITS_BUDGET_BYTES = 256 * 2**20


class CausalLmRunner:
    """Evaluation: the mean token loss of the gold responses (teacher-forced), and the answer of each greedy
    response (workers/generation.py: batched by length, stopped once the answer is given, at most
    ``max_new_tokens``, by default the task's longest gold response plus a margin), from one forward pass over
    prompt and gold response where the model allows it (``shares_prompt_cache``), else in two passes."""

    name: ClassVar[str] = "causal-lm"

    def __init__(self, data: TaskData, tokenizer, device: torch.device, max_new_tokens: int | None = None):
        self.data = data
        self.tokenizer = tokenizer
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
        self.device = device
        self.head_sharing = HeadSharing()
        self.deferred_head = DeferredHead()
        split = data.eval
        self.max_new_tokens = max_new_tokens or task_max_new_tokens(
            [int((labels != -100).sum()) for labels in split.token_labels],
            [len(tokenizer(answer, add_special_tokens=False)["input_ids"]) for answer in split.answers or []])

    def _batch(self, split: TokenizedSplit, indices: np.ndarray) -> dict[str, torch.Tensor]:
        input_ids, mask = pad_rows([split.input_ids[i] for i in indices], self.pad_id)
        labels, _ = pad_rows([split.token_labels[i] for i in indices], -100)
        return {"input_ids": input_ids.to(self.device), "attention_mask": mask.to(self.device),
                "labels": labels.to(self.device)}

    def train_batch(self, indices: np.ndarray) -> dict[str, torch.Tensor]:
        return self._batch(self.data.train, indices)

    def _shares_head(self, model: nn.Module, batch: dict[str, torch.Tensor], whole_model: bool) -> bool:
        # the check (three small forward passes) only where sharing could apply: not at the usual batch of 4
        return (whole_model and len(batch["input_ids"]) >= MIN_SHARED_ROWS
                and self.head_sharing.allowed(model, self.data.train.input_ids[0], self.device))

    def check_before_lowering(self, model: nn.Module, batch: dict[str, torch.Tensor], *,
                              whole_model: bool = True) -> None:
        """Whether the model may share the template head, and whether its loss may be computed from its deferred
        output head, are checked by comparing fp32 passes, which cannot run while its frozen weights are lowered
        (workers/lowered_weights.py): checked here, before, once per model."""
        self._shares_head(model, batch, whole_model)
        self._output_head(model)

    def _output_head(self, model: nn.Module) -> nn.Linear | None:
        return self.deferred_head.head_of(model, self.data.train.input_ids[0], self.device)

    def train_loss(self, model: nn.Module, forward: Forward, batch: dict[str, torch.Tensor], *,
                   whole_model: bool = True) -> torch.Tensor:
        """The mean token loss of the batch's responses, without the logits the loss never reads and with the
        template every row begins with computed once where the model allows it (workers/response_loss.py);
        ``whole_model`` false: ``forward`` starts at a later layer, so the head is not shared."""
        return response_loss(model, forward, batch, share_head=self._shares_head(model, batch, whole_model),
                             output_head=self._output_head(model))

    @property
    def reading(self) -> AnswerReading:
        """How this task's responses give their answer (its closed set of words, whether its responses state it)."""
        return AnswerReading(tuple(self.data.answer_words or ()), self.data.answers_stated)

    @torch.inference_mode()
    def evaluate(self, model: nn.Module, batch_size: int, prefix: FrozenPrefix | None = None) -> Evaluation:
        """Generation re-enters the layers with a key/value cache, so it always runs the whole model (``prefix``
        is accepted and not used)."""
        model.eval()
        split = self.data.eval
        reading = self.reading
        settings = {"max_new_tokens": self.max_new_tokens, "pad_id": self.pad_id, "device": self.device,
                    "max_rows": batch_size, "reading": reading}
        faithful = self.head_sharing.faithful(model, split.prompts[0], self.device) if len(split) else True
        one_pass = faithful and shares_prompt_cache(model)
        if split.answers is None:  # records without gold answers: nothing to generate, the loss is the score
            if one_pass:
                per_block = score_responses(model, split.prompts, self._gold_responses(), pad_id=self.pad_id,
                                             device=self.device, max_rows=batch_size,
                                             token_budget=score_token_budget(self.device))
            else:
                per_block = self._loss(model, batch_size)[0]
            per_record = self._by_record(per_block)
            return Evaluation({"eval_loss": float(per_record.sum()) / max(int(self.response_tokens.sum()), 1)},
                              encode(LOSSES, per_record))
        options = self.data.answer_options
        if options is not None:
            return self._evaluate_options(model, batch_size, options, one_pass)
        if one_pass:
            scored = score_and_generate(model, self.tokenizer, split.prompts, self._gold_responses(), split.answers,
                                        **settings)
            losses, tokens, texts = scored.record_losses, scored.tokens, scored.texts
        else:
            losses, tokens, _ = self._loss(model, batch_size)
            texts = generate_answers(model, self.tokenizer, split.prompts, split.answers, use_cache=faithful,
                                     **settings)
        given = [reading.read(text, gold) for text, gold in zip(texts, split.answers)]
        return self._scored(losses, tokens, given)

    def _evaluate_options(self, model: nn.Module, batch_size: int, options: AnswerOptions,
                          one_pass: bool) -> Evaluation:
        """``answer_scoring: options``: each record's answer is the option most likely at the branch, read from the
        teacher-forced pass that scores the gold response (one pass with the template shared where the model
        allows it, else the plain pass)."""
        split = self.data.eval
        if one_pass:
            chosen = score_and_choose(model, split.prompts, self._gold_responses(), branch=options.branch,
                                      option_ids=options.token_ids, pad_id=self.pad_id, device=self.device,
                                      max_rows=batch_size, token_budget=score_token_budget(self.device))
            losses, tokens, choices = chosen.record_losses, chosen.tokens, chosen.choices
        else:
            losses, tokens, choices = self._loss(model, batch_size, options)
        given = [options.names[c] for c in choices]
        return self._scored(losses, tokens, given)

    @property
    def loss_only(self) -> bool:
        """Records without gold answers: the evaluation is the responses' loss alone, nothing is generated."""
        return self.data.eval.answers is None

    @property
    def response_tokens(self) -> np.ndarray:
        """How many tokens of each eval record's gold response (of a plain text: of the text) the loss is summed
        over."""
        return self._by_record(np.array([len(response) for response in self._gold_responses()], dtype=np.int64))

    def _by_record(self, per_block: np.ndarray) -> np.ndarray:
        """Per-block sums as per-record sums: a plain text split into blocks is one record of the noise model, so
        that its resampling does not count one long text as many independent ones."""
        record_of = self.data.eval.record_of
        if record_of is None:
            return per_block
        summed = np.bincount(record_of, weights=per_block, minlength=int(record_of.max(initial=-1)) + 1)
        return summed.astype(per_block.dtype)

    def _gold_responses(self) -> list[np.ndarray]:
        """Each eval record's gold response tokens (what follows its prompt)."""
        split = self.data.eval
        return [labels[len(prompt):] for labels, prompt in zip(split.token_labels, split.prompts)]

    def _scored(self, losses: np.ndarray, tokens: int, given: list[str]) -> Evaluation:
        """The evaluation from each eval record's summed response loss and the answer it gave. The losses are
        stored beside the answers: with the untouched model's they tell whether training moved the responses at
        all where the answers did not move (autopeft/results/untouched_model.py)."""
        golds = self.data.eval.answers
        correct = sum(answers_match(answer, gold) for answer, gold in zip(given, golds))
        return Evaluation({"eval_loss": float(losses.sum()) / max(tokens, 1), "answer_accuracy": correct / len(golds)},
                          with_losses(encode(ANSWERS, given), losses))

    def _logits_rows(self, model: nn.Module) -> int:
        """The token budget of one plain-pass batch: at most LOGITS_BUDGET_BYTES of fp32 logits."""
        vocabulary = int(getattr(getattr(model, "config", None), "vocab_size", 0) or 0)
        return max(1, LOGITS_BUDGET_BYTES // (4 * vocabulary)) if vocabulary else 1 << 30

    @torch.inference_mode()
    def _loss(self, model: nn.Module, batch_size: int,
              options: AnswerOptions | None = None) -> tuple[np.ndarray, int, np.ndarray]:
        """The plain pass (methods that put tokens of their own in front): each eval record's summed gold-response
        token loss (teacher-forced, length-sorted batches), their token count and, with ``options``, each record's
        most likely option at the branch (else an empty array)."""
        split = self.data.eval
        losses, tokens = np.zeros(len(split)), 0
        choices = np.zeros(len(split) if options is not None else 0, dtype=np.int64)
        option_ids = None if options is None else torch.as_tensor(options.token_ids, device=self.device)
        # This pass has the model compute logits over the whole vocabulary at every position (a method that puts
        # tokens of its own in front cannot keep only the response's), so rows are also bounded by the logits they
        # make: at eval_batch_size alone, 96 SmolLM2 records made 1.5 GB of logits, and the trial's measured peak
        # memory was the evaluation's, not the configuration's training.
        for rows in length_batches(split.lengths, 0, self._logits_rows(model), batch_size):
            batch = self._batch(split, rows)
            labels = batch.pop("labels")
            # prompt tuning puts its virtual tokens in front: the input's own positions are the last ones
            logits = model(**batch).logits[:, -labels.shape[1]:]
            token_losses = functional.cross_entropy(logits[:, :-1].float().transpose(1, 2), labels[:, 1:],
                                                    ignore_index=-100, reduction="none")
            losses[rows] = token_losses.sum(dim=1).double().cpu().numpy()
            tokens += int((labels[:, 1:] != -100).sum())
            if options is not None:
                at = torch.as_tensor([len(split.prompts[i]) + options.branch - 1 for i in rows], device=self.device)
                ahead = logits[torch.arange(len(rows), device=self.device), at]  # each row's prediction at the branch
                choices[rows] = ahead[:, option_ids].argmax(dim=-1).cpu().numpy()
        return losses, tokens, choices


RUNNERS = {runner.name: runner for runner in (ClassificationRunner, MultiLabelRunner, TokenTaggingRunner,
                                              MultipleChoiceRunner, RegressionRunner, CausalLmRunner)}
