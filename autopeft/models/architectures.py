"""Where the parts of a transformer live, per architecture.

Search spaces speak of neutral roles (query, key, value, attention_output, ffn_up, ffn_down) and layer indices;
this module turns them into the exact module names of a given model, so one space works on BERT and LLaMA alike
and per-layer placement never depends on a library's suffix matching ("output.dense" is both BERT's FFN-down and
the tail of its attention output: only full names are unambiguous).
"""

from __future__ import annotations

from functools import lru_cache

from torch import nn

from autopeft.errors import UserError

ROLES = ("query", "key", "value", "attention_output", "ffn_up", "ffn_down")

_BERT_LIKE = {
    "query": "attention.self.query",
    "key": "attention.self.key",
    "value": "attention.self.value",
    "attention_output": "attention.output.dense",
    "ffn_up": "intermediate.dense",
    "ffn_down": "output.dense",
}
_LLAMA_LIKE = {
    "query": "self_attn.q_proj",
    "key": "self_attn.k_proj",
    "value": "self_attn.v_proj",
    "attention_output": "self_attn.o_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}

_FUSED_QKV_BLOOM_LIKE = {  # one fused query_key_value, as in GPT-2: choosing any of the three adapts all three
    "query": "self_attention.query_key_value",
    "key": "self_attention.query_key_value",
    "value": "self_attention.query_key_value",
    "attention_output": "self_attention.dense",
    "ffn_up": "mlp.dense_h_to_4h",
    "ffn_down": "mlp.dense_4h_to_h",
}

ROLE_MODULES: dict[str, dict[str, str]] = {
    "bert": _BERT_LIKE,
    "roberta": _BERT_LIKE,
    "xlm-roberta": _BERT_LIKE,
    "electra": _BERT_LIKE,
    "llama": _LLAMA_LIKE,
    "mistral": _LLAMA_LIKE,
    "qwen2": _LLAMA_LIKE,
    "qwen3": _LLAMA_LIKE,
    "gemma": _LLAMA_LIKE,
    "gemma2": _LLAMA_LIKE,
    "gemma3_text": _LLAMA_LIKE,
    "gpt2": {  # query, key and value are one fused Conv1D: choosing any of them adapts all three
        "query": "attn.c_attn",
        "key": "attn.c_attn",
        "value": "attn.c_attn",
        "attention_output": "attn.c_proj",
        "ffn_up": "mlp.c_fc",
        "ffn_down": "mlp.c_proj",
    },
    "bloom": _FUSED_QKV_BLOOM_LIKE,
    "falcon": _FUSED_QKV_BLOOM_LIKE,
    "gpt_neox": {  # Pythia, GPT-NeoX: fused query_key_value as in BLOOM, under `attention`
        "query": "attention.query_key_value",
        "key": "attention.query_key_value",
        "value": "attention.query_key_value",
        "attention_output": "attention.dense",
        "ffn_up": "mlp.dense_h_to_4h",
        "ffn_down": "mlp.dense_4h_to_h",
    },
    "gptj": {
        "query": "attn.q_proj",
        "key": "attn.k_proj",
        "value": "attn.v_proj",
        "attention_output": "attn.out_proj",
        "ffn_up": "mlp.fc_in",
        "ffn_down": "mlp.fc_out",
    },
    "opt": {
        "query": "self_attn.q_proj",
        "key": "self_attn.k_proj",
        "value": "self_attn.v_proj",
        "attention_output": "self_attn.out_proj",
        "ffn_up": "fc1",
        "ffn_down": "fc2",
    },
    "phi": {
        "query": "self_attn.q_proj",
        "key": "self_attn.k_proj",
        "value": "self_attn.v_proj",
        "attention_output": "self_attn.dense",
        "ffn_up": "mlp.fc1",
        "ffn_down": "mlp.fc2",
    },
    "phi3": {  # fused qkv_proj, and gate and up fused into gate_up_proj
        "query": "self_attn.qkv_proj",
        "key": "self_attn.qkv_proj",
        "value": "self_attn.qkv_proj",
        "attention_output": "self_attn.o_proj",
        "ffn_up": "mlp.gate_up_proj",
        "ffn_down": "mlp.down_proj",
    },
    "distilbert": {
        "query": "attention.q_lin",
        "key": "attention.k_lin",
        "value": "attention.v_lin",
        "attention_output": "attention.out_lin",
        "ffn_up": "ffn.lin1",
        "ffn_down": "ffn.lin2",
    },
    "mpnet": {  # all-mpnet-base-v2 and the other MPNet sentence encoders
        "query": "attention.attn.q",
        "key": "attention.attn.k",
        "value": "attention.attn.v",
        "attention_output": "attention.attn.o",
        "ffn_up": "intermediate.dense",
        "ffn_down": "output.dense",
    },
    "deberta-v2": {
        "query": "attention.self.query_proj",
        "key": "attention.self.key_proj",
        "value": "attention.self.value_proj",
        "attention_output": "attention.output.dense",
        "ffn_up": "intermediate.dense",
        "ffn_down": "output.dense",
    },
    "modernbert": {  # fused Wqkv
        "query": "attn.Wqkv",
        "key": "attn.Wqkv",
        "value": "attn.Wqkv",
        "attention_output": "attn.Wo",
        "ffn_up": "mlp.Wi",
        "ffn_down": "mlp.Wo",
    },
}


def is_causal_lm(model: nn.Module) -> bool:
    """Whether the model is a language model (a causal LM's class), not a classifier. Not by the class name's ending:
    GPT-2's, GPT-J's and others' are ``...LMHeadModel``; transformers' own table of causal-LM classes decides, and
    the name's ending for classes outside it (remote code)."""
    name = type(model).__name__
    return name.endswith("ForCausalLM") or name in _causal_lm_class_names()


@lru_cache(maxsize=1)
def _causal_lm_class_names() -> frozenset[str]:
    """Built once: every build asks (the head lookup), the sampler's meta-device counts among them."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    return frozenset(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values())


def supported_model_types() -> str:
    return ", ".join(sorted(ROLE_MODULES))


def role_modules(model: nn.Module) -> dict[str, str]:
    """The model's role-to-module map: its own type's, or for a type without one, the first known map whose every
    module is a linear layer in the model's first transformer block, else each role's first known name there.

    Most new decoders name their blocks as LLaMA does (SmolLM3, OLMo, Granite, StableLM ...) and most encoders as
    BERT does, so a model whose type this module has never heard of still gets LoRA, IA3 and the rest, placed on the
    modules its layout says they are; a layout no map fits is refused with the block's own module names."""
    model_type = model.config.model_type
    if model_type in ROLE_MODULES:
        return ROLE_MODULES[model_type]
    count = num_layers(model.config)
    block = f"{layer_container(model, count)}.0."
    linear = {name.removeprefix(block) for name, module in model.named_modules()
              if name.startswith(block) and _is_linear(module)}
    for mapping in ROLE_MODULES.values():
        if set(mapping.values()) <= linear:
            return mapping
    # No one layout fits: role by role, the first known name that the block has (StarCoder2 names its attention
    # as LLaMA does and its FFN as GPT-2 does).
    by_role = {role: next((m[role] for m in ROLE_MODULES.values() if m[role] in linear), None) for role in ROLES}
    if all(by_role.values()):
        return by_role  # type: ignore[return-value]
    raise UserError(f"model type {model_type!r}: no known module layout fits its blocks (linear modules in a "
                    f"block: {', '.join(sorted(linear)) or 'none'}); known types: {supported_model_types()}. Use a "
                    "method that needs no module roles (prefix, prompt, bitfit, ln_tuning, partial, full)")


def _is_linear(module: nn.Module) -> bool:
    """A weight-carrying projection: torch's Linear, or GPT-2-style Conv1D (a Linear with its weight transposed)."""
    return isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D"


def num_layers(model_config) -> int:
    for attribute in ("num_hidden_layers", "n_layer", "num_layers"):
        if hasattr(model_config, attribute):
            return int(getattr(model_config, attribute))
    raise UserError(f"cannot tell how many layers model type {model_config.model_type!r} has")


def layer_container(model: nn.Module, count: int) -> str:
    """The dotted name of the ModuleList that holds the transformer blocks."""
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == count:
            return name
    raise UserError(f"no list of {count} transformer layers found in {type(model).__name__} (a model that shares "
                    "one block across its depth, as ALBERT does, has no layers to place a method on); use prompt "
                    "tuning or full fine-tuning")


def resolve_targets(model: nn.Module, roles: list[str], layers: list[int]) -> list[str]:
    """Full module names for each (layer, role); errors name the role or layer that does not exist."""
    mapping = role_modules(model)
    unknown = [r for r in roles if r not in mapping]
    if unknown:
        raise UserError(f"unknown module role(s) {unknown}; use: {', '.join(mapping)}")
    count = num_layers(model.config)
    bad_layers = [i for i in layers if not 0 <= i < count]
    if bad_layers:
        raise UserError(f"layer index(es) {bad_layers} out of range: the model has {count} layers")
    prefix = layer_container(model, count)
    # dict.fromkeys de-duplicates fused modules (GPT-2's c_attn serves query, key and value) and keeps order
    names = list(dict.fromkeys(f"{prefix}.{i}.{mapping[role]}" for i in sorted(layers) for role in roles))
    existing = {name for name, _ in model.named_modules()}
    missing = [n for n in names if n not in existing]
    if missing:
        raise UserError(f"modules not found in the model: {missing[:3]}")
    return names
