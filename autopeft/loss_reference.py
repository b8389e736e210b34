"""What "nothing learned" means for a search scored by its loss: the untouched model.

Records without gold answers (the Alpaca form, chat replies) are searched on ``eval_loss``, the gold responses'
mean token loss. A loss has no constant prediction to clear: the reference is the base model as it was loaded, no
adapter trained. Each worker measures that model's summed loss on every eval record once (workers/worker.py) and
sends it with its results; the first to reach the controller is stored with the search as its chance level and,
beside each record's token count, as the gold side of the noise model (``EvalTargets`` of kind LOSSES). A trial
stores its own per-record losses, so the test is paired: its loss against the untouched model's on the same records
(autopeft/chance.py, ``paired_loss_test``), which is far tighter than two independent means would allow.

An adapter can make the loss worse (a prefix drawn at random wrecks a model before it learns): such a trial is "not
below the untouched model", at chance in every surface's words.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import optuna

from autopeft import storage
from autopeft.chance import ChanceLevel
from autopeft.predictions import LOSSES, EvalTargets, decode

UNTOUCHED = "the untouched model, no adapter trained"  # what the reference is, in the chance line's words


def reference_from(untouched: dict[str, Any]) -> tuple[ChanceLevel, EvalTargets]:
    """The chance level and the noise model's gold side from a worker's measurement of the untouched model."""
    losses = np.asarray(decode(untouched["losses"]), dtype=np.float64)
    tokens = np.asarray(decode(untouched["tokens"]), dtype=np.float64)
    if len(losses) != len(tokens):
        raise ValueError(f"{len(losses)} record losses for {len(tokens)} token counts")
    level = ChanceLevel({"eval_loss": float(losses.sum() / max(tokens.sum(), 1.0))}, len(losses), UNTOUCHED)
    return level, EvalTargets(LOSSES, tokens, reference=losses)


def remember_untouched(study: optuna.Study, result: Any) -> None:
    """Store the untouched model's reference with the search the first time a result carries one (every result of
    a search on records without answers does; the trial that brought it may be a probe run or a baseline)."""
    untouched = getattr(result, "untouched", None)
    if not untouched or study.user_attrs.get(storage.EVAL_TARGETS):
        return
    level, targets = reference_from(untouched)
    study.set_user_attr(storage.CHANCE, level.to_json())
    study.set_user_attr(storage.EVAL_TARGETS, targets.to_json())
