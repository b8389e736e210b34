"""What an earlier search says about a new task's metric: its model's prediction, scaled to the new task.

The prior is ``a + b * source(x)``, where ``source`` is a Gaussian process fitted on the earlier search's trials
and ``b`` is set by how well it *ranks* the new task's own completed trials (Spearman's correlation, as in
ranking-weighted transfer: the ranking matters to a search, the scale does not). A source that ranks the new
task's results the wrong way round, or not at all, gets ``b = 0``: the search is then as cold as without it.
Before three results of its own the new task has no evidence either way, and the source is taken as it is
(``b = 1``: the same metric, in the same units). The new task's own model is fitted on what the prior leaves
unexplained, so with enough trials of its own the new task's data decide.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from autopeft.search.metric_model import MetricModel

MIN_PAIRS = 3  # results of the new task needed before the source's weight is measured, not assumed


def rank_correlation(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's correlation (average ranks for ties); 0 when either side is constant."""
    def ranks(values: np.ndarray) -> np.ndarray:
        order = np.argsort(values, kind="mergesort")
        ranked = np.empty(len(values))
        ranked[order] = np.arange(len(values), dtype=float)
        for value in np.unique(values):  # ties share their average rank
            tied = values == value
            ranked[tied] = ranked[tied].mean()
        return ranked
    rx, ry = ranks(np.asarray(x, float)), ranks(np.asarray(y, float))
    if rx.std() == 0 or ry.std() == 0:
        return 0.0
    return float(np.corrcoef(rx, ry)[0, 1])


@dataclass
class Transfer:
    """The source model's prediction mapped onto the new task: ``offset + weight * source(x)``."""

    source: MetricModel
    offset: float
    weight: float
    correlation: float | None  # measured on the new task's results; None before MIN_PAIRS of them

    def at(self, X: np.ndarray) -> np.ndarray:
        return self.offset + self.weight * self.source.predict(X)[0]


def fit_transfer(X_source: np.ndarray, y_source: np.ndarray, X_target: np.ndarray, y_target: np.ndarray,
                 cache: MetricModel | None = None) -> Transfer:
    """The prior from a source's trials (``X_source``, gains ``y_source``), weighed on the new task's completed
    trials (``X_target``, gains ``y_target``, measured at the full steps). The source's trials do not change during
    a search, so ``cache``, the source model of the proposal before, is kept whole when it was fitted on the same
    encoded rows (only a new level of a categorical, which re-encodes them, refits it, from ``cache``'s kernel)."""
    source = cache if cache is not None and cache.fitted_on(X_source, y_source) else MetricModel(X_source, y_source,
                                                                                               cache)
    if len(y_target) == 0:
        return Transfer(source, 0.0, 1.0, None)
    predicted = source.predict(X_target)[0]
    if len(y_target) < MIN_PAIRS:
        return Transfer(source, float(np.mean(y_target - predicted)), 1.0, None)
    correlation = rank_correlation(predicted, y_target)
    spread = float(predicted.std())
    weight = max(correlation, 0.0) * float(y_target.std()) / spread if spread > 1e-12 else 0.0
    return Transfer(source, float(y_target.mean() - weight * predicted.mean()), weight, correlation)
