"""Multiple-choice data recognised by ``autopeft init`` (autopeft/tasks/draft.py): a question and a few options,
one of them right, as SWAG, HellaSwag, PIQA, COPA, ARC, OpenBookQA, Social IQa and WinoGrande are published,
drafted as ``model.task: multiple-choice`` (read by autopeft/tasks/choices.py).

- The options: two or more text columns sharing a stem, numbered or lettered in order (PIQA's ``sol1``, ``sol2``;
  SWAG's ``ending0`` ... ``ending3``; COPA's ``choice1``, ``choice2``; WinoGrande's ``option1``, ``option2``;
  Social IQa's ``answerA`` ... ``answerC``), or one column holding each row's options as a list (HellaSwag's
  ``endings``) or as ``{text: [...], label: [...]}`` (ARC's and OpenBookQA's ``choices``).
- The answer: the column whose every value names one of its row's options as the reader reads it (the choices' own
  labels, a position from 0, a letter, the option's text). Numbers that are never 0 and reach the last option count
  from 1 (WinoGrande's "1"/"2": read from 0, a "2" is past its two options, and in a longer file the reader refuses
  them); those, answers naming the option columns ("choice1", as a `datasets` copy of COPA names its classes) and
  answers in a fixed wording ("Option 2", "(B)") are drafted with ``data.label_values`` listing them in option
  order.
- The question: by the published names (Social IQa's context and question, COPA's premise and question, SWAG's
  sent1 and sent2, HellaSwag's ctx, PIQA's goal, ...), else the first column left of mostly distinct sentences.

Nothing else is read so. The options must be named as options (their stem or list column), or the answer as an
answer ("answer", "answerKey": not a classifier's "label"), and nine rows in ten must have an answer naming one of
their options: a pair of texts beside a label (MRPC's sentence1, sentence2) stays a classification, and a list of
words beside a sentence's label stays what it was. Answers that are their option's text, where some texts are
numbers or single letters, are refused with the fix: the reader would take them for positions or letters.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from autopeft.errors import UserError
from autopeft.spec import DataSpec, label_text
from autopeft.tasks.choices import MULTIPLE_CHOICE, is_missing, listed_options, row_options

# Stems of option columns (sol1, ending0, choice1, option1, answerA, hypothesis_1) and names of a column holding
# each row's options, as the published sets name them
OPTION_STEMS = ("ending", "endings", "sol", "solution", "choice", "option", "answer", "ans", "opt", "candidate",
                "alternative", "alt", "hyp", "hypothesis")
OPTION_LISTS = ("choices", "endings", "options", "answers", "candidates", "alternatives", "answer_choices")
# Stems of numbered columns that are the question, never options (SWAG's sent1, sent2; HellaSwag's ctx_a, ctx_b)
QUESTION_STEMS = ("sent", "sentence", "ctx", "context", "question", "premise", "obs", "observation", "text",
                  "passage", "article", "document", "query", "title", "fact")
# Names only an answer column has; names a classifier's label has too, trusted beside options named as options
ANSWER_NAMES = ("answer", "answerkey", "answer_key", "answer_idx", "answer_index", "answer_id", "correct_answer",
                "correct_option", "correct", "gold", "key")
LABEL_NAMES = ("label", "labels", "target", "gold_label", "correct_label", "y")
# The question's columns, in order of preference: the published pairs (Social IQa, COPA, RACE, SWAG, ART) before
# one column, so that a context is not read without its question
QUESTION_FORMS = (("context", "question"), ("premise", "question"), ("article", "question"), ("passage", "question"),
                  ("sent1", "sent2"), ("ctx",), ("ctx_a", "ctx_b"), ("observation_1", "observation_2"),
                  ("obs1", "obs2"), ("question",), ("question_stem",), ("goal",), ("sentence",), ("startphrase",),
                  ("context",), ("premise",), ("stem",), ("prompt",), ("query",), ("text",), ("passage",),
                  ("article",))
ANSWERED_SHARE = 0.9  # rows whose answer names one of their options; the rest are named when the data is read
_NUMBERED = re.compile(r"(?P<stem>.*?[A-Za-z])[_ -]?(?P<mark>\d+)")
# answerA (camel case), option_a / "Option A" (after a separator), or a bare capital (MMLU's A, B, C, D)
_LETTERED = re.compile(r"(?P<stem>.*?[a-z0-9])(?P<mark>[A-Z])|(?P<stem2>.*?)[_ -](?P<mark2>[A-Za-z])|(?P<mark3>[A-Z])")
_INTEGER = re.compile(r"-?\d+")
_LETTER = re.compile(r"[A-Za-z]")
# An answer in a fixed wording around the option's number or letter: "Option 2", "(B)", "B)", "answer_3"
_WORDED = re.compile(r"(?P<before>.*?)(?P<mark>\d+|[A-Za-z])(?P<after>\W*)")
_LISTS = (list, tuple, np.ndarray)
# A row's options (None for an empty one) and their own labels, where the data gives them
_Row = tuple[list[str | None], list[str] | None]


@dataclass
class _Options:
    """Each row's options (None where its cell holds none) and their own labels, from ``columns``."""

    columns: list[str]
    listed: bool
    named: bool
    rows: list[_Row | None]

    @property
    def width(self) -> int:
        return max((len(row[0]) for row in self.rows if row is not None), default=0)


