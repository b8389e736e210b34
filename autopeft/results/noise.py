"""A search's front read against its noise: which points are above chance, which a cheaper point matches.

One assessment for every surface — ``search run``'s summary, ``search show``, ``search list``, ``baselines``,
``export`` and ``--pick``, the dashboard — so they all say the same thing about the same search. The statistics
are in autopeft/results/chance.py; this module gathers what they need from the database (the chance level and the gold
values on the study, the predictions on each trial) and applies them to the front and the baselines.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import optuna

from autopeft.results.chance import (
    ChanceLevel,
    ChanceTest,
    binomial_test,
    can_resample,
    chance_test,
    paired_loss_test,
    seeds_test,
    significantly_better,
)
from autopeft.results.pareto import pareto_front
from autopeft.results.untouched_model import reference_from
from autopeft.spec import SearchSpec
from autopeft.store import storage
from autopeft.store.predictions import ANSWERS, LOSSES, EvalTargets, compared, decode, record_losses
from autopeft.store.storage import TrialRecord
from autopeft.tasks.answer_options import answer_words

# What a user can change when nothing learns: said wherever a front is reported as not above chance.
ADVICE = ("more training steps (budget.steps_per_trial, or steps_per_trial: auto to find them), a higher learning "
          "rate, more training data, or another model")


@dataclass
class NoiseReport:
    """The front's points and the baselines against chance, and the front points a cheaper one matches."""

    metric: str
    maximize: bool
    level: ChanceLevel | None
    trials: int  # completed searched trials: the Bonferroni count
    front: list[int]  # the front's trial numbers, in front order
    tests: dict[int, ChanceTest] = field(default_factory=dict)  # front points and baselines that could be tested
    matched_by: dict[int, int] = field(default_factory=dict)  # front point -> the cheaper front point matching it
    # Front points retrained with new seeds at the search's fidelity: the search's own one-seed test, replaced in
    # ``tests`` by the new seeds' verdict (method "confirmed")
    single_seed: dict[int, ChanceTest] = field(default_factory=dict)
    # A decoder scored by its answers: the untouched model's metric (the zero-shot row) and the front points that a
    # paired bootstrap does not find better than its answers on the same records (autopeft/results/untouched_model.py)
    untouched: float | None = None
    no_better_than_untouched: list[int] = field(default_factory=list)
    # ... and its gold responses' loss, with the front points (every searched trial, where nothing learned) whose
    # answers are not above chance or not better than the untouched model's although their loss is clearly below
    # its (paired test): training taught the responses' form, not the answers; the advice differs from "nothing
    # learned"
    untouched_loss: float | None = None
    form_not_answers: dict[int, float] = field(default_factory=dict)  # trial -> its eval_loss
    # A decoder whose answers are read from generated text: the front points (and apart, the untouched model) at
    # least half of whose responses stated none of the task's answers, with how many; such a score counts
    # unreadable responses as wrong answers (see ``_unanswered``)
    unanswered: dict[int, int] = field(default_factory=dict)
    untouched_unanswered: int | None = None
    answer_records: int = 0
    closed_answers: list[str] | None = None  # the task's answers where they are a closed set options can score

    @property
    def at_chance(self) -> list[int]:
        """Front points whose metric is not clearly above chance."""
        return [n for n in self.front if n in self.tests and not self.tests[n].above]

    @property
    def nothing_learned(self) -> bool:
        """Every front point was tested and none is above chance: the front is noise, not a result."""
        return bool(self.front) and all(n in self.tests and not self.tests[n].above for n in self.front)

    def is_at_chance(self, number: int) -> bool:
        return number in self.tests and not self.tests[number].above

    @property
    def near_bar(self) -> list[int]:
        """Front points above chance by less than one standard deviation of noise on one seed, not yet retrained:
        as likely false alarms as not (autopeft/results/chance.py)."""
        return [n for n in self.front if n in self.tests and self.tests[n].near_bar]

    def to_json(self) -> dict[str, Any]:
        level = self.level
        return {
            "metric": self.metric,
            "maximize": self.maximize,
            "chance": None if level is None else level.metrics.get(self.metric),
            "predicts": None if level is None else level.predicts,
            "examples": None if level is None else level.examples,
            "trials": self.trials,
            "tests": {str(n): t.to_json() for n, t in self.tests.items()},
            "not_above_chance": self.at_chance,
            "nothing_learned": self.nothing_learned,
            "near_bar": self.near_bar,
            "confirmed": {str(n): self.tests[n].to_json() for n in self.single_seed},
            "matched_within_noise": {str(n): q for n, q in self.matched_by.items()},
            "untouched": self.untouched,
            "no_better_than_untouched": self.no_better_than_untouched,
            "untouched_loss": self.untouched_loss,
            "form_not_answers": {str(n): loss for n, loss in self.form_not_answers.items()},
            "unanswered": {str(n): count for n, count in self.unanswered.items()},
            "untouched_unanswered": self.untouched_unanswered,
            "answer_records": self.answer_records,
            "closed_answers": self.closed_answers,
        }


