"""Finding the training budget before the search: the learnability probe (``budget.steps_per_trial: auto``).

A fidelity tuned on one task is a guess on the next: 150 steps learn SST-2 and leave an acceptability task at
chance, and a search at a fidelity where nothing learns returns a front of noise. So the probe trains strong
reference configurations — full fine-tuning and a large LoRA, each at its usual learning rate — on a doubling
ladder of steps (``probe.start_steps``, twice that, ...), each rung from scratch with its own schedule, as a search
trial at that fidelity would train. It stops at the first rung where

- a reference clears chance by the margin the search's best point will need (autopeft/results/chance.py: its permutation
  null, corrected for the trials the search is expected to run at that rung's steps — see
  :func:`expected_search_trials` — or for the probe runs so far, where they are more), and
- the next doubling did not pay: no reference that cleared chance there is better than it was itself a rung
  before, beyond noise (paired bootstrap on the same eval examples, corrected for the references compared) and by
  at least ``probe.min_gain`` of its distance above chance there;

or at ``probe.max_steps`` / ``probe.minutes`` with the last rung that cleared chance. Each reference is compared
with itself, not the rung's best with the last rung's best: the search's trials learn at different speeds, and a
fast learner that has levelled off says nothing of a slow one still climbing (on SST-2 a large LoRA read 0.790 at
32 steps and 0.789 at 64 while full fine-tuning rose from 0.630 to 0.781; choosing 32 left a third of the searched
trials near chance). A rung is only chosen once
its learning is reproduced: the best reference that cleared chance there is trained again with another seed and
must clear chance again (``probe.confirm``), because a reference that learns with one seed and not another leaves
the search's trials, each with its own seed, at chance. If no rung is reproduced, the search stops before spending
its budget, with what to try. Every probe run is stored in the study (marked ``probe``:
outside the budget and the front, drawn in the dashboard), and so is the probe's decision.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import optuna

from autopeft.errors import UserError
from autopeft.results.chance import PAIRED_ALPHA, ChanceLevel, chance_test, significantly_better
from autopeft.results.retrain import Run, run_on
from autopeft.results.untouched_model import remember_untouched
from autopeft.search.executor import Executor
from autopeft.search.space import SearchSpace
from autopeft.search.trial import TrialResult
from autopeft.spec import SearchSpec
from autopeft.store import storage
from autopeft.store.predictions import EvalTargets, compared
from autopeft.store.run_folder import run_folder

ALL_MODULES = ["query", "key", "value", "attention_output", "ffn_up", "ffn_down"]
# The strong, standard configurations whose learning says the task can be learned at a fidelity. Usual learning
# rates: full fine-tuning's (Devlin et al. 2019) and LoRA's (Hu et al. 2021), as in autopeft.results.baselines.
REFERENCES: dict[str, dict[str, Any]] = {
    "full": {"method": "full", "learning_rate": 5e-5},
    "lora-r16-all": {"method": "lora", "lora": {"r": 16, "alpha_over_r": 2.0, "target_modules": ALL_MODULES},
                     "learning_rate": 1e-3},
}
# Where the search space cannot draw a reference itself, the nearest point it can, tried in order. Full fine-tuning
# is no PEFT method, but fine-tuning every layer outright (`partial` with all layers on) trains everything except
# the embeddings, at full fine-tuning's rate: on a task where only full fine-tuning learned at the chosen steps
# (BoolQ: 0.645 against chance 0.631), this is the point of the space most likely to learn too.
STAND_INS: dict[str, list[dict[str, Any]]] = {
    "full": [{"method": "partial", "learning_rate": 5e-5}],
}


class NothingLearnable(UserError):
    """No reference configuration cleared chance within the probe's limits: the search would find only noise."""


@dataclass
class Rung:
    steps: int
    seconds: float
    # reference -> trial, metric, bar, above; "alone_bar" where it cleared chance as one run but not that bar
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    search_trials: int = 0  # the trials the search was expected to run at these steps: what "bar" is corrected for


