"""Task data: read the rows once, check them against the spec, tokenise once per search.

Tokenised examples are kept unpadded (one int array per example); batches are padded only to their own longest
example when they are formed, which on short-sentence tasks like SST-2 saves most of the compute. One tokeniser per
task: classification (a label per text or text pair), regression (a number per text or text pair, as in STS-B) and
causal-lm instruction tuning (LLM-Adapters' records: the response is scored, the prompt is not; evaluation
generates from the prompt and checks the answer).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from autopeft.errors import DataWarning, UserError
from autopeft.spec import HEADER_FORMATS, DataSpec, ModelSpec, SearchSpec, label_text
from autopeft.store.run_folder import PASSED_ROWS_NOTE
from autopeft.tasks.answer_options import AnswerOptions, answer_options, answer_words
from autopeft.tasks.answer_reading import responses_state_answers
from autopeft.tasks.chat_records import chat_turn, check_template, conversation
from autopeft.tasks.choices import MULTIPLE_CHOICE, tokenize_options, with_options
from autopeft.tasks.file_problems import separator_hint, unreadable_because
from autopeft.tasks.hf_datasets import dataset_frame
from autopeft.tasks.label_sets import (
    MULTI_LABEL,
    label_matrix,
    label_names,
    labels_in_order,
    note_label_use,
    with_label_sets,
)
from autopeft.tasks.tag_spans import tag_scheme
from autopeft.tasks.text_blocks import text_blocks
from autopeft.tasks.word_tags import (
    CONLL_SUFFIXES,
    TOKEN_CLASSIFICATION,
    note_untagged,
    read_conll,
    tag_names,
    tokenize_tagged,
    with_words_and_tags,
)

CLASSIFICATION = "sequence-classification"
# utf-8-sig: a byte-order mark (Excel, Notepad) is dropped instead of becoming part of the first column's name.
_TEXT_ENCODING = "utf-8-sig"


def _delimited(separator: str, quoting: int) -> Callable[[str, bool], pd.DataFrame]:
    """A .tsv/.csv reader: every cell as text, empty cells as "" (not NaN), with or without a header line."""
    return lambda path, header: pd.read_csv(path, sep=separator, quoting=quoting, keep_default_na=False, dtype=str,
                                            header=0 if header else None, encoding=_TEXT_ENCODING)


def _json_records(path: str, header: bool) -> pd.DataFrame:
    """A .json file's records: a list of them, or, as many datasets are published ({"version": ..., "data":
    [...]}), the one list of records inside a top-level object, whose other fields describe the file; read as
    pandas reads a list of records. Any other shape, and a file that is not JSON, as pandas reads it (and words
    its errors)."""
    with open(path, encoding=_TEXT_ENCODING) as handle:
        start = handle.read(1024).lstrip()[:1]
        if start == "{":
            handle.seek(0)
            try:
                loaded = json.load(handle)
            except ValueError:
                loaded = None
            lists = [v for v in loaded.values() if isinstance(v, list) and v and all(isinstance(r, dict) for r in v)
                     ] if isinstance(loaded, dict) else []
            if len(lists) == 1 and all(not isinstance(v, list) for v in loaded.values() if v is not lists[0]):
                return pd.read_json(io.StringIO(json.dumps(lists[0])), dtype=False)
    return pd.read_json(path, dtype=False, encoding=_TEXT_ENCODING)


# Each reader takes the path and data.header (which only the delimited formats can honour; the spec refuses
# header: false for the others).
_READERS: dict[str, Callable[[str, bool], pd.DataFrame]] = {
    ".tsv": _delimited("\t", csv.QUOTE_NONE),
    ".csv": _delimited(",", csv.QUOTE_MINIMAL),
    ".jsonl": lambda path, header: pd.read_json(path, lines=True, dtype=False, encoding=_TEXT_ENCODING),
    ".json": _json_records,
    ".parquet": lambda path, header: pd.read_parquet(path),
    **{suffix: read_conll for suffix in CONLL_SUFFIXES},  # a word and its tag per line (token-classification)
}
_NUMBER = re.compile(r"[+-]?\d+(?:\.\d*)?")  # a header cell that looks like a value (pandas writes "0.1" for a 2nd "0")
_INTEGER = re.compile(r"-?\d+")  # a label after label_text: integral numbers are plain integers
# Two-label sets with a conventional positive class (compared lower-case); any other pair: the second label.
_POSITIVE_OF = {frozenset({"0", "1"}): "1", frozenset({"false", "true"}): "true", frozenset({"no", "yes"}): "yes"}


@dataclass
class TokenizedSplit:
    input_ids: list[np.ndarray]
    token_type_ids: list[np.ndarray] | None
    # classification: one label index per example (int64); multi-label: a 0/1 row per example (float32, examples ×
    # labels); regression: the target (float32); token-classification: the gold tag ids (examples × words, NO_WORD
    # past each sentence's end)
    labels: np.ndarray | None
    # causal-lm: the target per token; token-classification: a word's tag at its first token; -100 where not scored
    token_labels: list[np.ndarray] | None = None
    prompts: list[np.ndarray] | None = None  # causal-lm evaluation: the prompt alone, to generate from
    answers: list[str] | None = None  # causal-lm evaluation: the gold answers
    # causal-lm on plain text: the record (row) each block of tokens comes from, where a long text is split into
    # blocks (autopeft/tasks/text_blocks.py); None: one entry per record
    record_of: np.ndarray | None = None
    # token-classification: the token position of each word's first sub-word token, NO_WORD for a word cut away
    word_starts: list[np.ndarray] | None = None
    # multiple-choice: input_ids holds a (question, option) pair per entry, and a question's pairs run from
    # option_starts[q] to option_starts[q + 1]; labels is each question's right option among its pairs. The split's
    # examples (its length, its lengths, the indices a batch is drawn by) are then the questions.
    option_starts: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.input_ids) if self.option_starts is None else len(self.option_starts) - 1

    @property
    def lengths(self) -> np.ndarray:
        """Tokens per example; a question's are those of all its pairs (what a batch of it costs)."""
        lengths = np.fromiter((len(x) for x in self.input_ids), dtype=np.int64, count=len(self.input_ids))
        return lengths if self.option_starts is None else np.add.reduceat(lengths, self.option_starts[:-1])

    @property
    def pairs(self) -> TokenizedSplit:
        """A multiple-choice split as its (question, option) pairs, each an example of its own (for a pass that
        scores every pair)."""
        return dataclasses.replace(self, labels=None, option_starts=None)

    def pair_indices(self, questions: np.ndarray) -> np.ndarray:
        """The pairs of the given questions of a multiple-choice split, question after question."""
        starts = self.option_starts
        return np.concatenate([np.arange(starts[q], starts[q + 1]) for q in questions])


