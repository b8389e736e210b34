"""What a model that learned nothing scores, and which trials are not clearly better than that.

A search always returns a front, even where no configuration learns the task: on a small or skewed eval set at low
fidelity the "front" is then the luckiest draws of noise, and it looks just like a real one. Two references:

- the **chance level**: the task's own metrics on the constant prediction (the majority label, the most common
  set of labels, the most common tag, the mean target, the most common answer), measured on the eval split and
  stored with the search;
- a **permutation null** per trial: the trial's own eval predictions (stored with it, autopeft/store/predictions.py)
  scored against the gold values shuffled a few hundred times. It keeps what the trial predicts and breaks only
  its link to the examples, so it is the metric's noise for exactly that trial, for every metric (Matthews, F1,
  Spearman and MSE have no simple formula). A trial is above chance when its metric beats both the chance level
  and the null's mean by z null standard deviations, with z the one-sided 5% quantile corrected for the number of
  completed trials (Bonferroni: the front is a maximum over all of them);
- for a search scored by its loss (records without gold answers), the **untouched model**: the base's loss on each
  eval record, measured by the workers (autopeft/results/untouched_model.py). A trial learned something when its
  mean token loss is below the untouched model's by z standard deviations of their paired per-record difference.

A point that clears its bar by less than one standard deviation of that noise is as likely a false alarm as not
(RTE: a front point 1 point above its bar, retrained with three new seeds, averaged 0.522 against chance 0.527).
Such a point can be retrained with new seeds (autopeft/results/confirm.py, after every search by default:
``budget.confirm_near_chance``); it then counts as above chance only if the mean of the new seeds beats the chance
level by a z margin of that mean (:func:`seeds_test`): the new seeds were not selected from many, so the correction
for the number of trials no longer applies, and the search's own seed, which was (the winner's curse), is left out.

Two front points are compared with a paired bootstrap on the same examples: a point that a cheaper front point
matches within noise (not better at the one-sided 5% level) is marked, and ``--pick`` and the knee skip it.
Trials stored without predictions fall back to the binomial margin of accuracy (the only metric with one).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

import numpy as np

from autopeft.results.resampled_metrics import answer_ids, answer_key, metric_rows, paired_metric_rows
from autopeft.store.predictions import ANSWERS, LOSSES, EvalTargets
from autopeft.tasks.tag_spans import NO_WORD, tag_metrics, tag_scheme
from autopeft.tasks.user_metrics import bootstrap, constant_levels, is_custom, permutation_null, scorable

if TYPE_CHECKING:
    from autopeft.tasks.data import TaskData

FALSE_ALARM = 0.05  # chance that a search of pure noise shows a point "above chance" (over all its trials)
NULL_ROUNDS = 256  # permutations per trial: the null's mean and spread, not its far tail, are estimated
BOOTSTRAP_ROUNDS = 400  # resamples per paired comparison of two front points
PAIRED_ALPHA = 0.05  # one-sided level at which a costlier point counts as better than a cheaper one
NEAR_BAR = 1.0  # standard deviations of noise above its bar within which a one-seed point is retrained
# The least share of the untouched model's loss a trained model must remove to count as having learned something
# (paired_loss_test): a practical floor beside the statistical margin
MIN_LOSS_GAIN = 0.01
_TOLERANCE = 1e-9  # a value equal to its bar (the constant prediction itself) is not above it


@dataclass(frozen=True)
class ChanceLevel:
    """The task metrics of the constant prediction on the eval set."""

    metrics: dict[str, float]
    examples: int
    predicts: str  # what the constant prediction is, in words

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, stored: dict[str, Any] | None) -> ChanceLevel | None:
        return None if not stored else cls(**stored)

    def margin(self, metric: str, trials: int) -> float | None:
        """The binomial margin of accuracy above chance after ``trials`` completed trials: the fallback for trials
        stored without predictions (None for every other metric)."""
        if metric != "accuracy" or metric not in self.metrics or self.examples == 0:
            return None
        level = self.metrics[metric]
        return bonferroni_z(trials) * float(np.sqrt(level * (1 - level) / self.examples))


def bonferroni_z(trials: int) -> float:
    return NormalDist().inv_cdf(1 - FALSE_ALARM / max(trials, 1))


def chance_level(data: TaskData) -> ChanceLevel | None:
    """Measured on the eval split with the workers' own metric functions, and with the function of every user's
    metric registered here (autopeft/plugins.py) on the same constant prediction."""
    from workers.training import classification_metrics, multi_label_metrics, regression_metrics

    split = data.eval
    if data.task == "causal-lm":
        if not split.answers:
            return None
        keys = [answer_key(a) for a in split.answers]
        # The first-met of equally common answers: a set's order would change with each process's string hashing.
        modal, count = Counter(keys).most_common(1)[0]
        share = count / len(keys)
        shown = next(a.strip() for a, k in zip(split.answers, keys) if k == modal)
        return _with_custom(data, ChanceLevel({"answer_accuracy": share}, len(keys), f"always {shown!r}"),
                            [shown] * len(keys))
    labels = split.labels
    if labels is None or len(labels) == 0:
        return None
    if data.task == "multiple-choice":
        # the option at the position most often right (the first, the second, ...), every question
        counts = np.bincount(labels)
        modal = int(np.argmax(counts))
        constant = np.full(len(labels), modal)
        return _with_custom(data, ChanceLevel({"accuracy": float(counts[modal] / len(labels))}, len(labels),
                                              f"always the {_ORDINALS[modal]} option" if modal < len(_ORDINALS)
                                              else f"always option {modal + 1}"), constant)
    if data.task == "sequence-classification":
        counts = np.bincount(labels, minlength=len(data.label_names))
        majority = int(np.argmax(counts))
        constant = np.full(len(labels), majority)
        metrics = classification_metrics(constant, labels, len(data.label_names), positive=data.f1_positive)
        return _with_custom(data, ChanceLevel(metrics, len(labels), f"always {data.label_names[majority]!r}"),
                            constant)
    if data.task == "multi-label-classification":
        # the most common set of labels (the majority label's counterpart; often no label at all), every row
        rows, counts = np.unique(labels.astype(np.uint8), axis=0, return_counts=True)
        modal = rows[int(np.argmax(counts))]
        constant = np.tile(modal, (len(labels), 1))
        named = [data.label_names[i] for i in np.flatnonzero(modal)]
        predicts = f"always {{{', '.join(named)}}}" if named else "always no label"
        return _with_custom(data, ChanceLevel(multi_label_metrics(constant, labels), len(labels), predicts),
                            constant)
    if data.task == "token-classification":
        # the most common tag (often O: no entity) for every word
        counts = np.bincount(labels[labels != NO_WORD], minlength=len(data.label_names))
        modal = int(np.argmax(counts))
        constant = np.where(labels == NO_WORD, NO_WORD, modal)
        metrics = tag_metrics(constant, labels, tag_scheme(data.label_names))
        return _with_custom(data, ChanceLevel(metrics, len(labels), f"always {data.label_names[modal]!r}"), constant)
    mean = float(np.mean(labels))
    constant = np.full(len(labels), mean)
    return _with_custom(data, ChanceLevel(regression_metrics(constant, labels), len(labels),
                                          f"always the mean target {mean:.4g}"), constant)


_ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth")


def _with_custom(data: TaskData, level: ChanceLevel, constant: np.ndarray | list[str]) -> ChanceLevel:
    """``level`` with the user's metrics of the constant prediction ``constant`` (in the stored form of
    predictions) added, for those registered in this process."""
    targets = eval_targets(data)
    custom = {} if targets is None else constant_levels(data.task, constant, targets)
    return level if not custom else ChanceLevel({**level.metrics, **custom}, level.examples, level.predicts)


def eval_targets(data: TaskData) -> EvalTargets | None:
    """The gold side of the eval split, stored with the search so the noise model needs only the database."""
    from autopeft.store.predictions import LABEL_SETS, LABELS, TAGS, VALUES

    split = data.eval
    if data.task == "causal-lm":
        return EvalTargets(ANSWERS, list(split.answers)) if split.answers else None
    if split.labels is None:
        return None
    if data.task == "sequence-classification":
        return EvalTargets(LABELS, split.labels, len(data.label_names), data.f1_positive,
                           tuple(data.label_names))
    if data.task == "multiple-choice":  # the right option's position among the question's options
        widest = int(np.diff(split.option_starts).max())  # a user's metric gets positions as text: "0", "1", ...
        return EvalTargets(LABELS, split.labels, widest, label_names=tuple(str(i) for i in range(widest)))
    if data.task == "multi-label-classification":
        return EvalTargets(LABEL_SETS, split.labels.astype(np.int64), len(data.label_names),
                           label_names=tuple(data.label_names))
    if data.task == "token-classification":
        return EvalTargets(TAGS, split.labels, len(data.label_names), label_names=tuple(data.label_names))
    return EvalTargets(VALUES, split.labels)


@dataclass(frozen=True)
class ChanceTest:
    """One trial's task metric against chance: the value it had to pass (``bar``: above it for a maximised metric,
    below for a minimised one), whether it did, and how the bar was found."""

    value: float
    bar: float
    above: bool
    # "permutation" (from the trial's predictions), "paired" (a loss against the untouched model's, record by
    # record), "binomial" (accuracy without predictions) or "confirmed" (the mean of new seeds, ``value``, against
    # chance: seeds_test)
    method: str
    # one standard deviation of one run's metric under chance (the null's, or the binomial one; for "confirmed"
    # the larger of that and the seeds' own spread)
    noise: float = 0.0
    seeds: int = 1  # the runs ``value`` is the mean of
    # where chance sits before any margin: the null's mean or the constant prediction's score, whichever is on the
    # far side for this metric (the constant's score alone for the binomial test)
    centre: float = 0.0

    @property
    def near_bar(self) -> bool:
        """Above the bar by less than one standard deviation of noise, on the search's one seed: as likely a false
        alarm as not, so worth new seeds before it is trusted."""
        return self.above and self.method != "confirmed" and abs(self.value - self.bar) < NEAR_BAR * self.noise

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "near_bar": self.near_bar}


def _aligned(predicted: np.ndarray | list[str], targets: EvalTargets) -> tuple[np.ndarray, np.ndarray]:
    """Predictions and gold as arrays the resampled metrics take (answers become ids of one vocabulary)."""
    if targets.kind == ANSWERS:
        ids = answer_ids(list(predicted), list(targets.gold))
        return ids[0], ids[1]
    return np.asarray(predicted), np.asarray(targets.gold)


def permutation_test(metric: str, maximize: bool, value: float, predicted: np.ndarray | list[str],
                     targets: EvalTargets, level: ChanceLevel | None, trials: int, seed: int = 0) -> ChanceTest | None:
    """The trial's ``value`` of ``metric`` against the chance level and its own permutation null; None for a
    user's metric that cannot be computed in this process (:func:`can_resample`)."""
    if len(predicted) != len(targets):
        raise ValueError(f"{len(predicted)} predictions for {len(targets)} eval examples")
    null = _permutation_null(metric, predicted, targets, seed)
    if null is None:
        return None
    noise, mean = float(null.std()), float(null.mean())
    spread = bonferroni_z(trials) * noise
    constant = None if level is None else level.metrics.get(metric)
    if maximize:
        bar = mean + spread
        bar = bar if constant is None else max(bar, constant)
        centre = mean if constant is None else max(mean, constant)
        return ChanceTest(value, bar, value > bar + _TOLERANCE, "permutation", noise, centre=centre)
    bar = mean - spread
    bar = bar if constant is None else min(bar, constant)
    centre = mean if constant is None else min(mean, constant)
    return ChanceTest(value, bar, value < bar - _TOLERANCE, "permutation", noise, centre=centre)


