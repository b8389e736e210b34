"""Data as people have it: header-less GLUE-style files, byte-order marks, 1-based and string labels, labels
written "1" / " 1" / "1.0", empty cells, subsets larger than the file, the positive class's F1, and the eval rows
an export records. Small files written here from the bundled SST-2 sample, read with the real MiniLM tokenizer
through `load_task_data`."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from autopeft.errors import SpecError, UserError
from autopeft.results.export import EVAL_ROWS_FILE, write_eval_rows
from autopeft.spec import SearchSpec, load_spec, parse_spec
from autopeft.tasks.data import TaskData, check_metrics_fit, load_task_data, positive_index
from tests.conftest import DEMO_DATA, ONE_AT_A_TIME, run_cli, tiny_spec, write_spec
from workers.training import classification_metrics

BOM = "\ufeff"


def _sentences(count: int, start: int = 0) -> list[str]:
    """Real SST-2 sentences (no tabs in them, so they sit in a TSV as they are)."""
    with open(DEMO_DATA / "train.tsv", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [r["sentence"].strip() for r in rows[start:start + count]]


def _write_lines(path: Path, lines: list[str], bom: bool = False) -> str:
    path.write_text((BOM if bom else "") + "\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def _table(path: Path, labels: list[str], header: str | None = "sentence\tlabel", start: int = 0,
           separator: str = "\t", bom: bool = False) -> str:
    """A file of sentence / label rows; ``header`` None: no header line, as GLUE ships some files."""
    texts = _sentences(len(labels), start)
    if separator == ",":  # SST-2 sentences have commas: quoted, as a CSV writer quotes them
        texts = ['"' + text.replace('"', '""') + '"' for text in texts]
    rows = [f"{text}{separator}{label}" for text, label in zip(texts, labels)]
    return _write_lines(path, ([] if header is None else [header]) + rows, bom)


def _load(tmp_path: Path, train: str, evaluation: str, **data) -> tuple[SearchSpec, TaskData]:
    """The spec through YAML (so ints there are YAML ints) and the data through the real tokenizer."""
    spec = tiny_spec(tmp_path)
    spec["data"] = {"train": train, "eval": evaluation, "text_columns": ["sentence"], "max_length": 32, **data}
    loaded = load_spec(write_spec(tmp_path, spec))
    return loaded, load_task_data(loaded.data, loaded.model, loaded.seed)


def _refused(tmp_path: Path, train: str, evaluation: str, **data) -> str:
    with pytest.raises(UserError) as caught:
        _load(tmp_path, train, evaluation, **data)
    message = str(caught.value)
    assert "\n" not in message
    return message


# --- headers, positions and byte-order marks -------------------------------------------------------------------


@pytest.mark.parametrize("text_column,label_column", [(0, 1), ("0", "1")])
def test_a_headerless_tsv_keeps_its_first_row_and_names_columns_by_position(tmp_path, text_column, label_column):
    train = _table(tmp_path / "train.tsv", ["1", "0", "1", "0", "1"], header=None)
    evaluation = _table(tmp_path / "dev.tsv", ["0", "1"], header=None, start=10)
    spec, data = _load(tmp_path, train, evaluation, header=False, text_columns=[text_column],
                       label_column=label_column)
    assert spec.data.text_columns == ["0"] and spec.data.label_column == "1"
    assert len(data.train) == 5 and len(data.eval) == 2  # the first line is a row, not a header
    assert data.label_names == ["0", "1"] and data.train.labels.tolist() == [1, 0, 1, 0, 1]


def test_a_headerless_file_read_with_a_header_says_to_set_header_false(tmp_path):
    train = _table(tmp_path / "train.tsv", ["1", "0", "1"], header=None)
    message = _refused(tmp_path, train, train)
    assert message.startswith("data.text_columns: column 'sentence' not in the train data; its columns are [")
    assert "data.header: false" in message  # the "header" holds a label, 1: it looks like data


@pytest.mark.parametrize("same_line_in_both", [True, False])
def test_a_header_line_read_with_header_false_is_refused_not_trained_on(tmp_path, same_line_in_both):
    """It would be an example whose label, 'label', is a class of its own. Seen by both files beginning with the
    same line, or by a label that is text over a column of numbers."""
    train = _table(tmp_path / "train.tsv", ["1", "0", "1", "0"])
    header = "sentence\tlabel" if same_line_in_both else None
    evaluation = _table(tmp_path / "dev.tsv", ["0", "1"], header=header, start=10)
    message = _refused(tmp_path, train, evaluation, header=False, text_columns=[0], label_column=1)
    assert message.startswith(f"data.header: false, but the first line of {train} (['sentence', 'label']) looks "
                              "like a header line")
    assert ("the evaluation file begins with it too" in message) == same_line_in_both
    assert "remove data.header and name the columns as that line does" in message


def test_an_evaluation_file_cut_from_the_training_file_is_not_taken_for_a_header(tmp_path):
    """Both header-less files begin with the same example, whose label recurs: data, not column names."""
    train = _table(tmp_path / "train.tsv", ["1", "0", "1", "0"], header=None)
    evaluation = _table(tmp_path / "dev.tsv", ["1", "0"], header=None)
    _, data = _load(tmp_path, train, evaluation, header=False, text_columns=[0], label_column=1)
    assert len(data.train) == 4 and len(data.eval) == 2


def _broken_files(tmp_path: Path) -> dict[str, tuple[str, str]]:
    """Files as people save them wrongly: each with the file name it is given and the words its refusal needs."""
    texts = _sentences(6)
    rows = [f"{text}\t{i % 2}" for i, text in enumerate(texts)]
    records = [json.dumps({"sentence": text, "label": i % 2}) for i, text in enumerate(texts)]
    records[3] = records[3][:-1]  # the closing brace lost
    latin = ("sentence\tlabel\n" + "\n".join(rows[:2]) + "\nun caf\u00e9 charmant\t1\n").encode("latin-1")
    return {
        "tab-separated named .csv": ("\n".join(["sentence\tlabel", *rows, "a\tb\tc"]), "looks tab-separated: "
                                     "name it .tsv"),
        "semicolons": ("\n".join(["sentence;label", "good;1", "bad;0", "x;y;z"]), "looks semicolon-separated"),
        "an unquoted comma": ("\n".join(["sentence,label", "good,1", "good, really,1"]), 'in double quotes ("a, b")'),
        "a record without its brace": ("\n".join(records), "line 4 is not a JSON record (Expecting ',' delimiter"),
        "latin-1": (latin, "line 4 is not UTF-8 (byte 0xe9); save the file as UTF-8"),
    }


@pytest.mark.parametrize("case", ["tab-separated named .csv", "semicolons", "an unquoted comma",
                                  "a record without its brace", "latin-1"])
def test_a_file_that_cannot_be_read_is_named_by_its_line_and_the_change_that_reads_it(tmp_path, case):
    """pandas' and json's own words give a byte position or a tokenizer's state; the user has a spreadsheet."""
    content, words = _broken_files(tmp_path)[case]
    suffix = {"a record without its brace": ".jsonl", "latin-1": ".tsv"}.get(case, ".csv")
    path = tmp_path / f"train{suffix}"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    message = _refused(tmp_path, str(path), str(path))
    # Read as one column, a semicolon file is refused where its columns are looked for.
    start = ("data.text_columns: column 'sentence' not in" if case == "semicolons"
             else f"data.train: cannot read {path}: ")
    assert message.startswith(start), message
    assert words in message, message


