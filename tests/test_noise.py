"""The noise model: resampled metrics equal the workers' own, the permutation test tells learning from luck for every
metric, the paired bootstrap tells two trials apart only when they differ, and predictions survive storage."""

from __future__ import annotations

import numpy as np
import pytest

from autopeft.results.chance import ChanceLevel, ChanceTest, binomial_test, permutation_test, significantly_better
from autopeft.results.resampled_metrics import answer_ids, classification_rows, metric_rows, regression_rows
from autopeft.store.predictions import ANSWERS, LABELS, VALUES, EvalTargets, decode, encode
from workers.tasks import answers_match
from workers.training import classification_metrics, regression_metrics

RNG = np.random.default_rng(7)


@pytest.mark.parametrize("labels", [2, 3, 5])
def test_resampled_classification_metrics_equal_the_workers_row_by_row(labels):
    gold = RNG.integers(0, labels, size=(6, 300))
    predicted = np.where(RNG.random((6, 300)) < 0.6, gold, RNG.integers(0, labels, size=(6, 300)))
    predicted[0] = 0  # a constant row: Matthews and most F1s are 0 there
    rows = classification_rows(predicted, gold, labels)
    for row in range(6):
        expected = classification_metrics(predicted[row], gold[row], labels)
        for name, value in expected.items():
            assert rows[name][row] == pytest.approx(value, abs=1e-12), name
    assert ("f1" in rows) == (labels == 2)


def test_resampled_regression_metrics_equal_the_workers_row_by_row():
    gold = np.round(RNG.normal(size=(4, 200)), 1)  # rounded: ties, which the ranks must average
    predicted = gold + RNG.normal(scale=0.8, size=gold.shape)
    predicted[1] = 0.5  # a constant row: correlations are 0 by definition
    rows = regression_rows(predicted, gold)
    for row in range(4):
        for name, value in regression_metrics(predicted[row], gold[row]).items():
            assert rows[name][row] == pytest.approx(value, abs=1e-9), name


def test_answer_ids_count_equal_answers_as_the_workers_do():
    given, gold = ["12", "12.00001", "True", " b ", "7"], ["12.0", "13", "true", "B", "seven"]
    ids = answer_ids(given, gold)
    rows = metric_rows(ANSWERS, ids[0][None], ids[1][None])
    assert rows["answer_accuracy"][0] == np.mean([answers_match(a, g) for a, g in zip(given, gold)]) == 0.6


@pytest.mark.parametrize("kind,values", [(LABELS, np.array([0, 3, 1, 1, 2])),
                                         (VALUES, np.array([0.25, -1.5, 3.0], dtype=np.float32)),
                                         (ANSWERS, ["true", "17", "answer3"])])
def test_predictions_survive_encoding(kind, values):
    decoded = decode(encode(kind, values))
    assert list(decoded) == list(values)
    targets = EvalTargets(kind, values, num_labels=4, positive=1)
    again = EvalTargets.from_json(targets.to_json())
    assert list(again.gold) == list(values) and again.num_labels == 4


def test_a_large_binary_eval_set_stores_in_about_a_kilobyte():
    stored = encode(LABELS, RNG.integers(0, 2, size=5000))
    assert len(stored["data"]) < 1500


def _classification(n: int = 400, share: float = 0.68):
    gold = (RNG.random(n) < share).astype(np.int64)  # skewed, like a paraphrase task's 68% positives
    majority = int(np.bincount(gold).argmax())
    level = ChanceLevel(classification_metrics(np.full(n, majority), gold, 2), n, f"always '{majority}'")
    return gold, level, EvalTargets(LABELS, gold, num_labels=2, positive=1)


@pytest.mark.parametrize("metric", ["accuracy", "macro_f1", "matthews", "f1"])
def test_the_constant_prediction_is_never_above_chance(metric):
    gold, level, targets = _classification()
    constant = np.full(len(gold), int(np.bincount(gold).argmax()))
    value = classification_metrics(constant, gold, 2)[metric] if metric != "f1" else \
        classification_rows(constant[None], gold[None], 2)["f1"][0]
    test = permutation_test(metric, True, value, constant, targets, level, trials=10)
    assert not test.above


