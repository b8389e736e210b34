"""The measurements a trial reports, and which of them a search may optimise or constrain.

One registry, so the spec validator, the controller, the CLI tables and the export all agree on names,
directions and units. Every value is measured by the worker on the built model; none is estimated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Direction = Literal["maximize", "minimize"]


@dataclass(frozen=True)
class Measurement:
    name: str
    natural_direction: Direction
    unit: str
    help: str
    is_task_metric: bool = False


MEASUREMENTS: dict[str, Measurement] = {
    m.name: m
    for m in [
        Measurement("accuracy", "maximize", "fraction", "accuracy on the evaluation set", is_task_metric=True),
        Measurement("macro_f1", "maximize", "fraction", "macro-averaged F1 on the evaluation set", is_task_metric=True),
        Measurement("f1", "maximize", "fraction", "F1 of the positive class on the evaluation set (two-label "
                    "classification; data.positive_label), the usual score of paraphrase tasks such as MRPC and QQP",
                    is_task_metric=True),
        Measurement("matthews", "maximize", "coefficient", "Matthews correlation on the evaluation set",
                    is_task_metric=True),
        Measurement("answer_accuracy", "maximize", "fraction", "share of evaluation prompts whose generated "
                    "response gives the gold answer (causal-lm)", is_task_metric=True),
        Measurement("spearman", "maximize", "coefficient", "Spearman rank correlation of the predictions with the "
                    "gold targets (sequence-regression; ties get average ranks)", is_task_metric=True),
        Measurement("pearson", "maximize", "coefficient", "Pearson correlation of the predictions with the gold "
                    "targets (sequence-regression)", is_task_metric=True),
        Measurement("mse", "minimize", "squared target units", "mean squared error of the predictions "
                    "(sequence-regression)", is_task_metric=True),
        Measurement("eval_loss", "minimize", "nats", "mean token cross-entropy of the gold responses (causal-lm)"),
        Measurement("trainable_params", "minimize", "parameters", "parameters with requires_grad on the built model"),
        Measurement("trainable_percent", "minimize", "%", "trainable parameters as a percentage of the base model's"),
        Measurement("peak_memory_mb", "minimize", "MiB", "peak resident memory of the worker process during the trial"),
        Measurement("train_time_s", "minimize", "s", "wall time of the training loop"),
        Measurement("eval_time_s", "minimize", "s", "wall time of the evaluation pass"),
        Measurement("adapter_bytes", "minimize", "bytes", "size on disk of the saved adapter"),
        Measurement("frozen_base_mb", "minimize", "MiB", "memory the frozen base's tensors occupy (8/4-bit bases "
                    "store integer codes)"),
    ]
}


# What each task's evaluation reports (every task also reports every cost above).
TASK_METRICS: dict[str, tuple[str, ...]] = {
    "sequence-classification": ("accuracy", "macro_f1", "matthews", "f1"),  # f1: two labels only (autopeft.data)
    "sequence-regression": ("spearman", "pearson", "mse"),
    "causal-lm": ("answer_accuracy", "eval_loss"),
}


def known_measurements() -> str:
    return ", ".join(MEASUREMENTS)
