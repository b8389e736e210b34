"""Trial-cost benchmark: one default trial by our worker vs. the same configuration by Trainer + peft.

    python bench/trial_cost/run.py [--repeats 2] [--threads 1] [--steps 150]

Each contender runs in a fresh process, alternating, ``repeats`` times; the medians are compared as ratios
(plain / ours: above 1 means ours is cheaper). Writes results.json beside this file.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run_once(which: str, threads: int, steps: int) -> dict:
    done = subprocess.run([sys.executable, str(HERE / "contenders.py"), which, str(threads), str(steps)],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the demo gives each trial 1 CPU)")
    parser.add_argument("--steps", type=int, default=150, help="optimizer steps (the demo's steps_per_trial)")
    args = parser.parse_args()
    runs: dict[str, list[dict]] = {"ours": [], "plain": []}
    for repeat in range(args.repeats):
        for which in ("ours", "plain"):
            runs[which].append(run_once(which, args.threads, args.steps))
            print(f"repeat {repeat} {which}: {runs[which][-1]}", flush=True)
    median = {w: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for w, rs in runs.items()}
    ratios = {
        "total_time_plain_over_ours": median["plain"]["total_s"] / median["ours"]["total_s"],
        "trial_time_plain_over_ours": median["plain"]["trial_s"] / median["ours"]["trial_s"],
        "peak_rss_plain_over_ours": median["plain"]["peak_rss_mb"] / median["ours"]["peak_rss_mb"],
        "accuracy_ours_minus_plain": median["ours"]["accuracy"] - median["plain"]["accuracy"],
    }
    results = {"settings": vars(args), "median": median, "ratios": ratios, "runs": runs}
    (HERE / "results.json").write_text(json.dumps(results, indent=2))
    print(json.dumps({"median": median, "ratios": ratios}, indent=2))


if __name__ == "__main__":
    main()
