"""The dashboard's short New search form writes a spec the service admits exactly as a pasted one."""

from __future__ import annotations

import shutil

import yaml

from autopeft.service.admission import ServiceConfig, admit
from autopeft.spec import parse_spec
from dashboard.spec_form import SpecForm, spec_from_form
from tests.conftest import DEMO_DATA


def test_the_forms_spec_is_admitted_with_uploaded_files(tmp_path):
    config = ServiceConfig(storage_url=f"sqlite:///{tmp_path / 'form.db'}", root=tmp_path / "root",
                           job_server="http://127.0.0.1:1")
    uploads = config.uploads_dir / "from-form"
    uploads.mkdir(parents=True)
    for name in ("train.tsv", "dev.tsv"):
        shutil.copy(DEMO_DATA / name, uploads / name)
    text = spec_from_form(SpecForm(name="from-form", train_file="train.tsv", eval_file="dev.tsv",
                                   costs=["trainable_params", "peak_memory_mb"], trials=3, steps_per_trial="auto"))
    admitted = admit(config, text, name="from-form", base_dir=uploads)
    spec = admitted.spec
    assert spec.objective_names == ["accuracy", "trainable_params", "peak_memory_mb"]
    assert spec.data.train == str(uploads / "train.tsv") and spec.budget.steps_per_trial == "auto"
    assert spec.constraints[0].name == "trainable_percent" and spec.constraints[0].max == 1.0
    assert spec.output_dir == str(config.runs_dir.resolve()) and admitted.spec_path.is_file()


def test_a_dataset_a_regression_task_and_no_limit():
    text = spec_from_form(SpecForm(name="stsb", task="sequence-regression", dataset="glue", dataset_config="stsb",
                                   text_columns=["sentence1", "sentence2"], metric="spearman",
                                   max_trainable_percent=None, space="full"))
    raw = yaml.safe_load(text)
    spec = parse_spec(raw)
    assert spec.data.dataset.name == "glue" and spec.data.text_columns == ["sentence1", "sentence2"]
    assert spec.constraints == [] and spec.model.task == "sequence-regression"
    assert parse_spec(yaml.safe_load(spec_from_form(SpecForm(name="b", task="causal-lm", train_file="t.jsonl",
                                                             eval_file="e.jsonl", metric="answer_accuracy"))))
    chat = parse_spec(yaml.safe_load(spec_from_form(SpecForm(name="c", task="causal-lm", train_file="t.jsonl",
                                                             eval_file="e.jsonl", messages_column="messages",
                                                             metric="eval_loss"))))
    assert chat.data.messages_column == "messages" and chat.task_metric == "eval_loss"
    text = parse_spec(yaml.safe_load(spec_from_form(SpecForm(name="t", task="causal-lm", train_file="t.jsonl",
                                                             eval_file="e.jsonl", text_columns=["text"],
                                                             plain_text=True, metric="eval_loss"))))
    assert text.data.text_columns == ["text"] and text.data.messages_column is None


def test_an_upload_named_with_a_path_is_refused(tmp_path):
    import pytest

    from autopeft.errors import UserError
    from autopeft.service.admission import save_uploads

    config = ServiceConfig(storage_url=f"sqlite:///{tmp_path / 'x.db'}", root=tmp_path / "root",
                           job_server="http://127.0.0.1:1")
    for bad in ("../train.tsv", "/etc/passwd", ".hidden", "a b.tsv"):
        with pytest.raises(UserError, match="plain file name"):
            save_uploads(config, "s", {bad: b"x"})
    assert not (tmp_path / "root").exists()  # nothing written


def test_one_uploaded_file_holds_out_its_evaluation_rows(tmp_path):
    """A first search from one file: the form holds out a share of its rows (data.eval_fraction) rather than
    asking for a second file the user may not have; the service admits it."""
    from dashboard.spec_form import HELD_OUT_SHARE

    config = ServiceConfig(storage_url=f"sqlite:///{tmp_path / 'form.db'}", root=tmp_path / "root",
                           job_server="http://127.0.0.1:1")
    uploads = config.uploads_dir / "one-file"
    uploads.mkdir(parents=True)
    shutil.copy(DEMO_DATA / "train.tsv", uploads / "train.tsv")
    text = spec_from_form(SpecForm(name="one-file", train_file="train.tsv"))
    spec = admit(config, text, name="one-file", base_dir=uploads).spec
    assert spec.data.eval is None and spec.data.eval_fraction == HELD_OUT_SHARE == 0.2


