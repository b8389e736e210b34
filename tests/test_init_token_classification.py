"""`autopeft init` on tagging data (a tag per word): lists of words and tags in .jsonl/.parquet or a DataFrame, a
CoNLL file, whitespace-joined words and tags in a .csv/.tsv; drafted as token-classification, scored by entity_f1
where the tags are entity tags and by accuracy where they are not. The sentences are CoNLL-2003's kind, written
here with their part-of-speech, chunk and entity tags."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from autopeft.spec import load_spec
from autopeft.tasks.data import load_task_data
from autopeft.tasks.draft import ENCODER_MODEL, draft_spec
from tests.conftest import run_cli

# word, part of speech, chunk, entity: CoNLL-2003's four columns
SENTENCES = [
    "EU NNP B-NP B-ORG|rejects VBZ B-VP O|German JJ B-NP B-MISC|call NN I-NP O|to TO B-VP O|boycott VB I-VP O|"
    "British JJ B-NP B-MISC|lamb NN I-NP O|. . O O",
    "Peter NNP B-NP B-PER|Blackburn NNP I-NP I-PER|spoke VBD B-VP O|in IN B-PP O|London NNP B-NP B-LOC|. . O O",
    "BRUSSELS NNP B-NP B-LOC|1996-08-22 CD I-NP O",
    "Germany NNP B-NP B-LOC|'s POS B-NP O|representative NN I-NP O|to TO B-PP O|the DT B-NP O|European NNP I-NP B-ORG|"
    "Union NNP I-NP I-ORG|'s POS B-NP O|committee NN I-NP O|Werner NNP I-NP B-PER|Zwingmann NNP I-NP I-PER|"
    "said VBD B-VP O|on IN B-PP O|Wednesday NNP B-NP O|. . O O",
    "Fischler NNP B-NP B-PER|proposed VBD B-VP O|EU-wide JJ B-NP B-MISC|measures NNS I-NP O|after IN B-PP O|"
    "reports NNS B-NP O|from IN B-PP O|Britain NNP B-NP B-LOC|and CC O O|France NNP B-NP B-LOC|. . O O",
    "The DT B-NP O|European NNP I-NP B-ORG|Commission NNP I-NP I-ORG|said VBD B-VP O|on IN B-PP O|"
    "Thursday NNP B-NP O|it PRP B-NP O|disagreed VBD B-VP O|with IN B-PP O|German JJ B-NP B-MISC|"
    "advice NN I-NP O|. . O O",
    "Spanish JJ B-NP B-MISC|Farm NNP I-NP O|Minister NNP I-NP O|Loyola NNP I-NP B-PER|de NNP I-NP I-PER|"
    "Palacio NNP I-NP I-PER|had VBD B-VP O|earlier RBR B-ADVP O|accused VBN B-VP O|Fischler NNP B-NP B-PER|. . O O",
    "Rabinovich NNP B-NP B-PER|is VBZ B-VP O|winding VBG I-VP O|up RP B-PRT O|his PRP$ B-NP O|term NN I-NP O|"
    "as IN B-PP O|ambassador NN B-NP O|in IN B-PP O|Washington NNP B-NP B-LOC|. . O O",
    "Israel NNP B-NP B-LOC|and CC O O|Syria NNP B-NP B-LOC|broke VBD B-VP O|off RP B-PRT O|talks NNS B-NP O|"
    "in IN B-PP O|February NNP B-NP O|. . O O",
    "Japan NNP B-NP B-LOC|began VBD B-VP O|the DT B-NP O|defence NN I-NP O|of IN B-PP O|their PRP$ B-NP O|"
    "Asian JJ I-NP B-MISC|Cup NNP I-NP I-MISC|title NN I-NP O|. . O O",
    "Nadim NNP B-NP B-PER|Ladki NNP I-NP I-PER|scored VBD B-VP O|for IN B-PP O|Syria NNP B-NP B-LOC|in IN B-PP O|"
    "Al-Ain NNP B-NP B-LOC|. . O O",
    "Reuters NNP B-NP B-ORG|reported VBD B-VP O|that IN B-SBAR O|Clinton NNP B-NP B-PER|visited VBD B-VP O|"
    "Chicago NNP B-NP B-LOC|on IN B-PP O|Monday NNP B-NP O|. . O O",
    "China NNP B-NP B-LOC|says VBZ B-VP O|Taiwan NNP B-NP B-LOC|spoils VBZ B-VP O|atmosphere NN B-NP O|"
    "for IN B-PP O|talks NNS B-NP O|. . O O",
    "Manchester NNP B-NP B-ORG|United NNP I-NP I-ORG|beat VBD B-VP O|Arsenal NNP B-NP B-ORG|at IN B-PP O|"
    "Old NNP B-NP B-LOC|Trafford NNP I-NP I-LOC|. . O O",
]
# Evaluation sentences whose tags the training sentences all have
HELD = [
    "Clinton NNP B-NP B-PER|met VBD B-VP O|Fischler NNP B-NP B-PER|in IN B-PP O|Brussels NNP B-NP B-LOC|. . O O",
    "The DT B-NP O|European NNP I-NP B-ORG|Union NNP I-NP I-ORG|rejects VBZ B-VP O|the DT B-NP O|call NN I-NP O|"
    ". . O O",
]
NER_NAMES = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]


def _words(sentence: str) -> list[list[str]]:
    """A sentence's words, each as its four fields."""
    return [word.split() for word in sentence.split("|")]


