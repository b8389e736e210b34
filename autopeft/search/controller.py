"""The search controller: ask the sampler, dispatch to the executor, tell the result — until the budget is spent.

Controllers are the only writers of the trial database. A controller knows a study (the store and the sampler),
a search space and an executor, never which database, sampler or cluster they are. Interrupted trials are closed
as such and their configurations queued again, so a resumed search finishes its budget with nothing lost and
nothing run twice.

The budget is counted in the database before every proposal (finished trials plus those running under any
controller), so several controllers on one study share it; see ``storage.ahead_of`` for the last-trial race.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import optuna
from optuna.trial import TrialState

from autopeft.errors import UserError
from autopeft.results.untouched_model import remember_untouched
from autopeft.search.cost import KNOWN_BEFORE_TRAINING, known_violations, predict_cost
from autopeft.search.executor import Executor
from autopeft.search.scheduler import rung_steps
from autopeft.search.space import SearchSpace
from autopeft.search.trial import RungPlan, TrialRequest, TrialResult
from autopeft.spec import SearchSpec
from autopeft.store import storage
from autopeft.store.run_folder import run_folder

MAX_REJECTIONS_IN_A_ROW = 200
# After this many proposals in a row that repeat a trained configuration, the next one is drawn at random: a
# model-based sampler that keeps choosing a point it has already seen would otherwise never move on.
DUPLICATES_BEFORE_RANDOM = 2


def steps_per_trial(spec: SearchSpec, train_size: int) -> int:
    """The search's fidelity: training steps per trial (also used for its baselines and confirmations)."""
    budget = spec.budget
    if budget.steps_per_trial == "auto":
        raise UserError("budget.steps_per_trial: auto, and the learnability probe has not chosen the steps yet (it "
                        "was stopped, or found nothing learnable); resume the search to probe again, or give the "
                        "steps as a number")
    if budget.steps_per_trial is not None:
        return budget.steps_per_trial
    return max(1, math.ceil(budget.epochs_per_trial * train_size / spec.training.batch_size))


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
                 train_size: int, on_progress: Callable[[Progress], None] | None = None, num_labels: int = 2):
        self.study = study
        self.spec = spec
        self.space = space
        self.executor = executor
        self.steps = self._steps_per_trial(train_size)
        self.on_progress = on_progress or (lambda progress: None)
        self.num_labels = num_labels
        self.trial_root = run_folder(spec.output_dir, study.study_name)
        self._in_flight: dict[int, optuna.Trial] = {}
        self._owner = storage.controller_id()
        self.exhausted = False  # a finite space with every configuration trained: nothing left to propose
        self.finished = 0
        self._count_finished()
        bind = getattr(study.sampler, "bind", None)
        if callable(bind):  # a sampler scoring candidates by their known costs (autopeft/search/known_cost_sampler.py)
            bind(space, self.predict, self.steps)

    def _count_finished(self) -> list[optuna.trial.FrozenTrial]:
        trials = self.study.get_trials(deepcopy=False)
        self.finished = sum(storage.counts_against_budget(t) for t in trials)
        return trials

    def _steps_per_trial(self, train_size: int) -> int:
        return steps_per_trial(self.spec, train_size)

    def run(self) -> None:
        """Run until the trial budget or the wall-clock limit is reached."""
        deadline = math.inf
        if self.spec.budget.wall_clock_minutes is not None:
            deadline = time.monotonic() + 60 * self.spec.budget.wall_clock_minutes
        self._report()
        while True:
            while self._may_start(deadline) and self._start_one():
                pass
            if self.executor.running() == 0:
                break
            for result in self.executor.wait():
                self._record(result)
        self._count_finished()
        if self.finished >= self.spec.budget.trials or self.exhausted:
            self.study.set_user_attr(storage.FINISHED, True)
        elif time.monotonic() >= deadline:  # said in the closing summary, with how to go on
            self.study.set_user_attr(storage.WALL_CLOCK, {"minutes": self.spec.budget.wall_clock_minutes,
                                                          "spent": self.finished})

    def _may_start(self, deadline: float) -> bool:
        if self.exhausted or self.executor.running() >= self.executor.capacity or time.monotonic() >= deadline:
            return False
        # From the database, not from memory: other controllers may be spending the same budget.
        return storage.budget_spent(self._count_finished()) < self.spec.budget.trials

    def _claim(self, trial: optuna.Trial) -> bool:
        """Mark the trial as this controller's; stand back if controllers ahead of it took the last budget."""
        trial.set_user_attr(storage.OWNER, self._owner)
        if storage.ahead_of(self.study.get_trials(deepcopy=False), trial.number) < self.spec.budget.trials:
            return True
        trial.set_user_attr(storage.REJECTED, True)
        trial.set_user_attr(storage.FAIL_REASON, "not run: other controllers took the rest of the budget")
        self.study.tell(trial, state=TrialState.FAIL)
        return False

    def _start_one(self) -> bool:
        """Ask until a new trainable configuration comes; record rejected ones with their reason and answer
        repeats of trained ones from the database.

        Returns False when the budget turned out to be taken by other controllers, or nothing new is left.
        """
        if self._space_exhausted():
            self.exhausted = True
            self._report("stopping: every configuration of the space has been trained")
            return False
        repeats = infeasible_count = 0
        for _ in range(MAX_REJECTIONS_IN_A_ROW):
            with self._sampling_at_random(repeats >= DUPLICATES_BEFORE_RANDOM):
                trial = self.study.ask()
                if not self._claim(trial):
                    return False
                proposal = self.space.suggest(trial)  # define-by-run: the sampler draws here, not in ask()
            trial.set_user_attr(storage.CONFIG, proposal.config)
            finishes = None if proposal.rejection else self._finishes(trial, proposal.config)
            twin = None if proposal.rejection else self._twin(proposal.config, trial.number,
                                                              finishing=finishes is not None)
            if twin is not None:
                repeats += 1
                if twin.state != TrialState.RUNNING:
                    self._tell_duplicate(trial, twin)
                    continue
                proposal.rejection = f"same configuration as trial {twin.number}, which is running"
            if proposal.rejection is None:
                proposal.rejection = self._check_buildable(trial, proposal.config)
            if proposal.rejection is None:
                predicted = trial.user_attrs.get(storage.PREDICTED, {})
                infeasible = self._known_violations(predicted)
                if not infeasible:
                    break
                self._tell_infeasible(trial, predicted, infeasible)
                infeasible_count += 1
                continue
            trial.set_user_attr(storage.REJECTED, True)
            trial.set_user_attr(storage.FAIL_REASON, f"invalid configuration: {proposal.rejection}")
            self.study.tell(trial, state=TrialState.FAIL)
        else:
            if repeats:
                self.exhausted = True
                self._report(f"stopping: {MAX_REJECTIONS_IN_A_ROW} proposals in a row were invalid or trained "
                             "already; no new valid configuration is left to find")
                return False
            if infeasible_count:
                raise UserError(f"constraints: {infeasible_count} of {MAX_REJECTIONS_IN_A_ROW} proposals in a row "
                                "broke the constraints on costs known before training (trainable parameters, "
                                "adapter size); loosen those constraints or narrow the space to smaller "
                                "configurations")
            raise UserError(f"search_space: {MAX_REJECTIONS_IN_A_ROW} proposals in a row were invalid; "
                            "loosen the space's min_size/min_on rules")
        if finishes is not None:
            trial.set_user_attr(storage.FINISHES, finishes)
        request = TrialRequest(
            number=trial.number,
            config=proposal.config,
            seed=self.spec.seed + trial.number,
            steps=self.steps,
            training=self.spec.training.model_dump(),
            output_dir=str(self.trial_root / f"trial-{trial.number:04d}"),
            rungs=None if finishes is not None else self._rung_plan(),
        )
        self._in_flight[trial.number] = trial
        self.executor.submit(request)
        self._report(f"trial {trial.number} started" + (f" (finishes early-stopped trial {finishes})"
                                                          if finishes is not None else ""))
        return True

    def _space_exhausted(self) -> bool:
        """A finite space whose every point is trained or running (``SearchSpace.size`` never undercounts; failed
        trials leave their point open)."""
        size = self.space.size() if self.space is not None else math.inf
        if math.isinf(size):
            return False
        seen = {json.dumps(t.user_attrs.get(storage.CONFIG), sort_keys=True)
                for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED,
                                                                       TrialState.RUNNING))
                if storage.CONFIG in t.user_attrs and not storage.is_reference(t)}
        return len(seen) >= size

    @contextmanager
    def _sampling_at_random(self, at_random: bool) -> Iterator[None]:
        """The study's sampler replaced by a random one for one proposal (its ask and its draws)."""
        if not at_random:
            yield
            return
        sampler = self.study.sampler
        self.study.sampler = optuna.samplers.RandomSampler(
            seed=self.spec.seed + len(self.study.get_trials(deepcopy=False)))
        try:
            yield
        finally:
            self.study.sampler = sampler

    def _twin(self, config: dict, number: int, finishing: bool = False) -> optuna.trial.FrozenTrial | None:
        """A completed, early-stopped or running trial with exactly this configuration (baselines aside), if any;
        a completed or running one first, as an early-stopped configuration may have been finished since.
        Failed ones are not twins: a failure may be the machine's, and the configuration deserves another try.
        ``finishing``: the proposal trains an early-stopped configuration to the end, so stopped ones are not
        twins either."""
        states = (TrialState.COMPLETE, TrialState.RUNNING) + (() if finishing else (TrialState.PRUNED,))
        twins = [other for other in self.study.get_trials(deepcopy=False, states=states)
                 if other.number != number and not storage.is_reference(other)
                 and other.user_attrs.get(storage.CONFIG) == config]
        return min(twins, key=lambda t: t.state == TrialState.PRUNED, default=None)

    def _finishes(self, trial: optuna.Trial, config: dict) -> int | None:
        """The early-stopped trial this proposal trains again to the end, for a sampler that proposes so
        (autopeft/search/known_cost_sampler.py); None for a new configuration, or if the space drew another one (a space
        edited since the stopped trial ran)."""
        finishes = getattr(self.study.sampler, "finishes", None)
        number = finishes(trial._trial_id) if callable(finishes) else None
        if number is None:
            return None
        trials = self.study.get_trials(deepcopy=False)  # ordered by number
        stopped = trials[number] if number < len(trials) else None
        return number if stopped is not None and stopped.user_attrs.get(storage.CONFIG) == config else None

    def _tell_duplicate(self, trial: optuna.Trial, twin: optuna.trial.FrozenTrial) -> None:
        """Answer a repeat from its twin's record: the sampler learns it was seen, nothing is trained, and it
        spends no budget (``storage.counts_against_budget``)."""
        trial.set_user_attr(storage.DUPLICATE, True)
        trial.set_user_attr(storage.DUPLICATE_OF, twin.number)
        for key in (storage.MEASUREMENTS, storage.VIOLATIONS):
            if key in twin.user_attrs:
                trial.set_user_attr(key, twin.user_attrs[key])
        for constraint, violation in zip(self.spec.constraints, twin.user_attrs.get(storage.VIOLATIONS, [])):
            trial.set_constraint(constraint.name, violation)
        if twin.state == TrialState.PRUNED:  # stopped early: so would its repeat be
            self.study.tell(trial, state=TrialState.PRUNED)
        else:
            self.study.tell(trial, twin.values)

    def _rung_plan(self) -> RungPlan | None:
        """Early stopping's rungs for a new trial, with every recorded trial's points at them (from the database,
        so trials of other controllers and of earlier runs count)."""
        budget = self.spec.budget
        steps = rung_steps(budget.rungs, self.steps)
        if not steps:
            return None
        table: dict[int, list[dict[str, float]]] = {step: [] for step in steps}
        known: set[int] = set()
        for recorded in self.study.get_trials(deepcopy=False):
            for step, point in recorded.user_attrs.get(storage.RUNGS, []):
                if step in table:
                    table[step].append(point)
                    known.add(recorded.number)
        signs = {o.name: 1.0 if o.resolved_direction == "maximize" else -1.0 for o in self.spec.objectives}
        return RungPlan(tuple(steps), table, signs, budget.reduction_factor, frozenset(known))

    def _check_buildable(self, trial: optuna.Trial, config: dict) -> str | None:
        """A configuration that cannot be built is rejected before it costs a worker anything, and the costs known
        before training are stored."""
        predicted = self.predict(config)
        if isinstance(predicted, str):
            return predicted
        trial.set_user_attr(storage.PREDICTED, predicted)
        return None

    def predict(self, config: dict) -> dict[str, float] | str:
        """The costs known before training, from a build on a meta-device model (shapes only, milliseconds), or
        why the configuration cannot be built. Also what a sampler that uses known costs is given."""
        try:
            return predict_cost(self.spec.model, self.num_labels, config)
        except (UserError, ValueError, TypeError, KeyError) as exc:
            return str(exc)

    def _known_violations(self, predicted: dict[str, float]) -> list[float] | None:
        return known_violations(self.spec.constraints, predicted)

    def _tell_infeasible(self, trial: optuna.Trial, predicted: dict[str, float], violations: list[float]) -> None:
        """A configuration whose known costs break a constraint is not trained. The sampler is told it is
        infeasible (its constraint values, state PRUNED: TPE ranks it with the infeasible trials and steers
        away), and the views show it as rejected with the reason; it spends no budget."""
        broken = [f"{c.name} {predicted[KNOWN_BEFORE_TRAINING[c.name]]:,.6g} breaks its bound ({c.bounds()})"
                  for c, v in zip(self.spec.constraints, violations) if v > 0]
        trial.set_user_attr(storage.REJECTED, True)
        trial.set_user_attr(storage.INFEASIBLE, True)
        trial.set_user_attr(storage.VIOLATIONS, violations)
        trial.set_user_attr(storage.FAIL_REASON, "infeasible before training: " + "; ".join(broken))
        for constraint, violation in zip(self.spec.constraints, violations):
            trial.set_constraint(constraint.name, violation)
        self.study.tell(trial, state=TrialState.PRUNED)

    def _record(self, result: TrialResult) -> None:
        trial = self._in_flight.pop(result.number)
        remember_untouched(self.study, result)
        trial.set_user_attr(storage.WORKER, result.worker)
        if result.execution:
            trial.set_user_attr(storage.EXECUTION, result.execution)
        if not result.ok:
            trial.set_user_attr(storage.FAIL_REASON, result.fail_reason)
            self.study.tell(trial, state=TrialState.FAIL)
        else:
            measured = result.measurements
            trial.set_user_attr(storage.MEASUREMENTS, measured)
            trial.set_user_attr(storage.LOSS_CURVE, [list(point) for point in result.loss_curve])
            trial.set_user_attr(storage.ADAPTER_DIR, result.adapter_dir)
            if result.predictions and result.stopped_at is None:  # a stopped trial's were made at its rung
                trial.set_user_attr(storage.PREDICTIONS, result.predictions)
            self._record_rungs(trial, result)
            violations = [c.violation(measured[c.name]) for c in self.spec.constraints]
            trial.set_user_attr(storage.VIOLATIONS, violations)
            for constraint, violation in zip(self.spec.constraints, violations):
                trial.set_constraint(constraint.name, violation)
            if result.stopped_at is not None:  # early-stopped: its last values stay in the attributes
                self.study.tell(trial, state=TrialState.PRUNED)
            else:
                self.study.tell(trial, [measured[name] for name in self.spec.objective_names])
        self._count_finished()
        outcome = "done" if result.stopped_at is None else f"stopped early at step {result.stopped_at}"
        self._report(f"trial {result.number} " + (outcome if result.ok else f"failed: {result.fail_reason}"),
                     result)

    def _record_rungs(self, trial: optuna.Trial, result: TrialResult) -> None:
        if not result.rung_points:
            return
        trial.set_user_attr(storage.RUNGS, [[step, point] for step, point in result.rung_points])
        if result.stopped_at is not None:
            trial.set_user_attr(storage.STOPPED_AT, result.stopped_at)
        # Not as Optuna intermediate values: TPE ranks pruned trials that have them by the study's single
        # direction, which a multi-objective study does not have.

    def _report(self, message: str = "", last: TrialResult | None = None) -> None:
        self.on_progress(Progress(self.finished, self.spec.budget.trials, self.executor.running(), last, message))