@dataclass
class _Answer:
    """The answer column, the names it gives the options (``data.label_values``) where the reader needs them, and
    how it names them (said to the user)."""

    column: str
    label_values: list[str] | None
    how: str


def choice_form(frame: pd.DataFrame, reasons: list[str]) -> tuple[dict[str, Any], str, str] | None:
    """The data fields, task and metric of a multiple-choice table (``reasons`` told what was read), or None where
    no columns hold options with an answer naming one of them."""
    found = _options_and_answer(frame)
    if found is None:
        return None
    options, answer = found
    question = _question(frame, {*options.columns, answer.column})
    if question is None:
        raise UserError(f"train: {_described(options)} hold each row's options and {answer.column!r} the right one, "
                        f"but no column holds the question among {list(frame.columns)}; add one (a question, "
                        "context or sentence each row), or write the spec's data.text_columns yourself")
    fields: dict[str, Any] = {"text_columns": question, "choice_columns": options.columns,
                              "label_column": answer.column}
    if answer.label_values is not None:
        fields["label_values"] = answer.label_values
    _say(frame, options, answer, question, reasons)
    return fields, MULTIPLE_CHOICE, "accuracy"


def _options_and_answer(frame: pd.DataFrame) -> tuple[_Options, _Answer] | None:
    """The first option columns (named ones first) beside which a column answers nearly every row."""
    candidates = sorted(_option_candidates(frame), key=lambda o: not o.named)
    for options in candidates:
        for column in _answer_candidates(frame, options):
            answer = _read_answers(frame[column], options)
            if answer is not None:
                return options, answer
    for options in candidates:
        for column in _answer_candidates(frame, options):
            _refuse_texts_read_as_positions(frame[column], options)
    return None


def _refuse_texts_read_as_positions(cells: pd.Series, options: _Options) -> None:
    """Answers that are each their right option's text, where some texts are numbers or single letters ("8"
    among "4", "6", "8", "10"): the reader takes those for a position or a letter, so no spec reads them right,
    and drafted as a classification they would train a model to choose among the answers seen."""
    rows = [(label_text(cell).strip(), row[0]) for cell, row in zip(cells, options.rows)
            if not is_missing(cell) and row is not None]
    if not rows or len(rows) < ANSWERED_SHARE * len(cells) or \
            not all(text in [o.strip() for o in texts if o is not None] for text, texts in rows):
        return
    misread = next((text for text, _ in rows if _INTEGER.fullmatch(text) or _LETTER.fullmatch(text)), None)
    if misread is not None:
        raise UserError(f"train: column {cells.name!r} answers each row by its right option's text, and some "
                        f"answers, such as {misread!r}, are numbers or single letters, which are read as the option's "
                        f"position from 0 or its letter; write each answer as its option's position among "
                        f"{_described(options)} (from 0; or a letter, A for the first), then draft again")


