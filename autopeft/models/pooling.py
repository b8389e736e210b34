"""How a classification head reads one vector from an encoder: its first token, or the mean of its tokens.

transformers' sequence-classification heads read the first token ([CLS]); BERT-type models pass it through a
pooler (a dense layer and tanh, frozen in a PEFT trial). A sentence-transformers model (MiniLM, MPNet, BGE, E5,
GTE ...) was trained to be read as the mean of its tokens instead, and says so in its folder (``modules.json`` and
its Pooling module's ``config.json``). Read through [CLS] and a pooler its pretraining never used, such a model
gives a frozen head almost nothing to learn from: on the bundled MiniLM, 150 steps at batch 16 on SST-2 leave a
classifier head alone, and LoRA r=1 in one layer, at chance (0.509) with the [CLS] pooler, and reach 0.719 and
0.740 on the mean (bench/README.md, "pooling"). ``model.pooling: auto`` (the default) therefore uses the pooling
the model declares, and the transformers head where it declares none.

``mean`` keeps the model's own head class, so every method, the frozen-layer cache and export work unchanged: a
hook on the encoder writes the masked mean of the last hidden states into the first token's place, and a BERT-type
pooler is replaced by one that passes that first token through (no weights: the frozen pooler is what hid the
sentence). Heads that read the first token through trained layers of their own (RoBERTa, XLM-R, MPNet, ELECTRA,
DistilBERT) then read the mean. Padding never enters the mean: the mask the model is called with is kept for it
(its last columns where a prefix method lengthened it).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from autopeft.errors import UserError

Pooling = Literal["cls", "mean"]
POOLING_FILE = "autopeft_pooling.json"  # written beside an adapter trained with a pooling other than the model's own
_CHOICES: tuple[str, ...] = ("auto", "cls", "mean")


class FirstTokenPooler(nn.Module):
    """Stands in for a BERT-type pooler: the first token as it is, which with ``mean`` holds the tokens' mean."""

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return hidden_states[:, 0]


class MeanPooling(nn.Module):
    """Owns the two hooks of mean pooling (a module, so that copying a model copies them with it)."""

    def __init__(self) -> None:
        super().__init__()
        self.mask: torch.Tensor | None = None

    def keep_mask(self, module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        mask = kwargs.get("attention_mask")
        if mask is None and len(args) > 1:  # BertModel(input_ids, attention_mask, ...)
            mask = args[1]
        self.mask = mask

    def mean_into_first(self, module: nn.Module, args: tuple, kwargs: dict[str, Any], output: Any) -> Any:
        hidden = output[0]
        if self.mask is None:
            weights = torch.ones(hidden.shape[:2], dtype=hidden.dtype, device=hidden.device)
        else:  # prefix tuning lengthens the mask by its virtual tokens, not the hidden states
            weights = self.mask[:, -hidden.shape[1]:].to(hidden.dtype)
        weights = weights.unsqueeze(-1)
        mean = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
        pooled = torch.cat([mean.unsqueeze(1).to(hidden.dtype), hidden[:, 1:]], dim=1)
        if isinstance(output, tuple):
            return (pooled, *output[1:])
        output["last_hidden_state"] = pooled
        return output


def applied_pooling(model: nn.Module) -> str:
    """``mean`` if ``apply_pooling`` put mean pooling on this model, else ``cls``."""
    return "mean" if any(isinstance(m, MeanPooling) for m in model.modules()) else "cls"


def apply_pooling(model: nn.Module, pooling: str) -> nn.Module:
    """Make the model's head read ``pooling`` (in place; applying the same pooling twice changes nothing)."""
    if pooling == "cls" or applied_pooling(model) == pooling:
        return model
    if pooling != "mean":
        raise UserError(f"model.pooling: {pooling!r} is not one of {', '.join(_CHOICES)}")
    encoder_model = getattr(model, "base_model", model)
    # The module that runs the blocks: `encoder` in BERT-type models, `transformer` in DistilBERT (whose sentence
    # encoders, msmarco-distilbert and the like, declare mean pooling too)
    stack = next((getattr(encoder_model, name) for name in ("encoder", "transformer")
                  if isinstance(getattr(encoder_model, name, None), nn.Module)), None)
    if stack is None:
        kind = getattr(getattr(model, "config", None), "model_type", type(model).__name__)
        raise UserError(f"model.pooling: mean is not supported for {kind!r} models (no encoder block stack to "
                        "read the tokens from); set model.pooling: cls")
    pooling_module = MeanPooling()
    if isinstance(getattr(encoder_model, "pooler", None), nn.Module) and hasattr(encoder_model.pooler, "dense"):
        encoder_model.pooler = FirstTokenPooler()
    encoder_model.add_module("mean_pooling", pooling_module)
    encoder_model.register_forward_pre_hook(pooling_module.keep_mask, with_kwargs=True)
    stack.register_forward_hook(pooling_module.mean_into_first, with_kwargs=True)
    return model


@lru_cache(maxsize=32)  # asked once per candidate a sampler counts; a hub lookup must not repeat
def declared_pooling(name_or_path: str, revision: str | None = None) -> str | None:
    """The pooling a sentence-transformers model declares: ``mean``, ``cls``, another mode's name, or None.

    A local folder is read directly; a hub name through the hub where one is reachable (offline: None)."""
    def read(relative: str) -> dict | list | None:
        local = Path(name_or_path) / relative
        if Path(name_or_path).is_dir():
            return json.loads(local.read_text()) if local.is_file() else None
        try:
            from huggingface_hub import hf_hub_download

            return json.loads(Path(hf_hub_download(name_or_path, relative, revision=revision)).read_text())
        except Exception:  # no hub, no such file, or no such repository: nothing is declared
            return None

    modules = read("modules.json")
    if not isinstance(modules, list):
        return None
    for module in modules:
        if str(module.get("type", "")).endswith(".Pooling"):
            config = read(f"{module.get('path', '')}/config.json".lstrip("/"))
            if not isinstance(config, dict):
                return None
            modes = [key.removeprefix("pooling_mode_").removesuffix("_token").removesuffix("_tokens")
                     for key, on in config.items() if key.startswith("pooling_mode_") and on is True]
            return modes[0] if len(modes) == 1 else None
    return None


def resolve_pooling(pooling: str, name_or_path: str, task: str, revision: str | None = None) -> Pooling:
    """The pooling a search trains with: ``auto`` is the model's declared pooling when it is mean, else ``cls``."""
    if task in ("causal-lm", "token-classification"):
        return "cls"  # no pooled head: a decoder's and a tagger's read every token; the spec refuses `mean` for them
    if pooling == "auto":
        return "mean" if declared_pooling(name_or_path, revision) == "mean" else "cls"
    return pooling  # type: ignore[return-value]


def write_pooling(folder: Path, pooling: str) -> None:
    """Record beside an adapter the pooling it was trained with (nothing for the model's own head)."""
    if pooling != "cls":
        (folder / POOLING_FILE).write_text(json.dumps({"pooling": pooling}) + "\n")


def read_pooling(folder: str | Path) -> str:
    path = Path(folder) / POOLING_FILE
    return json.loads(path.read_text())["pooling"] if path.is_file() else "cls"
