"""Spec validation: each bad field is reported with its own path and a hint, and the CLI exits non-zero."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from autopeft.errors import SpecError, UserError
from autopeft.spec import load_spec, parse_spec
from tests.conftest import DEMO_DATA, tiny_spec, write_spec


def _with(spec: dict, dotted: str, value) -> dict:
    node = spec
    *parents, leaf = dotted.split(".")
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    if value is _DELETE:
        del node[leaf]
    else:
        node[leaf] = value
    return spec


_DELETE = object()

BAD_FIELDS = [
    ("budget.trials", 0, "budget.trials: Input should be greater than or equal to 1"),
    ("budget.steps_per_trial", _DELETE, "budget: give exactly one of steps_per_trial and epochs_per_trial"),
    ("objectives.0.name", "bleu", "objectives[0].name: unknown measurement 'bleu'"),
    ("objectives.0.direction", "up", "objectives[0].direction: Input should be 'maximize' or 'minimize'"),
    ("data.text_columns", _DELETE, "data.text_columns: required field is missing"),
    ("data.max_length", 2, "data.max_length: Input should be greater than or equal to 8"),
    ("data.eval", _DELETE, "data: give both train and eval files (or a dataset)"),
    ("workers.parallel", 0, "workers.parallel: Input should be greater than or equal to 1"),
    ("workers.gpus", 1, "workers.gpus: unknown field"),
    ("sampler", "grid", "sampler: Input should be 'tpe', 'random', 'nsga2', 'gp' or 'known-cost'"),
    ("model.task", "translation", "model.task: Input should be 'sequence-classification'"),
]


@pytest.mark.parametrize("field,value,message", BAD_FIELDS, ids=[f for f, _, _ in BAD_FIELDS])
def test_each_bad_field_has_its_own_message(tmp_path, field, value, message):
    spec = _with(tiny_spec(tmp_path), field, value)
    with pytest.raises(SpecError) as caught:
        parse_spec(spec, "spec.yaml")
    assert any(p.startswith(message) for p in caught.value.problems), caught.value.problems
    assert len(caught.value.problems) == 1, caught.value.problems


@pytest.mark.parametrize("missing", ["objectives", "budget", "model"])
def test_a_missing_field_says_what_to_write_and_the_example_is_accepted(tmp_path, missing):
    # A first spec written from memory: the message's example, pasted in as it reads, must make the spec valid
    # (except for a model path a user replaces with their own, which the example names for MiniLM here).
    import yaml

    spec = tiny_spec(tmp_path)
    del spec[missing]
    with pytest.raises(SpecError) as caught:
        parse_spec(spec)
    (problem,) = caught.value.problems
    assert problem.startswith(f"{missing}: required field is missing (e.g. {missing}: ")
    example = problem.split("(e.g. ", 1)[1].split(" — ")[0].removesuffix(")")
    spec.update(yaml.safe_load(example))
    parse_spec(spec)


MISWRITTEN_FIELDS = [
    ("budget.trails", "budget.trails: unknown field; did you mean trials? (else remove it)"),
    ("objectives.0.directon", "objectives[0].directon: unknown field; did you mean direction? (else remove it)"),
    ("traning", "traning: unknown field; did you mean training? (else remove it)"),
    ("steps_per_trial", "steps_per_trial: unknown field here; it belongs under budget"),
    ("budget.batch_size", "budget.batch_size: unknown field here; it belongs under training"),
    ("budget.seed", "budget.seed: unknown field here; it belongs at the top level"),
    ("workers.gpus", "workers.gpus: unknown field; remove it or check its spelling"),
    ("constraints.0.maximum", "constraints[0].maximum: unknown field; did you mean max? (else remove it)"),
    ("training.learning_rate", "training.learning_rate: unknown field here; learning_rate is searched, so it "
                               "belongs in the search space: a range under its parameters, or one value under its "
                               "fixed (README, Concepts: Search space)"),
]


@pytest.mark.parametrize("field,message", MISWRITTEN_FIELDS, ids=[f for f, _ in MISWRITTEN_FIELDS])
def test_a_misspelt_or_misplaced_field_is_named_with_the_one_meant(tmp_path, field, message):
    with pytest.raises(SpecError) as caught:
        parse_spec(_with(tiny_spec(tmp_path), field, 1))
    assert caught.value.problems == [message]


def test_a_list_written_as_one_value_is_shown_as_a_list_or_taken_where_it_can_only_mean_one(tmp_path):
    """`text_columns: sentence` means one column, as `label_column: label` does; `objectives: accuracy` cannot be
    read as the two objectives a search needs, so the problem shows the shape to write."""
    assert parse_spec(_with(tiny_spec(tmp_path), "data.text_columns", "sentence")).data.text_columns == ["sentence"]
    assert parse_spec(_with(tiny_spec(tmp_path), "data.text_columns", 0)).data.text_columns == ["0"]
    with pytest.raises(SpecError) as caught:
        parse_spec(_with(tiny_spec(tmp_path), "objectives", "accuracy"))
    assert caught.value.problems == ["objectives: Input should be a valid list (got 'accuracy'); e.g. objectives: "
                                     "[{name: accuracy}, {name: trainable_params}]"]


def test_all_problems_are_reported_at_once(tmp_path):
    spec = tiny_spec(tmp_path, sampler="grid")
    spec["budget"]["trials"] = -1
    with pytest.raises(SpecError) as caught:
        parse_spec(spec)
    assert len(caught.value.problems) == 2


def test_constraint_needs_a_bound(tmp_path):
    with pytest.raises(SpecError, match=r"constraints\[0\]: give a bound"):
        parse_spec(tiny_spec(tmp_path, constraints=[{"name": "trainable_percent"}]))


@pytest.mark.parametrize("field,value,message", [
    ("data.train", "missing.tsv", "data.train: file not found"),
    ("model.name_or_path", "./no-such-model", "model.name_or_path: model folder"),
    ("model.name_or_path", "python-package:no_such_module_xyz", "model.name_or_path: python package module"),
    ("search_space", "no-such-space", "search_space: no file 'no-such-space'"),
])
def test_resolution_errors_name_the_field(tmp_path, field, value, message):
    spec_file = write_spec(tmp_path, _with(tiny_spec(tmp_path), field, value))
    with pytest.raises(SpecError) as caught:
        load_spec(spec_file)
    assert any(p.startswith(message) for p in caught.value.problems), caught.value.problems


def test_valid_spec_resolves_paths_and_inlines_the_space(tmp_path):
    spec = load_spec(write_spec(tmp_path, tiny_spec(tmp_path)))
    assert isinstance(spec.search_space, dict) and spec.search_space["name"] == "lora"
    assert spec.model.name_or_path.startswith("/")
    assert spec.objectives[1].resolved_direction == "minimize"


def test_a_spec_without_a_name_takes_its_files_stem_with_or_without_a_warm_start(tmp_path):
    """The warm-start sources were once read in a loop that reused the spec's source name, so a nameless spec
    with `warm_start:` failed with a TypeError instead of taking its file's stem."""
    spec = tiny_spec(tmp_path, warm_start=["earlier@sqlite:///earlier.db"])
    del spec["name"]
    loaded = load_spec(write_spec(tmp_path, spec, "nli-probe.yaml"))
    assert loaded.name == "nli-probe"
    assert loaded.warm_start[0].storage == f"sqlite:///{(Path.cwd() / 'earlier.db').resolve()}"


