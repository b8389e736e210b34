"""FourierFT (Gao et al., ICML 2024) as an autopeft method: each targeted weight's update is the inverse 2-D
Fourier transform of a few trained spectral coefficients at fixed random frequencies, so a layer costs
``n_frequency`` parameters whatever its shape.

peft implements it; the method only says how a configuration becomes peft's config. Deriving from PeftBacked
gives the rest of the contract: build (``get_peft_model``), the count on the meta device, save
(``save_pretrained``), load (stock ``PeftModel.from_pretrained``), merge and the export's loading code.

Search-space options, under the method's name: ``fourierft.n_frequency`` (coefficients per weight),
``fourierft.scaling`` (the update's scale; the paper uses 100-150 for encoders, 300 for LLaMA) and
``fourierft.target_modules`` (roles such as query, value, ffn_up, which autopeft maps to each architecture's module
names); ``layers`` places it like every other method.
"""

from __future__ import annotations

from typing import Any

from peft import FourierFTConfig
from torch import nn

from autopeft.methods.base import PeftBacked
from autopeft.methods.placement import chosen_layers, peft_task_type
from autopeft.models.architectures import resolve_targets


class FourierFT(PeftBacked):
    name = "fourierft"
    help = "trained Fourier coefficients of each weight's update; options n_frequency, scaling, target_modules"
    options = ("n_frequency", "scaling", "target_modules")
    mergeable = True  # the update is a dense delta-W: merge_and_unload folds it into the base weights

    def peft_config(self, model: nn.Module, config: dict[str, Any]) -> FourierFTConfig:
        options = config.get(self.name, {})
        roles = options.get("target_modules", ["query", "value"])
        return FourierFTConfig(task_type=peft_task_type(model),
                               n_frequency=int(options.get("n_frequency", 1000)),
                               scaling=float(options.get("scaling", 150.0)),
                               target_modules=resolve_targets(model, roles, chosen_layers(model, config)))
