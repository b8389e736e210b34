"""The contract every PEFT method keeps: build it on a model, count it, save it, load it back.

Three backings share the work, so a method module only says how a configuration becomes its library's config:
- :class:`PeftBacked` — Hugging Face peft (LoRA and its variants, IA3, LayerNorm tuning, prompt tuning);
  saved with ``save_pretrained``, loaded by stock ``PeftModel.from_pretrained``.
- :class:`AdapterHubBacked` — AdapterHub ``adapters`` (series and parallel bottleneck adapters, prefix tuning,
  unions), which has per-layer ``leave_out`` and ``ConfigUnion``; saved with ``save_adapter`` (task head
  included), loaded by its ``load_adapter``.
- :class:`TensorBacked` — methods no library has (BitFit, sparse fine-tuning): the trained tensors in a
  safetensors file plus the configuration, loaded by :func:`autopeft.adapters.load_adapter`.

Counting is the same for all: parameters with ``requires_grad`` on the built model.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from autopeft.methods import adapterhub_decoders

ADAPTER_NAME = "autopeft"


class _SpuriousAdapterWarning(logging.Filter):
    """AdapterHub's ``train_adapter`` runs a forward context of its own before it activates the adapter and warns
    that none is active; every AdapterHub trial printed it. Only that message is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "none are activated for the forward pass" not in record.getMessage()


logging.getLogger("adapters.model_mixin").addFilter(_SpuriousAdapterWarning())
METHOD_FILE = "autopeft_method.json"  # which method and configuration made the folder (every backing writes it)
HEAD_NAMES = ("classifier", "score")  # the head modules peft trains and saves by itself for a classifier


def folder_bytes(directory: Path) -> int:
    return sum(f.stat().st_size for f in directory.rglob("*") if f.is_file())


def task_head_names(model: nn.Module) -> tuple[str, ...]:
    """The top-level modules of a classification model that lie outside its pretrained body: its task head.

    Not only ``classifier`` / ``score``: DistilBERT's head starts with ``pre_classifier``, DeBERTa's with a
    ``pooler``, ModernBERT's with ``head``, and a checkpoint of the bare model holds none of them, so they start
    random. Left frozen, such a layer would stay at a random draw that the adapter does not save, and a reloaded
    adapter would predict differently from its trial. A causal LM has no head of its own to train (its LM head is
    the pretrained output layer)."""
    from autopeft.models.architectures import is_causal_lm

    if is_causal_lm(model):
        return ()
    body = getattr(model, "base_model_prefix", "")
    children = dict(model.named_children())
    if body not in children:  # a model without the usual body/head split: the standard head names only
        return tuple(name for name in HEAD_NAMES if name in children)
    return tuple(name for name, child in children.items()
                 if name != body and any(True for _ in child.parameters()))


def task_head_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """The task head's parameters (trained by every method: a new task needs its own head)."""
    heads = task_head_names(model)
    return {name: p for name, p in model.named_parameters() if name.split(".")[0] in heads}