def test_a_folder_given_as_a_data_file_is_named_as_a_folder(tmp_path):
    spec = tiny_spec(tmp_path)
    spec["data"]["train"] = str(tmp_path)
    with pytest.raises(SpecError, match=rf"data.train: {re.escape(str(tmp_path))} is a folder; name a file in it"):
        load_spec(write_spec(tmp_path, spec))


def test_naming_positions_in_a_file_with_a_header_hints_at_header_false(tmp_path):
    train = _table(tmp_path / "train.tsv", ["1", "0", "1"])
    message = _refused(tmp_path, train, train, text_columns=[0])
    assert message.startswith("data.text_columns: column '0' not in the train data; its columns are "
                              "['sentence', 'label']")
    assert "set data.header: false" in message


def test_names_in_a_headerless_file_say_that_columns_go_by_position(tmp_path):
    train = _table(tmp_path / "train.tsv", ["1", "0", "1"], header=None)
    message = _refused(tmp_path, train, train, header=False)
    assert message.startswith("data.text_columns: column 'sentence' not in the train data; its columns are "
                              "['0', '1']; with data.header: false the columns are named by position")


def test_header_false_is_refused_for_files_whose_records_name_their_fields(tmp_path):
    records = tmp_path / "train.jsonl"
    records.write_text('{"sentence": "good", "label": 1}\n{"sentence": "bad", "label": 0}\n')
    spec = tiny_spec(tmp_path)
    spec["data"] = {"train": str(records), "eval": str(records), "text_columns": ["sentence"], "header": False}
    with pytest.raises(SpecError) as caught:
        load_spec(write_spec(tmp_path, spec))
    assert caught.value.problems[0].startswith("data.header: false applies to .tsv and .csv files, and data.train "
                                               "is train.jsonl")


