"""A decoder's token loss from its deferred output head, a chunk of tokens at a time (workers/head_loss.py): the
plain loss and its gradients, in fp32 and under bf16 autocast, with no chunk's logits larger than the chunk; the
model's own loss and gradients on decoder families that name and place their head otherwise (GPT-2, OPT, BLOOM,
GPT-NeoX, Falcon) and where a forward cannot cut the logits; and only for a head whose logits the model hands on
unchanged (not Gemma 2's soft-capped ones, not a head that trains or carries a LoRA, not a model the check cannot
call)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import transformers as hf
from peft import LoraConfig, get_peft_model
from torch import nn
from torch.nn import functional
from transformers import Gemma2Config, Gemma2ForCausalLM, LlamaConfig, LlamaForCausalLM

import workers.head_loss
from workers.head_loss import DeferredHead, chunked_head_loss, deferred
from workers.response_loss import HeadSharing

CPU = torch.device("cpu")


def _plain_loss(hidden: torch.Tensor, head: nn.Linear, labels: torch.Tensor) -> torch.Tensor:
    logits = head(hidden).float()
    return functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("bias", [False, True])
def test_the_chunked_loss_is_the_plain_loss_with_its_gradients(monkeypatch, precision, bias):
    torch.manual_seed(0)
    head = nn.Linear(24, 50, bias=bias).requires_grad_(False)
    # 7 tokens a chunk: the 3 x 11 tokens span five chunks, one of them (the first rows of labels) wholly unscored
    monkeypatch.setattr(workers.head_loss, "CHUNK_LOGITS_BYTES", 4 * 50 * 7)
    labels = torch.randint(0, 50, (3, 11))
    labels[0, :9] = -100
    labels[2, 4] = -100
    start = torch.randn(3, 11, 24)
    results = []
    for loss_of in (_plain_loss, chunked_head_loss):
        hidden = start.clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = loss_of(hidden, head, labels)
        (2.5 * loss).backward()  # a factor from after the loss reaches the hidden states too
        results.append((loss.detach(), hidden.grad))
    (plain, plain_grad), (chunked, chunked_grad) = results
    assert chunked.dtype == torch.float32
    assert torch.allclose(chunked, plain, rtol=1e-6, atol=1e-6)
    if precision == "fp32":
        assert torch.allclose(chunked_grad, plain_grad, rtol=1e-5, atol=1e-7)
    else:  # the same products in bf16; the factor after the loss is applied after the rounding, not before it
        assert float((chunked_grad - plain_grad).norm() / plain_grad.norm()) < 2**-7
    assert float(plain_grad[0, :9].abs().max()) == float(chunked_grad[0, :9].abs().max()) == 0.0


def test_no_chunk_makes_more_logits_than_its_share(monkeypatch):
    made = []
    linear = functional.linear

    def recorded(hidden, weight, bias=None):
        out = linear(hidden, weight, bias)
        made.append(out.shape[0])
        return out

    monkeypatch.setattr(workers.head_loss.functional, "linear", recorded)
    monkeypatch.setattr(workers.head_loss, "CHUNK_LOGITS_BYTES", 4 * 50 * 16)
    head = nn.Linear(8, 50, bias=False).requires_grad_(False)
    hidden = torch.randn(4, 30, 8, requires_grad=True)
    chunked_head_loss(hidden, head, torch.randint(0, 50, (4, 30))).backward()
    assert made and max(made) == 16 and sum(made) == 120


def _llama() -> LlamaForCausalLM:
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=90, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2, pad_token_id=0))


SAMPLE = np.arange(3, 20)


def test_a_plain_frozen_head_is_deferred_and_the_model_hands_back_its_hidden_states():
    model = get_peft_model(_llama(), LoraConfig(r=4, target_modules=["q_proj", "v_proj"])).train()
    head = DeferredHead().head_of(model, SAMPLE, CPU)
    assert head is model.base_model.model.lm_head
    assert model.training  # the check leaves the model as it found it
    ids = torch.as_tensor(SAMPLE)[None]
    with deferred(head):
        hidden = model(input_ids=ids).logits
    assert hidden.shape == (1, len(SAMPLE), 32)
    assert model(input_ids=ids).logits.shape == (1, len(SAMPLE), 90)  # the head is itself again after


def test_heads_whose_logits_are_not_the_plain_product_keep_the_models_own_loss():
    gemma = Gemma2ForCausalLM(Gemma2Config(vocab_size=90, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                           num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                                           final_logit_softcapping=0.5, pad_token_id=0))
    gemma.requires_grad_(False)
    assert DeferredHead().head_of(gemma, SAMPLE, CPU) is None  # soft-capped logits
    trainable = _llama()  # a head that trains: its gradient is not made here
    assert DeferredHead().head_of(trainable, SAMPLE, CPU) is None
    adapted = get_peft_model(_llama(), LoraConfig(r=4, target_modules=["q_proj", "lm_head"]))
    assert DeferredHead().head_of(adapted, SAMPLE, CPU) is None  # a LoRA on the head: not a plain nn.Linear
    frozen = copy.deepcopy(trainable).requires_grad_(False)
    assert DeferredHead().head_of(frozen, SAMPLE, CPU) is frozen.lm_head


TINY = dict(vocab_size=90, hidden_size=32, num_attention_heads=4, pad_token_id=0)
DECODERS = {  # other names and places for the head: GPT-2's and BLOOM's tied ones, GPT-NeoX's embed_out
    "gpt2": lambda: hf.GPT2LMHeadModel(hf.GPT2Config(vocab_size=90, n_embd=32, n_layer=2, n_head=4)),
    "opt": lambda: hf.OPTForCausalLM(hf.OPTConfig(**TINY, num_hidden_layers=2, ffn_dim=64, word_embed_proj_dim=32)),
    "bloom": lambda: hf.BloomForCausalLM(hf.BloomConfig(vocab_size=90, hidden_size=32, n_layer=2, n_head=4)),
    "gpt_neox": lambda: hf.GPTNeoXForCausalLM(hf.GPTNeoXConfig(**TINY, num_hidden_layers=2, intermediate_size=64)),
    "falcon": lambda: hf.FalconForCausalLM(hf.FalconConfig(**TINY, num_hidden_layers=2)),
}


@pytest.mark.parametrize("family", list(DECODERS))
def test_other_decoder_families_get_their_own_loss_and_gradients_from_the_deferred_head(family):
    from workers.response_loss import response_loss

    torch.manual_seed(0)
    model = DECODERS[family]().eval().requires_grad_(False)
    ids = torch.randint(3, 90, (3, 12))
    labels = ids.clone()
    labels[:, :5] = -100
    head = DeferredHead().head_of(model, ids[0].numpy(), CPU)
    assert head is model.get_output_embeddings()
    embedded = model.get_input_embeddings()(ids).detach().requires_grad_(True)  # a gradient to compare
    batch = {"inputs_embeds": embedded, "attention_mask": torch.ones_like(ids), "labels": labels}
    own = model(**batch).loss
    (expected,) = torch.autograd.grad(own, embedded)
    chunked = response_loss(model, lambda rows, **options: model(**rows, **options), batch, share_head=False,
                            output_head=head)
    (got,) = torch.autograd.grad(chunked, embedded)
    assert torch.allclose(chunked, own, atol=1e-5)
    assert torch.allclose(got, expected, atol=1e-6, rtol=1e-4) and float(expected.abs().max()) > 0


class _WithoutLogitsToKeep(LlamaForCausalLM):
    """A model's own code whose forward makes logits at every position (no ``logits_to_keep``)."""

    def forward(self, input_ids=None, attention_mask=None, labels=None, inputs_embeds=None):
        return super().forward(input_ids=input_ids, attention_mask=attention_mask, labels=labels,
                               inputs_embeds=inputs_embeds)


