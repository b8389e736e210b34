"""A classifier's or regressor's adapter predicting new texts, read as the search read its evaluation rows.

A trial's score was measured on texts tokenised one way (the search's tokenizer, its ``data.max_length``, a pair
as the tokenizer joins two texts) and read through one head (its pooling, its labels in head order). A user who
loads the model and tokenises texts another way gets other outputs than the ones the front promised, so
:meth:`autopeft.api.Search.predict` builds the rows with the function that built the search's
(``autopeft.tasks.data``) and runs them through the worker's own evaluation pass (``workers.training``):
the same rows give the predictions stored with the trial.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from autopeft.errors import UserError

if TYPE_CHECKING:
    import pandas as pd
    from torch import nn

    from autopeft.spec import SearchSpec

PREDICTING_TASKS = ("sequence-classification", "multi-label-classification", "sequence-regression",
                    "token-classification", "multiple-choice")
# A multi-label head predicts each label whose probability passes this, as its trials were scored (workers/tasks.py)
MULTI_LABEL_THRESHOLD = 0.5


def load_trial_model(spec: SearchSpec, labels: list[str], adapter_dir: str | None, number: int) -> nn.Module:
    """The search's base with trial ``number``'s saved adapter on it, ready for inference (its library's loader;
    ``labels``: the head's, as the search stored them). ``Search.load_model`` and the dashboard's trial page."""
    from pathlib import Path

    import transformers

    from autopeft.loading import load_adapter
    from autopeft.models.base import load_base_model

    if not adapter_dir or not Path(adapter_dir).is_dir():
        raise UserError(f"trial {number}: no saved adapter here (a completed trial has one, in the folder its "
                        f"worker wrote: {adapter_dir or 'none recorded'})")
    # transformers would say the new head is untrained and should be trained ("You should probably TRAIN this
    # model"): its trained weights come from the adapter folder the next line loads
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        base = load_base_model(spec.model, labels)
    finally:
        transformers.logging.set_verbosity(verbosity)
    return load_adapter(base, adapter_dir)


def _cell(value: Any, where: str) -> str:
    """One text of a row. A missing cell (None, NaN: pandas' empty) was read as the text "None" or "nan" and
    predicted on, silently; a number is the text it reads as, as a file's cells are."""
    if isinstance(value, str):
        return value
    if value is None or (isinstance(value, float) and math.isnan(value)):
        raise UserError(f"{where} is missing; a text to read is needed, as in training")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise UserError(f"{where}: expected a text (got {type(value).__name__})")


def _one_row(value: Any, columns: list[str], where: str) -> list[str] | None:
    """``value`` as one row of texts, one per column; None when it is not one row's form."""
    if isinstance(value, Mapping):
        missing = [c for c in columns if c not in value]
        if missing:
            raise UserError(f"{where}: no {missing[0]!r}; a row names the search's text columns {columns}")
        return [_cell(value[c], f"{where}: {c!r}") for c in columns]
    if len(columns) == 1:
        return [value] if isinstance(value, str) else None
    if isinstance(value, tuple) and len(value) == len(columns):
        return [_cell(v, f"{where}: {c!r}") for c, v in zip(columns, value)]
    return None


def checked_rows(spec: SearchSpec, texts: Any, probabilities: bool = False) -> tuple[list[list[str]], bool]:
    """The inputs as rows of texts (one per text column) and whether one input was given (so that one prediction
    is returned); refused before any model is loaded where the search or the input cannot give predictions.

    One input is a text; for a search on text pairs a (first, second) tuple; or a row by the spec's column names
    (a mapping). Many are a list of those, or a DataFrame holding the spec's text columns."""
    import pandas as pd

    if spec.model.task not in PREDICTING_TASKS:
        raise UserError(f"predict: the search trained a {spec.model.task} model, which answers with text; use "
                        f"generate(trial, prompts)")
    if probabilities and spec.model.task in ("sequence-regression", "token-classification"):
        kind = "a number" if spec.model.task == "sequence-regression" else "a tag per word"
        raise UserError(f"probabilities: a {spec.model.task} head predicts {kind}, not classes of a text; leave "
                        "it False")
    if spec.model.task == "token-classification":
        return checked_sentences(spec, texts)
    if spec.model.task == "multiple-choice":
        from autopeft.results.predict_choices import checked_questions

        return checked_questions(spec, texts)
    columns = list(spec.data.text_columns or [])
    form = (f"a pair of texts as a tuple {tuple(columns)}" if len(columns) == 2 else "a text")
    if isinstance(texts, pd.DataFrame):
        missing = [c for c in columns if c not in texts.columns]
        if missing:
            raise UserError(f"texts: the DataFrame has no column {missing[0]!r}; the search read {columns}")
        rows = [[_cell(v, f"texts row {i}: {c!r}") for c, v in zip(columns, values)]
                for i, values in enumerate(texts[columns].itertuples(index=False))]
        single = False
    else:
        rows, single = one_or_many(texts, lambda value, where: _one_row(value, columns, where),
                                   f"{form} (or a row by column name)",
                                   f"a DataFrame with the columns {columns}")
    if not rows:
        raise UserError("texts: nothing to predict; give at least one")
    empty = next(((i, c) for i, row in enumerate(rows) for c, text in zip(columns, row) if not text.strip()), None)
    if empty is not None:
        raise UserError(f"texts[{empty[0]}]: {empty[1]!r} is empty; a text to read is needed, as in training")
    return rows, single


def one_or_many(inputs: Any, read_one: Callable[[Any, str], Any], form: str, table: str) -> tuple[list[Any], bool]:
    """``inputs`` as one input of the search's form or a sequence of them: each read by ``read_one(value, where)``
    (None when a value is not of the form), and whether one was given."""
    one = read_one(inputs, "texts")
    if one is not None:
        return [one], True
    if not isinstance(inputs, Sequence) or isinstance(inputs, str):
        raise UserError(f"texts: expected {form}, a list of them, or {table}; got {type(inputs).__name__}")
    read = []
    for index, value in enumerate(inputs):
        item = read_one(value, f"texts[{index}]")
        if item is None:
            raise UserError(f"texts[{index}]: expected {form}; got {type(value).__name__}")
        read.append(item)
    return read, False


def _words(value: Any, where: str) -> list[str] | None:
    """One sentence's words: a text split at whitespace, or a list of words; None when ``value`` is neither."""
    if isinstance(value, str):
        words = value.split()
    elif isinstance(value, (list, tuple, np.ndarray)) and all(isinstance(w, str) for w in value):
        words = [str(w) for w in value]
    else:
        return None
    if not words:
        raise UserError(f"{where} holds no words; a sentence to tag is needed")
    return words


def checked_sentences(spec: SearchSpec, texts: Any) -> tuple[list[list[str]], bool]:
    """A tagger's inputs as sentences of words, and whether one was given: a text (split at whitespace, as the
    data's text cells are), a list of texts, a list of word lists, or a DataFrame with the search's words
    column (lists or texts). One sentence given as its words is a list holding that list: a list of texts is
    many sentences."""
    import pandas as pd

    column = (spec.data.text_columns or ["tokens"])[0]
    if isinstance(texts, str):
        return [_words(texts, "texts")], True
    if isinstance(texts, pd.DataFrame):
        if column not in texts.columns:
            raise UserError(f"texts: the DataFrame has no column {column!r}; the search read its words from it")
        cells = list(texts[column])
    elif isinstance(texts, Sequence) and not isinstance(texts, str):
        cells = list(texts)
    else:
        raise UserError(f"texts: expected a sentence (a text), a list of them, a list of word lists, or a DataFrame "
                        f"with the column {column!r}; got {type(texts).__name__}")
    sentences = []
    for index, cell in enumerate(cells):
        words = _words(cell, f"texts[{index}]")
        if words is None:
            raise UserError(f"texts[{index}]: expected a sentence (a text) or its words (a list of texts); got "
                            f"{type(cell).__name__}")
        sentences.append(words)
    if not sentences:
        raise UserError("texts: nothing to predict; give at least one")
    return sentences, False


def predict_tags(model: nn.Module, tokenizer, spec: SearchSpec, sentences: list[list[str]],
                 labels: list[str]) -> list[list[tuple[str, str | None]]]:
    """Each sentence's words with their predicted tags (None for a word past ``data.max_length`` tokens), from
    the pass the worker evaluates with."""
    import torch

    from autopeft.models.base import padding_id
    from autopeft.tasks.data import TokenizedSplit
    from autopeft.tasks.word_tags import encode_words, tag_matrix
    from workers.training import predict_word_tags

    encoding, starts = encode_words(tokenizer, sentences, spec.data.max_length)
    types = encoding.get("token_type_ids")
    split = TokenizedSplit(input_ids=[np.asarray(ids, dtype=np.int32) for ids in encoding["input_ids"]],
                           token_type_ids=None if types is None else [np.asarray(t, dtype=np.int8) for t in types],
                           labels=tag_matrix([[0] * len(words) for words in sentences]), word_starts=starts)
    with torch.inference_mode():
        tags = predict_word_tags(model, split, batch_size=spec.training.eval_batch_size,
                                 pad_id=padding_id(tokenizer), device=next(model.parameters()).device)
    return [[(word, labels[tag] if tag >= 0 else None) for word, tag in zip(words, row)]
            for words, row in zip(sentences, tags)]


def predict_rows(model: nn.Module, tokenizer, spec: SearchSpec, rows: list[list[str]]) -> np.ndarray:
    """The head's outputs per row (rows × outputs, float32), from the pass the worker evaluates with."""
    import pandas as pd
    import torch

    from autopeft.models.base import padding_id
    from autopeft.tasks.data import tokenize_texts
    from workers.training import predict_logits

    columns = list(spec.data.text_columns or [])
    frame = pd.DataFrame(rows, columns=columns)
    split, _ = tokenize_texts(frame, spec.data, tokenizer, np.zeros(len(frame), dtype=np.int64))
    with torch.inference_mode():
        return predict_logits(model, split, batch_size=spec.training.eval_batch_size, pad_id=padding_id(tokenizer),
                              device=next(model.parameters()).device)  # where the caller put the model


def as_predictions(outputs: np.ndarray, spec: SearchSpec, labels: list[str], probabilities: bool,
                   single: bool) -> Any:
    """Label names (or each label's probability) for a classifier, a list of label names per input for a
    multi-label one, numbers for a regressor; one for one input."""
    import pandas as pd

    if spec.model.task == "sequence-regression":
        values = [float(v) for v in outputs[:, 0]]
        return values[0] if single else values
    if spec.model.task == "multi-label-classification":
        table = pd.DataFrame(1.0 / (1.0 + np.exp(-outputs.astype(np.float64))), columns=labels)
        if probabilities:
            return table.iloc[0].to_dict() if single else table
        sets = predicted_labels(table)
        return sets[0] if single else sets
    if probabilities:
        shifted = np.exp(outputs - outputs.max(axis=1, keepdims=True))
        table = pd.DataFrame(shifted / shifted.sum(axis=1, keepdims=True), columns=labels)
        return table.iloc[0].to_dict() if single else table
    names = [labels[i] for i in outputs.argmax(axis=1)]
    return names[0] if single else names


def predicted_labels(probabilities: pd.DataFrame) -> list[list[str]]:
    """A multi-label head's labels per row: those whose probability passes MULTI_LABEL_THRESHOLD, in head order."""
    passed = probabilities.to_numpy() > MULTI_LABEL_THRESHOLD
    return [[str(label) for label, on in zip(probabilities.columns, row) if on] for row in passed]


LABELS_AS_COLUMNS = 5  # more labels than this get no column each where a person reads the table
LIKELIEST_SHOWN = 3


def likeliest_labels(probabilities: pd.DataFrame, count: int = LIKELIEST_SHOWN) -> list[str]:
    """Each row's ``count`` likeliest labels with their probabilities, most likely first: what a reader of a task
    with many labels looks for, where a column per label (40 intents) would not fit a terminal or a page."""
    return [", ".join(f"{label} {p:.4f}" for label, p in
                      row.sort_values(ascending=False, kind="stable").head(count).items())
            for _, row in probabilities.iterrows()]
