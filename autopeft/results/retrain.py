"""Training given configurations outside the search loop — confirmation seeds, baselines — on the search's own
kind of workers.

The runs go through the same executor and worker as the search's trials (same data, same training settings, same
measurements), so their numbers compare with the search's. Nothing here writes to the database: the callers
(``autopeft.results.confirm``, ``autopeft.results.baselines``) decide where the results belong.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from autopeft.search.controller import steps_per_trial
from autopeft.search.executor import EXECUTORS, Executor
from autopeft.search.trial import TrialRequest, TrialResult
from autopeft.spec import SearchSpec
from autopeft.store.storage import FINISHED_AT, STARTED_AT
from autopeft.tasks.data import TaskData, load_task_data


@dataclass(frozen=True)
class Run:
    """One training run: a configuration, its seed, its steps (None: the search's fidelity), its folder."""

    config: dict[str, Any]
    seed: int
    output_dir: str
    steps: int | None = None


def load_data(spec: SearchSpec) -> TaskData:
    return load_task_data(spec.data, spec.model, spec.seed)


def run_all(spec: SearchSpec, runs: Sequence[Run], executor: str = "ray", data: TaskData | None = None,
            on_result: Callable[[Run, TrialResult], None] | None = None) -> list[TrialResult]:
    """Train every run on a new executor of the given kind; results in the order of ``runs``."""
    data = data or load_data(spec)
    runner = EXECUTORS[executor](spec, data)
    try:
        return run_on(runner, spec, runs, steps_per_trial(spec, len(data.train)), on_result)
    finally:
        runner.shutdown()


def run_on(runner: Executor, spec: SearchSpec, runs: Sequence[Run], default_steps: int,
           on_result: Callable[[Run, TrialResult], None] | None = None) -> list[TrialResult]:
    """Train every run on ``runner``, as many at a time as it has slots; results in the order of ``runs``.

    Requests are numbered by their position in ``runs`` (the worker echoes the number back), not by a trial of
    the study: several runs may share one trial. Each result's ``execution`` gets the run's ``started_at`` and
    ``finished_at`` (when it went to a free slot and when its result came back, the clock Optuna's own trials
    keep), so a run stored as a trial afterwards keeps its real times (``storage.finished_trial``).
    """
    results: list[TrialResult | None] = [None] * len(runs)
    started: dict[int, datetime] = {}
    waiting = list(enumerate(runs))
    while waiting or runner.running():
        while waiting and runner.running() < runner.capacity:
            index, run = waiting.pop(0)
            started[index] = datetime.now()
            runner.submit(TrialRequest(number=index, config=run.config, seed=run.seed,
                                       steps=run.steps or default_steps, training=spec.training.model_dump(),
                                       output_dir=run.output_dir))
        for result in runner.wait():
            result.execution |= {STARTED_AT: started[result.number].isoformat(),
                                 FINISHED_AT: datetime.now().isoformat()}
            results[result.number] = result
            if on_result is not None:
                on_result(runs[result.number], result)
    return [r for r in results if r is not None]