@dataclass
class ProbeOutcome:
    chosen: int | None
    reason: str
    seconds: float
    rungs: list[Rung]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def expected_search_trials(spec: SearchSpec, capacity: int, references: int, rung_seconds: float) -> int:
    """About how many trials the search will complete at a rung's steps: its budget, or as many as its workers
    train within its wall clock at the rung's pace (a rung's runs train side by side, each as long as a trial at
    those steps; early stopping, which makes trials shorter, is left out).

    A reference is judged against the bar of the search's best point, not against its own: the front's best is the
    best of that many trials and must clear chance corrected for all of them (autopeft/results/noise.py), so a reference
    that clears only a barely corrected bar learns too little for any searched point to be told from luck. On RTE
    at 128 steps full fine-tuning read 0.5848 against its own bar of 0.5821, the probe chose that fidelity, and in
    three 20-minute searches (17 to 43 trials) every point read at chance, the best 0.563; against the bar of
    about a dozen trials (0.59) the probe stops instead, before the search spends its budget."""
    trials = spec.budget.trials
    minutes = spec.budget.wall_clock_minutes
    if minutes is not None and rung_seconds > 0:
        per_trial = rung_seconds / math.ceil(references / max(1, capacity))
        trials = min(trials, max(1, int(max(1, capacity) * 60 * minutes / per_trial)))
    return trials


def _references(spec: SearchSpec) -> dict[str, dict[str, Any]]:
    names = spec.budget.probe.references or list(REFERENCES)
    return {name: REFERENCES[name] for name in names}


def _store(study: optuna.Study, spec: SearchSpec, name: str, steps: int, result: TrialResult,
           config: dict[str, Any], seed: int | None = None) -> int:
    """Add one probe run to the study (outside budget and front) and return its trial number; ``seed`` marks a
    run that repeats the rung's run with another seed."""
    mark: dict[str, Any] = {"reference": name, "steps": steps}
    if seed is not None:
        mark["seed"] = seed
    study.add_trial(storage.finished_trial(spec, config, result, {storage.PROBE: mark}))
    return study.get_trials(deepcopy=False)[-1].number


