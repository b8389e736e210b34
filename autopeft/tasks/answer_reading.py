"""How a generated response's answer is read, and when it has been given: the rules, without torch.

LLM-Adapters' scoring: for a numeric gold answer, the last number in the response; for a choice token
(``answer2``, ``option1``), ``true``/``false`` or an option letter, the first one in the response. Any other word
answer is read among the task's closed set of answers where it has one (``words``: every distinct gold answer,
autopeft/tasks/answer_options.py ``answer_words``), as the first of them the response states (``positive`` in "the
sentiment is positive"). An open answer (no closed set: a user's question answered by a name, "Addis Ababa" in
"The capital of Ethiopia is Addis Ababa.") is right where the response's first line holds it as words of their own,
both normalised as SQuAD's exact match normalises them (case, punctuation and articles dropped). LLM-Adapters reads
such an answer as the response's first word, which scored every response "The" and every trial 0. Options named
by lower-case letters ("a" to "e") are read as letters standing alone, but not the article "a" ("this is a trick;
the answer is c" answers c, where the set of words read the article as the option a).

Where a task's gold responses state their answer (``stated``: "The answer is (D)." after a rationale, "the correct
answer is answer3"; decided from the task's own training records by ``responses_state_answers``), the answer a
response states is read first, and generation is not cut before the statement: a rationale's own letters ("Let A
be the marked price") are not its answer. Reading the first letter misread 19 of the 254 gold responses of
LLM-Adapters' AQuA test set, and cut generation at that letter.

Here, not in workers/generation.py, so that the data loader decides ``stated`` on the driver without importing
torch; workers/generation.py decodes with these rules.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
# A numeric answer stated and closed: "the answer is 42." (or "$42", "42.5") and the sentence ended, by a full stop
# and a character that cannot continue the number, or by a line break. Not at "the answer is 4 blue boxes and 3
# red ones": the number read is the response's last, and such a sentence goes on to name others (18 of
# LLM-Adapters' 1,313 GSM8K gold responses and 15 of SVAMP's 1,000 were cut so at a number they do not end on).
_STATED_NUMBER = re.compile(r"answer is:?\s*\$?\s*-?\d+(?:\.\d+)?(?:\.(?!\d)[^\d]|[ \t]*\n)", re.IGNORECASE)
_BLANK_LINE_AFTER_NUMBER = re.compile(r"\d[^\n]*\n\s*\n")


def _numeric(gold: str) -> bool:
    return _NUMBER.fullmatch(gold.strip()) is not None


@functools.lru_cache(maxsize=16)
def _any_of(words: tuple[str, ...]) -> re.Pattern[str]:
    """The first of ``words`` standing as a word of its own (longest first, so "not_entailment" is not read as
    "entailment"), in any case."""
    alternatives = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", flags=re.IGNORECASE)


# "the answer is", "The correct answer is: (D)", "answer is 'true'": where a stated answer begins.
_STATEMENT = re.compile(r"answer is:?\s*[(\[\"'“]?\s*", re.IGNORECASE)


@dataclass(frozen=True)
class AnswerReading:
    """How a task's responses give their answer: ``words``, the task's closed set of answers (or empty);
    ``stated``, whether its gold responses state the answer ("the answer is ...") rather than lead with it
    (``responses_state_answers``)."""

    words: tuple[str, ...] = ()
    stated: bool = False

    def read(self, generated: str, gold: str) -> str:
        return extract_answer(generated, gold, self.words, stated=self.stated)

    def given(self, generated: str, gold: str) -> bool:
        return answer_given(generated, gold, self.words, stated=self.stated)


# Reading without a task's set of words or statements: LLM-Adapters' rules as they stand.
PLAIN_READING = AnswerReading()


@functools.lru_cache(maxsize=64)
def _answer_form(gold: str, words: tuple[str, ...]) -> re.Pattern[str] | None:
    """What an answer of the gold answer's form looks like (for every gold answer that is not a number), or None
    for an open answer (no form and no closed set); ``words``: the task's closed set of answers, or empty. Cached:
    asked at every decoding step of every row."""
    gold = gold.strip()
    stem = re.fullmatch(r"([A-Za-z]+)\d+", gold)
    if stem:  # answer1..5, option1/2, solution1/2, ending1..4
        return re.compile(rf"{stem.group(1)}\d+", flags=re.IGNORECASE)
    if gold.lower() in ("true", "false"):
        return re.compile(r"\b(true|false)\b", flags=re.IGNORECASE)
    if re.fullmatch(r"[A-E]", gold):
        return re.compile(r"\b([A-E])\b")
    # lower-case option letters only: a set in capitals keeps one reading whichever its gold answer (LLM-Adapters'
    # rule for A to E, the set of words past them), so that a response is read alike in every record
    letters = tuple(words) if words else tuple("abcde")  # without a closed set: LLM-Adapters' five options
    if gold in letters and all(len(letter) == 1 and letter.isalpha() and letter.islower() for letter in letters):
        return _option_letters(letters)
    if words:
        return _any_of(words)
    return None


@functools.lru_cache(maxsize=16)
def _option_letters(letters: tuple[str, ...]) -> re.Pattern[str]:
    """Options named by lower-case letters ("a" ... "e", or a task's own closed set of them), read in any case
    where the letter stands as a word of its own: "a" and "i" not where a word follows them ("is", "or" and "and"
    aside), for there they are the article and the pronoun ("this is a trick", "I think"), and no letter of an
    abbreviation ("e.g."). Gold answers "A" to "E" keep LLM-Adapters' rule instead (any capital standing alone), so
    that its tables compare."""
    def alternative(letter: str) -> str:
        spelled = f"[{letter.lower()}{letter.upper()}]"
        return rf"{spelled}(?!\s+(?!(?:is|or|and)\b)[A-Za-z]{{2}})" if letter.lower() in "ai" else spelled

    alternatives = "|".join(alternative(letter) for letter in sorted(set(letters)))
    return re.compile(rf"(?<![\w.])(?:{alternatives})(?![\w'’]|\.\w)")


_ARTICLES = re.compile(r"\b(?:a|an|the)\b")
# Where an open answer's statement ends: a full stop closing the sentence, a line break or the text's end.
_OPEN_SPAN = re.compile(r"([^\n]*?)(?=\.(?:\s|$)|\n|$)")
# Past an open answer's end: the sentence closed by a full stop and a space, or the line ended. A full stop the text
# ends on may be an abbreviation's ("D.C."), so generation goes on there.
_OPEN_END = re.compile(r"\.\s|\n")


def normalise_answer(text: str) -> str:
    """An answer as SQuAD's exact match compares it: lower case, punctuation and articles dropped, spaces single."""
    text = "".join(ch for ch in text.lower() if not unicodedata.category(ch).startswith("P"))
    return " ".join(_ARTICLES.sub(" ", text).split())


def _open_answer(text: str, gold: str, stated: bool) -> str:
    """An open answer: the gold answer as spelled where the response's first line (or, for a task whose responses
    state their answer, its statement) holds it as words of their own, else that line as written."""
    statement = _stated_answer(text, gold) if stated else None
    given = statement[0] if statement is not None else text.lstrip().split("\n", 1)[0]
    wanted = normalise_answer(gold)
    if wanted and f" {wanted} " in f" {normalise_answer(given)} ":
        return gold.strip()
    return given.strip()


def _open_answer_given(text: str, gold: str, stated: bool) -> bool:
    """Whether an open answer's line (or statement) has ended, so generating on cannot change what is read."""
    if not stated:
        return "\n" in text.lstrip()
    statement = _stated_answer(text, gold)
    return statement is not None and _OPEN_END.match(text, statement[1]) is not None


def _first_answer(text: str, gold: str, words: Sequence[str] = ()) -> re.Match[str] | None:
    """The first answer of the gold answer's form in ``text`` (a gold answer of a closed form)."""
    form = _answer_form(gold, tuple(words))
    return None if form is None else form.search(text)


def _stated_answer(text: str, gold: str, words: Sequence[str] = ()) -> tuple[str, int] | None:
    """The answer the response's first statement of one gives ("The answer is (D)" → D), with where it ends in
    ``text``; None where no statement is followed by an answer of the gold answer's form."""
    form = _answer_form(gold, tuple(words)) or _OPEN_SPAN  # an open answer: the rest of the statement's sentence
    for statement in _STATEMENT.finditer(text):
        found = form.match(text, statement.end())
        if found is not None and found.group(0).strip():
            return found.group(0), found.end()
    return None


def extract_answer(generated: str, gold: str, words: Sequence[str] = (), *, stated: bool = False) -> str:
    """The answer a response gives, read the way the gold answer is written (``words``: the task's closed set of
    answers, or empty; ``stated``: the answer a statement gives comes first, where the response makes one)."""
    text = generated.replace(",", "")
    if _numeric(gold):
        numbers = _NUMBER.findall(text)
        return numbers[-1] if numbers else ""
    if _answer_form(gold.strip(), tuple(words)) is None:
        return _open_answer(text, gold, stated)
    if stated and (statement := _stated_answer(text, gold, words)) is not None:
        return statement[0]
    found = _first_answer(text, gold, words)
    return found.group(0) if found else ""


def answers_match(predicted: str, gold: str) -> bool:
    if _numeric(gold) and _NUMBER.fullmatch(predicted):
        return abs(float(predicted) - float(gold)) < 1e-4
    return predicted.strip().lower() == gold.strip().lower()


def answer_given(generated: str, gold: str, words: Sequence[str] = (), *, stated: bool = False) -> bool:
    """Whether the response so far has given its answer, so generating on cannot change what is read from it
    (first-found answers; with ``stated``, the first statement of one) or the response has stated it (numeric
    answers). A stated task's response is not cut at a form of the answer before its statement: a rationale may
    name a letter it does not answer with."""
    text = generated.replace(",", "")
    if _numeric(gold):
        return bool(_STATED_NUMBER.search(text) or _BLANK_LINE_AFTER_NUMBER.search(text))
    if _answer_form(gold.strip(), tuple(words)) is None:
        return _open_answer_given(text, gold, stated)
    if stated:
        statement = _stated_answer(text, gold, words)
        return statement is not None and statement[1] < len(text)
    found = _first_answer(text, gold, words)
    return found is not None and found.end() < len(text)


def responses_state_answers(responses: Sequence[str], answers: Sequence[str]) -> bool:
    """Whether a task's gold responses state their answer ("the answer is ..."): true where most of those with a
    word answer (not a number) give it in a statement. Decided from the task's own records, as ``words`` is."""
    worded = [(r, a) for r, a in zip(responses, answers) if r.strip() and not _numeric(str(a))]
    if not worded:
        return False
    stating = sum(_stated_answer(r.replace(",", ""), str(a)) is not None for r, a in worded)
    return stating * 2 > len(worded)
