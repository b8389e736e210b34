"""A user's own metric and PEFT method (autopeft/plugins.py): registered by a call or installed by an entry point,
used by a real search on real Ray workers, counted on the meta device, exported and reloaded by stock peft, and
read against chance like the built-ins."""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
import textwrap

import numpy as np
import optuna
import pytest
import torch
import yaml

from autopeft import objectives, plugins
from autopeft.errors import SpecError, TrialFailure, UserError
from autopeft.methods import get_method, registry
from autopeft.methods.base import PeftBacked
from autopeft.objectives import MEASUREMENTS, TASK_METRICS
from autopeft.plugins import register_method, register_metric
from autopeft.results.chance import permutation_test
from autopeft.results.noise import assess
from autopeft.search.launch import start_search
from autopeft.spec import load_spec, parse_spec
from autopeft.store import storage
from autopeft.store.predictions import EvalTargets, decode
from autopeft.tasks.user_metrics import call
from tests.conftest import ONE_AT_A_TIME, ROOT, tiny_spec, write_spec

EXAMPLES = ROOT / "examples" / "plugins"
SPACE = yaml.safe_load((EXAMPLES / "fourierft.yaml").read_text())
SPACE["parameters"]["fourierft.n_frequency"]["choices"] = [200, 400]
SPACE["parameters"]["learning_rate"] = {"type": "float", "low": 0.05, "high": 0.1, "log": True}


def in_main(source: str, **names) -> dict:
    """Run ``source`` as a notebook cell runs: what it defines belongs to ``__main__``, which no worker process can
    import, so only shipping the definitions (cloudpickle, by value) gets them there."""
    namespace = {"__name__": "__main__", **names}
    exec(textwrap.dedent(source), namespace)
    return namespace


@pytest.fixture
def example_plugins(monkeypatch):
    """The example plugin package importable in this process (not installed, and not on the workers' path)."""
    monkeypatch.syspath_prepend(str(EXAMPLES))
    return importlib.import_module("autopeft_example_plugins.fourierft")


def forget(*names: str) -> None:
    for name in names:
        plugins._unregister(name)


# --- a real search on Ray: the user's metrics as objective and constraint, the plugin method trained ------------

@pytest.fixture(scope="module")
def ray_search(tmp_path_factory, ray_cluster):
    tmp_path = tmp_path_factory.mktemp("plugins")
    sys.path.insert(0, str(EXAMPLES))
    fourierft = importlib.import_module("autopeft_example_plugins.fourierft")
    # A module of the user's own that the cluster cannot import: shipped by value, as Ray's docs advise.
    ray_cluster.cloudpickle.register_pickle_by_value(fourierft)
    cell = in_main('''
        import os
        import numpy as np

        def agreement(predictions, references):
            """accuracy, written by the user; notes which process computed it"""
            with open(RECORD, "a") as out:
                out.write(f"{os.getpid()}\\n")
            return float(np.mean(predictions == references))

        def positive_share(predictions, references):
            return float(np.mean(predictions == "1"))
    ''', RECORD=str(tmp_path / "pids.txt"))
    register_metric("agreement", cell["agreement"], tasks="sequence-classification")
    register_metric("positive_share", cell["positive_share"], direction="minimize")
    register_method(fourierft.FourierFT)
    spec = load_spec(write_spec(tmp_path, tiny_spec(
        tmp_path, objectives=[{"name": "agreement"}, {"name": "trainable_params"}],
        constraints=[{"name": "positive_share", "max": 0.9}], search_space=SPACE,
        budget={"trials": 2, "steps_per_trial": 10})))
    try:
        start_search(spec, name="plugins", executor="ray")
        study, stored = storage.load_search(storage.open_storage(spec.storage), "plugins")
        yield tmp_path, study, stored
    finally:
        ray_cluster.cloudpickle.unregister_pickle_by_value(fourierft)
        sys.path.remove(str(EXAMPLES))
        forget("agreement", "positive_share", "fourierft")


