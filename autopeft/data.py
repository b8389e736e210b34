"""Task data: read the rows once, check them against the spec, tokenise once per search.

Tokenised examples are kept unpadded (one int array per example); batches are padded only to their own longest
example when they are formed, which on short-sentence tasks like SST-2 saves most of the compute. One tokeniser per
task: classification (a label per text or text pair), regression (a number per text or text pair, as in STS-B) and
causal-lm instruction tuning (LLM-Adapters' records: the response is scored, the prompt is not; evaluation
generates from the prompt and checks the answer).
"""

from __future__ import annotations

import csv
import math
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
    labels: np.ndarray | None  # classification: one label index per example (int64); regression: the target (float32)
    token_labels: list[np.ndarray] | None = None  # causal-lm: the target per token, -100 where not scored
    prompts: list[np.ndarray] | None = None  # causal-lm evaluation: the prompt alone, to generate from
    answers: list[str] | None = None  # causal-lm evaluation: the gold answers

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(x) for x in self.input_ids), dtype=np.int64, count=len(self.input_ids))


@dataclass
class TaskData:
    train: TokenizedSplit
    eval: TokenizedSplit
    label_names: list[str]  # classification: the label values in head order; empty for the other tasks
    task: str = "sequence-classification"

    @property
    def num_labels(self) -> int:
        """Outputs of the task head: one per label, 1 for regression, 0 for causal-lm (autopeft.models)."""
        from autopeft.models import num_labels

        return num_labels(self.task, self.label_names)


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


def _check_columns(frame: pd.DataFrame, columns: dict[str, str], field: str) -> None:
    """``columns`` maps each needed column to the spec field that names it."""
    for column, spec_field in columns.items():
        if column not in frame.columns:
            raise UserError(
                f"data.{spec_field}: column {column!r} not in the {field} data; its columns are {list(frame.columns)}"
            )
    if frame.empty:
        raise UserError(f"data.{field}: no rows")


def _subset(frame: pd.DataFrame, size: int | None, seed: int) -> pd.DataFrame:
    if size is None or size >= len(frame):
        return frame
    return frame.sample(n=size, random_state=seed).reset_index(drop=True)


def load_task_data(data: DataSpec, model: ModelSpec, seed: int) -> TaskData:
    """Read, check, subset and tokenise both splits for the model's task."""
    from autopeft.models import load_tokenizer

    train, evaluation = read_splits(data)
    columns = _TASK_COLUMNS[model.task](data)
    _check_columns(train, columns, "train")
    _check_columns(evaluation, columns, "eval")
    train = _subset(train, data.train_size, seed)
    evaluation = _subset(evaluation, data.eval_size, seed)
    return _TOKENIZERS[model.task](train, evaluation, data, load_tokenizer(model))


def _tokenize_texts(frame: pd.DataFrame, data: DataSpec, tokenizer, labels: np.ndarray) -> TokenizedSplit:
    """Single texts or text pairs (``data.text_columns``), with one label or target per example."""
    texts = [frame[c].astype(str).tolist() for c in data.text_columns]
    encoded = tokenizer(*texts, truncation=True, max_length=data.max_length)
    types = encoded.get("token_type_ids")
    return TokenizedSplit(
        input_ids=[np.asarray(x, dtype=np.int32) for x in encoded["input_ids"]],
        token_type_ids=None if types is None else [np.asarray(x, dtype=np.int8) for x in types],
        labels=labels,
    )


def _classification(train: pd.DataFrame, evaluation: pd.DataFrame, data: DataSpec, tokenizer) -> TaskData:
    label_names = sorted({str(v) for v in train[data.label_column]})
    if len(label_names) < 2:
        raise UserError(f"data.label_column: the training data has only one label value {label_names}")
    unseen = sorted({str(v) for v in evaluation[data.label_column]} - set(label_names))
    if unseen:
        raise UserError(f"data.label_column: evaluation labels {unseen[:5]} never occur in the training data")
    label_index = {name: i for i, name in enumerate(label_names)}

    def tokenize(frame: pd.DataFrame) -> TokenizedSplit:
        labels = np.asarray([label_index[str(v)] for v in frame[data.label_column]], dtype=np.int64)
        return _tokenize_texts(frame, data, tokenizer, labels)

    return TaskData(train=tokenize(train), eval=tokenize(evaluation), label_names=label_names,
                    task="sequence-classification")


def _targets(frame: pd.DataFrame, data: DataSpec, field: str) -> np.ndarray:
    """The regression target of each row as float32; a value that is not a finite number is the user's to fix."""
    targets = np.empty(len(frame), dtype=np.float32)
    for row, value in enumerate(frame[data.label_column]):
        try:
            number = float(str(value).strip())
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            raise UserError(f"data.label_column: sequence-regression needs a finite number in column "
                            f"{data.label_column!r}; the {field} data has {value!r}")
        targets[row] = number
    return targets


def _regression(train: pd.DataFrame, evaluation: pd.DataFrame, data: DataSpec, tokenizer) -> TaskData:
    train_targets = _targets(train, data, "train")
    if np.ptp(train_targets) == 0:
        raise UserError(f"data.label_column: every training target is {train_targets[0]:g}; nothing to learn")
    return TaskData(train=_tokenize_texts(train, data, tokenizer, train_targets),
                    eval=_tokenize_texts(evaluation, data, tokenizer, _targets(evaluation, data, "eval")),
                    label_names=[], task="sequence-regression")


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


def _instructions(train: pd.DataFrame, evaluation: pd.DataFrame, data: DataSpec, tokenizer) -> TaskData:
    eos = tokenizer.eos_token_id

    def tokenize(frame: pd.DataFrame, with_prompts: bool) -> TokenizedSplit:
        sequences, targets, prompts = [], [], []
        for row in frame.itertuples(index=False):
            record = row._asdict()
            prompt = tokenizer(instruction_prompt(str(record[data.instruction_column]),
                                                  str(record.get(data.input_column, "") or "")))["input_ids"]
            response = tokenizer(str(record[data.output_column]), add_special_tokens=False)["input_ids"]
            full = (prompt + response + ([eos] if eos is not None else []))[: data.max_length]
            scored = [-100] * min(len(prompt), len(full)) + full[len(prompt):]
            sequences.append(np.asarray(full, dtype=np.int32))
            targets.append(np.asarray(scored, dtype=np.int64))
            prompts.append(np.asarray(prompt[: data.max_length], dtype=np.int32))
        return TokenizedSplit(
            input_ids=sequences, token_type_ids=None, labels=None, token_labels=targets,
            prompts=prompts if with_prompts else None,
            answers=[str(a) for a in frame[data.answer_column]] if with_prompts else None,
        )

    return TaskData(train=tokenize(train, False), eval=tokenize(evaluation, True), label_names=[], task="causal-lm")


def _text_columns(d: DataSpec) -> dict[str, str]:
    return {**{c: "text_columns" for c in d.text_columns or []}, d.label_column: "label_column"}


_TASK_COLUMNS = {
    "sequence-classification": _text_columns,
    "sequence-regression": _text_columns,
    "causal-lm": lambda d: {d.instruction_column: "instruction_column", d.output_column: "output_column",
                            d.answer_column: "answer_column"},
}
_TOKENIZERS = {"sequence-classification": _classification, "sequence-regression": _regression,
               "causal-lm": _instructions}