def test_a_forward_without_logits_to_keep_still_gets_the_chunked_loss(monkeypatch):
    from workers.response_loss import response_loss

    torch.manual_seed(0)
    model = _WithoutLogitsToKeep(LlamaConfig(vocab_size=90, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                             num_attention_heads=4, num_key_value_heads=2, pad_token_id=0))
    model.eval().requires_grad_(False)
    made = []
    linear = functional.linear
    monkeypatch.setattr(workers.head_loss.functional, "linear",  # the head's products only, not the layers'
                        lambda *args: (args[1] is model.lm_head.weight and made.append(args[0].shape[0]))
                        or linear(*args))
    ids = torch.randint(3, 90, (3, 12))
    labels = ids.clone()
    labels[:, :5] = -100
    embedded = model.get_input_embeddings()(ids).detach().requires_grad_(True)
    batch = {"inputs_embeds": embedded, "attention_mask": torch.ones_like(ids), "labels": labels}
    head = DeferredHead().head_of(model, ids[0].numpy(), CPU)
    made.clear()
    chunked = response_loss(model, lambda rows, **options: model(**rows, **options), batch, share_head=False,
                            output_head=head)
    assert head is model.lm_head and made == [3 * 11]  # the chunked loss ran, over every predicted position
    (got,) = torch.autograd.grad(chunked, embedded)
    own = model(**batch).loss
    (expected,) = torch.autograd.grad(own, embedded)
    assert torch.allclose(chunked, own, atol=1e-5) and torch.allclose(got, expected, atol=1e-6, rtol=1e-4)


class _AskingForItsMask(LlamaForCausalLM):
    """A model's own code that refuses a call without its attention mask."""

    def forward(self, input_ids=None, attention_mask=None, **options):
        if attention_mask is None:
            raise ValueError("attention_mask is required")
        return super().forward(input_ids=input_ids, attention_mask=attention_mask, **options)


def test_a_model_the_checks_cannot_call_keeps_its_own_loss_and_trusts_no_cache():
    torch.manual_seed(0)
    model = _AskingForItsMask(LlamaConfig(vocab_size=90, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                          num_attention_heads=4, num_key_value_heads=2, pad_token_id=0))
    model.requires_grad_(False).train()
    assert DeferredHead().head_of(model, SAMPLE, CPU) is None
    assert model.training and "forward" not in vars(model.lm_head)  # left as it was found
    sharing = HeadSharing()  # nor is its key/value cache trusted: the template is not shared, answers decode whole
    assert not sharing.faithful(model, SAMPLE, CPU) and not sharing.allowed(model, SAMPLE, CPU) and model.training
