"""Loading an exported adapter of any method: ``autopeft.load_adapter(base_model, folder)``.

peft methods load with stock ``PeftModel.from_pretrained`` and AdapterHub methods with stock ``load_adapter``;
this function does the same for them and also loads the methods no library has (BitFit, sparse fine-tuning).
It reads ``autopeft_method.json`` to know the method, quantises the base first when the adapter was trained on an
8- or 4-bit base, and makes the head read the mean of the tokens when it was trained so (``autopeft_pooling.json``:
autopeft/models/pooling.py), so the outputs are the ones the search measured.
"""

from __future__ import annotations

import json
from pathlib import Path

from torch import nn

from autopeft.errors import UserError
from autopeft.methods import get_method
from autopeft.methods.base import METHOD_FILE
from autopeft.models.pooling import apply_pooling, read_pooling
from autopeft.models.quantize import quantize_base


def read_method(folder: str | Path) -> tuple[str, dict]:
    name, config, _ = _read_method_file(folder)
    return name, config


def _read_method_file(folder: str | Path) -> tuple[str, dict, str | None]:
    path = Path(folder) / METHOD_FILE
    if not path.is_file():
        raise UserError(f"{folder} is not an autopeft adapter folder (no {METHOD_FILE})")
    info = json.loads(path.read_text())
    return info["method"], info["config"], info.get("model_type")  # no model type: saved before it was written


def load_adapter(base_model: nn.Module, folder: str | Path) -> nn.Module:
    """Put the adapter in ``folder`` on ``base_model`` (a freshly loaded base with the same head size)."""
    name, config, trained_on = _read_method_file(folder)
    if not isinstance(base_model, nn.Module):
        raise UserError(f"base_model: expected the loaded base model, e.g. AutoModelForSequenceClassification"
                        f".from_pretrained(BASE, num_labels=N) (got {type(base_model).__name__})")
    model_type = getattr(getattr(base_model, "config", None), "model_type", None)
    if trained_on and model_type and model_type != trained_on:
        raise UserError(f"base_model: the adapter in {folder} was trained on a {trained_on} model, and this one is "
                        f"a {model_type}; load the base it was trained on{_trained_base(folder)}")
    base_model = apply_pooling(base_model, read_pooling(folder))
    base_model = quantize_base(base_model, int(config.get("base_bits", 16)))
    try:
        return get_method(name).load(base_model, Path(folder))
    except UserError:
        raise
    except Exception as exc:  # every library words a misfit its own way (state dict, keys, shapes, module names)
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"base_model: the {name} adapter in {folder} does not fit this {type(base_model).__name__} "
                        f"({reason[:200]}); load the base it was trained on{_trained_base(folder)}, with the head "
                        f"size it was trained with") from None


def _trained_base(folder: str | Path) -> str:
    """Where an exported folder says its base is (config.yaml), for a message; empty where it says nothing."""
    import yaml

    try:
        exported = yaml.safe_load((Path(folder) / "config.yaml").read_text())
        labels = exported.get("labels") or []
        return f", {exported['base_model']}" + (f" with num_labels={len(labels)}" if labels else "")
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError):
        return ""


def load_merged(base_model: nn.Module, folder: str | Path) -> nn.Module:
    """The adapter folded into the base weights: a plain transformers model (LoRA, DoRA, IA3, BitFit, sparse)."""
    name, config = read_method(folder)
    if not get_method(name).mergeable:
        raise UserError(f"{folder}: a {name} adapter adds computation of its own and cannot be folded into the "
                        "base weights; load it with autopeft.load_adapter")
    if int(config.get("base_bits", 16)) < 16:
        raise UserError(f"{folder}: the adapter was trained on a {config['base_bits']}-bit base; merging it into "
                        "full-precision weights would not give the measured model, so it is not merged")
    return get_method(name).merge(load_adapter(base_model, folder))