@pytest.mark.parametrize("metric", ["accuracy", "macro_f1", "matthews"])
def test_predictions_unrelated_to_the_examples_are_not_above_chance_and_learned_ones_are(metric):
    gold, level, targets = _classification()
    unrelated = RNG.integers(0, 2, size=len(gold))
    learned = np.where(RNG.random(len(gold)) < 0.85, gold, 1 - gold)  # 85% right
    for predicted, expected in ((unrelated, False), (learned, True)):
        value = classification_metrics(predicted, gold, 2)[metric]
        assert permutation_test(metric, True, value, predicted, targets, level, trials=20).above is expected


def test_the_bar_rises_with_the_number_of_trials_searched():
    gold, level, targets = _classification()
    predicted = np.where(RNG.random(len(gold)) < 0.2, gold, RNG.integers(0, 2, size=len(gold)))
    value = classification_metrics(predicted, gold, 2)["matthews"]
    bars = [permutation_test("matthews", True, value, predicted, targets, level, trials=t).bar for t in (1, 10, 100)]
    assert bars[0] < bars[1] < bars[2]
    assert bars[0] > 0.05  # about z(0.95) / sqrt(400) for Matthews under the null


def test_regression_noise_for_a_maximised_and_a_minimised_metric():
    gold = RNG.normal(size=300)
    level = ChanceLevel(regression_metrics(np.full(300, gold.mean()), gold), 300, "always the mean")
    targets = EvalTargets(VALUES, gold.astype(np.float32))
    noise = RNG.normal(size=300)
    learned = gold + 0.5 * RNG.normal(size=300)
    for predicted, expected in ((noise, False), (learned, True)):
        metrics = regression_metrics(predicted, gold)
        assert permutation_test("spearman", True, metrics["spearman"], predicted, targets, level, 20).above \
            is expected
        mse = permutation_test("mse", False, metrics["mse"], predicted, targets, level, 20)
        assert mse.above is expected
        assert mse.bar <= level.metrics["mse"]  # a minimised metric must beat the mean target's error


def test_answer_accuracy_noise_keeps_the_most_common_answer_as_chance():
    gold = ["true"] * 62 + ["false"] * 38
    level = ChanceLevel({"answer_accuracy": 0.62}, 100, "always 'true'")
    targets = EvalTargets(ANSWERS, gold)
    always_true = ["true"] * 100
    assert not permutation_test("answer_accuracy", True, 0.62, always_true, targets, level, 5).above
    right = [g if i % 10 else ("false" if g == "true" else "true") for i, g in enumerate(gold)]  # 90% right
    assert permutation_test("answer_accuracy", True, 0.9, right, targets, level, 5).above


def test_the_binomial_fallback_for_accuracy_without_predictions():
    level = ChanceLevel({"accuracy": 0.527}, 277, "always 'entailment'")
    assert not binomial_test(0.60, level, 20).above and binomial_test(0.62, level, 20).above  # bar 0.611
    assert binomial_test(0.60, ChanceLevel({"matthews": 0.0}, 277, "x"), 20) is None


def test_the_paired_bootstrap_separates_only_real_differences():
    gold, _, targets = _classification(n=600, share=0.5)
    good = np.where(RNG.random(600) < 0.9, gold, 1 - gold)
    nearly = good.copy()
    nearly[np.flatnonzero(nearly == gold)[:3]] ^= 1  # three examples worse: within noise
    poor = np.where(RNG.random(600) < 0.6, gold, 1 - gold)
    assert significantly_better("accuracy", True, good, poor, targets)
    assert not significantly_better("accuracy", True, good, nearly, targets)
    assert not significantly_better("accuracy", True, poor, good, targets)
    assert not significantly_better("matthews", True, good, good, targets)


def test_matching_is_not_chained_through_a_point_that_was_itself_matched():
    """A (cheap) ≈ B (within noise), B ≈ C, but C is clearly better than A: only B gives way."""
    from autopeft.results.noise import _matched_by_cheaper
    from autopeft.spec import parse_spec
    from autopeft.store.storage import TrialRecord
    from tests.conftest import tiny_spec

    n = 2000
    gold = RNG.integers(0, 2, size=n)
    targets = EvalTargets(LABELS, gold, num_labels=2, positive=1)

    def right_on(share: float, seed: int) -> np.ndarray:
        """Right on a random share of the examples, independently of the other points: paired differences of
        1.5 points are within noise on 2,000 examples, 3 points are not."""
        predicted = 1 - gold
        rows = np.random.default_rng(seed).permutation(n)[: int(share * n)]
        predicted[rows] = gold[rows]
        return predicted

    spec = parse_spec(tiny_spec(__import__("pathlib").Path("/tmp")))
    records = []
    for number, (share, params) in enumerate([(0.70, 1e3), (0.715, 1e4), (0.74, 1e5)]):
        predicted = right_on(share, seed=number)
        records.append(TrialRecord(number=number, state="COMPLETE", config={}, fail_reason=None, adapter_dir=None,
                                   feasible=True, values={"accuracy": share, "trainable_params": params},
                                   measurements={"accuracy": share}, predictions=encode(LABELS, predicted)))
    assert _matched_by_cheaper(records, spec, "accuracy", True, targets) == {1: 0}


