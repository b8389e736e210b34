"""Bit width of the frozen base: weight-only quantisation of the transformer layers' linear modules to 8 or 4 bits.

Real storage, simulated arithmetic. The weights are really stored as int8 (8 bits) or as two 4-bit values packed
in one uint8 (4 bits), with one fp32 scale per group of 64 inputs (absmax, symmetric), so the memory the base takes
shrinks for real and ``frozen_base_mb`` measures it from the tensors. The matrix products are not integer kernels:
each forward pass dequantises the weight to fp32 and multiplies in fp32 (QLoRA does the same with NF4 on GPUs).
peft methods (LoRA, IA3, LayerNorm tuning) and BitFit train on top unchanged. Refused before training, with the
reason: sparse fine-tuning and DoRA (they change or read the base weights) and the AdapterHub methods (the library
re-wraps the base's linear layers itself when it is attached).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from autopeft.models.architectures import layer_container, num_layers

SUPPORTED_BITS = (16, 8, 4)
GROUP_SIZE = 64
_INCOMPATIBLE = {"sparse": "it trains entries of the base weights", "dora": "it needs the base weights' norms",
                 "full": "it trains every base weight", "partial": "it trains the base weights of its layers"}
_RESIDUAL_INITS = ("pissa", "pissa_niter_4", "olora", "corda")  # LoRA starts that rewrite the base weight


class QuantizedLinear(nn.Linear):
    """A frozen linear layer whose weight lives as 8- or 4-bit integers plus per-group scales.

    It stays an ``nn.Linear`` (same in/out features, bias) so peft wraps it like any other linear layer;
    ``weight`` is rebuilt on access for code that reads it.
    """

    def __init__(self, linear: nn.Linear, bits: int):
        nn.Module.__init__(self)
        self.in_features, self.out_features, self.bits = linear.in_features, linear.out_features, bits
        weight = linear.weight.detach().float()
        group = GROUP_SIZE if self.in_features % GROUP_SIZE == 0 else self.in_features
        grouped = weight.reshape(self.out_features, -1, group)
        levels = 2 ** (bits - 1) - 1
        scale = grouped.abs().amax(dim=-1, keepdim=True).clamp(min=1e-12) / levels
        codes = torch.round(grouped / scale).clamp(-levels - 1, levels).to(torch.int8).reshape(self.out_features, -1)
        if bits == 4:  # two signed 4-bit codes per byte
            codes = ((codes[:, 0::2] & 0x0F) | (codes[:, 1::2] << 4)).to(torch.uint8)
        self.register_buffer("codes", codes)
        self.register_buffer("scale", scale.squeeze(-1))
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone(), requires_grad=False)

    def dequantized(self) -> torch.Tensor:
        codes = self.codes
        if self.bits == 4:
            low = (codes & 0x0F).to(torch.int8)
            high = (codes >> 4).to(torch.int8)
            low = torch.where(low > 7, low - 16, low)
            high = torch.where(high > 7, high - 16, high)
            codes = torch.stack((low, high), dim=-1).reshape(self.out_features, -1)
        grouped = codes.float().reshape(self.out_features, self.scale.shape[1], -1)
        return (grouped * self.scale.unsqueeze(-1)).reshape(self.out_features, self.in_features)

    @property
    def weight(self) -> torch.Tensor:  # type: ignore[override]
        return self.dequantized()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.dequantized().to(x.dtype), self.bias)


def check_compatible(method: str, library: str, bits: int, config: dict | None = None) -> None:
    """Raise ValueError, before any training, when ``method`` (with its options in ``config``) cannot train on a
    ``bits``-bit base."""
    if bits not in SUPPORTED_BITS:
        raise ValueError(f"base_bits must be one of {SUPPORTED_BITS} (got {bits})")
    if bits >= 16:
        return
    if method in _INCOMPATIBLE:
        raise ValueError(f"method {method!r} cannot train on a {bits}-bit base: {_INCOMPATIBLE[method]}")
    init = ((config or {}).get(method) or {}).get("init")
    if init in _RESIDUAL_INITS:
        raise ValueError(f"{method}.init {init!r} cannot start on a {bits}-bit base: it moves the principal part of "
                         "each base weight into the adapter and leaves the residual in the base, which the integer "
                         "codes cannot hold; use init default, gaussian or eva, or base_bits 16")
    if library == "adapters":
        raise ValueError(f"method {method!r} cannot train on a {bits}-bit base: AdapterHub re-wraps the base's "
                         "linear layers itself; use a 16-bit base")


def quantize_base(model: nn.Module, bits: int) -> nn.Module:
    """Replace every linear module inside the transformer layers with its quantised form (16 = leave as is)."""
    if bits >= 16:
        return model
    container = layer_container(model, num_layers(model.config))
    for name, module in list(model.named_modules()):
        if not name.startswith(container + "."):
            continue
        for child_name, child in list(module.named_children()):
            if type(child) is nn.Linear:
                setattr(module, child_name, QuantizedLinear(child, bits))
    return model


def frozen_base_bytes(model: nn.Module) -> int:
    """Bytes the frozen base really occupies: frozen parameters plus quantised codes and scales."""
    frozen = sum(p.numel() * p.element_size() for p in model.parameters() if not p.requires_grad)
    quantized = sum(b.numel() * b.element_size() for m in model.modules() if isinstance(m, QuantizedLinear)
                    for b in (m.codes, m.scale))
    return frozen + quantized
