"""Costs known before training are used as known: a proposal whose trainable parameters (counted on a meta-device
build) break a constraint is never trained. The sampler is told it is infeasible, the views show it rejected with
the reason, and it spends no budget.

The executor answers instantly (as in test_duplicates): the subject is the controller's use of the predicted costs
on a real SQLite study with the real TPE sampler, not training.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from optuna.trial import TrialState

from autopeft.search.controller import SearchController
from autopeft.search.cost import predict_cost
from autopeft.search.samplers import make_sampler
from autopeft.search.space import SearchSpace
from autopeft.spec import load_spec
from autopeft.store import storage
from dashboard.data import list_searches
from tests.conftest import tiny_spec, write_spec
from tests.test_duplicates import AnsweringExecutor

SPACE = {"name": "ranks", "fixed": {"method": "lora", "learning_rate": 0.001},
         "parameters": {"lora.r": {"type": "categorical", "choices": [2, 4, 8, 16, 32, 64]},
                        "layers": {"type": "layers", "form": "top", "starts": [-1]}}}


def test_configurations_that_break_a_known_cost_constraint_are_not_trained(tmp_path):
    base = tiny_spec(tmp_path, search_space=SPACE, sampler="tpe", budget={"trials": 6, "steps_per_trial": 1})
    probe = load_spec(write_spec(tmp_path, base, "probe.yaml"))
    params = {r: predict_cost(probe.model, 2, {**SPACE["fixed"], "lora": {"r": r}, "layers": [5]})["trainable_params"]
              for r in (8, 16)}
    limit = (params[8] + params[16]) / 2  # ranks 2, 4 and 8 are feasible; 16, 32 and 64 are not
    spec = load_spec(write_spec(tmp_path, {**base, "constraints": [{"name": "trainable_params", "max": limit}]}))
    study = storage.create_search(storage.open_storage(spec.storage), "known", spec, make_sampler(spec))
    executor = AnsweringExecutor()
    controller = SearchController(study, spec, SearchSpace.from_dict(SPACE, 6, hidden_size=384), executor,
                                  train_size=320)
    controller.run()

    assert sorted(c["lora"]["r"] for c in executor.trained) == [2, 4, 8]  # only feasible points trained
    assert controller.exhausted  # the three infeasible points count as decided: the space is done
    infeasible = [t for t in study.get_trials() if t.user_attrs.get(storage.INFEASIBLE)]
    assert {t.user_attrs[storage.CONFIG]["lora"]["r"] for t in infeasible} == {16, 32, 64}
    for trial in infeasible:
        assert trial.state == TrialState.PRUNED and trial.user_attrs[storage.REJECTED]
        assert trial.constraints["trainable_params"] > 0  # what TPE reads to rank it among the infeasible
        assert "infeasible before training: trainable_params" in trial.user_attrs[storage.FAIL_REASON]
        assert not storage.counts_against_budget(trial)
    records = storage.trial_records(study, spec)
    assert sum(r.state == "REJECTED" for r in records) >= 3 and not any(r.state == "PRUNED" for r in records)
    counts = next(s for s in list_searches(spec.storage) if s.name == "known").counts
    assert counts["REJECTED"] >= 3 and counts.get("PRUNED", 0) == 0 and counts["COMPLETE"] >= 3


class MeasuringExecutor(AnsweringExecutor):
    def wait(self):
        results = super().wait()
        for result in results:
            result.measurements |= {"peak_memory_mb": 900.0, "adapter_bytes": 40_000.0}
        return results


def test_constraints_on_measured_values_are_left_to_the_trial(tmp_path):
    """A bound on memory cannot be known before training, nor a minimum adapter size from its lower bound:
    nothing is refused for them."""
    spec = load_spec(write_spec(tmp_path, tiny_spec(
        tmp_path, search_space=SPACE, sampler="random", budget={"trials": 3, "steps_per_trial": 1},
        constraints=[{"name": "peak_memory_mb", "max": 1.0}, {"name": "adapter_bytes", "min": 1e12}])))
    study = storage.create_search(storage.open_storage(spec.storage), "measured", spec, make_sampler(spec))
    executor = MeasuringExecutor()
    SearchController(study, spec, SearchSpace.from_dict(SPACE, 6, hidden_size=384), executor, train_size=320).run()
    assert len(executor.trained) == 3
    assert not any(t.user_attrs.get(storage.INFEASIBLE) for t in study.get_trials())


def test_every_method_is_counted_on_a_fresh_copy_as_on_a_deep_copy_and_the_cached_base_is_untouched():
    """predict_cost builds each configuration on a fast copy of one cached meta-device base (cost.fresh_copy).
    Every method, twice through in an order where one build's leak (a parameter left frozen or trainable, a
    module swapped, a configuration changed) would change a later count, predicts what a build on a deep copy
    counts, and the cached base ends as it began."""
    import copy

    import torch

    from autopeft.methods import available_methods, get_method
    from autopeft.models.base import load_model_config
    from autopeft.search.cost import _meta_base, forget_counts, fresh_copy, predict_cost_for
    from tests.test_methods_matrix import OPTIONS

    probe = load_spec(write_spec(Path(tempfile.mkdtemp()), tiny_spec(Path("."))))
    model_config = copy.deepcopy(load_model_config(probe.model))
    model_config.num_labels = 2
    task = "sequence-classification"
    base = _meta_base(model_config.to_json_string(use_diff=False), task, "cls")
    modules = [name for name, _ in base.named_modules()]
    parameters = {name: p.requires_grad for name, p in base.named_parameters()}
    configs = [{"method": m, "layers": [1, 4], **OPTIONS.get(m, {})} for m in available_methods()]
    for config in configs + configs[::-1]:
        method = get_method(config["method"])
        with torch.device("meta"):  # as predict_cost_for builds
            on_deep_copy = method.count(method.build(copy.deepcopy(base), config))[0]
        forget_counts()  # built every time: the second pass is the one a leak would change
        assert predict_cost_for(model_config, task, config)["trainable_params"] == on_deep_copy, config["method"]
    assert [name for name, _ in base.named_modules()] == modules
    assert {name: p.requires_grad for name, p in base.named_parameters()} == parameters
    assert fresh_copy(base) is not base and fresh_copy(base).config is not base.config


def test_a_configuration_is_built_once_and_a_method_registered_again_is_counted_afresh(monkeypatch):
    """The memo of counts: the controller's count of a proposal the sampler already counted builds nothing, the
    costs handed out are copies, and a method registered again under its name (a rerun notebook cell) is built
    again, not served the old object's counts."""
    import copy

    from autopeft.methods import get_method, registry
    from autopeft.models.base import load_model_config
    from autopeft.search import cost

    probe = load_spec(write_spec(Path(tempfile.mkdtemp()), tiny_spec(Path("."))))
    model_config = copy.deepcopy(load_model_config(probe.model))
    model_config.num_labels = 2
    builds = []
    real_copy = cost.fresh_copy
    monkeypatch.setattr(cost, "fresh_copy", lambda base: builds.append(1) or real_copy(base))
    config = {"method": "lora", "lora": {"r": 8, "target_modules": ["query", "value"]}, "layers": [0, 5],
              "learning_rate": 1e-3}
    cost.forget_counts()
    first = cost.predict_cost_for(model_config, "sequence-classification", config)
    first["trainable_params"] = -1.0  # the caller's copy
    again = cost.predict_cost_for(model_config, "sequence-classification", dict(reversed(config.items())))
    assert len(builds) == 1 and again["trainable_params"] > 0
    other = copy.deepcopy(model_config)
    other.num_labels = 3  # another head: another count
    assert cost.predict_cost_for(other, "sequence-classification", config)["trainable_params"] != again[
        "trainable_params"] and len(builds) == 2

    lora = get_method("lora")
    try:
        registry.register(type(lora))  # the same name, a new object
        assert cost.predict_cost_for(model_config, "sequence-classification", config) == again
        assert len(builds) == 3
    finally:
        registry._METHODS["lora"] = lora
