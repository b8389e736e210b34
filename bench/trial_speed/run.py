"""Trial-speed benchmark: four configurations trained by Trainer + peft/adapters, by the worker without its
speed-ups, and by the worker with them, in the same run.

    .venv/bin/python bench/trial_speed/run.py [--seeds 0 1 2] [--threads 1] [--steps 150]

Each (configuration, contender, seed) runs in a fresh process (contenders.py); the contenders alternate so slow
phases of the machine hit all of them. Resumable: finished runs in results.json are kept. Reports per
configuration the mean wall time per trial and its ratios (plain / ours: above 1 means ours is faster), the mean
dev accuracy of each contender and the difference, and writes table.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from contenders import CONFIGS  # noqa: E402

CONTENDERS = ("plain", "before", "ours")
LABELS = {"lora-all": "LoRA r=8 q,v, all 6 layers", "lora-top2": "LoRA r=8 q,v, top 2 layers",
          "series-adapter": "series adapter (Pfeiffer, 64)", "prefix": "prefix tuning (10)"}


def run_once(contender: str, config: str, seed: int, threads: int, steps: int) -> dict:
    done = subprocess.run([sys.executable, str(HERE / "contenders.py"), contender, config, str(seed), str(threads),
                           str(steps)], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{contender} {config} seed {seed} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def summarise(results: dict, seeds: list[int]) -> dict:
    summary = {}
    for config in CONFIGS:
        runs = {c: [results[f"{config}|{c}|{s}"] for s in seeds if f"{config}|{c}|{s}" in results]
                for c in CONTENDERS}
        if not all(runs.values()):
            continue

        def mean(contender: str, turn: str, key: str, runs: dict = runs) -> float:
            return statistics.mean(r[turn][key] for r in runs[contender])

        row = {"seeds": len(runs["ours"]),
               "plain_s": mean("plain", "cold", "trial_s"), "before_s": mean("before", "cold", "trial_s"),
               "ours_cold_s": mean("ours", "cold", "trial_s"), "ours_warm_s": mean("ours", "warm", "trial_s"),
               "plain_accuracy": mean("plain", "cold", "accuracy"),
               "before_accuracy": mean("before", "cold", "accuracy"),
               "ours_accuracy": statistics.mean(r[t]["accuracy"] for r in runs["ours"] for t in ("cold", "warm")),
               "plain_peak_mb": statistics.mean(r["peak_rss_mb"] for r in runs["plain"]),
               "ours_peak_mb": statistics.mean(r["peak_rss_mb"] for r in runs["ours"]),
               "frozen_layers": runs["ours"][0]["cold"]["frozen_layers"],
               "precision": runs["ours"][0]["cold"]["precision"]}
        row |= {"speedup_warm": row["plain_s"] / row["ours_warm_s"],
                "speedup_cold": row["plain_s"] / row["ours_cold_s"],
                "speedup_before": row["plain_s"] / row["before_s"],
                "accuracy_ours_minus_plain": row["ours_accuracy"] - row["plain_accuracy"]}
        summary[config] = row
    if len(summary) == len(CONFIGS):
        summary["mean speed-up (warm)"] = statistics.mean(r["speedup_warm"] for r in summary.values())
        summary["mean speed-up (cold)"] = statistics.mean(r["speedup_cold"] for k, r in summary.items()
                                                          if isinstance(r, dict))
    return summary


def table(summary: dict, settings: dict) -> str:
    lines = [f"{settings['steps']} steps × batch 16, {settings['threads']} thread(s), mean of "
             f"{len(settings['seeds'])} seeds; speed-up = Trainer time / ours.", "",
             "| configuration | Trainer + library | worker, speed-ups off | ours, first trial | ours, in a search "
             "| speed-up (first / in a search) | dev accuracy: Trainer / ours (Δ points) |",
             "|---|---|---|---|---|---|---|"]
    for config, row in summary.items():
        if not isinstance(row, dict):
            continue
        lines.append(
            f"| {LABELS[config]} | {row['plain_s']:.1f} s | {row['before_s']:.1f} s | {row['ours_cold_s']:.1f} s | "
            f"{row['ours_warm_s']:.1f} s | {row['speedup_cold']:.2f}× / **{row['speedup_warm']:.2f}×** | "
            f"{row['plain_accuracy']:.4f} / {row['ours_accuracy']:.4f} "
            f"({100 * row['accuracy_ours_minus_plain']:+.2f}) |")
    if "mean speed-up (warm)" in summary:
        lines.append(f"| **mean** | | | | | {summary['mean speed-up (cold)']:.2f}× / "
                     f"**{summary['mean speed-up (warm)']:.2f}×** | |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (a search gives each trial 1 CPU)")
    parser.add_argument("--steps", type=int, default=150, help="optimizer steps (the demo's steps_per_trial)")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    args = parser.parse_args()
    results_file = HERE / "results.json"
    saved = json.loads(results_file.read_text()) if results_file.is_file() else {}
    results = saved.get("runs", {}) if saved.get("settings", {}).get("steps") == args.steps else {}
    for seed in args.seeds:
        for config in args.configs:
            order = CONTENDERS if seed % 2 == 0 else tuple(reversed(CONTENDERS))
            for contender in order:
                key = f"{config}|{contender}|{seed}"
                if key in results:
                    continue
                results[key] = run_once(contender, config, seed, args.threads, args.steps)
                print(key, json.dumps(results[key]), flush=True)
                results_file.write_text(json.dumps({"settings": vars(args), "runs": results}, indent=2))
    summary = summarise(results, args.seeds)
    results_file.write_text(json.dumps({"settings": vars(args), "summary": summary, "runs": results}, indent=2))
    (HERE / "table.md").write_text(table(summary, vars(args)))
    print((HERE / "table.md").read_text())


if __name__ == "__main__":
    main()