@pytest.mark.parametrize("data,model,problem", [
    ({"dataset": {"name": "glue", "config": "mrpc"}, "header": False}, {},
     "data.header: false applies to .tsv and .csv files; a dataset names its columns; remove it"),
    ({"label_values": [0, 1]}, {"task": "sequence-regression"},
     "data.label_values: only a classification task has labels; remove it"),
    ({"label_values": [1, "1.0", 0]}, {}, "data.label_values: ['1'] given more than once"),
    ({"label_values": ["neg", "pos"], "positive_label": "yes"}, {},
     "data.positive_label: 'yes' is not one of data.label_values ['neg', 'pos']"),
])
def test_data_options_that_cannot_fit_are_refused_with_the_spec(tmp_path, data, model, problem):
    spec = tiny_spec(tmp_path)
    spec["data"] = {**{k: v for k, v in spec["data"].items() if "dataset" not in data or k not in ("train", "eval")},
                    **data}
    spec["model"].update(model)
    if model:
        spec["objectives"] = [{"name": "spearman"}]
    with pytest.raises(SpecError) as caught:
        parse_spec(spec)
    assert [p for p in caught.value.problems if p.startswith(problem)], caught.value.problems


@pytest.mark.parametrize("suffix", [".tsv", ".csv", ".jsonl"])
def test_a_byte_order_mark_stays_out_of_the_first_column_name(tmp_path, suffix):
    labels = ["1", "0", "1", "0"]
    if suffix == ".jsonl":
        lines = [json.dumps({"sentence": s, "label": int(v)}) for s, v in zip(_sentences(4), labels)]
        train = _write_lines(tmp_path / "train.jsonl", lines, bom=True)
    else:
        separator = "\t" if suffix == ".tsv" else ","
        train = _table(tmp_path / f"train{suffix}", labels, header=f"sentence{separator}label", separator=separator,
                       bom=True)
    _, data = _load(tmp_path, train, train)
    assert len(data.train) == 4 and data.train.labels.tolist() == [1, 0, 1, 0]


def test_a_byte_order_mark_in_a_headerless_file_stays_out_of_the_first_cell(tmp_path):
    train = _write_lines(tmp_path / "train.tsv", ["1\tgood", "0\tbad", "1\tfine"], bom=True)
    _, data = _load(tmp_path, train, train, header=False, text_columns=[1], label_column=0)
    assert data.label_names == ["0", "1"] and data.train.labels.tolist() == [1, 0, 1]


# --- labels ------------------------------------------------------------------------------------------------------


def test_one_based_integer_labels_take_head_indices_in_numeric_order(tmp_path):
    labels = ["1", "2", "3", "4", "10", "2", "3", "1"]
    train = _table(tmp_path / "train.tsv", labels)
    _, data = _load(tmp_path, train, _table(tmp_path / "dev.tsv", ["4", "10"], start=20))
    assert data.label_names == ["1", "2", "3", "4", "10"]  # not "1", "10", "2", ... as text sorts them
    assert data.train.labels.tolist() == [0, 1, 2, 3, 4, 1, 2, 0]
    assert data.eval.labels.tolist() == [3, 4]
    assert data.positive_index is None  # more than two labels: no positive class


def test_one_label_written_three_ways_is_one_label(tmp_path):
    train = _table(tmp_path / "train.csv", ["1", " 1", "1.0", "0", "0.0", "01"], header="sentence,label",
                   separator=",")
    _, data = _load(tmp_path, train, train)
    assert data.label_names == ["0", "1"]
    assert data.train.labels.tolist() == [1, 1, 1, 0, 0, 1]


def test_string_labels_are_ordered_alphabetically(tmp_path):
    train = _table(tmp_path / "train.tsv", ["positive", "negative", "neutral", "positive"])
    _, data = _load(tmp_path, train, train)
    assert data.label_names == ["negative", "neutral", "positive"]
    assert data.train.labels.tolist() == [2, 0, 1, 2]


def test_label_values_give_the_exact_head_order(tmp_path):
    train = _table(tmp_path / "train.tsv", ["pos", "neg", "pos", "neg"])
    _, data = _load(tmp_path, train, train, label_values=["pos", "neg", "mixed"])
    assert data.label_names == ["pos", "neg", "mixed"]  # a declared label the data lacks still gets its output
    assert data.train.labels.tolist() == [0, 1, 0, 1]
    numbers = _table(tmp_path / "numbers.tsv", ["1", "0", "1.0"])
    _, data = _load(tmp_path, numbers, numbers, label_values=[1, 0])  # YAML ints are the labels "1" and "0"
    assert data.label_names == ["1", "0"] and data.train.labels.tolist() == [0, 1, 0]
    assert data.positive_index == 0  # "1" stays the positive class of 0/1, wherever it sits


