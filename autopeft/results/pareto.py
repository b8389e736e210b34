"""The Pareto front of finished, feasible trials."""

from __future__ import annotations

from collections.abc import Sequence

from autopeft.spec import SearchSpec
from autopeft.store.storage import TrialRecord


def dominates(a: Sequence[float], b: Sequence[float], signs: Sequence[float]) -> bool:
    """a dominates b: no worse in every objective and better in one (signs: +1 maximise, -1 minimise)."""
    better = False
    for x, y, sign in zip(a, b, signs):
        if sign * x < sign * y:
            return False
        better = better or sign * x > sign * y
    return better


def pareto_front(records: list[TrialRecord], spec: SearchSpec) -> list[TrialRecord]:
    """Completed feasible trials that no other completed feasible trial dominates; marks them ``pareto``.

    Baselines (standard configurations trained for comparison) and probe runs (autopeft/search/probe.py) are reference
    points, never front members.

    Sorted by the first objective, best first. Ties (identical values) all stay on the front.
    """
    signs = [1.0 if o.resolved_direction == "maximize" else -1.0 for o in spec.objectives]
    names = spec.objective_names
    candidates = [r for r in records if r.state == "COMPLETE" and r.feasible and r.values
                  and not r.reference]
    points = [[r.values[n] for n in names] for r in candidates]
    front = [r for r, p in zip(candidates, points) if not any(dominates(q, p, signs) for q in points)]
    for record in front:
        record.pareto = True
    return sorted(front, key=lambda r: -signs[0] * r.values[names[0]])
