"""Time from "Launch" to the first trial running: a search launched through the service (HTTP, a Ray job) against
the same search started from a shell (`autopeft search run`, its own private Ray), measured in the same run.

    flock /tmp/autopeft-heavy.lock .venv/bin/python bench/service_launch/run.py --repeats 3

The service is started once (its Ray head and job server up) before the clock starts, as a team's service would
be; the shell baseline starts its private Ray inside the measured time, as a shell user's search does. Both poll
the study until a trial is RUNNING. Writes results.json beside this file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import optuna
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.conftest import tiny_spec  # noqa: E402  (the tests' tiny spec: MiniLM, bundled SST-2 rows)

TOKEN = "bench"


def spec(tmp: Path) -> dict:
    found = tiny_spec(tmp, budget={"trials": 1, "steps_per_trial": 10}, constraints=[],
                      workers={"parallel": 1, "cpus_per_trial": 1})
    for field in ("storage", "output_dir"):
        found.pop(field)
    return found


def first_running(storage: str, name: str, started: float, timeout_s: float = 300) -> float:
    while time.monotonic() - started < timeout_s:
        try:
            study = optuna.load_study(study_name=name, storage=storage)
            if any(t.state == optuna.trial.TrialState.RUNNING or t.datetime_start for t in study.get_trials()):
                return time.monotonic() - started
        except (KeyError, Exception):  # not created yet
            pass
        time.sleep(0.2)
    raise TimeoutError(name)


def post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"authorization": f"Bearer {TOKEN}", "content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    tmp = Path(tempfile.mkdtemp(prefix="bench-service-"))
    storage = f"sqlite:///{tmp / 'bench.db'}"
    environment = {**os.environ, "HF_HUB_OFFLINE": "1"}
    port = 8690
    server = subprocess.Popen([sys.executable, "-m", "autopeft.cli", "serve", "--storage", storage, "--root",
                               str(tmp / "root"), "--port", str(port), "--cpus", "2", "--token", TOKEN],
                              stdout=open(tmp / "serve.log", "w"), stderr=subprocess.STDOUT, env=environment)
    url = f"http://127.0.0.1:{port}"
    for _ in range(150):
        try:
            urllib.request.urlopen(url + "/api/health", timeout=2)
            break
        except OSError:
            time.sleep(1)
    service, shell = [], []
    try:
        for repeat in range(args.repeats):
            name = f"service-{repeat}"
            started = time.monotonic()
            post(url + "/api/searches", {"spec": yaml.safe_dump(spec(tmp)), "name": name})
            service.append(first_running(storage, name, started))
            while json.loads(urllib.request.urlopen(f"{url}/api/searches/{name}").read())["jobs"][-1]["status"] \
                    in ("PENDING", "RUNNING"):
                time.sleep(1)

            name = f"shell-{repeat}"
            path = tmp / f"{name}.yaml"
            path.write_text(yaml.safe_dump({**spec(tmp), "output_dir": str(tmp / "runs")}))
            started = time.monotonic()
            process = subprocess.Popen([sys.executable, "-m", "autopeft.cli", "search", "run", str(path), "--name",
                                        name, "--storage", storage], stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL, env=environment)
            shell.append(first_running(storage, name, started))
            process.wait(timeout=300)
            print(f"repeat {repeat}: service {service[-1]:.1f} s, shell {shell[-1]:.1f} s", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=120)
        shutil.rmtree(tmp, ignore_errors=True)
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    results = {"cpu": cpu, "cores": os.cpu_count(), "repeats": args.repeats,
               "service_launch_to_first_trial_s": service, "shell_launch_to_first_trial_s": shell,
               "median_service_s": statistics.median(service), "median_shell_s": statistics.median(shell),
               "ratio_service_over_shell": statistics.median(service) / statistics.median(shell)}
    (Path(__file__).parent / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
