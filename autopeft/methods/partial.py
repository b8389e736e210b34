"""Partial fine-tuning (Lee et al., 2019, "What Would Elsa Do? Freezing Layers During Transformer Fine-Tuning"):
every weight of the chosen layers trains, with the task head; the embeddings and the other layers stay frozen.

It sits between the adapter family and full fine-tuning. Where adapters need more steps than a search can give a
trial (QNLI at 250 steps: the best adapter found stays under full fine-tuning), training the top layers outright
reaches full fine-tuning's quality with a fraction of its parameters (a BERT-style model keeps about half of its
weights in the embeddings, which no layer choice trains), and the frozen lower layers are cached by the worker.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from autopeft.architectures import layer_container, num_layers
from autopeft.methods.base import TensorBacked, task_head_parameters
from autopeft.methods.placement import chosen_layers
from autopeft.methods.registry import register


@register
class PartialFineTuning(TensorBacked):
    name = "partial"
    help = "every weight of the chosen layers trains (and the task head); embeddings and other layers stay frozen"

    def build(self, model: nn.Module, config: dict[str, Any]) -> nn.Module:
        prefix = layer_container(model, num_layers(model.config))
        layers = tuple(f"{prefix}.{i}." for i in chosen_layers(model, config))
        model.requires_grad_(False)
        for name, parameter in model.named_parameters():
            if name.startswith(layers):
                parameter.requires_grad_(True)
        for parameter in task_head_parameters(model).values():
            parameter.requires_grad_(True)
        return model