@dataclass
class TaskData:
    train: TokenizedSplit
    eval: TokenizedSplit
    label_names: list[str]  # classification (multi-label too): the labels in head order; empty for the other tasks
    task: str = CLASSIFICATION
    positive_index: int | None = None  # two-label classification: the head index whose F1 is the metric `f1`
    # With data.eval_size: the rows evaluated, as 0-based positions among the data rows of the eval file or split
    # (header not counted), in evaluation order, so a recorded metric can be reproduced from an export. None: every
    # row, in file order.
    eval_rows: list[int] | None = None
    answer_options: AnswerOptions | None = None  # causal-lm, answer_scoring: options (tasks/answer_options.py)
    # causal-lm: the closed set of gold answers a generated response is read among (answer_words), or None
    answer_words: list[str] | None = None
    # causal-lm: whether the gold responses state their answer ("the answer is (D)" after a rationale), so that a
    # response's statement is read before any earlier form of an answer (workers/generation.py, AnswerReading)
    answers_stated: bool = False
    # What reading the data noted (each DataWarning's text: rows left out, texts cut, a dominant label): stored with
    # the search and shown where it is read, since a search launched from the dashboard or the service has no
    # terminal to print them on
    notes: list[str] = dataclasses.field(default_factory=list)

    def for_model(self, model) -> TaskData:
        """The data as ``model`` reads it: without token type ids where its forward takes none. A tokenizer from
        another family (a BERT vocabulary beside a DistilBERT body) makes them, and DistilBERT's forward refuses
        the argument."""
        import inspect

        if "token_type_ids" in inspect.signature(model.forward).parameters:
            return self
        return dataclasses.replace(self, train=dataclasses.replace(self.train, token_type_ids=None),
                                   eval=dataclasses.replace(self.eval, token_type_ids=None))

    @property
    def f1_positive(self) -> int:
        """The head index ``f1`` scores: the positive class, or head 1 where none was decided."""
        return 1 if self.positive_index is None else self.positive_index

    @property
    def num_labels(self) -> int:
        """Outputs of the task head: one per label, 1 for regression, 0 for causal-lm (autopeft.models.base)."""
        from autopeft.models.base import num_labels

        return num_labels(self.task, self.label_names)


def read_table(path: str, field: str, header: bool = True, named: str | None = None) -> pd.DataFrame:
    """The file's rows with positions 0, 1, ... as the index and text column names ("0", "1", ... without a header
    line), so that row numbers in errors and in ``TaskData.eval_rows`` are positions in the file. Errors name the
    spec's ``data.{field}``, or ``named`` (a command's option) where the file did not come from the spec."""
    where = named or f"data.{field}"
    reader = _READERS.get(Path(path).suffix.lower())
    if reader is None:
        raise UserError(f"{where}: cannot read {path}; use one of {', '.join(_READERS)}")
    try:
        frame = reader(path, header)
    except Exception as exc:  # pandas raises many kinds; the user needs the file and the cause
        try:
            cause = unreadable_because(path, exc)
        except Exception:  # reading it again failed as well: the reader's own words
            cause = str(exc)
        raise UserError(f"{where}: cannot read {path}: {cause}") from None
    return _positional(frame)


def _positional(frame: pd.DataFrame) -> pd.DataFrame:
    """Index by position (parquet may restore a stored index) and name columns as text (header-less files and
    parquet may name them by integers), the form the spec names them in."""
    frame = frame.reset_index(drop=True)
    frame.columns = [str(c) for c in frame.columns]
    return frame


def read_splits(data: DataSpec) -> tuple[pd.DataFrame, pd.DataFrame | None, dict[str, list[str]]]:
    """Both splits, and for a `datasets` dataset the class names of its class columns, in its order. The
    evaluation split is None where it is held out of the training rows (``data.eval_fraction``), once they are
    checked (:func:`hold_out`)."""
    if data.dataset is not None:
        try:
            import datasets
        except ImportError:
            raise UserError("data.dataset: the `datasets` package is not installed; pip install datasets") from None
        ref = data.dataset
        # A folder of the user's own files is read afresh: datasets keys its cache of a local folder on names and
        # sizes, so a corrected file of the same size would otherwise be read as it was (datasets issue 2956).
        folder = Path(ref.name).expanduser()
        fresh = {"download_mode": "force_redownload"} if folder.is_dir() else {}
        try:  # a folder as a shell reads it (~/data/mine); datasets takes "~" for a hub name
            loaded = datasets.load_dataset(str(folder) if folder.is_dir() else ref.name, ref.config, **fresh)
        except Exception as exc:  # network, unknown name, missing config: all the user's to fix
            raise UserError(f"data.dataset: cannot load {ref.name!r} ({ref.config}): {exc}") from None
        held_out = data.eval_fraction is not None
        for split in (ref.train_split, *([] if held_out else [ref.eval_split])):
            if split not in loaded:
                hint = ("; or hold out part of the training rows to evaluate on: data.eval_fraction: 0.2"
                        if split == ref.eval_split else "")
                raise UserError(f"data.dataset: split {split!r} not in {list(loaded)}{hint}")
        train, classes = dataset_frame(loaded[ref.train_split])
        evaluation = None if held_out else _positional(dataset_frame(loaded[ref.eval_split])[0])
        return _positional(train), evaluation, classes
    train = read_table(data.train, "train", data.header)
    evaluation = None if data.eval_fraction is not None else read_table(data.eval, "eval", data.header)
    if not data.header:
        _check_no_header_line(train, evaluation, data)
    return train, evaluation, {}


def _check_no_header_line(train: pd.DataFrame, evaluation: pd.DataFrame, data: DataSpec) -> None:
    """With ``header: false`` a file's header line would be read as an example, its label a class of its own (the
    head one output wider), silently. Two signs of one: both files begin with the same line, or the first line's
    label is text where every other row's is a number."""
    labels = train[data.label_column] if data.label_column in train.columns else None
    if labels is None or len(labels) < 3:
        return  # the column checks answer for a label column the file lacks
    first = [frame.iloc[0].tolist() if frame is not None and len(frame) else None for frame in (train, evaluation)]
    # An evaluation file cut from the training file begins with the same example: its label recurs, a name's not.
    same_first_line = evaluation is not None and data.train != data.eval and first[0] == first[1] and \
        labels.iloc[0] not in set(labels.iloc[1:])
    text_over_numbers = not _NUMBER.fullmatch(str(labels.iloc[0])) and \
        all(_NUMBER.fullmatch(str(value)) for value in labels.iloc[1:])
    if same_first_line or text_over_numbers:
        raise UserError(f"data.header: false, but the first line of {data.train} ({first[0]}) looks like a header "
                        f"line{' (the evaluation file begins with it too)' if same_first_line else ''}, which "
                        "would be trained on as an example: remove data.header and name the columns as that line "
                        "does, or remove the line from the files")


def data_source(data: DataSpec, field: str) -> str:
    """Where the ``field`` ("train" or "eval") rows come from, in words: the file, or the dataset's split."""
    if field == "eval" and data.eval_fraction is not None:
        return f"the rows of {data_source(data, 'train')} held out for evaluation (data.eval_fraction)"
    if data.dataset is None:
        return str(getattr(data, field))
    split = data.dataset.train_split if field == "train" else data.dataset.eval_split
    return f"split {split!r} of dataset {data.dataset.name!r}"


