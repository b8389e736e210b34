"""LoRA (Hu et al., 2022) through Hugging Face peft, placed on exact modules of chosen layers."""

from __future__ import annotations

from typing import Any

from peft import LoraConfig, TaskType
from torch import nn

from autopeft.architectures import resolve_targets
from autopeft.methods.base import PeftMethod
from autopeft.methods.registry import register


@register
class LoraMethod(PeftMethod):
    name = "lora"

    def peft_config(self, model: nn.Module, config: dict[str, Any]) -> LoraConfig:
        options = config.get("lora", {})
        rank = int(options.get("r", 8))
        alpha = options.get("alpha", rank * float(options.get("alpha_over_r", 2.0)))
        roles = options.get("target_modules", ["query", "value"])
        layers = config.get("layers", list(range(model.config.num_hidden_layers)))
        return LoraConfig(
            task_type=TaskType.SEQ_CLS,
            r=rank,
            lora_alpha=alpha,
            lora_dropout=float(options.get("dropout", 0.0)),
            target_modules=resolve_targets(model, roles, layers),
        )
