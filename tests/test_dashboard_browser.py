"""The dashboard in a real browser on a live search: a real search and `autopeft dashboard` as subprocesses,
Debian's Chromium driven by Playwright. The page must show the Pareto plot while the search runs, refresh by
itself to the database's final trial count, open a trial when a point on the front is clicked, and download the
knee point's export."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from autopeft import storage
from tests.conftest import ROOT, tiny_spec, write_spec

pytest.importorskip("playwright")
if not (shutil.which("chromium") or Path("/usr/bin/chromium").exists()):
    pytest.skip("needs Debian's chromium (scripts/apt-packages.txt)", allow_module_level=True)

from dashboard import browser  # noqa: E402

SCREENSHOT = ROOT / "docs" / "dashboard-pareto.png"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, process: subprocess.Popen, timeout_s: float = 60) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, "the dashboard exited early"
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"dashboard did not answer at {url}")


def trial_count(url: str, name: str) -> int:
    study, _ = storage.load_search(storage.open_storage(url), name)
    return len(study.get_trials(deepcopy=False))


def test_live_search_in_chromium(tmp_path):
    spec = tiny_spec(tmp_path, budget={"trials": 5, "steps_per_trial": 15})
    url = spec["storage"]
    env = {**os.environ, "AUTOPEFT_STORAGE": url}
    search = subprocess.Popen([sys.executable, "-m", "autopeft.cli", "search", "run", str(write_spec(tmp_path, spec)),
                               "--name", "browser", "--executor", "local"], env=env, cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    port = free_port()
    dashboard = None
    try:
        while not Path(url.removeprefix("sqlite:///")).exists():
            assert search.poll() is None, search.stdout.read()
            time.sleep(0.2)
        dashboard = subprocess.Popen([sys.executable, "-m", "autopeft.cli", "dashboard", "--storage", url,
                                      "--port", str(port)], env=env, cwd=tmp_path,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        address = f"http://127.0.0.1:{port}"
        wait_for_http(address, dashboard)
        with browser.open_page() as page:
            page.goto(address)
            browser.wait_for_pareto_plot(page, timeout_s=120)
            seen_while_running = search.poll() is None
            output, _ = search.communicate(timeout=300)
            assert search.returncode == 0, output
            expected = trial_count(url, "browser")
            # No reload: the live fragment must catch up with the database on its own.
            deadline = time.monotonic() + 30
            while browser.metrics(page).get("Trials") != str(expected) and time.monotonic() < deadline:
                page.wait_for_timeout(500)
            shown = browser.metrics(page)
            assert shown["Trials"] == str(expected), (shown, expected)
            assert int(shown["Complete"]) + int(shown["Failed"]) + int(shown["Pruned"]) <= expected
            shot = browser.screenshot(page, tmp_path / "dashboard-pareto.png")
            assert shot.stat().st_size > 20_000
            if os.environ.get("AUTOPEFT_UPDATE_SCREENSHOTS"):
                shutil.copy(shot, SCREENSHOT)
            # Click a point on the front: the trial's page opens.
            browser.click_point(page, page.locator(f"{browser.PLOT} .points path"), "h2:has-text('Trial ')")
            # Pick the knee and download the export, as a user would.
            page.locator('[data-testid="stSidebar"]').get_by_text("Pick and export").click()
            # The live search's short trials may all sit at chance; the view then asks before picking among them.
            page.get_by_text("include points within noise of chance").click()
            with page.expect_download(timeout=120_000) as download:
                page.get_by_text("Download export").click()
            names = zipfile.ZipFile(download.value.path()).namelist()
            assert "browser/summary.csv" in names and any(n.endswith("/adapter_config.json") for n in names), names
        assert seen_while_running, "the Pareto plot should appear while the search runs"
    finally:
        for process in (search, dashboard):
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=30)
