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
    path = Path(folder) / METHOD_FILE
    if not path.is_file():
        raise UserError(f"{folder} is not an autopeft adapter folder (no {METHOD_FILE})")
    info = json.loads(path.read_text())
    return info["method"], info["config"]


def load_adapter(base_model: nn.Module, folder: str | Path) -> nn.Module:
    """Put the adapter in ``folder`` on ``base_model`` (a freshly loaded base with the same head size)."""
    name, config = read_method(folder)
    base_model = apply_pooling(base_model, read_pooling(folder))
    base_model = quantize_base(base_model, int(config.get("base_bits", 16)))
    return get_method(name).load(base_model, Path(folder))


def load_merged(base_model: nn.Module, folder: str | Path) -> nn.Module:
    """The adapter folded into the base weights: a plain transformers model (LoRA, DoRA, IA3, BitFit, sparse)."""
    name, config = read_method(folder)
    if int(config.get("base_bits", 16)) < 16:
        raise UserError(f"{folder}: the adapter was trained on a {config['base_bits']}-bit base; merging it into "
                        "full-precision weights would not give the measured model, so it is not merged")
    return get_method(name).merge(load_adapter(base_model, folder))
