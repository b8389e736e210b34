"""Search spaces: sampling through Optuna, conditions, rejection of invalid points, validation errors."""

from __future__ import annotations

import optuna
import pytest
import yaml

from autopeft.errors import SpecError
from autopeft.space import SearchSpace
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


def test_a_point_with_no_layer_is_rejected_with_a_reason():
    space = _space({"name": "x", "parameters": {"layers": {"type": "layers", "min_on": 1}},
                    "fixed": {"method": "lora"}}, layers=3)
    study = optuna.create_study()
    study.enqueue_trial({"layers.0": False, "layers.1": False, "layers.2": False})
    proposal = space.suggest(study.ask())
    assert proposal.rejection == "layers: 0 layers switched on, at least 1 needed"


@pytest.mark.parametrize("raw,message", [
    ({"name": "x", "parameters": {}}, "the space must set 'method'"),
    ({"name": "x", "parameters": {"lr": {"type": "float", "low": 1, "high": 0}}, "fixed": {"method": "lora"}},
     "search_space.parameters.lr: low (1.0) must be below high (0.0)"),
    ({"name": "x", "parameters": {"lr": {"type": "gaussian"}}, "fixed": {"method": "lora"}},
     "search_space.parameters.lr: Input tag 'gaussian'"),
    ({"name": "x", "parameters": {"r": {"type": "int", "low": 1, "high": 2, "when": {"kind": 1}}},
      "fixed": {"method": "lora"}}, "depends on unknown parameter 'kind'"),
])
def test_bad_spaces_name_the_parameter(raw, message):
    with pytest.raises(SpecError) as caught:
        _space(raw)
    assert any(message in p for p in caught.value.problems), caught.value.problems