def _predictions(record: TrialRecord, targets: EvalTargets | None):
    return None if not record.predictions else compared(record.predictions, targets)


def assess(study: optuna.Study | Mapping[str, Any], records: list[TrialRecord],
           spec: SearchSpec) -> NoiseReport | None:
    """The search's noise report from its study (or the study's user attributes, as the dashboard reads them);
    None for a search stored without a chance level, or whose task metric the level does not cover."""
    attrs = study.user_attrs if isinstance(study, optuna.Study) else study
    level = ChanceLevel.from_json(attrs.get(storage.CHANCE))
    targets = EvalTargets.from_json(attrs.get(storage.EVAL_TARGETS))
    metric = spec.task_metric
    if level is None or metric not in level.metrics:
        return None
    maximize = spec.task_metric_direction == "maximize"
    front = pareto_front(records, spec)
    trials = sum(1 for r in records if r.state == "COMPLETE" and not r.reference)
    report = NoiseReport(metric, maximize, level, trials, [r.number for r in front])
    tested = front + [r for r in records if r.baseline and r.state == "COMPLETE"]
    for record in tested:
        value = record.measurements.get(metric)
        if value is None:
            continue
        test = _test(record, float(value), metric, maximize, level, targets, trials)
        if test is None:  # a user's metric whose function this process lacks (untested)
            continue
        report.tests[record.number] = test
        values = _retrained(record, metric)
        if values and record.number in report.front:
            report.single_seed[record.number] = test
            report.tests[record.number] = seeds_test(test, values, maximize)
    if targets is not None and can_resample(metric, targets):
        report.matched_by = _matched_by_cheaper(front, spec, metric, maximize, targets)
        _against_untouched(report, attrs.get(storage.UNTOUCHED), front, targets)
        _form_not_answers(report, attrs.get(storage.UNTOUCHED), front, records)
    if targets is not None and targets.kind == ANSWERS and spec.data.answer_scoring == "generate":
        _unanswered(report, attrs.get(storage.UNTOUCHED), front, targets)
    return report


def _unanswered(report: NoiseReport, untouched: dict[str, Any] | None, front: list[TrialRecord],
                targets: EvalTargets) -> None:
    """The front points (and the untouched model) that stated none of the task's answers in at least half of their
    responses. Such a score measures whether the model answers in the records' words as much as whether it knows
    the answer: SmolLM2-135M on Social IQa records ("... is answer3") answered with an option's text or "3" and
    read 0.02–0.04 by generation, where the same adapters scored by likelihood read 0.40 against a chance of
    0.35. Said beside the score, with the fix where the answers form a closed set."""
    gold = list(targets.gold)
    report.answer_records = len(gold)
    report.closed_answers = answer_words(gold)

    def mostly_unread(predictions: Any) -> int | None:
        answers = decode(predictions) if predictions else None
        if answers is None or len(answers) != len(gold):
            return None
        missing = sum(1 for answer in answers if not str(answer).strip())
        return missing if 2 * missing >= len(gold) else None

    if untouched and untouched.get("predictions"):
        report.untouched_unanswered = mostly_unread(untouched["predictions"])
    for record in front:
        missing = mostly_unread(record.predictions)
        if missing is not None:
            report.unanswered[record.number] = missing


def _against_untouched(report: NoiseReport, untouched: dict[str, Any] | None, front: list[TrialRecord],
                       targets: EvalTargets) -> None:
    """For a decoder scored by its answers, the untouched model's metric and the front points not clearly better
    than its answers (paired bootstrap on the same records, one-sided 5%). A search on its loss already reads the
    untouched model as its chance level."""
    if not untouched or targets.kind == LOSSES or report.metric not in untouched.get("metrics", {}):
        return
    reference = decode(untouched["predictions"])
    if len(reference) != len(targets):
        return
    report.untouched = float(untouched["metrics"][report.metric])
    for record in front:
        predicted = _predictions(record, targets)
        if predicted is None or len(predicted) != len(targets):
            continue
        if not significantly_better(report.metric, report.maximize, predicted, reference, targets,
                                    seed=record.number):
            report.no_better_than_untouched.append(record.number)


