"""Instruction tuning on records without gold answers (instruction, input, output: the Alpaca form most instruction
data comes in): searched on the gold responses' token loss, with no generation, and refused with the fix where an
objective needs answers the records do not have.

A tiny LLaMA built from a configuration, the bundled BoolQ records with their answer field removed, a real search
through the Python API on the local executor, the exported adapter reloaded with stock peft."""

from __future__ import annotations

import json

import pytest
import torch
from peft import PeftModel, PromptTuningConfig, get_peft_model
from streamlit.testing.v1 import AppTest

import autopeft
from autopeft.errors import UserError
from autopeft.models.base import load_base_model, load_tokenizer
from autopeft.results.untouched_model import UNTOUCHED
from autopeft.spec import load_spec
from autopeft.store.predictions import LOSSES, decode
from autopeft.tasks.data import check_metrics_fit, load_task_data
from tests.conftest import ROOT, run_cli, save_tiny_decoder, search_with_untouched, tiny_spec, write_spec
from workers.generation import reference_answers
from workers.tasks import CausalLmRunner

BOOLQ = ROOT / "examples" / "data" / "boolq" / "train.json"


@pytest.fixture(scope="module")
def unanswered(tmp_path_factory):
    """Instruction records without an answer field (train and eval files) and a tiny decoder for their text."""
    folder = tmp_path_factory.mktemp("unanswered")
    records = json.loads(BOOLQ.read_text())[:120]
    for record in records:
        del record["answer"]
    (folder / "train.json").write_text(json.dumps(records[:96]))
    (folder / "eval.json").write_text(json.dumps(records[96:]))
    save_tiny_decoder(folder / "decoder", records)
    return folder


def _spec(folder, objective: str = "eval_loss", **data) -> dict:
    return tiny_spec(folder, model={"name_or_path": str(folder / "decoder"), "task": "causal-lm"},
                     data={"train": str(folder / "train.json"), "eval": str(folder / "eval.json"), "max_length": 160,
                           **data},
                     objectives=[{"name": objective}, {"name": "trainable_params"}], constraints=[],
                     search_space="lora", training={"batch_size": 8, "eval_batch_size": 8},
                     budget={"trials": 2, "steps_per_trial": 6}, workers={"parallel": 1, "cpus_per_trial": 2})


def test_records_without_answers_are_scored_by_their_loss_without_generating(unanswered):
    spec = load_spec(write_spec(unanswered, _spec(unanswered)))
    assert spec.task_metric == "eval_loss" and spec.task_metric_direction == "minimize"
    data = load_task_data(spec.data, spec.model, spec.seed)
    assert data.eval.answers is None and data.answer_words is None
    check_metrics_fit(spec, data)
    model = load_base_model(spec.model, [])

    def no_generation(*args, **kwargs):
        raise AssertionError("an evaluation without gold answers generated")

    model.generate = no_generation
    runner = CausalLmRunner(data, load_tokenizer(spec.model), torch.device("cpu"))
    evaluation = runner.evaluate(model, 8)
    assert set(evaluation.metrics) == {"eval_loss"}
    losses, tokens, _ = runner._loss(model, 8)
    assert evaluation.metrics["eval_loss"] == pytest.approx(losses.sum() / tokens, abs=1e-5) and tokens > 0
    # kept per record, for the paired test against the untouched model: they sum to the same loss
    per_record = decode(evaluation.predictions)
    assert evaluation.predictions["kind"] == LOSSES and len(per_record) == len(data.eval)
    assert runner.response_tokens.sum() == tokens
    assert per_record == pytest.approx(losses, rel=1e-4)  # the one-pass path's losses, record by record
    # a method with tokens of its own in front takes the plain pass, its prompt read at the input's own positions
    prompted = get_peft_model(model, PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4))
    plain, tokens, _ = runner._loss(prompted, 8)
    evaluation = runner.evaluate(prompted, 8)
    assert (plain > 0).all() and decode(evaluation.predictions) == pytest.approx(plain, rel=1e-5)
    assert evaluation.metrics["eval_loss"] == pytest.approx(plain.sum() / tokens, rel=1e-5)


