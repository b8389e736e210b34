"""The contract every PEFT method keeps: build it on a model, count it, save it, load it back.

Counting, saving and loading are the same for every method that Hugging Face `peft` implements, so they live
here once; a method module only says how a configuration becomes a peft config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from peft import PeftConfig, PeftModel, get_peft_model
from torch import nn


class PeftMethod:
    """Base class: subclasses set ``name`` and implement :meth:`peft_config`."""

    name: ClassVar[str]

    def peft_config(self, model: nn.Module, config: dict[str, Any]) -> PeftConfig:
        """The peft configuration for this trial's configuration on this model."""
        raise NotImplementedError

    def build(self, model: nn.Module, config: dict[str, Any]) -> PeftModel:
        """Wrap ``model`` (modified in place) with this method's trainable parts."""
        return get_peft_model(model, self.peft_config(model, config))

    @staticmethod
    def count(model: nn.Module) -> tuple[int, int]:
        """(trainable, total) parameters counted on the built model."""
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in model.parameters())
        return trainable, total

    @staticmethod
    def save(model: PeftModel, directory: Path) -> int:
        """Save the adapter the way stock peft reads it; return its bytes on disk."""
        model.save_pretrained(str(directory))
        return sum(f.stat().st_size for f in directory.rglob("*") if f.is_file())

    @staticmethod
    def load(base_model: nn.Module, directory: Path) -> PeftModel:
        return PeftModel.from_pretrained(base_model, str(directory))
