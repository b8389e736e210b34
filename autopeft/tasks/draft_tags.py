"""Tagging data recognised by ``autopeft init`` (autopeft/tasks/draft.py): a tag per word, as named-entity,
part-of-speech and chunking sets are published, drafted as ``model.task: token-classification``.

Two columns are a tagging task's words and tags when every row holds as many tags as words: lists in a
.jsonl/.json/.parquet file or a DataFrame (CoNLL-2003's ``tokens`` and ``ner_tags``; a CoNLL file is read into
such lists), or whitespace-joined text in a .csv/.tsv. Equal counts in every row alone could be chance on a short
file, so the tags must also repeat far more than the words do (a tag set, not a second text), and joined text must
hold several words in most rows (a file of single words and their labels is classification).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from autopeft.spec import label_text
from autopeft.tasks.tag_spans import OUTSIDE_TAGS, tag_scheme
from autopeft.tasks.word_tags import CONLL_SUFFIXES, CONLL_TAGS, CONLL_WORDS, TOKEN_CLASSIFICATION

# What the words column is called in the tagging sets people bring (Hugging Face's CoNLL-2003, WNUT, UD exports)
WORD_NAMES = ("tokens", "words", "token", "word", "text", "sentence", "sentences")
# Tag columns in order of preference: CoNLL-2003's entity tags before its part-of-speech and chunk tags, the
# task most of its users mean
TAG_NAMES = ("ner_tags", "ner", "tags", "labels", "label", "entity_tags", "pos_tags", "upos", "xpos", "chunk_tags")
_INTEGER = re.compile(r"-?\d+")
_PREFIX = re.compile(r"^[BIESLU][-_]")  # an entity tag's place in its entity (tag_spans' prefixes)
_LISTS = (list, tuple, np.ndarray)


@dataclass
class _Column:
    """One column's cells as items: ``listed`` where its cells are lists, else text split at whitespace."""

    name: str
    listed: bool
    items: list[list[Any]]

    @cached_property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(row) for row in self.items), dtype=np.int64, count=len(self.items))

    @cached_property
    def vocabulary(self) -> set[str]:
        """The distinct items as labels are compared (a tag 3 read from a list and "3" from text alike)."""
        return {label_text(item) for row in self.items for item in row}

    def pairs_with(self, other: _Column) -> bool:
        """As many items as ``other`` in every row, written alike (lists beside lists, text beside text)."""
        return other.name != self.name and other.listed == self.listed and np.array_equal(other.lengths,
                                                                                            self.lengths)


def tagged_form(frame: pd.DataFrame, rows: Any, reasons: list[str]) -> tuple[dict[str, Any], str, str] | None:
    """The data fields, task and metric of a tagging task (``reasons`` told what was read), or None where no two
    columns hold a tag per word."""
    pair = _words_and_tags(frame)
    if pair is None:
        return None
    words, tags, others = pair
    if _is_conll(rows):
        reasons.append(f"a CoNLL file: a word per line with its tag last, read into the columns {CONLL_WORDS!r} and "
                       f"{CONLL_TAGS!r}")
    form = "lists" if words.listed else "whitespace-joined text"
    reasons.append(f"columns {words.name!r} and {tags.name!r} hold a word and a tag per word ({form}, as many "
                   f"tags as words in every row): token-classification")
    if others:
        reasons.append(f"other columns hold a tag per word too: {', '.join(map(repr, others))}; to tag by one of "
                       "them instead, set data.label_column to it (and the metric to accuracy where its tags are "
                       "not O and B-/I- entity tags)")
    fields: dict[str, Any] = {"text_columns": [words.name], "label_column": tags.name}
    names = _named_tags(tags, rows, fields, reasons)
    return fields, TOKEN_CLASSIFICATION, _metric(tags, names, reasons)


def _words_and_tags(frame: pd.DataFrame) -> tuple[_Column, _Column, list[str]] | None:
    """The words column, the preferred tags column beside it, and the other columns that could be its tags."""
    columns = [c for c in (_as_items(frame[name], name) for name in frame.columns) if c is not None]
    # equal counts first: the cheap test, so that a classifier's table is not read item by item
    paired = [c for c in columns if any(c.pairs_with(other) for other in columns)]
    for words in sorted((c for c in paired if _holds_words(c)), key=lambda c: _rank(c, WORD_NAMES, words=True)):
        fitting = sorted((c for c in paired if _tags_of(c, words)), key=lambda c: _rank(c, TAG_NAMES, words=False))
        if fitting:
            return words, fitting[0], [c.name for c in fitting[1:]]
    return None


def _as_items(column: pd.Series, name: str) -> _Column | None:
    """A column of lists, or of text (split at whitespace); None for numbers, mappings or mixed cells."""
    cells = list(column)
    if cells and all(isinstance(v, _LISTS) for v in cells):
        return _Column(str(name), True, [list(v) for v in cells])
    if cells and all(isinstance(v, str) for v in cells):
        return _Column(str(name), False, [v.split() for v in cells])
    return None


