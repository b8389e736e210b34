"""The questions and options of a multiple-choice task (model.task: multiple-choice): a question (or context) and a
few options, one of them right, as SWAG, HellaSwag, PIQA, COPA, ARC, OpenBookQA and Social IQa are published.

- The options: a column each (PIQA's ``sol1``, ``sol2``; SWAG's ``ending0`` ... ``ending3``), an empty cell
  meaning the row has fewer options; or one column holding each row's options as a list (HellaSwag's
  ``endings``), as ARC's ``{text: [...], label: [...]}``, or as a JSON list written into a .csv cell.
- The right option (``data.label_column``), read in this order: a name listed in ``data.label_values`` (the
  options' names in option order, e.g. WinoGrande's "1", "2"); one of the row's own option labels (ARC's
  ``answerKey`` among its choices' labels); an integer, the option's position from 0 (PIQA, SWAG, HellaSwag); a
  single letter, A for the first option; the option's text itself.

Each option is read as the second text of a pair after the question, as transformers' multiple-choice heads read
it; the model scores each pair with one output, and the question's options compete in a softmax
(workers/tasks.py, MultipleChoiceRunner). A sequence-classification head with one output does the scoring, not
transformers' ``*ForMultipleChoice``: every architecture has one (decoders have no multiple-choice class) and every
PEFT method wraps it, prefix and prompt tuning included (docs/decisions.md, "Several options, one right").
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from autopeft.errors import UserError
from autopeft.spec import DataSpec, label_text

MULTIPLE_CHOICE = "multiple-choice"
# The columns each row's options and the position of its right option ride along in, through hold-out and subsets
OPTIONS_COLUMN, ANSWER_COLUMN = "\0options", "\0answer"
# The pair columns the tokenizer reads: the question, then one option
QUESTION_TEXT, OPTION_TEXT = "\0question", "\0option"
_INTEGER = re.compile(r"-?\d+")
_LETTER = re.compile(r"[A-Za-z]")


def is_missing(cell: Any) -> bool:
    """An empty cell (None, NaN, pandas' NA, blank text); a list or mapping is a value, however empty."""
    if isinstance(cell, (list, tuple, np.ndarray, Mapping)):
        return False
    return bool(pd.isna(cell)) or (isinstance(cell, str) and not cell.strip())


def listed_options(cell: Any) -> tuple[list[Any], list[str] | None] | None:
    """A cell that holds a row's options: their texts and, where given (ARC's choices), their labels; None for a
    cell of one text."""
    if isinstance(cell, str) and cell.lstrip().startswith(("[", "{")):
        try:
            cell = json.loads(cell)
        except ValueError:
            return None
    if isinstance(cell, Mapping):
        texts = cell.get("text")
        labels = cell.get("label")
        if not isinstance(texts, (list, tuple, np.ndarray)):
            return None
        named = None if not isinstance(labels, (list, tuple, np.ndarray)) or len(labels) != len(texts) else \
            [label_text(v) for v in labels]
        return list(texts), named
    if isinstance(cell, (list, tuple, np.ndarray)):
        return list(cell), None
    return None


def row_options(row: Mapping[str, Any] | pd.Series, data: DataSpec,
                row_name: Callable[[], str]) -> tuple[list[str | None], list[str] | None]:
    """One row's options in order (None where a column's cell is empty) and their own labels, if the data gives
    them."""
    columns = data.choice_columns
    if len(columns) == 1:
        listed = listed_options(row[columns[0]])
        if listed is None:
            raise UserError(f"data.choice_columns: column {columns[0]!r} holds {str(row[columns[0]])[:60]!r} in "
                            f"{row_name()}, one text; name a column per option (choice_columns: [sol1, sol2]), or "
                            "give each row its options as a list")
        texts, labels = listed
        return [None if is_missing(t) else str(t) for t in texts], labels
    return [None if is_missing(row[c]) else str(row[c]) for c in columns], None


def _answer_position(cell: Any, options: list[str | None], own_labels: list[str] | None, data: DataSpec,
                     row_name: Callable[[], str]) -> tuple[int, bool]:
    """Which option ``cell`` names (the module's docstring gives the order the forms are read in), and whether it
    was read as a position (an integer)."""
    text = label_text(cell)
    if data.label_values is not None:
        if text in data.label_values:
            return data.label_values.index(text), False
        raise UserError(f"data.label_values: {row_name()} answers {text!r}, which is not one of "
                        f"{data.label_values}; add it there, or correct the row")
    if own_labels is not None and text in own_labels:
        return own_labels.index(text), False
    stripped = [None if o is None else o.strip() for o in options]
    as_text = stripped.index(text.strip()) if text.strip() in stripped else None
    for form, pattern, position, fix in (
            ("a position from 0", _INTEGER, lambda: int(text), "write the answers as letters, A for the first option"),
            ("a letter", _LETTER, lambda: ord(text.upper()) - ord("A"), "write the answers as positions from 0")):
        if pattern.fullmatch(text):
            if as_text is not None and as_text != position():
                # options that are numbers or letters themselves: which one is meant cannot be told
                raise UserError(f"data.label_column: {row_name()} answers {text!r}, the text of option {as_text} "
                                f"and, read as {form}, option {position()}: {fix}, or list what the answers call "
                                "the options, in order, in data.label_values")
            return position(), form == "a position from 0"
    if as_text is not None:
        return as_text, False
    raise UserError(f"data.label_column: {row_name()} answers {text!r}, which names none of its options (by "
                    "position from 0, a letter A, B, ..., the option's label or its text); name the right option "
                    "so, or list what the answers call the options, in order, in data.label_values")


def with_options(frame: pd.DataFrame, data: DataSpec, row_name: Callable[[int], str]) -> pd.DataFrame:
    """``frame`` with each row's options (a list of text, None for an empty one) in OPTIONS_COLUMN and the
    position of its right option in ANSWER_COLUMN. A row with fewer than two options, or whose answer names an
    option it lacks, is refused naming it; so are answers that count from 1 (``_refuse_counting_from_one``)."""
    options, answers, positions = [], [], []
    for position, (_, row) in zip(frame.index, frame.iterrows()):
        def name(p: int = int(position)) -> str:
            return row_name(p)

        given_options, own_labels = row_options(row, data, name)
        given = sum(o is not None for o in given_options)
        if given < 2:
            raise UserError(f"data.choice_columns: {name()} has {given} option{'s' if given != 1 else ''}; a "
                            "question needs two or more to choose among: fill them in or remove the row")
        answer, by_position = _answer_position(row[data.label_column], given_options, own_labels, data, name)
        positions.append(by_position)
        if not 0 <= answer < len(given_options) or given_options[answer] is None:
            raise UserError(f"data.label_column: {name()} answers {label_text(row[data.label_column])!r}, option "
                            f"{answer} counted from 0, and the row has {len(given_options)} options"
                            f"{'' if answer >= len(given_options) or answer < 0 else ' (that one empty)'}; positions "
                            "count from 0 (answers counted from 1: list them in data.label_values, e.g. "
                            "[\"1\", \"2\"])")
        options.append(given_options)
        answers.append(answer)
    if all(positions):
        _refuse_counting_from_one(answers, options)
    return frame.assign(**{OPTIONS_COLUMN: options, ANSWER_COLUMN: answers})


# Rows enough that answers counted from 0 would name the first option at least once: (3/4)^32 < 0.0001 for four
# options right equally often
_ROWS_TO_TELL = 32


def _refuse_counting_from_one(answers: list[int], options: list[list[str | None]]) -> None:
    """Integer answers that never name the first option but do name the last are answers counted from 1
    (WinoGrande's "1"/"2", COPA's 1/2 in some copies): read from 0 they would shift every answer by one, the
    last one out of range or, where it fits, a wrong option trained in silence."""
    if len(answers) >= _ROWS_TO_TELL and min(answers) >= 1 and any(a == len(o) - 1 for a, o in zip(answers, options)):
        width = max(len(o) for o in options)
        raise UserError(f"data.label_column: every answer is a number from 1 to "
                        f"{max(answers)}, none is 0: if they count the options from 1, set data.label_values: "
                        f"{[str(i) for i in range(1, width + 1)]} (positions count from 0)")


def option_pairs(frame: pd.DataFrame, data: DataSpec) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Every (question, option) pair of the rows, an option per row of the result, in row then option order;
    where each row's pairs begin (rows + 1 offsets); and each row's right option among its pairs. An empty option
    has no pair: it cannot be chosen."""
    questions = frame[data.text_columns].astype(str).agg(" ".join, axis=1).tolist()
    pair_questions, pair_options, starts, answers = [], [], [0], []
    for question, options, answer in zip(questions, frame[OPTIONS_COLUMN], frame[ANSWER_COLUMN]):
        kept = [i for i, o in enumerate(options) if o is not None]
        pair_questions.extend([question] * len(kept))
        pair_options.extend(options[i] for i in kept)
        starts.append(starts[-1] + len(kept))
        answers.append(kept.index(answer))
    return (pd.DataFrame({QUESTION_TEXT: pair_questions, OPTION_TEXT: pair_options}),
            np.asarray(starts, dtype=np.int64), np.asarray(answers, dtype=np.int64))


def tokenize_options(frame: pd.DataFrame, data: DataSpec, tokenizer):
    """One split's questions as (question, option) pairs tokenised as text pairs, with each question's right
    option; and each pair's uncut length (for the note on cut texts)."""
    from autopeft.tasks.data import tokenize_texts

    pairs, starts, answers = option_pairs(frame, data)
    split, lengths = tokenize_texts(pairs, data.model_copy(update={"text_columns": [QUESTION_TEXT, OPTION_TEXT]}),
                                    tokenizer, labels=answers)
    split.option_starts = starts
    return split, lengths


def option_scores(logits: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Each question's options' scores (questions × the most options; -inf where a question has fewer), from
    the one output per pair."""
    counts = np.diff(starts)
    scores = np.full((len(counts), int(counts.max())), -np.inf, dtype=np.float32)
    rows = np.repeat(np.arange(len(counts)), counts)
    scores[rows, np.arange(len(rows)) - starts[:-1][rows]] = logits.reshape(-1)
    return scores
