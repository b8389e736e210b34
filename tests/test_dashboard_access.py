"""Bound beyond 127.0.0.1, the dashboard asks for its token before it reads anything."""

from __future__ import annotations

import subprocess
import sys

from streamlit.testing.v1 import AppTest

from tests.conftest import ROOT

APP = str(ROOT / "dashboard" / "app.py")


def _app(monkeypatch, tmp_path, token: str | None) -> AppTest:
    monkeypatch.setenv("AUTOPEFT_STORAGE", f"sqlite:///{tmp_path / 'absent.db'}")
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
