"""Expected hypervolume improvement of candidates whose costs are known and whose other objectives are predicted.

Every value here is a *gain* (larger is better: a maximised objective as is, a minimised one negated, counts and
sizes as log10 first), and the front is the observed points plus those believed for running trials.

With one predicted objective y ~ N(mean, std²) and at most one known cost, the improvement is exact and cheap: a
candidate at known gain c adds the strip of the plane between the reference and c, above the front's step
B(t) = the best y among front points at least as cheap as t. That strip is a sum over the step's segments of
width × max(0, y − B), so its expectation is a sum of widths × expected improvements over B — one closed form per
segment, no sampling, and the known cost decides the widths exactly. With several predicted objectives (or known
ones) the expectation is taken over a few joint samples of the predictions, by Optuna's exact hypervolume.
"""

from __future__ import annotations

import numpy as np
from optuna._hypervolume import compute_hypervolume
from scipy.special import ndtr

_INV_SQRT_2PI = 1.0 / np.sqrt(2.0 * np.pi)


def expected_improvement(mean: np.ndarray, std: np.ndarray, threshold: np.ndarray) -> np.ndarray:
    """E[max(0, y − threshold)] for y ~ N(mean, std²), elementwise (broadcasting)."""
    std = np.maximum(std, 1e-12)
    z = (mean - threshold) / std
    return (mean - threshold) * ndtr(z) + std * _INV_SQRT_2PI * np.exp(-0.5 * z * z)


def ehvi_one_predicted(mean: np.ndarray, std: np.ndarray, known: np.ndarray | None, front: np.ndarray,
                       reference: np.ndarray) -> np.ndarray:
    """Exact expected hypervolume improvement for one predicted objective and at most one known one.

    ``mean``, ``std``: (n,) predictions of the candidates; ``known``: (n,) known gains, or None without a known
    objective; ``front``: (m, 1 or 2) gains of the front, predicted column first; ``reference``: the gains'
    reference point in the same order.
    """
    if known is None:
        best = max(front[:, 0].max(initial=reference[0]), reference[0])
        return expected_improvement(mean, std, best)
    ref_y, ref_c = reference
    cuts = np.unique(np.clip(front[:, 1], ref_c, None))  # where the front's step changes, cheapest last
    # Segment j spans (low[j], high[j]]; above it the step is the best y of the front points at gain >= high[j].
    low = np.concatenate([[ref_c], cuts])
    high = np.concatenate([cuts, [np.inf]])
    step = np.array([max(front[front[:, 1] >= h, 0].max(initial=ref_y), ref_y) for h in high[:-1]] + [ref_y])
    widths = np.clip(np.minimum(known[:, None], high[None, :]) - low[None, :], 0.0, None)
    return (widths * expected_improvement(mean[:, None], std[:, None], step[None, :])).sum(axis=1)


def ehvi_sampled(mean: np.ndarray, std: np.ndarray, known: np.ndarray, front: np.ndarray, reference: np.ndarray,
                 rng: np.random.Generator, samples: int = 16) -> np.ndarray:
    """Expected hypervolume improvement by sampling, for any number of predicted and known objectives.

    ``mean``, ``std``: (n, u) predictions; ``known``: (n, k) known gains; ``front``: (m, u + k) gains, predicted
    columns first; ``reference``: (u + k,) gains.
    """
    n, u = mean.shape
    losses_ref = -reference
    kept = front[(front > reference).all(axis=1)]
    base = compute_hypervolume(-kept, losses_ref) if len(kept) else 0.0
    draws = mean[None] + std[None] * rng.standard_normal((samples, n, u)) if u else np.zeros((samples, n, 0))
    gains = np.zeros(n)
    for i in range(n):
        for s in range(samples if u else 1):
            point = np.concatenate([draws[s, i], known[i]])
            if not (point > reference).all():
                continue
            gains[i] += compute_hypervolume(-np.vstack([kept, point]), losses_ref) - base
    return gains / (samples if u else 1)
