"""What reading the data left out or cut is kept with the search and shown wherever the search is read: a search
launched from the dashboard or the service has no terminal to print its notes on. Real MiniLM, real SQLite, the
bundled SST-2 sentences read at 16 tokens (a fifth or so longer), one trial of a few steps."""

from __future__ import annotations

import json

import pytest
from streamlit.testing.v1 import AppTest

import autopeft
from dashboard import data as dashboard_data
from tests.conftest import ONE_AT_A_TIME, ROOT, run_cli, tiny_spec, write_spec

NOTE = "data.max_length: "


@pytest.fixture(scope="module")
def cut_search(tmp_path_factory):
    import warnings

    tmp_path = tmp_path_factory.mktemp("notes")
    spec = tiny_spec(tmp_path, budget={"trials": 1, "steps_per_trial": 4}, constraints=[], workers=ONE_AT_A_TIME)
    spec["data"]["max_length"] = 16
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        search = autopeft.run_search(spec, name="cut", executor="local", progress=False)
    issued = [str(w.message) for w in caught if issubclass(w.category, autopeft.errors.DataWarning)]
    return search, issued


def test_the_note_is_issued_and_kept_with_the_search(cut_search):
    search, issued = cut_search
    assert len(issued) == 1 and issued[0].startswith(NOTE)  # still a warning, as before it was kept
    loaded = autopeft.load_search("cut", storage=search.storage_url)
    assert loaded.data_notes == issued
    assert f"<i>Data note:</i> {issued[0][:40]}" in loaded._repr_html_()  # shown under the front in Jupyter


def test_search_show_prints_it_and_its_json_holds_it(cut_search, capsys):
    search, issued = cut_search
    code, out, err = run_cli(capsys, "search", "show", "cut", "--storage", search.storage_url)
    assert code == 0, err
    assert f"data note: {issued[0][:60]}" in " ".join(out.split()), out
    code, out, _ = run_cli(capsys, "search", "show", "cut", "--storage", search.storage_url, "--json")
    assert json.loads(out)["data_notes"] == issued


def test_the_dashboard_shows_it_on_the_front(cut_search, monkeypatch):
    search, issued = cut_search
    [listed] = dashboard_data.list_searches(search.storage_url)
    assert listed.data_notes == issued
    monkeypatch.setenv("AUTOPEFT_STORAGE", search.storage_url)
    app = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=60)
    app.session_state["view"] = "Pareto front"
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    assert any(issued[0][:60] in w.value for w in app.warning), [w.value for w in app.warning]


def test_a_search_whose_data_reads_whole_has_no_note(tmp_path, capsys):
    spec = tiny_spec(tmp_path, budget={"trials": 1, "steps_per_trial": 2}, constraints=[], workers=ONE_AT_A_TIME)
    code, _, err = run_cli(capsys, "search", "run", str(write_spec(tmp_path, spec)), "--name", "whole",
                           "--executor", "local")
    assert code == 0, err
    whole = autopeft.load_search("whole", storage=spec["storage"])
    assert whole.data_notes == [] and "Data note" not in whole._repr_html_()
    code, out, _ = run_cli(capsys, "search", "show", "whole", "--storage", spec["storage"])
    assert "data note" not in out
