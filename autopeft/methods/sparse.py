"""Sparse fine-tuning: train a chosen fraction of the weights of the chosen modules, save only those entries.

Which weights: ``selection`` = ``magnitude`` (the largest in absolute value in each matrix), ``random``
(seeded) or ``gradient`` (the largest accumulated gradient over a few training batches at the start, chosen when
the worker calibrates the method). Training computes the whole weight tensor's gradient but a hook zeroes it
outside the mask, so with AdamW and no weight decay the other entries stay bitwise unchanged (weight decay would
move them, so the worker refuses a non-zero weight decay for this method). The trainable-parameter count is the
number of selected entries, not the size of the matrices they sit in. The saved adapter holds, per matrix, the
flat indices of the trained entries and their trained values, so loading (which is also merging) reproduces the
trained model exactly; the delta against the base is ``values - base[indices]``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from autopeft.methods.base import TensorBacked, task_head_parameters
from autopeft.methods.placement import chosen_layers
from autopeft.methods.registry import register
from autopeft.models.architectures import resolve_targets

_MASK = "sparse_mask"


def _masked_gradient(module: nn.Module, grad: torch.Tensor) -> torch.Tensor:
    """Zero the gradient outside the mask, except while calibrating (which scores the full gradient)."""
    return grad if getattr(module, "sparse_calibrating", False) else grad * getattr(module, _MASK)


def _select(weight: torch.Tensor, count: int, selection: str, seed: int) -> torch.Tensor:
    flat = weight.detach().reshape(-1)
    if selection == "gradient":  # provisional until calibration: the same count, so costs are known now
        return torch.arange(count, device=flat.device)
    if selection == "magnitude":
        return torch.topk(flat.abs(), count, sorted=False).indices
    if selection == "random":
        generator = torch.Generator().manual_seed(seed)
        return torch.randperm(flat.numel(), generator=generator)[:count]
    raise ValueError(f"unknown sparse selection {selection!r}; use magnitude, random or gradient")


@register
class SparseFineTuning(TensorBacked):
    name = "sparse"
    options = ("density", "selection", "target_modules")
    requires_zero_weight_decay = True
    help = "trains a fraction of the weights of chosen modules"

    def build(self, model: nn.Module, config: dict[str, Any]) -> nn.Module:
        options = config.get(self.name, {})
        density = float(options.get("density", 0.01))
        if not 0 < density <= 1:
            raise ValueError(f"sparse density must be in (0, 1] (got {density})")
        roles = options.get("target_modules", ["query", "key", "value", "attention_output", "ffn_up", "ffn_down"])
        names = resolve_targets(model, roles, chosen_layers(model, config))
        model.requires_grad_(False)
        modules = dict(model.named_modules())
        for index, name in enumerate(names):
            weight = modules[name].weight
            count = max(1, math.ceil(density * weight.numel()))
            modules[name].sparse_count = count  # a plain int, so counting works on meta-device models too
            chosen = _select(weight, count, options.get("selection", "magnitude"),
                             seed=int(config.get("seed", 0)) * 1000 + index)
            mask = torch.zeros(weight.numel(), dtype=torch.bool, device=weight.device)
            mask[chosen] = True
            mask = mask.view_as(weight)
            modules[name].register_buffer(_MASK, mask, persistent=False)
            weight.requires_grad_(True)
            weight.register_hook(lambda grad, module=modules[name]: _masked_gradient(module, grad))
        for parameter in task_head_parameters(model).values():
            parameter.requires_grad_(True)
        return model

    def calibrates(self, config: dict[str, Any]) -> bool:
        return config.get(self.name, {}).get("selection") == "gradient"

    def calibrate(self, model: nn.Module, config: dict[str, Any], batches: list[dict[str, Any]]) -> None:
        """For ``selection: gradient``: re-choose each mask as the entries with the largest summed |gradient|."""
        if not self.calibrates(config):
            return
        masked = self._masked(model)
        scores = {name: torch.zeros_like(module.weight) for name, module in masked}
        handles = []
        for name, module in masked:
            module.sparse_calibrating = True
            handles.append(module.weight.register_hook(lambda grad, name=name: scores[name].add_(grad.abs())))
        try:
            for batch in batches:
                model(**batch).loss.backward()
        finally:
            for handle in handles:
                handle.remove()
            for _, module in masked:
                module.sparse_calibrating = False
            model.zero_grad(set_to_none=True)
        for name, module in masked:
            mask = getattr(module, _MASK)
            chosen = torch.topk(scores[name].reshape(-1), module.sparse_count, sorted=False).indices
            mask.zero_()
            mask.view(-1)[chosen] = True

    @staticmethod
    def _masked(model: nn.Module) -> list[tuple[str, nn.Module]]:
        return [(name, m) for name, m in model.named_modules() if hasattr(m, _MASK)]

    @classmethod
    def count(cls, model: nn.Module) -> tuple[int, int]:
        total = sum(p.numel() for p in model.parameters())
        masked_weights = {id(m.weight) for _, m in cls._masked(model)}
        dense = sum(p.numel() for p in model.parameters() if p.requires_grad and id(p) not in masked_weights)
        sparse = sum(m.sparse_count for _, m in cls._masked(model))
        return dense + sparse, total

    def saved_bytes(self, model: nn.Module, config: dict[str, Any]) -> int:
        """Each trained entry is saved as an int64 index and a float value."""
        head = sum(p.numel() * p.element_size() for p in task_head_parameters(model).values())
        return head + sum(m.sparse_count * (8 + m.weight.element_size()) for _, m in self._masked(model))

    def trained_tensors(self, model: nn.Module) -> dict[str, torch.Tensor]:
        tensors = {name: p.detach().contiguous() for name, p in task_head_parameters(model).items()}
        for name, module in self._masked(model):
            mask = getattr(module, _MASK)
            tensors[f"{name}.weight.indices"] = mask.reshape(-1).nonzero().squeeze(1).to(torch.int64)
            tensors[f"{name}.weight.values"] = module.weight.detach()[mask].contiguous()
        return tensors

    def load(self, base_model: nn.Module, directory: Path) -> nn.Module:
        """Write the trained entries into the base weights (this is also the merged form)."""
        from safetensors.torch import load_file

        saved = load_file(str(directory / "adapter.safetensors"))
        parameters = dict(base_model.named_parameters())
        with torch.no_grad():
            for key, tensor in saved.items():
                if key.endswith(".weight.indices"):
                    name = key.removesuffix(".indices")
                    parameters[name].view(-1)[tensor] = saved[f"{name}.values"]
                elif not key.endswith(".weight.values"):
                    parameters[key].copy_(tensor)
        return base_model
