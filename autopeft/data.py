"""Task data: read the rows once, check them against the spec, tokenise once per search.

Tokenised examples are kept unpadded (one int array per example); batches are padded only to their own longest
example when they are formed, which on short-sentence tasks like SST-2 saves most of the compute.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from autopeft.errors import UserError
from autopeft.spec import DataSpec, ModelSpec

_READERS = {
    ".tsv": lambda p: pd.read_csv(p, sep="\t", quoting=csv.QUOTE_NONE, keep_default_na=False, dtype=str),
    ".csv": lambda p: pd.read_csv(p, keep_default_na=False, dtype=str),
    ".jsonl": lambda p: pd.read_json(p, lines=True, dtype=False),
    ".json": lambda p: pd.read_json(p, dtype=False),
    ".parquet": pd.read_parquet,
}


@dataclass
class TokenizedSplit:
    input_ids: list[np.ndarray]
    token_type_ids: list[np.ndarray] | None
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(x) for x in self.input_ids), dtype=np.int64, count=len(self.input_ids))


@dataclass
class TaskData:
    train: TokenizedSplit
    eval: TokenizedSplit
    label_names: list[str]

    @property
    def num_labels(self) -> int:
        return len(self.label_names)


def read_table(path: str, field: str) -> pd.DataFrame:
    reader = _READERS.get(Path(path).suffix.lower())
    if reader is None:
        raise UserError(f"data.{field}: cannot read {path}; use one of {', '.join(_READERS)}")
    try:
        return reader(path)
    except Exception as exc:  # pandas raises many kinds; the user needs the file and the cause
        raise UserError(f"data.{field}: cannot read {path}: {exc}") from None


def read_splits(data: DataSpec) -> tuple[pd.DataFrame, pd.DataFrame]:
    if data.dataset is not None:
        try:
            import datasets
        except ImportError:
            raise UserError("data.dataset: the `datasets` package is not installed; pip install datasets") from None
        ref = data.dataset
        try:
            loaded = datasets.load_dataset(ref.name, ref.config)
        except Exception as exc:  # network, unknown name, missing config: all the user's to fix
            raise UserError(f"data.dataset: cannot load {ref.name!r} ({ref.config}): {exc}") from None
        for split in (ref.train_split, ref.eval_split):
            if split not in loaded:
                raise UserError(f"data.dataset: split {split!r} not in {list(loaded)}")
        return loaded[ref.train_split].to_pandas(), loaded[ref.eval_split].to_pandas()
    return read_table(data.train, "train"), read_table(data.eval, "eval")


def _check_columns(frame: pd.DataFrame, data: DataSpec, field: str) -> None:
    for column in [*data.text_columns, data.label_column]:
        if column not in frame.columns:
            which = "label_column" if column == data.label_column else "text_columns"
            raise UserError(
                f"data.{which}: column {column!r} not in the {field} data; its columns are {list(frame.columns)}"
            )
    if frame.empty:
        raise UserError(f"data.{field}: no rows")


def _subset(frame: pd.DataFrame, size: int | None, seed: int) -> pd.DataFrame:
    if size is None or size >= len(frame):
        return frame
    return frame.sample(n=size, random_state=seed).reset_index(drop=True)


def load_task_data(data: DataSpec, model: ModelSpec, seed: int) -> TaskData:
    """Read, check, subset and tokenise both splits."""
    from autopeft.models import load_tokenizer

    train, evaluation = read_splits(data)
    _check_columns(train, data, "train")
    _check_columns(evaluation, data, "eval")
    train = _subset(train, data.train_size, seed)
    evaluation = _subset(evaluation, data.eval_size, seed)

    label_names = sorted({str(v) for v in train[data.label_column]})
    if len(label_names) < 2:
        raise UserError(f"data.label_column: the training data has only one label value {label_names}")
    unseen = sorted({str(v) for v in evaluation[data.label_column]} - set(label_names))
    if unseen:
        raise UserError(f"data.label_column: evaluation labels {unseen[:5]} never occur in the training data")

    tokenizer = load_tokenizer(model)
    label_index = {name: i for i, name in enumerate(label_names)}

    def tokenize(frame: pd.DataFrame) -> TokenizedSplit:
        texts = [frame[c].astype(str).tolist() for c in data.text_columns]
        encoded = tokenizer(*texts, truncation=True, max_length=data.max_length)
        types = encoded.get("token_type_ids")
        return TokenizedSplit(
            input_ids=[np.asarray(x, dtype=np.int32) for x in encoded["input_ids"]],
            token_type_ids=None if types is None else [np.asarray(x, dtype=np.int8) for x in types],
            labels=np.asarray([label_index[str(v)] for v in frame[data.label_column]], dtype=np.int64),
        )

    return TaskData(train=tokenize(train), eval=tokenize(evaluation), label_names=label_names)