class Method:
    """A PEFT method: subclasses set ``name`` and ``library`` and implement build, save and load."""

    name: ClassVar[str]
    library: ClassVar[str]
    help: ClassVar[str] = ""
    # The keys the method reads from its own block of a configuration (a space's ``lora.r`` is
    # ``config["lora"]["r"]``). A space that names any other key of the method is refused before its search starts
    # (autopeft/search/space_names.py): the method would not read it, and every trial would silently train at the
    # default while the sampler modelled a parameter that changes nothing. None: not declared (a plugin's
    # method), so its block is not checked.
    options: ClassVar[tuple[str, ...] | None] = None
    requires_zero_weight_decay: ClassVar[bool] = False
    mergeable: ClassVar[bool] = False  # the trained change can be folded into the base weights
    # The saved adapter's size follows from the configuration alone (False: training decides it, as AdaLoRA's
    # pruned ranks are dropped on save), so the adapter bytes predicted before training are a bound, not a value.
    saved_size_known_before_training: ClassVar[bool] = True

    def keeps_base_weights(self, config: dict[str, Any]) -> bool:
        """Whether building and training this configuration leaves every base weight as loaded (values and
        ``requires_grad``): the method adds modules beside the base instead of changing it. A worker then lets the
        trial share the frozen base's tensors instead of copying them (workers/worker.py, ``_trial_base``).
        False unless a method says otherwise: a wrong True would let one trial change the next trial's base."""
        return False

    def merge(self, model: nn.Module) -> nn.Module:
        """The loaded model with the adapter folded into plain base weights (only where ``mergeable``)."""
        raise ValueError(f"method {self.name!r} cannot be merged into the base weights")

    def calibrates(self, config: dict[str, Any]) -> bool:
        """Whether this configuration needs :meth:`calibrate` (so other trials skip building its batches)."""
        return False

    def calibrate(self, model: nn.Module, config: dict[str, Any], batches: list[dict[str, Any]]) -> None:
        """Data-aware initialisation before training (EVA for LoRA, gradient-chosen entries for sparse
        fine-tuning); ``batches`` are a few training batches. Most methods need none."""

    def build_calibrated(self, model: nn.Module, config: dict[str, Any],
                         batches: list[dict[str, Any]]) -> nn.Module:
        """The build a trial makes when :meth:`calibrates` holds: build, then calibrate on ``batches``.

        Methods whose data-aware start must see the *unwrapped* base (CorDA collects activation covariances before
        peft wraps the model) override this; everything else keeps build-then-calibrate."""
        built = self.build(model, config)
        self.calibrate(built, config, batches)
        return built

    def after_step(self, model: nn.Module, step: int, total_steps: int) -> None:
        """Called after each optimizer step, gradients still in place (AdaLoRA reallocates its rank budget
        here). Most methods need nothing."""

    def build(self, model: nn.Module, config: dict[str, Any]) -> nn.Module:
        """Make ``model`` (modified in place, or wrapped) train only this method's parameters and the task head."""
        raise NotImplementedError

    @staticmethod
    def count(model: nn.Module) -> tuple[int, int]:
        """(trainable, total) parameters counted on the built model."""
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in model.parameters())
        return trainable, total

    def saved_bytes(self, model: nn.Module, config: dict[str, Any]) -> int:
        """Bytes of the tensors the adapter file holds (files add a small header and the configuration)."""
        return sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)

    def save(self, model: nn.Module, directory: Path, config: dict[str, Any]) -> int:
        """Save what was trained so the method's standard loader reads it; return the bytes on disk."""
        raise NotImplementedError

    def load(self, base_model: nn.Module, directory: Path) -> nn.Module:
        """Put a saved adapter on a freshly loaded base model, ready for inference."""
        raise NotImplementedError

    def loading_code(self, directory: Path) -> str:
        """Python lines that load an exported folder, for the export's README (``base`` is the loaded base)."""
        return "from autopeft import load_adapter\n\nmodel = load_adapter(base, FOLDER)"

    @staticmethod
    def _write_method_file(directory: Path, name: str, config: dict[str, Any], model: nn.Module) -> None:
        # The model type it was trained on: a tensor-named adapter (sparse, BitFit) put on another architecture
        # whose names happen to fit loaded without a word, the head left at its random start.
        model_type = getattr(getattr(model, "config", None), "model_type", None)
        (directory / METHOD_FILE).write_text(json.dumps({"method": name, "config": config, "model_type": model_type},
                                                        indent=2))


class PeftBacked(Method):
    library = "peft"

    def keeps_base_weights(self, config: dict[str, Any]) -> bool:
        return True  # peft wraps the base's modules and trains new tensors beside them; the head is copied

    def merge(self, model: nn.Module) -> nn.Module:
        if not self.mergeable:
            return super().merge(model)
        return model.merge_and_unload()

    def peft_config(self, model: nn.Module, config: dict[str, Any]):
        raise NotImplementedError

    def build(self, model: nn.Module, config: dict[str, Any]) -> nn.Module:
        from peft import get_peft_model

        from autopeft.methods.placement import with_weight_layout

        return get_peft_model(model, with_weight_layout(model, self.peft_config(model, config)))

    def save(self, model: nn.Module, directory: Path, config: dict[str, Any]) -> int:
        model.save_pretrained(str(directory))
        self._write_method_file(directory, self.name, config, model)
        return folder_bytes(directory)

    def load(self, base_model: nn.Module, directory: Path) -> nn.Module:
        from peft import PeftModel

        return PeftModel.from_pretrained(base_model, str(directory))

    def loading_code(self, directory: Path) -> str:
        return "from peft import PeftModel\n\nmodel = PeftModel.from_pretrained(base, FOLDER)"


