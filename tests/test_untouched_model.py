"""A decoder's adapters read against the model before training (the zero-shot row of LLM-Adapters' tables): each
worker evaluates the untouched base once, the search stores it, and every surface names the front points whose
answers are no better than the untouched model's on the same records (paired bootstrap).

A tiny LLaMA built from a configuration, reviews whose sentiment is the one cue word they hold, a real search on the
local executor: trained at a usual rate the model learns the cue and answers clearly better than before; at a rate
too small to move its weights its answers are the untouched model's own."""

from __future__ import annotations

import json

import optuna
import pytest
from streamlit.testing.v1 import AppTest

import autopeft
from autopeft import cli
from autopeft.results.untouched_model import UNTOUCHED
from autopeft.store import storage
from autopeft.store.predictions import decode
from tests.conftest import ROOT, cue_reviews, run_cli, save_tiny_decoder, search_with_untouched, tiny_spec


def _records(count: int, seed: int, cue: bool = True) -> list[dict[str, str]]:
    """Reviews with their cue word, or without it (``cue`` false: the answer is a coin flip the review does not
    tell, so only the responses' wording can be learned)."""
    return [{"instruction": f"Review: {_without_cue(review) if not cue else review}\n\nAnswer format: "
             "positive/negative", "input": "", "output": f"the sentiment is {answer}", "answer": answer}
            for review, answer in cue_reviews(count, seed)]


def _without_cue(review: str) -> str:
    return " ".join(word for word in review.split() if word not in ("great", "awful"))


@pytest.fixture(scope="module")
def reviews(tmp_path_factory):
    folder = tmp_path_factory.mktemp("reviews")
    train, evaluation = _records(256, seed=0), _records(48, seed=1)
    (folder / "train.json").write_text(json.dumps(train))
    (folder / "eval.json").write_text(json.dumps(evaluation))
    save_tiny_decoder(folder / "decoder", train + evaluation)
    return folder


@pytest.fixture(scope="module")
def coin_flips(tmp_path_factory):
    """Reviews without their cue word: nothing in a review tells its answer."""
    folder = tmp_path_factory.mktemp("coin-flips")
    train, evaluation = _records(256, seed=0, cue=False), _records(48, seed=1, cue=False)
    (folder / "train.json").write_text(json.dumps(train))
    (folder / "eval.json").write_text(json.dumps(evaluation))
    save_tiny_decoder(folder / "decoder", train + evaluation)
    return folder


def _spec(folder, tmp_path, rates: list[float], objective: str = "answer_accuracy", steps: int = 160) -> dict:
    spec = tiny_spec(folder, model={"name_or_path": str(folder / "decoder"), "task": "causal-lm"},
                     data={"train": str(folder / "train.json"), "eval": str(folder / "eval.json"),
                           "max_length": 64},
                     objectives=[{"name": objective}, {"name": "trainable_params"}], constraints=[],
                     search_space={"name": "full-at-two-rates", "fixed": {"method": "full"},
                                   "parameters": {"learning_rate": {"type": "categorical", "choices": rates}}},
                     training={"batch_size": 16, "eval_batch_size": 16},
                     budget={"trials": 1, "steps_per_trial": steps, "confirm_near_chance": 0},
                     workers={"parallel": 1, "cpus_per_trial": 2})
    return spec | {"storage": f"sqlite:///{tmp_path / 't.db'}", "output_dir": str(tmp_path / "runs")}


@pytest.mark.parametrize("rates, learns", [([3e-3, 2e-3], True), ([1e-9, 2e-9], False)])
def test_the_front_is_read_against_the_untouched_models_answers(reviews, tmp_path, capsys, monkeypatch, rates,
                                                                learns):
    spec = _spec(reviews, tmp_path, rates)
    # what the worker stored is the base model's own evaluation, as the runner makes it
    out, report, untouched = search_with_untouched(capsys, tmp_path, spec, "reviews", 16)
    assert report["untouched"] == pytest.approx(untouched.metrics["answer_accuracy"])
    stored = optuna.load_study(study_name="reviews", storage=spec["storage"]).user_attrs[storage.UNTOUCHED]
    assert decode(stored["predictions"]) == decode(untouched.predictions)

    words = " ".join(out.split())
    assert f"The untouched model (no adapter trained) scores answer_accuracy {report['untouched']:.4f}" in words
    if learns:
        assert report["no_better_than_untouched"] == [] and not report["nothing_learned"]
        assert "every front point answers clearly better" in words
        code, _, err = run_cli(capsys, "export", "reviews", "--storage", spec["storage"], "--out", str(tmp_path / "x"))
        assert code == 0, err
        noise = json.loads(next((tmp_path / "x").glob("trial-*/metrics.json")).read_text())["noise"]
        assert noise["untouched"] == report["untouched"] and noise["better_than_untouched"] is True
    else:
        assert report["no_better_than_untouched"] == [0]
        assert "training did not improve on the model as it was" in words
        assert report["form_not_answers"] == {} and "the responses' form" not in words  # the loss did not move
        monkeypatch.setenv("AUTOPEFT_STORAGE", spec["storage"])
        app = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=60)
        app.session_state["view"] = "Pareto front"
        app.run()
        assert not app.exception, [e.value for e in app.exception]
        assert any("training did not improve on the model as it was" in e.value for e in app.info)
        # the figure draws where the untouched model scores beside chance, and the caption says what it is
        figure = app.get("plotly_chart")[0].proto.spec
        assert "untouched model" in figure and "chance" in figure
        assert any("The dashed line is the untouched model" in c.value for c in app.caption)