def test_a_spec_naming_no_database_uses_the_one_every_command_uses(tmp_path, monkeypatch):
    """`$AUTOPEFT_STORAGE` is where `search show`, `export` and the dashboard look when no --storage is given; a
    spec that names no database runs there too, and one that names its own keeps it."""
    spec = tiny_spec(tmp_path)
    named = spec.pop("storage")
    monkeypatch.setenv("AUTOPEFT_STORAGE", f"sqlite:///{tmp_path / 'shared.db'}")
    assert load_spec(write_spec(tmp_path, spec, "a.yaml")).storage == f"sqlite:///{tmp_path / 'shared.db'}"
    assert load_spec(write_spec(tmp_path, {**spec, "storage": named}, "b.yaml")).storage == named
    monkeypatch.delenv("AUTOPEFT_STORAGE")
    monkeypatch.chdir(tmp_path)
    assert load_spec(write_spec(tmp_path, spec, "c.yaml")).storage == f"sqlite:///{tmp_path / 'autopeft.db'}"


def test_a_number_written_without_a_dot_is_a_number_in_a_spec_and_its_space(tmp_path):
    """PyYAML reads `1e-3` as text (YAML 1.1 wants `1.0e-3`); typed spec fields coerced it, but a space's fixed
    values and categorical choices kept the text, and the front table failed on the trial's learning rate."""
    from autopeft.results.views import describe_config
    from autopeft.search.space import SearchSpace

    (tmp_path / "space.yaml").write_text(
        "name: mine\nparameters:\n  lora.r: {type: categorical, choices: [2, 4]}\n"
        "  lora.alpha_over_r: {type: categorical, choices: [1e0, 2e0]}\n"
        "fixed: {method: lora, learning_rate: 1e-3}\n")
    loaded = load_spec(write_spec(tmp_path, tiny_spec(tmp_path, search_space="space.yaml")))
    assert loaded.search_space["fixed"]["learning_rate"] == 0.001
    assert loaded.search_space["parameters"]["lora.alpha_over_r"]["choices"] == [1.0, 2.0]
    space = SearchSpace.from_dict(loaded.search_space, 6, hidden_size=384)
    config = space.suggest(optuna.create_study().ask()).config
    assert "lr 1.0e-03" in describe_config(config)


