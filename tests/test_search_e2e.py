"""A real search end to end: real MiniLM, real SST-2 sample, real Ray, a real SQLite file; then export and
reload each exported adapter with stock peft and get the recorded metric back."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import torch

from autopeft.errors import UserError
from autopeft.results.export import export_front
from autopeft.results.pareto import pareto_front
from autopeft.search.launch import start_search
from autopeft.spec import load_spec
from autopeft.store import storage
from autopeft.tasks.data import load_task_data
from tests.conftest import tiny_spec, write_spec
from workers.training import classification_metrics, predict


@pytest.fixture(scope="module")
def finished_search(tmp_path_factory, ray_cluster):
    tmp_path = tmp_path_factory.mktemp("search")
    spec = load_spec(write_spec(tmp_path, tiny_spec(tmp_path, budget={"trials": 4, "steps_per_trial": 15})))
    name = start_search(spec, name="e2e")
    study, stored_spec = storage.load_search(storage.open_storage(spec.storage), name)
    return tmp_path, spec, study, stored_spec


def test_every_trial_is_stored_with_measured_costs(finished_search):
    _, spec, study, _ = finished_search
    trials = study.get_trials()
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 4
    for trial in complete:
        measured = trial.user_attrs[storage.MEASUREMENTS]
        assert 0.0 <= measured["accuracy"] <= 1.0
        assert trial.values[1] == measured["trainable_params"] > 0
        assert measured["peak_memory_mb"] > 100  # the process holds a 22.7M-parameter model
        assert measured["train_time_s"] > 0 and measured["eval_time_s"] > 0
        assert measured["adapter_bytes"] > 0
        assert len(trial.user_attrs[storage.LOSS_CURVE]) >= 1
        assert trial.user_attrs[storage.WORKER]
        assert trial.user_attrs[storage.EXECUTION]["precision"] in ("fp32", "bf16")


def test_cli_show_json_lists_trials_with_state_config_values_and_costs(finished_search):
    _, spec, _, _ = finished_search
    done = subprocess.run([sys.executable, "-m", "autopeft.cli", "search", "show", "e2e", "--json",
                           "--storage", spec.storage], capture_output=True, text=True, timeout=120, check=True)
    shown = json.loads(done.stdout)
    assert [o["name"] for o in shown["objectives"]] == ["accuracy", "trainable_params"]
    trained = [t for t in shown["trials"] if t["state"] != "REJECTED"]  # refused points (e.g. over 1%) aside
    assert len(trained) == 4
    for trial in shown["trials"]:
        if trial["state"] == "REJECTED":
            assert trial["fail_reason"] and not trial["values"]
            continue
        assert trial["state"] == "COMPLETE"
        assert trial["config"]["method"] == "lora"
        assert set(trial["values"]) == {"accuracy", "trainable_params"}
        assert "peak_memory_mb" in trial["measurements"]
    assert any(t["pareto"] for t in trained)
    listed = subprocess.run([sys.executable, "-m", "autopeft.cli", "search", "list", "--json", "--storage",
                             spec.storage], capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(listed.stdout)[0]["state"] == "finished"


def test_export_reloads_with_stock_peft_and_reproduces_the_metric(finished_search):
    tmp_path, spec, study, stored_spec = finished_search
    out = tmp_path / "export"
    exported = export_front(study, stored_spec, out)
    assert exported and (out / "summary.csv").is_file() and (out / "summary.md").is_file()
    data = load_task_data(stored_spec.data, stored_spec.model, stored_spec.seed)
    for folder in exported:
        recorded = json.loads((folder / "metrics.json").read_text())["measurements"]["accuracy"]
        # The README's own lines: stock transformers and peft, and the pooling the head was trained with.
        code = (folder / "README.md").read_text().split("```python\n")[1].split("```")[0]
        assert "PeftModel.from_pretrained" in code and 'apply_pooling(base, "mean")' in code
        scope: dict = {}
        exec(code.replace("path/to/this/folder", str(folder)), scope)
        model = scope["model"]
        predictions = predict(model, data.eval, batch_size=64, pad_id=0, device=torch.device("cpu"))
        reproduced = classification_metrics(predictions, data.eval.labels, 2)["accuracy"]
        assert abs(reproduced - recorded) <= 0.005, (folder, recorded, reproduced)


def test_an_export_whose_adapter_folder_was_moved_is_refused_before_anything_is_written(finished_search):
    """Every front point's folder is checked before the first is copied: a refusal left the --out folder, and with
    several points a part of the export, behind."""
    tmp_path, _, study, stored_spec = finished_search
    front = pareto_front(storage.trial_records(study, stored_spec), stored_spec)
    moved = Path(front[-1].adapter_dir)
    moved.rename(moved.with_name("elsewhere"))
    try:
        with pytest.raises(UserError, match=rf"trial {front[-1].number}: its adapter folder .* is missing"):
            export_front(study, stored_spec, tmp_path / "refused-export")
    finally:
        moved.with_name("elsewhere").rename(moved)
    assert not (tmp_path / "refused-export").exists()


def test_merged_export_says_which_folders_it_could_not_merge(finished_search, capsys):
    """--merged asks for a merged model in every folder; a method that adds computation of its own, or a quantised
    base, cannot give one, which was left unsaid (each README now says why, and the command names them)."""
    import warnings

    from autopeft.api import load_search
    from autopeft.errors import NotMergedWarning
    from autopeft.results.export import not_merged_message, unmerged_reason
    from tests.conftest import run_cli

    tmp_path, spec, _, _ = finished_search
    code, out, err = run_cli(capsys, "export", "e2e", "--out", str(tmp_path / "merged-export"), "--merged",
                             "--include-chance", "--storage", spec.storage)
    assert code == 0, err
    folders = sorted((tmp_path / "merged-export").glob("trial-*"))
    assert folders and all((folder / "merged").is_dir() for folder in folders)  # LoRA folds into the weights
    assert "not merged" not in out
    with warnings.catch_warnings():
        warnings.simplefilter("error", NotMergedWarning)  # every folder merged: nothing to warn of from Python
        load_search("e2e", storage=spec.storage).export(tmp_path / "api-merged", merged=True, include_chance=True)
    (folders[0] / "merged").rename(folders[0] / "kept-aside")  # as a folder of a method that cannot merge
    assert not_merged_message(folders, merged=True) == (
        f"not merged: {folders[0].name} (their methods add computation of their own, or their base was quantised; "
        "each folder's README.md says which)")
    assert not_merged_message(folders, merged=False) == ""
    assert unmerged_reason("prefix", 16).startswith("a prefix adapter adds computation of its own")
    assert unmerged_reason("lora", 4).startswith("trained on a 4-bit base")