def test_a_search_told_to_skip_the_untouched_model_evaluates_no_reference(reviews, tmp_path):
    """training.untouched_reference: false spares each worker the base model's evaluation where the records have
    answers (a large eval set makes generation dear): nothing is stored, and the search still reads its chance."""
    spec = tiny_spec(reviews, model={"name_or_path": str(reviews / "decoder"), "task": "causal-lm"},
                     data={"train": str(reviews / "train.json"), "eval": str(reviews / "eval.json"),
                           "max_length": 64},
                     objectives=[{"name": "answer_accuracy"}, {"name": "trainable_params"}], constraints=[],
                     search_space={"name": "full", "fixed": {"method": "full"},
                                   "parameters": {"learning_rate": {"type": "categorical", "choices": [3e-3]}}},
                     training={"batch_size": 16, "eval_batch_size": 16, "untouched_reference": False},
                     budget={"trials": 1, "steps_per_trial": 4, "confirm_near_chance": 0},
                     workers={"parallel": 1, "cpus_per_trial": 2})
    spec |= {"storage": f"sqlite:///{tmp_path / 't.db'}", "output_dir": str(tmp_path / "runs")}
    search = autopeft.run_search(spec, name="no-reference", executor="local", progress=False)
    attributes = optuna.load_study(study_name="no-reference", storage=spec["storage"]).user_attrs
    assert storage.UNTOUCHED not in attributes and storage.CHANCE in attributes
    assert search.chance["untouched"] is None and search.chance["no_better_than_untouched"] == []


def test_answers_at_chance_with_a_loss_that_fell_say_the_form_was_learned(coin_flips, tmp_path, capsys,
                                                                           monkeypatch):
    """Where the answers cannot be learned, training still teaches the responses' wording: the answers sit at
    chance, the gold responses' loss falls far below the untouched model's, and the surfaces say which it was."""
    spec = _spec(coin_flips, tmp_path, [3e-3, 2e-3])
    out, report, untouched = search_with_untouched(capsys, tmp_path, spec, "coin-flips", 16)
    assert report["nothing_learned"]
    point = next(iter(report["tests"]))  # the one trial
    assert list(report["form_not_answers"]) == [point]
    assert report["untouched_loss"] == pytest.approx(untouched.metrics["eval_loss"])
    assert report["form_not_answers"][point] < 0.5 * report["untouched_loss"]
    words = " ".join(out.split())
    assert "training taught the responses' form, not the answers" in words
    code, listed, _ = run_cli(capsys, "search", "list", "--storage", spec["storage"], "--json")
    assert json.loads(listed)[0]["front_vs_chance"] == "none" and json.loads(listed)[0]["form_only"] is True
    monkeypatch.setattr(cli.console, "_width", 200)  # the table's cells unwrapped, whatever the terminal
    code, listed, _ = run_cli(capsys, "search", "list", "--storage", spec["storage"])
    assert "at chance: the responses' form learned, not the answers" in listed
    monkeypatch.setenv("AUTOPEFT_STORAGE", spec["storage"])
    app = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=60)
    app.session_state["view"] = "Pareto front"
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    assert any("the responses' form, not the answers" in e.value for e in [*app.error, *app.info, *app.warning])
    code, _, err = run_cli(capsys, "export", "coin-flips", "--storage", spec["storage"], "--out", str(tmp_path / "x"))
    assert code == 0, err
    exported = next((tmp_path / "x").glob("trial-*"))
    assert json.loads((exported / "metrics.json").read_text())["noise"]["form_not_answers"] is True
    assert "The responses' form, not the answers" in (exported / "README.md").read_text()


def test_a_decoder_searched_on_its_loss_is_read_against_the_untouched_model_where_records_have_answers(
        reviews, tmp_path, capsys):
    """eval_loss as the task metric on records with answers: the chance level is the untouched model's loss (the
    answers' chance level is for answers), and each trial's losses, stored beside its answers, are paired with it."""
    spec = _spec(reviews, tmp_path, [3e-3, 2e-3], objective="eval_loss", steps=40)
    out, report, untouched = search_with_untouched(capsys, tmp_path, spec, "on-loss", 16)
    assert report["predicts"] == UNTOUCHED
    assert report["chance"] == pytest.approx(untouched.metrics["eval_loss"], rel=1e-5)
    test = next(iter(report["tests"].values()))
    assert test["method"] == "paired" and test["above"] and not report["nothing_learned"]
    assert "Every tested front point is clearly below it" in " ".join(out.split())
