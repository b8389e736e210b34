"""Frozen linear weights in the autocast dtype, made once instead of at every training forward.

Under autocast every linear layer's fp32 weight is cast to bf16 before its product, and autocast caches a cast only
for weights that require gradients: a frozen base weight is cast again at every forward. On SmolLM2-135M with LoRA
r=8 on q,v that is the whole base read and half of it written each step; holding the frozen linear weights (and
biases) as bf16 copies during the forward passes of training made a step 8-10% faster at batch 16 and 3-8% at batch
4 on 2 CPU threads, with the same losses to the last digit (bench/README.md, decoders): the copy rounds as
autocast's cast does, so each product gets the same operands.

The copies are swapped in for the training forward alone (``LoweredWeights.during``): the backward reads what the
forward saved, and everything outside the forward — the final evaluation in fp32, a rung's evaluation, the checks
that compare fp32 passes — sees the original fp32 parameters, which are never changed. The copies are kept while
their fp32 parameter lives (a weak mapping); a layer whose weight a method also reads outside the product
(DoRA's weight norm) is left as it is: the base a worker shares between trials is lowered once per worker,
a trial's own copy of the base once per trial. That memory (half the frozen linear weights) is in the trial's
measured peak.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator

import torch
from torch import nn

_AUTOCAST_DTYPES = {"bf16": torch.bfloat16}


def _weights_read_elsewhere(model: nn.Module) -> set[nn.Module]:
    """Linear layers whose weight a method reads outside their own product, where autocast would leave it fp32:
    DoRA's magnitude normalises by the norm of the base weight plus its low-rank update (peft computes it in the
    weight's dtype), so a lowered weight would change the training."""
    return {module.get_base_layer() for module in model.modules()
            if hasattr(module, "get_base_layer") and _uses_dora(getattr(module, "use_dora", False))}


def _uses_dora(flag: object) -> bool:
    """peft keeps ``use_dora`` per adapter name (a dict); another library's layer may keep one flag."""
    return any(flag.values()) if isinstance(flag, dict) else bool(flag)


class LoweredWeights:
    """The lowered copies of frozen linear parameters, kept per fp32 parameter; one per worker."""

    def __init__(self) -> None:
        # id of the fp32 parameter -> (a weak reference to it, its copy); a tensor cannot key a WeakKeyDictionary
        # (its == is elementwise), and the entry goes when the parameter does
        self._copies: dict[int, tuple[weakref.ref, nn.Parameter]] = {}
        # per model: its (module, parameter name) slots that hold a frozen fp32 linear parameter, found once
        self._slots: weakref.WeakKeyDictionary[nn.Module, list[tuple[nn.Module, str]]] = weakref.WeakKeyDictionary()

    def _frozen_linear_slots(self, model: nn.Module) -> list[tuple[nn.Module, str]]:
        if model not in self._slots:
            reread = _weights_read_elsewhere(model)
            self._slots[model] = [
                (module, name) for module in model.modules() if isinstance(module, nn.Linear) and module not in reread
                for name in ("weight", "bias")
                if (p := module._parameters.get(name)) is not None and not p.requires_grad and p.dtype == torch.float32]
        return self._slots[model]

    def _copy_of(self, parameter: nn.Parameter, dtype: torch.dtype) -> nn.Parameter:
        key = id(parameter)
        held = self._copies.get(key)
        if held is not None and held[0]() is parameter and held[1].dtype == dtype:
            return held[1]
        copy = nn.Parameter(parameter.detach().to(dtype), requires_grad=False)
        copies = self._copies
        self._copies[key] = (weakref.ref(parameter, lambda _: copies.pop(key, None)), copy)
        return copy

    @contextlib.contextmanager
    def during(self, model: nn.Module, precision: str) -> Iterator[None]:
        """Inside: the model's frozen fp32 linear parameters are their copies in ``precision``'s autocast dtype
        (nothing changes for fp32); after: the originals again."""
        dtype = _AUTOCAST_DTYPES.get(precision)
        if dtype is None:
            yield
            return
        swapped: list[tuple[nn.Module, str, nn.Parameter]] = []
        try:
            for module, name in self._frozen_linear_slots(model):
                original = module._parameters[name]
                if original.requires_grad:  # made trainable since it was found: leave it to autocast
                    continue
                # straight into the parameter table: nn.Module.__setattr__'s checks cost more than the swap
                module._parameters[name] = self._copy_of(original, dtype)
                swapped.append((module, name, original))
            yield
        finally:
            for module, name, original in swapped:
                module._parameters[name] = original