def _option_candidates(frame: pd.DataFrame) -> list[_Options]:
    """Groups of numbered or lettered text columns, then columns of lists of options, in the frame's order."""
    groups: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for column in frame.columns:
        marked = _marked(str(column))
        if marked is not None and marked[0].lower() not in QUESTION_STEMS:
            stem, mark = marked
            groups.setdefault((stem.lower(), "number" if mark.isdigit() else "letter"), []).append((mark, column))
    found = []
    for (stem, _), members in groups.items():
        columns = _in_order(members)
        named = stem in OPTION_STEMS
        if columns is not None and all(_holds_options(frame[c], strict=not named) for c in columns):
            found.append(_Options(columns, False, named, _rows_of(frame, columns)))
    for column in frame.columns:
        if _holds_option_lists(frame[column]):
            found.append(_Options([column], True, str(column).lower() in OPTION_LISTS, _rows_of(frame, [column])))
    return found


def _marked(column: str) -> tuple[str, str] | None:
    """A column name's stem and its number or letter (sol1: sol, 1; answerA: answer, A), or None."""
    numbered = _NUMBERED.fullmatch(column)
    if numbered is not None:
        return numbered["stem"], numbered["mark"]
    lettered = _LETTERED.fullmatch(column)
    if lettered is None:
        return None
    if lettered["mark"] is not None:
        return lettered["stem"], lettered["mark"]
    if lettered["mark2"] is not None:
        return lettered["stem2"], lettered["mark2"]
    return "", lettered["mark3"]


def _in_order(members: list[tuple[str, str]]) -> list[str] | None:
    """The columns in their marks' order, where the marks run without a gap from 0 or 1, or from A; else None (a
    lone column, or columns numbered as something else: years, versions)."""
    if len(members) < 2:
        return None
    if members[0][0].isdigit():
        numbers = sorted((int(mark), column) for mark, column in members)
        first = numbers[0][0]
        ordered = first in (0, 1) and [n for n, _ in numbers] == list(range(first, first + len(numbers)))
        return [column for _, column in numbers] if ordered else None
    letters = sorted((mark.upper(), column) for mark, column in members)
    ordered = [m for m, _ in letters] == [chr(ord("A") + i) for i in range(len(letters))]
    return [column for _, column in letters] if ordered else None


def _holds_options(column: pd.Series, strict: bool) -> bool:
    """Cells of one option each: single values, some filled; and where the columns are not named as options,
    texts rather than numbers (a table's x1, x2 are features)."""
    values = column[~column.map(is_missing)]
    if values.empty or any(isinstance(v, (*_LISTS, Mapping)) for v in values):
        return False
    if not strict:
        return True
    return all(isinstance(v, str) for v in values) and pd.to_numeric(values, errors="coerce").notna().mean() <= 0.9


def _holds_option_lists(column: pd.Series) -> bool:
    """Every filled cell a list of single values, or ``{text: [...]}`` (written as JSON in a .csv)."""
    values = [v for v in column if not is_missing(v)]
    return bool(values) and all(_is_option_list(v) for v in values)


def _is_option_list(cell: Any) -> bool:
    """A list of single values, or ``{text: [...]}``, as the reader takes a row's options (JSON in a .csv too)."""
    listed = listed_options(cell)
    return listed is not None and all(not isinstance(v, (*_LISTS, Mapping)) for v in listed[0])


def _rows_of(frame: pd.DataFrame, columns: list[str]) -> list[_Row | None]:
    """Each row's options and their own labels as the reader reads them; None for a row whose cell holds none."""
    reading = DataSpec.model_construct(choice_columns=columns)
    rows: list[_Row | None] = []
    for row in frame[columns].to_dict("records"):
        try:
            rows.append(row_options(row, reading, lambda: "a row"))
        except UserError:
            rows.append(None)
    return rows


def _answer_candidates(frame: pd.DataFrame, options: _Options) -> list[str]:
    """Columns that may hold the answer, most likely first: named as answers; then, beside options named as
    options, named as labels, then any column of single values."""
    columns = [c for c in frame.columns if c not in options.columns and not any(
        isinstance(v, (*_LISTS, Mapping)) for v in frame[c])]
    ranked = sorted((c for c in columns if str(c).lower() in ANSWER_NAMES),
                    key=lambda c: ANSWER_NAMES.index(str(c).lower()))
    if options.named:
        ranked += sorted((c for c in columns if str(c).lower() in LABEL_NAMES),
                         key=lambda c: LABEL_NAMES.index(str(c).lower()))
        ranked += [c for c in columns if c not in ranked]
    return ranked


