"""Whole-search throughput: the default demo search run with the worker's speed-ups off, then on.

    .venv/bin/python bench/trial_speed/search.py [--trials 12]

Both runs use examples/sst2.yaml as shipped (two trials at a time, one CPU each, on a local Ray cluster); "before"
adds ``training: {group_by_length: false, cache_frozen_layers: false, precision: fp32}``. Reported: wall time,
trials finished, configurations finished per CPU-hour (finished trials / (wall hours × CPUs used)), and the best
accuracy found. Writes search_results.json beside this file.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from autopeft.store import storage  # noqa: E402

OFF = {"group_by_length": False, "cache_frozen_layers": False, "precision": "fp32"}


def run_search(label: str, spec: dict, folder: Path) -> dict:
    spec_file = folder / f"{label}.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "autopeft.cli", "search", "run", str(spec_file), "--name", label],
                   cwd=folder, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - start
    study, _ = storage.load_search(storage.open_storage(spec["storage"]), label)
    finished = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    cpus = spec["workers"]["parallel"] * spec["workers"]["cpus_per_trial"]
    return {"wall_s": wall, "finished": len(finished), "cpus": cpus,
            "configs_per_cpu_hour": len(finished) / (wall / 3600 * cpus),
            "best_accuracy": max(t.values[0] for t in finished) if finished else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=12)
    args = parser.parse_args()
    base = yaml.safe_load((ROOT / "examples" / "sst2.yaml").read_text())
    for key in ("train", "eval"):
        base["data"][key] = str(ROOT / "examples" / base["data"][key])
    base["budget"] |= {"trials": args.trials}
    base["budget"].pop("wall_clock_minutes", None)  # both must finish their trials
    results = {}
    with tempfile.TemporaryDirectory(prefix="autopeft-search-speed-") as tmp:
        folder = Path(tmp)
        for label, overrides in (("before", OFF), ("after", {})):
            spec = {**base, "storage": f"sqlite:///{folder / label}.db", "output_dir": str(folder / label),
                    "training": {**base.get("training", {}), **overrides}}
            results[label] = run_search(label, spec, folder)
            print(label, json.dumps(results[label]), flush=True)
    results["ratio_after_over_before"] = (results["after"]["configs_per_cpu_hour"]
                                          / results["before"]["configs_per_cpu_hour"])
    (HERE / "search_results.json").write_text(json.dumps({"settings": vars(args), **results}, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
