"""The search controller: ask the sampler, dispatch to the executor, tell the result — until the budget is spent.

It is the only writer of the trial database. It knows a study (the store and the sampler), a search space and an
executor, never which database, sampler or cluster they are. Interrupted trials are closed as such and their
configurations queued again, so a resumed search finishes its budget with nothing lost and nothing run twice.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import TrialState

from autopeft import storage
from autopeft.errors import UserError
from autopeft.executor import Executor
from autopeft.space import SearchSpace
from autopeft.spec import SearchSpec
from autopeft.trial import TrialRequest, TrialResult

MAX_REJECTIONS_IN_A_ROW = 200


@dataclass
class Progress:
    """What the controller tells its observer (the CLI's progress bar) after each event."""

    finished: int
    budget: int
    running: int
    last: TrialResult | None = None
    message: str = ""


class SearchController:
    def __init__(self, study: optuna.Study, spec: SearchSpec, space: SearchSpace, executor: Executor,
                 train_size: int, on_progress: Callable[[Progress], None] | None = None):
        self.study = study
        self.spec = spec
        self.space = space
        self.executor = executor
        self.steps = self._steps_per_trial(train_size)
        self.on_progress = on_progress or (lambda progress: None)
        self.trial_root = Path(spec.output_dir) / study.study_name
        self._in_flight: dict[int, optuna.Trial] = {}
        self.finished = sum(storage.counts_against_budget(t) for t in study.get_trials(deepcopy=False))

    def _steps_per_trial(self, train_size: int) -> int:
        budget = self.spec.budget
        if budget.steps_per_trial is not None:
            return budget.steps_per_trial
        return max(1, math.ceil(budget.epochs_per_trial * train_size / self.spec.training.batch_size))

    def run(self) -> None:
        """Run until the trial budget or the wall-clock limit is reached."""
        deadline = math.inf
        if self.spec.budget.wall_clock_minutes is not None:
            deadline = time.monotonic() + 60 * self.spec.budget.wall_clock_minutes
        self._report()
        while True:
            while self._may_start(deadline):
                self._start_one()
            if self.executor.running() == 0:
                break
            for result in self.executor.wait():
                self._record(result)
        if self.finished >= self.spec.budget.trials:
            self.study.set_user_attr(storage.FINISHED, True)

    def _may_start(self, deadline: float) -> bool:
        room = self.executor.running() < self.executor.capacity
        budget_left = self.finished + self.executor.running() < self.spec.budget.trials
        return room and budget_left and time.monotonic() < deadline

    def _start_one(self) -> None:
        """Ask until a trainable configuration comes, recording rejected ones with their reason."""
        for _ in range(MAX_REJECTIONS_IN_A_ROW):
            trial = self.study.ask()
            proposal = self.space.suggest(trial)
            trial.set_user_attr(storage.CONFIG, proposal.config)
            if proposal.rejection is None:
                break
            trial.set_user_attr(storage.REJECTED, True)
            trial.set_user_attr(storage.FAIL_REASON, f"invalid configuration: {proposal.rejection}")
            self.study.tell(trial, state=TrialState.FAIL)
        else:
            raise UserError(f"search_space: {MAX_REJECTIONS_IN_A_ROW} proposals in a row were invalid; "
                            "loosen the space's min_size/min_on rules")
        request = TrialRequest(
            number=trial.number,
            config=proposal.config,
            seed=self.spec.seed + trial.number,
            steps=self.steps,
            training=self.spec.training.model_dump(),
            output_dir=str(self.trial_root / f"trial-{trial.number:04d}"),
        )
        self._in_flight[trial.number] = trial
        self.executor.submit(request)
        self._report(f"trial {trial.number} started")

    def _record(self, result: TrialResult) -> None:
        trial = self._in_flight.pop(result.number)
        trial.set_user_attr(storage.WORKER, result.worker)
        if not result.ok:
            trial.set_user_attr(storage.FAIL_REASON, result.fail_reason)
            self.study.tell(trial, state=TrialState.FAIL)
        else:
            measured = result.measurements
            trial.set_user_attr(storage.MEASUREMENTS, measured)
            trial.set_user_attr(storage.LOSS_CURVE, [list(point) for point in result.loss_curve])
            trial.set_user_attr(storage.ADAPTER_DIR, result.adapter_dir)
            violations = [c.violation(measured[c.name]) for c in self.spec.constraints]
            trial.set_user_attr(storage.VIOLATIONS, violations)
            for constraint, violation in zip(self.spec.constraints, violations):
                trial.set_constraint(constraint.name, violation)
            self.study.tell(trial, [measured[name] for name in self.spec.objective_names])
        self.finished += 1
        self._report(f"trial {result.number} " + ("done" if result.ok else f"failed: {result.fail_reason}"),
                     result)

    def _report(self, message: str = "", last: TrialResult | None = None) -> None:
        self.on_progress(Progress(self.finished, self.spec.budget.trials, self.executor.running(), last, message))