def _form_not_answers(report: NoiseReport, untouched: dict[str, Any] | None, front: list[TrialRecord],
                      records: list[TrialRecord]) -> None:
    """Where answers did not improve (a front point at chance, or no better than the untouched model), whether
    the gold responses' loss did: each point's per-record losses against the untouched model's, paired
    (autopeft/results/chance.py, ``paired_loss_test``, corrected for the search's trials). A small decoder on a short
    budget often learns the responses' wording ("the correct answer is true") and the label prior, not the task;
    saying so separates that from a search that moved nothing.

    Where nothing learned the answers, every searched trial is read, not the front alone: with all answers at
    chance the front is merely the cheapest trials, and the larger ones it dominates are the likelier to have
    learned the form (on SmolLM2's math records the front was a rank-1 LoRA whose loss moved 0.5%, while a rank-32
    one off the front had halved it)."""
    if report.untouched is None or record_losses(untouched["predictions"]) is None or "tokens" not in untouched:
        return
    try:
        _, targets = reference_from(untouched)
    except ValueError:  # losses and token counts of different eval sets: nothing to pair
        return
    report.untouched_loss = float(untouched["metrics"]["eval_loss"])  # as measured (the stored losses are fp32)
    reference = targets.reference
    read = ([r for r in records if r.state == "COMPLETE" and not r.reference] if report.nothing_learned
            else [r for r in front if r.number in report.no_better_than_untouched or report.is_at_chance(r.number)])
    for record in read:
        losses, value = record_losses(record.predictions), record.measurements.get("eval_loss")
        if losses is None or value is None or len(losses) != len(reference):
            continue
        if paired_loss_test(float(value), losses, targets, max(report.trials, 1)).above:
            report.form_not_answers[record.number] = float(value)


def _test(record: TrialRecord, value: float, metric: str, maximize: bool, level: ChanceLevel,
          targets: EvalTargets | None, trials: int) -> ChanceTest | None:
    """``value`` against chance for this record, with the noise of its own predictions where they are stored
    (the binomial margin of accuracy otherwise), corrected for ``trials``."""
    predicted = _predictions(record, targets)
    if predicted is not None and targets is not None and len(predicted) == len(targets):
        return chance_test(metric, maximize, value, predicted, targets, level, trials, seed=record.number)
    return binomial_test(value, level, trials) if maximize else None


def _retrained(record: TrialRecord, metric: str) -> list[float]:
    """The metric of each new seed where the point was retrained at the search's own fidelity (``autopeft
    confirm`` without --steps, or after the search); a retraining at other steps answers another question and
    leaves the verdict to the search's seed."""
    confirmation = record.confirmation or {}
    if not confirmation.get("at_search_fidelity"):
        return []
    return [float(run["measurements"][metric]) for run in confirmation.get("runs", [])
            if run.get("ok") and metric in (run.get("measurements") or {})]


def _costs(record: TrialRecord, spec: SearchSpec, metric: str) -> list[float]:
    """The record's other objectives as losses (smaller is better)."""
    return [(-1.0 if o.resolved_direction == "maximize" else 1.0) * record.values[o.name]
            for o in spec.objectives if o.name != metric]


def _matched_by_cheaper(front: list[TrialRecord], spec: SearchSpec, metric: str, maximize: bool,
                        targets: EvalTargets) -> dict[int, int]:
    """Front point -> a cheaper front point that costs no more on every other objective and that it does not beat
    beyond noise (paired bootstrap on the same eval examples).

    Points are taken from the cheapest up, and a point is compared only with the cheaper points that were kept (not
    matched themselves): matching is not transitive, and a point within noise of one that is within noise of a
    third may still be clearly better than the third."""
    predicted = {r.number: _predictions(r, targets) for r in front}
    usable = sorted((r for r in front if predicted[r.number] is not None
                     and len(predicted[r.number]) == len(targets)), key=lambda r: _costs(r, spec, metric))
    matched: dict[int, int] = {}
    kept: list[TrialRecord] = []
    for point in usable:
        own = _costs(point, spec, metric)
        cheaper = [q for q in kept if all(c <= o for c, o in zip(_costs(q, spec, metric), own))
                   and _costs(q, spec, metric) != own]
        rival = next((q for q in cheaper if not significantly_better(
            metric, maximize, predicted[point.number], predicted[q.number], targets, seed=point.number)), None)
        if rival is None:
            kept.append(point)
        else:
            matched[point.number] = rival.number
    return matched
