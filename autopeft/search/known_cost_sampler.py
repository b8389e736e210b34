"""A sampler that treats the costs known before training as known (``sampler: known-cost``).

Trainable parameters (and their share, and the adapter's tensor bytes) are counted exactly on a meta-device build
before a trial runs (autopeft/search/cost.py). Optuna's samplers model them anyway, as if they were noisy outcomes, and
spend their model on them. This one models only the objectives that are unknown before training — the task metric;
time or memory when they are objectives — and scores each candidate with its exact known cost:

1. **Candidates** are points of the space itself (autopeft/search/candidates.py: conditional parameters, per-method
   variants and rules included), drawn at random and as neighbours of the front of the trials that cleared
   chance, each counted once on the meta device and kept in a pool. A candidate whose known costs break a
   constraint, or that cannot be built, never enters the pool, so it is never proposed; nor is a configuration the
   search has already trained or is training.
2. **The model** (autopeft/search/metric_model.py) is a Gaussian process per unknown objective over the configuration,
   with the log of each known cost as an input. Values early-stopped and completed trials reported at their rungs
   are observations too, with the fraction of the steps as an input, predicted at the full steps: a stopped trial
   still teaches. Running trials are believed at the model's prediction, so parallel proposals differ. A task
   metric's model is centred on its chance level (the constant prediction's score, which the search stores before
   its first trial): where the data say little, a configuration is expected to learn nothing, not to score the
   average of what was trained.
3. **The acquisition** (autopeft/search/acquisition.py) is the expected hypervolume improvement over the front. For one
   unknown objective and one known cost it is exact: expected improvements over the front's step at the
   candidate's own cost. A task metric's improvement is measured from its chance level plus one trial's noise
   margin: a configuration at chance adds nothing to the front, however cheap.

The first proposals (``n_startup``) are random feasible candidates. The sampler proposes in ``before_trial`` (it
picks a whole point) and answers the space's define-by-run draws from it in ``sample_independent``; a draw it did
not foresee (a trial queued with fixed parameters, a sampler used outside the controller) falls back to random.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState
from scipy.special import ndtr

from autopeft.results.chance import ChanceLevel
from autopeft.results.pick import as_losses
from autopeft.search.acquisition import ehvi_one_predicted, ehvi_sampled
from autopeft.search.candidates import Candidate, config_key, draw
from autopeft.search.cost import KNOWN_BEFORE_TRAINING, known_violations
from autopeft.search.metric_model import FIDELITY, Encoder, MetricModel, leaves
from autopeft.search.scheduler import goes_on, nondominated_ranks, rung_steps
from autopeft.search.space import SearchSpace
from autopeft.search.transfer import MIN_PAIRS, Transfer, fit_transfer
from autopeft.spec import SearchSpec
from autopeft.store import storage

if TYPE_CHECKING:
    from autopeft.search.warm_start import SourceTrial

Predict = Callable[[dict[str, Any]], "dict[str, float] | str"]
_LEAVES_COST = "trainable_params"  # the known cost the model reads as an input (log10)


class KnownCostSampler(optuna.samplers.BaseSampler):
    """See the module docstring. ``bind`` gives it the space and the cost of a configuration; the controller calls
    it (``SearchController.__init__``)."""

    def __init__(self, spec: SearchSpec, seed: int | None = None, *, n_startup: int = 8, draws: int = 128,
                 new_per_proposal: int = 32, neighbours: int = 16, counting_seconds: float | None = 0.8,
                 rungs_as_data: bool = True, es_aware: bool = True, finish_stopped: bool = True):
        self.spec = spec
        self.n_startup = n_startup
        self.draws = draws
        self.new_per_proposal = new_per_proposal
        self.neighbours = neighbours
        self.counting_seconds = counting_seconds
        self.rungs_as_data = rungs_as_data
        self.es_aware = es_aware
        self.finish_stopped = finish_stopped
        self._rng = np.random.default_rng(seed)
        self._random = optuna.samplers.RandomSampler(seed=seed)
        self._space: SearchSpace | None = None
        self._predict: Predict | None = None
        self._steps = 1
        self._pool: dict[str, Candidate] = {}
        self._refused: set[str] = set()  # invalid, unbuildable or infeasible: never a candidate
        self._drafts: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}  # drawn, not yet counted
        self._chosen: dict[int, Candidate] = {}  # trial id -> the candidate proposed for it, until it is told
        self._models: dict[str, MetricModel] = {}  # last fit per objective, to start the next fit from
        self._source_rows: list[tuple[Any, SourceTrial]] = []  # warm start: earlier searches' trials, as leaves
        self.transfers: dict[str, Transfer] = {}  # warm start: the last prior per objective, with its weight
        self._chance: dict[str, float] | None = None  # the constant prediction's metrics, read from the study once
        self._chance_level: ChanceLevel | None = None  # the same with its eval examples: one trial's noise margin
        names = spec.objective_names
        self._known = [i for i, name in enumerate(names) if name in KNOWN_BEFORE_TRAINING]
        self._unknown = [i for i, name in enumerate(names) if name not in KNOWN_BEFORE_TRAINING]
        self._signs = [1.0 if o.resolved_direction == "maximize" else -1.0 for o in spec.objectives]

    def bind(self, space: SearchSpace, predict: Predict, steps: int = 1) -> None:
        """The space to draw candidates from, the costs known before training (``predict(config)``: the costs, or
        why the configuration cannot be built) and the steps of a full trial (for rung observations)."""
        self._space, self._predict, self._steps = space, predict, max(int(steps), 1)

    def warm(self, sources: list[SourceTrial]) -> None:
        """Earlier searches' completed trials as prior knowledge of the metric (autopeft/search/warm_start.py,
        autopeft/search/transfer.py). The model needs their trainable parameters as an input; a trial without them is
        left out. With a prior, the model starts after the first result instead of after ``n_startup``."""
        self._source_rows = [(leaves(s.config, {_LEAVES_COST: s.measurements[_LEAVES_COST]}), s)
                             for s in sources if _LEAVES_COST in s.measurements]

    # -- Optuna's sampler interface ---------------------------------------------------------------------------

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return {}

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        chosen = self._chosen[trial._trial_id].params if trial._trial_id in self._chosen else {}
        if param_name in chosen:
            try:
                if param_distribution._contains(param_distribution.to_internal_repr(chosen[param_name])):
                    return chosen[param_name]
            except ValueError:
                pass
        return self._random.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if self._space is None or trial.system_attrs.get("fixed_params"):
            return
        # Stored by the search before its controller starts (autopeft/search/launch.py); a search on its loss has it
        # only once the first result brings the untouched model's (autopeft/results/untouched_model.py), so read
        # until found
        if not self._chance:
            stored = study.user_attrs.get(storage.CHANCE) or {}
            self._chance = stored.get("metrics", {})
            self._chance_level = ChanceLevel.from_json(stored)
        candidate = self.propose(study.get_trials(deepcopy=False), trial.number)
        if candidate is not None:
            self._chosen[trial._trial_id] = candidate

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: list[float] | None) -> None:
        self._chosen.pop(trial._trial_id, None)

    def reseed_rng(self) -> None:
        self._random.reseed_rng()
        self._rng = np.random.default_rng()

    # -- proposing ------------------------------------------------------------------------------------------

    def propose(self, trials: list[FrozenTrial], number: int) -> Candidate | None:
        """The candidate to try next, or None if the pool holds nothing new (the caller then draws at random)."""
        others = [t for t in trials if t.number != number and storage.CONFIG in t.user_attrs
                  and not storage.is_reference(t)]
        # Running trials: those of any controller that have their configuration stored, and this process's own
        # proposals that do not have it yet (two asks in a row, before the first one's draws).
        running = [Candidate(t.params, t.user_attrs[storage.CONFIG], self._costs_of(t)) for t in others
                   if t.state == TrialState.RUNNING]
        stored = {t._trial_id for t in others}
        running += [c for trial_id, c in self._chosen.items() if trial_id not in stored]
        seen = {config_key(t.user_attrs[storage.CONFIG]) for t in others} | {config_key(c.config) for c in running}
        observed = [t for t in others if t.state == TrialState.COMPLETE and not t.user_attrs.get(storage.DUPLICATE)
                    and t.values is not None]
        stopped = [t for t in others if t.state == TrialState.PRUNED and storage.RUNGS in t.user_attrs
                   and not t.user_attrs.get(storage.DUPLICATE)] if self.rungs_as_data else []
        startup = 1 if self._source_rows else self.n_startup
        at_random = len(observed) + len(stopped) < startup or not observed
        if at_random:
            tried = {t.user_attrs[storage.CONFIG].get("method") for t in others} | {c.config.get("method")
                                                                                   for c in running}
            return self._random_feasible(seen, tried)
        # Late in a search the pool has grown over many proposals; a few new points a proposal are enough then.
        left = self.spec.budget.trials - sum(storage.counts_against_budget(t) for t in trials)
        self._grow(observed, wanted=max(8, 4 * left))
        available = [c for key, c in self._pool.items() if key not in seen]
        if self.finish_stopped:
            available += self._finishable(others, running)
        if not available:
            return None
        return available[int(np.argmax(self.score(available, observed, running, others)))]

    def finishes(self, trial_id: int) -> int | None:
        """The early-stopped trial whose configuration this trial trains again, to the end and without rungs
        (the controller asks, and sends the trial so), or None for a new configuration."""
        chosen = self._chosen.get(trial_id)
        return chosen.finishes if chosen is not None else None

    def _finishable(self, trials: list[FrozenTrial], running: list[Candidate]) -> list[Candidate]:
        """Early-stopped configurations that no trial has finished, as candidates to train to the end.

        Rungs judge a trial by its first steps, against the points the rung holds at the time; a slow starter
        (common where the task needs most of the steps to leave the majority class) cut while the rung held few
        points may be one the same rule keeps once it holds more (ASHA's promotion). Only those are offered, and
        they compete with every new candidate on the same acquisition. A finished one is re-trained from the start
        (workers keep no checkpoints), with no rungs, so it cannot be cut twice."""
        done = {config_key(t.user_attrs[storage.CONFIG]) for t in trials
                if t.state in (TrialState.COMPLETE, TrialState.RUNNING) and not t.user_attrs.get(storage.DUPLICATE)}
        done |= {config_key(c.config) for c in running}
        by_rung: dict[int, list[tuple[int, dict[str, float]]]] = {}
        for t in trials:
            if not t.user_attrs.get(storage.DUPLICATE):
                for step, point in t.user_attrs.get(storage.RUNGS, []):
                    by_rung.setdefault(step, []).append((t.number, point))
        signs = {o.name: 1.0 if o.resolved_direction == "maximize" else -1.0 for o in self.spec.objectives}
        finishable: dict[str, Candidate] = {}
        for t in trials:
            if t.state != TrialState.PRUNED or storage.STOPPED_AT not in t.user_attrs \
                    or t.user_attrs.get(storage.DUPLICATE):
                continue
            key = config_key(t.user_attrs[storage.CONFIG])
            costs = self._costs_of(t)
            if key in done or key in finishable or costs is None:
                continue
            # ASHA's promotion: the rule that stopped it would keep it now that the rungs hold more points.
            if all(goes_on(point, [p for n, p in by_rung.get(step, []) if n != t.number], signs,
                           self.spec.budget.reduction_factor) for step, point in t.user_attrs[storage.RUNGS]):
                finishable[key] = Candidate(t.params, t.user_attrs[storage.CONFIG], costs, finishes=t.number)
        return list(finishable.values())

    def score(self, candidates: list[Candidate], observed: list[FrozenTrial], running: list[Candidate],
              trials: list[FrozenTrial]) -> np.ndarray:
        """Expected hypervolume improvement of each candidate over the front of ``observed`` (and of ``running``,
        believed at the model's predictions)."""
        names = self.spec.objective_names
        points = [(row, t) for row, t in ((self._row(t), t) for t in observed) if row is not None]
        pending = [(row, c) for row, c in ((self._leaves(c.config, c.costs), c) for c in running) if row is not None]
        cand_rows = [self._leaves(c.config, c.costs) for c in candidates]
        full = [(FIDELITY, 1.0)]
        encoder = Encoder([*cand_rows, *(row for row, _ in points + pending), *(row for row, _ in self._source_rows),
                           full, [(FIDELITY, 0.0)]])
        X_cand = encoder.encode([row + full for row in cand_rows])
        X_pending = encoder.encode([row + full for row, _ in pending])
        gains = self._gains(np.array([t.values for _, t in points], dtype=float))
        believed = np.zeros((len(pending), len(names)))
        if self._known:
            believed[:, self._known] = self._known_gains([c.costs for _, c in pending])
        means, stds = [], []
        for i in self._unknown:
            rows, y = self._observations(points, i, gains[:, i], trials)
            X = encoder.encode(rows)
            # Warm: the earlier searches' prediction is the prior, the model fits what it leaves unexplained.
            prior = self._transfer(i, encoder, X[:len(points)], y[:len(points)])
            model = MetricModel(X, y - prior.at(X) if prior else y, self._models.get(names[i]),
                                center=None if prior else self._chance_gain(i))
            self._models[names[i]] = model
            model.believe(X_pending)
            mean, std = model.predict(X_cand)
            means.append(mean + prior.at(X_cand) if prior else mean)
            stds.append(std)
            if len(pending):
                believed[:, i] = model.predict(X_pending)[0] + (prior.at(X_pending) if prior else 0.0)
        order = self._unknown + self._known
        front = np.vstack([self._feasible(points, gains), believed])[:, order]
        known = self._known_gains([c.costs for c in candidates])
        reference = self._reference(gains[:, self._unknown], np.vstack([known, gains[:, self._known]]))
        if len(self._unknown) == 1 and len(self._known) <= 1:
            ehvi = ehvi_one_predicted(means[0], stds[0], known[:, 0] if self._known else None, front, reference)
            if self.es_aware and self._known:
                # A finishing trial runs without rungs: nothing can stop it.
                fresh = np.array([c.finishes is None for c in candidates])
                ehvi = ehvi * np.where(fresh, self._survival(model, prior, encoder, cand_rows, known, trials), 1.0)
            return ehvi
        mean = np.column_stack(means) if means else np.zeros((len(candidates), 0))
        std = np.column_stack(stds) if stds else np.zeros((len(candidates), 0))
        return ehvi_sampled(mean, std, known, front, reference, self._rng)

    def _survival(self, model: MetricModel, prior: Transfer | None, encoder: Encoder, cand_rows: list,
                  known: np.ndarray, trials: list[FrozenTrial]) -> np.ndarray:
        """The probability that each candidate passes early stopping's rungs (autopeft/search/scheduler.py), where the
        search has them: a trial stopped at a rung never reaches the front, so its improvement counts only if it
        goes on. At each rung the rule keeps the best fronts of the trials' points there; a new point is kept
        unless a point on a front below the cut dominates it, that is, unless one at most as costly reads more.
        That value is the bar at the rung; the model predicts the candidate's reading there (rungs as data)."""
        steps = rung_steps(self.spec.budget.rungs, self._steps)
        names = set(self.spec.objective_names)
        survival = np.ones(len(cand_rows))
        for step in steps:
            points = [point for t in trials if not t.user_attrs.get(storage.DUPLICATE)
                      for s, point in t.user_attrs.get(storage.RUNGS, []) if s == step and names <= set(point)]
            if len(points) + 1 < self.spec.budget.reduction_factor:
                continue
            values = np.array([[point[n] for n in self.spec.objective_names] for point in points], dtype=float)
            gains = self._gains(values)
            ranks = np.array(nondominated_ranks(gains.tolist(), [1.0] * gains.shape[1]))
            cut = sorted(ranks)[min(math.ceil((len(points) + 1) / self.spec.budget.reduction_factor), len(points)) - 1]
            below = gains[ranks >= cut]
            if not len(below):
                continue
            # Per candidate: the best metric among the points below the cut that are at most as costly.
            as_cheap = (below[None, :, self._known] >= known[:, None, :] - 1e-12).all(axis=2)
            bar = np.where(as_cheap, below[None, :, self._unknown[0]], -np.inf).max(axis=1)
            X = encoder.encode([row + [(FIDELITY, min(step / self._steps, 1.0))] for row in cand_rows])
            mean, std = model.predict(X, measured=True)
            if prior is not None:
                mean = mean + prior.at(X)
            survival *= np.where(np.isfinite(bar), ndtr((mean - bar) / np.maximum(std, 1e-12)), 1.0)
        return survival

    # -- helpers ----------------------------------------------------------------------------------------------

    def _random_feasible(self, seen: set[str], tried: set[str | None]) -> Candidate | None:
        """A random start-up proposal: drawing is cheap and counting is not, so the start-up phase draws its share
        of the pool uncounted (``_drafts``) and counts only the point it proposes; the first model-based proposal
        counts the drafts. A method no trial has tried yet goes first (``tried``: the methods of the trials so
        far): in a space of many methods, uniform draws would leave several untried after the start-up, and the
        model then has nothing to tell it about them."""
        for _ in range(self.new_per_proposal):
            params, config, rejection = draw(self._space, self._rng)
            key = config_key(config)
            if rejection:
                self._refused.add(key)
            elif key not in self._pool and key not in self._refused:
                self._drafts.setdefault(key, (params, config))
        for _ in range(self.draws):
            fresh = [key for key in self._drafts if key not in seen]
            if not fresh:
                break
            untried = [key for key in fresh if self._drafts[key][1].get("method") not in tried]
            fresh = untried or fresh
            key = fresh[int(self._rng.integers(len(fresh)))]
            if self._count(key, *self._drafts.pop(key)):
                return self._pool[key]
        return None

    def _count(self, key: str, params: dict[str, Any], config: dict[str, Any]) -> bool:
        """Count one drawn point on the meta device: into the pool if buildable and feasible, else refused."""
        costs = self._predict(config)
        if isinstance(costs, str) or known_violations(self.spec.constraints, costs):
            self._refused.add(key)
            return False
        self._pool[key] = Candidate(params, config, costs)
        return True

    def _grow(self, observed: list[FrozenTrial], wanted: int) -> None:
        """Add new valid, buildable, feasible candidates: the start-up phase's drafts, then neighbours of the
        current front and random draws (at most ``wanted`` new points in all).

        Counting a candidate on the meta device takes 5-50 ms, so at most ``counting_seconds`` go to it per
        proposal: the pool grows over the proposals, not all at once (the proposal latency stays bounded). The
        neighbours come first, on half of that time: random draws rarely fail, so drawn first they would fill the
        quota every time and the front's neighbourhood — where the configurations that learn are — would never be
        searched. With ``counting_seconds=None`` (``repeatable: true``) there is no clock: every draft and
        ``wanted`` new points are counted, so the pool, and the proposals, do not depend on the machine's speed or
        load."""
        start = time.perf_counter()
        budget = math.inf if self.counting_seconds is None else self.counting_seconds
        while self._drafts and time.perf_counter() - start <= budget:
            key = next(iter(self._drafts))
            self._count(key, *self._drafts.pop(key))
        bases = [t.params for t in self._best(self._learned(observed) or observed)]
        near = min(wanted, self.neighbours) if bases else 0
        added = self._add_drawn(near, 4 * near, start + budget / 2, bases)
        self._add_drawn(min(wanted, self.new_per_proposal + near) - added, self.draws, start + budget, [])

    def _add_drawn(self, quota: int, attempts: int, deadline: float, bases: list[dict[str, Any]]) -> int:
        """Draw up to ``attempts`` points — neighbours of ``bases`` in turn, or at random without them — and
        count new ones into the pool until ``quota`` are added or the clock passes ``deadline``; returns how many
        were added."""
        added = 0
        for attempt in range(attempts):
            if added >= quota or time.perf_counter() > deadline:
                break
            base = bases[attempt % len(bases)] if bases else None
            # A neighbour changes about one and a half of its base's values on average.
            keep = 1.0 - 1.5 / max(len(base), 2) if base else 0.0
            params, config, rejection = draw(self._space, self._rng, base, keep)
            key = config_key(config)
            if key in self._pool or key in self._refused:
                continue
            if rejection:
                self._refused.add(key)
                continue
            self._drafts.pop(key, None)
            added += self._count(key, params, config)
        return added

    def _learned(self, observed: list[FrozenTrial]) -> list[FrozenTrial]:
        """The trials whose task metrics all clear the chance level by one trial's noise margin (the binomial
        margin for accuracy; none is known for other metrics, so there strictly above chance). Neighbours are
        drawn around the front of these: on a task most configurations do not learn at the search's fidelity, the
        cheap end of the whole front is points at chance, and a neighbour of noise is noise (QNLI at 128 steps: the
        first neighbours were of LoKr and VeRA points at chance, the later ones, of the LoRA that learned, learned
        too). Empty where the search stored no chance level."""
        checks = [(i, bar) for i, bar in zip(self._unknown, self._chance_bars(), strict=True) if bar is not None]
        if not checks:
            return []
        return [t for t in observed if all(self._objective_gains(i, [t.values[i]])[0] > bar + 1e-12
                                           for i, bar in checks)]

    def _best(self, observed: list[FrozenTrial]) -> list[FrozenTrial]:
        """The observed trials on the (unconstrained) front: the bases of the neighbours."""
        if not observed:
            return []
        losses = as_losses(np.array([t.values for t in observed], dtype=float), self.spec.objective_names,
                           self._signs)
        keep = [i for i, row in enumerate(losses)
                if not any((other <= row).all() and (other < row).any() for other in losses)]
        return [observed[i] for i in keep]

    def _costs_of(self, trial: FrozenTrial) -> dict[str, float] | None:
        costs = trial.user_attrs.get(storage.PREDICTED)
        if costs is None and self._predict is not None:
            costs = self._predict(trial.user_attrs[storage.CONFIG])
        return costs if isinstance(costs, dict) else None

    def _leaves(self, config: dict[str, Any], costs: dict[str, float] | None):
        if costs is None or _LEAVES_COST not in costs:
            return None
        return leaves(config, {_LEAVES_COST: costs[_LEAVES_COST]})

    def _row(self, trial: FrozenTrial):
        return self._leaves(trial.user_attrs[storage.CONFIG], self._costs_of(trial))

    def _gains(self, values: np.ndarray) -> np.ndarray:
        """Objective values (rows in the spec's order) as gains: larger is better, counts and sizes as log10."""
        return -as_losses(values, self.spec.objective_names, self._signs)

    def _known_gains(self, costs: list[dict[str, float]]) -> np.ndarray:
        """(n, known objectives) gains of the known costs."""
        names = [self.spec.objective_names[i] for i in self._known]
        values = np.array([[c[KNOWN_BEFORE_TRAINING[n]] for n in names] for c in costs], dtype=float)
        return -as_losses(values.reshape(len(costs), len(names)), names, [self._signs[i] for i in self._known])

    def _observations(self, points, objective: int, final: np.ndarray, trials: list[FrozenTrial]):
        """(encoded rows, gains) of one unknown objective: each completed trial at its full steps and, with rungs
        as data, every trial's values at its rungs (completed and early-stopped ones)."""
        rows = [row + [(FIDELITY, 1.0)] for row, _ in points]
        y = list(final)
        if self.rungs_as_data:
            name = self.spec.objective_names[objective]
            for trial in trials:
                if trial.user_attrs.get(storage.DUPLICATE) or storage.RUNGS not in trial.user_attrs:
                    continue
                row = self._leaves(trial.user_attrs[storage.CONFIG], self._costs_of(trial))
                if row is None:
                    continue
                for step, point in trial.user_attrs[storage.RUNGS]:
                    if name in point:
                        rows.append(row + [(FIDELITY, min(step / self._steps, 1.0))])
                        y.append(self._objective_gains(objective, [point[name]])[0])
        return rows, np.array(y, dtype=float)

    def _transfer(self, objective: int, encoder: Encoder, X_full: np.ndarray, y_full: np.ndarray) -> Transfer | None:
        """The warm prior of one objective (None without at least MIN_PAIRS source trials that measured it)."""
        name = self.spec.objective_names[objective]
        rows = [(row, s.measurements[name]) for row, s in self._source_rows if name in s.measurements]
        if len(rows) < MIN_PAIRS:
            return None
        X_source = encoder.encode([row + [(FIDELITY, 1.0)] for row, _ in rows])
        y_source = self._objective_gains(objective, [v for _, v in rows])
        previous = self.transfers.get(name)
        transfer = fit_transfer(X_source, y_source, X_full, y_full, previous.source if previous else None)
        self.transfers[name] = transfer
        return transfer

    def _feasible(self, points, gains: np.ndarray) -> np.ndarray:
        """Gains of the observed trials that meet the constraints (the front is taken by the acquisition)."""
        feasible = [i for i, (_, t) in enumerate(points)
                    if all(v <= 0 for v in t.user_attrs.get(storage.VIOLATIONS, []))]
        return gains[feasible] if feasible else np.zeros((0, gains.shape[1]))

    def _chance_gain(self, objective: int) -> float | None:
        """The objective's chance level as a gain, the centre of its model; None where the search stored none."""
        name = self.spec.objective_names[objective]
        if name not in (self._chance or {}):
            return None
        return float(self._objective_gains(objective, [self._chance[name]])[0])

    def _objective_gains(self, objective: int, values: list[float]) -> np.ndarray:
        """One objective's values as gains (larger is better), as ``_gains`` reads a whole row."""
        name = self.spec.objective_names[objective]
        return -as_losses(np.array(values, dtype=float).reshape(-1, 1), [name], [self._signs[objective]])[:, 0]

    def _reference(self, unknown: np.ndarray, known: np.ndarray) -> np.ndarray:
        """The reference point, unknown objectives first: for a task metric with a stored chance level, that level
        plus one trial's noise margin (``_learned``'s bar); otherwise a little below the worst observed value of
        each unknown objective; and the worst known cost among the candidates and observed trials.

        Why the chance bar: with the reference below the worst observed value, every candidate cheaper than the
        front's cheapest point earned a sure improvement, its predicted score at chance minus the reference times
        its width of cost, whether it could learn or not. On a task most configurations do not learn at the
        search's fidelity, that sure part ranked tiny LoKr, VeRA and prompt points at chance above the
        configurations that might learn. A point at chance is worth nothing, whatever it costs: measured from the
        chance bar, only the chance of learning something earns improvement."""
        def below_worst(gains: np.ndarray) -> np.ndarray:
            low, high = gains.min(axis=0), gains.max(axis=0)
            return low - 0.1 * np.maximum(high - low, 1e-9)
        metric = below_worst(unknown)
        for column, bar in enumerate(self._chance_bars()):
            if bar is not None:
                metric[column] = bar
        return np.concatenate([metric, below_worst(known)])

    def _chance_bars(self) -> list[float | None]:
        """Per unknown objective, in ``_unknown``'s order: its chance level as a gain plus one trial's noise margin
        (the binomial margin for accuracy, none known for other metrics), or None where no chance level is
        stored (time, memory; a study without one)."""
        names = self.spec.objective_names
        bars: list[float | None] = []
        for i in self._unknown:
            gain = self._chance_gain(i)
            margin = (self._chance_level.margin(names[i], 1) or 0.0) if self._chance_level else 0.0
            bars.append(None if gain is None else gain + margin)
        return bars