def passed_key(data: DataSpec, field: str) -> str | None:
    """The key of ``data=`` the ``field`` rows were passed under (``"train"``, ``"validation"``, ...), or None for
    rows the spec reads from its own file or dataset: a message about a row then points at the caller's own rows,
    not at the parquet copy they never wrote (and which a refused search removes)."""
    field = _file_field(data, field)
    if data.dataset is not None or getattr(data, field) is None:
        return None
    note = Path(str(getattr(data, field))).parent / PASSED_ROWS_NOTE
    try:
        return json.loads(note.read_text()).get(field)
    except (OSError, ValueError):
        return None


def _file_field(data: DataSpec, field: str) -> str:
    """The spec field naming the file that ``field``'s rows are in: held-out evaluation rows are the training
    file's, and keep their positions in it."""
    return "train" if field == "eval" and data.eval_fraction is not None else field


def _has_header_line(data: DataSpec, field: str) -> bool:
    field = _file_field(data, field)
    return data.dataset is None and Path(getattr(data, field)).suffix.lower() in HEADER_FORMATS and data.header


def _row_namer(data: DataSpec, field: str) -> Callable[[int], str]:
    """How a user counts the ``field`` rows: in a file from 1, the header line not counted; in rows passed from
    Python by position from 0, as ``DataFrame.iloc`` and ``Dataset[i]`` count. Worked out once for a split, so
    naming every row (the options' check) reads the passed-in note once."""
    key = passed_key(data, field)
    held_out = " (held out for evaluation)" if _file_field(data, field) != field else ""
    if key is not None:
        return lambda position: f"row {position} of data[{key!r}] (counted from 0, as .iloc counts){held_out}"
    where = data_source(data, _file_field(data, field)) + (" (counted from 1 after the header line)"
                                                           if _has_header_line(data, field) else "")
    return lambda position: f"data row {position + 1} of {where}{held_out}"


def _data_row(position: int, data: DataSpec, field: str) -> str:
    """One row as a user counts it (:func:`_row_namer`)."""
    return _row_namer(data, field)(position)


def _check_columns(frame: pd.DataFrame, columns: dict[str, str], field: str, data: DataSpec) -> None:
    """``columns`` maps each needed column to the spec field that names it."""
    for column, spec_field in columns.items():
        if column not in frame.columns:
            raise UserError(f"data.{spec_field}: column {column!r} not in the {field} data; its columns are "
                            f"{list(frame.columns)}{_header_hint(list(frame.columns), column, field, data)}"
                            f"{_record_form_hint(list(frame.columns), spec_field, data)}")
    if frame.empty:
        raise UserError(f"data.{field}: no rows")


# What instruction records' two fields are called in the data people bring (LLM-Adapters' and Alpaca's own names
# first; OpenAI's and TRL's prompt / completion; summarisation's document / summary, article / highlights as
# XSum and CNN/DailyMail write them); not "target", a label's name as often as a response's.
PROMPT_COLUMN_NAMES = ("instruction", "prompt", "question", "query", "input_text", "document", "article")
RESPONSE_COLUMN_NAMES = ("output", "completion", "response", "answer_text", "output_text", "reply", "summary",
                         "highlights")


def _record_form_hint(columns: list[str], spec_field: str, data: DataSpec) -> str:
    """Chat records or plain text met where instruction records were expected: the field that reads them."""
    if data.messages_column or spec_field not in ("instruction_column", "output_column"):
        return ""
    chat = next((c for c in columns if c in ("messages", "conversations", "conversation")), None)
    if chat is not None:
        return f"; the {chat!r} column looks like chat records: set data.messages_column: {chat}"
    asked = next((c for c in columns if c.lower() in PROMPT_COLUMN_NAMES), None)
    given = next((c for c in columns if c.lower() in RESPONSE_COLUMN_NAMES), None)
    if given is not None and (spec_field == "output_column" or asked is not None):
        # prompt / completion pairs (OpenAI's and TRL's form): the instruction and the response under other names
        return (f"; the records look like {asked or data.instruction_column} / {given} pairs: set "
                f"data.instruction_column: {asked or data.instruction_column} and data.output_column: {given}")
    text = next((c for c in columns if c.lower() in ("text", "content", "document", "body")), None)
    if text is None and len(columns) == 1:
        text = columns[0]
    if text is None:
        return ""
    return (f"; if the records are plain text (a corpus to train on, no instructions), set data.text_columns: "
            f"[{text}]")


def _header_hint(columns: list[str], missing: str, field: str, data: DataSpec) -> str:
    """Why a named column may be missing from a .tsv/.csv file: a header line that is really the first data row
    (GLUE's files have none), or positions named in a file that has a header."""
    if data.dataset is not None or Path(getattr(data, field)).suffix.lower() not in HEADER_FORMATS:
        return ""
    if len(columns) == 1 and (separator := next((s for s in (";", "\t", ",") if s in columns[0]), None)):
        return ("; " + separator_hint(getattr(data, field), Path(getattr(data, field)).suffix.lower())
                + f" (its first line is one cell holding {separator!r})")
    if not data.header:
        if missing.isdigit():
            return ""  # a position past the last column: the list above shows the ones there are
        return ("; with data.header: false the columns are named by position: name them so (e.g. text_columns: "
                "[0]), or remove data.header if the first line names the columns")
    if any(_NUMBER.fullmatch(c.strip()) for c in columns):
        return ("; the first line looks like data, not column names: if the file has no header line, set "
                "data.header: false and name the columns by position (e.g. text_columns: [0], label_column: 1)")
    if missing.isdigit():
        return (f"; {missing} names a column by position, which is how columns are named in a file without a "
                f"header line: if the file has none, set data.header: false, else name the column as its header "
                f"line does")
    return ""


def _empty_cells(cells: pd.Series) -> np.ndarray:
    """Which cells hold nothing: missing, or only spaces."""
    return (cells.isna() | cells.astype(str).str.strip().eq("")).to_numpy()


def _check_filled(frame: pd.DataFrame, columns: dict[str, str], field: str, data: DataSpec) -> None:
    """An empty text or label cell is a broken row: named here, with its row, rather than trained on as "" or
    failing later. Every row of the file is checked, so the outcome does not depend on which subset is drawn."""
    for column, spec_field in columns.items():
        empty = np.flatnonzero(_empty_cells(frame[column]))
        if len(empty):
            more = f" (and {len(empty) - 1} more rows)" if len(empty) > 1 else ""
            raise UserError(f"data.{spec_field}: column {column!r} is empty in {_data_row(int(empty[0]), data, field)}"
                            f"{more}; fill it in or remove the row")