def test_scores_with_fractions_are_refused_as_classes_and_pointed_to_regression(tmp_path):
    # An STS-B-like score column given to a classification: every distinct score would be a class of its own.
    scores = [f"{i * 0.173:.3f}" for i in range(24)]
    train = _table(tmp_path / "train.tsv", scores)
    message = _refused(tmp_path, train, train)
    assert message.startswith("data.label_column: 24 distinct numbers with fractions (0, 1.038, ")
    assert "set model.task: sequence-regression" in message and "data.label_values" in message
    # Half-star ratings are classes: ten of them, with fractions, load as ten labels.
    stars = [f"{(i % 10 + 1) / 2:.1f}" for i in range(24)]
    stars_file = _table(tmp_path / "stars.tsv", stars)
    _, data = _load(tmp_path, stars_file, stars_file)
    assert len(data.label_names) == 10
    # Listed in data.label_values, the scores are the user's own classes.
    _, data = _load(tmp_path, train, train, label_values=scores)
    assert len(data.label_names) == 24 and data.train.labels.tolist() == list(range(24))


def test_a_label_outside_label_values_is_named(tmp_path):
    train = _table(tmp_path / "train.tsv", ["pos", "neg", "pos"])
    evaluation = _table(tmp_path / "dev.tsv", ["pos", "meh"], start=10)
    message = _refused(tmp_path, train, evaluation, label_values=["pos", "neg"])
    assert message.startswith(f"data.label_values: {evaluation} has labels ['meh'] that are not in "
                              f"data.label_values ['pos', 'neg']")


def test_label_values_written_as_yaml_booleans_are_refused_with_the_fix(tmp_path):
    train = _table(tmp_path / "train.tsv", ["yes", "no"])
    spec = tiny_spec(tmp_path)
    spec["data"] = {"train": train, "eval": train, "text_columns": ["sentence"], "label_values": "PLACEHOLDER"}
    path = write_spec(tmp_path, spec)
    path.write_text(path.read_text().replace("PLACEHOLDER", "[no, yes]"))  # unquoted: YAML booleans
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert caught.value.problems[0].startswith("data.label_values: unquoted yes/no/true/false/on/off is a boolean")


def test_an_empty_label_cell_is_named_with_its_row(tmp_path):
    train = _table(tmp_path / "train.tsv", ["1", "0", "1", " ", "0", ""])
    message = _refused(tmp_path, train, train)
    assert message == (f"data.label_column: column 'label' is empty in data row 4 of {train} (counted from 1 after "
                       f"the header line) (and 1 more rows); fill it in or remove the row")


def test_an_empty_text_cell_is_named_with_its_row(tmp_path):
    train = _write_lines(tmp_path / "train.tsv", ["good\t1", "\t0", "fine\t1"])
    message = _refused(tmp_path, train, train, header=False, text_columns=[0], label_column=1)
    assert message == (f"data.text_columns: column '0' is empty in data row 2 of {train}; fill it in or remove "
                       f"the row")


# --- subsets and the rows they use ------------------------------------------------------------------------------


def test_a_subset_larger_than_the_file_is_refused(tmp_path):
    train = _table(tmp_path / "train.tsv", ["1", "0", "1", "0"])
    message = _refused(tmp_path, train, train, train_size=5)
    assert message == (f"data.train_size: 5 rows asked, but {train} has 4 data rows; lower it to at most 4, or "
                       f"remove it to use every row")
    assert _refused(tmp_path, train, train, eval_size=9).startswith("data.eval_size: 9 rows asked")
    _, data = _load(tmp_path, train, train, train_size=4, eval_size=4)  # exactly the file: every row, in order
    assert data.train.labels.tolist() == [1, 0, 1, 0] and data.eval_rows is None


def test_the_eval_rows_are_the_ones_pandas_sample_chose(tmp_path):
    spec, data = _load(tmp_path, str(DEMO_DATA / "train.tsv"), str(DEMO_DATA / "dev.tsv"), train_size=50,
                       eval_size=40)
    dev = pd.read_csv(DEMO_DATA / "dev.tsv", sep="\t", quoting=csv.QUOTE_NONE, dtype=str)
    chosen = dev.sample(n=40, random_state=spec.seed)
    assert data.eval_rows == chosen.index.tolist()
    assert data.eval.labels.tolist() == chosen["label"].astype(int).tolist()  # labels "0"/"1" are head indices
    _, whole = _load(tmp_path, str(DEMO_DATA / "train.tsv"), str(DEMO_DATA / "dev.tsv"), train_size=50)
    assert whole.eval_rows is None and len(whole.eval) == len(dev)


