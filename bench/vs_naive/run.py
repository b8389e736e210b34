"""Our default search against the naive one a user writes instead, end to end, on the same machine and data.

    .venv/bin/python bench/vs_naive/run.py                     # naive 1,000 s, then ours 500 s, 250 steps a trial
    .venv/bin/python bench/vs_naive/run.py --quick             # validation: 90 s each, 10 steps a trial
    .venv/bin/python bench/vs_naive/run.py --analyse-only      # recompute the table from the last run's trials
    .venv/bin/python bench/vs_naive/run.py --space full        # ours in every method's space, naive in LoRA's

- naive (naive.py): Ray Tune ``Tuner`` + ``OptunaSearch`` (TPE, accuracy max / trainable params min), each trial a
  plain ``transformers.Trainer`` + ``peft`` LoRA run; two one-CPU trials at a time; ``time_budget_s`` = its limit.
- ours (ours.py): ``autopeft search run`` on examples/sst2.yaml (our default search), ``wall_clock_minutes`` =
  its limit.

Both train ``--steps`` steps at batch 16 per full trial on the bundled 4,000-sentence SST-2 sample and evaluate on
the full 872-sentence dev set. They run one after the other, never at the same time, each in its own process;
each one's clock starts when its process is launched (so it includes imports, Ray's start, data loading). A
trial counts at a checkpoint if it finished by then: completed trials only (the naive search's trials stopped by
its time budget and our duplicate proposals, baselines and early-stopped trials never count). Hypervolume in
(dev accuracy, log10 trainable parameters) from the reference point REFERENCE of bench/search_efficiency/compare.py
(accuracy 0.5 = chance, 10^7 parameters), accuracy maximised and parameters minimised.

Writes results.json beside this script (with --quick: /tmp/vs-naive-quick/results.json) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(HERE), str(ROOT / "bench" / "search_efficiency"), str(ROOT)]

import ours  # noqa: E402
from compare import REFERENCE, _rounded, hypervolume  # noqa: E402  (bench/search_efficiency/compare.py)

TARGET = "hypervolume of ours after its limit >= the naive search's after its (longer) limit"


def run_naive(seconds: float, steps: int, seed: int, workdir: Path) -> dict:
    workdir.mkdir(parents=True, exist_ok=True)
    out = workdir / "naive.json"
    out.unlink(missing_ok=True)
    command = [sys.executable, str(HERE / "naive.py"), "--seconds", str(seconds), "--steps", str(steps),
               "--seed", str(seed), "--workdir", str(workdir), "--out", str(out)]
    launched = time.time()
    with open(workdir / "naive.log", "w") as log:
        subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=True, timeout=seconds + 900,
                       env={**os.environ, "HF_HUB_OFFLINE": "1"})
    ended = time.time()
    return {"launched_at": launched, "ended_at": ended, "command": command, **json.loads(out.read_text())}


def run_ours(seconds: float, steps: int, workdir: Path, rungs: list[float] | None, drop_constraints: bool,
             space: str | None = None) -> dict:
    launched = time.time()
    result = ours.search(seconds, steps, workdir, rungs=rungs, drop_constraints=drop_constraints, space=space)
    return {"launched_at": launched, "ended_at": time.time(), **result}


def rows(raw: dict) -> list[dict]:
    """Completed trials on the run's own clock: seconds from its launch to the trial's end, in finishing order."""
    done = [{"finished_s": t["finished_at"] - raw["launched_at"], "accuracy": t["accuracy"],
             "trainable_params": t["trainable_params"], "config": t["config"],
             **{k: t[k] for k in ("effective_modules", "effective_layers", "feasible", "number") if k in t}}
            for t in raw["trials"] if t["state"] == "COMPLETE"]
    return sorted(done, key=lambda r: r["finished_s"])


def by_time(trials: list[dict], seconds: float) -> tuple[float, int, float | None]:
    """Hypervolume, number of trials and best accuracy among the trials finished within ``seconds``."""
    kept = [t for t in trials if t["finished_s"] <= seconds]
    return (hypervolume([(t["accuracy"], t["trainable_params"]) for t in kept]), len(kept),
            max((t["accuracy"] for t in kept), default=None))


def summarise(settings: dict, naive: dict, mine: dict) -> dict:
    limits = {"naive": settings["naive_seconds"], "ours": settings["ours_seconds"]}
    runs = {"naive": rows(naive), "ours": rows(mine)}
    every = settings["every"]
    checkpoints = sorted({*range(every, int(max(limits.values())) + 1, every), *map(int, limits.values())})
    curves = {name: [{"t_s": t, **dict(zip(("hv", "trials", "best_accuracy"), by_time(runs[name], t)))}
                     for t in checkpoints if t <= limits[name]] for name in runs}
    ours_hv, ours_n, ours_best = by_time(runs["ours"], limits["ours"])
    naive_hv, naive_n, naive_best = by_time(runs["naive"], limits["naive"])
    naive_same, naive_same_n, _ = by_time(runs["naive"], limits["ours"])
    headline = {
        "target": TARGET,
        "ours": {"seconds": limits["ours"], "hv": ours_hv, "trials": ours_n, "best_accuracy": ours_best},
        "naive": {"seconds": limits["naive"], "hv": naive_hv, "trials": naive_n, "best_accuracy": naive_best},
        "naive_at_ours_limit": {"seconds": limits["ours"], "hv": naive_same, "trials": naive_same_n},
        "ratio": ours_hv / naive_hv if naive_hv > 0 else None,
        "met": ours_hv >= naive_hv,
    }
    phases = {name: {"wall_s": raw["ended_at"] - raw["launched_at"],
                     "states": _count(t["state"] for t in raw["trials"])} for name, raw in (("naive", naive),
                                                                                            ("ours", mine))}
    return {"settings": settings, "reference": {"accuracy": REFERENCE[0], "log10_trainable_params": REFERENCE[1]},
            "machine": {"platform": platform.platform(), "processor": platform.processor(),
                        "cpus": os.cpu_count(), "python": platform.python_version()},
            "headline": headline, "curves": curves, "phases": phases, "trials": runs,
            "ours_spec": mine.get("spec"), "naive_command": naive.get("command"), "ours_command": mine.get("command")}


def _count(states) -> dict[str, int]:
    counts: dict[str, int] = {}
    for state in states:
        counts[state] = counts.get(state, 0) + 1
    return counts


def table(summary: dict) -> str:
    head, curves = summary["headline"], summary["curves"]
    naive_at = {c["t_s"]: c for c in curves["naive"]}
    ours_at = {c["t_s"]: c for c in curves["ours"]}
    lines = ["| wall clock | naive: trials done | naive: HV | ours: trials done | ours: HV |",
             "|---|---|---|---|---|"]
    for t in sorted({*naive_at, *ours_at}):
        cells = [cell for c in (naive_at.get(t), ours_at.get(t))
                 for cell in ((str(c["trials"]), f"{c['hv']:.4f}") if c else ("—", "—"))]
        lines.append(f"| {t} s | " + " | ".join(cells) + " |")
    ratio = head["ratio"]
    lines += ["", f"Headline: ours after {head['ours']['seconds']:g} s HV {head['ours']['hv']:.4f} "
              f"({head['ours']['trials']} trials, best accuracy {_acc(head['ours']['best_accuracy'])}) vs naive after "
              f"{head['naive']['seconds']:g} s HV {head['naive']['hv']:.4f} ({head['naive']['trials']} trials, best "
              f"accuracy {_acc(head['naive']['best_accuracy'])}): ratio "
              f"{'n/a' if ratio is None else f'{ratio:.3f}'} — target {'met' if head['met'] else 'NOT met'}. "
              f"Reference point: accuracy {REFERENCE[0]}, log10 trainable params {REFERENCE[1]}."]
    return "\n".join(lines)


def _acc(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--naive-seconds", type=float, default=1000.0)
    parser.add_argument("--ours-seconds", type=float, default=500.0)
    parser.add_argument("--steps", type=int, default=250, help="optimizer steps per full trial, batch 16")
    parser.add_argument("--every", type=int, default=100, help="seconds between hypervolume checkpoints")
    parser.add_argument("--seed", type=int, default=0, help="the naive search's TPE and Trainer seed")
    parser.add_argument("--rungs", type=float, nargs="*", default=None,
                        help="early stopping for ours (budget.rungs); default: none, as in the demo spec")
    parser.add_argument("--drop-constraints", action="store_true",
                        help="remove the demo spec's 1%% trainable-parameter constraint from ours")
    parser.add_argument("--space", default=None,
                        help="ours searches this space of search_spaces/ (e.g. full) instead of the demo's lora")
    parser.add_argument("--order", choices=["naive-first", "ours-first"], default="naive-first")
    parser.add_argument("--quick", action="store_true", help="validation: 90 s each, 10 steps, checkpoints 15 s")
    parser.add_argument("--workdir", type=Path, default=None, help="[default: /tmp/vs-naive or /tmp/vs-naive-quick]")
    parser.add_argument("--out", type=Path, default=None,
                        help="[default: results.json here, or /tmp/vs-naive-quick/results.json with --quick]")
    parser.add_argument("--analyse-only", action="store_true",
                        help="do not search: rebuild the results from the trials saved in the work folder")
    args = parser.parse_args()
    if args.quick:
        args.naive_seconds, args.ours_seconds, args.steps, args.every = 90.0, 90.0, 10, 15
    workdir = args.workdir or Path("/tmp/vs-naive-quick" if args.quick else "/tmp/vs-naive")
    out = args.out or (workdir / "results.json" if args.quick else HERE / "results.json")
    settings = {k: v for k, v in vars(args).items() if k not in ("workdir", "out", "analyse_only")}
    settings |= {"batch_size": 16, "train_sentences": 4000, "dev_sentences": 872, "parallel": 2, "cpus_per_trial": 1}
    raw_file = workdir / "raw.json"
    if args.analyse_only:
        raw = json.loads(raw_file.read_text())
    else:
        workdir.mkdir(parents=True, exist_ok=True)
        raw = {}
        for name in (("naive", "ours") if args.order == "naive-first" else ("ours", "naive")):
            start = time.perf_counter()
            if name == "naive":
                raw[name] = run_naive(args.naive_seconds, args.steps, args.seed, workdir / "naive")
            else:
                raw[name] = run_ours(args.ours_seconds, args.steps, workdir / "ours", args.rungs,
                                     args.drop_constraints, args.space)
            print(f"{name}: {time.perf_counter() - start:.0f} s, "
                  f"{sum(t['state'] == 'COMPLETE' for t in raw[name]['trials'])} completed trials", flush=True)
            raw_file.write_text(json.dumps(raw))
    summary = summarise(settings, raw["naive"], raw["ours"])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(_rounded(summary), indent=1))
    print(table(summary))
    print(f"\nwritten: {out}")


if __name__ == "__main__":
    main()
