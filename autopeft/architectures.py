"""Where the parts of a transformer live, per architecture.

Search spaces speak of neutral roles (query, key, value, attention_output, ffn_up, ffn_down) and layer indices;
this module turns them into the exact module names of a given model, so one space works on BERT and LLaMA alike
and per-layer placement never depends on a library's suffix matching ("output.dense" is both BERT's FFN-down and
the tail of its attention output: only full names are unambiguous).
"""

from __future__ import annotations

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

ROLE_MODULES: dict[str, dict[str, str]] = {
    "bert": _BERT_LIKE,
    "roberta": _BERT_LIKE,
    "xlm-roberta": _BERT_LIKE,
    "electra": _BERT_LIKE,
    "llama": _LLAMA_LIKE,
    "mistral": _LLAMA_LIKE,
    "qwen2": _LLAMA_LIKE,
    "gpt2": {  # query, key and value are one fused Conv1D: choosing any of them adapts all three
        "query": "attn.c_attn",
        "key": "attn.c_attn",
        "value": "attn.c_attn",
        "attention_output": "attn.c_proj",
        "ffn_up": "mlp.c_fc",
        "ffn_down": "mlp.c_proj",
    },
    "bloom": {  # fused query_key_value, as in GPT-2
        "query": "self_attention.query_key_value",
        "key": "self_attention.query_key_value",
        "value": "self_attention.query_key_value",
        "attention_output": "self_attention.dense",
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
}


def supported_model_types() -> str:
    return ", ".join(sorted(ROLE_MODULES))


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
    raise UserError(f"no list of {count} transformer layers found in {type(model).__name__}")


def resolve_targets(model: nn.Module, roles: list[str], layers: list[int]) -> list[str]:
    """Full module names for each (layer, role); errors name the role or layer that does not exist."""
    model_type = model.config.model_type
    if model_type not in ROLE_MODULES:
        raise UserError(f"model type {model_type!r} has no module map; supported: {supported_model_types()}")
    mapping = ROLE_MODULES[model_type]
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