def _without_empty_texts(frame: pd.DataFrame, data: DataSpec, field: str) -> pd.DataFrame:
    """Plain text without its empty lines. A classifier's empty text is a broken row; a corpus's empty line is
    nothing to learn from (WikiText's training split holds thousands, between its paragraphs): left out with a
    DataWarning naming how many, and refused only where no text is left. The index keeps each row's position."""
    column = data.text_columns[0]
    empty = _empty_cells(frame[column])
    if not empty.any():
        return frame
    first = _data_row(int(frame.index[np.flatnonzero(empty)[0]]), data, field)
    if empty.all():
        raise UserError(f"data.text_columns: column {column!r} is empty in every row of the {field} data "
                        f"({first}, ...); name the column that holds the texts")
    warnings.warn(DataWarning(f"data.text_columns: {int(empty.sum())} of {len(frame)} {field} texts are empty "
                              f"({first}{', ...' if empty.sum() > 1 else ''}): left out"), stacklevel=3)
    return frame[~empty]


def _subset(frame: pd.DataFrame, size: int | None, seed: int, field: str,
            data: DataSpec) -> tuple[pd.DataFrame, list[int] | None]:
    """The seeded random subset of ``size`` rows and their positions (None: every row, in order). A size above the
    rows there are is refused: silently using fewer rows than asked would misstate the experiment."""
    if size is None or size == len(frame):
        return frame, None
    if size > len(frame):
        raise UserError(f"data.{field}_size: {size} rows asked, but {data_source(data, field)} has {len(frame)} data "
                        f"rows; lower it to at most {len(frame)}, or remove it to use every row")
    drawn = frame.sample(n=size, random_state=seed)  # the index keeps each row's position in the file
    return drawn, [int(i) for i in drawn.index]


def load_task_data(data: DataSpec, model: ModelSpec, seed: int) -> TaskData:
    """Read, check, subset and tokenise both splits for the model's task (``_load_task_data``); the notes it gives
    on the way (``DataWarning``: records left out, texts cut) are issued as warnings and kept on the result."""
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", DataWarning)
            task_data = _load_task_data(data, model, seed)
    finally:  # issued on as they came, also before a refusal, so a caller's filters and printers see them as before
        for warned in caught:
            warnings.warn_explicit(warned.message, warned.category, warned.filename, warned.lineno)
    task_data.notes = [str(w.message) for w in caught if issubclass(w.category, DataWarning)]
    return task_data


def _load_task_data(data: DataSpec, model: ModelSpec, seed: int) -> TaskData:
    """Read, check, subset and tokenise both splits for the model's task.

    Checks that concern the data itself (columns, empty cells, the label set) see every row of both files, so
    they do not depend on the seed; the subsets are drawn after them.
    """
    from autopeft.models.base import load_tokenizer

    if data.answer_scoring != "generate" and model.task != "causal-lm":
        raise UserError(f"data.answer_scoring: reads generated answers of a causal-lm task, and model.task is "
                        f"{model.task!r}; remove answer_scoring")
    train, evaluation, classes = read_splits(data)
    if model.task == "causal-lm" and data.text_columns == [data.instruction_column] and \
            data.output_column in train.columns:
        # A classifier's habit: the instructions alone as a corpus, their responses never trained or scored.
        raise UserError(f"data.text_columns: reads plain text (a corpus, every token trained), here the "
                        f"instructions alone, and the records have {data.output_column!r} responses: remove "
                        "text_columns to train on them as instruction records (and score the answers they hold)")
    columns, filled = _TASK_COLUMNS[model.task](data), _FILLED_COLUMNS[model.task](data)
    checked = [(train, "train"), *([] if evaluation is None else [(evaluation, "eval")])]
    if model.task == "causal-lm" and not data.text_columns and \
            _without_answers(data, train, train if evaluation is None else evaluation):
        del columns[data.answer_column]
    for frame, field in checked:
        _check_columns(frame, columns, field, data)
        _check_filled(frame, filled, field, data)
    labels, positive = None, None
    if model.task == CLASSIFICATION:
        _refuse_label_lists(train, data)
        train, evaluation = (None if frame is None else
                             frame.assign(**{data.label_column: _label_texts(frame[data.label_column])})
                             for frame in (train, evaluation))
        labels = _label_names(train[data.label_column], (train if evaluation is None else evaluation)[
            data.label_column], data, classes.get(data.label_column))
        positive = positive_index(labels, data.positive_label)
    elif model.task == MULTI_LABEL:
        train, evaluation = (None if frame is None else with_label_sets(frame, data, _row_namer(data, field))
                             for frame, field in ((train, "train"), (evaluation, "eval")))
        labels = label_names(train, evaluation, data, classes.get(data.label_column))
    elif model.task == TOKEN_CLASSIFICATION:
        train, evaluation = (None if frame is None else with_words_and_tags(frame, data, _row_namer(data, field))
                             for frame, field in ((train, "train"), (evaluation, "eval")))
        labels, train, evaluation = tag_names(train, evaluation, data, classes.get(data.label_column))
    elif model.task == MULTIPLE_CHOICE:
        train, evaluation = (None if frame is None else with_options(frame, data, _row_namer(data, field))
                             for frame, field in ((train, "train"), (evaluation, "eval")))
    if evaluation is None:
        train, evaluation = hold_out(train, data, data.label_column if model.task == CLASSIFICATION else None)
    every_row = len(evaluation)
    if model.task == "causal-lm" and data.text_columns:
        train, evaluation = (_without_empty_texts(frame, data, field)
                             for frame, field in ((train, "train"), (evaluation, "eval")))
    train, _ = _subset(train, data.train_size, seed, "train", data)
    evaluation, eval_rows = _subset(evaluation, data.eval_size, seed, "eval", data)
    if eval_rows is None and (len(evaluation) < every_row or data.eval_fraction is not None):
        eval_rows = [int(i) for i in evaluation.index]  # rows left out, or the file's held out: the ones evaluated
    tokenizer = load_tokenizer(model)
    if model.task == CLASSIFICATION:
        task_data = _classification(train, evaluation, data, tokenizer, labels, positive)
    elif model.task == MULTI_LABEL:
        task_data = _multi_label(train, evaluation, data, tokenizer, labels)
    elif model.task == TOKEN_CLASSIFICATION:
        task_data = _word_tags(train, evaluation, data, tokenizer, labels)
    elif model.task == MULTIPLE_CHOICE:
        task_data = _multiple_choice(train, evaluation, data, tokenizer)
    else:
        task_data = _TOKENIZERS[model.task](train, evaluation, data, tokenizer)
    task_data.eval_rows = eval_rows
    return task_data


def _refuse_label_lists(train: pd.DataFrame, data: DataSpec) -> None:
    """A list of labels in a cell (a .jsonl's array) is several labels for the row: read as one class it would be
    the text "['sports', 'politics']", a class per combination, trained in silence."""
    cells = train[data.label_column]
    listed = next((i for i, v in zip(cells.index, cells) if isinstance(v, (list, tuple, np.ndarray))), None)
    if listed is not None:
        raise UserError(f"data.label_column: {data.label_column!r} holds a list of labels in "
                        f"{_data_row(int(listed), data, 'train')}; several labels per row are "
                        "model.task: multi-label-classification")


HOLD_OUT_SEED = 0  # the held-out rows are the file's, whatever a search's seed: searches of one file compare