def _records(sentences: list[str]) -> list[dict]:
    """Each sentence as Hugging Face's CoNLL-2003 writes a row: its words and each tag column as lists."""
    rows = []
    for number, sentence in enumerate(sentences):
        fields = list(zip(*_words(sentence)))
        rows.append({"id": str(number), "tokens": list(fields[0]), "pos_tags": list(fields[1]),
                     "chunk_tags": list(fields[2]), "ner_tags": list(fields[3])})
    return rows


def _conll(sentences: list[str]) -> str:
    """A CoNLL-2003 file: a document break, then a word and its tags a line, a blank line after each sentence."""
    lines = ["-DOCSTART- -X- -X- O", ""]
    for sentence in sentences:
        lines += [" ".join(word) for word in _words(sentence)] + [""]
    return "\n".join(lines)


def _write_jsonl(path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def _validates(tmp_path, spec: dict):
    """The drafted spec as `search run` loads it (its fields checked)."""
    path = tmp_path / "drafted.yaml"
    path.write_text(yaml.safe_dump(spec))
    return load_spec(path)


def test_word_and_tag_lists_prefer_the_entity_tags_and_name_the_others(tmp_path):
    _write_jsonl(tmp_path / "conll2003.jsonl", _records(SENTENCES))
    draft = draft_spec(str(tmp_path / "conll2003.jsonl"))
    assert draft.spec["model"] == {"name_or_path": ENCODER_MODEL, "task": "token-classification"}
    assert draft.spec["data"]["text_columns"] == ["tokens"] and draft.spec["data"]["label_column"] == "ner_tags"
    assert draft.spec["objectives"] == [{"name": "entity_f1"}, {"name": "trainable_params", "direction": "minimize"}]
    said = " ".join(draft.reasons)
    assert "columns 'tokens' and 'ner_tags' hold a word and a tag per word" in said
    assert "other columns hold a tag per word too: 'pos_tags', 'chunk_tags'" in said
    assert "entities of 4 types (LOC, MISC, ORG, PER)" in said
    assert draft.spec["data"]["max_length"] >= 32  # counted on the words joined, not on a list's repr
    loaded = _validates(tmp_path, draft.spec)
    assert loaded.model.task == "token-classification" and loaded.data.label_column == "ner_tags"


def test_part_of_speech_tags_alone_are_scored_by_accuracy(tmp_path):
    rows = [{"words": r["tokens"], "pos_tags": r["pos_tags"]} for r in _records(SENTENCES)]
    _write_jsonl(tmp_path / "pos.jsonl", rows)
    draft = draft_spec(str(tmp_path / "pos.jsonl"))
    assert draft.spec["data"]["text_columns"] == ["words"] and draft.spec["data"]["label_column"] == "pos_tags"
    assert draft.spec["objectives"][0] == {"name": "accuracy"}
    assert any("not O and B-/I- entity tags: accuracy" in reason for reason in draft.reasons)
    _validates(tmp_path, draft.spec)


def test_a_conll_file_is_drafted_and_its_data_reads_as_drafted(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "train.conll").write_text(_conll(SENTENCES))
    (tmp_path / "dev.conll").write_text(_conll(HELD))
    code, out, err = run_cli(capsys, "init", "train.conll", "--eval", "dev.conll", "--out", "spec.yaml")
    assert code == 0, err
    out = " ".join(out.split())  # as the terminal's width wrapped it
    assert "a CoNLL file: a word per line with its tag last, read into the columns 'tokens' and 'tags'" in out
    assert "checked: 14 training and 2 evaluation rows read as drafted" in out
    loaded = load_spec(tmp_path / "spec.yaml")
    assert loaded.model.task == "token-classification" and loaded.data.text_columns == ["tokens"]
    assert loaded.data.label_column == "tags" and loaded.objectives[0].name == "entity_f1"
    data = load_task_data(loaded.data, loaded.model, loaded.seed)
    assert data.task == "token-classification" and set(data.label_names) == set(NER_NAMES)
    assert data.train.labels.shape[0] == 14 and data.eval.labels.shape[0] == 2


@pytest.mark.parametrize("suffix", [".iob", ".bio"])
def test_two_column_iob_files_are_read_as_conll(tmp_path, suffix):
    two_columns = "\n\n".join("\n".join(f"{w[0]}\t{w[3]}" for w in _words(s)) for s in SENTENCES)
    (tmp_path / f"ner{suffix}").write_text(two_columns + "\n")
    draft = draft_spec(str(tmp_path / f"ner{suffix}"))
    assert draft.spec["model"]["task"] == "token-classification"
    assert draft.spec["data"]["label_column"] == "tags" and draft.spec["objectives"][0]["name"] == "entity_f1"
    _validates(tmp_path, draft.spec)


@pytest.mark.parametrize("separator,suffix", [(",", ".csv"), ("\t", ".tsv")])
def test_whitespace_joined_words_and_tags_in_a_table(tmp_path, separator, suffix):
    rows = _records(SENTENCES)
    table = pd.DataFrame({"sentence": [" ".join(r["tokens"]) for r in rows],
                          "labels": [" ".join(r["ner_tags"]) for r in rows]})
    table.to_csv(tmp_path / f"ner{suffix}", sep=separator, index=False)
    draft = draft_spec(str(tmp_path / f"ner{suffix}"))
    assert draft.spec["model"]["task"] == "token-classification"
    assert draft.spec["data"]["text_columns"] == ["sentence"] and draft.spec["data"]["label_column"] == "labels"
    assert draft.spec["objectives"][0]["name"] == "entity_f1"
    assert any("whitespace-joined text, as many tags as words in every row" in r for r in draft.reasons)
    _validates(tmp_path, draft.spec)


def test_class_ids_are_drafted_and_named_where_the_file_keeps_the_names(tmp_path):
    """A `datasets` dataset's tags are class ids: in a DataFrame of its rows the names are unknown (drafted on
    accuracy, data.label_values said); its parquet export keeps them, and they are written as label_values."""
    import datasets

    features = datasets.Features({"tokens": datasets.Sequence(datasets.Value("string")),
                                  "ner_tags": datasets.Sequence(datasets.ClassLabel(names=NER_NAMES))})
    rows = _records(SENTENCES)
    dataset = datasets.Dataset.from_dict(
        {"tokens": [r["tokens"] for r in rows],
         "ner_tags": [[NER_NAMES.index(t) for t in r["ner_tags"]] for r in rows]}, features=features)
    frame = dataset.to_pandas()
    assert isinstance(frame["ner_tags"][0], np.ndarray)  # as datasets gives them: arrays of integers
    draft = draft_spec(frame)
    assert draft.spec["model"]["task"] == "token-classification" and "label_values" not in draft.spec["data"]
    assert draft.spec["objectives"][0]["name"] == "accuracy"
    assert any("are numbers (0 to 8)" in r and "data.label_values" in r for r in draft.reasons)
    frame.to_parquet(tmp_path / "ids.parquet")  # the rows in a file, as the spec would name them
    _validates(tmp_path, {**draft.spec, "data": {**draft.spec["data"], "train": str(tmp_path / "ids.parquet")}})

    dataset.to_parquet(str(tmp_path / "conll2003.parquet"))
    draft = draft_spec(str(tmp_path / "conll2003.parquet"))
    assert draft.spec["data"]["label_values"] == NER_NAMES and draft.spec["objectives"][0]["name"] == "entity_f1"
    loaded = _validates(tmp_path, draft.spec)
    data = load_task_data(loaded.data, loaded.model, loaded.seed)
    assert data.label_names == NER_NAMES


def test_other_tables_are_drafted_as_before(tmp_path):
    """Equal counts alone do not make tags: a list of labels per text stays multi-label, and a file of single
    words and their labels stays classification."""
    rows = _records(SENTENCES)
    topics = [{"text": " ".join(r["tokens"][:2]), "labels": ["politics", "sport"][: 1 + i % 2]}
              for i, r in enumerate(rows)]
    topics[0]["labels"] = ["politics", "sport"]  # as many labels as words, in half the rows
    _write_jsonl(tmp_path / "topics.jsonl", topics)
    draft = draft_spec(str(tmp_path / "topics.jsonl"), fit_length=False)
    assert draft.spec["model"]["task"] == "multi-label-classification"
    lexicon = pd.DataFrame({"word": [w for r in rows for w in r["tokens"]][:60],
                            "label": [t for r in rows for t in r["pos_tags"]][:60]}).drop_duplicates("word")
    lexicon.to_csv(tmp_path / "lexicon.csv", index=False)
    draft = draft_spec(str(tmp_path / "lexicon.csv"), fit_length=False)
    assert draft.spec["model"]["task"] == "sequence-classification"


def test_a_datasets_dataset_is_drafted_from_python_with_its_tag_names(tmp_path):
    """From Python a user holds a `datasets.Dataset` (CoNLL-2003 as `load_dataset` gives it): drafted as the
    search reads one passed to it, its tag classes by name, and the draft runs on it; a DatasetDict names the
    split to pass."""
    datasets = pytest.importorskip("datasets")
    from autopeft.api import resolve
    from autopeft.errors import UserError
    from autopeft.tasks.data import load_task_data
    from autopeft.tasks.draft import draft_spec

    names = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    rows = {"tokens": [["Peter", "Blackburn", "went", "to", "Brussels"], ["Anna", "lives", "in", "Paris"],
                       ["Berlin", "is", "big"], ["Maria", "Lopez", "visited", "Madrid", "today"]] * 5,
            "ner_tags": [[1, 2, 0, 0, 3], [1, 0, 0, 3], [3, 0, 0], [1, 2, 0, 3, 0]] * 5}
    features = datasets.Features({"tokens": datasets.Sequence(datasets.Value("string")),
                                  "ner_tags": datasets.Sequence(datasets.ClassLabel(names=names))})
    dataset = datasets.Dataset.from_dict(rows, features=features)
    draft = draft_spec(dataset, fit_length=False)
    assert draft.spec["model"]["task"] == "token-classification"
    assert draft.spec["data"]["text_columns"] == ["tokens"] and draft.spec["data"]["label_column"] == "ner_tags"
    assert draft.spec["objectives"][0]["name"] == "entity_f1"
    # the rows passed are written under output_dir: here the test's folder, not the one the tests run from
    resolved, _ = resolve({**draft.spec, "output_dir": str(tmp_path / "runs")}, data={"train": dataset},
                          name="drafted", base_dir=tmp_path)
    data = load_task_data(resolved.data, resolved.model, resolved.seed)
    assert data.label_names == names  # the dataset's class order, the head's
    with pytest.raises(UserError, match=r"^train: a DatasetDict holds several splits \(train\); pass one"):
        draft_spec(datasets.DatasetDict({"train": dataset}))