def test_export_writes_the_eval_rows_and_says_so(tmp_path):
    spec, data = _load(tmp_path, str(DEMO_DATA / "train.tsv"), str(DEMO_DATA / "dev.tsv"), train_size=50,
                       eval_size=40)
    folder = tmp_path / "trial-0000"
    folder.mkdir()
    paragraph = write_eval_rows(folder, spec, data.eval_rows)
    written = json.loads((folder / EVAL_ROWS_FILE).read_text())
    assert written == {"eval": str(DEMO_DATA / "dev.tsv"), "rows": data.eval_rows}
    assert f"`{DEMO_DATA / 'dev.tsv'}`: the 40 rows listed in `eval_rows.json`" in paragraph
    dev = pd.read_csv(written["eval"], sep="\t", quoting=csv.QUOTE_NONE, dtype=str)
    assert dev.iloc[written["rows"]]["label"].astype(int).tolist() == data.eval.labels.tolist()
    every_row = tmp_path / "trial-0001"
    every_row.mkdir()
    assert "(every row)" in write_eval_rows(every_row, spec, None)
    assert not (every_row / EVAL_ROWS_FILE).exists()
    unrecorded = write_eval_rows(every_row, spec, None, recorded=False)  # a search stored before rows were kept
    assert "a subset of 40 rows that `data.eval_size` drew with seed 0, which this search did not record" in unrecorded


# --- the positive class and f1 -----------------------------------------------------------------------------------


def test_f1_is_the_positive_class_f1_by_hand():
    labels = np.array([1, 1, 1, 0, 0, 0, 0, 1])
    predictions = np.array([1, 1, 0, 1, 0, 0, 0, 0])
    # Class 1: tp 2, fp 1, fn 2 -> 2*2 / (2*2 + 1 + 2) = 4/7. Class 0: tp 3, fp 2, fn 1 -> 6/9.
    metrics = classification_metrics(predictions, labels, 2)
    assert metrics["f1"] == pytest.approx(4 / 7)
    assert classification_metrics(predictions, labels, 2, positive=0)["f1"] == pytest.approx(6 / 9)
    assert metrics["macro_f1"] == pytest.approx((4 / 7 + 6 / 9) / 2)
    assert classification_metrics(np.zeros(8, dtype=int), labels, 2)["f1"] == 0.0  # the positive never predicted
    assert "f1" not in classification_metrics(np.array([0, 1, 2]), np.array([0, 2, 1]), 3)


@pytest.mark.parametrize("names,chosen,expected", [
    (["0", "1"], None, 1),
    (["1", "0"], None, 0),
    (["False", "True"], None, 1),
    (["true", "false"], None, 0),
    (["YES", "no"], None, 0),
    (["entailment", "not_entailment"], None, 1),  # no convention: the second label in head order
    (["entailment", "not_entailment"], "entailment", 0),
    (["a", "b", "c"], None, None),
])
def test_the_positive_class_defaults(names, chosen, expected):
    assert positive_index(names, chosen) == expected


def test_a_positive_label_must_be_one_of_two_labels(tmp_path):
    train = _table(tmp_path / "train.tsv", ["no", "yes", "no"])
    _, data = _load(tmp_path, train, train)
    assert data.label_names == ["no", "yes"] and data.positive_index == 1
    _, data = _load(tmp_path, train, train, positive_label="no")
    assert data.positive_index == 0
    assert _refused(tmp_path, train, train, positive_label="maybe") == \
        "data.positive_label: 'maybe' is not one of the labels ['no', 'yes']"
    three = _table(tmp_path / "three.tsv", ["a", "b", "c"])
    assert _refused(tmp_path, three, three, positive_label="a").startswith(
        "data.positive_label: a positive class needs exactly two labels, and the data has 3")


def test_f1_as_an_objective_on_three_labels_is_refused_naming_the_objective(tmp_path):
    three = _table(tmp_path / "three.tsv", ["a", "b", "c", "a"])
    spec, data = _load(tmp_path, three, three)
    check_metrics_fit(spec, data)  # accuracy and trainable_params: fine
    with_f1 = load_spec(write_spec(tmp_path, {**tiny_spec(tmp_path), "data": spec.data.model_dump(),
                                              "constraints": [{"name": "f1", "min": 0.5}]}))
    with pytest.raises(UserError) as caught:
        check_metrics_fit(with_f1, data)
    assert str(caught.value).startswith("constraints[0].name: 'f1' is the F1 of the positive class, measured for "
                                        "two labels only, and the data has 3 labels ['a', 'b', 'c']; use macro_f1")
    two = _table(tmp_path / "two.tsv", ["a", "b", "a"])
    _, binary = _load(tmp_path, two, two)
    check_metrics_fit(with_f1, binary)


