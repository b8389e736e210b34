"""IA3 (Liu et al., 2022): learned rescaling of keys, values and the FFN's inner activations, through peft."""

from __future__ import annotations

from typing import Any

from peft import IA3Config
from torch import nn

from autopeft.methods.base import PeftBacked
from autopeft.methods.placement import chosen_layers, peft_task_fields
from autopeft.methods.registry import register
from autopeft.models.architectures import resolve_targets


@register
class Ia3(PeftBacked):
    name = "ia3"
    options = ("target_modules",)
    mergeable = True
    help = "rescaling vectors on key, value and FFN-down inputs"

    def peft_config(self, model: nn.Module, config: dict[str, Any]) -> IA3Config:
        roles = config.get(self.name, {}).get("target_modules", ["key", "value", "ffn_down"])
        layers = chosen_layers(model, config)
        targets = resolve_targets(model, roles, layers)
        # IA3 scales the *input* of feed-forward modules (the wide activation) and the output of the others.
        feedforward = resolve_targets(model, [r for r in roles if r == "ffn_down"], layers)
        return IA3Config(**peft_task_fields(model), target_modules=targets, feedforward_modules=feedforward)