def find_steps(study: optuna.Study, spec: SearchSpec, runner: Executor, level: ChanceLevel | None,
               targets: EvalTargets | None, say: Callable[[str], None] = lambda message: None) -> ProbeOutcome:
    """Run the probe on ``runner``'s workers and return its decision (stored on the study as ``probe``);
    raises NothingLearnable when nothing cleared chance."""
    probe = spec.budget.probe
    metric = spec.task_metric
    maximize = spec.task_metric_direction == "maximize"
    # Records without gold answers: the untouched model's loss, the reference, comes with the first rung's results
    untouched_pending = level is None and metric == "eval_loss" and spec.model.task == "causal-lm"
    if not untouched_pending and (level is None or targets is None or metric not in level.metrics):
        raise UserError(f"budget.steps_per_trial: auto needs a chance level for {metric!r}, which this task does "
                        "not have; give budget.steps_per_trial as a number")
    references = _references(spec)
    root = run_folder(spec.output_dir, study.study_name)
    started = time.monotonic()
    rungs: list[Rung] = []
    # rung steps -> reference -> (metric, predictions, above chance), for every reference that ran there
    outputs: dict[int, dict[str, tuple[float, Any, bool]]] = {}
    runs_so_far = 0
    steps = probe.start_steps
    chosen: int | None = None
    reason = ""
    stopped_by = ""  # which cap ended a ladder that nothing cleared, in words
    ladder_end = ""  # why the ladder ended, cleared or not, in words
    ladder_cap: str | None = None  # the probe limit that ended it ("max_steps", "minutes"); None: more did not pay
    near = ""  # where it did, the runs that cleared chance as one run but not by the search's margin
    while True:
        say(f"probe: {', '.join(references)} at {steps} steps")
        rung_started = time.monotonic()
        runs = [Run(config=config, seed=spec.seed, output_dir=str(root / f"probe-{name}-{steps}"), steps=steps)
                for name, config in references.items()]
        results = run_on(runner, spec, runs, default_steps=steps)
        runs_so_far += len(runs)
        if level is None:
            level, targets = _untouched_reference(study, results)
        rung = Rung(steps, time.monotonic() - rung_started)
        rung.search_trials = expected_search_trials(spec, runner.capacity, len(runs), rung.seconds)
        outputs[steps] = {}
        for (name, config), result in zip(references.items(), results):
            rung.results[name] = _judged(study, spec, name, steps, result, config, level, targets,
                                         max(runs_so_far, rung.search_trials), runs_so_far)
            if "failed" not in rung.results[name]:
                outputs[steps][name] = (rung.results[name][metric], compared(result.predictions, targets),
                                        bool(rung.results[name]["above"]))
        rungs.append(rung)
        say("probe: " + "; ".join(f"{n} {r[metric]:.4f}{_verdict(r)}" if "failed" not in r else f"{n} failed"
                                  for n, r in rung.results.items()) + f" at {steps} steps")
        previous = steps // 2
        if _cleared(outputs, steps) and _cleared(outputs, previous) and not _paid(
                outputs[steps], outputs[previous], metric, maximize, level, targets, probe.min_gain):
            chosen, reason = previous, f"doubling to {steps} steps did not pay beyond noise for any reference"
            ladder_end = reason
            break
        elapsed = time.monotonic() - started
        next_cost = 2.2 * rung.seconds  # twice the steps, plus set-up
        if probe.confirm:
            # Should the next rung be chosen, its learning is trained again with another seed before the search
            # starts (its references side by side, as the rung trains them, so no longer than the rung): the
            # climb reserves that repeat, and the probe keeps to its minutes instead of overrunning by one repeat.
            next_cost *= 2
        if steps * 2 > probe.max_steps or elapsed + next_cost > 60 * probe.minutes:
            if steps * 2 > probe.max_steps:
                ladder_cap, limit_reached = "max_steps", "probe.max_steps reached"
            else:  # what the time cap kept from running, so the message can say how far to raise it
                ladder_cap = "minutes"
                minutes = math.ceil((elapsed + next_cost) / 60)
                repeat = " and its repeat with another seed" if probe.confirm else ""
                limit_reached = (f"probe.minutes reached: the next rung, {steps * 2} steps{repeat}, would have "
                                 f"ended after about {minutes} minute{'' if minutes == 1 else 's'}")
            ladder_end = limit_reached
            cleared = [s for s in outputs if _cleared(outputs, s)]
            if cleared:
                chosen = max(cleared)
                reason = f"{limit_reached}; the last rung that cleared chance"
            else:
                near = _near_misses(rungs, metric)  # the stop message below names them too
                reason = (f"{limit_reached}, and no reference cleared chance"
                          + (f" by the margin a search's best point needs ({near})" if near else ""))
                stopped_by = limit_reached
            break
        steps *= 2
    unconfirmed: list[str] = []  # each rung whose learning did not repeat, in words
    if chosen is not None and probe.confirm:
        # the chosen rung first; failing that, the longer rungs that cleared (a doubling that did not pay may still
        # learn more reliably)
        for candidate in sorted(s for s in outputs if _cleared(outputs, s) and s >= chosen):
            rung = next(r for r in rungs if r.steps == candidate)
            runs_so_far, confirmed = _confirm(study, spec, runner, rung, references, root, level, targets,
                                              runs_so_far, say)
            if confirmed:
                if candidate != chosen:
                    reason = f"{reason}; {chosen} steps did not learn again with another seed, {candidate} did"
                chosen = candidate
                break
            unconfirmed.append(_unconfirmed_text(rung, metric, spec.seed))
        else:
            chosen, reason = None, f"{reason}, but not again with another seed ({'; '.join(unconfirmed)})"
    outcome = ProbeOutcome(chosen, reason, time.monotonic() - started, rungs)
    study.set_user_attr(storage.PROBE, outcome.to_json())
    if chosen is None:
        tried = ", ".join(references)
        if unconfirmed:
            raise NothingLearnable(
                f"budget.steps_per_trial: auto: {'; '.join(unconfirmed)}, so learning at that fidelity is one "
                "seed's luck and the search's trials, each with its own seed, would sit at chance; the search "
                f"stopped before spending its budget (the ladder ended at {rungs[-1].steps} steps: {ladder_end}). "
                f"Try {_ADVICE_AFTER[ladder_cap]}; `autopeft search show {study.study_name}` lists the probe runs")
        if near:
            raise NothingLearnable(
                f"budget.steps_per_trial: auto: no reference configuration ({tried}) learned the task by the margin "
                f"a search's best point needs, in {outcome.seconds / 60:.1f} minutes, up to {rungs[-1].steps} steps "
                f"({stopped_by}): {near}. The search's best would be one of many trials and could not be told "
                "from luck; the search stopped before spending its budget. Try more data, another model, a larger "
                "probe (budget.probe.max_steps, budget.probe.minutes), or fewer trials, whose best faces a lower "
                f"bar (budget.trials, budget.wall_clock_minutes); `autopeft search show {study.study_name}` lists "
                "the probe runs")
        raise NothingLearnable(
            f"budget.steps_per_trial: auto: no reference configuration ({tried}) learned the task above chance "
            f"in {outcome.seconds / 60:.1f} minutes, up to {rungs[-1].steps} steps ({stopped_by}); the search "
            f"stopped before spending its budget. Try more data, another model, or a larger probe "
            f"(budget.probe.max_steps, budget.probe.minutes); `autopeft search show {study.study_name}` lists the "
            "probe runs")
    return outcome


