"""What AdapterHub ``adapters`` 1.3 needs on transformers 4.57 decoders (LLaMA, Mistral, GPT-2), set on each model
it builds or loads; nothing in either library is patched.

Prefix tuning and the attention mask. ``adapters`` prepends the prefix's keys and values inside attention and widens
the attention mask to match, assuming an additive float mask (0 = attend). Decoders that follow transformers'
AttentionInterface build their masks in ``masking_utils``, by attention implementation:

- ``eager``: an additive float mask, always built: the prefix is attended by every position. Correct.
- ``sdpa`` (the default): a boolean mask (True = attend), which the prefix code "inverts" into False, so every
  position ignores the prefix: the model is the base model, and the prefix gets no gradient. Where no position
  is padded the mask is left out instead (``is_causal``), and SDPA's causal mask on the wider key sequence then
  lines up with the prefix rather than the tokens: each position sees the prefix and all but its own last few
  tokens. Either way the prefix trained and evaluated is not prefix tuning.

So a decoder with a prefix runs eager attention (:func:`prepare`). Encoders (BERT, RoBERTa) build their own float
masks in ``adapters``' attention classes and are left as they are.

The key/value cache. ``adapters`` 1.3's decoder layers read the cache as ``past_key_value``; transformers 4.57
passes ``past_key_values``, which the layers take in ``**kwargs`` and never update, so cached decoding goes on
from the last token alone. A forward pre-hook on those modules hands the cache over under the name they read.
``workers.generation.cache_is_faithful`` still checks every evaluated model, so a release that breaks this again
decodes without the cache rather than wrongly.
"""

from __future__ import annotations

import functools
import inspect
import json
from pathlib import Path
from typing import Any

from torch import nn

CACHE_HOOK = "_autopeft_cache_name_hook"  # attribute holding the hook's handle


def has_prefix(model: nn.Module) -> bool:
    """Whether an AdapterHub prefix (prefix tuning alone or in a union) is on the model."""
    return any(type(m).__name__ == "PrefixTuningPool" and len(m.prefix_tunings) for m in model.modules())


def builds_masks_by_attention_interface(model: nn.Module) -> bool:
    """Whether the model's attention and masks follow transformers' AttentionInterface (LLaMA, Mistral, GPT-2 in
    transformers 4.57; not BERT-type encoders, whose ``adapters`` attention builds its own masks)."""
    return bool(getattr(model, "_supports_attention_backend", False))


def _hand_cache_over(module: nn.Module, args: tuple, kwargs: dict[str, Any]):
    if kwargs.get("past_key_values") is not None and kwargs.get("past_key_value") is None:
        kwargs = dict(kwargs)
        kwargs["past_key_value"] = kwargs.pop("past_key_values")
        return args, kwargs
    return None


@functools.cache
def _reads_old_cache_name(cls: type) -> bool:
    """Per class, not per module: a build (meta-device cost predictions included) meets hundreds of modules."""
    if not cls.__module__.startswith("adapters."):
        return False
    parameters = inspect.signature(cls.forward).parameters
    return "past_key_value" in parameters and "past_key_values" not in parameters


def pass_cache_under_old_name(model: nn.Module) -> int:
    """Hook every ``adapters`` module that reads ``past_key_value`` so it receives the cache transformers passes
    as ``past_key_values``; returns how many modules were hooked (idempotent)."""
    hooked = 0
    for module in model.modules():
        if _reads_old_cache_name(type(module)) and getattr(module, CACHE_HOOK, None) is None:
            # the handle stays on the module: ``getattr(module, CACHE_HOOK).remove()`` undoes it
            setattr(module, CACHE_HOOK, module.register_forward_pre_hook(_hand_cache_over, with_kwargs=True))
            hooked += 1
    return hooked


def prepare(model: nn.Module) -> nn.Module:
    """After ``adapters.init`` and the adapter is on: eager attention where a prefix meets a decoder's masks, and
    the cache handed to the layers under the name they read."""
    if builds_masks_by_attention_interface(model):
        if has_prefix(model) and model.config._attn_implementation != "eager":
            model.set_attn_implementation("eager")
        pass_cache_under_old_name(model)
    return model


def _architectures(config: Any) -> set[str]:
    if isinstance(config, dict):
        found = {config["architecture"]} if isinstance(config.get("architecture"), str) else set()
        return found.union(*(_architectures(value) for value in config.values()))
    if isinstance(config, list):
        return set().union(*(_architectures(value) for value in config))
    return set()


def saved_on_decoder(directory: Path) -> tuple[bool, bool]:
    """For a folder ``save_adapter`` wrote: (made on a decoder whose masks follow the AttentionInterface, holds a
    prefix), read from its adapter_config.json."""
    import transformers

    path = directory / "adapter_config.json"
    if not path.is_file():
        return False, False
    saved = json.loads(path.read_text())
    decoder = bool(getattr(getattr(transformers, str(saved.get("model_class")), None),
                           "_supports_attention_backend", False))
    return decoder, "prefix_tuning" in _architectures(saved.get("config"))


def loading_lines(directory: Path) -> str:
    """What a user loading the folder with ``adapters`` alone must add on a decoder (see the module docstring)."""
    decoder, prefix = saved_on_decoder(directory)
    lines = ""
    if decoder and prefix:
        lines += "base.set_attn_implementation(\"eager\")  # AdapterHub's prefix needs eager attention's masks\n"
    if decoder:
        lines += ("# adapters 1.3 under transformers 4.57 drops a decoder's key/value cache: generate with "
                  "use_cache=False,\n# or load with autopeft.load_adapter(base, FOLDER), which hands the cache over\n")
    return lines
