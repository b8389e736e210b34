"""A decoder's answer where its responses reason first and state the answer last (AQuA: "Rationale: Let A be the
price ... The answer is (C)."): the statement is read, not the first letter of the rationale, and generation is
not cut at that letter (autopeft/tasks/answer_reading.py).

A tiny LLaMA built from a configuration learns such records for real; the runner's evaluation (generation, the
stopping of each row, the answer read) then scores it, as in tests/test_answer_words.py."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from autopeft.store.predictions import decode
from autopeft.tasks.answer_reading import AnswerReading, answer_given, extract_answer, responses_state_answers
from tests.conftest import learn_decoder_task

AQUA = Path(__file__).resolve().parents[2] / "shared" / "data" / "llm-adapters" / "dataset" / "AQuA" / "test.json"
CUES = {"red": "A", "green": "B", "blue": "C", "gold": "D", "grey": "E"}


@pytest.mark.parametrize("response,gold,stated,read", [
    ("Rationale: Let A be the price. So it costs 3A. The answer is (C).", "A", True, "C"),
    ("Rationale: Let A be the price. So it costs 3A. The answer is (C).", "A", False, "A"),  # LLM-Adapters' rule
    ("the correct answer is answer3", "answer1", True, "answer3"),
    ("answer1 looks close, but the correct answer is answer3", "answer1", True, "answer3"),
    ("answer1 looks close, but the correct answer is answer3", "answer1", False, "answer1"),
    ("Let B be the rest, so B = 4.", "D", True, "B"),  # no statement: the first letter, as before
    ("The answer is: 'true'", "false", True, "true"),
    ("so the sentiment is negative; the answer is positive", "negative", True, "positive"),
])
def test_the_stated_answer_is_read_first(response, gold, stated, read):
    words = ("negative", "positive") if gold == "negative" else ()
    assert extract_answer(response, gold, words, stated=stated) == read


@pytest.mark.parametrize("text,stated,given", [
    ("Rationale: Let A be", False, True),  # the first letter, followed by a character: the row stopped here
    ("Rationale: Let A be", True, False),  # a statement may follow
    ("Rationale: Let A be the price. The answer is (C", True, False),  # "(C" may still become "(Cx"
    ("Rationale: Let A be the price. The answer is (C)", True, True),
    ("the correct answer is answer1", True, False),  # may still become answer12
    ("the correct answer is answer1.", True, True),
])
def test_a_stated_task_is_not_cut_before_its_statement(text, stated, given):
    assert answer_given(text, "B", stated=stated) is given if "answer1" not in text else \
        answer_given(text, "answer2", stated=stated) is given


def test_whether_a_tasks_responses_state_their_answers():
    assert responses_state_answers(["Let A be x. The answer is (C).", "So B. The answer is (D)."], ["C", "D"])
    assert responses_state_answers(["the correct answer is true", "the correct answer is false"], ["true", "false"])
    assert not responses_state_answers(["positive", "the sentiment is negative"], ["positive", "negative"])
    # numbers are read as the response's last number whatever the statement; nothing to decide
    assert not responses_state_answers(["3 + 4 = 7. The answer is 7."], ["7"])
    assert not responses_state_answers(["", ""], ["A", "B"])  # no gold responses (an answer-only eval set)
    # most, not all: one response in three without its statement does not change the task's form
    assert responses_state_answers(["The answer is (A).", "The answer is (B).", "B"], ["A", "B", "B"])


@pytest.mark.skipif(not AQUA.is_file(), reason="needs LLM-Adapters' AQuA test set beside the project (../shared)")
def test_aquas_gold_responses_read_as_they_state():
    """On LLM-Adapters' AQuA test set, each gold rationale's stated letter is read; the first letter was not."""
    import re

    records = json.loads(AQUA.read_text())
    responses, golds = [r["output"] for r in records], [str(r["answer"]) for r in records]
    assert responses_state_answers(responses, golds)
    stated = [(m.group(1), r, g) for r, g in zip(responses, golds) if (m := re.search(r"answer is \(([A-E])\)", r))]
    assert len(stated) > 240
    assert all(extract_answer(r, g, stated=True) == letter for letter, r, g in stated)
    assert sum(extract_answer(r, g) != letter for letter, r, g in stated) >= 10  # the rule before


def _records(count: int, seed: int) -> list[dict[str, str]]:
    """Questions whose answer letter is given by the one colour they name; each rationale names the letter A
    before it states the answer, as AQuA's rationales name their variables."""
    rng = random.Random(seed)
    records = []
    for _ in range(count):
        colour = rng.choice(list(CUES))
        records.append({"instruction": f"Which box is {colour} ? Answer Choices: (A) (B) (C) (D) (E)", "input": "",
                        "output": f"Rationale: Let A be the box . It is {colour} . The answer is ( {CUES[colour]} ) .",
                        "answer": CUES[colour]})
    return records


def test_a_decoder_that_reasons_first_is_scored_by_the_answer_it_states(tmp_path):
    evaluation = _records(32, seed=1)
    data, model, runner = learn_decoder_task(tmp_path, _records(256, seed=0), evaluation, max_length=96)
    assert data.answers_stated

    result = runner.evaluate(model, 16)
    given = decode(result.predictions)
    golds = [r["answer"] for r in evaluation]
    assert result.metrics["answer_accuracy"] >= 0.9, given
    assert set(given) > {"A"}  # the stated letters, not the rationale's "A"
    # Read and cut as a first-found letter (the rule before): every response gives the rationale's "A"
    data.answers_stated = False
    plain = runner.evaluate(model, 16)
    assert set(decode(plain.predictions)) == {"A"}
    assert plain.metrics["answer_accuracy"] == pytest.approx(golds.count("A") / len(golds))
    assert AnswerReading(stated=True).read("Let A be it. The answer is ( C ) .", "C") == "C"


@pytest.mark.parametrize("response,gold,words,read", [
    ("This is a trick; the answer is c", "a", tuple("abcde"), "c"),  # the article is not the option a
    ("This is a trick; the answer is c", "a", (), "c"),  # without a closed set: LLM-Adapters' five letters
    ("I think a is wrong, so b", "b", tuple("abcde"), "a"),  # "a is": the option, not the article
    ("a or b? b", "b", tuple("abcde"), "a"),
    ("e.g. the answer is d", "d", tuple("abcde"), "d"),  # no letter of an abbreviation
    ("(b) fits best", "a", tuple("abcde"), "b"),
    ("I guess f", "f", tuple("abcdefgh"), "f"),  # the pronoun I is not the option i, whatever the set
    ("I guess i", "f", tuple("abcdefghij"), "i"),
    ("A cat sat; D", "D", (), "A"),  # capitals keep LLM-Adapters' rule: the first capital standing alone
    # a set in capitals reads a response alike whatever its record's gold answer (here the set's first word)
    ("A cat sat; F", "F", tuple("ABCDEFGH"), "A"),
    ("A cat sat; F", "A", tuple("ABCDEFGH"), "A"),
])
def test_options_named_by_lower_case_letters_are_read_without_the_article(response, gold, words, read):
    assert extract_answer(response, gold, words) == read


@pytest.mark.parametrize("text,given", [
    ("This is a", False),  # "a" may still be the article: "a trick"
    ("This is a trick", False),
    ("This is a trick; c", False),  # "c" may still become "cat"
    ("This is a trick; c.", True),
    ("a)", True),
])
def test_a_row_is_not_stopped_at_the_article(text, given):
    assert answer_given(text, "c", tuple("abcde")) is given