def test_hub_names_are_accepted_without_a_local_folder(tmp_path):
    spec = load_spec(write_spec(tmp_path, _with(tiny_spec(tmp_path), "model.name_or_path", "prajjwal1/bert-tiny")))
    assert spec.model.name_or_path == "prajjwal1/bert-tiny"


def test_cli_exits_non_zero_with_one_line(tmp_path):
    spec_file = write_spec(tmp_path, _with(tiny_spec(tmp_path), "budget.trials", 0))
    done = subprocess.run([sys.executable, "-m", "autopeft.cli", "search", "run", str(spec_file)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: invalid spec") and "budget.trials" in lines[0]


@pytest.mark.parametrize("args,needle", [
    (["search", "run", "no-such-spec.yaml"], "spec file not found"),
    (["search", "show", "nobody"], "no search named 'nobody'"),
    (["search", "resume", "nobody"], "no search named 'nobody'"),
    (["export", "nobody", "--out", "x"], "no search named 'nobody'"),
])
def test_cli_bad_input_is_one_line(tmp_path, args, needle):
    storage = ["--storage", f"sqlite:///{tmp_path / 'x.db'}"] if args[0] != "search" or args[1] != "run" else []
    (tmp_path / "x.db").touch()  # a database without the search (a missing file is its own error)
    done = subprocess.run([sys.executable, "-m", "autopeft.cli", *args, *storage], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], done.stderr


def test_a_bad_spec_is_answered_before_torch_is_imported(tmp_path):
    """A mistyped field is refused in the time it takes to read the spec, not after seconds of importing torch,
    transformers and peft (which the search needs and the check does not)."""
    spec_file = write_spec(tmp_path, _with(tiny_spec(tmp_path), "budget.trials", 0))
    script = ("import sys\nfrom autopeft.api import resume_search, run_search\nfrom autopeft.errors import UserError\n"
              f"for call in (lambda: run_search({str(spec_file)!r}), lambda: resume_search('nobody', storage="
              f"'sqlite:///{tmp_path / 'none.db'}')):\n"
              "    try:\n        call()\n    except UserError as error:\n        print(type(error).__name__)\n"
              "print('torch' in sys.modules, 'autopeft.search.launch' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["SpecError", "UserError", "False", "False"], done.stdout + done.stderr


def test_data_can_come_from_a_datasets_dataset(tmp_path):
    """The `datasets` path is real: a local dataset folder loads through `datasets.load_dataset` offline."""
    from autopeft.tasks.data import load_task_data

    folder = tmp_path / "tiny-dataset"
    folder.mkdir()
    (folder / "train.csv").write_text("text,label\ngood film,pos\nbad film,neg\nfine film,pos\n")
    (folder / "validation.csv").write_text("text,label\ngreat film,pos\nawful film,neg\n")
    spec = tiny_spec(tmp_path)
    spec["data"] = {"dataset": {"name": str(folder)}, "text_columns": ["text"], "label_column": "label"}
    loaded = load_spec(write_spec(tmp_path, spec))
    data = load_task_data(loaded.data, loaded.model, seed=0)
    assert data.label_names == ["neg", "pos"]
    assert len(data.train) == 3 and list(data.eval.labels) == [1, 0]


def test_a_dataset_with_a_train_split_alone_holds_out_its_evaluation_rows(tmp_path):
    """Many datasets ship one split: data.eval_fraction holds rows out of it; without it, the refusal says so."""
    from autopeft.tasks.data import load_task_data

    folder = tmp_path / "one-split"
    folder.mkdir()
    rows = [f"{word} film,{label}" for word, label in [("good", "pos"), ("bad", "neg")] * 10]
    (folder / "train.csv").write_text("text,label\n" + "\n".join(rows) + "\n")
    spec = tiny_spec(tmp_path)
    spec["data"] = {"dataset": {"name": str(folder)}, "text_columns": ["text"], "label_column": "label"}
    loaded = load_spec(write_spec(tmp_path, spec))
    with pytest.raises(UserError, match=r"data\.dataset: split 'validation' not in \['train'\]; or hold out part "
                                        r"of the training rows to evaluate on: data\.eval_fraction: 0\.2"):
        load_task_data(loaded.data, loaded.model, seed=0)
    spec["data"]["eval_fraction"] = 0.2
    loaded = load_spec(write_spec(tmp_path, spec))
    data = load_task_data(loaded.data, loaded.model, seed=0)
    assert len(data.train) == 16 and sorted(data.eval.labels) == [0, 0, 1, 1]  # two of each label's ten
    spec["data"]["dataset"]["eval_split"] = "test"
    with pytest.raises(SpecError, match="give it or an evaluation file"):
        load_spec(write_spec(tmp_path, spec))


def _classed_dataset(folder, eval_labels: list[int]):
    """A local dataset whose card declares the label a class column, as GLUE's do (0 'sad', 1 'happy')."""
    import pandas as pd

    (folder / "data").mkdir(parents=True)
    (folder / "README.md").write_text(
        "---\ndataset_info:\n  features:\n  - name: text\n    dtype: string\n  - name: label\n    dtype:\n"
        "      class_label:\n        names:\n          '0': sad\n          '1': happy\nconfigs:\n"
        "- config_name: default\n  data_files:\n  - split: train\n    path: data/train.parquet\n"
        "  - split: validation\n    path: data/validation.parquet\n---\n")
    pd.DataFrame({"text": ["good", "bad", "fine", "awful"], "label": [1, 0, 1, 0]}).to_parquet(
        folder / "data" / "train.parquet")
    pd.DataFrame({"text": ["nice", "poor"], "label": eval_labels}).to_parquet(folder / "data" / "validation.parquet")
    return folder


def test_a_datasets_class_column_keeps_its_names_and_their_order_and_a_corrected_file_is_read_again(tmp_path):
    """The head's labels are the class column's names in its order (0 is 'sad', though 'happy' sorts first). The
    folder is then rewritten with a file of the same size, one row now unlabelled (-1, as in GLUE's test splits):
    it is read afresh (datasets' own cache would hand back the first file) and the row is named, not trained or
    scored as a class."""
    import pandas as pd

    from autopeft.tasks.data import load_task_data

    spec = tiny_spec(tmp_path)
    spec["data"] = {"dataset": {"name": str(_classed_dataset(tmp_path / "classed", [1, 0]))},
                    "text_columns": ["text"]}
    loaded = load_spec(write_spec(tmp_path, spec))
    data = load_task_data(loaded.data, loaded.model, seed=0)
    assert data.label_names == ["sad", "happy"] and list(data.eval.labels) == [1, 0]

    evaluation = tmp_path / "classed" / "data" / "validation.parquet"
    size = evaluation.stat().st_size
    pd.DataFrame({"text": ["nice", "poor"], "label": [1, -1]}).to_parquet(evaluation)
    assert evaluation.stat().st_size == size
    with pytest.raises(UserError, match=r"data.label_column: column 'label' is empty in data row 2 of split "
                                        r"'validation'"):
        load_task_data(loaded.data, loaded.model, seed=0)


def test_a_merge_key_may_be_overridden_but_a_key_written_twice_is_refused():
    import yaml

    from autopeft.spec import parse_yaml

    assert parse_yaml("base: &b {r: 4, lr: 1}\nmine:\n  <<: *b\n  r: 8\n")["mine"] == {"r": 8, "lr": 1}
    assert parse_yaml("{1: a, '1': b}") == {1: "a", "1": "b"}  # a number and a text are two keys
    with pytest.raises(yaml.YAMLError, match="'r' is written twice"):
        parse_yaml("space:\n  r: 4\n  r: 8\n")


def test_paths_beginning_with_the_home_folder_are_read_as_a_shell_reads_them(tmp_path, monkeypatch):
    """`~/data/train.tsv` was joined to the spec's folder as a folder named "~" (file not found), and
    `sqlite:///~/results.db` would have made one."""
    from autopeft.spec import normalise_storage_url

    home = tmp_path / "home"
    (home / "data").mkdir(parents=True)
    for name in ("train.tsv", "dev.tsv"):
        shutil.copy(DEMO_DATA / name, home / "data" / name)
    monkeypatch.setenv("HOME", str(home))
    spec = tiny_spec(tmp_path)
    spec["data"].update(train="~/data/train.tsv", eval="~/data/dev.tsv")
    spec.update(storage="sqlite:///~/results.db", output_dir="~/runs")
    loaded = load_spec(write_spec(tmp_path, spec))
    assert loaded.data.train == str(home / "data" / "train.tsv") and loaded.data.eval == str(home / "data" / "dev.tsv")
    assert loaded.storage == f"sqlite:///{home / 'results.db'}" and loaded.output_dir == str(home / "runs")
    assert normalise_storage_url("sqlite:///~/other.db") == f"sqlite:///{home / 'other.db'}"  # --storage too
