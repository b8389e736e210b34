"""The noise check on RTE: does a search that cannot learn the task say so?

    .venv/bin/python bench/noise_check/run.py

A real search (``autopeft search run bench/noise_check/rte.yaml``: the live benchmarks' space, TPE, rungs at 25%
and 50%, 250 steps of 16), then ``autopeft confirm`` on its whole front with 3 new seeds. Recorded in
``results.json`` and ``table.md``: the chance level the search stored, which front points ``search show`` flags as
within noise of it, the stopped share, and each front point's searched accuracy beside its confirmed mean ± std.
A front of noise regresses towards chance on new seeds; a real one holds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from autopeft.results.views import describe_config

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
AUTOPEFT = str(Path(sys.executable).with_name("autopeft"))
STORAGE = "sqlite:////tmp/noise-check/noise.db"
NAME = "noise-rte"


def autopeft(*args: str) -> str:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([AUTOPEFT, *args], cwd=ROOT, env=env, check=True, stdout=subprocess.PIPE,
                          text=True).stdout


def show() -> dict:
    return json.loads(autopeft("search", "show", NAME, "--storage", STORAGE, "--json"))


def table(result: dict) -> str:
    chance = result["chance"]
    lines = [f"Chance (always the majority label): accuracy {chance['chance']:.4f} on {chance['examples']} dev pairs, "
             f"{chance['trials']} trials; each front point's bar is its permutation null's "
             "(autopeft/results/chance.py).", "",
             "| front trial | configuration | searched accuracy | bar | flagged | confirmed mean ± std (3 seeds) |",
             "|---|---|---|---|---|---|"]
    for row in result["front"]:
        confirmed = row["confirmed"]
        bar = chance["tests"].get(str(row["number"]), {}).get("bar")
        lines.append(f"| {row['number']} | {row['configuration']} | {row['accuracy']:.4f} | "
                     f"{'-' if bar is None else format(bar, '.4f')} | {'yes' if row['flagged'] else 'no'} | "
                     + (f"{confirmed['mean']:.4f} ± {confirmed['std']:.4f} |" if confirmed else "– |"))
    return "\n".join(lines) + "\n"


def main() -> None:
    Path("/tmp/noise-check").mkdir(exist_ok=True)
    started = time.monotonic()
    autopeft("search", "run", str(HERE / "rte.yaml"), "--name", NAME, "--storage", STORAGE)
    search_s = time.monotonic() - started
    started = time.monotonic()
    autopeft("confirm", NAME, "--seeds", "3", "--storage", STORAGE)
    confirm_s = time.monotonic() - started
    shown = show()
    chance = shown["chance"]
    trials = [t for t in shown["trials"] if not t.get("baseline")]
    front = []
    for t in trials:
        if not t.get("pareto"):
            continue
        confirmation = t.get("confirmation") or {}
        front.append({"number": t["number"], "configuration": describe_config(t["config"]),
                      "accuracy": t["values"]["accuracy"], "trainable_params": t["values"]["trainable_params"],
                      "flagged": t["number"] in chance["not_above_chance"],
                      "confirmed": None if not confirmation else {
                          "mean": confirmation["mean"]["accuracy"], "std": confirmation["std"]["accuracy"],
                          "values": [r["measurements"].get("accuracy") for r in confirmation["runs"] if r["ok"]]}})
    states = [t["state"] for t in trials]
    result = {"search_seconds": round(search_s, 1), "confirm_seconds": round(confirm_s, 1), "chance": chance,
              "trials": len(states), "pruned": states.count("PRUNED"), "complete": states.count("COMPLETE"),
              "best_accuracy": max((t["values"]["accuracy"] for t in trials if t["state"] == "COMPLETE"),
                                   default=None),
              "front": sorted(front, key=lambda r: r["trainable_params"])}
    (HERE / "results.json").write_text(json.dumps(result, indent=1))
    (HERE / "table.md").write_text(table(result))
    print(table(result))


if __name__ == "__main__":
    main()
