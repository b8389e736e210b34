"""What a decoder's adapter is read against besides chance: the untouched model.

A decoder is a model that already does something before any adapter is trained: an instruct model may answer a
task well zero-shot, and its responses already have a loss. So each worker evaluates the base model as loaded, no
adapter, once (workers/worker.py, before its first trial's clocks start) and sends that evaluation with its
results (``TrialResult.untouched``); the first to reach the controller is stored with the search
(``storage.UNTOUCHED``). Two uses:

- **Records without gold answers** are searched on ``eval_loss``, the gold responses' mean token loss. A loss has no
  constant prediction to clear, so the untouched model *is* the chance level (*the untouched model, no adapter
  trained*), and its per-record losses, beside each record's token count, are the noise model's gold side
  (``EvalTargets`` of kind LOSSES). A trial stores its own per-record losses, so the test is paired: its loss
  against the untouched model's on the same records (autopeft/results/chance.py, ``paired_loss_test``), far tighter than
  two independent means would allow. An adapter can make the loss worse (a prefix drawn at random wrecks a model
  before it learns): such a trial is "not below the untouched model", at chance in every surface's words.
- **Records with answers** keep their chance level (the most common answer); the untouched model's answers are a
  second reference, the zero-shot row LLM-Adapters' tables start with: each front point is compared with them by a
  paired bootstrap on the same records (autopeft/results/noise.py), and the surfaces name the points no better than the
  model was before training. Each record's loss is stored beside its answer, so where the answers did not move
  the losses still tell whether training taught the responses' form; and a search that makes ``eval_loss`` its
  task metric is read against the untouched model's loss as above.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import optuna

from autopeft.results.chance import ChanceLevel
from autopeft.store import storage
from autopeft.store.predictions import LOSSES, EvalTargets, decode, losses_of

UNTOUCHED = "the untouched model, no adapter trained"  # what the reference is, in the chance line's words


def reference_from(untouched: dict[str, Any]) -> tuple[ChanceLevel, EvalTargets]:
    """The untouched model's loss as a level and the gold side of a paired loss test, from a worker's evaluation
    of it: the chance level of a search on its loss, and what a trial's losses are read against where the answers
    did not move (autopeft/results/noise.py)."""
    losses = losses_of(untouched["predictions"])
    tokens = np.asarray(decode(untouched["tokens"]), dtype=np.float64)
    if losses is None or len(losses) != len(tokens):
        raise ValueError(f"{'no' if losses is None else len(losses)} record losses for {len(tokens)} token counts")
    level = ChanceLevel({"eval_loss": float(losses.sum() / max(tokens.sum(), 1.0))}, len(losses), UNTOUCHED)
    return level, EvalTargets(LOSSES, tokens, reference=losses)


def remember_untouched(study: optuna.Study, result: Any) -> None:
    """Store the untouched model's evaluation with the search the first time a result carries one (every result
    of a decoder search does; the trial that brought it may be a probe run or a baseline), and make it the chance
    level of a search that has none yet: a decoder searched on its loss (autopeft/search/launch.py stores no other)."""
    untouched = getattr(result, "untouched", None)
    if not untouched or study.user_attrs.get(storage.UNTOUCHED):
        return
    study.set_user_attr(storage.UNTOUCHED, {key: untouched[key] for key in ("metrics", "predictions", "tokens")
                                            if key in untouched})
    if not study.user_attrs.get(storage.EVAL_TARGETS):
        level, targets = reference_from(untouched)
        study.set_user_attr(storage.CHANCE, level.to_json())
        study.set_user_attr(storage.EVAL_TARGETS, targets.to_json())
