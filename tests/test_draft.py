"""`autopeft init`: a spec drafted from the user's data file (autopeft/tasks/draft.py), each guess said, and the
draft checked as `search run` checks a spec, through the model's tokenizer. The encoder is the shipped MiniLM;
decoder records are drafted for a tiny LLaMA saved here (the shipped decoder is a benchmark's, not a test's)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from autopeft.errors import UserError
from autopeft.spec import load_spec
from autopeft.tasks.data import load_task_data
from autopeft.tasks.draft import DECODER_MODEL, ENCODER_MODEL, draft_spec
from tests.conftest import CHATML, DEMO_DATA, ROOT, run_cli, save_tiny_decoder

BOOLQ = ROOT / "examples" / "data" / "boolq" / "train.json"


def test_init_drafts_a_classification_spec_that_reads_as_drafted(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "specs").mkdir()
    code, out, err = run_cli(capsys, "init", str(DEMO_DATA / "train.tsv"), "--out", "specs/mine.yaml")
    assert code == 0, err
    out = " ".join(out.split())  # as the terminal's width wrapped it
    assert "label 'label': 2 classes (the most common '1', 56% of the rows)" in out
    assert "checked: 3200 training and 800 evaluation rows read as drafted. Next: autopeft search run " \
           "specs/mine.yaml" in out
    written = (tmp_path / "specs" / "mine.yaml").read_text()
    assert written.startswith("# drafted by `autopeft init") and "#   - text column 'sentence'" in written
    spec = yaml.safe_load(written)
    assert spec["model"] == {"name_or_path": ENCODER_MODEL, "task": "sequence-classification"}
    assert spec["data"]["text_columns"] == ["sentence"] and spec["data"]["label_column"] == "label"
    assert spec["data"]["eval_fraction"] == 0.2 and spec["budget"]["steps_per_trial"] == "auto"
    # relative to the spec's folder, where a spec's paths are read
    assert load_spec(tmp_path / "specs" / "mine.yaml").data.train == str(DEMO_DATA / "train.tsv")
    code, _, err = run_cli(capsys, "init", str(DEMO_DATA / "train.tsv"), "--out", "specs/mine.yaml")
    assert code == 2 and "--out specs/mine.yaml: the file exists" in err
    code, _, err = run_cli(capsys, "init", str(DEMO_DATA / "train.tsv"), "--out", "nowhere/mine.yaml")
    assert code == 2 and "--out nowhere/mine.yaml: no folder nowhere" in err


def test_pairs_scores_and_evaluation_files_are_read_from_the_columns(tmp_path):
    sentences = pd.read_csv(DEMO_DATA / "train.tsv", sep="\t")["sentence"].tolist()
    pairs = pd.DataFrame({"idx": range(120), "premise": sentences[:120], "hypothesis": sentences[120:240],
                          "gold": ["entails", "neutral", "contradicts"] * 40})
    pairs.to_csv(tmp_path / "pairs.csv", index=False)
    draft = draft_spec(str(tmp_path / "pairs.csv"))
    assert draft.spec["data"]["text_columns"] == ["premise", "hypothesis"]  # not the index
    assert draft.spec["data"]["label_column"] == "gold"  # few values, though not named like a label
    scores = pairs.assign(similarity=[i / 24 for i in range(120)]).drop(columns="gold")
    scores.to_csv(tmp_path / "scores.csv", index=False)
    scores.to_csv(tmp_path / "scores-dev.csv", index=False)
    draft = draft_spec(str(tmp_path / "scores.csv"), str(tmp_path / "scores-dev.csv"))
    assert draft.spec["model"]["task"] == "sequence-regression" and draft.spec["objectives"][0]["name"] == "spearman"
    assert draft.spec["data"]["eval"] == str(tmp_path / "scores-dev.csv") and "eval_fraction" not in draft.spec["data"]


def test_a_decoders_records_are_drafted_in_their_own_form(tmp_path):
    records = json.loads(BOOLQ.read_text())[:60]
    save_tiny_decoder(tmp_path / "decoder", records)
    (tmp_path / "records.json").write_text(json.dumps(records))
    draft = draft_spec(str(tmp_path / "records.json"), model=str(tmp_path / "decoder"))
    assert draft.spec["model"]["task"] == "causal-lm" and draft.spec["objectives"][0]["name"] == "answer_accuracy"
    assert "instruction_column" not in draft.spec["data"]  # LLM-Adapters' own names are the defaults
    _reads(tmp_path, draft.spec)
    asked = [{"prompt": r["instruction"], "completion": r["output"]} for r in records]
    (tmp_path / "asked.jsonl").write_text("".join(json.dumps(r) + "\n" for r in asked))
    draft = draft_spec(str(tmp_path / "asked.jsonl"), model=str(tmp_path / "decoder"))
    assert draft.spec["data"]["instruction_column"] == "prompt" and draft.spec["data"]["output_column"] == "completion"
    assert draft.spec["objectives"][0]["name"] == "eval_loss"  # no answers to check: the responses' loss
    _reads(tmp_path, draft.spec)
    assert draft_spec(str(tmp_path / "records.json"), model=None).spec["model"]["name_or_path"] == DECODER_MODEL


def test_chat_records_in_sharegpt_form_are_drafted_as_chat(tmp_path):
    chats = [{"conversations": [{"from": "human", "value": f"Review : {word} film . Positive or negative ?"},
                                {"from": "gpt", "value": f"the sentiment is {label}"}], "answer": label}
             for word, label in [("great", "positive"), ("awful", "negative")] * 30]
    save_tiny_decoder(tmp_path / "decoder", [{"messages": [{"role": "user", "content": c["conversations"][0]["value"]},
                                                           {"role": "assistant", "content": c["conversations"][1][
                                                               "value"]}]} for c in chats], chat_template=CHATML)
    (tmp_path / "chats.jsonl").write_text("".join(json.dumps(c) + "\n" for c in chats))
    draft = draft_spec(str(tmp_path / "chats.jsonl"), model=str(tmp_path / "decoder"))
    assert draft.spec["data"]["messages_column"] == "conversations"
    assert draft.reasons[0].startswith("column 'conversations' holds conversations: chat records on a decoder")
    _reads(tmp_path, draft.spec)


@pytest.mark.parametrize("columns,message", [
    ({"text": ["a fine film", "a dull one", "so good"], "notes": ["x y z", "a b c", "d e f"]},
     "train: no column looks like the label"),
    ({"label": [0, 1, 0], "length": [3, 4, 5]}, "train: no column of texts beside the label 'label'"),
])
def test_a_file_without_texts_or_a_label_is_told_what_to_name(tmp_path, columns, message):
    pd.DataFrame(columns).to_csv(tmp_path / "rows.csv", index=False)
    with pytest.raises(UserError, match=message):
        draft_spec(str(tmp_path / "rows.csv"))


def _reads(tmp_path, spec: dict) -> None:
    """The drafted spec as `search run` reads it: fields, then the data through the model's tokenizer."""
    path = tmp_path / "drafted.yaml"
    path.write_text(yaml.safe_dump(spec))
    loaded = load_spec(path)
    data = load_task_data(loaded.data, loaded.model, loaded.seed)
    assert len(data.train.input_ids) > 0 and len(data.eval.input_ids) > 0


