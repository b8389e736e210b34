"""The chance level: measured with the task's own metrics on the constant prediction, stored with each search, and
used to flag front points that are within noise of it (a search of pure noise still returns a "front")."""

from __future__ import annotations

import json
from statistics import NormalDist

import numpy as np
import pandas as pd
import pytest

from autopeft.results.chance import (
    MIN_LOSS_GAIN,
    ChanceLevel,
    binomial_test,
    chance_level,
    paired_loss_test,
    seeds_test,
)
from autopeft.spec import load_spec
from autopeft.store.predictions import LOSSES, EvalTargets
from autopeft.tasks.data import TaskData, TokenizedSplit, load_task_data
from tests.conftest import DEMO_DATA, run_cli, tiny_spec, write_spec


def test_the_classification_chance_level_is_the_majority_label_on_the_whole_eval_set(tmp_path):
    spec_dict = tiny_spec(tmp_path)
    spec_dict["data"] = {k: v for k, v in spec_dict["data"].items() if k != "eval_size"}
    spec = load_spec(write_spec(tmp_path, spec_dict))
    level = chance_level(load_task_data(spec.data, spec.model, spec.seed))
    labels = pd.read_csv(DEMO_DATA / "dev.tsv", sep="\t")["label"]
    share = labels.value_counts().max() / len(labels)
    assert level.examples == len(labels) == 872
    assert level.metrics["accuracy"] == pytest.approx(share)
    assert level.metrics["matthews"] == 0.0
    assert level.metrics["macro_f1"] == pytest.approx(2 * share / (1 + share) / 2)  # the majority's F1, then zero
    assert level.predicts == f"always '{labels.value_counts().idxmax()}'"
    assert ChanceLevel.from_json(json.loads(json.dumps(level.to_json()))) == level


def test_the_regression_chance_level_is_the_mean_target():
    targets = np.array([0.0, 1.0, 2.0, 5.0], dtype=np.float32)
    split = TokenizedSplit(input_ids=[np.array([1])] * 4, token_type_ids=None, labels=targets)
    level = chance_level(TaskData(split, split, [], task="sequence-regression"))
    assert level.metrics["mse"] == pytest.approx(float(np.var(targets)))
    assert level.metrics["spearman"] == level.metrics["pearson"] == 0.0


def test_the_answer_chance_level_names_the_first_of_equally_common_answers():
    """Thirty answers, each once: the constant prediction shown is the first met, in every process (it was a set's
    first, which moves with the process's string hashing)."""
    answers = [f"city {i}" for i in range(30)]
    split = TokenizedSplit(input_ids=[np.array([1])] * 30, token_type_ids=None, labels=None, answers=answers)
    level = chance_level(TaskData(split, split, [], task="causal-lm"))
    assert level.predicts == "always 'city 0'"
    assert level.metrics["answer_accuracy"] == pytest.approx(1 / 30)


def test_the_noise_margin_grows_with_the_trials_searched():
    level = ChanceLevel({"accuracy": 0.527, "macro_f1": 0.345}, 277, "always 'entailment'")
    se = (0.527 * 0.473 / 277) ** 0.5
    assert level.margin("accuracy", 1) == pytest.approx(NormalDist().inv_cdf(0.95) * se)  # 0.049
    assert level.margin("accuracy", 20) == pytest.approx(NormalDist().inv_cdf(1 - 0.05 / 20) * se)  # 0.084
    assert level.margin("macro_f1", 20) is None  # without predictions only accuracy has a margin
    assert [v for v in (0.56, 0.60, 0.62) if not binomial_test(v, level, 20).above] == [0.56, 0.60]  # bar 0.611