def _holds_words(column: _Column) -> bool:
    """Words: text items, and for joined text several words in most rows (one word a row is a classifier's text)."""
    if not any(column.items) or not all(isinstance(w, str) for row in column.items for w in row):
        return False
    return column.listed or float(np.mean(column.lengths >= 2)) >= 0.5


def _tags_of(column: _Column, words: _Column) -> bool:
    """A tag per word of ``words`` in every row, written as the words are (lists beside lists, text beside text),
    and a tag set rather than a text: fewer distinct values than the words have where the column is named as
    tags (a short file's part-of-speech tags are many beside its words), at most half as many where it is not."""
    if not column.pairs_with(words) or any(isinstance(t, (*_LISTS, Mapping)) for row in column.items for t in row):
        return False
    if column.name.lower() in TAG_NAMES:
        return len(column.vocabulary) < len(words.vocabulary)
    return len(column.vocabulary) <= max(1, len(words.vocabulary) // 2)


def _rank(column: _Column, names: tuple[str, ...], words: bool) -> tuple[int, int]:
    """Named columns first, in ``names``' order; then, for words, the column of most distinct values."""
    named = names.index(column.name.lower()) if column.name.lower() in names else len(names)
    return named, -len(column.vocabulary) if words else 0


def _is_conll(rows: Any) -> bool:
    return isinstance(rows, (str, os.PathLike)) and Path(rows).suffix.lower() in CONLL_SUFFIXES


def _named_tags(tags: _Column, rows: Any, fields: dict[str, Any], reasons: list[str]) -> list[str]:
    """The tags' names: as written, or for integer tags (class ids, as a `datasets` export writes them) the
    class names a parquet export keeps in its features, written as data.label_values; where none are kept, the
    ids, and the user is told that data.label_values names them."""
    seen = tags.vocabulary
    if not all(_INTEGER.fullmatch(t) for t in seen):
        return sorted(seen)
    ids = sorted(int(t) for t in seen)
    known = _class_names(rows, tags.name)
    if known is not None and all(0 <= i < len(known) for i in ids):
        fields["label_values"] = known
        reasons.append(f"tags {tags.name!r} are class ids, named in the file's `datasets` features: "
                       f"data.label_values lists their {len(known)} names in order ({', '.join(known[:6])}"
                       f"{', ...' if len(known) > 6 else ''})")
        return known
    reasons.append(f"tags {tags.name!r} are numbers ({ids[0]} to {ids[-1]}), class ids as a `datasets` export "
                   "writes them: list their names in order in data.label_values (tag 0 the first) to read them by "
                   "name, and to score entities (entity_f1) where they are O and B-/I- tags")
    return [str(i) for i in ids]


def _class_names(rows: Any, column: str) -> list[str] | None:
    """The class names of a list-of-classes column, as `datasets` keeps them in a parquet file's schema (its
    ``huggingface`` metadata); None for any other file, or a column stored without them."""
    if not isinstance(rows, (str, os.PathLike)) or Path(rows).suffix.lower() != ".parquet":
        return None
    try:
        import pyarrow.parquet as pq

        metadata = pq.read_schema(rows).metadata or {}
        features = json.loads(metadata[b"huggingface"])["info"]["features"]
    except (ImportError, OSError, KeyError, ValueError, TypeError):
        return None
    feature = features.get(column) if isinstance(features, dict) else None
    inner = feature.get("feature", feature) if isinstance(feature, dict) else None
    names = inner.get("names") if isinstance(inner, dict) else None
    return [str(n) for n in names] if isinstance(names, list) and names else None


def _metric(tags: _Column, names: list[str], reasons: list[str]) -> str:
    """entity_f1 where the tags are O and prefixed entity types (B-PER, I-PER), which is what such tags are
    scored by; else accuracy, the share of words given their gold tag (part-of-speech and chunk tags)."""
    counts = pd.Series([label_text(t) for row in tags.items for t in row]).value_counts()
    common = f"the most common {counts.index[0]!r}, {counts.iloc[0] / counts.sum():.0%} of the words"
    if tag_scheme(names) is not None:
        types = sorted({_PREFIX.sub("", n) for n in names if n not in OUTSIDE_TAGS})
        reasons.append(f"{len(names)} tags ({common}) forming entities of {len(types)} types "
                       f"({', '.join(types[:6])}{', ...' if len(types) > 6 else ''}): entity_f1 (an entity found "
                       "with its exact words and type, conlleval's F1) as the metric")
        return "entity_f1"
    reasons.append(f"{len(names)} tags ({common}), not O and B-/I- entity tags: accuracy (the share of words given "
                   "their gold tag) as the metric")
    return "accuracy"