def test_a_draft_from_a_dataframe_runs_with_the_rows_passed(tmp_path, monkeypatch):
    """From a notebook: autopeft.draft_spec(frame) names no file, and run_search takes the rows as data=."""
    import autopeft

    monkeypatch.chdir(tmp_path)
    frame = pd.read_csv(DEMO_DATA / "train.tsv", sep="\t").head(200)
    draft = autopeft.draft_spec(frame)
    assert "train" not in draft.spec["data"] and draft.spec["data"]["eval_fraction"] == 0.2
    assert any(reason.startswith("rows passed from Python") for reason in draft.reasons)
    spec = {**draft.spec, "budget": {"trials": 1, "steps_per_trial": 4}, "workers": {"parallel": 1}}
    search = autopeft.run_search(spec, name="drafted", data={"train": frame}, executor="local", progress=False)
    assert search.summary["complete"] == 1 and search.spec.data.eval_fraction == 0.2
    with pytest.raises(UserError, match="train: expected a data file's path, a pandas DataFrame or a "
                                        "datasets.Dataset, got list"):
        autopeft.draft_spec([1, 2])


def test_summaries_are_drafted_as_records_and_other_tasks_are_named(tmp_path):
    """Summarisation data as XSum writes it (document / summary) is a decoder's instruction records; a tag per word
    is token classification (tests/test_init_token_classification.py); extractive QA (answer spans) is a task
    autopeft does not train, said as such (its object column failed inside pandas before)."""
    records = json.loads(BOOLQ.read_text())[:40]
    save_tiny_decoder(tmp_path / "decoder", records)
    summaries = [{"id": str(i), "document": r["instruction"], "summary": r["output"]} for i, r in enumerate(records)]
    (tmp_path / "xsum.jsonl").write_text("".join(json.dumps(r) + "\n" for r in summaries))
    draft = draft_spec(str(tmp_path / "xsum.jsonl"), model=str(tmp_path / "decoder"))
    assert draft.spec["model"]["task"] == "causal-lm"
    assert draft.spec["data"]["instruction_column"] == "document" and draft.spec["data"]["output_column"] == "summary"
    _reads(tmp_path, draft.spec)
    words = [r["instruction"].split()[:6] for r in records]
    tagged = [{"id": i, "tokens": w, "ner_tags": [0] * len(w)} for i, w in enumerate(words)]
    (tmp_path / "ner.jsonl").write_text("".join(json.dumps(r) + "\n" for r in tagged))
    assert draft_spec(str(tmp_path / "ner.jsonl"), fit_length=False).spec["model"]["task"] == "token-classification"
    spans = [{"id": i, "context": " ".join(w), "question": "which word?",
              "answers": {"text": [w[1]], "answer_start": [len(w[0]) + 1]}} for i, w in enumerate(words)]
    (tmp_path / "squad.jsonl").write_text("".join(json.dumps(r) + "\n" for r in spans))
    with pytest.raises(UserError, match="column 'answers' holds answer spans in a context"):
        draft_spec(str(tmp_path / "squad.jsonl"))


def test_a_table_read_as_one_column_is_told_its_separator(tmp_path):
    """A spreadsheet's semicolon export named .csv read as one column "text;label": drafted before as a decoder's
    corpus of "text;label" lines; now the separator is named, as `search run` names it."""
    rows = pd.read_csv(DEMO_DATA / "train.tsv", sep="\t")
    rows[~rows["sentence"].str.contains(",")].head(30).to_csv(tmp_path / "semi.csv", sep=";", index=False)
    with pytest.raises(UserError, match=r"was read as one column named 'sentence;label': the file looks "
                                        "semicolon-separated"):
        draft_spec(str(tmp_path / "semi.csv"))
