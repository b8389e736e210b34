"""The words and tags of a tagging task (model.task: token-classification): a tag per word, as named-entity,
part-of-speech and chunking data is published.

- a list of words and a list of tags per row (.jsonl, .json, .parquet, or a `datasets` dataset such as
  CoNLL-2003, whose ``ner_tags`` are classes and are written by name), or the same as text split at whitespace
  (a .csv's ``tokens`` cell "EU rejects German call", ``tags`` cell "B-ORG O B-MISC O");
- a CoNLL file (.conll, .iob, .bio): a word per line with its tag last, a blank line between sentences,
  ``-DOCSTART-`` lines skipped; read into the columns ``tokens`` and ``tags``.

Each word is tokenised as the model reads it; its tag is the target of its first sub-word token only (the others,
and the special tokens, are not scored: transformers' convention for tagging, so a word is one decision however
it is split). A word past ``data.max_length`` tokens gets no prediction and counts as wrong, and is noted.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from autopeft.errors import DataWarning, UserError
from autopeft.spec import DataSpec, label_text
from autopeft.tasks.label_sets import check_label_values, labels_in_order, refuse_unseen
from autopeft.tasks.tag_spans import NO_WORD, OUTSIDE_TAGS

TOKEN_CLASSIFICATION = "token-classification"
# The columns the parsed words and tags ride along in, through the hold-out and the subsets
WORDS_COLUMN, TAGS_COLUMN = "\0words", "\0tags"
# What a CoNLL file's columns are read into
CONLL_WORDS, CONLL_TAGS = "tokens", "tags"
CONLL_SUFFIXES = (".conll", ".iob", ".bio")
_INTEGER = re.compile(r"-?\d+")
NOT_SCORED = -100  # a token whose target the loss skips (transformers' ignore index)


def read_conll(path: str, header: bool = True) -> pd.DataFrame:
    """A CoNLL file's sentences as rows of ``tokens`` and ``tags`` lists: each non-blank line a word, its first
    field the word and its last the tag (CoNLL-2003's four columns: word, part of speech, chunk, entity), a blank
    line ending a sentence, ``-DOCSTART-`` lines (document breaks) left out."""
    sentences: list[tuple[list[str], list[str]]] = []
    words: list[str] = []
    tags: list[str] = []
    with open(path, encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, start=1):
            fields = line.split()
            if fields and fields[0] == "-DOCSTART-":
                continue
            if not fields:
                if words:
                    sentences.append((words, tags))
                    words, tags = [], []
                continue
            if len(fields) < 2:
                raise ValueError(f"line {number} holds {line.strip()!r}: a word and its tag, separated by a space "
                                 "or a tab, are expected on each line (a blank line between sentences)")
            words.append(fields[0])
            tags.append(fields[-1])
    if words:
        sentences.append((words, tags))
    return pd.DataFrame({CONLL_WORDS: [s[0] for s in sentences], CONLL_TAGS: [s[1] for s in sentences]})


def _cell_items(cell: Any) -> list[str]:
    """A cell of words or tags: a list as it is, text split at whitespace, nothing for an empty cell."""
    if isinstance(cell, (list, tuple, np.ndarray)):
        return [str(v) for v in cell]
    if cell is None or (isinstance(cell, float) and math.isnan(cell)):
        return []
    return str(cell).split()


def with_words_and_tags(frame: pd.DataFrame, data: DataSpec, row_name: Callable[[int], str]) -> pd.DataFrame:
    """``frame`` with each row's words and tags (lists of text) in WORDS_COLUMN and TAGS_COLUMN; a row without
    words, or whose words and tags differ in number, is refused naming it."""
    words = [_cell_items(cell) for cell in frame[data.text_columns[0]]]
    tags = [[label_text(t) for t in _cell_items(cell)] for cell in frame[data.label_column]]
    for position, row_words, row_tags in zip(frame.index, words, tags):
        if not row_words:
            raise UserError(f"data.text_columns: column {data.text_columns[0]!r} holds no words in "
                            f"{row_name(int(position))}; fill it in or remove the row")
        if len(row_words) != len(row_tags):
            raise UserError(f"data.label_column: {row_name(int(position))} has {len(row_words)} words in "
                            f"{data.text_columns[0]!r} and {len(row_tags)} tags in {data.label_column!r}; a tag "
                            "per word is expected (words and tags split at whitespace where they are text)")
    return frame.assign(**{WORDS_COLUMN: pd.Series(words, index=frame.index, dtype=object),
                           TAGS_COLUMN: pd.Series(tags, index=frame.index, dtype=object)})


def _named_by_index(frame: pd.DataFrame | None, names: list[str]) -> pd.DataFrame | None:
    """Integer tags written as positions in ``names`` (data.label_values), as a `datasets` export writes them."""
    if frame is None:
        return None
    return frame.assign(**{TAGS_COLUMN: [[names[int(t)] if 0 <= int(t) < len(names) else t for t in tags]
                                         for tags in frame[TAGS_COLUMN]]})


def tag_names(train: pd.DataFrame, evaluation: pd.DataFrame | None, data: DataSpec,
              dataset_classes: list[str] | None = None) -> tuple[list[str], pd.DataFrame, pd.DataFrame | None]:
    """The tags in head order, and the frames with integer tags named: a `datasets` dataset's class names in
    its order, else data.label_values (where every tag is an integer and the values are names, tag i is the
    i-th of them), else the training tags, ``O`` first and the rest in order. A tag of the evaluation rows that
    no training row has is refused (the head would have no output for it)."""
    seen = {tag for tags in train[TAGS_COLUMN] for tag in tags}
    evaluated = set() if evaluation is None else {tag for tags in evaluation[TAGS_COLUMN] for tag in tags}
    values = data.label_values
    if values is not None and all(_INTEGER.fullmatch(t) for t in seen | evaluated) and \
            not any(_INTEGER.fullmatch(v) for v in values):
        train, evaluation = _named_by_index(train, values), _named_by_index(evaluation, values)
        return tag_names(train, evaluation, data.model_copy(update={"label_values": None}), values)
    if values is not None:
        check_label_values(seen, evaluated, values, "tags")
        names = list(values)
    elif dataset_classes is not None:
        names = [label_text(n) for n in dataset_classes]
    else:
        outside = sorted(seen & OUTSIDE_TAGS)
        names = outside + labels_in_order(seen - OUTSIDE_TAGS)
    if len(set(names)) < 2:
        raise UserError(f"data.label_column: the training rows have {len(seen)} tag {sorted(seen)} in "
                        f"{data.label_column!r}; a tagger learns from words of two tags or more: check that it is "
                        "the column of tags")
    refuse_unseen(evaluated, names, "tags")
    return names, train, evaluation


def encode_words(tokenizer, word_lists: Sequence[Sequence[str]], max_length: int) -> tuple[Any, list[np.ndarray]]:
    """The tokenizer's encoding of each sentence, its words joined by single spaces and cut at ``max_length``
    tokens, and the token position of each word's first sub-word token (NO_WORD for a word the cut left out).

    The words are read as the running text they are, not one by one: a byte-level BPE (GPT-2's, LLaMA 3's,
    SmolLM's) spells a word after a space differently from a word alone, and transformers' ``is_split_into_words``
    glues the words together for some of them ("EUrejectsGerman"). A word's tokens are found by their character
    offsets in the text, which every fast tokenizer gives, whatever its kind of vocabulary."""
    if not getattr(tokenizer, "is_fast", False):
        raise UserError(f"model.name_or_path: token-classification needs the model's fast tokenizer (its "
                        f"tokenizer.json), which says where each token lies in the text; "
                        f"{type(tokenizer).__name__} is a slow one. Save the model's tokenizer with a recent "
                        "transformers to write one")
    texts, spans = [], []
    for words in word_lists:
        lengths = np.fromiter((len(w) for w in words), dtype=np.int64, count=len(words))
        begins = np.concatenate([[0], np.cumsum(lengths + 1)[:-1]]) if len(words) else lengths
        texts.append(" ".join(words))
        spans.append(np.stack([begins, begins + lengths], axis=1) if len(words) else np.zeros((0, 2), np.int64))
    encoding = tokenizer(texts, truncation=True, max_length=max_length, return_offsets_mapping=True, verbose=False)
    starts = []
    for row, word_spans in enumerate(spans):
        offsets = np.asarray(encoding["offset_mapping"][row], dtype=np.int64).reshape(-1, 2)
        # a token is a word's when their characters overlap (special tokens span none)
        overlaps = ((offsets[None, :, 1] > word_spans[:, None, 0]) & (offsets[None, :, 0] < word_spans[:, None, 1])
                    & (offsets[None, :, 1] > offsets[None, :, 0]))
        starts.append(np.where(overlaps.any(axis=1), overlaps.argmax(axis=1), NO_WORD))
    return encoding, starts


def tag_matrix(tag_lists: Sequence[Sequence[int]]) -> np.ndarray:
    """Tag ids as a sentences × words matrix, NO_WORD past each sentence's end."""
    width = max((len(tags) for tags in tag_lists), default=0)
    matrix = np.full((len(tag_lists), max(width, 1)), NO_WORD, dtype=np.int64)
    for row, tags in enumerate(tag_lists):
        matrix[row, :len(tags)] = tags
    return matrix


@dataclass
class Untagged:
    """Words that get no tag (and count as wrong): past ``data.max_length`` tokens, or giving the tokenizer no
    token at all (an empty word, a zero-width space, a control character), with one of the latter to show."""

    cut: int = 0
    tokenless: int = 0
    example: str | None = None

    def add(self, other: Untagged) -> Untagged:
        return Untagged(self.cut + other.cut, self.tokenless + other.tokenless, self.example or other.example)


def _untagged(word_lists: list[list[str]], starts: list[np.ndarray]) -> Untagged:
    """Which words got no token: those after a sentence's last read word were cut; those before it, the
    tokenizer gave nothing."""
    found = Untagged()
    for words, row in zip(word_lists, starts):
        read = np.flatnonzero(row != NO_WORD)
        last = read[-1] if len(read) else -1
        missing = np.flatnonzero(row == NO_WORD)
        tokenless = missing[missing < last]
        found = found.add(Untagged(int((missing > last).sum()), len(tokenless),
                                   repr(words[tokenless[0]]) if len(tokenless) else None))
    return found


def tokenize_tagged(frame: pd.DataFrame, data: DataSpec, tokenizer, names: list[str]):
    """One split's sentences as token ids, each token's training target (its word's tag at the word's first
    token, NOT_SCORED elsewhere), each word's first token, and the gold tags (sentences × words); and the words
    left without a token (``Untagged``)."""
    from autopeft.tasks.data import TokenizedSplit

    index = {name: i for i, name in enumerate(names)}
    word_lists = list(frame[WORDS_COLUMN])
    tag_ids = [[index[tag] for tag in tags] for tags in frame[TAGS_COLUMN]]
    encoding, starts = encode_words(tokenizer, word_lists, data.max_length)
    ids, types, targets = [], [], []
    for row, tags in enumerate(tag_ids):
        row_ids = np.asarray(encoding["input_ids"][row], dtype=np.int32)
        kept = starts[row] != NO_WORD
        target = np.full(len(row_ids), NOT_SCORED, dtype=np.int64)
        target[starts[row][kept]] = np.asarray(tags, dtype=np.int64)[kept]
        ids.append(row_ids)
        targets.append(target)
        if "token_type_ids" in encoding:
            types.append(np.asarray(encoding["token_type_ids"][row], dtype=np.int8))
    split = TokenizedSplit(input_ids=ids, token_type_ids=types if types else None, labels=tag_matrix(tag_ids),
                           token_labels=targets, word_starts=starts)
    return split, _untagged(word_lists, starts)


def _share(count: int, words: int) -> str:
    return f"{count / words:.1%}" if count / words >= 0.001 else "under 0.1%"


def note_untagged(untagged: Untagged, words: int, data: DataSpec) -> None:
    """Say how many words get no tag (scored as wrong), and why: past ``data.max_length`` tokens, or nothing the
    tokenizer reads (which a longer max_length would not mend)."""
    if untagged.cut:
        warnings.warn(DataWarning(
            f"data.max_length: {untagged.cut:,} of {words:,} words ({_share(untagged.cut, words)}) lie past "
            f"{data.max_length} tokens of their sentence and get no tag (scored as wrong); raise max_length to tag "
            "them"), stacklevel=3)
    if untagged.tokenless:
        warnings.warn(DataWarning(
            f"data.text_columns: {untagged.tokenless:,} of {words:,} words ({_share(untagged.tokenless, words)}) "
            f"give the model's tokenizer no token (such as {untagged.example}: empty, or characters it drops) and "
            "get no tag (scored as wrong); remove or replace them in the data"), stacklevel=3)
