"""Task metrics over many resamplings of one eval set at once: rows of predictions against rows of gold values.

The noise model (autopeft/results/chance.py) needs a metric a few hundred times per trial — once per permutation of the
gold labels, or once per bootstrap resample for a paired comparison. Done row by row with the workers' metric
functions that costs seconds per search view; here each metric is computed for all rows together (confusion
matrices by one ``bincount``, correlations by row-wise dot products), so a whole front is assessed in milliseconds.
The definitions are the workers' own (workers/training.py), which the tests check row by row.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from autopeft.store.predictions import ANSWERS, LABEL_SETS, LABELS, LOSSES, TAGS, VALUES
from autopeft.tasks.tag_spans import tag_rows, tag_rows_paired, tag_scheme


def classification_rows(predicted: np.ndarray, gold: np.ndarray, num_labels: int,
                        positive: int = 1) -> dict[str, np.ndarray]:
    """Accuracy, macro F1, Matthews correlation and (two labels) the positive class's F1 per row."""
    rows, k = predicted.shape[0], num_labels
    cells = (np.arange(rows)[:, None] * k * k + gold * k + predicted).ravel()
    confusion = np.bincount(cells, minlength=rows * k * k).reshape(rows, k, k).astype(np.float64)
    samples = confusion.sum(axis=(1, 2))
    hits = np.einsum("rii->ri", confusion)
    correct = hits.sum(axis=1)
    true_counts, predicted_counts = confusion.sum(axis=2), confusion.sum(axis=1)
    denominator = np.sqrt((samples**2 - (predicted_counts**2).sum(axis=1))
                          * (samples**2 - (true_counts**2).sum(axis=1)))
    numerator = correct * samples - (predicted_counts * true_counts).sum(axis=1)
    matthews = np.divide(numerator, denominator, out=np.zeros(rows), where=denominator > 0)
    errors = 2 * hits + (predicted_counts - hits) + (true_counts - hits)
    f1 = np.divide(2 * hits, errors, out=np.zeros_like(hits), where=hits > 0)
    metrics = {"accuracy": correct / samples, "macro_f1": f1.mean(axis=1), "matthews": matthews}
    if k == 2:
        metrics["f1"] = f1[:, positive]
    return metrics


def multi_label_rows(predicted: np.ndarray, gold: np.ndarray) -> dict[str, np.ndarray]:
    """Micro F1, macro F1 and subset accuracy per row, of 0/1 arrays (rows × examples × labels)."""
    predicted, gold = predicted.astype(bool), gold.astype(bool)
    tp = (predicted & gold).sum(axis=1).astype(np.float64)  # rows × labels
    errors = (predicted ^ gold).sum(axis=1).astype(np.float64)  # false positives and false negatives
    pooled_tp = tp.sum(axis=1)
    micro = np.divide(2 * pooled_tp, 2 * pooled_tp + errors.sum(axis=1), out=np.zeros(len(tp)), where=pooled_tp > 0)
    per_label = np.divide(2 * tp, 2 * tp + errors, out=np.zeros_like(tp), where=tp > 0)
    return {"micro_f1": micro, "macro_f1": per_label.mean(axis=1),
            "subset_accuracy": (predicted == gold).all(axis=2).mean(axis=1)}


def _row_correlation(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson's r per row; 0 where a row is constant (as the workers define it)."""
    x = x - x.mean(axis=1, keepdims=True)
    y = y - y.mean(axis=1, keepdims=True)
    denominator = np.sqrt((x * x).sum(axis=1) * (y * y).sum(axis=1))
    r = np.divide((x * y).sum(axis=1), denominator, out=np.zeros(len(x)), where=denominator > 0)
    return np.clip(r, -1.0, 1.0)


def regression_rows(predicted: np.ndarray, gold: np.ndarray) -> dict[str, np.ndarray]:
    """Spearman (average ranks for ties), Pearson and MSE per row."""
    predicted, gold = predicted.astype(np.float64), gold.astype(np.float64)
    ranks = [pd.DataFrame(v).rank(axis=1, method="average").to_numpy() for v in (predicted, gold)]
    return {"spearman": _row_correlation(*ranks), "pearson": _row_correlation(predicted, gold),
            "mse": ((predicted - gold) ** 2).mean(axis=1)}


def answer_rows(predicted: np.ndarray, gold: np.ndarray) -> dict[str, np.ndarray]:
    """Answer accuracy per row, on answers already mapped to ids (``answer_ids``)."""
    return {"answer_accuracy": (predicted == gold).mean(axis=1)}


def answer_key(answer: str) -> str:
    """The form two answers share when the workers count them as equal (``answers_match``: numbers within 1e-4,
    anything else case- and space-insensitively)."""
    text = answer.strip()
    try:
        return f"{float(text):.4f}"
    except ValueError:
        return text.lower()


def answer_ids(*answer_lists: list[str]) -> list[np.ndarray]:
    """Each list of answers as integer ids from one shared vocabulary of answer keys."""
    vocabulary: dict[str, int] = {}
    return [np.array([vocabulary.setdefault(answer_key(a), len(vocabulary)) for a in answers], dtype=np.int64)
            for answers in answer_lists]


def paired_metric_rows(kind: str, predicted: np.ndarray, gold: np.ndarray, predicted_rows: np.ndarray,
                       gold_rows: np.ndarray, num_labels: int = 0, positive: int = 1,
                       label_names: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """:func:`metric_rows` of ``predicted[predicted_rows]`` against ``gold[gold_rows]`` (example indices, rounds ×
    examples): a permutation null or a bootstrap. A tagger's entities are read once per sentence, not per round
    (autopeft/tasks/tag_spans.py); every other kind is gathered and scored as it is."""
    if kind == TAGS:
        return tag_rows_paired(predicted, gold, predicted_rows, gold_rows, tag_scheme(label_names))
    return metric_rows(kind, predicted[predicted_rows], gold[gold_rows], num_labels, positive, label_names)


def metric_rows(kind: str, predicted: np.ndarray, gold: np.ndarray, num_labels: int = 0,
                positive: int = 1, label_names: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Every task metric of this kind of prediction (predictions.LABELS, LABEL_SETS, TAGS with the tag names,
    VALUES, ANSWERS as ids, or LOSSES with each record's token count as its gold value), per row."""
    if kind == LABELS:
        return classification_rows(predicted, gold, num_labels, positive)
    if kind == LABEL_SETS:
        return multi_label_rows(predicted, gold)
    if kind == TAGS:
        return tag_rows(predicted, gold, tag_scheme(label_names))
    if kind == VALUES:
        return regression_rows(predicted, gold)
    if kind == ANSWERS:
        return answer_rows(predicted, gold)
    if kind == LOSSES:  # the mean token loss of the rows' records: summed losses over summed tokens
        return {"eval_loss": predicted.astype(np.float64).sum(axis=1) / np.maximum(gold.sum(axis=1), 1)}
    raise ValueError(f"unknown kind of predictions {kind!r}")
