"""The dashboard in a real browser on a live search: a real search and `autopeft dashboard` as subprocesses,
Debian's Chromium driven by Playwright. The page must show the Pareto plot while the search runs, refresh by
itself to the database's final trial count, open a trial when a point on the front is clicked, and download the
knee point's export. With launching on (`--allow-launch`), a search is launched from a spec pasted into the page,
stopped and resumed there, and stopped by the dashboard's end; a bad spec shows the command line's error, and
without the token the write controls are refused."""

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
import yaml

from autopeft.store import storage
from tests.conftest import DEMO_DATA, ROOT, tiny_spec, write_spec

pytest.importorskip("playwright")
if not (shutil.which("chromium") or Path("/usr/bin/chromium").exists()):
    pytest.skip("needs Debian's chromium (scripts/apt-packages.txt)", allow_module_level=True)

from playwright.sync_api import expect  # noqa: E402

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


def download_knee(page, name: str) -> None:
    """Pick the knee in Pick and export and download its export, as a user would: a zip with its adapter."""
    page.locator('[data-testid="stSidebar"]').get_by_text("Pick and export").click()
    # A short search's trials may all sit at chance; the view then asks before picking among them.
    browser.wait_until_idle(page)
    page.get_by_text("include points within noise of chance").click()
    archive = browser.download(page, page.get_by_text("Download export"))
    names = zipfile.ZipFile(archive).namelist()
    assert f"{name}/summary.csv" in names and any(n.endswith("/adapter_config.json") for n in names), names


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
            # Read until it shows: a read that lands while the page redraws finds no counts at all.
            deadline = time.monotonic() + 60
            shown = browser.metrics(page)
            while shown.get("Trials") != str(expected) and time.monotonic() < deadline:
                page.wait_for_timeout(500)
                shown = browser.metrics(page)
            assert shown.get("Trials") == str(expected), (shown, expected, page.inner_text("body")[:2000])
            assert int(shown["Complete"]) + int(shown["Failed"]) + int(shown["Pruned"]) <= expected
            shot = browser.screenshot(page, tmp_path / "dashboard-pareto.png")
            assert shot.stat().st_size > 20_000
            if os.environ.get("AUTOPEFT_UPDATE_SCREENSHOTS"):
                shutil.copy(shot, SCREENSHOT)
            # Click a point on the front: the trial's page opens.
            browser.click_point(page, page.locator(f"{browser.PLOT} .points path"), "h2:has-text('Trial ')")
            download_knee(page, "browser")
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


TOKEN = "launch-token"


def wait_for_metrics(page, until, timeout_s: float) -> dict[str, str]:
    """The manage panel's counts once ``until`` holds of them (the view redraws itself while a job is busy)."""
    deadline = time.monotonic() + timeout_s
    shown: dict[str, str] = {}
    while time.monotonic() < deadline:
        try:
            shown = browser.metrics(page)
        except Exception:  # an element redrawn while read
            shown = {}
        if until(shown):
            return shown
        page.wait_for_timeout(300)
    raise AssertionError(f"the page never showed the state asked; last: {shown}")


