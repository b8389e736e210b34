"""A task no configuration can learn (training labels shuffled) says so on every surface: the search's closing
summary, `search show`, `search list`, `baselines`, `export` and `--pick`, and the dashboard.

The search is real (MiniLM, the bundled SST-2 sample, a SQLite file); only the training labels are a permutation
of the real ones, so what the models fit carries no information about the eval labels.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import DEMO_DATA, ONE_AT_A_TIME, ROOT, run_cli, tiny_spec, write_spec

NAME = "shuffled"


def _words(text: str) -> str:
    return " ".join(text.split())  # rich wraps long lines


@pytest.fixture(scope="module")
def shuffled(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("shuffled")
    train = pd.read_csv(DEMO_DATA / "train.tsv", sep="\t").head(320)
    train["label"] = np.random.default_rng(0).permutation(train["label"].to_numpy())
    train.to_csv(tmp_path / "train.tsv", sep="\t", index=False)
    spec = tiny_spec(tmp_path, budget={"trials": 3, "steps_per_trial": 10}, constraints=[],
                     objectives=[{"name": "matthews"}, {"name": "trainable_params"}], workers=ONE_AT_A_TIME)
    spec["data"]["train"] = str(tmp_path / "train.tsv")
    url = spec["storage"]
    done = subprocess.run([sys.executable, "-m", "autopeft.cli", "search", "run", str(write_spec(tmp_path, spec)),
                           "--name", NAME, "--executor", "local"], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "COLUMNS": "200"}, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    return tmp_path, url, done.stdout


def test_the_closing_summary_says_nothing_was_learned(shuffled):
    _, _, out = shuffled
    text = _words(out)
    assert "NOT ABOVE CHANCE" in text
    assert "NO CONFIGURATION LEARNED THE TASK" in text
    assert "Nothing to export" in text and "more training steps" in text
    assert "Export: autopeft export" not in text


def test_search_show_flags_every_front_point(shuffled, capsys):
    _, url, _ = shuffled
    code, out, _ = run_cli(capsys, "search", "show", NAME, "--storage", url, "--json")
    assert code == 0
    chance = json.loads(out)["chance"]
    front = [t["number"] for t in json.loads(out)["trials"] if t.get("pareto")]
    assert chance["metric"] == "matthews" and chance["chance"] == 0.0
    assert chance["nothing_learned"] and sorted(chance["not_above_chance"]) == sorted(front)
    for number in front:
        test = chance["tests"][str(number)]
        assert test["method"] == "permutation" and not test["above"] and test["value"] <= test["bar"]
    code, out, _ = run_cli(capsys, "search", "show", NAME, "--storage", url)
    assert "NO CONFIGURATION LEARNED THE TASK" in _words(out)


def test_search_list_marks_the_search(shuffled, capsys):
    _, url, _ = shuffled
    code, out, _ = run_cli(capsys, "search", "list", "--storage", url, "--json")
    assert code == 0
    assert json.loads(out)[0]["front_vs_chance"] == "none"
    code, out, _ = run_cli(capsys, "search", "list", "--storage", url)
    assert "at chance" in _words(out)


def test_export_warns_and_pick_refuses_a_front_at_chance(shuffled, capsys):
    tmp_path, url, _ = shuffled
    code, out, _ = run_cli(capsys, "export", NAME, "--storage", url, "--out", str(tmp_path / "all"))
    assert code == 0 and "within noise of chance" in _words(out) and "learned nothing" in _words(out)
    metrics = json.loads(next((tmp_path / "all").glob("trial-*/metrics.json")).read_text())
    assert metrics["noise"]["above"] is False
    # The files that travel with the adapters say it too, not only the console.
    assert "within noise of chance" in (tmp_path / "all" / "summary.md").read_text()
    assert "Within noise of chance" in next((tmp_path / "all").glob("trial-*/README.md")).read_text()
    code, _, err = run_cli(capsys, "export", NAME, "--storage", url, "--out", str(tmp_path / "knee"), "--pick", "knee")
    assert code == 2 and "within noise of chance" in err and "--include-chance" in err
    assert not (tmp_path / "knee").exists()
    code, out, _ = run_cli(capsys, "export", NAME, "--storage", url, "--out", str(tmp_path / "knee"), "--pick", "knee",
                           "--include-chance")
    assert code == 0 and len(list((tmp_path / "knee").glob("trial-*"))) == 1
    # From Python the refusal names the keyword that lets such points in, and that keyword does.
    import autopeft

    search = autopeft.load_search(NAME, storage=url)
    with pytest.warns(autopeft.errors.AtChanceWarning, match="within noise of chance.*learned nothing"):
        search.export(tmp_path / "from-python")  # the whole front, as found: warned, not silent
    with pytest.raises(autopeft.UserError, match=r"include_chance=True"):
        search.pick("knee")
    assert len(search.pick("knee", include_chance=True)) == 1


def test_baselines_at_chance_are_not_matches(shuffled, capsys):
    _, url, _ = shuffled
    code, out, _ = run_cli(capsys, "baselines", NAME, "--storage", url, "--only", "bitfit", "--executor", "local",
                           "--json")
    assert code == 0
    row = json.loads(out)[0]
    # Whether or not a front point reaches it, nothing at chance counts as a match.
    assert row["matched_by"] is None and "baseline" in row["at_chance"]
    assert row["nearest_front_trial"] is None or "front" in row["at_chance"]
    code, out, _ = run_cli(capsys, "baselines", NAME, "--storage", url, "--only", "bitfit", "--executor", "local")
    text = _words(out)
    assert "matches or dominates 0 of 1" in text
    assert "No configuration of this search learned the task above chance" in text


def test_the_dashboard_says_nothing_was_learned(shuffled, monkeypatch):
    _, url, _ = shuffled
    monkeypatch.setenv("AUTOPEFT_STORAGE", url)
    for view in ("Pareto front", "Pick and export"):
        app = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=60)
        app.session_state["view"] = view
        app.run()
        assert not app.exception, [e.value for e in app.exception]
        assert any("No configuration learned the task above chance" in e.value for e in app.error), view


def test_the_probe_stops_the_search_before_it_spends_its_budget(shuffled, capsys, monkeypatch):
    tmp_path, _, _ = shuffled
    spec = tiny_spec(tmp_path, constraints=[], objectives=[{"name": "matthews"}, {"name": "trainable_params"}],
                     budget={"trials": 3, "steps_per_trial": "auto",
                             "probe": {"start_steps": 4, "max_steps": 8, "references": ["lora-r16-all"]}},
                     workers=ONE_AT_A_TIME)
    spec["data"]["train"] = str(tmp_path / "train.tsv")
    spec["storage"] = f"sqlite:///{tmp_path / 'probe.db'}"
    code, _, err = run_cli(capsys, "search", "run", str(write_spec(tmp_path, spec, "probe.yaml")), "--name", "probe",
                           "--executor", "local")
    assert code == 2
    assert "no reference configuration (lora-r16-all) learned the task above chance" in err
    assert "stopped before spending its budget" in err and "autopeft search show probe" in err
    from autopeft.store import storage

    study, stored = storage.load_search(storage.open_storage(spec["storage"]), "probe")
    assert study.user_attrs[storage.PROBE]["chosen"] is None
    assert [r.probe["steps"] for r in storage.trial_records(study, stored)] == [4, 8]  # probe runs only
    assert storage.budget_spent(study.get_trials()) == 0
    # Every surface that lists or draws the search says so, and none scores it by the probe's runs
    monkeypatch.setattr("autopeft.cli.console._width", 250)
    code, out, _ = run_cli(capsys, "search", "list", "--storage", spec["storage"])
    [row] = [line for line in out.splitlines() if " probe " in line]
    assert code == 0 and "nothing learnable: the probe stopped the search" in row and "0/3" in row
    code, out, _ = run_cli(capsys, "search", "show", "probe", "--storage", spec["storage"])
    assert code == 0 and ("Pareto front: none — nothing learnable: the probe stopped the search before it trained a "
                          "trial") in " ".join(out.split())
    assert "matthews ↑" not in out  # no empty front table under it (only the front's headers carry arrows)
    from autopeft.api import load_search

    assert load_search("probe", storage=spec["storage"])._repr_html_() == (  # a notebook's view of it says the same
        "<p><b>probe</b>: no front point — nothing learnable: the probe stopped the search before it trained a trial "
        "(the probe&#x27;s runs are not the front).</p>")
    from dashboard import data

    [listed] = data.searches_frame(data.list_searches(spec["storage"])).to_dict("records")
    assert listed["complete"] == 0 and pd.isna(listed["best"]) and listed["elapsed_min"] is None
    assert listed["fidelity"] == "nothing learnable: the probe stopped the search"
    monkeypatch.setenv("AUTOPEFT_STORAGE", spec["storage"])
    app = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=60)
    app.session_state["view"] = "Pareto front"
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    [error] = [e.value for e in app.error]
    assert error.startswith("**Nothing learnable: the learnability probe stopped this search") and (
        "the learnability probe found nothing learnable (probe.max_steps reached" in error)
