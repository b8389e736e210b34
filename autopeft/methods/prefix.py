"""Prefix tuning (Li & Liang, 2021) through AdapterHub ``adapters``.

peft's prefix tuning needs the model to accept past key values, which BERT-type encoders under transformers 4.57
do not; ``adapters`` injects prefixes inside attention and works on encoders and decoders alike.
Options: ``prefix_length`` and ``reparameterize`` (train through an MLP, folded into plain prefixes on save).
"""

from __future__ import annotations

from typing import Any

from adapters import PrefixTuningConfig
from torch import nn

from autopeft.methods.base import AdapterHubBacked
from autopeft.methods.placement import left_out_layers
from autopeft.methods.registry import register


def prefix_config(model: nn.Module, config: dict[str, Any], options: dict[str, Any]) -> PrefixTuningConfig:
    length = int(options.get("prefix_length", 10))
    if length < 1:
        raise ValueError(f"prefix_length must be at least 1 (got {length})")
    return PrefixTuningConfig(prefix_length=length, flat=not options.get("reparameterize", False),
                              leave_out=left_out_layers(model, config))


@register
class PrefixTuning(AdapterHubBacked):
    name = "prefix"
    options = ("prefix_length", "reparameterize")
    help = "trained key/value prefixes in every chosen layer's attention"

    def adapter_config(self, model: nn.Module, config: dict[str, Any]) -> PrefixTuningConfig:
        return prefix_config(model, config, config.get(self.name, {}))