def test_a_point_just_above_its_bar_is_near_it_and_a_clear_one_is_not():
    gold, level, targets = _classification(n=400, share=0.5)
    learned = np.where(RNG.random(len(gold)) < 0.85, gold, 1 - gold)
    test = permutation_test("accuracy", True, float((learned == gold).mean()), learned, targets, level, trials=20)
    assert 0.018 < test.noise < 0.032  # accuracy's null spread on 400 balanced examples: 0.5 / sqrt(400) = 0.025
    assert test.above and not test.near_bar
    just = ChanceTest(test.bar + 0.5 * test.noise, test.bar, True, "permutation", test.noise)
    assert just.near_bar and just.to_json()["near_bar"]
    assert not ChanceTest(just.value, just.bar, True, "confirmed", test.noise, seeds=2).near_bar


def _retrained_search(confirmation: dict | None):
    """One front point 6 points above a 50% chance level on 400 examples, retrained as ``confirmation`` says:
    the noise report's attributes, records and spec."""
    from autopeft.spec import parse_spec
    from autopeft.store import storage
    from autopeft.store.storage import TrialRecord
    from tests.conftest import tiny_spec

    gold = np.random.default_rng(2).permutation(np.repeat([0, 1], 200))
    level = ChanceLevel(classification_metrics(np.zeros(400, dtype=np.int64), gold, 2), 400, "always '0'")
    targets = EvalTargets(LABELS, gold, num_labels=2, positive=1)
    predicted = gold.copy()
    predicted[np.random.default_rng(3).permutation(400)[:176]] ^= 1  # right on 224 of 400: 0.56
    record = TrialRecord(number=0, state="COMPLETE", config={}, fail_reason=None, adapter_dir=None, feasible=True,
                         values={"accuracy": 0.56, "trainable_params": 1e4}, measurements={"accuracy": 0.56},
                         predictions=encode(LABELS, predicted), confirmation=confirmation)
    attrs = {storage.CHANCE: level.to_json(), storage.EVAL_TARGETS: targets.to_json()}
    return attrs, [record], parse_spec(tiny_spec(__import__("pathlib").Path("/tmp")))


def _confirmation(values: list[float], at_search_fidelity: bool = True) -> dict:
    runs = [{"ok": True, "measurements": {"accuracy": v}} for v in values]
    return {"at_search_fidelity": at_search_fidelity, "succeeded": len(values), "runs": runs,
            "mean": {"accuracy": float(np.mean(values))}}


@pytest.mark.parametrize(("values", "above"), [([0.50, 0.52], False), ([0.60, 0.61], True),
                                               ([0.52, 0.60], False)])
def test_a_retrained_point_is_judged_by_its_new_seeds_mean_against_chance(values, above):
    """Chance 0.5 and a null spread of 0.025 on 400 examples: two seeds at 0.60 and 0.61 clear 0.5 + 1.645 *
    0.025 / sqrt(2) = 0.529; two seeds at 0.52 and 0.60 have a mean of 0.56 but a spread of 0.057, so their
    margin is 1.645 * 0.057 / sqrt(2) = 0.066 and they do not."""
    from autopeft.results.noise import assess

    searched = assess(*_retrained_search(None))
    # one trial: the bar is about 0.5 + 1.6 sd = 0.54, so 0.56 clears it by less than one sd (0.025)
    assert searched.tests[0].method == "permutation" and searched.tests[0].above and searched.near_bar == [0]
    report = assess(*_retrained_search(_confirmation(values)))
    test = report.tests[0]
    assert test.method == "confirmed" and test.seeds == 2 and test.value == pytest.approx(np.mean(values))
    assert test.above is above and test.noise >= searched.tests[0].noise
    assert report.single_seed[0] == searched.tests[0]  # the search's own verdict is kept beside it
    assert report.is_at_chance(0) is not above and report.nothing_learned is not above and not report.near_bar
    assert report.to_json()["confirmed"]["0"]["value"] == pytest.approx(np.mean(values))