def test_launch_stop_and_resume_from_the_page(tmp_path):
    """`autopeft dashboard --allow-launch`: a search launched from a spec pasted into the page, as a Ray job on the
    dashboard's own local cluster; seen running, stopped with a trial interrupted, resumed, and stopped again by the
    dashboard's end. Finishing and exporting are the service's test (tests/test_service.py) and the page's download
    is the live test's above: the same code, so neither is paid for twice."""
    from tests.conftest import service_spec_text

    started = time.monotonic()
    port, db, root = free_port(), tmp_path / "x.db", tmp_path / "root"
    log = open(tmp_path / "dashboard.log", "w+")
    dashboard = subprocess.Popen(
        [sys.executable, "-m", "autopeft.cli", "dashboard", "--allow-launch", "--cpus", "2", "--storage",
         f"sqlite:///{db}", "--root", str(root), "--port", str(port), "--token", TOKEN],
        stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    address = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(address, dashboard, timeout_s=150)
        log.seek(0)
        printed = log.read()
        assert f"{address}/?token={TOKEN}" in printed, printed
        job_server = printed.split("searches run as Ray jobs at ")[1].split(",")[0]
        with browser.open_page() as page:
            # Reads are open on 127.0.0.1; writes are refused without the token.
            page.goto(f"{address}/?view=New+search")
            page.get_by_text("Launching a search needs the dashboard's token").wait_for(timeout=60_000)
            assert page.locator(".st-key-launch button").count() == 0

            page.goto(f"{address}/?view=New+search&token={TOKEN}")
            page.get_by_role("textbox", name="your name").fill("alice")
            page.get_by_role("textbox", name="your name").press("Enter")
            page.get_by_text("a spec of my own").click()
            spec_box = page.get_by_role("textbox", name="or paste the spec")
            spec_box.wait_for(timeout=60_000)
            # The choice reruns the page and moves the form's name box: until the rerun ends the browser shows the
            # old box (stale) beside the new one, and a fill would find two.
            name_box = page.get_by_role("textbox", name="name", exact=True)
            expect(name_box).to_have_count(1, timeout=60_000)
            name_box.fill("web")
            # A bad spec: the command line's own error, and nothing starts.
            spec_box.fill(service_spec_text().replace("name: accuracy", "name: acuracy"))
            page.locator(".st-key-launch button").click()
            page.get_by_text("objectives[0].name: unknown measurement 'acuracy'").wait_for(timeout=60_000)
            assert not db.exists() and not (root / "specs").exists()

            # A good one, naming its data files by file name, uploaded with it. Trials long enough that the one
            # resumed below is still training when the dashboard ends: at 400 steps a fast processor (bf16 on
            # AVX-512) finished both trials of the resumed search while the page went on to the demo and the form.
            spec_box.fill(service_spec_text(steps_per_trial=3000).replace(str(DEMO_DATA) + "/", ""))
            page.locator('[data-testid="stFileUploaderDropzoneInput"]').last.set_input_files(
                [DEMO_DATA / "train.tsv", DEMO_DATA / "dev.tsv"])
            page.get_by_text("dev.tsv", exact=True).wait_for()
            launched = time.monotonic()
            page.locator(".st-key-launch button").click()
            page.get_by_text("Launched web as Ray job").wait_for(timeout=90_000)
            assert (root / "uploads" / "web" / "dev.tsv").read_bytes() == (DEMO_DATA / "dev.tsv").read_bytes()
            page.locator(".st-key-open_launched button").click()
            running = wait_for_metrics(page, lambda m: m.get("Running") == "1" and m.get("State") == "running",
                                       timeout_s=120)
            first_trial_s = time.monotonic() - launched
            assert running["Job"] == "RUNNING" and running["Action"] == "run" and running["State"] == "running"
            page.get_by_text("Launched by alice").wait_for()

            page.locator(".st-key-stop button").click()
            # Every count asserted is waited for: the view redraws its counts one after another. The stop lands
            # mid-trial as a rule; a trial that ended just before it leaves none interrupted and one done.
            stopped = wait_for_metrics(page, lambda m: (m.get("Job"), m.get("State"), m.get("Running"))
                                       == ("STOPPED", "stopped", "0"), timeout_s=90)
            assert stopped["Interrupted"] == "1" or not stopped["Done"].startswith("0 "), stopped
            page.get_by_text("interrupted; resume with").wait_for()  # the controller's log tail

            page.locator(".st-key-resume button").click()
            # The resume job trains again: the stop's interrupted trial goes back to a worker.
            resumed = wait_for_metrics(page, lambda m: (m.get("Job"), m.get("Action"), m.get("State"),
                                                        m.get("Running")) == ("RUNNING", "resume", "running", "1"),
                                       timeout_s=180)
            assert resumed["Job"] == "RUNNING", resumed

            # Without the token the manage panel's controls are refused.
            page.goto(f"{address}/?view=Searches&search=web")
            page.get_by_text("Stopping, resuming, baselines and confirming needs").wait_for(timeout=60_000)
            # The buttons come in the same script run as the warning, but the browser can draw them well after it:
            # 3 s apart on a quiet machine, over 30 s (Playwright's default wait) in a full suite on two cores.
            for control in ("stop", "resume"):
                expect(page.locator(f".st-key-{control} button")).to_be_disabled(timeout=90_000)

            # The README demo, a bundled example (the first choice): its job is accepted.
            page.goto(f"{address}/?view=New+search&token={TOKEN}")
            page.get_by_role("textbox", name="name", exact=True).fill("demo")
            page.locator(".st-key-launch button").click()
            page.get_by_text("Launched demo as Ray job").wait_for(timeout=90_000)
            admitted = yaml.safe_load((root / "specs" / "demo.yaml").read_text())
            assert admitted["data"]["train"] == str(ROOT / "examples" / "data" / "sst2" / "train.tsv")
            assert admitted["output_dir"] == str((root / "runs").resolve()), admitted

            # The short form, filled in from an uploaded training file as `autopeft init` reads one.
            import pandas as pd

            reviews = tmp_path / "reviews.csv"
            pd.read_csv(DEMO_DATA / "train.tsv", sep="\t").head(80).rename(
                columns={"sentence": "review", "label": "stars"}).to_csv(reviews, index=False)
            page.goto(f"{address}/?view=New+search&token={TOKEN}")
            page.get_by_text("a short form").click()
            label_box = page.get_by_role("textbox", name="label column")
            expect(label_box).to_have_value("label", timeout=60_000)  # the form's default, before a file
            page.locator('[data-testid="stFileUploaderDropzoneInput"]').first.set_input_files([reviews])
            expect(label_box).to_have_value("stars", timeout=60_000)
            expect(page.get_by_role("textbox", name="text column(s), comma-separated (two for pairs)")).to_have_value(
                "review")
            page.get_by_text("read from the file: label 'stars': 2 classes").wait_for()
        print(f"launch to first trial running, as the page shows it: {first_trial_s:.1f} s; whole test "
              f"{time.monotonic() - started:.0f} s")
    finally:
        dashboard.terminate()
        dashboard.wait(timeout=120)
        log.close()
    # The dashboard's end stopped the resumed search mid-trial as Ctrl-C would (its trial closed as interrupted, to
    # train again on a resume), then ended its local Ray cluster, leaving no process.
    import urllib.request

    import psutil

    from autopeft.api import load_search

    summary = load_search("web", storage=f"sqlite:///{db}").summary
    assert summary["state"] == "stopped" and summary["interrupted"] >= 1, summary
    with pytest.raises(OSError):
        urllib.request.urlopen(job_server + "/api/version", timeout=5)
    assert not [p.pid for p in psutil.process_iter(["cmdline"]) if str(root) in " ".join(p.info["cmdline"] or [])]
