"""LayerNorm tuning (Zhao et al., 2023): train only the LayerNorms of chosen layers, through peft."""

from __future__ import annotations

from typing import Any

from peft import LNTuningConfig
from torch import nn

from autopeft.methods.base import PeftBacked
from autopeft.methods.placement import chosen_layer_prefixes, peft_task_type
from autopeft.methods.registry import register


@register
class LayerNormTuning(PeftBacked):
    name = "ln_tuning"
    help = "trains the LayerNorm weights and biases of the chosen layers"

    def peft_config(self, model: nn.Module, config: dict[str, Any]) -> LNTuningConfig:
        layers = chosen_layer_prefixes(model, config)
        norms = [name for name, module in model.named_modules()
                 if isinstance(module, nn.LayerNorm) or type(module).__name__.endswith("RMSNorm")]
        targets = [name for name in norms if name.startswith(layers)]
        if not targets:
            raise ValueError("no LayerNorm found in the chosen layers")
        return LNTuningConfig(task_type=peft_task_type(model), target_modules=targets)
