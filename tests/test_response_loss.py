"""A decoder's training loss computed with logits only where responses are scored and the rows' shared template
run once (``CausalLmRunner.train_loss``, workers/response_loss.py) is the model's own loss, with the same gradients,
for every kind of method the adapter family puts on a decoder: weights changed in place (LoRA, DoRA, IA3),
AdapterHub's bottleneck adapters and prefix, and peft's prompt tuning (virtual tokens in front of the sequence) and
prefix tuning (a cache in front of it). The template is shared exactly where that is the same computation, and
the loss is computed from the deferred output head in chunks (workers/head_loss.py)."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from autopeft.methods import get_method
from autopeft.tasks.data import TaskData, TokenizedSplit
from workers.tasks import CausalLmRunner

CONFIGS = {
    "lora": {"method": "lora", "lora": {"r": 4, "target_modules": ["query", "value"]}},
    "dora": {"method": "dora", "dora": {"r": 4, "target_modules": ["query", "value"]}},
    "ia3": {"method": "ia3"},
    "pfeiffer": {"method": "pfeiffer", "pfeiffer": {"bottleneck": 8}},
    "prefix": {"method": "prefix", "prefix": {"prefix_length": 3}},
    "prompt": {"method": "prompt", "prompt": {"num_virtual_tokens": 3}},
}
# methods that put tokens or a cache of their own in front of the sequence: the template is not shared
OWN_FRONT = {"prefix", "prompt"}
TEMPLATE = 10


class _Tokenizer:
    pad_token_id, eos_token_id = 0, 2

    def decode(self, ids, skip_special_tokens: bool = True) -> str:  # the evaluation reads answers as text
        return " ".join(str(i) for i in ids)


def _records() -> TokenizedSplit:
    """Eight prompt + response records (the fewest rows that share a template) of different lengths, prompts (a
    shared template, then each its own tokens) masked out of the labels."""
    rng = np.random.default_rng(0)
    template = rng.integers(3, 100, TEMPLATE)
    ids, labels = [], []
    for prompt, response in ((9, 3), (5, 6), (12, 1), (7, 2), (6, 4), (11, 2), (8, 3), (10, 1)):
        row = np.concatenate([template, rng.integers(3, 100, prompt + response)]).astype(np.int32)
        prompt += TEMPLATE
        ids.append(row)
        labels.append(np.concatenate([np.full(prompt, -100), row[prompt:]]).astype(np.int64))
    return TokenizedSplit(input_ids=ids, token_type_ids=None, labels=None, token_labels=labels,
                          prompts=[row[:len(row) - int((lab != -100).sum())] for row, lab in zip(ids, labels)],
                          answers=["x"] * len(ids))


@pytest.fixture(scope="module")
def base():
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=100, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2, pad_token_id=0)).eval()


@pytest.mark.parametrize("name", list(CONFIGS))
def test_response_only_logits_give_the_models_loss_and_gradients(base, name):
    records = _records()
    runner = CausalLmRunner(TaskData(train=records, eval=records, label_names=[], task="causal-lm"), _Tokenizer(),
                            torch.device("cpu"), max_new_tokens=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = get_method(name).build(copy.deepcopy(base), {**CONFIGS[name], "learning_rate": 1e-3})
    model.eval()  # no dropout: the reference and the shared head would draw different masks
    with torch.no_grad():  # a start away from the identity, so every trained parameter gets a gradient
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.add_(0.05 * torch.randn_like(parameter))
    batch = runner.train_batch(np.arange(8))
    assert int((batch["labels"] != -100).any(dim=0).nonzero()[0]) > 1  # some prompt logits are really left out
    asked, cached = {}, []
    model.register_forward_pre_hook(lambda module, args, kwargs: cached.append(kwargs.get("past_key_values")),
                                    with_kwargs=True)

    def forward(rows, **options):
        asked.update(options)
        return model(**rows, **options)

    trained = [p for p in model.parameters() if p.requires_grad]
    reference = model(**batch).loss
    expected = torch.autograd.grad(reference, trained)
    assert runner.head_sharing.allowed(model, records.input_ids[0], torch.device("cpu")) == (name not in OWN_FRONT)
    runner.check_before_lowering(model, batch)
    # every method here leaves the output head frozen and plain: the loss is computed from the hidden states
    assert runner.deferred_head.head_of(model, records.input_ids[0], torch.device("cpu")) is not None
    cached.clear()
    loss = runner.train_loss(model, forward, batch)
    got = torch.autograd.grad(loss, trained)
    if name in OWN_FRONT:  # one plain forward, logits cut
        assert 0 < asked["logits_to_keep"] < batch["input_ids"].shape[1] and cached == [None]
    else:  # the template once, then the rows after it from its cache
        assert len(cached) == 2 and cached[0] is None and cached[1] is not None and not asked
    assert torch.allclose(loss, reference, atol=1e-5)
    for mine, theirs in zip(got, expected):
        assert torch.allclose(mine, theirs, atol=1e-5, rtol=1e-4)
    assert any(float(g.abs().max()) > 0 for g in got)
    if name not in OWN_FRONT:  # from a later layer (the frozen-prefix path), or with few rows, only logits are cut
        asked.clear()
        runner.train_loss(model, forward, batch, whole_model=False)
        assert 0 < asked["logits_to_keep"] < batch["input_ids"].shape[1]
        cached.clear()
        runner.train_loss(model, forward, runner.train_batch(np.arange(4)))
        assert cached == [None]


def test_the_shared_head_stops_where_rows_differ_or_a_prediction_starts():
    from workers.response_loss import shared_head_length

    ids = torch.tensor([[5, 6, 7, 8, 9], [5, 6, 7, 1, 0], [5, 6, 7, 8, 0]])
    mask = (ids != 0).long()
    assert shared_head_length({"input_ids": ids, "attention_mask": mask}, limit=10) == 3
    assert shared_head_length({"input_ids": ids, "attention_mask": mask}, limit=2) == 2
    same = torch.tensor([[5, 6, 0], [5, 6, 0]])
    assert shared_head_length({"input_ids": same, "attention_mask": torch.tensor([[1, 1, 0], [1, 1, 0]])}, 9) == 2


def test_the_template_is_shared_under_bf16_autocast(base):
    """The check that the cache is read runs in fp32: under bf16 the full pass and the cached step round
    differently, which is no reason to stop sharing (trials on a bf16 CPU or GPU train under autocast)."""
    from workers.precision import autocast

    records = _records()
    runner = CausalLmRunner(TaskData(train=records, eval=records, label_names=[], task="causal-lm"), _Tokenizer(),
                            torch.device("cpu"), max_new_tokens=4)
    model = get_method("lora").build(copy.deepcopy(base), {**CONFIGS["lora"], "learning_rate": 1e-3}).train()
    with autocast("bf16", torch.device("cpu")):
        assert runner.head_sharing.allowed(model, records.input_ids[0], torch.device("cpu"))
    assert model.training  # the check leaves the model as it found it


def test_the_evaluation_reuses_the_training_checks_cache_verdict(base, monkeypatch):
    """Whether a model's layers read the key/value cache is checked once per trial model (three small forward
    passes, 0.23 s on SmolLM2-135M): training asks first, the evaluation takes its answer. A fresh model is checked
    again."""
    import workers.generation
    import workers.response_loss
    import workers.tasks

    calls = []
    real = workers.generation.cache_is_faithful

    def counted(model, *args):
        calls.append(model)
        return real(model, *args)

    for module in (workers.generation, workers.response_loss, workers.tasks):  # wherever a caller finds it
        monkeypatch.setattr(module, "cache_is_faithful", counted, raising=False)
    records = _records()
    runner = CausalLmRunner(TaskData(train=records, eval=records, label_names=[], task="causal-lm"), _Tokenizer(),
                            torch.device("cpu"), max_new_tokens=4)
    model = get_method("lora").build(copy.deepcopy(base), {**CONFIGS["lora"], "learning_rate": 1e-3}).train()
    assert runner.head_sharing.allowed(model, records.input_ids[0], torch.device("cpu"))
    evaluation = runner.evaluate(model.eval(), batch_size=8)
    assert calls == [model] and evaluation.metrics["eval_loss"] > 0
    other = get_method("lora").build(copy.deepcopy(base), {**CONFIGS["lora"], "learning_rate": 1e-3}).eval()
    runner.evaluate(other, batch_size=8)
    assert calls == [model, other]


def test_a_model_that_refuses_a_bare_call_trains_and_is_evaluated_on_the_plain_paths():
    """A model's own code that wants its attention mask on every call cannot take the checks' bare calls: it keeps
    its own loss, its cache is not trusted, and the trial trains and is evaluated all the same."""
    from tests.test_head_loss import _AskingForItsMask

    records = _records()
    runner = CausalLmRunner(TaskData(train=records, eval=records, label_names=[], task="causal-lm"), _Tokenizer(),
                            torch.device("cpu"), max_new_tokens=4)
    torch.manual_seed(0)
    base = _AskingForItsMask(LlamaConfig(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2, pad_token_id=0))
    model = get_method("lora").build(base, {**CONFIGS["lora"], "learning_rate": 1e-3})
    batch = runner.train_batch(np.arange(8))
    runner.check_before_lowering(model, batch)
    loss = runner.train_loss(model, lambda rows, **options: model(**rows, **options), batch)
    loss.backward()
    evaluation = runner.evaluate(model.eval(), batch_size=8)
    assert float(loss) > 0 and abs(evaluation.metrics["eval_loss"] - float(loss)) < 1e-4
