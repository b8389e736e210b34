"""The labels of a multi-label task: any number per row, read in either of the two forms such data is published in.

- one column per label, each cell 1 or 0 (``data.label_columns``: Jigsaw's toxic, obscene, threat, ... columns);
- one column holding each row's labels (``data.label_column``): joined by ``data.label_separator`` in a text file
  ("sports,politics"), or a list in a .jsonl/.json/.parquet file or a `datasets` dataset (GoEmotions' ``labels``);
  an empty cell is a row with no label, which such data has plenty of (a neutral comment).

Each row becomes a 0/1 row over the labels in head order (``TaskData.label_names``), the target of the head's
binary cross-entropy per label (autopeft.models.base.TASK_HEADS). A cell that is neither form is refused with its
row; a label the head could never learn (set in no training row) or a task with one label per row is noted,
since both are better said than searched.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd

from autopeft.errors import DataWarning, UserError
from autopeft.spec import DataSpec, label_text

MULTI_LABEL = "multi-label-classification"
# The column the parsed sets ride along in, through the hold-out and the subsets (no user column is named so)
SET_COLUMN = "\0label_set"
_ON, _OFF = frozenset({"1", "true", "yes"}), frozenset({"0", "false", "no"})
FLAG_CELLS = _ON | _OFF  # what a 0/1 label column's cells may hold (lower-cased; autopeft init looks for them too)
_INTEGER = re.compile(r"-?\d+")  # a label after label_text: integral numbers are plain integers


def _cell_labels(cell: Any, separator: str) -> tuple[str, ...]:
    """One cell of ``data.label_column`` as its labels: a list as it is, text split at the separator, nothing
    for an empty cell; each label as :func:`label_text` writes it, each once."""
    if isinstance(cell, (list, tuple, np.ndarray)):
        parts = [str(v) for v in cell]
    elif cell is None or (isinstance(cell, float) and math.isnan(cell)):
        parts = []
    else:
        parts = str(cell).split(separator)
    return tuple(dict.fromkeys(label_text(p) for p in parts if str(p).strip()))


def _column_flags(frame: pd.DataFrame, column: str, row_name: Callable[[int], str]) -> np.ndarray:
    """One 0/1 label column as booleans; a cell that is not 1/0, true/false or yes/no is refused with its row."""
    texts = frame[column].map(lambda v: label_text(v).lower())
    unknown = ~texts.isin(FLAG_CELLS)
    if unknown.any():
        position = int(frame.index[np.flatnonzero(unknown.to_numpy())[0]])
        value = frame[column].loc[position]
        raise UserError(f"data.label_columns: column {column!r} holds {value!r} in {row_name(position)}; each "
                        f"label column holds 1 or 0 (true/false, yes/no) for whether the row has that label")
    return texts.isin(_ON).to_numpy()


def with_label_sets(frame: pd.DataFrame, data: DataSpec, row_name: Callable[[int], str]) -> pd.DataFrame:
    """``frame`` with each row's labels (a tuple of label texts) in SET_COLUMN; ``row_name`` names a row as the
    user counts it, for a refused cell."""
    if data.label_columns:
        flags = np.stack([_column_flags(frame, c, row_name) for c in data.label_columns], axis=1)
        sets = [tuple(c for c, on in zip(data.label_columns, row) if on) for row in flags]
    else:
        sets = [_cell_labels(cell, data.label_separator) for cell in frame[data.label_column]]
    return frame.assign(**{SET_COLUMN: pd.Series(sets, index=frame.index, dtype=object)})


def labels_in_order(seen: set[str]) -> list[str]:
    """Labels in head order when nothing else gives one: numeric when all are integers (1-based labels 1..4 become
    head indices 0..3; "10" after "9"), else alphabetical. One label per row is ordered so too."""
    return sorted(seen, key=Decimal) if all(_INTEGER.fullmatch(s) for s in seen) else sorted(seen)


def label_names(train: pd.DataFrame, evaluation: pd.DataFrame | None, data: DataSpec,
                dataset_classes: list[str] | None = None) -> list[str]:
    """The labels in head order: data.label_columns' order, else data.label_values, else a `datasets`
    dataset's class names, else every label of the training rows (numeric order for integers, else alphabetical).
    A label of the evaluation rows that no training row has is refused (the head would have no output for it)."""
    if data.label_columns:
        return list(data.label_columns)
    seen = {label for labels in train[SET_COLUMN] for label in labels}
    evaluated = set() if evaluation is None else {label for labels in evaluation[SET_COLUMN] for label in labels}
    if data.label_values is not None:
        check_label_values(seen, evaluated, data.label_values)
        return list(data.label_values)
    names = [label_text(n) for n in dataset_classes] if dataset_classes is not None else labels_in_order(seen)
    if len(names) < 2:
        raise UserError(f"data.label_column: the training rows name {len(names)} label {sorted(seen)} in "
                        f"{data.label_column!r} (split at {data.label_separator!r}); a row that has a label or "
                        "not is two-label classification (model.task: sequence-classification with a 0/1 label); "
                        "else name the column that holds the labels, or set data.label_separator to what joins them")
    refuse_unseen(evaluated, names)
    return names


def check_label_values(seen: set[str], evaluated: set[str], values: list[str], noun: str = "labels") -> None:
    """Refuse a label (a tagger's tag: ``noun``) of either split that data.label_values does not list."""
    for labels, field in ((seen, "train"), (evaluated, "eval")):
        unexpected = sorted(labels - set(values))
        if unexpected:
            raise UserError(f"data.label_values: the {field} rows have {noun} {unexpected[:10]} that are not in "
                            f"data.label_values {values}; add them there, or correct the data")


def refuse_unseen(evaluated: set[str], names: list[str], noun: str = "labels") -> None:
    """Refuse evaluation labels (a tagger's tags) no training row has: the head would have no output for them."""
    unseen = sorted(evaluated - set(names))
    if unseen:
        raise UserError(f"data.label_column: evaluation rows have {noun} {unseen[:5]} that no training row has "
                        f"(its {noun}: {names[:8]}), so the head has no output for them: add training rows with "
                        "them or remove them from the evaluation rows")


def label_matrix(frame: pd.DataFrame, names: list[str]) -> np.ndarray:
    """Each row's labels as a float32 0/1 row over ``names`` (the head's targets)."""
    index = {name: i for i, name in enumerate(names)}
    matrix = np.zeros((len(frame), len(names)), dtype=np.float32)
    for row, labels in enumerate(frame[SET_COLUMN]):
        matrix[row, [index[label] for label in labels]] = 1.0
    return matrix


def note_label_use(train: np.ndarray, names: list[str], data: DataSpec) -> None:
    """Say what the training rows make of the labels where it is not what a multi-label search is for: labels
    set in no training row (the head learns never to predict them), or no row with more than one label (one
    label per row is sequence-classification, read by a softmax over the labels)."""
    absent = [name for name, count in zip(names, train.sum(axis=0)) if count == 0]
    if absent:
        warnings.warn(DataWarning(f"data.{'label_columns' if data.label_columns else 'label_values'}: "
                                  f"{len(absent)} of {len(names)} labels are set in no training row "
                                  f"({', '.join(map(repr, absent[:5]))}{', ...' if len(absent) > 5 else ''}): "
                                  "the head learns never to predict them; add rows that have them, or leave them "
                                  "out"), stacklevel=3)
    if len(train) and train.sum(axis=1).max() <= 1:
        warnings.warn(DataWarning("model.task: no training row has more than one label; where each row has "
                                  "exactly one, model.task: sequence-classification reads them as one label each "
                                  "(a softmax over the labels, scored by accuracy)"), stacklevel=3)
