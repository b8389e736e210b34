"""LoRA (Hu et al., 2022) through Hugging Face peft, on exact modules of chosen layers.

What peft gives nearly free is exposed as options: DoRA (``use_dora``), the initialisations of the LoRA
literature (``init``: default, gaussian, pissa, olora, and the data-aware eva and corda, which the worker calibrates
on a few training batches before training), rsLoRA scaling, and a rank per layer (``layer_ranks``).

PiSSA, OLoRA and CorDA start from a decomposition of the base weight and leave the residual in the base. PiSSA's
and OLoRA's decompositions are deterministic, so stock ``PeftModel.from_pretrained`` redoes them on a fresh base
and the saved adapter loads as it is. CorDA's depends on the calibration data, so its adapter is converted on save
(peft's ``path_initial_model_for_weight_conversion``) into a plain LoRA of rank 2r on the unmodified base: the
trained rank is r, the saved tensors are twice LoRA's, and the prediction before training says so.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import Any

from peft import EvaConfig, LoraConfig, get_peft_model, initialize_lora_eva_weights
from peft.tuners.lora.config import CordaConfig
from peft.tuners.lora.corda import preprocess_corda
from peft.utils import SAFETENSORS_WEIGHTS_NAME, get_peft_model_state_dict
from safetensors.torch import load_file, save_file
from torch import nn

from autopeft.methods.base import PeftBacked, folder_bytes
from autopeft.methods.placement import chosen_layers, peft_task_fields, with_weight_layout
from autopeft.methods.registry import register
from autopeft.models.architectures import resolve_targets

INITIALISATIONS = {"default": True, "gaussian": "gaussian", "pissa": "pissa", "olora": "olora",
                   "pissa_niter_4": "pissa_niter_4", "eva": "eva", "corda": "corda"}
DATA_AWARE = ("eva", "corda")
KEEPS_BASE = ("default", "gaussian", "eva")  # the initialisations that leave the base weights as they are
CORDA_METHODS = ("ipm", "kpm")  # instruction-previewed (task covariance first) or knowledge-preserving
_INITIAL_ADAPTER = "initial"  # the folder, beside a CorDA model, of its adapter as built (for the conversion)
_PEFT_EVA_NOTICE = r"lora with eva initialization used with low_cpu_mem_usage=False"


def ignore_peft_eva_notice() -> None:
    """peft's ``get_peft_model`` warns on every EVA build that ``low_cpu_mem_usage=True`` "can improve the maximum
    batch size possible for eva initialization". The worker calibrates EVA on a few small training batches, so
    the advice does not apply, and the line repeated in every EVA trial's log. Only that message, from that peft
    module, is dropped; set again before each build for the reason ``ln_tuning.ignore_peft_norm_notice`` gives."""
    warnings.filterwarnings("ignore", message=_PEFT_EVA_NOTICE, category=UserWarning, module=r"peft\.mapping_func")


@register
class Lora(PeftBacked):
    name = "lora"
    options = ("r", "alpha_over_r", "alpha", "dropout", "target_modules", "init", "corda_method", "use_dora",
               "use_rslora", "layer_ranks")
    help = "low-rank update of chosen linear modules"
    use_dora = False
    mergeable = True

    def peft_config(self, model: nn.Module, config: dict[str, Any], *, calibrated: bool = False) -> LoraConfig:
        """``calibrated``: CorDA's covariances were collected on ``model`` (only :meth:`build_calibrated` does)."""
        options = config.get(self.name, {})
        rank = int(options.get("r", 8))
        roles = options.get("target_modules", ["query", "value"])
        layers = chosen_layers(model, config)
        targets = resolve_targets(model, roles, layers)
        init = options.get("init", "default")
        if init not in INITIALISATIONS:
            raise ValueError(f"unknown LoRA init {init!r}; use one of {list(INITIALISATIONS)}")
        corda_method = options.get("corda_method", "ipm")
        if corda_method not in CORDA_METHODS:
            raise ValueError(f"unknown corda_method {corda_method!r}; use one of {list(CORDA_METHODS)}")
        if init == "corda" and not calibrated:
            # Built without calibration data (the cost prediction on the meta device, a plain build): the shapes
            # and the count are those of any LoRA, and a trial always builds through build_calibrated.
            init = "default"
        rank_pattern = {}
        for layer, layer_rank in (options.get("layer_ranks") or {}).items():
            for name in resolve_targets(model, roles, [int(layer)]):
                rank_pattern[name] = int(layer_rank)
        if init == "eva":
            ignore_peft_eva_notice()
        return LoraConfig(
            **peft_task_fields(model),
            r=rank,
            lora_alpha=options.get("alpha", rank * float(options.get("alpha_over_r", 2.0))),
            lora_dropout=float(options.get("dropout", 0.0)),
            target_modules=targets,
            init_lora_weights=INITIALISATIONS[init],
            # classification labels are one per example, not per token: EVA must not mask by them
            eva_config=EvaConfig(use_label_mask=False) if init == "eva" else None,
            corda_config=CordaConfig(corda_method=corda_method) if init == "corda" else None,
            use_dora=bool(options.get("use_dora", self.use_dora)),
            use_rslora=bool(options.get("use_rslora", False)),
            rank_pattern=rank_pattern,
        )


    def calibrates(self, config: dict[str, Any]) -> bool:
        return config.get(self.name, {}).get("init") in DATA_AWARE

    def keeps_base_weights(self, config: dict[str, Any]) -> bool:
        # PiSSA, OLoRA and CorDA start from a residual: they subtract their initial update from the base weights.
        return config.get(self.name, {}).get("init", "default") in KEEPS_BASE

    def calibrate(self, model: nn.Module, config: dict[str, Any], batches: list[dict[str, Any]]) -> None:
        if config.get(self.name, {}).get("init") == "eva":
            initialize_lora_eva_weights(model, dataloader=_inputs(batches), show_progress_bar=False)

    def build_calibrated(self, model: nn.Module, config: dict[str, Any],
                         batches: list[dict[str, Any]]) -> nn.Module:
        if config.get(self.name, {}).get("init") != "corda":
            return super().build_calibrated(model, config, batches)
        lora_config = with_weight_layout(model, self.peft_config(model, config, calibrated=True))
        model.eval()  # the covariances are of the model as it infers: no dropout noise

        def run_model() -> None:  # peft's CorDA hooks read one example per forward, unpadded
            for inputs in _inputs(batches):
                for row, mask in zip(range(len(inputs["input_ids"])), inputs["attention_mask"].bool()):
                    model(**{k: v[row][mask].unsqueeze(0) for k, v in inputs.items()})

        preprocess_corda(model, lora_config, run_model=run_model)
        built = get_peft_model(model, lora_config)
        # The adapter as built, saved with a plain init, is what save() subtracts to give a LoRA of the stock base.
        built.autopeft_initial = tempfile.TemporaryDirectory(prefix="autopeft-corda-")
        initial = Path(built.autopeft_initial.name) / _INITIAL_ADAPTER
        built.peft_config["default"].init_lora_weights = True
        built.save_pretrained(str(initial))
        built.peft_config["default"].init_lora_weights = "corda"
        return built

    def save(self, model: nn.Module, directory: Path, config: dict[str, Any]) -> int:
        initial = getattr(model, "autopeft_initial", None)
        if initial is None:
            return super().save(model, directory, config)
        model.save_pretrained(str(directory),
                              path_initial_model_for_weight_conversion=str(Path(initial.name) / _INITIAL_ADAPTER))
        # peft's conversion keeps only the LoRA tensors and drops the trained task head (modules_to_save): put the
        # head back, under the keys the stock loader reads.
        saved = directory / SAFETENSORS_WEIGHTS_NAME
        tensors = load_file(str(saved))
        tensors.update({k: v.contiguous() for k, v in get_peft_model_state_dict(model).items() if ".lora_" not in k})
        save_file(tensors, str(saved), metadata={"format": "pt"})
        self._write_method_file(directory, self.name, config, model)
        return folder_bytes(directory)

    def saved_bytes(self, model: nn.Module, config: dict[str, Any]) -> int:
        tensors = super().saved_bytes(model, config)
        if config.get(self.name, {}).get("init") != "corda":
            return tensors
        low_rank = sum(p.numel() * p.element_size() for name, p in model.named_parameters()
                       if p.requires_grad and ".lora_" in name)
        return tensors + low_rank  # the conversion saves [B, B0] and [A; -A0]: rank 2r


def _inputs(batches: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Calibration batches without their labels (the model is run, not trained)."""
    return [{k: v for k, v in batch.items() if k != "labels"} for batch in batches]


@register
class Dora(Lora):
    """DoRA (Liu et al., 2024): LoRA on the direction, plus a trained magnitude per output."""

    name = "dora"
    help = "weight-decomposed LoRA (LoRA's options)"
    use_dora = True