def test_search_show_tests_every_front_point_against_its_permutation_null(small_search, capsys):
    _, url, name = small_search
    code, out, _ = run_cli(capsys, "search", "show", name, "--storage", url, "--json")
    assert code == 0
    shown = json.loads(out)
    chance = shown["chance"]
    assert chance["metric"] == "accuracy" and chance["examples"] == 96  # the tiny spec's eval subset
    searched = [t for t in shown["trials"] if t["state"] == "COMPLETE" and not t.get("baseline")]
    assert chance["trials"] == len(searched)
    front = {t["number"]: t["values"]["accuracy"] for t in shown["trials"] if t.get("pareto")}
    baselines = {t["number"] for t in shown["trials"] if t.get("baseline") and t["state"] == "COMPLETE"}
    assert set(map(int, chance["tests"])) == set(front) | baselines  # other tests may have added baselines
    for number, value in front.items():
        test = chance["tests"][str(number)]
        assert test["method"] == "permutation" and test["value"] == value
        assert test["bar"] >= chance["chance"]  # never below the majority label's accuracy
        assert test["above"] == (value > test["bar"])
    assert sorted(chance["not_above_chance"]) == sorted(n for n in front if not chance["tests"][str(n)]["above"])
    code, out, _ = run_cli(capsys, "search", "show", name, "--storage", url)
    text = " ".join(out.split())  # rich wraps long lines
    assert f"Chance: accuracy {chance['chance']:.4f}" in text
    assert ("within noise of" in text) == bool(chance["not_above_chance"])


def test_the_chance_line_says_a_point_scores_chance_itself_instead_of_a_bar_equal_to_it():
    from autopeft.results.views import chance_line

    report = {"metric": "accuracy", "chance": 0.5092, "predicts": "always '1'", "examples": 872, "trials": 12,
              "maximize": True, "nothing_learned": False, "not_above_chance": [5, 9], "matched_within_noise": {},
              "tests": {"5": {"value": 0.5092, "bar": 0.5092, "above": False, "method": "permutation"},
                        "9": {"value": 0.5115, "bar": 0.5136, "above": False, "method": "permutation"},
                        "11": {"value": 0.7844, "bar": 0.5136, "above": True, "method": "permutation"}}}
    line = chance_line(report)
    assert "5 (scores chance itself), 9 (needs > 0.5136)" in line


def test_a_loss_is_tested_against_the_untouched_models_record_by_record():
    """Records differ in difficulty far more than a trained model changes them: paired, a 5% drop on every record
    is clear, the same mean drop made of records moving up and down by much more is noise, and a drop smaller than
    MIN_LOSS_GAIN counts as nothing however consistent."""
    rng = np.random.default_rng(0)
    tokens = rng.integers(5, 40, size=200).astype(float)
    untouched = tokens * rng.uniform(1.0, 4.0, size=200)  # summed loss per record
    targets = EvalTargets(LOSSES, tokens, reference=untouched)
    level = untouched.sum() / tokens.sum()

    def test(losses: np.ndarray, trials: int = 10):
        return paired_loss_test(losses.sum() / tokens.sum(), losses, targets, trials)

    clear = test(untouched * 0.95)
    assert clear.above and clear.method == "paired" and clear.centre == pytest.approx(level)
    assert clear.bar == pytest.approx(level * (1 - MIN_LOSS_GAIN))  # no spread: the floor is the margin
    noisy = untouched * 0.95 + rng.normal(0, 1.0, size=200) * tokens
    assert not test(noisy).above and test(noisy).noise > 10 * clear.noise
    assert not test(untouched * (1 - MIN_LOSS_GAIN / 2)).above  # consistent, but too small to be learning
    assert not test(untouched * 1.2).above  # a model the adapter made worse
    # more trials searched, a wider margin: a drop that clears it after one trial may not after many
    shaky = untouched * 0.9 + rng.normal(0, 0.17, size=200) * tokens
    assert test(shaky, trials=1).bar > test(shaky, trials=1000).bar
    # retrained with new seeds, a loss must still clear the floor, however alike the seeds
    consistent = [level * (1 - MIN_LOSS_GAIN / 2)] * 3
    assert not seeds_test(clear, consistent, maximize=False).above
    assert seeds_test(clear, [level * 0.95, level * 0.96, level * 0.95], maximize=False).above