def test_the_command_line_refuses_f1_on_three_labels_before_creating_a_search(tmp_path, capsys):
    from autopeft.store import storage

    three = _table(tmp_path / "three.tsv", ["a", "b", "c", "a"])
    spec = tiny_spec(tmp_path, objectives=[{"name": "f1"}, {"name": "trainable_params"}])
    spec["data"] = {"train": three, "eval": three, "text_columns": ["sentence"]}
    code, _, err = run_cli(capsys, "search", "run", str(write_spec(tmp_path, spec)), "--executor", "local")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith("error: objectives[0].name: 'f1' is the F1 of the positive class"), err
    assert storage.search_names(storage.open_storage(spec["storage"])) == []


def test_a_search_records_its_eval_rows_and_the_export_reproduces_f1_from_them(tmp_path):
    """A real one-trial search on an eval subset: the study keeps the rows, the export writes them, and the
    exported adapter scored on exactly those rows of the eval file gives the recorded f1 back."""
    import torch
    import yaml

    from autopeft import load_adapter
    from autopeft.models.base import load_base_model
    from autopeft.results.export import export_front
    from autopeft.search.launch import start_search
    from autopeft.store import storage
    from workers.training import predict

    spec = tiny_spec(tmp_path, objectives=[{"name": "f1"}, {"name": "trainable_params"}], constraints=[],
                     budget={"trials": 1, "steps_per_trial": 3}, workers=ONE_AT_A_TIME,
                     training={"batch_size": 16, "eval_batch_size": 64, "cache_frozen_layers": False})
    spec["data"].update(train_size=64, eval_size=48, max_length=32)
    loaded = load_spec(write_spec(tmp_path, spec))
    start_search(loaded, name="rows", executor="local")
    study, stored = storage.load_search(storage.open_storage(loaded.storage), "rows")
    expected = pd.read_csv(DEMO_DATA / "dev.tsv", sep="\t", quoting=csv.QUOTE_NONE, dtype=str).sample(
        n=48, random_state=loaded.seed).index.tolist()
    assert study.user_attrs[storage.EVAL_ROWS] == expected

    folder = export_front(study, stored, tmp_path / "export")[0]
    rows = json.loads((folder / EVAL_ROWS_FILE).read_text())
    assert rows["rows"] == expected and "`eval_rows.json`" in (folder / "README.md").read_text()
    config = yaml.safe_load((folder / "config.yaml").read_text())
    assert config["labels"] == ["0", "1"] and config["positive_label"] == "1"

    # Only the export and the eval file from here on: the listed rows, in their order, as a file of their own.
    dev = pd.read_csv(rows["eval"], sep="\t", quoting=csv.QUOTE_NONE, dtype=str)
    subset = tmp_path / "evaluated.tsv"
    dev.iloc[rows["rows"]].to_csv(subset, sep="\t", index=False, quoting=csv.QUOTE_NONE)
    replay = stored.data.model_copy(update={"eval": str(subset), "eval_size": None})
    data = load_task_data(replay, stored.model, stored.seed)
    model = load_adapter(load_base_model(stored.model, config["labels"]), folder)
    predictions = predict(model, data.eval, batch_size=64, pad_id=0, device=torch.device("cpu"))
    positive = config["labels"].index(config["positive_label"])
    reproduced = classification_metrics(predictions, data.eval.labels, 2, positive=positive)["f1"]
    recorded = json.loads((folder / "metrics.json").read_text())["measurements"]["f1"]
    assert reproduced == pytest.approx(recorded, abs=1e-9)