def test_a_search_on_the_loss_runs_exports_and_reloads(unanswered, tmp_path):
    search = autopeft.run_search(_spec(unanswered) | {"storage": f"sqlite:///{tmp_path / 't.db'}",
                                                      "output_dir": str(tmp_path / "runs"),
                                                      "search_space": _fixed_lora(1e-2)},
                                 name="alpaca-form", executor="local", progress=False)
    trials = search.trials_dataframe()
    assert (trials["state"] == "COMPLETE").all() and len(trials) == 2
    assert trials["eval_loss"].gt(0).all() and "answer_accuracy" not in trials.columns
    chance = search.chance  # the untouched model's loss, measured by the workers (tested below)
    assert chance["metric"] == "eval_loss" and chance["predicts"] == UNTOUCHED and chance["examples"] == 24
    best = search.pick("min:eval_loss")[0]
    folder = search.export(tmp_path / "out", picks="min:eval_loss")[0]
    spec = search.spec
    model = PeftModel.from_pretrained(load_base_model(spec.model, []), folder)
    data = load_task_data(spec.data, spec.model, spec.seed)
    runner = CausalLmRunner(data, load_tokenizer(spec.model), torch.device("cpu"))
    reloaded = runner.evaluate(model, 8)
    assert reloaded.metrics["eval_loss"] == pytest.approx(trials.loc[best.number, "eval_loss"], abs=1e-4)

    # The README's lines load the adapter and prompt it as the trials were prompted: the same prompt tokens, so
    # the same greedy response as the worker's plain generation path gives for that record.
    blocks = (folder / "README.md").read_text().split("```python\n")
    assert "PROMPT_WITH_INPUT" in blocks[2]
    record = json.loads((unanswered / "eval.json").read_text())[0]
    scope: dict = {}
    exec(blocks[1].split("```")[0].replace("path/to/this/folder", str(folder)), scope)
    exec(blocks[2].split("```")[0].replace('"Your instruction", ""', f"{record['instruction']!r}, "
                                                                    f"{record['input']!r}"), scope)
    assert scope["ids"]["input_ids"][0].tolist() == data.eval.prompts[0].tolist()
    plain = reference_answers(scope["model"], runner.tokenizer, data.eval.prompts[:1], max_new_tokens=128,
                              pad_id=runner.pad_id, device=torch.device("cpu"), batch_size=1)
    assert scope["response"] == plain[0]


def _fixed_lora(learning_rate: float) -> dict:
    """LoRA on every attention and FFN matrix at one learning rate: the search's only free choice is the rank, so
    whether its trials learn is set by the rate."""
    return {"name": f"lora-at-{learning_rate:g}",
            "parameters": {"lora.r": {"type": "categorical", "choices": [4, 8]}},
            "fixed": {"method": "lora", "lora.alpha_over_r": 2.0, "lora.dropout": 0.0,
                      "lora.target_modules": ["query", "key", "value", "attention_output", "ffn_up", "ffn_down"],
                      "learning_rate": learning_rate}}


@pytest.mark.parametrize("learning_rate, learns", [(1e-2, True), (1e-7, False)])
def test_a_search_on_the_loss_is_read_against_the_untouched_model(unanswered, tmp_path, capsys, monkeypatch,
                                                                 learning_rate, learns):
    """A loss has no constant prediction to clear: the reference is the base model as loaded. Trials that lower
    every record's loss clearly below it learned something; trials that leave it where it was (a rate too small to
    move the weights) are within noise of it, and the search says nothing was learned."""
    spec = _spec(unanswered) | {"storage": f"sqlite:///{tmp_path / 't.db'}", "output_dir": str(tmp_path / "runs"),
                                "search_space": _fixed_lora(learning_rate)}
    spec["budget"] = {"trials": 2, "steps_per_trial": 30}
    # the level is the untouched base's mean token loss on the eval records, as the runner measures it
    out, report, untouched = search_with_untouched(capsys, tmp_path, spec, "loss", 8)
    assert report["chance"] == pytest.approx(untouched.metrics["eval_loss"], rel=1e-6)
    assert report["predicts"] == UNTOUCHED
    tests = report["tests"].values()
    assert tests and all(t["method"] == "paired" for t in tests)
    words = " ".join(out.split())
    if learns:
        assert all(t["above"] and t["value"] < t["bar"] < report["chance"] for t in tests)
        assert not report["nothing_learned"] and "NO CONFIGURATION LEARNED" not in words
        assert "Every tested front point is clearly below it" in words  # a loss clears its level by being lower
    else:
        assert all(not t["above"] for t in tests) and report["nothing_learned"]
        assert "NO CONFIGURATION LEARNED THE TASK" in words and UNTOUCHED in words
        code, listed, _ = run_cli(capsys, "search", "list", "--storage", spec["storage"], "--json")
        assert json.loads(listed)[0]["front_vs_chance"] == "none"
        monkeypatch.setenv("AUTOPEFT_STORAGE", spec["storage"])
        app = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=60)
        app.session_state["view"] = "Pareto front"
        app.run()
        assert not app.exception, [e.value for e in app.exception]
        assert any("No configuration learned the task above chance" in e.value and UNTOUCHED in e.value
                   for e in app.error)


