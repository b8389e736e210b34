"""Live comparison with the hand-picked baselines: a real search per task, then the standard configurations
trained into the same study at the same fidelity, and the question asked of each: does the found front hold a
configuration with at least its accuracy at no more trainable parameters?

    .venv/bin/python bench/live_baselines/run.py [--tasks sst2 qnli qnli_adapters] [--more-trials N]
    .venv/bin/python bench/live_baselines/run.py --tasks qnli_blocks --confirm 26,55,22,50,17

Each task is two commands of the product, run as a user runs them (``autopeft search run`` on ``TASK.yaml``, then
``autopeft baselines NAME --json``); this script only sequences them and collects ``search show --json`` and the
comparison into ``results.json`` and ``table.md``. Resumable per task: a task already in ``results.json`` is kept.
``--confirm`` retrains the named trials (a front point and the baseline it matched) with 3 new seeds
(``autopeft confirm``), so a match that rests on one seed's luck shows; trials confirmed before are not retrained.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
AUTOPEFT = str(Path(sys.executable).with_name("autopeft"))
STORAGE = "sqlite:////tmp/live-baselines/live.db"
# Each task is TASK.yaml here; qnli_adapters, qnli_wide and qnli_partial are more QNLI searches, over the adapter
# family (space_adapters.yaml), series adapters, LoRA and LayerNorm tuning (space_qnli.yaml), and those with partial
# fine-tuning (space_partial.yaml); qnli_mixed adds partial fine-tuning to the first space (space_mixed.yaml), and
# qnli_blocks / sst2_blocks give it a top block of layers there (space_blocks.yaml), on each task.
TASKS = ["sst2", "qnli", "qnli_adapters", "qnli_wide", "qnli_partial", "qnli_mixed", "qnli_blocks", "sst2_blocks",
         "sst2_full", "qnli_full"]


def autopeft(*args: str) -> str:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([AUTOPEFT, *args], cwd=ROOT, env=env, check=True, stdout=subprocess.PIPE, text=True)
    return done.stdout


def search_name(task: str, rerun: int = 0) -> str:
    """The search's name in the study: the first run ``live-TASK``, the first rerun ``live-TASK-rerun``, later
    reruns ``live-TASK-rerunK`` (K = 2, 3, ...), so a rerun never resumes the run it replaces."""
    suffix = "" if not rerun else "-rerun" if rerun == 1 else f"-rerun{rerun}"
    return f"live-{task.replace('_', '-')}" + suffix


def show(name: str) -> dict:
    """``autopeft search show NAME --json``: the search, its chance level and every trial."""
    return json.loads(autopeft("search", "show", name, "--storage", STORAGE, "--json"))


def run_task(task: str, rerun: int = 0) -> dict:
    name = search_name(task, rerun)
    Path("/tmp/live-baselines").mkdir(exist_ok=True)
    started = time.monotonic()
    autopeft("search", "run", str(HERE / f"{task}.yaml"), "--name", name, "--storage", STORAGE)
    search_s = time.monotonic() - started
    started = time.monotonic()
    comparison = json.loads(autopeft("baselines", name, "--storage", STORAGE, "--json"))
    baselines_s = time.monotonic() - started
    shown = show(name)
    return {"search_seconds": round(search_s, 1), "baselines_seconds": round(baselines_s, 1),
            "comparison": comparison, "search": shown}


def extend_task(task: str, trials: int, rerun: int = 0) -> dict:
    """Raise the task's search to ``trials`` (``autopeft search resume --trials``), then compare again (the
    baselines are in the study already, so none is retrained)."""
    name = search_name(task, rerun)
    started = time.monotonic()
    autopeft("search", "resume", name, "--trials", str(trials), "--storage", STORAGE)
    search_s = time.monotonic() - started
    comparison = json.loads(autopeft("baselines", name, "--storage", STORAGE, "--json"))
    shown = show(name)
    return {"trials": trials, "extra_search_seconds": round(search_s, 1), "comparison": comparison,
            "search": shown}


def confirm_task(task: str, trials: list[int], rerun: int = 0) -> dict:
    """Mean ± std over 3 new seeds of each named trial, beside its searched value."""
    name = search_name(task, rerun)
    shown = {t["number"]: t for t in show(name)["trials"]}
    missing = [n for n in trials if not shown[n].get("confirmation")]
    if missing:
        autopeft("confirm", name, "--trials", ",".join(map(str, missing)), "--seeds", "3", "--storage", STORAGE)
        shown = {t["number"]: t for t in show(name)["trials"]}
    return {str(n): {"baseline": shown[n].get("baseline"), "searched": shown[n]["values"]["accuracy"],
                     "trainable_params": shown[n]["values"]["trainable_params"],
                     "seeds": [r["measurements"]["accuracy"] for r in shown[n]["confirmation"]["runs"] if r["ok"]],
                     "mean": shown[n]["confirmation"]["mean"]["accuracy"],
                     "std": shown[n]["confirmation"]["std"]["accuracy"]} for n in trials}


def searched_trials_to_hold(result: dict) -> dict[str, int | None]:
    """Per baseline, how many searched trials (in the order they were proposed; baselines not counted, failed
    trials counted) the search had run when its front first held it: the first trial with at least the baseline's
    accuracy at no more trainable parameters. The front of the trials so far holds a baseline exactly when one of
    them does, since a front point dominates every trial it replaced. None: not held at the end (``baselines``
    does not count a point at chance as holding a baseline at chance)."""
    searched = [t for t in sorted(result["search"]["trials"], key=lambda t: t["number"]) if not t.get("baseline")]
    held: dict[str, int | None] = {}
    for row in result["comparison"]:
        if row["matched_by"] is None:
            held[row["baseline"]] = None
            continue
        held[row["baseline"]] = next(
            (count for count, trial in enumerate(searched, start=1)
             if trial["state"] == "COMPLETE" and trial["values"]["accuracy"] >= row["accuracy"]
             and trial["values"]["trainable_params"] <= row["trainable_params"]), None)
    return held


def table(results: dict) -> str:
    lines = ["| task | baseline | its accuracy | its params | front point | front accuracy | front params "
             "| searched trials to hold it |",
             "|---|---|---|---|---|---|---|---|"]
    for task, result in results.items():
        if "extended" in result:  # the comparison after the raised budget replaces the first one
            result = result["extended"]
            done = sum(1 for t in result["search"]["trials"]
                       if t["state"] in ("COMPLETE", "PRUNED") and not t.get("baseline") and not t.get("probe"))
            # the search's wall clock can stop a resume short of the trials asked for: then say how many ran
            asked = result["trials"]
            task = f"{task} ({asked} trials)" if done >= asked else f"{task} ({done} of {asked} trials)"
        held = searched_trials_to_hold(result)
        for row in result["comparison"]:
            matched = row["matched_by"] is not None
            lines.append(f"| {task} | {row['baseline']} | {row['accuracy']:.4f} | {int(row['trainable_params']):,} | "
                         + (f"trial {row['matched_by']} | {row['front accuracy']:.4f} | "
                            f"{int(row['front trainable_params']):,} |" if matched else "none | – | – |")
                         + f" {held[row['baseline']] or '–'} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["sst2", "qnli"], choices=TASKS)
    parser.add_argument("--more-trials", type=int, default=None, metavar="N",
                        help="raise each measured task's search to N trials and compare again")
    parser.add_argument("--rerun", action="store_true",
                        help="search each named task again from nothing (a new search name each time); the run it "
                             "replaces is kept in results.json as the task's 'previous'")
    parser.add_argument("--confirm", default=None, metavar="N,N",
                        help="retrain these trials of each task with 3 new seeds and record mean ± std")
    args = parser.parse_args()
    results_file = HERE / "results.json"
    results = json.loads(results_file.read_text()) if results_file.is_file() else {}
    for task in args.tasks:
        reruns = int(results.get(task, {}).get("rerun", 0))  # older files hold true for one rerun
        if task in results and args.rerun:
            results[task] = {"previous": results[task]}  # the runs before it stay, as a chain of previous
            reruns += 1
        if task in results and "comparison" not in results[task]:
            results[task] = {**run_task(task, rerun=reruns), "previous": results[task].get("previous"),
                             "rerun": reruns}
            results_file.write_text(json.dumps(results, indent=1))
        if task in results and args.confirm:
            results[task]["confirmation"] = confirm_task(task, [int(n) for n in args.confirm.split(",")],
                                                         reruns)
            results_file.write_text(json.dumps(results, indent=1))
            continue
        if task in results:
            if args.more_trials and results[task].get("extended", {}).get("trials") != args.more_trials:
                results[task]["extended"] = extend_task(task, args.more_trials, reruns)
            else:
                continue
        else:
            results[task] = run_task(task)
        results_file.write_text(json.dumps(results, indent=1))
        (HERE / "table.md").write_text(table(results))
    print(table(results))


if __name__ == "__main__":
    main()