def _read_answers(cells: pd.Series, options: _Options) -> _Answer | None:
    """How ``cells`` name their rows' options, where nine rows in ten are answered so: as the reader reads them,
    counted from 1, or by names (:data:`_Answer.label_values`); None where they name no options."""
    answered = [(label_text(cell), row) for cell, row in zip(cells, options.rows)
                if not is_missing(cell) and row is not None and sum(o is not None for o in row[0]) >= 2]
    if not answered or len(answered) < ANSWERED_SHARE * len(cells):
        return None
    counted = _counted_from_one(answered, options.width)
    if counted is not None:
        return _Answer(str(cells.name), counted, "its number, counting from 1")
    how = _as_read(answered)
    if how is not None:
        never_zero = _never_zero(answered, options.width) if how == "its position from 0" else ""
        return _Answer(str(cells.name), None, how + never_zero)
    named = _names(answered, options)
    return None if named is None else _Answer(str(cells.name), named, "its name")


def _as_read(answered: list[tuple[str, _Row]]) -> str | None:
    """How the answers name their options as the reader reads them (its order: the options' own labels, a position
    from 0, a letter, the text), where every one names an option of its row, and the one whose text it is where it
    is an option's text (an option "4" answered "4" is read as position 4: not this); else None."""
    kinds: list[str] = []
    for text, (texts, labels) in answered:
        position, kind = _position(text, texts, labels)
        if position is None or not 0 <= position < len(texts) or texts[position] is None:
            return None
        if kind != "its text" and _another_options_text(text, texts, position):
            return None
        if kind not in kinds:
            kinds.append(kind)
    return " or ".join(kinds)


def _another_options_text(text: str, texts: list[str | None], position: int) -> bool:
    """``text`` is the text of an option other than the one at ``position``: an answer that may mean that one."""
    stripped = [None if t is None else t.strip() for t in texts]
    return text.strip() in stripped and stripped[position] != text.strip()


def _position(text: str, texts: list[str | None], labels: list[str] | None) -> tuple[int | None, str]:
    """The option ``text`` names, read in the reader's order (autopeft/tasks/choices.py), and how."""
    if labels is not None and text in labels:
        return labels.index(text), "the choices' own labels"
    if _INTEGER.fullmatch(text):
        return int(text), "its position from 0"
    if _LETTER.fullmatch(text):
        return ord(text.upper()) - ord("A"), "a letter, A for the first"
    stripped = [None if t is None else t.strip() for t in texts]
    return (stripped.index(text.strip()), "its text") if text.strip() in stripped else (None, "")


def _counted_from_one(answered: list[tuple[str, _Row]], width: int) -> list[str] | None:
    """``["1", ..., width]`` where every answer is a number that is never 0 and some reach their row's last option
    (read from 0, one past it, or the last: what the reader refuses as counting from 1 in a file of enough rows),
    none is one of its row's own labels, and none is the text of another option (numbers as options: "2", "4");
    else None."""
    if not all(_INTEGER.fullmatch(text) and (labels is None or text not in labels)
               for text, (_, labels) in answered):
        return None
    numbers = [(int(text), texts) for text, (texts, _) in answered]
    fits = all(1 <= n <= len(texts) and texts[n - 1] is not None and not _another_options_text(str(n), texts, n - 1)
               for n, texts in numbers)
    if not fits or not any(n >= len(texts) - 1 for n, texts in numbers):
        return None
    return [str(i) for i in range(1, width + 1)]


def _never_zero(answered: list[tuple[str, _Row]], width: int) -> str:
    """Said where positions from 0 never name the first option: they may count from 1 (too few rows reach the
    last option to tell), which label_values would say."""
    if not all(_INTEGER.fullmatch(text) for text, _ in answered) or min(int(text) for text, _ in answered) < 1:
        return ""
    return (f" (none is 0: if they count the options from 1, set data.label_values: "
            f"{[str(i) for i in range(1, width + 1)]})")