@pytest.mark.parametrize("max_length", [16, 64])
def test_where_many_examples_are_longer_than_max_length_the_cut_is_named_with_a_length_that_keeps_them(
        tmp_path, max_length):
    """The bundled SST-2 sentences: at 16 tokens a fifth or so are cut (said, with the counts and a max_length
    that keeps 95% whole); at 64 hardly any are (nothing said)."""
    import warnings

    from transformers import AutoTokenizer

    from autopeft.errors import DataWarning

    spec = tiny_spec(tmp_path)
    spec["data"].update(max_length=max_length, train_size=300, eval_size=100)
    loaded = load_spec(write_spec(tmp_path, spec))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_task_data(loaded.data, loaded.model, seed=0)
    notes = [str(w.message) for w in caught if issubclass(w.category, DataWarning)]
    tokenizer = AutoTokenizer.from_pretrained(loaded.model.name_or_path)
    rows = pd.read_csv(DEMO_DATA / "train.tsv", sep="\t", quoting=csv.QUOTE_NONE, dtype=str)
    lengths = np.asarray([len(ids) for ids in tokenizer(rows.sentence.tolist())["input_ids"]])
    if max_length == 64:
        assert notes == [] and (lengths > 64).mean() < 0.05
        return
    assert len(notes) == 1 and all(len(ids) <= 16 for ids in data.train.input_ids)
    cut = re.match(r"data.max_length: ([\d,]+) of 300 training and ([\d,]+) of 100 evaluation examples \((\d+)%\) "
                   r"are longer than 16 tokens and are cut to it .*max_length: (\d+) keeps 95% whole", notes[0])
    assert cut, notes[0]
    assert int(cut.group(4)) % 32 == 0 and (lengths <= int(cut.group(4))).mean() >= 0.9  # the same file, all rows
    assert abs(int(cut.group(1)) / 300 - (lengths > 16).mean()) < 0.1  # the subset's share, near the file's


def test_a_length_advised_for_a_few_examples_is_one_they_fit(tmp_path):
    """One text of twenty longer than max_length: the advice is a length above it that fits that text (a percentile
    interpolated among twenty lengths fell below the cut and advised the max_length already set)."""
    import warnings

    from autopeft.errors import DataWarning

    long_text = " ".join(["a remarkably long sentence about a film"] * 5)
    rows = pd.DataFrame({"sentence": [f"review {i} fine" for i in range(9)] + [long_text], "label": [0, 1] * 5})
    rows.to_csv(tmp_path / "few.csv", index=False)
    rows.assign(sentence=[f"review {i} good" for i in range(10)]).to_csv(tmp_path / "short.csv", index=False)
    spec = tiny_spec(tmp_path)
    spec["data"] = {"train": str(tmp_path / "few.csv"), "eval": str(tmp_path / "short.csv"),
                    "text_columns": ["sentence"], "max_length": 32}
    loaded = load_spec(write_spec(tmp_path, spec))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_task_data(loaded.data, loaded.model, seed=0)
    [note] = [str(w.message) for w in caught if issubclass(w.category, DataWarning)]
    advised = int(re.search(r"max_length: (\d+) keeps 95% whole", note).group(1))
    assert advised > 32 and note.startswith("data.max_length: 1 of 10 training and 0 of 10 evaluation"), note


