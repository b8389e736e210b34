"""A decoder task of the user's own whose answers are words: each generated response is read among the task's
closed set of answers ("positive" in "the sentiment is positive"), not as its first word ("the"), which scored
every trial of such a task 0.

A tiny LLaMA built from a configuration learns the records for real (a plain training loop on the runner's own
batches); the runner's evaluation (generation, the answer read, the stopping of each row) then scores it."""

from __future__ import annotations

import pytest

from autopeft.answer_options import answer_words
from autopeft.predictions import decode
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
    # the same model read as an open-ended answer (its first word), as every word answer was read before
    data.answer_words = None
    assert runner.evaluate(model, 16).metrics["answer_accuracy"] == 0.0


@pytest.mark.parametrize("text,given", [
    ("the sentiment is positive", False),  # may still become "positively"
    ("the sentiment is positive.", True),
    ("the sentiment", False),  # "the" is no answer of this task
])
def test_a_row_stops_once_it_states_one_of_the_answers(text, given):
    from workers.generation import answer_given

    assert answer_given(text, "negative", ("negative", "positive")) is given
