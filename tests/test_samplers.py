"""The GP sampler option on the bundled LoRA space: after its random start-up it proposes from its model, within
the space, and proposals for trials that run at the same time differ."""

from __future__ import annotations

import math

import optuna
import yaml

from autopeft.search.samplers import make_sampler
from autopeft.search.space import SearchSpace
from autopeft.spec import SEARCH_SPACES_DIR, load_spec
from tests.conftest import tiny_spec, write_spec


def test_gp_models_the_space_after_its_start_up(tmp_path):
    spec = load_spec(write_spec(tmp_path, tiny_spec(tmp_path, sampler="gp", budget={"trials": 8,
                                                                                      "steps_per_trial": 1})))
    space = SearchSpace.from_dict(yaml.safe_load((SEARCH_SPACES_DIR / "lora.yaml").read_text()), 6)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=make_sampler(spec))
    assert isinstance(study.sampler, optuna.samplers.GPSampler)
    for _ in range(6):
        trial = study.ask()
        config = space.suggest(trial).config
        # A known trade-off: accuracy grows with log rank and the learning rate, parameters with rank x modules.
        accuracy = 0.5 + 0.05 * math.log2(config["lora"]["r"]) + 50 * config["learning_rate"]
        study.tell(trial, [accuracy, config["lora"]["r"] * len(config["lora"]["target_modules"])])
    first, second = study.ask(), study.ask()  # two at once, as for two workers
    configs = [space.suggest(t).config for t in (first, second)]
    modelled = [t for t in study.get_trials(deepcopy=False) if any(k.startswith("gp:relative_params")
                                                                   for k in t.system_attrs)]
    assert {t.number for t in modelled} >= {first.number}
    assert configs[0] != configs[1]
    assert all(3e-4 <= c["learning_rate"] <= 3e-3 and c["lora"]["r"] in (1, 2, 4, 8, 16, 32, 64) for c in configs)
