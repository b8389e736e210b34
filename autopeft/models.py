"""Loading base models and tokenizers: from a local folder, or by hub name where a hub is reachable."""

from __future__ import annotations

from typing import Any

from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
)

from autopeft.errors import UserError
from autopeft.spec import ModelSpec

TASK_MODEL_CLASSES: dict[str, Any] = {
    "sequence-classification": AutoModelForSequenceClassification,
    "causal-lm": AutoModelForCausalLM,
}


def _load(what: str, loader, model: ModelSpec, **kwargs):
    try:
        return loader(model.name_or_path, revision=model.revision, **kwargs)
    except (OSError, ValueError, TypeError) as exc:  # missing or broken files surface as any of these
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"model.name_or_path: cannot load the {what} of {model.name_or_path!r}: {reason}") from None


def load_model_config(model: ModelSpec):
    return _load("configuration", AutoConfig.from_pretrained, model)


def load_tokenizer(model: ModelSpec):
    return _load("tokenizer", AutoTokenizer.from_pretrained, model)


def load_base_model(model: ModelSpec, label_names: list[str]) -> PreTrainedModel:
    """The frozen base; for classification with a task head sized for the labels (re-initialised per trial)."""
    model_class = TASK_MODEL_CLASSES[model.task]
    if model.task == "causal-lm":
        return _load("weights", model_class.from_pretrained, model)
    return _load(
        "weights",
        model_class.from_pretrained,
        model,
        num_labels=len(label_names),
        id2label=dict(enumerate(label_names)),
        label2id={name: i for i, name in enumerate(label_names)},
    )