def _names(answered: list[tuple[str, _Row]], options: _Options) -> list[str] | None:
    """The options' names in order, where every answer names one so: an option column's name ("choice1"), or a
    fixed wording around its number from 1 or its letter ("Option 2", "(B)"); else None."""
    said = {text for text, _ in answered}
    if not options.listed and said <= set(options.columns):
        names = list(options.columns)
    else:
        names = _worded_names(said, options.width)
    if names is None:
        return None
    fits = all(text in names and names.index(text) < len(texts) and texts[names.index(text)] is not None
               for text, (texts, _) in answered)
    return names if fits else None


def _worded_names(said: set[str], width: int) -> list[str] | None:
    """Names of one wording around a number from 1 or a letter from A, written for every option."""
    worded = [_WORDED.fullmatch(text) for text in said]
    if not worded or any(w is None for w in worded):
        return None
    wordings = {(w["before"], w["after"]) for w in worded}
    marks = [w["mark"] for w in worded]
    if len(wordings) != 1 or wordings == {("", "")}:
        return None
    before, after = wordings.pop()
    if all(m.isdigit() for m in marks) and "0" not in marks:
        return [f"{before}{i}{after}" for i in range(1, width + 1)]
    if all(_LETTER.fullmatch(m) for m in marks) and len({m.isupper() for m in marks}) == 1:
        first = "A" if marks[0].isupper() else "a"
        return [f"{before}{chr(ord(first) + i)}{after}" for i in range(width)]
    return None


def _question(frame: pd.DataFrame, used: set[str]) -> list[str] | None:
    """The question's columns: a published form's names, else the first column of mostly distinct sentences."""
    texts = {str(c).lower(): c for c in frame.columns if c not in used and _holds_text(frame[c])}
    for form in QUESTION_FORMS:
        if all(name in texts for name in form):
            return [texts[name] for name in form]
    sentences = [c for c in texts.values() if _holds_sentences(frame[c])]
    return sentences[:1] or None


def _holds_text(column: pd.Series) -> bool:
    values = column[~column.map(is_missing)]
    return not values.empty and all(isinstance(v, str) for v in values)


def _holds_sentences(column: pd.Series) -> bool:
    """Mostly distinct texts of several words: a question, not a category, a code or an id."""
    values = column[~column.map(is_missing)].astype(str)
    return values.nunique() >= 0.5 * len(values) and float(values.str.contains(r"\S\s+\S").mean()) >= 0.5


def _described(options: _Options) -> str:
    return f"column {options.columns[0]!r}" if options.listed else \
        f"columns {', '.join(map(repr, options.columns))}"


def _say(frame: pd.DataFrame, options: _Options, answer: _Answer, question: list[str], reasons: list[str]) -> None:
    """What was read, as the reasons beside the drafted fields."""
    counts = sorted({sum(o is not None for o in row[0]) for row in options.rows if row is not None})
    many = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]} to {counts[-1]}"
    form = "as a list in each row" if options.listed else "a column each"
    reasons.append(f"{_described(options)} hold{'s' if options.listed else ''} {many} options per row ({form}): "
                   "multiple-choice, each option read after the question as a text pair, the options of a question "
                   "scored against each other")
    reasons.append(f"question {question[0]!r}" if len(question) == 1 else
                   f"question {question[0]!r} and {question[1]!r}, joined by a space")
    said = f"answer {answer.column!r}: the right option by {answer.how}"
    if answer.label_values is not None:
        said += f"; data.label_values {answer.label_values} names the options in order"
    reasons.append(said)
    reasons.append("accuracy (the share of questions given their right option) as the metric")
    unread = [c for c in frame.columns if c not in {*options.columns, *question, answer.column}]
    if unread:
        reasons.append(f"not read: {', '.join(map(repr, unread))}")


def option_pair_texts(frame: pd.DataFrame, data: dict[str, Any]) -> list[tuple[str, str]]:
    """Every (question, option) pair of the rows, as the tokenizer will be given them (the question's columns
    joined by a space), for the length that keeps them whole; a row the reader would refuse is left out."""
    reading = DataSpec.model_construct(choice_columns=data["choice_columns"])
    questions = frame[data["text_columns"]].astype(str).agg(" ".join, axis=1)
    pairs = []
    for question, row in zip(questions, frame[data["choice_columns"]].to_dict("records")):
        try:
            texts, _ = row_options(row, reading, lambda: "a row")
        except UserError:
            continue
        pairs.extend((question, text) for text in texts if text is not None)
    return pairs