# What to try when learning did not repeat with another seed, by the limit that ended the ladder: a cap the user
# can raise, or (None) more steps that did not pay, where more of them is not the first thing to try
_ADVICE_AFTER = {"max_steps": "more data, another model, or a probe that may climb further (budget.probe.max_steps)",
                 "minutes": "more data, another model, or a probe given the minutes it names (budget.probe.minutes)",
                 None: "more data or another model (more steps did not pay beyond noise)"}


def _confirm(study: optuna.Study, spec: SearchSpec, runner: Executor, rung: Rung,
             references: dict[str, dict[str, Any]], root: Path, level: ChanceLevel, targets: EvalTargets,
             runs_so_far: int, say: Callable[[str], None]) -> tuple[int, bool]:
    """Train the rung's references that cleared chance again with another seed, best first, until one clears it
    again; each result goes into ``rung.results[name]["again"]``. Returns (probe runs so far, whether one did).

    As many repeats run side by side as the runner has slots (a rung already trains its references so): where the
    best one does not repeat, the next one's repeat has run meanwhile, and one batch takes no longer than the rung
    did (the time the ladder reserved for it)."""
    metric = spec.task_metric
    maximize = spec.task_metric_direction == "maximize"
    seed = spec.seed + 1
    cleared = sorted((name for name, r in rung.results.items() if r.get("above")),
                     key=lambda name: rung.results[name][metric], reverse=maximize)
    batch_size = max(1, runner.capacity)
    for start in range(0, len(cleared), batch_size):
        batch = cleared[start:start + batch_size]
        say(f"probe: {', '.join(batch)} again at {rung.steps} steps with seed {seed}")
        results = run_on(runner, spec, [Run(config=references[name], seed=seed, steps=rung.steps,
                                             output_dir=str(root / f"probe-{name}-{rung.steps}-seed{seed}"))
                                         for name in batch], default_steps=rung.steps)
        repeated = False
        for name, result in zip(batch, results):
            runs_so_far += 1
            again = _judged(study, spec, name, rung.steps, result, references[name], level, targets,
                            max(runs_so_far, rung.search_trials), runs_so_far, seed)
            rung.results[name]["again"] = {"seed": seed, **again}
            if "failed" in again:
                continue
            say(f"probe: {name} {again[metric]:.4f}{'' if again['above'] else ' (at chance)'} with seed {seed}")
            repeated = repeated or again["above"]
        if repeated:
            return runs_so_far, True
    return runs_so_far, False


