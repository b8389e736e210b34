"""Confirming chosen trials: train each again with more seeds and store per-seed values with mean ± std.

A search trains each configuration once, with one seed, and at a small dataset a lucky seed can put a
configuration on the front (AutoPEFT retrains its front with 5 seeds for this reason). Confirmation reruns the
same configuration, on the same workers and data, with new seeds, and stores the outcome for the original trial
(``storage.set_confirmation``; read back as ``TrialRecord.confirmation``), so the views show the measured spread
beside the single-seed value. A confirmation at the search's own fidelity also decides whether the point is above
chance (autopeft/results/noise.py): the mean of the new seeds against chance (``chance.seeds_test``).

After a search, the front points that cleared chance by less than one standard deviation of noise are confirmed
automatically (``budget.confirm_near_chance`` seeds each; :func:`confirm_near_chance`), so a false alarm is not
presented as learned: on RTE a front point 1 point above its bar averaged 0.522 over three new seeds, at chance.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import Any

import optuna

from autopeft.errors import UserError
from autopeft.results.noise import NoiseReport, assess
from autopeft.results.retrain import Run, run_all, run_on
from autopeft.search.executor import Executor
from autopeft.search.trial import TrialResult
from autopeft.spec import SearchSpec
from autopeft.store import storage
from autopeft.store.run_folder import run_folder
from autopeft.store.storage import TrialRecord

SEED_STRIDE = 1_000_003  # confirmation seeds never meet a search trial's seed (spec seed + trial number)
# Front points confirmed after a search at most, the best first: near the bar a front rarely has more, and each
# costs ``confirm_near_chance`` trainings after the wall clock.
MOST_CONFIRMED_AFTER_SEARCH = 4


def confirmation_seeds(spec: SearchSpec, number: int, count: int) -> list[int]:
    """Seeds for ``count`` new runs of trial ``number``, all different from the seed it was searched with."""
    return [spec.seed + number + SEED_STRIDE * k for k in range(1, count + 1)]


def summarise(runs: list[dict[str, Any]]) -> tuple[dict[str, float], dict[str, float]]:
    """Mean and sample standard deviation (0 for a single run) of each measurement over the successful runs."""
    done = [r["measurements"] for r in runs if r["ok"]]
    names = sorted(set.intersection(*(set(m) for m in done))) if done else []
    mean = {n: statistics.fmean(m[n] for m in done) for n in names}
    std = {n: statistics.stdev([m[n] for m in done]) if len(done) > 1 else 0.0 for n in names}
    return mean, std


def confirm_trials(study: optuna.Study, spec: SearchSpec, chosen: Sequence[TrialRecord], seeds: int = 3,
                   steps: int | None = None, executor: str = "ray",
                   on_result: Callable[[Run, TrialResult], None] | None = None,
                   runner: tuple[Executor, int] | None = None) -> dict[int, dict[str, Any]]:
    """Retrain each chosen trial with ``seeds`` new seeds; store and return the confirmation per trial number.
    ``runner``: a running executor and the search's steps per trial, to train on instead of a new ``executor``."""
    if seeds < 1:
        raise UserError("--seeds: at least 1")
    root = run_folder(spec.output_dir, study.study_name)
    runs: list[Run] = []
    owners: list[int] = []
    for record in chosen:
        for seed in confirmation_seeds(spec, record.number, seeds):
            runs.append(Run(config=record.config, seed=seed, steps=steps,
                            output_dir=str(root / f"trial-{record.number:04d}" / f"confirm-seed-{seed}")))
            owners.append(record.number)
    if runner is None:
        results = run_all(spec, runs, executor=executor, on_result=on_result)
    else:
        results = run_on(runner[0], spec, runs, runner[1], on_result)
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    confirmations: dict[int, dict[str, Any]] = {}
    for record in chosen:
        mine = [(run, result) for run, result, owner in zip(runs, results, owners) if owner == record.number]
        per_seed = [{"seed": run.seed, "ok": result.ok, "measurements": result.measurements,
                     "fail_reason": result.fail_reason, "adapter_dir": result.adapter_dir} for run, result in mine]
        mean, std = summarise(per_seed)
        searched = _searched_steps(trials, record)
        confirmation = {"seeds": [run.seed for run, _ in mine], "steps": steps or searched,
                        "at_search_fidelity": steps is None or steps == searched,
                        "runs": per_seed, "mean": mean, "std": std,
                        "succeeded": sum(r["ok"] for r in per_seed)}
        storage.set_confirmation(study, record.number, confirmation)
        confirmations[record.number] = confirmation
    return confirmations


def confirm_near_chance(study: optuna.Study, spec: SearchSpec, runner: Executor, steps: int,
                        say: Callable[[str], None]) -> list[int]:
    """After a search: retrain the front points that cleared chance by less than one standard deviation of noise
    (the best :data:`MOST_CONFIRMED_AFTER_SEARCH`) with ``budget.confirm_near_chance`` new seeds each, on the
    search's own workers. Returns the trial numbers retrained."""
    seeds = spec.budget.confirm_near_chance
    if not seeds:
        return []
    records = storage.trial_records(study, spec)
    report = assess(study, records, spec)
    if report is None or not report.near_bar:
        return []
    by_number = {r.number: r for r in records}
    near = near_chance_points(report)
    shown = ", ".join(f"{n} ({report.tests[n].value:.4f}, bar {report.tests[n].bar:.4f})" for n in near)
    say(f"front points just above chance, retrained with {seeds} new seed{'s' if seeds > 1 else ''} each "
        f"(budget.confirm_near_chance): {shown}")
    confirm_trials(study, spec, [by_number[n] for n in near], seeds=seeds, runner=(runner, steps))
    return near


def near_chance_points(report: NoiseReport) -> list[int]:
    """The front points a search retrains at its end: those just above chance on one seed, the best
    :data:`MOST_CONFIRMED_AFTER_SEARCH` by the task metric."""
    sign = 1.0 if report.maximize else -1.0
    return sorted(report.near_bar, key=lambda n: -sign * report.tests[n].value)[:MOST_CONFIRMED_AFTER_SEARCH]


def _searched_steps(trials: dict[int, optuna.trial.FrozenTrial], record: TrialRecord) -> int | None:
    curve = trials[record.number].user_attrs.get(storage.LOSS_CURVE) or []
    return int(curve[-1][0]) if curve else None


def select(records: list[TrialRecord], numbers: Sequence[int]) -> list[TrialRecord]:
    """The completed trials with these numbers; anything else is an error naming ``--trials``."""
    by_number = {r.number: r for r in records}
    chosen = []
    for number in numbers:
        record = by_number.get(number)
        if record is None:
            raise UserError(f"--trials: the search has no trial {number}")
        if record.state != "COMPLETE":
            raise UserError(f"--trials: trial {number} is {record.state}; only completed trials can be confirmed")
        chosen.append(record)
    return chosen
