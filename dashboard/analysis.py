"""The numbers behind the views: Pareto membership, hypervolume history, knee point, budget pick, importance.

Vectorised over the trial table so that 2,000 trials cost milliseconds. The Pareto definition is the project's
(``autopeft.results.pareto``): completed, feasible trials that no other completed feasible trial dominates.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from optuna._hypervolume import compute_hypervolume

from autopeft.objectives import MEASUREMENTS
from autopeft.results.pick import as_losses, best_under_index, is_log, knee_index
from autopeft.spec import SearchSpec

# Searched knobs common to all methods; "size" is each method's own size (rank, bottleneck, prefix length).
PARAMETERS = ("method", "size", "n_layers", "modules", "learning_rate", "sparsity", "bits")


def sign(spec: SearchSpec, name: str) -> float:
    """+1 when larger is better for this measurement in this search, -1 when smaller is."""
    for objective in spec.objectives:
        if objective.name == name:
            return 1.0 if objective.resolved_direction == "maximize" else -1.0
    return 1.0 if MEASUREMENTS[name].natural_direction == "maximize" else -1.0


def candidates(trials: pd.DataFrame) -> pd.Series:
    """Trials that may be on the front: complete, feasible, not a baseline, not a probe run."""
    return (trials["state"] == "COMPLETE") & trials["feasible"] & ~trials["baseline"] & ~probe_runs(trials)


def probe_runs(trials: pd.DataFrame) -> pd.Series:
    """The learnability probe's runs (autopeft/search/probe.py); none in a table without the column."""
    return trials["probe"].astype(bool) if "probe" in trials else pd.Series(False, index=trials.index)


def pareto_mask(points: np.ndarray, signs: np.ndarray) -> np.ndarray:
    """Rows of ``points`` that no other row dominates (``signs``: +1 maximise, -1 minimise per column)."""
    if len(points) == 0:
        return np.zeros(0, dtype=bool)
    gains = points * signs
    no_worse = (gains[:, None, :] >= gains[None, :, :]).all(axis=2)
    better = (gains[:, None, :] > gains[None, :, :]).any(axis=2)
    dominated = (no_worse & better).any(axis=0)
    return ~dominated


def front(trials: pd.DataFrame, spec: SearchSpec, objectives: list[str] | None = None) -> pd.Series:
    """Boolean column: on the Pareto front of ``objectives`` (default: the search's objectives)."""
    names = objectives or spec.objective_names
    mask = pd.Series(False, index=trials.index)
    pool = trials[candidates(trials)].dropna(subset=names)
    if len(pool):
        signs = np.array([sign(spec, n) for n in names])
        mask.loc[pool.index] = pareto_mask(pool[names].to_numpy(dtype=float), signs)
    return mask


def _losses(frame: pd.DataFrame, spec: SearchSpec, names: list[str]) -> np.ndarray:
    """Objective values as losses (smaller is better), log10 for parameter counts and byte sizes."""
    return as_losses(frame[names].to_numpy(dtype=float), names, [sign(spec, n) for n in names])


def hypervolume_history(trials: pd.DataFrame, spec: SearchSpec) -> pd.DataFrame:
    """Hypervolume of the feasible completed trials after each completion, in completion order.

    Objectives are turned into losses, normalised to [0, 1] over all feasible completed trials of the search, and
    measured against the reference point 1.1 in every objective, so the figure lies in [0, 1.21] for two
    objectives and grows as the front improves; it is comparable within a search, not across searches.
    """
    names = spec.objective_names
    done = trials[candidates(trials)].dropna(subset=names).sort_values(["complete", "number"])
    if done.empty:
        return pd.DataFrame(columns=["completed", "number", "complete", "hypervolume"])
    losses = _losses(done, spec, names)
    low, high = losses.min(axis=0), losses.max(axis=0)
    scaled = (losses - low) / np.where(high > low, high - low, 1.0)
    reference = np.full(len(names), 1.1)
    current = np.zeros((0, len(names)))
    history = []
    volume = 0.0
    for point in scaled:
        if not (current <= point).all(axis=1).any():  # not weakly dominated: the front changes
            keep = ~(point <= current).all(axis=1)
            current = np.vstack([current[keep], point])
            volume = float(np.prod(reference - current.min(axis=0))) if len(names) == 1 else \
                float(compute_hypervolume(current, reference, assume_pareto=True))
        history.append(volume)
    return pd.DataFrame({"completed": np.arange(1, len(done) + 1), "number": done["number"].to_numpy(),
                         "complete": done["complete"].to_numpy(), "hypervolume": history})


