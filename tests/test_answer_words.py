"""A decoder task of the user's own whose answers are words: each generated response is read among the task's
closed set of answers ("positive" in "the sentiment is positive"), not as its first word ("the"), which scored
every trial of such a task 0.

A tiny LLaMA built from a configuration learns the records for real (a plain training loop on the runner's own
batches); the runner's evaluation (generation, the answer read, the stopping of each row) then scores it."""

from __future__ import annotations

import pytest

from autopeft.store.predictions import decode
from autopeft.tasks.answer_options import answer_words
from tests.conftest import cue_reviews, learn_decoder_task
from workers.generation import extract_answer


def _records(count: int, seed: int) -> list[dict[str, str]]:
    """Reviews whose sentiment is the one cue word they hold; the response states it after fixed words."""
    return [{"instruction": f"Review: {review}\n\nAnswer format: positive/negative", "input": "",
             "output": f"the sentiment is {answer}", "answer": answer} for review, answer in cue_reviews(count, seed)]


def test_the_closed_set_of_answers():
    assert answer_words(["positive", "negative ", "positive"]) == ["negative", "positive"]
    assert answer_words(["not entailment", "entailment"]) == ["entailment", "not entailment"]
    assert answer_words(["42", "7"]) is None  # numbers: the last number in the response
    assert answer_words(["yes"]) is None  # one answer: nothing to choose among
    assert answer_words([f"label{i}x" for i in range(21)]) is None  # open-ended: more than MAX_OPTIONS
    words = ("entailment", "not_entailment")
    assert extract_answer("so: not_entailment, since", "entailment", words) == "not_entailment"
    assert extract_answer("The sentiment is Negative.", "negative", ("negative", "positive")) == "Negative"
    assert extract_answer("the sentiment is unclear", "negative", ("negative", "positive")) == ""


def test_a_decoder_task_answering_in_words_is_scored_by_its_answers(tmp_path):
    data, model, runner = learn_decoder_task(tmp_path, _records(256, seed=0), _records(32, seed=1))
    assert data.answer_words == ["negative", "positive"]

    evaluation_result = runner.evaluate(model, 16)
    given = decode(evaluation_result.predictions)
    # every response is read as one of the task's answers, and the model learnt them: before, each read "the"
    assert set(given) <= {"positive", "negative"}, given
    assert evaluation_result.metrics["answer_accuracy"] >= 0.9, given
    # without the closed set, read as an open answer (words of the response's line), the same answers are found;
    # read as its first word, as LLM-Adapters reads an answer of no known form, every row gave "the"
    data.answer_words = None
    assert runner.evaluate(model, 16).metrics["answer_accuracy"] == evaluation_result.metrics["answer_accuracy"]


@pytest.mark.parametrize("text,given", [
    ("the sentiment is positive", False),  # may still become "positively"
    ("the sentiment is positive.", True),
    ("the sentiment", False),  # "the" is no answer of this task
])
def test_a_row_stops_once_it_states_one_of_the_answers(text, given):
    from workers.generation import answer_given

    assert answer_given(text, "negative", ("negative", "positive")) is given


CAPITALS = {"France": "Paris", "Ethiopia": "Addis Ababa", "India": "New Delhi", "Argentina": "Buenos Aires",
            "Malaysia": "Kuala Lumpur", "Mexico": "Mexico City", "Japan": "Tokyo", "Kenya": "Nairobi",
            "Peru": "Lima", "Norway": "Oslo", "Egypt": "Cairo", "Greece": "Athens", "Cuba": "Havana",
            "Nepal": "Kathmandu", "Iran": "Tehran", "Chile": "Santiago", "Poland": "Warsaw", "Spain": "Madrid",
            "Italy": "Rome", "Canada": "Ottawa", "Russia": "Moscow", "Ireland": "Dublin", "Austria": "Vienna",
            "Sweden": "Stockholm"}


@pytest.mark.parametrize("response,gold,stated,read", [
    ("The capital of Ethiopia is Addis Ababa.", "Addis Ababa", False, "Addis Ababa"),
    ("The capital of Ethiopia is Nairobi.", "Addis Ababa", False, "The capital of Ethiopia is Nairobi."),
    ("the capital is washington, d.c.", "Washington D.C.", False, "Washington D.C."),  # as SQuAD normalises
    ("The answer: the Hague", "The Hague", False, "The Hague"),
    ("The Parisian capital", "Paris", False, "The Parisian capital"),  # words of their own, not a part of one
    ("Lima.\nParis", "Paris", False, "Lima."),  # the first line is the answer given
    ("Rome is old. The answer is Paris. Rome", "Rome", True, "Paris"),  # a stating task: its statement
    ("No statement here, Rome", "Rome", True, "Rome"),  # none made: the first line
])
def test_an_open_answer_is_read_as_words_of_the_first_line(response, gold, stated, read):
    """More than 20 distinct answers and no closed form: the first word ("The") was read, so every row scored 0."""
    assert answer_words(list(CAPITALS.values())) is None
    assert extract_answer(response, gold, stated=stated) == read


@pytest.mark.parametrize("text,stated,given", [
    ("The capital of Ethiopia is Addis", False, False),  # the line goes on
    ("The capital of Ethiopia is Addis Ababa.\n", False, True),
    ("The answer is Washington D.", True, False),  # a full stop at the end may be an abbreviation's
    ("The answer is Paris. It", True, True),
    ("Rome is old. Paris", True, False),  # no statement yet
])
def test_an_open_answer_is_given_once_its_line_or_statement_ends(text, stated, given):
    from workers.generation import answer_given

    assert answer_given(text, "Addis Ababa", stated=stated) is given


def _capital_records(count: int, seed: int) -> list[dict[str, str]]:
    import random

    rng = random.Random(seed)
    countries = sorted(CAPITALS)
    return [{"instruction": f"What is the capital of {c} ?", "input": "", "output": f"The capital of {c} is "
             f"{CAPITALS[c]} .", "answer": CAPITALS[c]} for c in (rng.choice(countries) for _ in range(count))]


def test_a_decoder_task_with_open_answers_is_scored_by_them(tmp_path):
    """A user's question answered by a name, 24 distinct and some of two words: read in the response's line."""
    data, model, runner = learn_decoder_task(tmp_path, _capital_records(256, seed=0), _capital_records(32, seed=1))
    assert data.answer_words is None and not data.answers_stated

    result = runner.evaluate(model, 16)
    given = decode(result.predictions)
    assert result.metrics["answer_accuracy"] >= 0.9, given
    assert any(" " in answer for answer in given)  # two-word answers read whole ("Addis Ababa", not "Addis")