def paired_loss_test(value: float, losses: np.ndarray, targets: EvalTargets, trials: int,
                     maximize: bool = False) -> ChanceTest:
    """A trial's mean token loss against the untouched model's on the same records
    (autopeft/results/untouched_model.py): below it by a z margin of the paired difference's noise, z corrected for
    ``trials`` as for every metric.

    Each record's difference (untouched minus trained summed loss) removes what makes a record hard for both
    models, so the noise is that of the difference alone: over n records with T tokens in all, one standard
    deviation of the difference in mean token loss is sqrt(n) * sd(per-record difference) / T.

    Pairing makes the test sensitive to changes no one would call learning: six steps of LoRA on a random tiny
    decoder lowered every record's loss a little, 0.06% in all, twenty times the paired noise. So a loss must also
    lie MIN_LOSS_GAIN below the untouched model's (as a share of it) to count."""
    reference = np.asarray(targets.reference, dtype=np.float64)
    tokens = float(np.sum(targets.gold))
    centre = float(reference.sum()) / max(tokens, 1.0)
    difference = reference - np.asarray(losses, dtype=np.float64)
    spread = float(np.std(difference, ddof=1)) if len(difference) > 1 else 0.0
    noise = float(np.sqrt(len(difference))) * spread / max(tokens, 1.0)
    margin = max(bonferroni_z(trials) * noise, MIN_LOSS_GAIN * abs(centre))
    if maximize:  # a loss is minimised; kept symmetric for a user who says otherwise
        return ChanceTest(value, centre + margin, value > centre + margin + _TOLERANCE, "paired", noise,
                          centre=centre)
    return ChanceTest(value, centre - margin, value < centre - margin - _TOLERANCE, "paired", noise, centre=centre)


