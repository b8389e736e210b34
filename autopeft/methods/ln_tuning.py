"""LayerNorm tuning (Zhao et al., 2023): train only the LayerNorms of chosen layers, through peft."""

from __future__ import annotations

import warnings
from typing import Any

from peft import LNTuningConfig
from torch import nn

from autopeft.methods.base import PeftBacked
from autopeft.methods.placement import chosen_layer_prefixes, peft_task_fields
from autopeft.methods.registry import register

_PEFT_NORM_NOTICE = r"Unsupported layer type '<class '[\w.]*(LayerNorm|RMSNorm)'>' encountered"


def ignore_peft_norm_notice() -> None:
    """peft's own LNTuningLayer asks for the in/out features of the norm it wraps, which only linear-like layers
    have, and warns "Unsupported layer type '<class '...LayerNorm'>' encountered, proceed at your own risk" in every
    process that builds or loads this method (the controller counting a proposal's cost, each worker training one),
    about the very layers the method is for. Only that message, from that peft module, about norm layers, is dropped.

    Set when this module is imported (workers and the controller import every method) and again before each build,
    because a ``warnings.catch_warnings`` block around the import (pytest's collection is one) would undo it; adding
    the same filter twice keeps one."""
    warnings.filterwarnings("ignore", message=_PEFT_NORM_NOTICE, category=UserWarning,
                            module=r"peft\.tuners\.tuners_utils")


ignore_peft_norm_notice()


@register
class LayerNormTuning(PeftBacked):
    name = "ln_tuning"
    options = ()
    help = "trains the LayerNorm weights and biases of the chosen layers"

    def peft_config(self, model: nn.Module, config: dict[str, Any]) -> LNTuningConfig:
        ignore_peft_norm_notice()
        layers = chosen_layer_prefixes(model, config)
        norms = [name for name, module in model.named_modules()
                 if isinstance(module, nn.LayerNorm) or type(module).__name__.endswith("RMSNorm")]
        targets = [name for name in norms if name.startswith(layers)]
        if not targets:
            raise ValueError("no LayerNorm found in the chosen layers")
        return LNTuningConfig(**peft_task_fields(model), target_modules=targets)
