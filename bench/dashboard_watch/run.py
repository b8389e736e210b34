"""What watching a running search costs the machine: the CPU used by the dashboard and by the browser showing it,
with the live refresh on against the same page with it off, measured in the same run.

    flock /tmp/autopeft-heavy.lock .venv/bin/python bench/dashboard_watch/run.py --window 90

A real search runs throughout (the tests' tiny spec: MiniLM, bundled SST-2 rows, the `lora` space, one trial at a
time on one CPU, a budget it does not finish). Once it has completed --warm-trials trials, `autopeft dashboard`
starts and headless Chromium opens the search's Pareto front. The CPU time of the dashboard's process tree and of
Chromium's processes is read over --window seconds with the live refresh on (as the page opens), then over as long
with it switched off in the sidebar (the page still open, nothing redrawn). On a 2-core machine every core-second
the watcher takes is one the search could have trained with. Then, the search stopped, one redraw of the Pareto
page is timed in this process (Streamlit's AppTest, CPU time) as a redraw finds it when the search has not changed
(the caches keyed by its revision) and when everything is rebuilt (caches emptied: what every redraw cost before
they were keyed by revision). Writes results.json beside this file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import optuna
import psutil
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from dashboard import browser  # noqa: E402
from tests.conftest import tiny_spec  # noqa: E402  (MiniLM, bundled SST-2 rows)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tree_cpu_s(root: psutil.Process) -> float:
    total = 0.0
    for process in [root, *root.children(recursive=True)]:
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total


def chromium_cpu_s() -> float:
    total = 0.0
    for process in psutil.process_iter(["name", "cpu_times"]):
        if "chrom" in (process.info["name"] or "") and process.info["cpu_times"] is not None:
            total += process.info["cpu_times"].user + process.info["cpu_times"].system
    return total


def completed(url: str) -> int:
    study = optuna.load_study(study_name="watched", storage=url)
    return sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.get_trials(deepcopy=False))


def processor() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor()


def measure(page, dashboard: psutil.Process, url: str, window_s: float) -> dict:
    trials_before = completed(url)
    dashboard_before, chromium_before, started = tree_cpu_s(dashboard), chromium_cpu_s(), time.monotonic()
    page.wait_for_timeout(window_s * 1000)
    elapsed = time.monotonic() - started
    return {"window_s": round(elapsed, 1),
            "dashboard_cores": round((tree_cpu_s(dashboard) - dashboard_before) / elapsed, 3),
            "chromium_cores": round((chromium_cpu_s() - chromium_before) / elapsed, 3),
            "search_trials_completed": completed(url) - trials_before}


def redraw_cpu_s(url: str, repeats: int = 5) -> dict[str, float]:
    """CPU-seconds of one redraw of the Pareto page on the stopped search: unchanged against rebuilt."""
    os.environ["AUTOPEFT_STORAGE"] = url
    from streamlit.testing.v1 import AppTest

    from dashboard import cache

    app = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=120)
    app.session_state["search"] = "watched"
    app.run()  # imports and the first reads
    timed = {}
    for mode in ("unchanged", "rebuilt"):
        spent = []
        for _ in range(repeats):
            cache.revision.clear()  # the fingerprint is read again at every redraw, as after its 2 s
            if mode == "rebuilt":
                cache.clear()
            started = time.process_time()
            app.run()
            spent.append(time.process_time() - started)
            assert not app.exception, [e.value for e in app.exception]
        timed[mode] = round(sorted(spent)[len(spent) // 2], 3)
    return timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--window", type=float, default=90, help="seconds measured in each mode")
    parser.add_argument("--warm-trials", type=int, default=6, help="trials completed before the page opens")
    parser.add_argument("--out", default=str(Path(__file__).with_name("results.json")))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="autopeft-watch-") as folder:
        tmp = Path(folder)
        spec = tiny_spec(tmp, budget={"trials": 500, "steps_per_trial": 20}, constraints=[],
                         workers={"parallel": 1, "cpus_per_trial": 1})
        (tmp / "spec.yaml").write_text(yaml.safe_dump(spec))
        url = spec["storage"]
        environment = {**os.environ, "HF_HUB_OFFLINE": "1"}
        search = subprocess.Popen([sys.executable, "-m", "autopeft.cli", "search", "run", str(tmp / "spec.yaml"),
                                   "--name", "watched", "--executor", "local"], cwd=tmp, env=environment,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        dashboard = None
        try:
            while True:
                assert search.poll() is None, "the watched search ended early"
                try:
                    if completed(url) >= args.warm_trials:
                        break
                except KeyError:  # not created yet
                    pass
                time.sleep(2)
            port = free_port()
            dashboard = subprocess.Popen([sys.executable, "-m", "autopeft.cli", "dashboard", "--storage", url,
                                          "--port", str(port)], cwd=tmp, env=environment,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            address = f"http://127.0.0.1:{port}"
            for _ in range(600):
                try:
                    urllib.request.urlopen(address + "/_stcore/health", timeout=2)
                    break
                except OSError:
                    time.sleep(0.2)
            with browser.open_page() as page:
                page.goto(address)
                browser.wait_for_pareto_plot(page, timeout_s=120)
                page.get_by_text("refreshing every").wait_for(timeout=60_000)
                page.wait_for_timeout(5000)  # the first render's imports and reads are not a redraw's
                live = measure(page, psutil.Process(dashboard.pid), url, args.window)
                page.locator('[data-testid="stSidebar"]').get_by_text("live refresh").click()
                page.get_by_text("refreshing every").wait_for(state="detached", timeout=60_000)
                page.wait_for_timeout(3000)
                still = measure(page, psutil.Process(dashboard.pid), url, args.window)
        finally:
            for process in (dashboard, search):
                if process is not None:
                    process.terminate()
                    process.wait(timeout=120)
        trials = completed(url)
        redraw = redraw_cpu_s(url)
    watcher = {mode: round(r["dashboard_cores"] + r["chromium_cores"], 3) for mode, r in
               (("live", live), ("still", still))}
    results = {"processor": processor(), "cores": os.cpu_count(), "commit": subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip(),
        "live_refresh_on": live, "live_refresh_off": still, "watcher_cores": watcher,
        "redraw_cpu_s": {"trials": trials, **redraw},
        "live_over_still": round(watcher["live"] / watcher["still"], 2) if watcher["still"] else None}
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