@pytest.mark.parametrize("metric", ["accuracy", "matthews"])
def test_a_label_that_holds_most_evaluation_rows_is_noted_where_accuracy_is_the_metric(tmp_path, metric):
    """Nine in ten evaluation rows of one label: accuracy would score 0.90 for answering it always, which the note
    says, naming the metrics that weigh the rare label; searched on Matthews correlation, nothing is said."""
    import warnings

    from autopeft.errors import DataWarning

    rows = pd.read_csv(DEMO_DATA / "train.tsv", sep="\t", quoting=csv.QUOTE_NONE, dtype=str)
    rows[rows.label == "0"].head(90).pipe(lambda r: pd.concat([r, rows[rows.label == "1"].head(10)])).to_csv(
        tmp_path / "skewed.csv", index=False)
    rows.head(200).to_csv(tmp_path / "train.csv", index=False)
    spec = tiny_spec(tmp_path, objectives=[{"name": metric}, {"name": "trainable_params"}])
    spec["data"] = {"train": str(tmp_path / "train.csv"), "eval": str(tmp_path / "skewed.csv"),
                    "text_columns": ["sentence"], "max_length": 64}
    loaded = load_spec(write_spec(tmp_path, spec))
    data = load_task_data(loaded.data, loaded.model, seed=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_metrics_fit(loaded, data)
    notes = [str(w.message) for w in caught if issubclass(w.category, DataWarning)]
    if metric == "matthews":
        assert notes == [] and data.notes == []
        return
    assert notes == data.notes and len(notes) == 1
    assert notes[0].startswith("objectives: 90% of the evaluation rows are '0', so accuracy scores 0.90 for always "
                               "answering it") and "f1 (the positive class's F1) or matthews" in notes[0]


# --- one file: its evaluation rows held out of it --------------------------------------------------------------

def _held_out(tmp_path: Path, train: str, seed: int = 0, **data) -> tuple[SearchSpec, TaskData]:
    spec = tiny_spec(tmp_path)
    spec["data"] = {"train": train, "text_columns": ["sentence"], "max_length": 32, "eval_fraction": 0.25, **data}
    spec["seed"] = seed
    loaded = load_spec(write_spec(tmp_path, spec))
    return loaded, load_task_data(loaded.data, loaded.model, loaded.seed)


def test_one_file_holds_out_its_evaluation_rows_by_label_the_same_for_every_seed(tmp_path):
    """data.eval_fraction: a share of each label's rows held out (a label too rare to spare one stays in
    training), never trained on, the same rows whatever the search's seed, listed by their place in the file."""
    from autopeft.tasks.data import _row_namer

    train = _table(tmp_path / "one.tsv", ["0"] * 60 + ["1"] * 36 + ["2"] * 3 + ["3"])
    spec, data = _held_out(tmp_path, train)
    assert np.bincount(data.eval.labels, minlength=4).tolist() == [15, 9, 1, 0]  # a quarter of each, rounded
    assert len(data.train.labels) == 75 and 3 in data.train.labels  # the lone row of label 3 is trained on
    trained = {tuple(ids) for ids in data.train.input_ids}
    assert not trained & {tuple(ids) for ids in data.eval.input_ids}  # nothing evaluated was trained on
    assert _held_out(tmp_path, train, seed=7)[1].eval_rows == data.eval_rows  # the file's rows, not the seed's
    first = data.eval_rows[0]
    from autopeft.models.base import load_tokenizer

    read = load_tokenizer(spec.model)(_sentences(100)[first], truncation=True, max_length=32)["input_ids"]
    assert data.eval.input_ids[0].tolist() == read  # the first evaluated row is the file's row at that position
    assert _row_namer(spec.data, "eval")(first) == (f"data row {first + 1} of {train} (counted from 1 after the "
                                                     "header line) (held out for evaluation)")
    # with eval_size, the seeded subset is drawn from the held-out rows
    subset = _held_out(tmp_path, train, eval_size=10)[1]
    assert len(subset.eval_rows) == 10 and set(subset.eval_rows) <= set(data.eval_rows)


@pytest.mark.parametrize("data,problem", [
    ({"eval_fraction": 0.2, "eval": "dev.tsv"}, "data: eval_fraction holds out training rows where there is no "
                                                "evaluation data; give it or an evaluation file"),
    ({}, "data: give both train and eval files (or a dataset), or with one file hold out part of its rows to "
         "evaluate on: eval_fraction: 0.2"),
    ({"eval_fraction": 1.5}, "data.eval_fraction: Input should be less than 1"),
])
def test_held_out_rows_and_an_evaluation_file_are_one_or_the_other(tmp_path, data, problem):
    spec = tiny_spec(tmp_path)
    spec["data"] = {"train": str(DEMO_DATA / "train.tsv"), "text_columns": ["sentence"], **data}
    with pytest.raises(SpecError) as caught:
        parse_spec(spec)
    assert caught.value.problems[0].startswith(problem), caught.value.problems


def test_too_few_rows_to_hold_any_out_are_refused(tmp_path):
    train = _table(tmp_path / "few.tsv", ["0", "1", "0", "1"])
    with pytest.raises(UserError, match=r"data\.eval_fraction: 0\.1 of 4 training rows leaves no row to evaluate "
                                        r"on; raise it, or give more rows, or give an evaluation file"):
        _held_out(tmp_path, train, eval_fraction=0.1)


def test_a_json_file_of_records_inside_an_object_reads_its_records(tmp_path):
    """Many datasets are published as {"version": ..., "data": [records]}: the one list of records is the rows
    (it was read as two columns, "version" and "data"); a file of another shape reads as pandas reads it."""
    from autopeft.tasks.data import read_table

    rows = pd.read_csv(DEMO_DATA / "train.tsv", sep="\t", quoting=csv.QUOTE_NONE).head(30)
    records = rows.to_dict("records")
    (tmp_path / "wrapped.json").write_text(json.dumps({"version": "1.0", "count": 30, "data": records}))
    (tmp_path / "plain.json").write_text(json.dumps(records))
    wrapped, plain = read_table(str(tmp_path / "wrapped.json"), "train"), read_table(str(tmp_path / "plain.json"),
                                                                                     "train")
    assert list(wrapped.columns) == ["sentence", "label"] and wrapped.equals(plain)
    (tmp_path / "two.json").write_text(json.dumps({"train": records, "test": records}))  # which one: not guessed
    assert list(read_table(str(tmp_path / "two.json"), "train").columns) == ["train", "test"]
    spec = tiny_spec(tmp_path)
    spec["data"] = {"train": str(tmp_path / "wrapped.json"), "eval": str(tmp_path / "plain.json"),
                    "text_columns": ["sentence"]}
    loaded = load_spec(write_spec(tmp_path, spec))
    assert len(load_task_data(loaded.data, loaded.model, loaded.seed).train) == 30