def test_a_retraining_at_other_steps_leaves_the_verdict_to_the_search():
    from autopeft.results.noise import assess

    report = assess(*_retrained_search(_confirmation([0.40, 0.41], at_search_fidelity=False)))
    assert report.tests[0].method == "permutation" and report.tests[0].above and not report.single_seed


def _answer_search(answers: list[str], scoring: str = "generate", untouched: list[str] | None = None):
    """One front point of a decoder scored by its answers (48 records, three closed-form answers, chance 'answer1'
    on 16 of 48), its stored predictions ``answers`` ('' where a response stated none): the noise report's
    attributes, records and spec, as a search stores them."""
    from autopeft.spec import parse_spec
    from autopeft.store import storage
    from autopeft.store.storage import TrialRecord
    from tests.conftest import tiny_spec

    gold = [f"answer{1 + i % 3}" for i in range(48)]
    level = ChanceLevel({"answer_accuracy": 16 / 48}, 48, "always 'answer1'")
    accuracy = float(np.mean([a == g for a, g in zip(answers, gold)]))
    record = TrialRecord(number=0, state="COMPLETE", config={}, fail_reason=None, adapter_dir=None, feasible=True,
                         values={"answer_accuracy": accuracy, "trainable_params": 1e4},
                         measurements={"answer_accuracy": accuracy}, predictions=encode(ANSWERS, answers))
    attrs = {storage.CHANCE: level.to_json(), storage.EVAL_TARGETS: EvalTargets(ANSWERS, gold).to_json()}
    if untouched is not None:
        attrs[storage.UNTOUCHED] = {"metrics": {"answer_accuracy": 0.0}, "predictions": encode(ANSWERS, untouched)}
    spec = tiny_spec(__import__("pathlib").Path("/tmp"), model={"name_or_path": "x", "task": "causal-lm"},
                     data={"train": "t.json", "eval": "e.json", "answer_scoring": scoring},
                     objectives=[{"name": "answer_accuracy"}, {"name": "trainable_params"}], constraints=[])
    return attrs, [record], parse_spec(spec)


def test_responses_that_state_no_answer_are_counted_and_the_closed_set_fix_is_named():
    """A decoder that answers in other words than the records' ("The answer is: 3" for "answer3") reads near zero
    by generation: the report counts the responses that stated none of the answers, for the front and the
    untouched model, and the summary names answer_scoring: options, since the answers are a closed set."""
    from autopeft.results.noise import assess
    from autopeft.results.views import chance_line

    unread = ["" if i < 40 else f"answer{1 + i % 3}" for i in range(48)]  # 8 answered, all right
    report = assess(*_answer_search(unread, untouched=[""] * 47 + ["answer1"]))
    assert report.unanswered == {0: 40} and report.untouched_unanswered == 47 and report.answer_records == 48
    assert report.closed_answers == ["answer1", "answer2", "answer3"]
    words = " ".join(chance_line(report.to_json()).split())
    assert "state none of the task's answers, so count as wrong: 0 (40 of 48), the untouched model (47 of 48)" in words
    assert "(answer1, answer2, answer3): data.answer_scoring: options reads the likelier one" in words
    from autopeft.results.export import _noise_of  # what an exported adapter's metrics.json records of it

    assert _noise_of(report, 0)["unanswered"] == 40 and _noise_of(report, 0)["answer_records"] == 48
    from streamlit.testing.v1 import AppTest  # and the dashboard's front page, from the same report

    def front_page_noise(report: dict) -> None:
        from dashboard.views.front import say_noise

        say_noise(report)

    app = AppTest.from_function(front_page_noise, args=(report.to_json(),), default_timeout=60)
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    assert any("0 (40 of 48), the untouched model (47 of 48)" in i.value for i in app.info)


@pytest.mark.parametrize("scoring", ["generate", "options"])
def test_answers_mostly_read_or_scored_as_options_say_nothing_of_wording(scoring):
    """Under half the responses unread (or options scoring, which always names an option): no sentence."""
    from autopeft.results.noise import assess
    from autopeft.results.views import chance_line, unanswered_sentence

    answers = ["" if i < 20 and scoring == "generate" else f"answer{1 + i % 3}" for i in range(48)]
    report = assess(*_answer_search(answers, scoring, untouched=["answer1"] * 48))
    assert report.unanswered == {} and report.untouched_unanswered is None
    assert unanswered_sentence(report.to_json()) is None
    assert "state none of the task's answers" not in chance_line(report.to_json())
