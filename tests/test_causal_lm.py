"""Instruction tuning of a decoder (causal-lm) end to end: LLM-Adapters' BoolQ records from ../shared/data, a
tiny LLaMA built from a configuration with a tokenizer trained on the same text, a real search, the adapter
reloaded with stock peft giving the recorded loss back."""

from __future__ import annotations

import json
import math
from pathlib import Path

import optuna
import pytest
import torch
from peft import PeftModel
from transformers import BartConfig, BertConfig, GPT2Config, LlamaConfig, RobertaConfig, XLMConfig

from autopeft.models.base import load_base_model, load_tokenizer
from autopeft.search.launch import start_search
from autopeft.spec import ModelSpec, load_spec
from autopeft.store import storage
from autopeft.tasks.data import load_task_data
from tests.conftest import ROOT, save_tiny_decoder, tiny_spec, write_spec
from workers.tasks import CausalLmRunner, answers_match, extract_answer

BOOLQ = ROOT.parent / "shared" / "data" / "llm-adapters" / "dataset" / "boolq"


def _tiny_decoder(folder: Path) -> None:
    save_tiny_decoder(folder, json.loads((BOOLQ / "train.json").read_text())[:400])


@pytest.mark.skipif(not BOOLQ.is_dir(), reason="needs ../shared/data/llm-adapters")
def test_instruction_tuning_search_and_reload(tmp_path):
    _tiny_decoder(tmp_path / "decoder")
    spec = tiny_spec(
        tmp_path,
        model={"name_or_path": str(tmp_path / "decoder"), "task": "causal-lm"},
        data={"train": str(BOOLQ / "train.json"), "eval": str(BOOLQ / "test.json"), "max_length": 160,
              "train_size": 64, "eval_size": 12},
        objectives=[{"name": "answer_accuracy"}, {"name": "trainable_params"}],
        constraints=[],
        search_space={"name": "decoder-lora", "parameters": {"lora.r": {"type": "categorical", "choices": [2, 8]}},
                      "fixed": {"method": "lora", "lora.target_modules": ["query", "value"], "learning_rate": 3e-3}},
        training={"batch_size": 8, "eval_batch_size": 8},
        budget={"trials": 2, "steps_per_trial": 10},
        workers={"parallel": 1},
    )
    loaded = load_spec(write_spec(tmp_path, spec))
    start_search(loaded, name="decoder", executor="local")
    study, _ = storage.load_search(storage.open_storage(loaded.storage), "decoder")
    complete = [t for t in study.get_trials() if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 2
    data = load_task_data(loaded.data, loaded.model, loaded.seed)
    for trial in complete:
        measured = trial.user_attrs[storage.MEASUREMENTS]
        assert 0.0 <= measured["answer_accuracy"] <= 1.0
        assert math.isfinite(measured["eval_loss"]) and measured["eval_loss"] > 0
        curve = trial.user_attrs[storage.LOSS_CURVE]
        assert curve[-1][1] < curve[0][1] or len(curve) == 1
        model = PeftModel.from_pretrained(load_base_model(loaded.model, []), trial.user_attrs[storage.ADAPTER_DIR])
        runner = CausalLmRunner(data, load_tokenizer(loaded.model), torch.device("cpu"))
        reproduced = runner.evaluate(model, 8).metrics
        assert abs(reproduced["eval_loss"] - measured["eval_loss"]) < 1e-4
        assert reproduced["answer_accuracy"] == measured["answer_accuracy"]


def test_causal_lm_spec_refuses_classification_metrics(tmp_path):
    from autopeft.errors import SpecError
    from autopeft.spec import parse_spec

    spec = tiny_spec(tmp_path, model={"name_or_path": "x/y", "task": "causal-lm"})
    with pytest.raises(SpecError, match=r"objectives\[0\]\.name: 'accuracy' is not measured for causal-lm"):
        parse_spec(spec)


@pytest.mark.parametrize("generated,gold,expected", [
    ("The answer is 42. So 42", "42", True),
    ("she has 1,250 apples", "1250", True),
    ("the correct answer is answer3 because", "answer3", True),
    ("the correct answer is answer2", "answer3", False),
    ("True, it is", "true", True),
    ("Answer: C", "C", True),
    ("no number here", "7", False),
])
def test_answer_extraction(generated, gold, expected):
    assert answers_match(extract_answer(generated, gold), gold) is expected


@pytest.mark.parametrize("config,refused", [
    (BertConfig(), True),  # an encoder: its causal-lm head would attend to the tokens it predicts
    (BertConfig(is_decoder=True), False),  # set up to read left to right
    (RobertaConfig(), True),
    (XLMConfig(causal=True), False),
    (BartConfig(), False),  # an encoder-decoder: its causal-lm head is the decoder
    (LlamaConfig(), False),
    (GPT2Config(), False),
])
def test_causal_lm_is_refused_on_an_encoder_only(config, refused):
    from autopeft.errors import UserError
    from autopeft.models.base import check_reads_left_to_right

    causal = ModelSpec(name_or_path="some/model", task="causal-lm")
    if refused:
        with pytest.raises(UserError, match="model.task: causal-lm needs a decoder"):
            check_reads_left_to_right(causal, config)
    else:
        check_reads_left_to_right(causal, config)
    check_reads_left_to_right(ModelSpec(name_or_path="some/model", task="sequence-classification"), config)