def _untouched_reference(study: optuna.Study, results: list[TrialResult]) -> tuple[ChanceLevel, EvalTargets]:
    """The untouched model's loss as the probe's chance level, from the first rung's results (stored with the
    search as every result that carries it is)."""
    for result in results:
        remember_untouched(study, result)
    level = ChanceLevel.from_json(study.user_attrs.get(storage.CHANCE))
    targets = EvalTargets.from_json(study.user_attrs.get(storage.EVAL_TARGETS))
    if level is None or targets is None:
        reasons = "; ".join(r.fail_reason or "" for r in results if not r.ok)
        raise UserError("budget.steps_per_trial: auto could not measure the untouched model's loss, the level a "
                        f"search on eval_loss must clear: every probe run failed ({reasons})")
    return level, targets


def _judged(study: optuna.Study, spec: SearchSpec, name: str, steps: int, result: TrialResult,
            config: dict[str, Any], level: ChanceLevel, targets: EvalTargets, trials: int, runs_so_far: int,
            seed: int | None = None) -> dict[str, Any]:
    """Store one probe run and test it against chance corrected for ``trials`` (the search's, or the probe runs
    so far): {"trial", metric, "bar", "above"}, with "alone_bar" where the run clears chance corrected only for
    the probe's own runs (it learned, too little for a search to show); or {"failed"}."""
    if not result.ok:
        return {"failed": result.fail_reason}
    metric = spec.task_metric
    maximize = spec.task_metric_direction == "maximize"
    number = _store(study, spec, name, steps, result, config, seed)
    value = float(result.measurements[metric])
    predicted = compared(result.predictions, targets)
    test = None if predicted is None else chance_test(metric, maximize, value, predicted, targets, level, trials,
                                                      seed=number)
    if test is None:  # a user's metric this process cannot resample: never counted as learned
        return {"trial": number, metric: value, "bar": None, "above": False}
    judged = {"trial": number, metric: value, "bar": test.bar, "above": test.above}
    if not test.above and trials > runs_so_far:
        alone = chance_test(metric, maximize, value, predicted, targets, level, runs_so_far, seed=number)
        if alone is not None and alone.above:
            judged["alone_bar"] = alone.bar
    return judged


def _verdict(result: dict[str, Any]) -> str:
    """What the progress line adds to a reference's value: nothing when it learned, else where it fell short."""
    if result["above"]:
        return ""
    return " (under the search's bar)" if "alone_bar" in result else " (at chance)"


def _near_misses(rungs: list[Rung], metric: str) -> str:
    """The runs that cleared chance as one run but not by the search's margin, in words ("" for none):
    "full 0.5848 at 128 steps cleared chance as one run (bar 0.5821), not the 0.5892 that the best of about 12
    searched trials needs"."""
    parts = []
    for rung in rungs:
        for name, result in rung.results.items():
            if "alone_bar" in result:
                parts.append(f"{name} {result[metric]:.4f} at {rung.steps} steps cleared chance as one run (bar "
                             f"{result['alone_bar']:.4f}), not the {result['bar']:.4f} that the best of about "
                             f"{rung.search_trials} searched trials needs")
    return "; ".join(parts)


def learned(result: dict[str, Any]) -> bool:
    """Whether a reference's result at a rung counts as learning: above chance, and again with another seed
    where it was tried again."""
    return bool(result.get("above")) and (result.get("again") or {}).get("above", True)


def _unconfirmed_text(rung: Rung, metric: str, seed: int) -> str:
    """"full cleared chance at 256 steps with seed 0 (0.6460) but not with seed 1 (0.6310)"."""
    parts = []
    for name, result in rung.results.items():
        again = result.get("again")
        if not result.get("above") or again is None:
            continue
        second = f"{again[metric]:.4f}" if metric in again else "failed"
        parts.append(f"{name} cleared chance at {rung.steps} steps with seed {seed} ({result[metric]:.4f}) but not "
                     f"with seed {again['seed']} ({second})")
    return "; ".join(parts)


