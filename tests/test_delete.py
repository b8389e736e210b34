"""Deleting a search (autopeft/store/storage.py delete_search, autopeft/store/run_folder.py, `autopeft search
delete`): its trials leave the database and its files the disk; another search, a user's own files and a running
search are left alone. Real MiniLM trials, a real SQLite file, a real live process as the running controller."""

from __future__ import annotations

import socket
import subprocess

import pandas as pd
import pytest

import autopeft
from autopeft.errors import UserError
from autopeft.store import storage as store
from tests.conftest import DEMO_DATA, ONE_AT_A_TIME, run_cli, tiny_spec


def _rows(count: int, offset: int = 0) -> pd.DataFrame:
    frame = pd.read_csv(DEMO_DATA / "train.tsv", sep="\t", quoting=3, dtype=str)
    return frame.iloc[offset:offset + count].reset_index(drop=True)


@pytest.fixture(scope="module")
def two_searches(tmp_path_factory, monkeypatch_module):
    """Two one-trial searches in one database, the first on rows passed from Python (so its folder holds them)."""
    tmp_path = tmp_path_factory.mktemp("delete")
    monkeypatch_module.chdir(tmp_path)  # passed-in rows are written under output_dir read from the working folder
    spec = tiny_spec(tmp_path, budget={"trials": 1, "steps_per_trial": 4}, constraints=[], workers=ONE_AT_A_TIME)
    url = spec["storage"]
    passed = {**spec, "data": {"text_columns": ["sentence"], "max_length": 48}}
    doomed = autopeft.run_search(passed, name="doomed", data={"train": _rows(64), "eval": _rows(32, 500)},
                                 executor="local", progress=False)
    kept = autopeft.run_search(spec, name="kept", executor="local", progress=False)
    return tmp_path, url, doomed, kept


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_a_search_is_deleted_with_its_files_and_nothing_else(two_searches):
    tmp_path, url, doomed, kept = two_searches
    folder = tmp_path / "runs" / "doomed"
    assert (folder / "trial-0000" / "adapter").is_dir() and (folder / "data" / "train.parquet").is_file()
    (folder / "notes.txt").write_text("the user's own")  # not the search's: never removed

    # A live process recorded as its controller: the search is running, and deleting it is refused.
    controller = subprocess.Popen(["sleep", "60"])
    try:
        doomed.study.set_user_attr(store.CONTROLLER, {"host": socket.gethostname(), "pid": controller.pid})
        with pytest.raises(UserError, match="'doomed' is running .*stop it first"):
            autopeft.delete_search("doomed", storage=url)
        assert "doomed" in set(autopeft.list_searches(url)["name"]) and (folder / "trial-0000").is_dir()
    finally:
        controller.kill()
        controller.wait()

    left = autopeft.delete_search("doomed", storage=url)  # its controller is gone now
    assert [p.name for p in left] == ["notes.txt"]
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]  # adapters and passed-in rows removed
    assert set(autopeft.list_searches(url)["name"]) == {"kept"}
    assert len(autopeft.load_search("kept", storage=url).trials_dataframe()) == 1  # the other search untouched
    assert (tmp_path / "runs" / "kept" / "trial-0000" / "adapter").is_dir()
    with pytest.raises(UserError, match="no search named 'doomed'"):
        autopeft.delete_search("doomed", storage=url)


def test_the_command_asks_first_and_can_keep_the_files(two_searches, capsys):
    tmp_path, url, _, _ = two_searches
    code, _, err = run_cli(capsys, "search", "delete", "kept", "--storage", url)
    assert code == 2 and "pass --yes" in err  # no terminal to ask: nothing deleted
    assert "kept" in set(autopeft.list_searches(url)["name"])

    code, out, _ = run_cli(capsys, "search", "delete", "kept", "--storage", url, "--yes", "--keep-files")
    assert code == 0 and "deleted search 'kept' (1 trial)" in out, out
    assert autopeft.list_searches(url).empty
    assert (tmp_path / "runs" / "kept" / "trial-0000" / "adapter").is_dir()  # --keep-files
    code, _, err = run_cli(capsys, "search", "delete", "kept", "--storage", url, "--yes")
    assert code == 2 and "no search named 'kept'" in err

    # A study without an autopeft spec: a search whose creation stopped, or another tool's study in the same
    # database. Nothing of ours reads it; it goes only when asked with --force.
    import optuna

    optuna.create_study(study_name="half-made", storage=url)
    code, _, err = run_cli(capsys, "search", "show", "half-made", "--storage", url)
    assert code == 2 and "search delete half-made --force" in err
    code, _, err = run_cli(capsys, "search", "delete", "half-made", "--storage", url, "--yes")
    assert code == 2 and "holds no autopeft spec" in err
    assert "half-made" in store.search_names(store.open_storage(url, create=False))
    code, out, _ = run_cli(capsys, "search", "delete", "half-made", "--storage", url, "--yes", "--force")
    assert code == 0 and "deleted search 'half-made' (0 trials)" in out, out
    assert "half-made" not in store.search_names(store.open_storage(url, create=False))


def test_a_search_deleted_from_a_shell_is_not_listed_again_for_its_old_jobs():
    """The service's list and the dashboard's show a name without a study for its jobs only while its latest job
    may not have made the study yet: one that succeeded did, so the search was deleted since."""
    from autopeft.service.jobs import SearchJob, listed_without_study

    def job(status: str) -> SearchJob:
        return SearchJob(submission_id=status, search="s", action="run", status=status, launched_by="alice",
                         launched_at="2026-12-07 10:00")

    assert not listed_without_study([job("SUCCEEDED")])
    assert listed_without_study([job("SUCCEEDED"), job("RUNNING")])  # deleted, then launched again
    assert listed_without_study([job("PENDING")]) and listed_without_study([job("FAILED")])
    assert not listed_without_study([])
