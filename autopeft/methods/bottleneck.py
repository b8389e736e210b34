"""Bottleneck adapters through AdapterHub ``adapters``: series (Houlsby, Pfeiffer) and parallel (He et al.).

- Houlsby (2019): a series adapter after multi-head attention and another after the FFN.
- Pfeiffer (2021): one series adapter after the FFN.
- Parallel (He et al., 2022): an adapter beside the FFN whose output is added, scaled.
Options: ``bottleneck`` (the adapter's inner size), ``non_linearity`` (relu, gelu, swish, tanh), and for the
parallel adapter ``scaling``. Layers not chosen are passed to the library as ``leave_out``.
"""

from __future__ import annotations

from typing import Any

from adapters import DoubleSeqBnConfig, ParBnConfig, SeqBnConfig
from torch import nn

from autopeft.methods.base import AdapterHubBacked
from autopeft.methods.placement import bottleneck_reduction, left_out_layers
from autopeft.methods.registry import register

# Types where adapters 1.3 accepts a parallel adapter that its forward then cannot run (bench/model_families)
_NO_PARALLEL_ADAPTER = {
    "phi": "Phi runs attention and the FFN side by side from one input, which the adapter's hook does not receive "
           "(every forward fails)",
}


def _common(model: nn.Module, config: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    return {"reduction_factor": bottleneck_reduction(model, int(options.get("bottleneck", 64))),
            "non_linearity": options.get("non_linearity", "relu"),
            "leave_out": left_out_layers(model, config)}


@register
class Houlsby(AdapterHubBacked):
    name = "houlsby"
    options = ("bottleneck", "non_linearity")
    help = "series adapters after attention and after the FFN"

    def adapter_config(self, model: nn.Module, config: dict[str, Any]) -> DoubleSeqBnConfig:
        return DoubleSeqBnConfig(**_common(model, config, config.get(self.name, {})))


@register
class Pfeiffer(AdapterHubBacked):
    name = "pfeiffer"
    options = ("bottleneck", "non_linearity")
    help = "one series adapter after the FFN"

    def adapter_config(self, model: nn.Module, config: dict[str, Any]) -> SeqBnConfig:
        return SeqBnConfig(**_common(model, config, config.get(self.name, {})))


@register
class Parallel(AdapterHubBacked):
    name = "parallel"
    options = ("bottleneck", "non_linearity", "scaling")
    help = "an adapter beside the FFN, added with a scaling"

    def adapter_config(self, model: nn.Module, config: dict[str, Any]) -> ParBnConfig:
        if model.config.model_type in _NO_PARALLEL_ADAPTER:
            raise ValueError(f"method 'parallel' (AdapterHub) is not available on model type "
                             f"{model.config.model_type!r}: {_NO_PARALLEL_ADAPTER[model.config.model_type]}; use "
                             "houlsby, pfeiffer or a peft method such as lora")
        options = config.get(self.name, {})
        return ParBnConfig(scaling=float(options.get("scaling", 4.0)), **_common(model, config, options))