def test_an_answer_metric_without_answers_is_refused_naming_the_column(unanswered, tmp_path):
    spec = _spec(unanswered, objective="answer_accuracy") | {"storage": f"sqlite:///{tmp_path / 't.db'}"}
    with pytest.raises(UserError, match=r"objectives\[0\]\.name: 'answer_accuracy' reads each record's gold answer, "
                                        r"and the records have no 'answer' column \(data\.answer_column\); add the "
                                        r"answers, or search on eval_loss"):
        autopeft.run_search(spec, name="needs-answers", executor="local", progress=False)
    assert not (tmp_path / "t.db").exists()  # refused before a search was created
    # a column named in the spec that the records lack is a mistake, not records without answers
    with pytest.raises(UserError, match=r"data\.answer_column: column 'gold' not in the train data"):
        loaded = load_spec(write_spec(tmp_path, _spec(unanswered, answer_column="gold")))
        load_task_data(loaded.data, loaded.model, loaded.seed)


def test_prompt_completion_records_are_told_the_fields_that_read_them(unanswered, tmp_path):
    """OpenAI's and TRL's prompt / completion records met the instruction reader's default columns: the refusal
    names the two fields to set, and with them set the records are read (the prompt as the instruction)."""
    records = [{"prompt": r["instruction"], "completion": r["output"]}
               for r in json.loads((unanswered / "train.json").read_text())]
    for name in ("train.json", "eval.json"):
        (tmp_path / name).write_text(json.dumps(records[:48] if name == "train.json" else records[48:64]))
    spec = _spec(unanswered) | {"data": {"train": str(tmp_path / "train.json"), "eval": str(tmp_path / "eval.json"),
                                         "max_length": 160}}
    loaded = load_spec(write_spec(tmp_path, spec))
    with pytest.raises(UserError, match=r"data\.instruction_column: column 'instruction' not in the train data; its "
                                        r"columns are \['prompt', 'completion'\]; the records look like prompt / "
                                        r"completion pairs: set data\.instruction_column: prompt and "
                                        r"data\.output_column: completion"):
        load_task_data(loaded.data, loaded.model, loaded.seed)
    spec["data"].update(instruction_column="prompt", output_column="completion")
    loaded = load_spec(write_spec(tmp_path, spec))
    assert len(load_task_data(loaded.data, loaded.model, loaded.seed).train.input_ids) == 48


def test_skipping_the_untouched_model_is_refused_where_it_is_the_chance_level(unanswered, tmp_path):
    spec = _spec(unanswered) | {"storage": f"sqlite:///{tmp_path / 't.db'}"}
    spec["training"] |= {"untouched_reference": False}
    with pytest.raises(UserError, match=r"training\.untouched_reference: the records have no gold answers, so the "
                                        r"untouched model's loss is what a trial is read against"):
        autopeft.run_search(spec, name="no-reference", executor="local", progress=False)
    assert not (tmp_path / "t.db").exists()


def test_the_probe_finds_a_fidelity_for_a_search_on_its_loss(unanswered, tmp_path, capsys):
    """``steps_per_trial: auto`` needs a chance level; for records without answers it is the untouched model's
    loss, which arrives with the probe's first results: the probe then climbs until its reference learns."""
    spec = _spec(unanswered) | {"storage": f"sqlite:///{tmp_path / 't.db'}", "output_dir": str(tmp_path / "runs"),
                                "search_space": _fixed_lora(1e-2)}
    spec["budget"] = {"trials": 1, "steps_per_trial": "auto", "confirm_near_chance": 0,
                      "probe": {"start_steps": 4, "max_steps": 32, "references": ["lora-r16-all"], "minutes": 5}}
    out, report, untouched = search_with_untouched(capsys, tmp_path, spec, "probed", 8)
    assert report["chance"] == pytest.approx(untouched.metrics["eval_loss"], rel=1e-6)
    code, shown, _ = run_cli(capsys, "search", "show", "probed", "--storage", spec["storage"], "--json")
    probe = json.loads(shown)["probe"]
    assert probe["chosen"] in (8, 16, 32), probe
    ladder = {rung["steps"]: rung["results"]["lora-r16-all"] for rung in probe["rungs"]}
    assert any(result["above"] for result in ladder.values())
    assert all(result["eval_loss"] < report["chance"] or not result["above"] for result in ladder.values())