def queue_learning_references(study: optuna.Study, spec: SearchSpec, space: SearchSpace,
                              outcome: ProbeOutcome) -> list[str]:
    """Queue the references that learned the task at the chosen steps as the search's first trials (best first,
    where the space can draw them, a third of the budget at most); returns their names.

    The probe has just shown that these configurations learn at this fidelity, so the search starts from a point
    known to learn instead of finding one by chance: on QNLI a 20-minute search at 512 steps had 18 trials, and
    where its front stops short of full fine-tuning, a large LoRA that learned is its best anchor. A reference the
    space cannot draw is queued as its stand-in (STAND_INS: full fine-tuning as every layer fine-tuned). Each is
    trained again as a search trial (the probe's own runs stay outside the front), marked with the probe run it
    repeats.
    """
    rung = next((r for r in outcome.rungs if r.steps == outcome.chosen), None)
    if rung is None or not spec.budget.probe.seed_search:
        return []
    maximize = spec.task_metric_direction == "maximize"
    learning = sorted(((name, result) for name, result in rung.results.items() if learned(result)),
                      key=lambda item: item[1][spec.task_metric], reverse=maximize)
    references = _references(spec)
    queued: list[str] = []
    limit = max(1, spec.budget.trials // 3)  # as a warm start's first proposals: the search must still explore
    for name, result in learning:
        if len(queued) >= limit:
            break
        found = _point_of_space(space, name, references[name])
        if found is None:
            continue
        params, stand_in = found
        origin = {"probe": name, "trial": result["trial"], "search": study.study_name}
        if stand_in is not None:
            origin["as"] = stand_in
        study.enqueue_trial(params, user_attrs={storage.WARM_START: origin}, skip_if_exists=False)
        queued.append(name if stand_in is None else f"{name} (as {stand_in})")
    return queued


def _point_of_space(space: SearchSpace, name: str, reference: dict[str, Any]
                    ) -> tuple[dict[str, Any], str | None] | None:
    """The sampler's parameters of ``reference`` in ``space``, or of its first stand-in the space can draw (with
    the stand-in's method); None when the space holds neither."""
    params = space.params_for(reference)
    if params is not None:
        return params, None
    for stand_in in STAND_INS.get(name, []):
        params = space.params_for(stand_in)
        if params is not None:
            return params, stand_in["method"]
    return None


def _cleared(outputs: dict[int, dict[str, tuple[float, Any, bool]]], steps: int) -> bool:
    """Whether a reference cleared chance at the rung of ``steps`` (False for a rung not run)."""
    return any(above for _, _, above in outputs.get(steps, {}).values())


def _paid(longer: dict[str, tuple[float, Any, bool]], shorter: dict[str, tuple[float, Any, bool]], metric: str,
          maximize: bool, level: ChanceLevel, targets: EvalTargets, min_gain: float) -> bool:
    """Whether doubling the steps paid for some reference that cleared chance at the longer rung: it is better
    than it was itself at the shorter rung beyond noise, and by at least ``min_gain`` of its distance above chance
    there (a reference at chance before has almost no distance to beat, so clearing chance now pays when it is
    beyond noise).

    The one-sided paired bootstrap runs at PAIRED_ALPHA split over the references compared (Bonferroni): two
    references get two chances to look better by luck, and the ladder should not climb on either."""
    cleared = [name for name, (_, _, above) in longer.items() if above and name in shorter]
    sign = 1.0 if maximize else -1.0
    chance = level.metrics[metric]
    for name in cleared:
        value, predictions, _ = longer[name]
        before, before_predictions, _ = shorter[name]
        gain = (value - before) * sign
        if gain < min_gain * max(0.0, (before - chance) * sign) or math.isclose(gain, 0.0):
            continue
        if significantly_better(metric, maximize, predictions, before_predictions, targets,
                                alpha=PAIRED_ALPHA / len(cleared)):
            return True
    return False
