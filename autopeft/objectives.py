"""The measurements a trial reports, and which of them a search may optimise or constrain.

One registry, so the spec validator, the controller, the CLI tables and the export all agree on names,
directions and units. Every value is measured by the worker on the built model; none is estimated.

A user's own metrics (autopeft/plugins.py) join the same registry, so every reader sees them with no path of its
own. Installed ones (entry points) are loaded the first time the registry is read, whoever reads it first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

Direction = Literal["maximize", "minimize"]
CUSTOM_UNIT = "score"  # a user's metric: no unit known, any real value possible


@dataclass(frozen=True)
class Measurement:
    name: str
    natural_direction: Direction
    unit: str
    help: str
    is_task_metric: bool = False
    # A user's metric (autopeft/plugins.py): ``function(predictions, references) -> float``. None on a built-in, and
    # on a user's metric known only from a stored search's description (a process without the plugin).
    function: Callable[[Any, Any], float] | None = None
    custom: bool = False


class _InstalledPluginsRegistry(dict):
    """A registry that loads the installed metric plugins the first time it is read (the plugins import autopeft
    themselves, so loading them at import time would be circular). Writes go through :meth:`put`."""

    def __getitem__(self, key):
        _load_installed()
        return super().__getitem__(key)

    def __contains__(self, key) -> bool:
        _load_installed()
        return super().__contains__(key)

    def __iter__(self):
        _load_installed()
        return super().__iter__()

    def __len__(self) -> int:
        _load_installed()
        return super().__len__()

    def get(self, key, default=None):
        _load_installed()
        return super().get(key, default)

    def keys(self):
        _load_installed()
        return super().keys()

    def values(self):
        _load_installed()
        return super().values()

    def items(self):
        _load_installed()
        return super().items()

    def put(self, key, value) -> None:
        super().__setitem__(key, value)

    def remove(self, key) -> None:
        super().pop(key, None)


def _load_installed() -> None:
    from autopeft.plugins import METRIC_GROUP, load_installed

    load_installed(METRIC_GROUP)


MEASUREMENTS: _InstalledPluginsRegistry = _InstalledPluginsRegistry({
    m.name: m
    for m in [
        Measurement("accuracy", "maximize", "fraction", "accuracy on the evaluation set (token-classification: "
                    "the share of words given their gold tag; multiple-choice: of questions given the right option)",
                    is_task_metric=True),
        Measurement("entity_f1", "maximize", "fraction", "F1 of the entities found exactly, words and type, over "
                    "every entity of the evaluation set (token-classification with B-/I- tags; conlleval's and "
                    "seqeval's score)", is_task_metric=True),
        Measurement("macro_f1", "maximize", "fraction", "macro-averaged F1 on the evaluation set: the mean over the "
                    "labels of each label's F1", is_task_metric=True),
        Measurement("micro_f1", "maximize", "fraction", "F1 over every (example, label) decision of the evaluation "
                    "set (multi-label-classification), the usual score of tagging and toxicity sets",
                    is_task_metric=True),
        Measurement("subset_accuracy", "maximize", "fraction", "share of evaluation examples whose whole set of "
                    "labels is predicted exactly (multi-label-classification)", is_task_metric=True),
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
})


# What each task's evaluation reports (every task also reports every cost above).
TASK_METRICS: _InstalledPluginsRegistry = _InstalledPluginsRegistry({
    "sequence-classification": ("accuracy", "macro_f1", "matthews", "f1"),  # f1: two labels only (autopeft.tasks.data)
    "multi-label-classification": ("micro_f1", "macro_f1", "subset_accuracy"),
    "sequence-regression": ("spearman", "pearson", "mse"),
    # entity_f1: where the tags form entities (autopeft/tasks/tag_spans.py), which part-of-speech tags do not
    "token-classification": ("entity_f1", "accuracy"),
    "multiple-choice": ("accuracy",),  # the share of questions given their right option
    "causal-lm": ("answer_accuracy", "eval_loss"),
})
TASKS: tuple[str, ...] = tuple(dict.keys(TASK_METRICS))


def known_measurements() -> str:
    """The names registered so far (read without loading plugins: pydantic asks for it while autopeft.spec is
    still being imported, and a name check, which loads them, always comes before this is said)."""
    return ", ".join(dict.keys(MEASUREMENTS))