def hold_out(rows: pd.DataFrame, data: DataSpec, stratify_by: str | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The training rows split into those trained on and the ``data.eval_fraction`` held out to evaluate on, each
    keeping its rows' positions in the file (so a message, and the export's ``eval_rows.json``, name the file's
    rows). By label where there are labels: each label keeps its share in both, and a label too rare to spare a
    row stays in training, so the evaluation never holds a label the head was not trained on."""
    fraction = data.eval_fraction
    if stratify_by is not None:
        evaluation = rows.groupby(stratify_by, sort=False, group_keys=False).sample(frac=fraction,
                                                                                   random_state=HOLD_OUT_SEED)
    else:
        evaluation = rows.sample(frac=fraction, random_state=HOLD_OUT_SEED)
    evaluation = evaluation.sort_index()
    train = rows.drop(index=evaluation.index)
    if evaluation.empty or train.empty:
        raise UserError(f"data.eval_fraction: {fraction:g} of {len(rows)} training rows leaves "
                        f"{'no row to evaluate on' if evaluation.empty else 'no row to train on'}; "
                        f"{'raise it, or give more rows' if evaluation.empty else 'lower it'}, or give an "
                        "evaluation file as data.eval")
    return train, evaluation


def _without_answers(data: DataSpec, train: pd.DataFrame, evaluation: pd.DataFrame) -> bool:
    """Instruction records without gold answers (plain instruction tuning: instruction, input, output): the
    default answer column is in neither split and nothing asks for one. Such a task is scored by ``eval_loss``,
    and its evaluation generates nothing. A column of another name, or answers in one split only, are still
    required, so a misspelt column is refused rather than taken for no answers; an objective that reads answers
    is refused by ``check_metrics_fit``, naming the column."""
    default = type(data).model_fields["answer_column"].default
    return (data.answer_column == default and data.answer_scoring == "generate"
            and default not in train.columns and default not in evaluation.columns)


def _metrics(spec: SearchSpec):
    """Each objective and constraint with the spec field that names it."""
    for i, objective in enumerate([*spec.objectives, *spec.constraints]):
        yield (f"objectives[{i}]" if i < len(spec.objectives) else f"constraints[{i - len(spec.objectives)}]",
               objective)


# From this share of the evaluation labels on, accuracy mostly measures the label that dominates (fraud, rare-event
# and many moderation sets), which the chance line then shows and the front can barely rise above.
DOMINANT_LABEL_SHARE = 0.8


def _note_a_dominant_label(spec: SearchSpec, data: TaskData) -> None:
    """Note, kept with the search's data notes, that accuracy is the task metric where one label holds most of the
    evaluation rows: always answering it scores that share, and the labels that matter to the user are the rare
    ones, which F1 over the classes or Matthews correlation weigh."""
    if spec.task_metric != "accuracy":
        return
    counts = np.bincount(data.eval.labels, minlength=len(data.label_names))
    share = counts.max() / counts.sum()
    if share < DOMINANT_LABEL_SHARE:
        return
    other = "f1 (the positive class's F1)" if len(data.label_names) == 2 else "macro_f1"
    note = (f"objectives: {share:.0%} of the evaluation rows are {data.label_names[int(counts.argmax())]!r}, so "
            f"accuracy scores {share:.2f} for always answering it and rewards little else; {other} or matthews "
            f"(Matthews correlation) as the first objective weigh the rarer labels")
    warnings.warn(DataWarning(note), stacklevel=3)
    data.notes.append(note)


def check_metrics_fit(spec: SearchSpec, data: TaskData) -> None:
    """Refuse objectives and constraints the data cannot report, before a search is created: ``f1`` (the
    positive class's F1) exists for two labels only; instruction records without gold answers report
    ``eval_loss`` and costs, no answer metric."""
    from autopeft.objectives import MEASUREMENTS

    if data.task == "causal-lm" and not spec.training.untouched_reference:
        if data.eval.answers is None:
            add = ("" if spec.data.text_columns else
                   f", or add an {spec.data.answer_column!r} column (data.answer_column)")
            raise UserError("training.untouched_reference: the records have no gold answers, so the untouched "
                            f"model's loss is what a trial is read against (its chance level); set it to true{add}")
        if spec.task_metric == "eval_loss":
            raise UserError("training.untouched_reference: a decoder searched on eval_loss is read against the "
                            "untouched model's loss (its chance level); set it to true, or make answer_accuracy "
                            "the task metric")
    if data.task == "causal-lm" and data.eval.answers is None:
        for field, objective in _metrics(spec):
            if MEASUREMENTS[objective.name].is_task_metric:
                lacking = ("plain text (data.text_columns) has none; search on eval_loss (the texts' token loss)"
                           if spec.data.text_columns else
                           f"the records have no {spec.data.answer_column!r} column (data.answer_column); add the "
                           f"answers, or search on eval_loss (the gold responses' token loss)")
                raise UserError(f"{field}.name: {objective.name!r} reads each record's gold answer, and {lacking}")
    if data.task == TOKEN_CLASSIFICATION and tag_scheme(data.label_names) is None:
        for field, objective in _metrics(spec):
            if objective.name == "entity_f1":
                raise UserError(f"{field}.name: 'entity_f1' scores entities, spans of B-/I- tags (B-PER I-PER), and "
                                f"the tags {data.label_names[:8]} form none; use accuracy (the share of words "
                                "given their gold tag)")
    if data.task == CLASSIFICATION:
        _note_a_dominant_label(spec, data)
    if data.task != CLASSIFICATION or len(data.label_names) == 2:
        return
    for field, objective in _metrics(spec):
        if objective.name == "f1":
            raise UserError(f"{field}.name: 'f1' is the F1 of the positive class, measured for two labels only, "
                            f"and the data has {len(data.label_names)} labels {data.label_names[:10]}; use "
                            f"macro_f1 (the mean F1 over all labels)")


def tokenize_texts(frame: pd.DataFrame, data: DataSpec, tokenizer,
                   labels: np.ndarray) -> tuple[TokenizedSplit, np.ndarray]:
    """Single texts or text pairs (``data.text_columns``), with one label or target per example, cut at
    ``data.max_length`` as the tokenizer cuts them; and each example's length uncut (for the note on cut texts).
    One pass uncut, then only the examples longer than ``max_length`` encoded again with the cut: for one that
    fits, the cut changes nothing. Also how ``Search.predict`` reads new texts (autopeft/results/predict.py)."""
    texts = [frame[c].astype(str).tolist() for c in data.text_columns]
    # verbose=False: the tokenizer's own warning about sequences beyond the model's length is the note's job
    encoded = tokenizer(*texts, truncation=False, verbose=False)
    ids, types = list(encoded["input_ids"]), encoded.get("token_type_ids")
    types = None if types is None else list(types)
    lengths = np.asarray([len(row) for row in ids], dtype=np.int64)
    longer = np.flatnonzero(lengths > data.max_length)
    if len(longer):
        cut = tokenizer(*[[column[i] for i in longer] for column in texts], truncation=True,
                        max_length=data.max_length)
        for position, row in enumerate(longer):
            ids[row] = cut["input_ids"][position]
            if types is not None:
                types[row] = cut["token_type_ids"][position]
    split = TokenizedSplit(
        input_ids=[np.asarray(x, dtype=np.int32) for x in ids],
        token_type_ids=None if types is None else [np.asarray(x, dtype=np.int8) for x in types],
        labels=labels,
    )
    return split, lengths


def _label_texts(labels: pd.Series) -> pd.Series:
    """Every label as :func:`label_text` writes it (computed once per distinct value: files have few labels)."""
    texts = labels.astype(str)
    return texts.map({value: label_text(value) for value in texts.unique()})


def _label_names(train: pd.Series, evaluation: pd.Series, data: DataSpec,
                 dataset_classes: list[str] | None = None) -> list[str]:
    """The labels in head order: data.label_values, else a `datasets` dataset's class names in its order, else
    the training labels, in numeric order when all are integers (1-based labels 1..4 become head indices 0..3;
    "10" after "9", not after "1"), else alphabetical."""
    seen = set(train.unique())
    if len(seen) < 2:
        raise UserError(f"data.label_column: the training data has only one label value {sorted(seen)}; a "
                        f"classifier learns from examples of two labels or more: check that {data.label_column!r} "
                        "is the label column, or add examples of the other labels")
    if data.label_values is None and dataset_classes is not None:
        return [label_text(name) for name in dataset_classes]
    if data.label_values is not None:
        for labels, field in ((train, "train"), (evaluation, "eval")):
            unexpected = sorted(set(labels.unique()) - set(data.label_values))
            if unexpected:
                raise UserError(f"data.label_values: {data_source(data, field)} has labels {unexpected[:10]} that "
                                f"are not in data.label_values {data.label_values}; add them there, or correct "
                                f"the data")
        return list(data.label_values)
    integral = all(_INTEGER.fullmatch(name) for name in seen)
    _refuse_a_measured_number(seen, integral)
    names = labels_in_order(seen)
    unseen = sorted(set(evaluation.unique()) - seen)
    if unseen:
        rows = int(evaluation.isin(unseen).sum())
        raise UserError(f"data.label_column: {rows:,} of {len(evaluation):,} evaluation rows have labels "
                        f"{unseen[:5]} that never occur in the training data (its labels: {names[:5]}), so the "
                        "head could never predict them: add training examples of them or remove those rows; where "
                        "the two files write the labels differently (0/1 against negative/positive), write them "
                        "one way")
    return names


# More distinct labels than this, all numbers and some with fractions, are a measured quantity, not classes: half-star
# ratings (0.5 to 5.0) are ten classes, similarity scores in [0, 5] are hundreds of distinct values.
MAX_FRACTIONAL_CLASSES = 20


def _refuse_a_measured_number(seen: set[str], integral: bool) -> None:
    """A classification over labels like 1.253, 3.8, 0.4 would make every distinct score a class of its own and
    train at chance; what the user has is a number to predict (sequence-regression). Given data.label_values the
    classes are the user's own choice and are not second-guessed (this is only called without them)."""
    if integral or len(seen) <= MAX_FRACTIONAL_CLASSES or not all(_NUMBER.fullmatch(name) for name in seen):
        return
    examples = ", ".join(sorted(seen, key=Decimal)[:: max(1, len(seen) // 4)][:4])
    raise UserError(f"data.label_column: {len(seen)} distinct numbers with fractions ({examples}, ...) read as "
                    f"{len(seen)} classes, one per score; to predict the number set model.task: sequence-regression "
                    f"(objectives spearman, pearson or mse), or list the classes in data.label_values")


def positive_index(label_names: list[str], chosen: str | None) -> int | None:
    """The head index of the positive class (the one ``f1`` scores) for two labels; None for more.

    ``chosen`` is data.positive_label; by default the conventional positive of 0/1, false/true and no/yes (any
    case), else the second label in head order."""
    if len(label_names) != 2:
        if chosen is not None:
            raise UserError(f"data.positive_label: a positive class needs exactly two labels, and the data has "
                            f"{len(label_names)} {label_names[:10]}; remove it (macro_f1 scores every label)")
        return None
    if chosen is not None:
        if chosen not in label_names:
            raise UserError(f"data.positive_label: {chosen!r} is not one of the labels {label_names}")
        return label_names.index(chosen)
    lowered = [name.lower() for name in label_names]
    conventional = _POSITIVE_OF.get(frozenset(lowered))
    return 1 if conventional is None else lowered.index(conventional)


# Below this share of examples longer than data.max_length, the cut is left unremarked (QNLI's pairs at 128: 0.8%).
CUT_SHARE_NOTED = 0.05


def length_keeping_most_whole(lengths: np.ndarray) -> int:
    """The multiple of 32 that keeps 95% of the examples whole: from an observed length ("higher"), so that a few
    examples cannot average it below the cut (the cut-texts note's advice, and ``autopeft init``'s length)."""
    return -(-int(np.percentile(lengths, 95, method="higher")) // 32) * 32


def _note_cut_texts(train_lengths: np.ndarray, eval_lengths: np.ndarray, data: DataSpec, tokenizer) -> None:
    """Name the share of examples longer than ``data.max_length`` (their uncut lengths: ``tokenize_texts``). The
    tokenizer cuts them silently, and where many are cut, what decides a label may be cut away with them (BoolQ's
    question-and-passage pairs for MiniLM: 48% are longer than 128 tokens), so a search would measure the cut task,
    not the user's."""
    every = np.concatenate([train_lengths, eval_lengths])
    cut, total = int((every > data.max_length).sum()), len(every)
    if cut < CUT_SHARE_NOTED * total:
        return
    rounded = length_keeping_most_whole(every)
    limit = getattr(tokenizer, "model_max_length", None)  # a huge sentinel where the tokenizer sets none
    if isinstance(limit, int) and limit < rounded:
        advice = (f"the model reads at most {limit} tokens: max_length: {limit} keeps "
                  f"{(every <= limit).mean():.0%} whole")
    else:
        advice = f"max_length: {rounded} keeps 95% whole"
    warnings.warn(DataWarning(
        f"data.max_length: {int((train_lengths > data.max_length).sum()):,} of {len(train_lengths):,} training "
        f"and {int((eval_lengths > data.max_length).sum()):,} of {len(eval_lengths):,} evaluation examples "
        f"({cut / total:.0%}) are longer than {data.max_length} tokens"
        f" and are cut to it (median {int(np.median(every))}, longest {int(every.max())}); what decides a "
        f"label may be in the part cut away. {advice} (time and memory grow with it)"), stacklevel=4)


def _classification(train: pd.DataFrame, evaluation: pd.DataFrame, data: DataSpec, tokenizer,
                    label_names: list[str], positive: int | None) -> TaskData:
    label_index = {name: i for i, name in enumerate(label_names)}

    def tokenize(frame: pd.DataFrame) -> tuple[TokenizedSplit, np.ndarray]:
        labels = np.asarray([label_index[v] for v in frame[data.label_column]], dtype=np.int64)
        return tokenize_texts(frame, data, tokenizer, labels)

    (train_split, train_lengths), (eval_split, eval_lengths) = tokenize(train), tokenize(evaluation)
    _note_cut_texts(train_lengths, eval_lengths, data, tokenizer)
    return TaskData(train=train_split, eval=eval_split, label_names=label_names, task=CLASSIFICATION,
                    positive_index=positive)


def _multi_label(train: pd.DataFrame, evaluation: pd.DataFrame, data: DataSpec, tokenizer,
                 names: list[str]) -> TaskData:
    train_labels = label_matrix(train, names)
    note_label_use(train_labels, names, data)
    train_split, train_lengths = tokenize_texts(train, data, tokenizer, train_labels)
    eval_split, eval_lengths = tokenize_texts(evaluation, data, tokenizer, label_matrix(evaluation, names))
    _note_cut_texts(train_lengths, eval_lengths, data, tokenizer)
    return TaskData(train=train_split, eval=eval_split, label_names=names, task=MULTI_LABEL)


def _word_tags(train: pd.DataFrame, evaluation: pd.DataFrame, data: DataSpec, tokenizer,
               names: list[str]) -> TaskData:
    (train_split, train_untagged), (eval_split, eval_untagged) = (tokenize_tagged(frame, data, tokenizer, names)
                                                                  for frame in (train, evaluation))
    words = int((train_split.labels >= 0).sum() + (eval_split.labels >= 0).sum())
    note_untagged(train_untagged.add(eval_untagged), words, data)
    return TaskData(train=train_split, eval=eval_split, label_names=names, task=TOKEN_CLASSIFICATION)


def _multiple_choice(train: pd.DataFrame, evaluation: pd.DataFrame, data: DataSpec, tokenizer) -> TaskData:
    (train_split, train_lengths), (eval_split, eval_lengths) = (tokenize_options(frame, data, tokenizer)
                                                                for frame in (train, evaluation))
    _note_cut_texts(train_lengths, eval_lengths, data, tokenizer)
    return TaskData(train=train_split, eval=eval_split, label_names=[], task=MULTIPLE_CHOICE)


def _targets(frame: pd.DataFrame, data: DataSpec, field: str) -> np.ndarray:
    """The regression target of each row as float32; a value that is not a finite number is the user's to fix."""
    targets = np.empty(len(frame), dtype=np.float32)
    for row, (position, value) in enumerate(frame[data.label_column].items()):
        try:
            number = float(str(value).strip())
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            raise UserError(f"data.label_column: sequence-regression needs a finite number in column "
                            f"{data.label_column!r}; the {field} data has {value!r} in "
                            f"{_data_row(int(position), data, field)}")
        targets[row] = number
    return targets


def _regression(train: pd.DataFrame, evaluation: pd.DataFrame, data: DataSpec, tokenizer) -> TaskData:
    train_targets = _targets(train, data, "train")
    if np.ptp(train_targets) == 0:
        raise UserError(f"data.label_column: every training target is {train_targets[0]:g}; nothing to learn")
    train_split, train_lengths = tokenize_texts(train, data, tokenizer, train_targets)
    eval_split, eval_lengths = tokenize_texts(evaluation, data, tokenizer, _targets(evaluation, data, "eval"))
    _note_cut_texts(train_lengths, eval_lengths, data, tokenizer)
    return TaskData(train=train_split, eval=eval_split, label_names=[], task="sequence-regression")


# LLM-Adapters' prompt (Alpaca's), so adapters trained here are evaluated the way that benchmark evaluates them.
PROMPT_WITH_INPUT = ("Below is an instruction that describes a task, paired with an input that provides further "
                     "context. Write a response that appropriately completes the request.\n\n"
                     "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n")
PROMPT = ("Below is an instruction that describes a task. Write a response that appropriately completes the "
          "request.\n\n### Instruction:\n{instruction}\n\n### Response:\n")


def instruction_prompt(instruction: str, extra_input: str) -> str:
    if extra_input.strip():
        return PROMPT_WITH_INPUT.format(instruction=instruction, input=extra_input)
    return PROMPT.format(instruction=instruction)


class _TooLong:
    """The records ``data.max_length`` would cut so that they are no longer trained or measured as written.

    A training record may lose the end of its response (LLM-Adapters' cutoff_len cuts so), but one whose prompt
    fills max_length would train nothing and only cost its forward and backward pass: it is left out, with a
    warning naming the rows and the fix, and refused only where no record is left. An evaluation record may not be
    cut at all: its prompt would lose the line that asks for the response, its gold response would be scored in
    part, and the tokens generated for the answers are sized from the gold responses, so one cut response cuts the
    answers short (the bundled math records at max_length 128: 19 of 24 cut, 91 new tokens where 134 are needed)."""

    def __init__(self, field: str, max_length: int):
        self.field, self.max_length = field, max_length
        self.cut: list[str] = []
        self.longest = 0

    def cuts(self, prompt: int, response: int, where: str) -> bool:
        """Whether the record is cut beyond what its split allows (then it is counted here)."""
        cut = prompt >= self.max_length if self.field == "train" else prompt + response > self.max_length
        if cut:
            self.cut.append(where)
            self.longest = max(self.longest, prompt + response)
        return cut

    def check(self, records: int) -> None:
        if not self.cut:
            return
        rows = f"{self.cut[0]}{', ...' if len(self.cut) > 1 else ''}"
        fix = (f"the longest is {self.longest} tokens with its response. Raise data.max_length to {self.longest} "
               f"(now {self.max_length}), or shorten or leave out those records")
        if self.field == "eval":
            raise UserError(f"data.max_length: {len(self.cut)} of {records} evaluation records ({rows}) are longer "
                            f"than max_length, so their prompts or gold responses would be cut and their answers "
                            f"scored on what is left; {fix}")
        message = (f"data.max_length: {len(self.cut)} of {records} training records ({rows}) have prompts of "
                   f"max_length tokens or more, so nothing of their responses would be trained")
        if len(self.cut) == records:
            raise UserError(f"{message}; {fix}")
        warnings.warn(DataWarning(f"{message}: left out; {fix}"), stacklevel=2)


def _instructions(train: pd.DataFrame, evaluation: pd.DataFrame, data: DataSpec, tokenizer) -> TaskData:
    eos = tokenizer.eos_token_id
    if data.messages_column:
        check_template(tokenizer, str(getattr(tokenizer, "name_or_path", "")))

    def turn(record: dict[str, Any], where: str) -> tuple[list[int], list[int], str]:
        """A record's prompt and response token ids, and its response as text: an instruction record in
        LLM-Adapters' prompt, its response and the end of sequence; a chat record in the model's chat template
        (autopeft/tasks/chat_records.py), its last reply."""
        if data.messages_column:
            messages = conversation(record[data.messages_column], where)
            return *chat_turn(tokenizer, messages), messages[-1]["content"]
        extra_input = record.get(data.input_column)
        missing = extra_input is None or (isinstance(extra_input, float) and math.isnan(extra_input))
        prompt = tokenizer(instruction_prompt(str(record[data.instruction_column]),
                                              "" if missing else str(extra_input)))["input_ids"]
        text = str(record[data.output_column])
        response = tokenizer(text, add_special_tokens=False)["input_ids"]
        return prompt, response + ([eos] if eos is not None else []), text

    responses: dict[str, list[str]] = {"train": [], "eval": []}  # each split's gold responses as text

    def tokenize(frame: pd.DataFrame, with_prompts: bool) -> TokenizedSplit:
        sequences, targets, prompts = [], [], []
        field = "eval" if with_prompts else "train"
        too_long = _TooLong(field, data.max_length)
        for position, row in zip(frame.index, frame.to_dict("records")):
            where = _data_row(int(position), data, field)
            prompt, response, text = turn(row, where)
            responses[field].append(text)
            if too_long.cuts(len(prompt), len(response), where):
                continue  # a training record left out (an evaluation record refused below)
            full = (prompt + response)[: data.max_length]
            scored = [-100] * min(len(prompt), len(full)) + full[len(prompt):]
            sequences.append(np.asarray(full, dtype=np.int32))
            targets.append(np.asarray(scored, dtype=np.int64))
            prompts.append(np.asarray(prompt[: data.max_length], dtype=np.int32))
        too_long.check(len(frame))
        return TokenizedSplit(
            input_ids=sequences, token_type_ids=None, labels=None, token_labels=targets,
            prompts=prompts if with_prompts else None,
            answers=([str(a) for a in frame[data.answer_column]]
                     if with_prompts and data.answer_column in frame.columns else None),
        )

    task_data = TaskData(train=tokenize(train, False), eval=tokenize(evaluation, True), label_names=[],
                         task="causal-lm")
    if task_data.eval.answers is None:  # instruction tuning without gold answers: scored by eval_loss alone
        return task_data
    train_answers = [str(a) for a in train[data.answer_column]]
    task_data.answer_words = answer_words([*train_answers, *task_data.eval.answers])
    task_data.answers_stated = responses_state_answers(responses["train"], train_answers)
    if data.answer_scoring == "options":
        task_data.answer_options = answer_options(
            train_answers, task_data.eval.answers,
            responses["eval"],
            [labels[len(prompt):] for labels, prompt in zip(task_data.eval.token_labels, task_data.eval.prompts)],
            tokenizer,
            list(map(_row_namer(data, "eval"), (int(i) for i in evaluation.index))))
    return task_data


def _texts(d: DataSpec) -> dict[str, str]:
    return {c: "text_columns" for c in d.text_columns or []}


def _text_columns(d: DataSpec) -> dict[str, str]:
    return {**_texts(d), d.label_column: "label_column"}


def _choice_columns(d: DataSpec) -> dict[str, str]:
    return {**_text_columns(d), **{c: "choice_columns" for c in d.choice_columns or []}}


def _multi_label_columns(d: DataSpec) -> dict[str, str]:
    labels = {c: "label_columns" for c in d.label_columns} if d.label_columns else {d.label_column: "label_column"}
    return {**_texts(d), **labels}


_TASK_COLUMNS = {
    "sequence-classification": _text_columns,
    MULTI_LABEL: _multi_label_columns,
    "sequence-regression": _text_columns,
    TOKEN_CLASSIFICATION: _text_columns,
    MULTIPLE_CHOICE: _choice_columns,
    "causal-lm": lambda d: _texts(d) if d.text_columns else (
        ({d.messages_column: "messages_column"} if d.messages_column else
         {d.instruction_column: "instruction_column", d.output_column: "output_column"})
        | {d.answer_column: "answer_column"}),
}
# The cells that must not be empty, checked in every row. A regression target is checked as a number
# (_targets); causal-lm's input field is optional, and its other fields are free text.
_FILLED_COLUMNS: dict[str, Callable[[DataSpec], dict[str, str]]] = {
    "sequence-classification": _text_columns,
    # each label column's 1 or 0 is checked as such (autopeft/tasks/label_sets.py); one column of labels may be
    # empty (a row with no label)
    MULTI_LABEL: _texts,
    "sequence-regression": _texts,
    # each row's words and tags are checked as lists, with their row (autopeft/tasks/word_tags.py)
    TOKEN_CLASSIFICATION: lambda d: {},
    # an empty option is one the row lacks (autopeft/tasks/choices.py); the question and the answer must be there
    MULTIPLE_CHOICE: _text_columns,
    # instruction records' fields are free text (an empty input is usual); plain text's empty lines are left out
    # (_without_empty_texts)
    "causal-lm": lambda d: {},
}


def _plain_texts(train: pd.DataFrame, evaluation: pd.DataFrame, data: DataSpec, tokenizer) -> TaskData:
    """A decoder on plain text (``data.text_columns`` of causal-lm: a corpus, no instructions): every token of
    each text is trained and scored once, the first excepted (nothing precedes it; where the tokenizer puts a
    beginning-of-sequence token in front, that is the first, and the text's first word is scored). A text longer than
    ``data.max_length`` is split into blocks that read the tokens before their own (autopeft/tasks/text_blocks.py),
    rather than cut, so nothing of it is lost; an evaluation block keeps the record it came from, so that the noise
    model resamples records, not blocks."""
    column = data.text_columns[0]
    eos = tokenizer.eos_token_id

    def tokenize(frame: pd.DataFrame) -> TokenizedSplit:
        blocks, contexts, record_of = [], [], []
        texts = frame[column].astype(str).tolist()
        for record, ids in enumerate(tokenizer(texts)["input_ids"] if texts else []):
            for block in text_blocks(ids + ([eos] if eos is not None else []), data.max_length):
                blocks.append(np.asarray(block.ids, dtype=np.int32))
                contexts.append(block.context)
                record_of.append(record)
        return TokenizedSplit(
            input_ids=blocks, token_type_ids=None, labels=None,
            # a block's context (the text's first token, or the tokens before the block's own, scored in the block
            # before) is read as a prompt is, and not scored
            token_labels=[np.concatenate([np.full(context, -100), block[context:]]).astype(np.int64)
                          for block, context in zip(blocks, contexts)],
            prompts=[block[:context] for block, context in zip(blocks, contexts)],
            record_of=np.asarray(record_of, dtype=np.int64))

    return TaskData(train=tokenize(train), eval=tokenize(evaluation), label_names=[], task="causal-lm")


def _causal_lm(train: pd.DataFrame, evaluation: pd.DataFrame, data: DataSpec, tokenizer) -> TaskData:
    """Plain text where the spec names a text column, else instruction or chat records."""
    return (_plain_texts if data.text_columns else _instructions)(train, evaluation, data, tokenizer)


# Classification is tokenised by _classification, which also takes the label names read from whole files.
_TOKENIZERS = {"sequence-regression": _regression, "causal-lm": _causal_lm}
