"""Cost before training: a configuration's trainable parameters and adapter size, without training or weights.

The method is built for real on a *meta-device* copy of the model (shapes only, no memory, ~30 ms), and counted
by the same code that counts the trained model, so the prediction is not a formula that can drift from what the
worker builds: it is the same build. Used by ``autopeft space describe`` and by samplers that need costs known in
advance.
"""

from __future__ import annotations

import copy
from functools import lru_cache
from typing import Any

import torch

from autopeft.methods import get_method
from autopeft.models import TASK_MODEL_CLASSES, load_model_config
from autopeft.spec import ModelSpec


@lru_cache(maxsize=8)
def _meta_base(name_or_path: str, revision: str | None, task: str, num_labels: int):
    config = copy.deepcopy(load_model_config(ModelSpec(name_or_path=name_or_path, revision=revision, task=task)))
    config.num_labels = num_labels
    with torch.device("meta"):
        return TASK_MODEL_CLASSES[task].from_config(config)


def predict_cost(model: ModelSpec, num_labels: int, config: dict[str, Any]) -> dict[str, float]:
    """Trainable parameters, their share of the base, and the bytes of the saved adapter tensors."""
    base = _meta_base(model.name_or_path, model.revision, model.task, num_labels)
    method = get_method(config["method"])
    with torch.device("meta"):
        built = method.build(copy.deepcopy(base), config)
    trainable, _ = method.count(built)
    total = sum(p.numel() for p in base.parameters())
    return {"trainable_params": float(trainable), "trainable_percent": 100.0 * trainable / total,
            "adapter_tensor_bytes": float(method.saved_bytes(built))}
