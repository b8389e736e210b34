"""Pareto-aware early stopping: at each rung of training, does a trial go on? (successive halving with a
non-dominated ranking, in the spirit of MOASHA).

A rung is a fraction of the trial's steps (``budget.rungs``). At a rung the worker evaluates the trial and ranks
its point — the task metrics measured there and the costs counted on the built model, in the search's objectives —
against every other trial's point at the same rung by non-dominated sorting (front 0, the front of the rest 1, …).
The trial goes on if its front is among those holding the best ``ceil(n / reduction_factor)`` of the ``n`` points;
a trial tied on that last front goes on too (it is not clearly dominated). With fewer than ``reduction_factor``
points at a rung there is nothing to judge by and every trial goes on.

The other trials' points come from two places: the rung table the controller sends with the request (every
recorded trial's points, read from the database when the trial starts, so trials of earlier runs and other
controllers count) and the executor's rung board (autopeft/search/rung_board.py), where trials running at the same time
post their points as they reach a rung. A decision thus sees whatever had been reached anywhere by the time it is
made, as in asynchronous successive halving; the number of rivals each decision saw is stored with the trial
(``execution.rung_rivals``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

RungPoint = Mapping[str, float]  # objective name -> value at the rung


def rung_steps(fractions: Sequence[float], steps: int) -> list[int]:
    """The rungs as step numbers of a trial of ``steps`` steps (each at least 1, below the last step, distinct)."""
    return sorted({max(1, min(steps - 1, round(f * steps))) for f in fractions if steps > 1})


def nondominated_ranks(points: Sequence[Sequence[float]], signs: Sequence[float]) -> list[int]:
    """Front index of each point: 0 for the points no other dominates, 1 for those of the rest, and so on."""
    if not len(points):
        return []
    gains = np.asarray(points, dtype=float) * np.asarray(signs, dtype=float)
    # dominated_by[i, j]: j dominates i (at least as good everywhere, better somewhere). Vectorised: a sampler
    # ranks every rung's points at each proposal, hundreds of them late in a search.
    at_least = (gains[None, :, :] >= gains[:, None, :]).all(axis=2)
    better = (gains[None, :, :] > gains[:, None, :]).any(axis=2)
    dominated_by = at_least & better
    ranks = np.full(len(gains), -1)
    left = np.ones(len(gains), dtype=bool)
    rank = 0
    while left.any():
        front = left & ~(dominated_by & left[None, :]).any(axis=1)
        ranks[front] = rank
        left &= ~front
        rank += 1
    return ranks.tolist()


def goes_on(mine: RungPoint, others: Sequence[RungPoint], signs: Mapping[str, float],
            reduction_factor: float) -> bool:
    """Whether a trial with point ``mine`` at a rung continues, given the other trials' points at that rung.

    Only the objectives present in every point are compared (``signs``: +1 maximise, -1 minimise).
    """
    names = [n for n in signs if n in mine and all(n in o for o in others)]
    pool = [*others, mine]
    if not names or len(pool) < reduction_factor:
        return True
    ranks = nondominated_ranks([[p[n] for n in names] for p in pool], [signs[n] for n in names])
    kept = math.ceil(len(pool) / reduction_factor)
    return ranks[-1] <= sorted(ranks)[kept - 1]

