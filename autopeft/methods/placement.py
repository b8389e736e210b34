"""Which layers a configuration uses, in the form each library wants it."""

from __future__ import annotations

import re
from typing import Any

from torch import nn

from autopeft.models.architectures import is_causal_lm, layer_container, num_layers


def chosen_layers(model: nn.Module, config: dict[str, Any]) -> list[int]:
    """The configuration's layers; all of them when it does not say."""
    count = num_layers(model.config)
    return sorted(config.get("layers", range(count)))


def chosen_layer_prefixes(model: nn.Module, config: dict[str, Any]) -> tuple[str, ...]:
    """Parameter and module name prefixes of the chosen layers ("bert.encoder.layer.4.", ...), for the methods
    that pick tensors by name."""
    container = layer_container(model, num_layers(model.config))
    return tuple(f"{container}.{i}." for i in chosen_layers(model, config))


def left_out_layers(model: nn.Module, config: dict[str, Any]) -> list[int]:
    """AdapterHub's ``leave_out``: the complement of the chosen layers."""
    chosen = set(chosen_layers(model, config))
    return [i for i in range(num_layers(model.config)) if i not in chosen]


def bottleneck_reduction(model: nn.Module, bottleneck: int) -> float:
    """AdapterHub sizes bottlenecks by reduction factor (hidden / bottleneck); we search the bottleneck size."""
    if bottleneck < 1:
        raise ValueError(f"bottleneck size must be at least 1 (got {bottleneck})")
    return model.config.hidden_size / bottleneck


def with_weight_layout(model: nn.Module, peft_config):
    """``peft_config`` with ``fan_in_fan_out`` set where its target modules are GPT-2-style ``Conv1D`` (a Linear
    whose weight is stored transposed). peft sets it itself, but warns on every build, in the controller's cost
    counts as in each worker; a GPT-2 search printed a screenful of them. Saved as set, so stock peft reloads
    the adapter the same way."""
    targets = getattr(peft_config, "target_modules", None)
    if not hasattr(peft_config, "fan_in_fan_out") or peft_config.fan_in_fan_out or not targets:
        return peft_config
    if conv1d_targets(model, targets):
        peft_config.fan_in_fan_out = True
    return peft_config


def conv1d_targets(model: nn.Module, targets: str | list[str] | set[str]) -> list[str]:
    """The targeted modules that are GPT-2-style ``Conv1D`` (GPT-2, GPT-BigCode's relatives), by name."""
    return [name for name, module in model.named_modules()
            if type(module).__name__ == "Conv1D" and _targeted(name, targets)]


def _targeted(name: str, targets: str | list[str] | set[str]) -> bool:
    """peft's rule for ``target_modules``: one string is a regular expression over the whole module name; a list
    names modules by their full name or its last parts."""
    if isinstance(targets, str):
        return re.fullmatch(targets, name) is not None
    return any(name == target or name.endswith("." + target) for target in targets)


def peft_task_type(model: nn.Module) -> str:
    """peft's task type for the model's head: it decides what peft trains besides the adapter (the classifier)."""
    from peft import TaskType

    if is_causal_lm(model):
        return TaskType.CAUSAL_LM
    return TaskType.TOKEN_CLS if type(model).__name__.endswith("ForTokenClassification") else TaskType.SEQ_CLS


def peft_task_fields(model: nn.Module) -> dict[str, Any]:
    """The task fields of a peft config: the task type, and the head modules peft would not train and save by
    itself (it knows ``classifier`` and ``score``; DistilBERT's ``pre_classifier`` or DeBERTa's ``pooler`` are
    named here, or they would stay at their random start and be missing from the saved adapter)."""
    from autopeft.methods.base import HEAD_NAMES, task_head_names

    # Named down to the modules that hold the weights (DeBERTa's `pooler.dense`, not `pooler`): peft's merge
    # (IA3's among them) takes the weight of each module it saved, and DeBERTa's ContextPooler has none of its own.
    others = [f"{name}.{inner}" if inner else name for name in task_head_names(model) if name not in HEAD_NAMES
              for inner, module in getattr(model, name).named_modules()
              if any(True for _ in module.parameters(recurse=False))]
    return {"task_type": peft_task_type(model), "modules_to_save": others or None}
