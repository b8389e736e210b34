"""LoRA's relatives that peft implements, placed like LoRA: LoHa, LoKr (Kronecker) and VeRA (shared random
matrices, trained scaling vectors), plus prompt tuning (trained virtual input tokens, which have no layer
placement: they enter at the input)."""

from __future__ import annotations

from typing import Any

from peft import LoHaConfig, LoKrConfig, PromptTuningConfig, VeraConfig
from torch import nn

from autopeft.methods.base import PeftBacked
from autopeft.methods.placement import chosen_layers, conv1d_targets, peft_task_fields
from autopeft.methods.registry import register
from autopeft.models.architectures import num_layers, resolve_targets


def _targets(model: nn.Module, config: dict[str, Any], options: dict[str, Any]) -> list[str]:
    return resolve_targets(model, options.get("target_modules", ["query", "value"]), chosen_layers(model, config))


class _LowRankProduct(PeftBacked):
    """LoHa and LoKr take the same options; only peft's config class differs."""

    options = ("r", "alpha_over_r", "target_modules")

    config_class: type

    def peft_config(self, model: nn.Module, config: dict[str, Any]):
        options = config.get(self.name, {})
        rank = int(options.get("r", 8))
        targets = _targets(model, config, options)
        if conv1d_targets(model, targets):
            # peft's own refusal names neither the method nor a way on; this is what a rejected trial shows.
            raise ValueError(f"{self.name}: peft's {self.config_class.__name__.removesuffix('Config')} cannot adapt "
                             f"GPT-2-style Conv1D projections ({model.config.model_type}); lora, dora, adalora, "
                             "vera and ia3 can")
        return self.config_class(**peft_task_fields(model), r=rank,
                                 alpha=rank * float(options.get("alpha_over_r", 2.0)), target_modules=targets)


@register
class LoHa(_LowRankProduct):
    name = "loha"
    help = "low-rank Hadamard product update"
    config_class = LoHaConfig


@register
class LoKr(_LowRankProduct):
    name = "lokr"
    help = "low-rank Kronecker product update"
    config_class = LoKrConfig


@register
class Vera(PeftBacked):
    name = "vera"
    options = ("r", "target_modules")
    help = "frozen shared random low-rank matrices with trained scaling vectors (all its target modules must " \
           "have one shape, e.g. query+value)"

    def peft_config(self, model: nn.Module, config: dict[str, Any]) -> VeraConfig:
        options = config.get(self.name, {})
        return VeraConfig(**peft_task_fields(model), r=int(options.get("r", 64)),
                          target_modules=_targets(model, config, options))


@register
class PromptTuning(PeftBacked):
    name = "prompt"
    options = ("num_virtual_tokens",)
    help = "trained virtual tokens prepended to the input"

    def peft_config(self, model: nn.Module, config: dict[str, Any]) -> PromptTuningConfig:
        tokens = int(config.get(self.name, {}).get("num_virtual_tokens", 10))
        # Read from the model, not left to peft: peft looks for `hidden_size` in the config's dict, which
        # DistilBERT (`dim`) lacks, and ALBERT's tokens are narrower (embedding_size) than its hidden states.
        model_config = model.config
        return PromptTuningConfig(**peft_task_fields(model), num_virtual_tokens=tokens,
                                  token_dim=model.get_input_embeddings().embedding_dim,
                                  num_layers=num_layers(model_config),
                                  num_attention_heads=int(model_config.num_attention_heads))