def chance_test(metric: str, maximize: bool, value: float, predicted: np.ndarray | list[str], targets: EvalTargets,
                level: ChanceLevel | None, trials: int, seed: int = 0) -> ChanceTest | None:
    """A trial's ``value`` against chance from its stored predictions: paired against the untouched model where
    the predictions are per-record losses, against its permutation null otherwise."""
    if len(predicted) != len(targets):
        raise ValueError(f"{len(predicted)} predictions for {len(targets)} eval examples")
    if targets.kind == LOSSES:
        return paired_loss_test(value, np.asarray(predicted), targets, trials, maximize)
    return permutation_test(metric, maximize, value, predicted, targets, level, trials, seed)


def seeds_test(searched: ChanceTest, values: list[float], maximize: bool) -> ChanceTest:
    """A retrained point's new seeds against chance: their mean must beat where chance sits (``searched.centre``,
    from the point's own search test) by a one-sided 5% z margin of a mean of ``len(values)`` runs, uncorrected (the
    new seeds were not selected from many).

    The spread of one run is the larger of the seeds' own and the search test's noise: that noise holds the eval
    set's only, while a configuration at chance also moves from seed to seed (RTE: 0.527, 0.574, 0.466 against a
    null spread of 0.03), and two or three seeds estimate their own spread poorly."""
    mean = float(np.mean(values))
    per_run = max(searched.noise, float(np.std(values, ddof=1)) if len(values) > 1 else 0.0)
    margin = bonferroni_z(1) * per_run / float(np.sqrt(len(values)))
    if searched.method == "paired":  # a loss: the new seeds must clear the same practical floor
        margin = max(margin, MIN_LOSS_GAIN * abs(searched.centre))
    bar = searched.centre + margin if maximize else searched.centre - margin
    above = mean > bar + _TOLERANCE if maximize else mean < bar - _TOLERANCE
    return ChanceTest(mean, bar, above, "confirmed", per_run, len(values), searched.centre)


