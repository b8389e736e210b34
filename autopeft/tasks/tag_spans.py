"""Entities in sequences of word tags, and the scores of predicted tags against gold ones.

A tagging task (model.task: token-classification) is scored as its field scores it: the **entity F1** — an entity
(a span of ``B-``/``I-`` tags of one type) counts as found only when a predicted entity has exactly its words and
its type, micro-averaged over all entities (conlleval's and seqeval's score for CoNLL-2003, WNUT, OntoNotes) — and
the **word accuracy**, the share of words given their gold tag (the score of part-of-speech tagging, whose tags
form no entities).

Spans are read by conlleval's rules, which seqeval's default mode follows too: IOB2 (``B-`` opens every entity),
IOB1 (``I-`` opens one after another type or ``O``), IOE and IOBES/BILOU, so a tag set in any of them is scored
as its authors score it. The rules are applied to whole arrays at once — rows × sentences × words — so the noise
model (autopeft/results/chance.py) scores a few hundred permutations or bootstrap resamples of a trial's
predictions in milliseconds; the tests check them against seqeval on random sequences.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

NO_WORD = -1  # a tag matrix's cell past a sentence's last word, or a word the model never read (cut by max_length)
OUTSIDE_TAGS = frozenset({"O"})
_SPAN_TAG = re.compile(r"^([BIESLU])[-_](.+)$")  # B-PER, I_LOC; BILOU's L(ast) and U(nit) are IOBES's E and S
_OUT, _BEGIN, _INSIDE, _END, _SINGLE = range(5)
_PREFIX_CODES = {"B": _BEGIN, "I": _INSIDE, "E": _END, "L": _END, "S": _SINGLE, "U": _SINGLE}


@dataclass(frozen=True)
class TagScheme:
    """Each tag id's place in an entity (``prefixes``: outside, begin, inside, end, single) and its entity type's
    index (``types``, -1 outside), for a tag set whose every tag is ``O`` or a prefixed type."""

    prefixes: np.ndarray
    types: np.ndarray
    type_names: tuple[str, ...]


def tag_scheme(tag_names: list[str] | tuple[str, ...]) -> TagScheme | None:
    """The entity scheme of a tag set, or None where its tags form no entities (part-of-speech tags: NN, VBZ),
    so that only word accuracy is defined."""
    prefixes, types, type_names = [], [], {}
    for name in tag_names:
        if name in OUTSIDE_TAGS:
            prefixes.append(_OUT)
            types.append(-1)
            continue
        matched = _SPAN_TAG.match(name)
        if matched is None:
            return None
        prefixes.append(_PREFIX_CODES[matched.group(1)])
        types.append(type_names.setdefault(matched.group(2), len(type_names)))
    if not type_names:
        return None
    return TagScheme(np.asarray(prefixes, dtype=np.int8), np.asarray(types, dtype=np.int32), tuple(type_names))


def _spans(tags: np.ndarray, scheme: TagScheme) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where entities start (bool), each start's entity type, and the word each start's entity ends at, of tag
    ids (any leading shape × words; NO_WORD reads as outside). conlleval's start_of_chunk and end_of_chunk."""
    word = tags != NO_WORD
    safe = np.where(word, tags, 0)
    prefix = np.where(word, scheme.prefixes[safe], _OUT)
    kind = np.where(word, scheme.types[safe], -1)
    outside_column = np.zeros((*tags.shape[:-1], 1), dtype=prefix.dtype)
    before_prefix = np.concatenate([outside_column, prefix[..., :-1]], axis=-1)
    before_kind = np.concatenate([outside_column - 1, kind[..., :-1]], axis=-1)
    after_prefix = np.concatenate([prefix[..., 1:], outside_column], axis=-1)
    after_kind = np.concatenate([kind[..., 1:], outside_column - 1], axis=-1)
    continuing = (prefix == _INSIDE) | (prefix == _END)
    starts = ((prefix == _BEGIN) | (prefix == _SINGLE)
              | (continuing & np.isin(before_prefix, (_END, _SINGLE, _OUT)))
              | ((prefix != _OUT) & (before_kind != kind)))
    opening_next = np.isin(after_prefix, (_BEGIN, _SINGLE, _OUT))
    ends = ((prefix == _END) | (prefix == _SINGLE)
            | (np.isin(prefix, (_BEGIN, _INSIDE)) & opening_next)
            | ((prefix != _OUT) & (kind != after_kind)))
    width = tags.shape[-1]
    end_here = np.where(ends, np.arange(width, dtype=np.int32), width).astype(np.int32)
    next_end = np.minimum.accumulate(end_here[..., ::-1], axis=-1)[..., ::-1]  # the first end at or after each word
    return starts, kind.astype(np.int32), next_end


