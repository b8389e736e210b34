"""Closed-form answers read by likelihood (``data.answer_scoring: options``): the options and where they branch.

LLM-Adapters' commonsense records state their answer after the same words in every response ("the correct answer
is true", "... is answer3"). Greedy generation, which reads the answer from the generated text, decides it at one
token: the first token where the options' spellings part ("true" / "false", "1" / "2" after "answer"). Teacher-
forcing the gold response up to that token gives the model's next-token distribution there, so the option whose
first own token is the most likely is the answer greedy decoding gives whenever it reproduces the words before it,
read from the forward pass that already scores the gold response, with no decoding loop.

Because the gold response is fed up to the branch, the words before the answer must say nothing of the answer:
they must be the same words in every eval record. A rationale (math, AQuA) carries its answer, so those tasks are
refused here and keep ``answer_scoring: generate``. The options are the distinct gold answers of both splits, at
most ``MAX_OPTIONS`` and none a number; each record is scored among all of them (an ARC question with four options
can be answered "answer5", as generation can).

Built on the driver when the data is loaded, so a spec that does not fit is refused before any trial runs, naming
the field, the row and the fix; the worker reads the branch from the logits (workers/tasks.py).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from autopeft.errors import UserError

MAX_OPTIONS = 20
_NUMBER = re.compile(r"[+-]?\d+(?:\.\d+)?")
_FIX = "use answer_scoring: generate"


@dataclass(frozen=True)
class AnswerOptions:
    """The options as the gold answers spell them, the token each begins with at the branch, and the branch: the
    index, in every eval record's response tokens, of the token that names the answer."""

    names: list[str]
    token_ids: np.ndarray
    branch: int


def _options(answers: Sequence[str]) -> list[str]:
    names = sorted({a.strip() for a in answers})
    numbers = [n for n in names if _NUMBER.fullmatch(n)]
    if numbers:
        raise UserError(f"data.answer_scoring: 'options' chooses among a closed set of answers (true/false, "
                        f"answer1..., option letters), and the answers include the number {numbers[0]!r}; a number "
                        f"is not one of a few options: {_FIX}")
    if len(names) < 2 or len(names) > MAX_OPTIONS or any(not n or re.search(r"\s", n) for n in names):
        raise UserError(f"data.answer_scoring: 'options' needs 2 to {MAX_OPTIONS} one-word answers, and the data has "
                        f"{len(names)} distinct answers ({', '.join(map(repr, names[:5]))}"
                        f"{', ...' if len(names) > 5 else ''}): {_FIX}")
    return names


def answer_words(answers: Sequence[str]) -> list[str] | None:
    """The task's closed set of answers, for reading a generated response (workers/generation.py): every distinct
    gold answer of both splits, where there are 2 to ``MAX_OPTIONS`` of them and none is a number; else None.

    Why: a user's own classification task answers in words ("the sentiment is negative"); reading the response's
    first word, as LLM-Adapters does for an answer of no known form, reads "the" and scores every trial 0. With
    the set known, the answer is the first of its words the response states, as true/false is read."""
    names = sorted({a.strip() for a in answers})
    if not 2 <= len(names) <= MAX_OPTIONS or any(not n or "\n" in n or _NUMBER.fullmatch(n) for n in names):
        return None
    return names


def _words_before(response: str, answer: str) -> str | None:
    """The response up to the first place it states ``answer`` as a word of its own, or None. As spelled first,
    so that an option "A" is not found in the article "a"; in any case only where it is not found as spelled."""
    word = rf"(?<![\w]){re.escape(answer.strip())}(?![\w])"
    found = re.search(word, response) or re.search(word, response, flags=re.IGNORECASE)
    return None if found is None else response[:found.start()]


def _shared_template(responses: Sequence[str], answers: Sequence[str], rows: Sequence[str]) -> str:
    """The words every eval response states its answer after; refused where a response does not state it or
    another response puts other words before it."""
    template: str | None = None
    for response, answer, row in zip(responses, answers, rows):
        before = _words_before(response, answer)
        if before is None:
            raise UserError(f"data.answer_scoring: {row} has the response {response[:80]!r}, which does "
                            f"not state its answer {answer.strip()!r}; 'options' reads the answer where every "
                            f"response states it: {_FIX}")
        if template is None:
            template = before
        elif before != template:
            raise UserError(f"data.answer_scoring: 'options' needs every eval response to state its answer after the "
                            f"same words (LLM-Adapters' 'the correct answer is ...'), so that the words fed before "
                            f"the answer say nothing of it; the first response has {template[-60:]!r} before its "
                            f"answer and {row} has {before[-60:]!r}: {_FIX}")
    return template or ""


def answer_options(train_answers: Sequence[str], eval_answers: Sequence[str], eval_responses: Sequence[str],
                   eval_response_ids: Sequence[np.ndarray], tokenizer, eval_rows: Sequence[str]) -> AnswerOptions:
    """The options, their first own tokens and the branch, checked against every eval record's response tokens
    (``eval_response_ids``: the tokens after the prompt, as trained and scored); ``eval_rows`` names each record as a
    user finds it in the file ("data row 18 of test.json"), for the errors."""
    names = _options([*train_answers, *eval_answers])
    template = _shared_template(eval_responses, eval_answers, eval_rows)
    spelled = [tokenizer(template + name, add_special_tokens=False)["input_ids"] for name in names]
    branch = 0
    while all(len(s) > branch + 1 for s in spelled) and len({s[branch] for s in spelled}) == 1:
        branch += 1
    firsts = [s[branch] if len(s) > branch else None for s in spelled]
    if None in firsts or len(set(firsts)) < len(firsts):
        clash = [n for n, f in zip(names, firsts) if f is None or firsts.count(f) > 1]
        raise UserError(f"data.answer_scoring: the options {clash[:3]} begin with the same token after "
                        f"{template[-40:]!r}, so one token cannot tell them apart: {_FIX}")
    common = spelled[0][:branch]
    for response_ids, answer, row in zip(eval_response_ids, eval_answers, eval_rows):
        own = spelled[names.index(answer.strip())]
        if len(response_ids) <= branch:
            raise UserError(f"data.max_length: the record in {row} is cut before its answer, so its answer cannot be "
                            f"read; raise max_length (the prompt and response need more tokens)")
        if list(response_ids[:branch + 1]) != [*common, own[branch]]:
            raise UserError(f"data.answer_scoring: the response in {row} is tokenised differently from its "
                            f"words before the answer followed by the answer ({answer.strip()!r}), so the place "
                            f"where the answer is read is not where the options part: {_FIX}")
    return AnswerOptions(names=names, token_ids=np.asarray(firsts, dtype=np.int64), branch=branch)
