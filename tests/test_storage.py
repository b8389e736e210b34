"""The trial database on SQLite and on a real PostgreSQL server: the same searches, attributes, recovery and budget
accounting on both; SQLite in WAL mode so readers never block the controller; passwords never printed."""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from autopeft.cli import entry_point
from autopeft.errors import UserError
from autopeft.search.samplers import make_sampler
from autopeft.spec import normalise_storage_url, parse_spec
from autopeft.store import storage
from tests.conftest import run_cli, tiny_spec, write_spec
from tests.postgres_server import PASSWORD


def _spec(tmp_path, url: str):
    return parse_spec(tiny_spec(tmp_path, storage=url, search_space={"name": "s", "parameters": {}}))


def test_a_search_round_trips_with_its_attributes(tmp_path, storage_url):
    spec = _spec(tmp_path, storage_url)
    store = storage.open_storage(storage_url)
    study = storage.create_search(store, "s1", spec, make_sampler(spec))
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    trial.set_user_attr(storage.MEASUREMENTS, {"accuracy": 0.75, "trainable_params": 10.0})
    study.tell(trial, [0.75, 10.0])

    again = storage.open_storage(storage_url)  # a second connection, as the CLI or the dashboard would open
    loaded, loaded_spec = storage.load_search(again, "s1")
    assert loaded_spec == spec
    assert [r.measurements for r in storage.trial_records(loaded, loaded_spec)] == [
        {"accuracy": 0.75, "trainable_params": 10.0}]
    with pytest.raises(UserError, match="a search named 's1' exists"):
        storage.create_search(again, "s1", spec, make_sampler(spec))


def test_a_search_another_process_is_creating_is_left_out_of_the_list_and_named_when_asked_for(tmp_path):
    from autopeft.api import search_summaries

    url = normalise_storage_url(f"sqlite:///{tmp_path / 'x.db'}")
    spec = _spec(tmp_path, url)
    store = storage.open_storage(url)
    storage.create_search(store, "made", spec, make_sampler(spec))
    # create_search's first write without its second: the moment a listing can read between the two
    optuna.create_study(study_name="being-made", storage=store, directions=["maximize", "minimize"])
    assert [row["name"] for row in search_summaries(url)] == ["made"]
    assert storage.search_names(store) == ["made", "being-made"]  # the name is taken all the same
    with pytest.raises(UserError, match="search 'being-made' has no stored spec yet: another process is creating"):
        storage.load_search(store, "being-made")


def test_only_a_dead_controllers_trials_are_requeued(tmp_path, storage_url):
    spec = _spec(tmp_path, storage_url)
    study = storage.create_search(storage.open_storage(storage_url), "s2", spec, make_sampler(spec))
    distribution = {"x": optuna.distributions.FloatDistribution(0, 1)}
    mine, theirs, done = (study.ask(distribution) for _ in range(3))
    for trial in (mine, theirs):
        trial.set_user_attr(storage.CONFIG, {"x": trial.params["x"]})  # a whole proposal, as the controller records
    mine.set_user_attr(storage.OWNER, "host:1")
    theirs.set_user_attr(storage.OWNER, "host:2")
    study.tell(done, [0.5, 1.0])

    assert storage.requeue_interrupted(study, "stopped", keep={"host:2"}) == [mine.number]
    trials = study.get_trials()
    assert trials[mine.number].state == TrialState.FAIL and trials[mine.number].user_attrs[storage.INTERRUPTED]
    assert trials[theirs.number].state == TrialState.RUNNING
    queued = [t for t in trials if t.state == TrialState.WAITING]
    assert len(queued) == 1 and queued[0].user_attrs[storage.RETRY_OF] == mine.number
    # Budget: the completed trial plus the one still running; the interrupted one costs nothing.
    assert storage.budget_spent(trials) == 2
    # The queued retry is ahead of any trial asked after it.
    assert storage.ahead_of(trials, len(trials)) == 3
    retry = study.ask(distribution)  # the next proposal is the queued one, with the interrupted trial's values
    assert retry.number == queued[0].number and retry.params == trials[mine.number].params


def test_sqlite_runs_in_wal_mode_so_a_reader_does_not_block_the_controller(tmp_path):
    url = f"sqlite:///{tmp_path / 'wal.db'}"
    spec = _spec(tmp_path, url)
    study = storage.create_search(storage.open_storage(url), "w", spec, make_sampler(spec))
    reader = sqlite3.connect(tmp_path / "wal.db", timeout=0)
    assert reader.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    reader.execute("BEGIN")
    assert reader.execute("SELECT COUNT(*) FROM trials").fetchone() == (0,)  # holds a read snapshot open
    started = time.monotonic()
    for _ in range(5):
        trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
        study.tell(trial, [0.5, 1.0])
    assert time.monotonic() - started < 5  # in rollback-journal mode these writes would wait for the reader
    assert reader.execute("SELECT COUNT(*) FROM trials").fetchone() == (0,)  # the reader's snapshot is stable
    reader.rollback()
    assert reader.execute("SELECT COUNT(*) FROM trials").fetchone() == (5,)


def test_postgresql_schema_is_at_optunas_head_version(postgres_url):
    store = storage.open_storage(postgres_url)
    assert store.get_current_version() == store.get_head_version()
    optuna_cli = str(Path(sys.executable).parent / "optuna")
    upgrade = subprocess.run([optuna_cli, "storage", "upgrade", "--storage", postgres_url],
                             capture_output=True, text=True, timeout=120)
    assert upgrade.returncode == 0, upgrade.stderr
    assert "up-to-date" in upgrade.stdout + upgrade.stderr


