"""BitFit (Ben Zaken et al., 2022): train only the bias terms of the chosen layers (and the task head)."""

from __future__ import annotations

from autopeft.methods.base import LayerTensors
from autopeft.methods.registry import register


@register
class BitFit(LayerTensors):
    name = "bitfit"
    options = ()
    help = "trains the biases of the chosen layers; no library implements it, so the tensors are saved directly"
    missing = "has no bias terms in the chosen layers"

    def picks(self, name: str) -> bool:
        return name.endswith(".bias")
