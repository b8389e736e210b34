"""AdaLoRA (Zhang et al., 2023) through peft: LoRA in SVD form whose rank budget moves, during training, to the
modules where it matters most.

Options: ``init_r`` (rank each module starts with), ``target_r`` (average rank left at the end),
``target_modules`` (roles, default query and value), ``alpha``. The schedule is set from the trial's own length
when training starts (peft wants it at construction): no reallocation during the first 10% of the steps, budget
shrinking until 80%, ranks fixed for the last 20%, a reallocation every 2% of the steps. The trainable parameters
counted are those of the initial rank (ranks are pruned by masking while training); the saved adapter keeps only
the ranks left, so its measured size is below the one predicted before training.
"""

from __future__ import annotations

from typing import Any

from peft import AdaLoraConfig
from torch import nn

from autopeft.methods.base import PeftBacked
from autopeft.methods.placement import chosen_layers, peft_task_fields
from autopeft.methods.registry import register
from autopeft.models.architectures import resolve_targets

WARM_UP, FINAL = 0.1, 0.2  # fractions of the trial's steps: before any reallocation, and with ranks fixed


@register
class AdaLora(PeftBacked):
    name = "adalora"
    options = ("init_r", "target_r", "target_modules", "alpha")
    help = "LoRA whose rank budget is reallocated between modules while training"
    mergeable = True
    saved_size_known_before_training = False  # ranks pruned during training are not saved

    def peft_config(self, model: nn.Module, config: dict[str, Any]) -> AdaLoraConfig:
        options = config.get(self.name, {})
        init_r, target_r = int(options.get("init_r", 12)), int(options.get("target_r", 8))
        if not 0 < target_r <= init_r:
            raise ValueError(f"adalora: target_r ({target_r}) must be between 1 and init_r ({init_r})")
        roles = options.get("target_modules", ["query", "value"])
        return AdaLoraConfig(
            **peft_task_fields(model),
            target_modules=resolve_targets(model, roles, chosen_layers(model, config)),
            init_r=init_r, target_r=target_r, lora_alpha=float(options.get("alpha", 2 * target_r)),
            total_step=1000, tinit=100, tfinal=200, deltaT=10,  # replaced by the trial's schedule in after_step
        )

    def after_step(self, model: nn.Module, step: int, total_steps: int) -> None:
        adalora = model.base_model
        if step == 1:
            schedule = adalora.peft_config[model.active_adapter]
            schedule.total_step = total_steps
            schedule.tinit = int(WARM_UP * total_steps)
            schedule.tfinal = int(FINAL * total_steps)
            schedule.deltaT = max(1, total_steps // 50)
        adalora.update_and_allocate(step)
