"""LoRA (Hu et al., 2022) through Hugging Face peft, on exact modules of chosen layers.

What peft gives nearly free is exposed as options: DoRA (``use_dora``), the initialisations of the LoRA
literature (``init``: default, gaussian, pissa, olora, and eva — which is data-aware: the worker calibrates it on a
few training batches before training), rsLoRA scaling, and a rank per layer (``layer_ranks``).
"""

from __future__ import annotations

from typing import Any

from peft import EvaConfig, LoraConfig, initialize_lora_eva_weights
from torch import nn

from autopeft.architectures import resolve_targets
from autopeft.methods.base import PeftBacked
from autopeft.methods.placement import chosen_layers, peft_task_type
from autopeft.methods.registry import register

INITIALISATIONS = {"default": True, "gaussian": "gaussian", "pissa": "pissa", "olora": "olora",
                   "pissa_niter_4": "pissa_niter_4", "eva": "eva"}


@register
class Lora(PeftBacked):
    name = "lora"
    help = "low-rank update of chosen linear modules; options r, alpha_over_r, dropout, target_modules, init, " \
           "use_dora, use_rslora, layer_ranks"
    use_dora = False
    mergeable = True

    def peft_config(self, model: nn.Module, config: dict[str, Any]) -> LoraConfig:
        options = config.get(self.name, {})
        rank = int(options.get("r", 8))
        roles = options.get("target_modules", ["query", "value"])
        layers = chosen_layers(model, config)
        targets = resolve_targets(model, roles, layers)
        init = options.get("init", "default")
        if init not in INITIALISATIONS:
            raise ValueError(f"unknown LoRA init {init!r}; use one of {list(INITIALISATIONS)}")
        rank_pattern = {}
        for layer, layer_rank in (options.get("layer_ranks") or {}).items():
            for name in resolve_targets(model, roles, [int(layer)]):
                rank_pattern[name] = int(layer_rank)
        return LoraConfig(
            task_type=peft_task_type(model),
            r=rank,
            lora_alpha=options.get("alpha", rank * float(options.get("alpha_over_r", 2.0))),
            lora_dropout=float(options.get("dropout", 0.0)),
            target_modules=targets,
            init_lora_weights=INITIALISATIONS[init],
            # classification labels are one per example, not per token: EVA must not mask by them
            eva_config=EvaConfig(use_label_mask=False) if init == "eva" else None,
            use_dora=bool(options.get("use_dora", self.use_dora)),
            use_rslora=bool(options.get("use_rslora", False)),
            rank_pattern=rank_pattern,
        )


    def calibrates(self, config: dict[str, Any]) -> bool:
        return config.get(self.name, {}).get("init") == "eva"

    def calibrate(self, model: nn.Module, config: dict[str, Any], batches: list[dict[str, Any]]) -> None:
        if self.calibrates(config):
            inputs = [{k: v for k, v in batch.items() if k != "labels"} for batch in batches]
            initialize_lora_eva_weights(model, dataloader=inputs, show_progress_bar=False)


@register
class Dora(Lora):
    """DoRA (Liu et al., 2024): LoRA on the direction, plus a trained magnitude per output."""

    name = "dora"
    help = "weight-decomposed LoRA; same options as lora"
    use_dora = True
