"""Choosing from a Pareto front: the knee, the best of one measurement, or the best task metric under a budget.

One definition for every view (``autopeft export --pick``, ``autopeft confirm --pick``, the dashboard), so a knee
picked on the command line is the knee the dashboard shows.

The knee: objective values are turned into losses (smaller is better; parameter counts and byte sizes on a
log10 scale, as they are plotted), each normalised to [0, 1] over the front. With two objectives and at least
three front points it is the point farthest from the chord between the two extreme points — where moving along
the front stops buying much of one objective for the other. With one point or two, or with three or more
objectives (where "the chord" is no longer one line), it is the point closest to the ideal point (0, …, 0)
in that normalised space.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from autopeft.errors import UserError
from autopeft.objectives import MEASUREMENTS
from autopeft.results.noise import NoiseReport
from autopeft.results.pareto import pareto_front
from autopeft.results.views import counted
from autopeft.spec import SearchSpec
from autopeft.store.storage import TrialRecord

# Measurements spanning decades are compared on a log scale (knee, hypervolume), as they are plotted.
LOG_UNITS = frozenset({"parameters", "bytes"})
PICK_HELP = "knee | max:METRIC | min:METRIC | budget:METRIC<=X"
_BUDGET = re.compile(r"^budget:\s*([A-Za-z_][A-Za-z0-9_]*)\s*<=\s*([0-9.eE+_-]+)\s*$")  # macro_f1, f1 are names


def is_log(name: str) -> bool:
    return name in MEASUREMENTS and MEASUREMENTS[name].unit in LOG_UNITS


def as_losses(values: np.ndarray, names: Sequence[str], signs: Sequence[float]) -> np.ndarray:
    """Rows of objective values (columns in ``names`` order) as losses: sign-flipped, log10 for counts/sizes."""
    columns = []
    for column, (name, sign) in enumerate(zip(names, signs)):
        column_values = values[:, column].astype(float)
        if is_log(name):
            column_values = np.log10(np.maximum(column_values, 1.0))
        columns.append(-sign * column_values)
    return np.column_stack(columns) if columns else np.zeros((len(values), 0))


def knee_index(losses: np.ndarray) -> int:
    """Row of the knee among front points given as losses (see the module docstring for the definition)."""
    low, high = losses.min(axis=0), losses.max(axis=0)
    scaled = (losses - low) / np.where(high > low, high - low, 1.0)
    if scaled.shape[1] == 2 and len(scaled) > 2:
        order = np.argsort(scaled[:, 0])
        a, b = scaled[order[0]], scaled[order[-1]]
        chord = b - a
        distance = np.abs(chord[0] * (scaled[:, 1] - a[1]) - chord[1] * (scaled[:, 0] - a[0]))
        return int(np.argmax(distance))
    return int(np.argmin(np.linalg.norm(scaled, axis=1)))


def best_under_index(metric: np.ndarray, cost: np.ndarray, limit: float, metric_sign: float) -> int | None:
    """Row with the best ``metric`` among rows whose ``cost`` is at most ``limit``; ties go to the cheaper."""
    allowed = np.flatnonzero(cost <= limit)
    if len(allowed) == 0:
        return None
    ranked = sorted(allowed, key=lambda i: (-metric_sign * metric[i], cost[i]))
    return int(ranked[0])


@dataclass(frozen=True)
class Pick:
    """One parsed ``--pick``: ``kind`` is knee, max, min or budget; ``metric`` and ``limit`` as they apply."""

    kind: str
    metric: str | None = None
    limit: float | None = None
    text: str = ""
    flag: str = "--pick"  # how the caller gave it (a command's option, a Python argument), for its errors


def parse_pick(text: str, spec: SearchSpec, flag: str = "--pick", expected: str = "") -> Pick:
    """Parse and check a pick against the search; a bad one is a one-line error naming the flag (``expected``:
    what else the flag takes, said first)."""
    text = text.strip()
    if text == "knee":
        return Pick("knee", text=text, flag=flag)
    budget = _BUDGET.match(text)
    if budget:
        metric, raw = budget.groups()
        try:
            limit = float(raw.replace("_", ""))
        except ValueError:
            raise UserError(f"{flag} {text!r}: {raw!r} is not a number") from None
        _check_metric(metric, flag, text)
        return Pick("budget", metric, limit, text, flag)
    kind, sep, metric = text.partition(":")
    if sep and kind in ("max", "min") and metric:
        _check_metric(metric.strip(), flag, text)
        return Pick(kind, metric.strip(), text=text, flag=flag)
    raise UserError(f"{flag} {text!r}: expected {expected}{PICK_HELP} (e.g. budget:trainable_params<=100000)")


def _check_metric(metric: str, flag: str, text: str) -> None:
    if metric not in MEASUREMENTS:
        raise UserError(f"{flag} {text!r}: unknown measurement {metric!r}; one of {', '.join(sorted(MEASUREMENTS))}")


def value_of(record: TrialRecord, name: str) -> float | None:
    value = record.values.get(name, record.measurements.get(name))
    return None if value is None else float(value)


def choose(records: list[TrialRecord], spec: SearchSpec, picks: Sequence[Pick], noise: NoiseReport | None = None,
           include_chance: bool = False) -> list[TrialRecord]:
    """The front trials the picks select, in front order, each once; an empty selection is an error that says
    which pick found nothing.

    With the search's ``noise`` report (autopeft/results/noise.py) the picks choose among the front points that matter:
    a point within noise of chance is never picked unless ``include_chance``, and a point that a cheaper front point
    matches within noise gives way to that cheaper point."""
    front = pareto_front(records, spec)
    if not front:
        raise UserError("the search has no completed feasible trial on its Pareto front yet")
    if noise is not None:
        front = _distinct(front, noise, include_chance)
    chosen: set[int] = set()
    for pick in picks:
        index = _choose_one(front, spec, pick)
        if index is None:
            cheapest = min((v for r in front if (v := value_of(r, pick.metric)) is not None), default=None) \
                if pick.kind == "budget" else None
            least = "" if cheapest is None else f", the least {pick.metric} among them {cheapest:,.6g}"
            raise UserError(f"{pick.flag} {pick.text!r}: no Pareto-optimal trial fits (the front has "
                            f"{counted(len(front), 'trial')}{least}; `autopeft search show` lists them)")
        chosen.add(front[index].number)
    return [r for r in front if r.number in chosen]


def _distinct(front: list[TrialRecord], noise: NoiseReport, include_chance: bool) -> list[TrialRecord]:
    """The front less its points at chance (unless asked for) and those a cheaper point matches within noise."""
    kept = front if include_chance else [r for r in front if not noise.is_at_chance(r.number)]
    if not kept:
        raise UserError("every point of the front is within noise of chance: the search learned nothing to pick; "
                        "`autopeft search show` says what to try, or pass --include-chance (include_chance=True from "
                        "Python) to pick anyway")
    numbers = {r.number for r in kept}
    # A point matched by a cheaper one stays only when that cheaper one was itself left out (at chance); the
    # cheaper ones that match are never matched themselves (noise._matched_by_cheaper).
    return [r for r in kept if noise.matched_by.get(r.number) not in numbers]


def _choose_one(front: list[TrialRecord], spec: SearchSpec, pick: Pick) -> int | None:
    names = spec.objective_names
    signs = [1.0 if o.resolved_direction == "maximize" else -1.0 for o in spec.objectives]
    if pick.kind == "knee":
        values = np.array([[r.values[n] for n in names] for r in front], dtype=float)
        return knee_index(as_losses(values, names, signs))
    assert pick.metric is not None
    measured = [value_of(r, pick.metric) for r in front]
    present = [i for i, v in enumerate(measured) if v is not None]
    if not present:
        raise UserError(f"{pick.flag} {pick.text!r}: the front's trials have no {pick.metric!r} measurement")
    if pick.kind in ("max", "min"):
        sign = 1.0 if pick.kind == "max" else -1.0
        return max(present, key=lambda i: sign * measured[i])  # type: ignore[operator]
    metric = spec.task_metric
    metric_sign = 1.0 if MEASUREMENTS[metric].natural_direction == "maximize" else -1.0
    for objective, sign in zip(spec.objectives, signs):
        if objective.name == metric:
            metric_sign = sign
    task = np.array([value_of(front[i], metric) for i in present], dtype=float)
    cost = np.array([measured[i] for i in present], dtype=float)
    best = best_under_index(task, cost, float(pick.limit or 0.0), metric_sign)
    return None if best is None else present[best]
