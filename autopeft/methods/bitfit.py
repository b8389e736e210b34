"""BitFit (Ben Zaken et al., 2022): train only the bias terms of the chosen layers (and the task head)."""

from __future__ import annotations

from typing import Any

from torch import nn

from autopeft.architectures import layer_container, num_layers
from autopeft.methods.base import TensorBacked, task_head_parameters
from autopeft.methods.placement import chosen_layers
from autopeft.methods.registry import register


@register
class BitFit(TensorBacked):
    name = "bitfit"
    help = "trains the biases of the chosen layers; no library implements it, so the tensors are saved directly"

    def build(self, model: nn.Module, config: dict[str, Any]) -> nn.Module:
        prefix = layer_container(model, num_layers(model.config))
        layers = tuple(f"{prefix}.{i}." for i in chosen_layers(model, config))
        model.requires_grad_(False)
        biases = [p for name, p in model.named_parameters() if name.endswith(".bias") and name.startswith(layers)]
        if not biases:
            raise ValueError(f"{type(model).__name__} has no bias terms in the chosen layers: BitFit cannot apply")
        for parameter in [*biases, *task_head_parameters(model).values()]:
            parameter.requires_grad_(True)
        return model
