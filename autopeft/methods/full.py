"""Full fine-tuning: every weight trains. Not parameter-efficient; the reference every method is measured against."""

from __future__ import annotations

from typing import Any

from torch import nn

from autopeft.methods.base import TensorBacked
from autopeft.methods.registry import register


@register
class FullFineTuning(TensorBacked):
    name = "full"
    options = ()
    help = "all weights train (the reference point); the saved 'adapter' is the whole model's tensors"

    def build(self, model: nn.Module, config: dict[str, Any]) -> nn.Module:
        model.requires_grad_(True)
        return model
