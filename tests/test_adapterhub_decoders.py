"""AdapterHub prefix tuning on a decoder is prefix tuning in every forward (autopeft/methods/adapterhub_decoders.py).

Before: on transformers 4.57's LLaMA with its default SDPA attention, ``adapters`` 1.3 widened a boolean mask as if
it were additive, so in any padded (or uncached) forward the prefix was masked out: the logits were the base's and
the prefix got no gradient; where the mask was left out (no padding), SDPA's causal mask on the wider key sequence
was misaligned. Here the reference is the base model itself given the prefix as its key/value cache: what prefix
tuning means on a decoder.
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM

from autopeft.methods import get_method
from autopeft.methods.adapterhub_decoders import CACHE_HOOK
from autopeft.search.cost import predict_cost_for
from workers.generation import cache_is_faithful

PREFIX = 3
# every registered method that puts an AdapterHub prefix on the model (unipelt is refused on decoders, below)
PREFIX_METHODS = {
    "prefix": {"prefix": {"prefix_length": PREFIX}},
    "mam": {"mam": {"prefix_length": PREFIX, "bottleneck": 8}},
    "autopeft": {"autopeft": {"serial": 8, "parallel": 8, "prefix_length": PREFIX}},
}


@pytest.fixture(scope="module")
def base():
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=100, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2, pad_token_id=0)).eval()


def _build(base, name: str):
    """The method on a copy of the base; a union's bottleneck adapters zeroed (the identity), so the model is the
    base plus the prefix."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adapted = get_method(name).build(copy.deepcopy(base), {"method": name, **PREFIX_METHODS[name]})
    with torch.no_grad():
        for parameter_name, parameter in adapted.named_parameters():
            if parameter.requires_grad and "prefix_tuning" not in parameter_name:
                parameter.zero_()
    return adapted


def _rows():
    """Two rows, the second shorter: right-padded into one batch as the trial worker pads them."""
    torch.manual_seed(1)
    long, short = torch.randint(3, 100, (7,)), torch.randint(3, 100, (4,))
    ids = torch.zeros(2, 7, dtype=torch.long)
    ids[0], ids[1, :4] = long, short
    mask = (torch.arange(7) < torch.tensor([[7], [4]])).long()
    return [long, short], ids, mask


@torch.no_grad()
def _with_prefix_as_cache(base, adapted, row: torch.Tensor) -> torch.Tensor:
    """The base model's logits for ``row`` after the adapted model's prefix keys and values, given as a cache."""
    pool = adapted.model.prefix_tuning.prefix_tunings["autopeft"]["self_prefix"](1)
    cache = DynamicCache()
    for index, layer in enumerate(adapted.model.layers):
        keys, values = pool[layer.self_attn.prefix_tuning.prefixes["autopeft"]]
        cache.update(keys, values, index)
    return base(input_ids=row[None], past_key_values=cache, position_ids=torch.arange(len(row))[None],
                attention_mask=torch.ones(1, PREFIX + len(row), dtype=torch.long)).logits[0]


@pytest.mark.parametrize("name", list(PREFIX_METHODS))
def test_prefix_is_in_effect_in_training_and_evaluation(base, name):
    adapted = _build(base, name)
    rows, ids, mask = _rows()
    for use_cache in (False, True):  # the worker's uncached evaluation and a forward that builds a cache
        with torch.no_grad():
            logits = adapted(input_ids=ids, attention_mask=mask, use_cache=use_cache).logits
        for i, row in enumerate(rows):
            expected = _with_prefix_as_cache(base, adapted, row)
            assert (expected - base(input_ids=row[None]).logits[0]).abs().max() > 0.05  # the prefix matters
            torch.testing.assert_close(logits[i, :len(row)], expected, atol=1e-4, rtol=1e-4)

    adapted.train()  # a training step: the padded batch reaches every prefix parameter
    labels = ids.masked_fill(mask == 0, -100)
    adapted(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
    prefix = {n: p for n, p in adapted.named_parameters() if "prefix_tuning" in n and p.requires_grad}
    assert prefix and all(p.grad is not None and p.grad.abs().sum() > 0 for p in prefix.values())


@pytest.mark.parametrize("name", ["prefix", "houlsby"])
def test_cached_decoding_is_a_full_pass(base, name):
    """``adapters`` 1.3's layers read the cache as past_key_value, transformers 4.57 passes past_key_values: the
    hand-over makes a cached step equal a full pass, and greedy decoding with the cache equal decoding without."""
    options = PREFIX_METHODS.get(name, {"houlsby": {"bottleneck": 8}})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adapted = get_method(name).build(copy.deepcopy(base), {"method": name, **options}).eval()
    torch.manual_seed(2)
    with torch.no_grad():
        for parameter in adapted.parameters():
            if parameter.requires_grad:  # a trained adapter, not the identity a bottleneck starts as
                parameter.add_(0.05 * torch.randn_like(parameter))
    prompt = np.random.default_rng(0).integers(3, 100, 12)
    assert cache_is_faithful(adapted, prompt, torch.device("cpu"))
    ids = torch.as_tensor(prompt)[None]
    settings = {"max_new_tokens": 8, "do_sample": False, "pad_token_id": 0}
    cached = adapted.generate(ids, use_cache=True, **settings)
    assert torch.equal(cached, adapted.generate(ids, use_cache=False, **settings))

    for module in adapted.modules():  # without the hand-over the library drops the cache
        if getattr(module, CACHE_HOOK, None) is not None:
            getattr(module, CACHE_HOOK).remove()
    assert not cache_is_faithful(adapted, prompt, torch.device("cpu"))


def test_saved_prefix_reloads_on_a_decoder(base, tmp_path):
    method = get_method("prefix")
    adapted = _build(base, "prefix")
    method.save(adapted, tmp_path, {"method": "prefix", **PREFIX_METHODS["prefix"]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = method.load(copy.deepcopy(base), tmp_path).eval()
    _, ids, mask = _rows()
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=ids, attention_mask=mask).logits,
                                   adapted(input_ids=ids, attention_mask=mask).logits)
    code = method.loading_code(tmp_path)  # what the export's README tells an `adapters`-only user
    assert 'base.set_attn_implementation("eager")' in code and "use_cache=False" in code


def test_unipelt_is_refused_on_a_decoder_before_training(base):
    """UniPELT's gates average over the whole sequence: on a causal LM each position would see the tokens after it.
    The pre-training check (a meta-device build) refuses it with that reason."""
    config = {"method": "unipelt", "unipelt": {"r": 4, "prefix_length": PREFIX, "bottleneck": 8}}
    with pytest.raises(ValueError, match="every position would see the tokens after it"):
        predict_cost_for(base.config, "causal-lm", config)
    with pytest.raises(ValueError, match="unipelt cannot apply to a text generator"):
        get_method("unipelt").build(copy.deepcopy(base), config)
    assert predict_cost_for(base.config, "sequence-classification", config)["trainable_params"] > 0
