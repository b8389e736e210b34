"""A user's metrics (autopeft/plugins.py) computed on eval predictions: in the worker after each evaluation, and by
the noise model for their chance level, permutation null and paired bootstrap.

What the function is given, per task (both arguments numpy arrays of one length, in eval order):

- sequence-classification: the label values as text, as the data writes them (``TaskData.label_names[index]``);
- multi-label-classification: 0/1 int64 matrices (examples × labels, in ``TaskData.label_names`` order), as
  scikit-learn's multi-label metrics take them;
- token-classification: a sentence's tags per entry, each a list of tag names in word order (an object array of
  lists, as seqeval takes them: ``seqeval.metrics.f1_score(references, predictions)``); a word the model gave no
  tag (past ``data.max_length``) is ``"O"`` where the tags have it, else ``""``;
- multiple-choice: the position of the option chosen and of the right one, counted from 0, as text ("0", "2");
- sequence-regression: float64 predictions and gold targets;
- causal-lm: the answer each generated response gives, as the task reads it (``workers.tasks.extract_answer``),
  against the gold answers, both as strings.

The noise model's built-in metrics are vectorised (autopeft/results/resampled_metrics.py); a user's function is a black
box, so its null and bootstrap call it once per resampling, on the same resamplings the built-ins use. A
function raising during the assessment leaves the point untested; during a trial it fails the trial.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from autopeft.errors import TrialFailure
from autopeft.objectives import MEASUREMENTS, TASK_METRICS
from autopeft.store.predictions import ANSWERS, LABEL_SETS, LABELS, TAGS, EvalTargets

MetricFunction = Callable[[np.ndarray, np.ndarray], float]


def is_custom(name: str) -> bool:
    measurement = MEASUREMENTS.get(name)
    return measurement is not None and measurement.custom


def function_of(name: str) -> MetricFunction | None:
    """The function of a user's metric registered in this process (None where only its description is known)."""
    measurement = MEASUREMENTS.get(name)
    return None if measurement is None else measurement.function


def user_form(kind: str, values: Any, label_names: tuple[str, ...] | list[str]) -> np.ndarray | None:
    """Stored predictions or gold values (autopeft/store/predictions.py) as a user's metric receives them; None for
    label indices without their names (a search stored before the names were)."""
    if kind == LABELS:
        if not label_names:
            return None
        return np.asarray(label_names, dtype=str)[np.asarray(values, dtype=np.int64)]
    if kind == ANSWERS:
        return np.asarray(list(values), dtype=str)
    if kind == LABEL_SETS:
        return np.asarray(values, dtype=np.int64)
    if kind == TAGS:
        return _tag_lists(np.asarray(values, dtype=np.int64), label_names) if label_names else None
    return np.asarray(values, dtype=np.float64)


def _tag_lists(tags: np.ndarray, label_names: tuple[str, ...] | list[str]) -> np.ndarray:
    """A tag matrix (sentences × words, -1 past a sentence's end, and for a word without a tag, which can only be
    a sentence's last words) as each sentence's list of tag names up to its last tagged word; ``_fitted`` gives a
    prediction the length of the gold sentence it is scored against."""
    lists = np.empty(len(tags), dtype=object)
    for row, sentence in enumerate(tags):
        words = np.flatnonzero(sentence >= 0)
        lists[row] = [label_names[t] for t in sentence[:words[-1] + 1 if len(words) else 0]]
    return lists


def _fitted(kind: str, predictions: np.ndarray, references: np.ndarray, label_names) -> np.ndarray:
    """Predictions as long as the gold values they are scored against: for a tagger, each sentence's tags cut or
    filled ("O" where the tags have it, else "") to its gold sentence's length, the words the model gave no tag
    (past max_length) and a permuted null's other sentences alike; any other kind as it is."""
    if kind != TAGS:
        return predictions
    untagged = "O" if "O" in label_names else ""
    fitted = np.empty(len(predictions), dtype=object)
    for row, (predicted, gold) in enumerate(zip(predictions, references)):
        fitted[row] = (list(predicted) + [untagged] * len(gold))[:len(gold)]
    return fitted