class AdapterHubBacked(Method):
    library = "adapters"

    def keeps_base_weights(self, config: dict[str, Any]) -> bool:
        return True  # adapters, prefixes and gates are new modules; train_adapter only freezes what is frozen

    def adapter_config(self, model: nn.Module, config: dict[str, Any]):
        raise NotImplementedError

    def build(self, model: nn.Module, config: dict[str, Any]) -> nn.Module:
        import adapters

        adapter_config = self.adapter_config(model, config)
        loaded = {name for name, _ in model.named_parameters()}
        try:
            adapters.init(model)
        except ValueError as exc:
            if "not pre-supported" not in str(exc):
                raise
            raise ValueError(f"method {self.name!r} (AdapterHub) does not support model type "
                             f"{model.config.model_type!r}; use a peft method such as lora or ia3") from None
        added = sorted({name for name, _ in model.named_parameters()} - loaded)
        if added:
            # adapters 1.3 wraps some models' fused projections (ModernBERT's Wqkv) with a bias the checkpoint
            # does not hold, left uninitialised: every build would start from different base weights.
            raise ValueError(f"method {self.name!r} (AdapterHub) on model type {model.config.model_type!r} adds "
                             f"base weights no checkpoint holds ({added[0]}), so its results would not reproduce; "
                             "use a peft method such as lora or ia3")
        try:
            model.add_adapter(ADAPTER_NAME, config=adapter_config)
        except ValueError as exc:
            if "is not supported by this model" not in str(exc):
                raise
            raise ValueError(f"method {self.name!r} (AdapterHub) is not available on model type "
                             f"{model.config.model_type!r} (adapters has no {type(adapter_config).__name__} for "
                             "it); use a peft method such as lora or ia3") from None
        model.train_adapter(ADAPTER_NAME)  # freezes the base, leaves the adapter (and the task head) trainable
        for parameter in task_head_parameters(model).values():
            parameter.requires_grad_(True)
        return adapterhub_decoders.prepare(model)  # prefix masks and cache name on decoders (see that module)

    def save(self, model: nn.Module, directory: Path, config: dict[str, Any]) -> int:
        try:
            model.save_adapter(str(directory), ADAPTER_NAME, with_head=True, use_safetensors=True)
        except RuntimeError as exc:
            # Prefix tuning shares one prefix module between layers, which safetensors refuses to write;
            # the library's own format (torch.save, read back with weights_only loading) keeps the sharing.
            if "share memory" not in str(exc):
                raise
            model.save_adapter(str(directory), ADAPTER_NAME, with_head=True, use_safetensors=False)
        self._write_method_file(directory, self.name, config, model)
        return folder_bytes(directory)

    def load(self, base_model: nn.Module, directory: Path) -> nn.Module:
        import adapters

        adapters.init(base_model)
        # with_head=True saved the task head beside the adapter; load_adapter puts it back on the model
        name = base_model.load_adapter(str(directory), use_safetensors=_uses_safetensors(directory))
        base_model.set_active_adapters(name)
        return adapterhub_decoders.prepare(base_model)

    def loading_code(self, directory: Path) -> str:
        return ("import adapters\n\nadapters.init(base)\n"
                f"name = base.load_adapter(FOLDER, use_safetensors={_uses_safetensors(directory)})\n"
                "base.set_active_adapters(name)\n" + adapterhub_decoders.loading_lines(directory) + "model = base")


def _uses_safetensors(directory: Path) -> bool:
    """Prefix tuning falls back to the library's torch format (see save); everything else is safetensors."""
    return not (directory / "pytorch_adapter.bin").is_file()


class TensorBacked(Method):
    """Methods that change existing tensors of the model; only those tensors are saved."""

    library = "autopeft"
    mergeable = True  # the trained tensors are base tensors: loading them is merging

    def merge(self, model: nn.Module) -> nn.Module:
        return model

    def trained_tensors(self, model: nn.Module) -> dict[str, torch.Tensor]:
        return {name: p.detach().contiguous() for name, p in model.named_parameters() if p.requires_grad}

    def save(self, model: nn.Module, directory: Path, config: dict[str, Any]) -> int:
        directory.mkdir(parents=True, exist_ok=True)
        _save_tensors(self.trained_tensors(model), directory / "adapter.safetensors")
        self._write_method_file(directory, self.name, config, model)
        return folder_bytes(directory)

    def load(self, base_model: nn.Module, directory: Path) -> nn.Module:
        _load_tensors(base_model, directory / "adapter.safetensors")
        return base_model


class LayerTensors(TensorBacked):
    """Methods that train existing tensors of the chosen layers, picked by name (BitFit: the biases; partial
    fine-tuning: all of them), with the task head."""

    missing: ClassVar[str] = "has no parameters in the chosen layers"  # said when a model has none to pick

    def picks(self, name: str) -> bool:
        """Whether the chosen layers' parameter ``name`` trains."""
        raise NotImplementedError

    def build(self, model: nn.Module, config: dict[str, Any]) -> nn.Module:
        from autopeft.methods.placement import chosen_layer_prefixes

        layers = chosen_layer_prefixes(model, config)
        model.requires_grad_(False)
        chosen = [p for name, p in model.named_parameters() if name.startswith(layers) and self.picks(name)]
        if not chosen:
            raise ValueError(f"{type(model).__name__} {self.missing}: {self.name} cannot apply")
        for parameter in [*chosen, *task_head_parameters(model).values()]:
            parameter.requires_grad_(True)
        return model


def _save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    from safetensors.torch import save_file

    save_file(tensors, str(path))


def _load_tensors(model: nn.Module, path: Path) -> None:
    """Copy saved tensors into the model's parameters of the same names (strict: every saved name must exist)."""
    from safetensors.torch import load_file

    saved = load_file(str(path))
    parameters = dict(model.named_parameters())
    missing = [name for name in saved if name not in parameters]
    if missing:
        raise ValueError(f"{path.name} holds tensors the model does not have: {missing[:3]}")
    with torch.no_grad():
        for name, tensor in saved.items():
            parameters[name].copy_(tensor)
