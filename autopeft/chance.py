"""What a model that learned nothing scores on the eval set, and which Pareto points are not clearly above it.

A search always returns a front, even where no configuration learns the task: on a small, hard eval set (RTE's 277
pairs at low fidelity) the "front" is then the luckiest draws of noise, and it looks just like a real one. So each
search records its chance level, measured with the task's own metric functions on the constant prediction (the
majority label for classification, the mean target for regression), and flags front points whose metric is within
the noise of it. Only accuracy has a noise model here: under chance, the accuracy of n independent examples has
standard error sqrt(c (1 - c) / n); a point must beat chance by z of those, with z the one-sided 5% quantile
corrected for the number of completed trials (Bonferroni: the front is a maximum over all of them).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from autopeft.data import TaskData

FALSE_ALARM = 0.05  # chance that a search of pure noise shows a point "above chance" (over all its trials)


@dataclass(frozen=True)
class ChanceLevel:
    """The task metrics of the constant prediction on the eval set."""

    metrics: dict[str, float]
    examples: int
    predicts: str  # what the constant prediction is, in words

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, stored: dict[str, Any] | None) -> ChanceLevel | None:
        return None if not stored else cls(**stored)

    def margin(self, metric: str, trials: int) -> float | None:
        """How far above chance a point's ``metric`` must be not to be noise, after ``trials`` completed trials
        (None where there is no noise model for the metric)."""
        if metric != "accuracy" or metric not in self.metrics or self.examples == 0:
            return None
        level = self.metrics[metric]
        z = NormalDist().inv_cdf(1 - FALSE_ALARM / max(trials, 1))
        return z * float(np.sqrt(level * (1 - level) / self.examples))


def chance_level(data: TaskData) -> ChanceLevel | None:
    """Measured on the eval split; None for causal-lm, whose answers have no constant baseline."""
    from workers.training import classification_metrics, regression_metrics

    labels = data.eval.labels
    if labels is None or len(labels) == 0:
        return None
    if data.task == "sequence-classification":
        counts = np.bincount(labels, minlength=len(data.label_names))
        majority = int(np.argmax(counts))
        metrics = classification_metrics(np.full(len(labels), majority), labels, len(data.label_names))
        return ChanceLevel(metrics, len(labels), f"always {data.label_names[majority]!r}")
    if data.task == "sequence-regression":
        mean = float(np.mean(labels))
        return ChanceLevel(regression_metrics(np.full(len(labels), mean), labels), len(labels),
                           f"always the mean target {mean:.4g}")
    return None


def not_above_chance(values: dict[int, float], level: ChanceLevel, metric: str, trials: int) -> list[int]:
    """The trials (number -> metric value) whose value is within the noise margin of chance."""
    margin = level.margin(metric, trials)
    if margin is None:
        return []
    return sorted(n for n, v in values.items() if v < level.metrics[metric] + margin)