def call(name: str, function: MetricFunction, predictions: np.ndarray, references: np.ndarray) -> float:
    """One value of the metric; a raise or a value that is not a finite number fails the trial, naming it."""
    try:
        value = float(function(predictions, references))
    except Exception as exc:  # the user's code: whatever it raises is the trial's failure, said with its name
        raise TrialFailure(f"custom metric {name!r} raised {type(exc).__name__}: {exc}") from exc
    if not math.isfinite(value):
        raise TrialFailure(f"custom metric {name!r} returned {value}, not a finite number")
    return value


def measure(names: tuple[str, ...], predicted: Any, targets: EvalTargets | None) -> dict[str, float]:
    """The user's metrics ``names`` of one evaluation (in the worker, from the stored form of its predictions)."""
    if not names:
        return {}
    if targets is None:
        raise TrialFailure(f"custom metrics {list(names)} need gold values on the eval split, which has none")
    references = user_form(targets.kind, targets.gold, targets.label_names)
    predictions = _fitted(targets.kind, user_form(targets.kind, predicted, targets.label_names), references,
                          targets.label_names)
    values = {}
    for name in names:
        function = function_of(name)
        if function is None:
            raise TrialFailure(f"custom metric {name!r} is not registered in the worker process; register it with "
                               "autopeft.plugins.register_metric in the process that starts the search, or install "
                               "the package whose 'autopeft.metrics' entry point provides it on every worker node")
        values[name] = call(name, function, predictions, references)
    return values


def constant_levels(task: str, predicted: Any, targets: EvalTargets) -> dict[str, float]:
    """Every user's metric of ``task`` registered here, on the constant prediction ``predicted`` (stored form).
    A metric that cannot score it (raises, or is not finite there) has no chance level and is left out."""
    references = user_form(targets.kind, targets.gold, targets.label_names)
    predictions = user_form(targets.kind, predicted, targets.label_names)
    if references is None or predictions is None:
        return {}
    predictions = _fitted(targets.kind, predictions, references, targets.label_names)
    levels = {}
    for name in TASK_METRICS.get(task, ()):
        function = function_of(name) if is_custom(name) else None
        if function is None:
            continue
        try:
            levels[name] = call(name, function, predictions, references)
        except TrialFailure:
            continue
    return levels


def scorable(name: str, targets: EvalTargets) -> bool:
    """Whether the noise model can resample the user's metric ``name`` here: its function is registered in this
    process and the stored gold values can be put in the form it takes."""
    return function_of(name) is not None and user_form(targets.kind, targets.gold[:1], targets.label_names) is not None


def _resampled(name: str, predicted: Any, targets: EvalTargets, rows: np.ndarray,
               predictions_too: bool) -> np.ndarray | None:
    """The metric once per row of ``rows`` (example indices): the gold values taken in that order, and the
    predictions too where ``predictions_too`` (a bootstrap resample) rather than left in place (a permutation).
    None where it cannot be computed here (no function, no form, or the function fails on a resample)."""
    function = function_of(name)
    predictions = user_form(targets.kind, predicted, targets.label_names)
    references = user_form(targets.kind, targets.gold, targets.label_names)
    if function is None or predictions is None or references is None:
        return None
    try:
        return np.array([call(name, function, _fitted(targets.kind, predictions[row] if predictions_too else
                                                      predictions, references[row], targets.label_names),
                              references[row]) for row in rows])
    except TrialFailure:
        return None


def permutation_null(name: str, predicted: Any, targets: EvalTargets, orders: np.ndarray) -> np.ndarray | None:
    """The metric of the trial's predictions against the gold values shuffled by each row of ``orders``."""
    return _resampled(name, predicted, targets, orders, predictions_too=False)


def bootstrap(name: str, predicted: Any, targets: EvalTargets, rows: np.ndarray) -> np.ndarray | None:
    """The metric on each bootstrap resample ``rows`` (example indices) of the predictions and gold alike."""
    return _resampled(name, predicted, targets, rows, predictions_too=True)