def tag_rows(predicted: np.ndarray, gold: np.ndarray, scheme: TagScheme | None) -> dict[str, np.ndarray]:
    """Word accuracy and (where the tags form entities) the entity F1 per row, of tag-id arrays shaped rows ×
    sentences × words (NO_WORD past each sentence's end; a predicted NO_WORD where gold has a word is a word the
    model gave no tag, which is wrong). Predictions past a gold sentence's end are not read: a permuted null pairs
    sentences of other lengths."""
    predicted = np.where(gold == NO_WORD, NO_WORD, predicted)
    words = (gold != NO_WORD).sum(axis=(1, 2))
    correct = ((predicted == gold) & (gold != NO_WORD)).sum(axis=(1, 2))
    metrics = {"accuracy": np.divide(correct, words, out=np.zeros(len(gold)), where=words > 0)}
    if scheme is not None:
        gold_starts, gold_kind, gold_end = _spans(gold, scheme)
        predicted_starts, predicted_kind, predicted_end = _spans(predicted, scheme)
        found = (gold_starts & predicted_starts & (gold_kind == predicted_kind)
                 & (gold_end == predicted_end)).sum(axis=(1, 2)).astype(np.float64)
        entities = (gold_starts.sum(axis=(1, 2)) + predicted_starts.sum(axis=(1, 2))).astype(np.float64)
        metrics["entity_f1"] = np.divide(2 * found, entities, out=np.zeros(len(gold)), where=found > 0)
    return metrics


def tag_rows_paired(predicted: np.ndarray, gold: np.ndarray, predicted_rows: np.ndarray, gold_rows: np.ndarray,
                    scheme: TagScheme | None) -> dict[str, np.ndarray]:
    """:func:`tag_rows` of ``predicted[predicted_rows]`` against ``gold[gold_rows]`` (sentences × words each; the
    row indices rounds × sentences: a permutation null pairs a prediction with another sentence's gold, a
    bootstrap resamples both alike), without reading the entities anew for each round: each sentence's are read
    once, and a prediction paired with a shorter gold sentence has its entities cut where that sentence ends (an
    entity reaching past it ends at its last word, one starting past it is not read), as reading the cut
    prediction would give. A few hundred rounds of a 300-sentence set: tens of milliseconds, not seconds."""
    lengths = (gold != NO_WORD).sum(axis=1)[gold_rows][..., None]  # a gold sentence's words come first
    positions = np.arange(gold.shape[1])
    paired_gold, paired_predicted = gold[gold_rows], predicted[predicted_rows]
    read = positions < lengths
    words = lengths[..., 0].sum(axis=1)
    correct = ((paired_predicted == paired_gold) & read).sum(axis=(1, 2))
    metrics = {"accuracy": np.divide(correct, words, out=np.zeros(len(words)), where=words > 0)}
    if scheme is not None:
        gold_starts, gold_kind, gold_end = (part[gold_rows] for part in _spans(gold, scheme))
        predicted_starts, predicted_kind, predicted_end = (part[predicted_rows] for part in _spans(predicted, scheme))
        predicted_starts = predicted_starts & read
        predicted_end = np.minimum(predicted_end, lengths - 1)
        found = (gold_starts & predicted_starts & (gold_kind == predicted_kind)
                 & (gold_end == predicted_end)).sum(axis=(1, 2)).astype(np.float64)
        entities = (gold_starts.sum(axis=(1, 2)) + predicted_starts.sum(axis=(1, 2))).astype(np.float64)
        metrics["entity_f1"] = np.divide(2 * found, entities, out=np.zeros(len(words)), where=found > 0)
    return metrics


def tag_metrics(predicted: np.ndarray, gold: np.ndarray, scheme: TagScheme | None) -> dict[str, float]:
    """:func:`tag_rows` of one evaluation (sentences × words)."""
    return {name: float(values[0]) for name, values in tag_rows(predicted[None], gold[None], scheme).items()}