def can_resample(metric: str, targets: EvalTargets) -> bool:
    """Whether the null and the bootstrap of ``metric`` can be computed here: always for a built-in metric; for a
    user's metric only where its function is registered in this process (a dashboard without the plugin says
    "untested" instead)."""
    return not is_custom(metric) or scorable(metric, targets)


def _permutation_null(metric: str, predicted: np.ndarray | list[str], targets: EvalTargets,
                      seed: int) -> np.ndarray | None:
    """The metric over NULL_ROUNDS shufflings of the gold values. A user's metric is called once per shuffling,
    on the very shufflings the built-ins use (``permuted`` draws the same swaps whatever the values), so a user's
    accuracy gets the built-in accuracy's null."""
    rng = np.random.default_rng(seed)
    if is_custom(metric):
        orders = rng.permuted(np.tile(np.arange(len(targets)), (NULL_ROUNDS, 1)), axis=1)
        return permutation_null(metric, predicted, targets, orders)
    predictions, gold = _aligned(predicted, targets)
    # a 0/1 row of labels or a sentence's tags per example: whole rows change places (the same swaps as above)
    if gold.ndim == 2:
        orders = rng.permuted(np.tile(np.arange(len(gold)), (NULL_ROUNDS, 1)), axis=1)
        in_place = np.broadcast_to(np.arange(len(gold)), orders.shape)
        return paired_metric_rows(targets.kind, predictions, gold, in_place, orders,
                                  label_names=targets.label_names)[metric]
    shuffled = rng.permuted(np.tile(gold, (NULL_ROUNDS, 1)), axis=1)
    return metric_rows(targets.kind, np.tile(predictions, (NULL_ROUNDS, 1)), shuffled, targets.num_labels,
                       targets.positive)[metric]


def binomial_test(value: float, level: ChanceLevel, trials: int) -> ChanceTest | None:
    """Accuracy against the majority share plus its binomial margin (trials stored without predictions)."""
    margin = level.margin("accuracy", trials)
    if margin is None:
        return None
    bar = level.metrics["accuracy"] + margin
    return ChanceTest(value, bar, value >= bar, "binomial", margin / bonferroni_z(trials),
                      centre=level.metrics["accuracy"])


def significantly_better(metric: str, maximize: bool, first: np.ndarray | list[str],
                         second: np.ndarray | list[str], targets: EvalTargets, seed: int = 0,
                         alpha: float = PAIRED_ALPHA) -> bool:
    """Whether ``first``'s predictions score better than ``second``'s on ``metric`` beyond the noise of the eval
    set: a paired bootstrap (the same resampled examples for both), one-sided at ``alpha`` (PAIRED_ALPHA, or less
    where the caller makes several comparisons). A user's metric that fails on a resample cannot show the two
    equal, so ``first`` is then taken as better (kept)."""
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, len(targets), size=(BOOTSTRAP_ROUNDS, len(targets)))
    if is_custom(metric):
        score = [bootstrap(metric, p, targets, rows) for p in (first, second)]
        if score[0] is None or score[1] is None:
            return True
    else:
        if targets.kind == ANSWERS:  # one vocabulary for both trials' answers and the gold ones
            a, b, gold = answer_ids(list(first), list(second), list(targets.gold))
        else:
            a, b, gold = np.asarray(first), np.asarray(second), np.asarray(targets.gold)
        score = [paired_metric_rows(targets.kind, p, gold, rows, rows, targets.num_labels, targets.positive,
                                    targets.label_names)[metric] for p in (a, b)]
    gain = (score[0] - score[1]) * (1.0 if maximize else -1.0)
    return float(np.quantile(gain, alpha)) > 0.0
