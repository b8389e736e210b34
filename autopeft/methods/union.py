"""Unions of methods in one model, through AdapterHub's ``ConfigUnion``.

- ``autopeft`` (Zhou et al., TACL 2024): a serial adapter, a parallel adapter and a prefix, each with its own
  size (0 switches it off) on the chosen layers. ``adapters`` forbids two bottleneck adapters at the same place, so
  the serial one sits after multi-head attention and the parallel one beside the FFN.
- ``mam`` (He et al., 2022, "mix-and-match"): prefix tuning plus a scaled parallel adapter beside the FFN.
- ``unipelt`` (Mao et al., 2022): LoRA, prefix tuning and a series adapter, each behind a learned gate. Refused on
  text generators (causal LMs): AdapterHub's gates average over the whole sequence, so they are not causal.
"""

from __future__ import annotations

from typing import Any

from adapters import ConfigUnion, LoRAConfig, ParBnConfig, PrefixTuningConfig, SeqBnConfig, UniPELTConfig
from torch import nn

from autopeft.methods.base import AdapterHubBacked
from autopeft.methods.placement import bottleneck_reduction, left_out_layers
from autopeft.methods.prefix import prefix_config
from autopeft.methods.registry import register


@register
class AutoPeftUnion(AdapterHubBacked):
    name = "autopeft"
    options = ("serial", "parallel", "prefix_length")
    help = "serial adapter + parallel adapter + prefix (each size 0 = that part off)"

    def adapter_config(self, model: nn.Module, config: dict[str, Any]) -> ConfigUnion:
        options = config.get(self.name, {})
        leave_out = left_out_layers(model, config)
        parts = []
        if int(options.get("serial", 0)) > 0:
            parts.append(SeqBnConfig(mh_adapter=True, output_adapter=False, leave_out=leave_out,
                                     reduction_factor=bottleneck_reduction(model, int(options["serial"]))))
        if int(options.get("parallel", 0)) > 0:
            parts.append(ParBnConfig(leave_out=leave_out,
                                     reduction_factor=bottleneck_reduction(model, int(options["parallel"]))))
        if int(options.get("prefix_length", 0)) > 0:
            parts.append(prefix_config(model, config, {"prefix_length": options["prefix_length"]}))
        if not parts:
            raise ValueError("autopeft union with every part switched off (serial, parallel and prefix_length all 0)")
        return ConfigUnion(*parts)


@register
class MixAndMatch(AdapterHubBacked):
    name = "mam"
    options = ("prefix_length", "bottleneck", "scaling")
    help = "prefix tuning + scaled parallel adapter"

    def adapter_config(self, model: nn.Module, config: dict[str, Any]) -> ConfigUnion:
        options = config.get(self.name, {})
        leave_out = left_out_layers(model, config)
        return ConfigUnion(
            prefix_config(model, config, {"prefix_length": options.get("prefix_length", 30)}),
            ParBnConfig(leave_out=leave_out, scaling=float(options.get("scaling", 4.0)),
                        reduction_factor=bottleneck_reduction(model, int(options.get("bottleneck", 64)))),
        )


@register
class UniPelt(AdapterHubBacked):
    name = "unipelt"
    options = ("r", "prefix_length", "bottleneck")
    help = "gated LoRA + prefix + series adapter"

    def adapter_config(self, model: nn.Module, config: dict[str, Any]) -> UniPELTConfig:
        if getattr(model, "can_generate", lambda: False)():
            # AdapterHub's gates (LoRA, prefix, adapter) are the sigmoid averaged over the whole sequence
            # (adapters/methods/*: ``torch.mean(..., dim=1)``): fine for a classifier, not for a causal model.
            raise ValueError(f"unipelt cannot apply to a text generator ({type(model).__name__}): its gates average "
                             "over the whole sequence, so every position would see the tokens after it (training "
                             "would read the response it is scored on, and decoding token by token cannot "
                             "reproduce it); use mam or autopeft (prefix and adapters, no gates)")
        options = config.get(self.name, {})
        leave_out = left_out_layers(model, config)
        return UniPELTConfig(
            prefix_tuning=PrefixTuningConfig(prefix_length=int(options.get("prefix_length", 10)), use_gating=True,
                                             leave_out=leave_out),
            adapter=SeqBnConfig(reduction_factor=bottleneck_reduction(model, int(options.get("bottleneck", 24))),
                                use_gating=True, leave_out=leave_out),
            lora=LoRAConfig(r=int(options.get("r", 8)), alpha=2 * int(options.get("r", 8)), use_gating=True,
                            leave_out=leave_out),
        )