@pytest.mark.parametrize("url,expected", [
    ("postgresql://u:pw@db:5432/x", "postgresql+psycopg://u:pw@db:5432/x"),
    ("postgres://u@db/x", "postgresql+psycopg://u@db/x"),
    ("postgresql+psycopg://u:pw@db/x", "postgresql+psycopg://u:pw@db/x"),
])
def test_plain_postgresql_urls_use_psycopg(url, expected):
    assert normalise_storage_url(url) == expected


@pytest.mark.parametrize("url,masked", [
    ("postgresql+psycopg://user:hunter2@db:5432/trials", "postgresql+psycopg://user:***@db:5432/trials"),
    ("postgresql+psycopg://user@db/trials", "postgresql+psycopg://user@db/trials"),
    ("sqlite:////tmp/a.db", "sqlite:////tmp/a.db"),
    ("postgresql://user:hunter2@host:no-port/x", "postgresql://***@host:no-port/x"),
    ("user:hunter2@host", "***@host"),
])
def test_passwords_are_masked(url, masked):
    assert storage.mask_url(url) == masked


def test_a_wrong_password_is_one_line_without_the_password(postgres_server, capsys):
    url = postgres_server.url("postgres").replace(PASSWORD, "wrong-pass-77")
    with pytest.raises(SystemExit) as exited:
        entry_point(["search", "list", "--storage", url])
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: storage: cannot open postgresql+psycopg://autopeft:***@127.0.0.1")
    assert "password authentication failed" in err and "wrong-pass-77" not in err and len(err.splitlines()) == 1


def test_search_run_prints_the_storage_url_without_its_password(tmp_path, postgres_url, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    spec = tiny_spec(tmp_path, storage=postgres_url, budget={"trials": 1, "steps_per_trial": 2})
    refused = {**spec, "data": {**spec["data"], "label_column": "no_such_column"}}  # refused before it is created
    with pytest.raises(SystemExit) as exited:
        entry_point(["search", "run", str(write_spec(tmp_path, refused, "refused.yaml")), "--name", "p"])
    captured = capsys.readouterr()
    assert exited.value.code == 2 and captured.err.startswith("error: data.label_column")
    assert PASSWORD not in captured.out + captured.err
    assert storage.search_names(storage.open_storage(postgres_url)) == []
    # a search that runs names its database in its header, masked
    code, out, err = run_cli(capsys, "search", "run", str(write_spec(tmp_path, spec)), "--name", "p",
                             "--executor", "local")
    assert code == 0, err
    assert "search p → postgresql+psycopg://autopeft:***@127.0.0.1" in out, out
    assert PASSWORD not in out + err


def test_a_search_survives_a_database_outage(tmp_path, postgres_server, postgres_url):
    """The database host crashes while a trial trains and stays down past the trial's end: the controller's writes
    wait for it (retried with back-off, each on a fresh pooled connection), and the search completes."""
    spec = tiny_spec(tmp_path, budget={"trials": 1, "steps_per_trial": 30}, storage=postgres_url)
    controller = subprocess.Popen([sys.executable, "-m", "autopeft.cli", "search", "run",
                                   str(write_spec(tmp_path, spec)), "--name", "outage", "--executor", "local"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    study = None
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        assert controller.poll() is None, controller.communicate()[1][-3000:]
        try:
            study = study or optuna.load_study(study_name="outage", storage=storage.open_storage(postgres_url))
            trials = study.get_trials()
        except KeyError:
            trials = []
        if trials and trials[0].state == TrialState.RUNNING and storage.CONFIG in trials[0].user_attrs:
            break
        time.sleep(0.2)
    else:
        raise AssertionError("no trial started in time")
    postgres_server.stop()
    try:
        # Down until the trial has ended and the controller is waiting to record it.
        while "database unavailable" not in "".join(_read_available(controller.stderr)):
            assert controller.poll() is None and time.monotonic() < deadline, "the controller did not wait"
    finally:
        postgres_server.start_again()
    _, err = controller.communicate(timeout=300)
    assert controller.returncode == 0, err[-3000:]
    study = optuna.load_study(study_name="outage", storage=storage.open_storage(postgres_url))
    assert [t.state for t in study.get_trials()] == [TrialState.COMPLETE]  # recorded after the outage
    assert study.user_attrs[storage.FINISHED] is True


def _read_available(stream) -> list[str]:
    """Lines the process has written so far, without blocking past 0.5 s."""
    import selectors

    selector = selectors.DefaultSelector()
    selector.register(stream, selectors.EVENT_READ)
    lines = [stream.readline()] if selector.select(timeout=0.5) else []
    selector.close()
    return lines


def test_a_search_is_running_while_any_of_its_controllers_is(tmp_path, storage_url):
    from autopeft.results.views import search_summary

    spec = _spec(tmp_path, storage_url)
    study = storage.create_search(storage.open_storage(storage_url), "c", spec, make_sampler(spec))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    study.set_user_attr(storage.CONTROLLER, {"host": socket.gethostname(), "pid": int(dead.stdout)})
    assert search_summary(study, spec)["state"] == "interrupted"  # the first controller is gone ...
    storage.claim_controller(study, join=True)
    assert search_summary(study, spec)["state"] == "running"  # ... but one that joined still runs it
    claim = ("import sys, optuna; from autopeft.store import storage; "
             "storage.claim_controller(optuna.load_study(study_name='c', storage=storage.open_storage(sys.argv[1])))")
    refused = subprocess.run([sys.executable, "-c", claim, storage_url], capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and "is being run by process" in refused.stderr  # a second `run`/`resume`
    storage.release_controller(study)
    assert search_summary(study, spec)["state"] == "interrupted"