def test_an_uploaded_training_file_fills_the_fields_it_shows(tmp_path):
    """The short form reads an uploaded file as `autopeft init` does: a table's text and label columns, a
    decoder's records form (and the shipped decoder for them), and what the form does not ask — the length that
    keeps the texts whole, instruction records' own field names — goes into the spec it writes."""
    import json

    import pandas as pd
    import yaml

    from autopeft.tasks.draft import DECODER_MODEL, ENCODER_MODEL
    from dashboard.spec_form import DECODER_RECORDS, SpecForm, form_values_from_file, spec_from_form

    rows = pd.read_csv(DEMO_DATA / "train.tsv", sep="\t").head(60).rename(columns={"sentence": "review",
                                                                                   "label": "stars"})
    reading = form_values_from_file("reviews.csv", rows.to_csv(index=False).encode())
    assert reading.values == {"form_task": "sequence-classification", "form_metric": "accuracy",
                              "form_model": ENCODER_MODEL, "form_columns": "review", "form_label": "stars"}
    assert reading.reasons[0].startswith("label 'stars': 2 classes")
    assert not any("steps_per_trial" in r for r in reading.reasons) and reading.max_length == 64
    chats = [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}] * 10
    reading = form_values_from_file("chats.jsonl", "".join(json.dumps(c) + "\n" for c in chats).encode(),
                                    model=ENCODER_MODEL)  # a model the user chose stays theirs
    assert reading.values["form_task"] == "causal-lm" and "form_model" not in reading.values
    assert DECODER_RECORDS[reading.values["form_records"]] == "chat" and reading.values["form_metric"] == "eval_loss"
    asked = [{"prompt": f"What is {i} plus {i}?", "completion": str(2 * i)} for i in range(20)]
    reading = form_values_from_file("asked.jsonl", "".join(json.dumps(a) + "\n" for a in asked).encode())
    assert reading.values["form_model"] == DECODER_MODEL  # records: the shipped decoder, as init drafts
    assert reading.record_fields == {"instruction_column": "prompt", "output_column": "completion"}
    written = yaml.safe_load(spec_from_form(SpecForm(name="asked", task="causal-lm", train_file="asked.jsonl",
                                                     metric="eval_loss", max_length=96,
                                                     record_fields=reading.record_fields)))
    assert written["data"] == {"train": "asked.jsonl", "eval_fraction": 0.2, "instruction_column": "prompt",
                               "output_column": "completion", "max_length": 96}


def test_a_multi_label_file_fills_the_form_and_its_spec_reads_the_labels(tmp_path):
    """A 0/1 column per label fills the label field with every label column; labels joined in one cell fill it
    with that column and carry their separator into the spec; the spec the form writes reads either."""
    import pandas as pd

    from autopeft.spec import load_spec
    from autopeft.tasks.data import load_task_data
    from dashboard.spec_form import SpecForm, form_values_from_file, spec_from_form

    phrases = pd.read_csv(DEMO_DATA / "train.tsv", sep="\t").head(80)
    flags = pd.DataFrame({"comment": phrases["sentence"], "positive": phrases["label"],
                          "short": (phrases["sentence"].str.split().str.len() < 5).astype(int)})
    reading = form_values_from_file("flags.csv", flags.to_csv(index=False).encode())
    assert reading.values["form_task"] == "multi-label-classification"
    assert reading.values["form_label"] == "positive, short" and reading.values["form_metric"] == "micro_f1"
    joined = pd.DataFrame({"comment": flags["comment"], "tags": [
        ";".join(n for n, on in (("positive", p), ("short", s)) if on) for p, s in zip(flags["positive"],
                                                                                       flags["short"])]})
    joined_reading = form_values_from_file("tags.csv", joined.to_csv(index=False).encode())
    assert joined_reading.values["form_label"] == "tags"
    assert joined_reading.record_fields == {"label_separator": ";"}
    for name, frame, found in (("flags.csv", flags, reading), ("tags.csv", joined, joined_reading)):
        frame.to_csv(tmp_path / name, index=False)
        text = spec_from_form(SpecForm(name="tags", task="multi-label-classification", train_file=name,
                                       text_columns=["comment"], label_column=found.values["form_label"],
                                       metric="micro_f1", record_fields=found.record_fields, max_length=32))
        (tmp_path / "spec.yaml").write_text(text)
        spec = load_spec(tmp_path / "spec.yaml")
        assert load_task_data(spec.data, spec.model, 0).label_names == ["positive", "short"]
    as_one_label = spec_from_form(SpecForm(name="tags", task="sequence-classification", train_file="tags.csv",
                                           text_columns=["comment"], label_column="tags", metric="accuracy",
                                           record_fields=joined_reading.record_fields))
    assert "label_separator" not in as_one_label  # turned to one label per row: the field that task refuses left out
