"""Per-example eval predictions and gold answers, stored compactly in the database with each trial and search.

A metric alone cannot say whether a trial learned anything: the same accuracy is strong on 5,000 balanced examples
and noise on 277 skewed ones, and Matthews correlation, F1 or Spearman have no simple noise formula at all. With the
predictions kept, the noise model (autopeft/results/chance.py) recomputes any task metric under a permutation null or a
paired bootstrap, after the fact, from the database alone (no adapter, no model, no worker).

Stored as JSON-safe dicts in Optuna user attributes: arrays as zlib-compressed little-endian bytes in base64
(a 5,000-example binary eval set takes about 1 KB), answers as a compressed JSON list.
"""

from __future__ import annotations

import base64
import json
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

LABELS = "labels"  # classification: the predicted label index per example
LABEL_SETS = "label_sets"  # multi-label classification: a 0/1 row per example, one column per label
TAGS = "tags"  # token classification: the tag id of each word (sentences × words, -1 past a sentence's end)
VALUES = "values"  # regression: the predicted number per example
ANSWERS = "answers"  # causal-lm: the answer each generated response gives, as the task reads it
LOSSES = "losses"  # causal-lm without gold answers: each record's summed token loss of its gold response


def _pack(data: bytes) -> str:
    return base64.b64encode(zlib.compress(data, 9)).decode("ascii")


def _unpack(text: str) -> bytes:
    return zlib.decompress(base64.b64decode(text))


def encode(kind: str, values: Any) -> dict[str, Any]:
    """One of LABELS (ints), LABEL_SETS (a 0/1 matrix), TAGS (a matrix of tag ids), VALUES or LOSSES (floats) or
    ANSWERS (strings) as a JSON-safe dict."""
    if kind == ANSWERS:
        return {"kind": kind, "data": _pack(json.dumps([str(v) for v in values]).encode())}
    array = np.asarray(values)
    if kind == LABEL_SETS:  # one byte per decision; its shape, since a row's width is the number of labels
        array = np.ascontiguousarray(array.astype("|u1"))
        return {"kind": kind, "dtype": "|u1", "shape": list(array.shape), "data": _pack(array.tobytes())}
    if kind == TAGS:  # stored one up, so that -1 (no word) is 0: one byte per word where the tags fit
        shifted = array.astype(np.int64) + 1
        dtype = "|u1" if shifted.size == 0 or shifted.max() < 256 else "<i2"
        shifted = np.ascontiguousarray(shifted.astype(dtype))
        return {"kind": kind, "dtype": dtype, "shape": list(shifted.shape), "data": _pack(shifted.tobytes())}
    if kind == LABELS:  # one byte per example where the labels fit: it compresses four times better than int32
        dtype = "|u1" if array.size == 0 or (array.min() >= 0 and array.max() < 256) else "<i4"
    else:
        dtype = "<f4"
    array = np.ascontiguousarray(array.astype(dtype))
    return {"kind": kind, "dtype": dtype, "data": _pack(array.tobytes())}


def decode(stored: dict[str, Any]) -> np.ndarray | list[str]:
    if stored["kind"] == ANSWERS:
        return json.loads(_unpack(stored["data"]))
    array = np.frombuffer(_unpack(stored["data"]), dtype=stored["dtype"])
    if stored["kind"] == LABEL_SETS:
        return array.reshape(stored["shape"]).astype(np.int64)
    if stored["kind"] == TAGS:
        return array.reshape(stored["shape"]).astype(np.int64) - 1
    return array.astype(np.int64) if stored["kind"] == LABELS else array.copy()


def with_losses(answers: dict[str, Any], losses: Any) -> dict[str, Any]:
    """Stored answers with each record's summed gold-response token loss beside them (a decoder scored by its
    answers: the losses say whether training moved the responses where the answers did not move)."""
    return {**answers, LOSSES: encode(LOSSES, losses)}


def record_losses(stored: dict[str, Any] | None) -> np.ndarray | None:
    """The per-record losses stored beside answers (``with_losses``), or None where there are none."""
    if not stored or LOSSES not in stored:
        return None
    return np.asarray(decode(stored[LOSSES]), dtype=np.float64)


def losses_of(stored: dict[str, Any]) -> np.ndarray | None:
    """Each record's summed gold-response loss from a decoder's stored predictions: the predictions themselves
    for records without answers, else the losses stored beside the answers (None where there are none)."""
    if stored.get("kind") == LOSSES:
        return np.asarray(decode(stored), dtype=np.float64)
    return record_losses(stored)


def compared(stored: dict[str, Any], targets: EvalTargets | None) -> np.ndarray | list[str] | None:
    """What a noise test compares with ``targets``: the stored predictions, or, where the search is read on its
    loss (targets of kind LOSSES), each record's loss (``losses_of``)."""
    if targets is not None and targets.kind == LOSSES:
        return losses_of(stored)
    return decode(stored)


@dataclass(frozen=True)
class EvalTargets:
    """The eval split's gold side, as the noise model needs it: what kind of predictions it is compared with,
    the gold values, and (classification) the number of labels and the positive class of ``f1``."""

    kind: str
    gold: np.ndarray | list[str]
    num_labels: int = 0
    positive: int = 1
    label_names: tuple[str, ...] = ()  # classification: the label text per index (what a user's metric is given)
    # LOSSES: ``gold`` holds each record's response token count, and this the untouched model's summed loss per
    # record, the paired reference a trained model's losses are compared with (autopeft/results/untouched_model.py)
    reference: np.ndarray | None = None

    def to_json(self) -> dict[str, Any]:
        stored = {**encode(self.kind, self.gold), "num_labels": self.num_labels, "positive": self.positive,
                  "label_names": list(self.label_names)}
        if self.reference is not None:
            stored["reference"] = encode(VALUES, self.reference)
        return stored

    @classmethod
    def from_json(cls, stored: dict[str, Any] | None) -> EvalTargets | None:
        if not stored:
            return None
        reference = stored.get("reference")
        return cls(stored["kind"], decode(stored), int(stored.get("num_labels", 0)), int(stored.get("positive", 1)),
                   tuple(stored.get("label_names") or ()), None if reference is None else decode(reference))

    def __len__(self) -> int:
        return len(self.gold)