def test_the_users_metrics_are_computed_in_the_ray_workers_and_stored(ray_search):
    tmp_path, study, _ = ray_search
    trials = [t for t in study.get_trials() if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(trials) == 2
    computed_in = {int(line) for line in (tmp_path / "pids.txt").read_text().split()}
    for trial in trials:
        measured = trial.user_attrs[storage.MEASUREMENTS]
        assert trial.user_attrs[storage.CONFIG]["method"] == "fourierft"
        worker = int(trial.user_attrs[storage.WORKER].rsplit(":", 1)[1])
        assert worker != os.getpid() and worker in computed_in  # the function ran in the Ray worker process
        assert trial.values[0] == measured["agreement"] == pytest.approx(measured["accuracy"], abs=1e-12)
        # the constraint is read from the user's metric: at most 0.9 of the predictions positive
        assert 0.0 <= measured["positive_share"] <= 1.0
        assert trial.user_attrs[storage.VIOLATIONS] == [max(0.0, measured["positive_share"] - 0.9)]


def test_the_users_metric_has_the_chance_level_of_the_builtin_it_equals(ray_search):
    _, study, stored = ray_search
    level = study.user_attrs[storage.CHANCE]["metrics"]
    assert level["agreement"] == pytest.approx(level["accuracy"])
    targets = EvalTargets.from_json(study.user_attrs[storage.EVAL_TARGETS])
    trial = next(t for t in study.get_trials() if t.state == optuna.trial.TrialState.COMPLETE)
    predicted = decode(trial.user_attrs[storage.PREDICTIONS])
    measured = trial.user_attrs[storage.MEASUREMENTS]
    tests = {name: permutation_test(name, True, measured[name], predicted, targets, None, 2, seed=3)
             for name in ("agreement", "accuracy")}
    assert tests["agreement"].bar == pytest.approx(tests["accuracy"].bar, abs=1e-9)
    report = assess(study, storage.trial_records(study, stored), stored)
    assert report.metric == "agreement" and set(report.front) <= set(report.tests)


def test_the_plugin_method_exports_and_reloads_with_stock_peft(ray_search):
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    from autopeft.models.pooling import apply_pooling
    from autopeft.results.export import export_front
    from autopeft.tasks.data import load_task_data
    from workers.training import classification_metrics, predict

    tmp_path, study, stored = ray_search
    exported = export_front(study, stored, tmp_path / "export")
    data = load_task_data(stored.data, stored.model, stored.seed)
    folder = exported[0]
    recorded = json.loads((folder / "metrics.json").read_text())["measurements"]["agreement"]
    base = AutoModelForSequenceClassification.from_pretrained(stored.model.name_or_path, num_labels=2)
    base = apply_pooling(base, yaml.safe_load((folder / "config.yaml").read_text())["pooling"])  # as its README
    model = PeftModel.from_pretrained(base, str(folder))
    predictions = predict(model, data.eval, batch_size=64, pad_id=0, device=torch.device("cpu"))
    assert classification_metrics(predictions, data.eval.labels, 2)["accuracy"] == pytest.approx(recorded, abs=0.01)


def test_a_search_stays_readable_where_its_metric_is_not_registered(ray_search):
    """A dashboard or a shell without the plugin: the stored description names the metric, its tests say
    "untested", nothing fails."""
    _, study, _ = ray_search
    saved = {name: (MEASUREMENTS[name], [t for t in objectives.TASKS if name in TASK_METRICS[t]])
             for name in ("agreement", "positive_share")}
    forget("agreement", "positive_share")
    try:
        _, stored = storage.load_search(study._storage, "plugins")
        assert MEASUREMENTS["agreement"].function is None
        report = assess(study, storage.trial_records(study, stored), stored)
        assert report.metric == "agreement" and report.front and not report.tests and not report.matched_by
    finally:
        forget("agreement", "positive_share")
        for name, (measurement, tasks) in saved.items():
            register_metric(name, measurement.function, direction=measurement.natural_direction, tasks=tasks)


# --- a metric that fails fails its trial, and the search goes on ------------------------------------------------

def test_a_raising_metric_fails_its_trial_with_its_name_and_the_search_goes_on(tmp_path):
    calls = []

    def flaky(predictions, references):
        calls.append(1)
        if len(calls) == 2:  # the first call is the chance level's, on the constant prediction; the second trial 0's
            raise ZeroDivisionError("no examples of the rare class")
        return float(np.mean(predictions == references))

    register_metric("flaky", flaky)
    try:
        spec = load_spec(write_spec(tmp_path, tiny_spec(
            tmp_path, objectives=[{"name": "flaky"}, {"name": "trainable_params"}], constraints=[],
            data={**tiny_spec(tmp_path)["data"], "train_size": 64, "eval_size": 64},
            budget={"trials": 2, "steps_per_trial": 4}, workers=ONE_AT_A_TIME)))
        start_search(spec, name="flaky", executor="local")
        study, _ = storage.load_search(storage.open_storage(spec.storage), "flaky")
    finally:
        forget("flaky")
    states = {t.state.name: t for t in study.get_trials()}
    assert set(states) == {"FAIL", "COMPLETE"}
    assert states["FAIL"].user_attrs[storage.FAIL_REASON] == \
        "custom metric 'flaky' raised ZeroDivisionError: no examples of the rare class"


def test_a_metric_value_that_is_not_a_finite_number_is_refused_with_its_name():
    with pytest.raises(TrialFailure, match="custom metric 'odd' returned nan, not a finite number"):
        call("odd", lambda p, r: float("nan"), np.zeros(2), np.zeros(2))


# --- the method contract on the meta device ---------------------------------------------------------------------

def test_the_plugin_method_is_counted_on_meta_as_on_the_built_model(tmp_path, example_plugins):
    from autopeft.models.base import load_base_model
    from autopeft.search.cost import predict_cost

    register_method(example_plugins.FourierFT)
    try:
        spec = load_spec(write_spec(tmp_path, tiny_spec(tmp_path)))
        config = {"method": "fourierft", "layers": [1, 4], "learning_rate": 0.05,
                  "fourierft": {"n_frequency": 300, "target_modules": ["query", "ffn_up"]}}
        predicted = predict_cost(spec.model, 2, config)
        method = get_method("fourierft")
        built = method.build(load_base_model(spec.model, ["0", "1"]), config)
        trainable, _ = method.count(built)
    finally:
        forget("fourierft")
    head = 384 * 2 + 2  # the classifier trains too
    assert predicted["trainable_params"] == trainable == 4 * 300 + head


# --- entry points -----------------------------------------------------------------------------------------------

def test_installed_entry_points_are_loaded_once_and_a_broken_one_is_named_not_fatal(tmp_path, monkeypatch,
                                                                                    example_plugins, caplog):
    info = tmp_path / "site" / "autopeft_example_plugins-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: autopeft-example-plugins\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(textwrap.dedent("""\
        [autopeft.metrics]
        worst_class_recall = autopeft_example_plugins.metrics:WORST_CLASS_RECALL
        shadow = no_such_plugin_module:metric

        [autopeft.methods]
        fourierft = autopeft_example_plugins.fourierft:FourierFT
        lora = clashing_plugin:Lora
        """))
    (tmp_path / "site" / "clashing_plugin.py").write_text(textwrap.dedent("""\
        from autopeft.methods.base import PeftBacked

        class Lora(PeftBacked):
            name = "lora"

            def peft_config(self, model, config):
                return None
        """))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setattr(plugins, "_loaded_groups", set())  # as in a fresh process
    monkeypatch.setattr(plugins, "_started_groups", set())
    monkeypatch.setattr(plugins, "_broken", {plugins.METRIC_GROUP: {}, plugins.METHOD_GROUP: {}})
    try:
        with caplog.at_level(logging.WARNING, logger="autopeft.plugins"):
            assert "worst_class_recall" in TASK_METRICS["sequence-classification"]
            assert "worst_class_recall" not in TASK_METRICS["sequence-regression"]
            assert type(get_method("fourierft")).__name__ == "FourierFT"
            assert type(get_method("lora")).__name__ == "Lora"  # a plugin cannot take a built-in's name
        assert "no_such_plugin_module" in caplog.text and "'lora' is a built-in method" in caplog.text
        assert MEASUREMENTS["accuracy"].natural_direction == "maximize"  # the built-ins are untouched
        worst = MEASUREMENTS["worst_class_recall"].function
        assert worst(np.array(["a", "a", "b"]), np.array(["a", "b", "b"])) == 0.5
        with pytest.raises(SpecError) as refused:
            parse_spec(tiny_spec(tmp_path, objectives=[{"name": "shadow"}]))
        assert "entry point 'shadow' = 'no_such_plugin_module:metric' (group autopeft.metrics)" in str(refused.value)
        assert "ModuleNotFoundError" in str(refused.value)
    finally:
        forget("worst_class_recall", "fourierft")


# --- clear errors ----------------------------------------------------------------------------------------------

def test_clashes_and_broken_contracts_are_refused_with_the_fix():
    with pytest.raises(UserError, match="'accuracy' is a built-in measurement .* e.g. 'accuracy_custom'"):
        register_metric("accuracy", lambda p, r: 1.0)
    with pytest.raises(UserError, match="metric name 'my metric' is not usable"):
        register_metric("my metric", lambda p, r: 1.0)
    with pytest.raises(UserError, match="tasks \\['translation'\\]"):
        register_metric("bleu", lambda p, r: 1.0, tasks="translation")
    with pytest.raises(UserError, match="must be a function"):
        register_metric("bleu", 3.0)

    class Lora(PeftBacked):
        name = "lora"

        def peft_config(self, model, config):
            return None

    class Unfinished(PeftBacked):
        name = "unfinished"

    with pytest.raises(UserError, match="'lora' is a built-in method"):
        register_method(Lora)
    with pytest.raises(UserError, match="does not keep the Method contract .* implement peft_config"):
        register_method(Unfinished)
    with pytest.raises(UserError, match="not a class derived from autopeft.methods.base.Method"):
        register_method(object)
    assert "unfinished" not in registry._METHODS


def test_a_metric_for_other_tasks_is_refused_by_the_spec(tmp_path):
    register_metric("exact_answer", lambda p, r: 1.0, tasks=["causal-lm"])
    try:
        with pytest.raises(SpecError, match="'exact_answer' is not measured for sequence-classification"):
            parse_spec(tiny_spec(tmp_path, objectives=[{"name": "exact_answer"}]))
        # a user's metric has no range of its own: any bound is allowed
        register_metric("margin", lambda p, r: -1.0, tasks="sequence-classification")
        parse_spec(tiny_spec(tmp_path, constraints=[{"name": "margin", "max": -5}]))
    finally:
        forget("exact_answer", "margin")


def test_registering_again_from_a_rerun_cell_replaces_the_metric():
    register_metric("rerun", lambda p, r: 1.0)
    register_metric("rerun", lambda p, r: 2.0, direction="minimize")
    try:
        assert MEASUREMENTS["rerun"].function(None, None) == 2.0
        assert MEASUREMENTS["rerun"].natural_direction == "minimize"
        assert TASK_METRICS["causal-lm"].count("rerun") == 1
    finally:
        forget("rerun")