def knee(trials: pd.DataFrame, spec: SearchSpec, objectives: list[str] | None = None) -> int | None:
    """The front trial with the best trade-off, as ``autopeft.results.pick`` defines it (the definition ``export --pick
    knee`` uses too). Returns its trial number."""
    names = objectives or spec.objective_names
    on_front = trials[front(trials, spec, names)]
    if on_front.empty:
        return None
    return int(on_front["number"].iloc[knee_index(_losses(on_front, spec, names))])


def best_under_budget(trials: pd.DataFrame, spec: SearchSpec, budget_name: str, budget: float) -> int | None:
    """The feasible completed trial with the best task metric whose ``budget_name`` is at most ``budget``."""
    metric = spec.task_metric
    pool = trials[candidates(trials)].dropna(subset=[metric, budget_name])
    best = best_under_index(pool[metric].to_numpy(dtype=float), pool[budget_name].to_numpy(dtype=float), budget,
                            sign(spec, metric))
    return None if best is None else int(pool["number"].iloc[best])


def importance(trials: pd.DataFrame, objective: str, parameters: list[str] | None = None) -> pd.DataFrame:
    """Share of an objective's variance explained by each parameter alone (the correlation ratio, eta squared).

    Numeric parameters are cut into up to 8 quantile bins, categorical ones grouped by value (trials whose method
    lacks the parameter form one more group); the figure is
    between-group variance over total variance on completed trials. A fast, model-free screen that reads only
    the table, so it runs on every refresh; it does not see interactions (Optuna's fANOVA does, at seconds per
    call).
    """
    done = trials[trials["state"] == "COMPLETE"].dropna(subset=[objective])
    target = done[objective].astype(float)
    if is_log(objective):
        target = np.log10(target.clip(lower=1.0))
    total = float(((target - target.mean()) ** 2).sum())
    rows = []
    for name in parameters or PARAMETERS:
        if name not in done or done[name].nunique(dropna=True) < 2 or total == 0:
            continue
        column = done[name]
        if pd.api.types.is_numeric_dtype(column) and column.nunique() > 8:
            groups = pd.qcut(column.astype(float), 8, duplicates="drop").astype(str)
        else:
            groups = column.astype(str)  # a parameter a method does not have is its own group, "nan"
        means = target.groupby(groups, observed=True).transform("mean")
        rows.append({"parameter": name, "importance": float(((means - target.mean()) ** 2).sum()) / total})
    return pd.DataFrame(rows, columns=["parameter", "importance"]).sort_values("importance", ascending=False)


def method_breakdown(trials: pd.DataFrame, spec: SearchSpec) -> pd.DataFrame:
    """Per method: how many trials ran, failed, reached the front, and the best of each objective."""
    on_front = front(trials, spec)
    rows = []
    for method, group in trials.groupby(trials["method"].fillna("?")):
        row = {"method": method, "trials": len(group), "complete": int((group["state"] == "COMPLETE").sum()),
               "failed": int((group["state"] == "FAIL").sum()), "on_front": int(on_front.loc[group.index].sum())}
        for name in spec.objective_names:
            done = group.loc[group["state"] == "COMPLETE", name].dropna()
            row[f"best {name}"] = (done.max() if sign(spec, name) > 0 else done.min()) if len(done) else None
        rows.append(row)
    return pd.DataFrame(rows)
