"""New tasks as a new user meets them: does the search learn what can be learned, and say so when nothing did?

    .venv/bin/python bench/new_tasks/run.py [--tasks sst2,rte] [--search-minutes 20] [--probe-minutes 10]

For each task a spec written as a new user would write it (``bench/new_tasks/<task>.yaml``: files, columns, the
objective; the bundled MiniLM, the ``full`` space, ``steps_per_trial: auto``, nothing tuned to the task):

1. ``autopeft search run``: the learnability probe picks the fidelity, then the search runs for the wall clock;
2. ``autopeft baselines --only lora-r8-qv,pfeiffer-64,ia3,bitfit``: hand-picked configurations at that fidelity
   (full fine-tuning at that fidelity is the probe's own run);
3. ``autopeft search show --json``: the numbers below.

Per task, in ``results.json`` and ``table.md``: the fidelity chosen and what the probe cost, full fine-tuning and the
best hand-picked baseline at that fidelity, the front's best point and the bar it had to clear (chance plus its
noise margin; where the search retrained it with new seeds because it cleared that bar only just, their mean and
their bar), wall time. The target: where full fine-tuning clears chance, the front's best does too and reaches
at least 95% of full fine-tuning's metric above chance; where nothing does, no front point is presented as a result.
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

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from workers.precision import cpu_has_native_bf16  # noqa: E402
from workers.precision import resolve as resolve_precision  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
AUTOPEFT = str(Path(sys.executable).with_name("autopeft"))
WORK = Path("/tmp/new-tasks")
TASKS = ("sst2", "qnli", "rte", "boolq", "arc_easy", "openbookqa", "uncertainty")
# Tasks whose files are made when the benchmark runs (from the package registry; their licence keeps them out of
# the repository): the task's module here writes them.
PREPARED = {"uncertainty": "uncertainty_data"}
HAND_PICKED = "lora-r8-qv,pfeiffer-64,ia3,bitfit"


def autopeft(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    done = subprocess.run([AUTOPEFT, *args], cwd=WORK, env=env, text=True, capture_output=True)
    if check and done.returncode != 0:
        raise RuntimeError(f"autopeft {' '.join(args)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return done


def cpu_name() -> str:
    """The processor's name with its family and model, whether its flags name native bf16, and, where they do, the
    precision ``auto`` trains MiniLM at there (it times a bf16 matrix product first: workers/precision.py)."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""

    def field(key: str) -> str | None:
        return next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith(key)), None)

    name = field("model name") or platform.processor() or "unknown"
    family, model = field("cpu family"), field("model\t")  # "model\t": not "model name"
    if family and model:
        # A name such as "AMD EPYC" covers processors of several generations that differ in speed and in bf16.
        name += f", family {family} model {model}"
    if not cpu_has_native_bf16():  # what precision: auto reads, a oneDNN instruction-set cap included
        return f"{name} (no native bf16)"
    if " amx_bf16" in info:
        return f"{name} (native bf16: AVX-512 BF16/AMX)"
    chosen = resolve_precision("auto", torch.device("cpu"), width=384)
    return f"{name} (native bf16: AVX-512 BF16, no AMX; auto trains in {chosen})"


def paired_comparison(task: str, first: int, second: int) -> dict | None:
    """Whether trial ``first`` scores better than trial ``second`` beyond the eval set's noise, and the other way
    round: the paired bootstrap on the same eval examples that ``search show`` uses to mark a front point a cheaper
    one matches (autopeft/results/chance.py). None where either trial has no stored predictions."""
    from autopeft.results.chance import significantly_better
    from autopeft.store import storage
    from autopeft.store.predictions import EvalTargets, decode

    study, spec = storage.load_search(storage.open_storage(f"sqlite:///{WORK / f'{task}.db'}", create=False), task)
    targets = EvalTargets.from_json(study.user_attrs.get(storage.EVAL_TARGETS))
    records = {r.number: r for r in storage.trial_records(study, spec)}
    predicted = [records[n].predictions for n in (first, second)]
    if targets is None or not all(predicted):
        return None
    a, b = (decode(p) for p in predicted)
    metric, maximize = spec.task_metric, spec.task_metric_direction == "maximize"
    return {"first": first, "second": second,
            "first_better": significantly_better(metric, maximize, a, b, targets, seed=first),
            "second_better": significantly_better(metric, maximize, b, a, targets, seed=second)}


def spec_for_run(task: str, search_minutes: float, probe_minutes: float) -> Path:
    """The task's spec with absolute data paths and this run's clocks, written beside its database."""
    spec = yaml.safe_load((HERE / f"{task}.yaml").read_text())
    for field in ("train", "eval"):
        spec["data"][field] = str((HERE / spec["data"][field]).resolve())
    spec["budget"]["wall_clock_minutes"] = search_minutes
    spec["budget"]["probe"] = {"minutes": probe_minutes}
    path = WORK / f"{task}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def measure(task: str, search_minutes: float, probe_minutes: float) -> dict:
    if task in PREPARED:
        subprocess.run([sys.executable, str(HERE / f"{PREPARED[task]}.py")], check=True)
    storage = f"sqlite:///{WORK / f'{task}.db'}"
    (WORK / f"{task}.db").unlink(missing_ok=True)
    started = time.monotonic()
    run = autopeft("search", "run", str(spec_for_run(task, search_minutes, probe_minutes)), "--name", task,
                   "--storage", storage, check=False)
    search_s = time.monotonic() - started
    if run.returncode not in (0, 2):
        raise RuntimeError(f"{task}: search run failed ({run.returncode}): {run.stderr[-2000:]}")
    shown = json.loads(autopeft("search", "show", task, "--storage", storage, "--json").stdout)
    probe = shown["probe"] or {}
    chosen = probe.get("chosen")
    baselines_s = 0.0
    if chosen is not None:
        started = time.monotonic()
        autopeft("baselines", task, "--storage", storage, "--only", HAND_PICKED, "--json")
        baselines_s = time.monotonic() - started
    return {**summarize(task, search_minutes, probe_minutes), "search_exit_code": run.returncode,
            "stopped_by_probe": run.returncode == 2, "search_seconds": round(search_s, 1),
            "baselines_seconds": round(baselines_s, 1),
            "closing_summary_tail": run.stdout.strip().splitlines()[-4:] if run.stdout else run.stderr.strip()[-600:],
            # what the user reads when the probe stops the search: the error on stderr, not the progress on stdout
            "stop_message": run.stderr.strip()[-1500:] if run.returncode == 2 else None}


def summarize(task: str, search_minutes: float, probe_minutes: float) -> dict:
    """The row of ``task`` as its stored search reads now (``search show --json``): what the probe chose, full
    fine-tuning, the baselines, the front; the run's own clocks and exit code are added by ``measure``."""
    storage = f"sqlite:///{WORK / f'{task}.db'}"
    shown = json.loads(autopeft("search", "show", task, "--storage", storage, "--json").stdout)
    probe = shown["probe"] or {}
    chosen = probe.get("chosen")
    chance = shown["chance"] or {}
    level = chance.get("chance")
    trials = shown["trials"]
    full = next((t for t in trials if (t.get("probe") or {}) == {"reference": "full", "steps": chosen}), None)
    hand = [t for t in trials if t.get("baseline") and t["state"] == "COMPLETE"]
    best_hand = max(hand, key=lambda t: t["measurements"]["accuracy"], default=None)
    front = [t for t in trials if t.get("pareto")]
    best = max(front, key=lambda t: t["values"]["accuracy"], default=None)
    test = (chance.get("tests") or {}).get(str(best["number"])) if best else None
    full_value = full["measurements"]["accuracy"] if full else None
    full_test = next((r["results"].get("full") for r in probe.get("rungs", []) if r["steps"] == chosen), None)
    share = proposed_share = None
    # the sampler's own best: the front point among trials the search proposed (not queued from the probe), so a
    # front carried by a re-trained reference shows what the search added
    proposed = max((t for t in front if not t.get("warm_start")), key=lambda t: t["values"]["accuracy"], default=None)
    # a front best retrained after the search (budget.confirm_near_chance) counts by its new seeds' mean
    retrained = bool(test) and test.get("method") == "confirmed"
    best_value = (test["value"] if retrained else best["values"]["accuracy"]) if best else None
    if best and full_value is not None and level is not None and full_value > level:
        share = (best_value - level) / (full_value - level)
        if proposed is not None:
            proposed_share = (proposed["values"]["accuracy"] - level) / (full_value - level)
    chosen_rung = next((r for r in probe.get("rungs", []) if r["steps"] == chosen), {})
    repeats = {name: r["again"] for rung in probe.get("rungs", []) for name, r in rung["results"].items()
               if "again" in r and rung["steps"] >= (chosen or 0)}
    full_clears = bool(full_test and full_test.get("above"))
    presented_as_result = bool(best) and not chance.get("nothing_learned") and chosen is not None
    if full_clears:
        met = bool(test and test["above"] and share is not None and share >= 0.95)
    else:
        met = not (presented_as_result and test and test["above"])
    return {
        "task": task, "cpu": cpu_name(), "fidelity_steps": chosen, "probe_reason": probe.get("reason"),
        "probe_seconds": probe.get("seconds"),
        "probe_runs": sum(1 + ("again" in x) for r in probe.get("rungs", []) for x in r["results"].values()),
        "probe_repeats": repeats or None, "chosen_rung": chosen_rung.get("results"),
        "probe_ladder": [r["steps"] for r in probe.get("rungs", [])],
        "chance": level, "chance_predicts": chance.get("predicts"), "eval_examples": chance.get("examples"),
        "full": full_value, "full_clears_chance": full_clears,
        "best_hand_picked": None if best_hand is None else {
            "name": best_hand["baseline"], "accuracy": best_hand["measurements"]["accuracy"],
            "trainable_params": best_hand["measurements"]["trainable_params"]},
        "front_best": None if best is None else {
            "trial": best["number"], "accuracy": best["values"]["accuracy"],
            "trainable_params": best["values"]["trainable_params"], "bar": None if test is None else test["bar"],
            "above_chance": None if test is None else test["above"], "method": best["config"].get("method"),
            "queued_from_probe": best.get("warm_start"),
            "retrained": None if not retrained else {"mean": test["value"], "seeds": test["seeds"]}},
        "sampler_best": None if proposed is None else {
            "trial": proposed["number"], "accuracy": proposed["values"]["accuracy"],
            "trainable_params": proposed["values"]["trainable_params"], "method": proposed["config"].get("method"),
            "share_of_full_above_chance": proposed_share},
        "share_of_full_above_chance": share, "nothing_learned": chance.get("nothing_learned"),
        # full fine-tuning against the front's best on the same eval examples: is a gap to it beyond noise?
        "full_vs_front_best": None if not (best and full) else paired_comparison(task, full["number"], best["number"]),
        "searched_trials": sum(1 for t in trials if t["state"] == "COMPLETE" and not t.get("baseline")
                               and not t.get("probe")),
        "target_met": met, "search_minutes": search_minutes, "probe_minutes": probe_minutes,
    }


def _origin(best: dict) -> str:
    """", method; queued from the probe's full (as partial)" for the table's front-best cell."""
    method = f", {best['method']}" if best.get("method") else ""
    queued = best.get("queued_from_probe")
    if not queued:
        return method
    return f"{method}; queued from the probe's {queued['probe']}" + (f" as {queued['as']}" if queued.get("as") else "")


def _retrained(best: dict) -> str:
    """"retrained: 0.5505 over 2 seeds, " where the point was retrained after the search; its bar is then the
    new seeds' (autopeft/results/chance.py seeds_test)."""
    again = best.get("retrained")
    return "" if not again else f"retrained: {again['mean']:.4f} over {again['seeds']} seeds, "


def _sampler_best(best: dict | None) -> str:
    if best is None:
        return "–"
    share = best.get("share_of_full_above_chance")
    return (f"{best['accuracy']:.4f} @ {int(best['trainable_params']):,}, {best['method']}"
            + ("" if share is None else f" ({share:.0%})"))


def _paired_cell(paired: dict | None) -> str:
    if paired is None:
        return "–"
    if paired["first_better"]:
        return "yes"
    return "no: the front's best is better" if paired["second_better"] else "no: within noise"


def fmt(value, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def table(results: list[dict], cpu: str) -> str:
    cpus = list(dict.fromkeys(r.get("cpu", cpu) for r in results))
    lines = [f"CPU: {'; '.join(f'{c} ({chr(97 + i)})' for i, c in enumerate(cpus))}; 2 workers × 1 core. Wall: the "
             "whole `search run` (probe included), against its caps (probe minutes + search minutes).", "",
             "| task | fidelity (steps) | probe | chance | full FT | best hand-picked | front best (bar) | "
             "share of full above chance | full FT better beyond noise? | the sampler's own best (share) | trials | "
             "wall | target |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        hand, best = r["best_hand_picked"], r["front_best"]
        cpu_mark = f" ({chr(97 + cpus.index(r.get('cpu', cpu)))})" if len(cpus) > 1 else ""
        lines.append(
            f"| {r['task']}{cpu_mark} | {r['fidelity_steps'] or 'none: stopped'} | {r['probe_runs']} runs, "
            f"{fmt(r['probe_seconds'], 0)} s | {fmt(r['chance'])} | {fmt(r['full'])} | "
            + ("–" if hand is None else f"{hand['name']} {hand['accuracy']:.4f}") + " | "
            + ("–" if best is None else f"{best['accuracy']:.4f} @ {int(best['trainable_params']):,}"
               f"{_origin(best)} ({_retrained(best)}bar {fmt(best['bar'])}"
               f"{'' if best['above_chance'] else ', at chance'})") + " | "
            f"{'–' if r['share_of_full_above_chance'] is None else format(r['share_of_full_above_chance'], '.0%')} | "
            f"{_paired_cell(r.get('full_vs_front_best'))} | {_sampler_best(r.get('sampler_best'))} | "
            f"{r['searched_trials']} | {r['search_seconds'] / 60:.1f} min (caps {r['probe_minutes']:g} + "
            f"{r['search_minutes']:g}) | {'met' if r['target_met'] else 'missed'} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--search-minutes", type=float, default=20.0)
    parser.add_argument("--probe-minutes", type=float, default=10.0)
    parser.add_argument("--summarize-only", action="store_true",
                        help="rebuild the rows of --tasks from their stored searches in the work folder (no training); "
                        "the clocks and exit codes stay those of the run that made them")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    out = HERE / "results.json"
    previous = json.loads(out.read_text()) if out.is_file() else {}
    # rows measured before each row named its processor ran on the one the file names; a task keeps one row per
    # processor kind (a run where bf16 is emulated, or oneDNN capped below it, adds its own row)
    results = {(r["task"], r.get("cpu") or previous.get("cpu")): {"cpu": previous.get("cpu"), **r}
               for r in previous.get("results", [])}
    here = cpu_name()
    for task in args.tasks.split(","):
        if args.summarize_only:
            kept = results[(task, here)]
            results[(task, here)] = {**kept, **summarize(task, kept["search_minutes"], kept["probe_minutes"]),
                                     "cpu": kept.get("cpu")}
        else:
            results[(task, here)] = measure(task, args.search_minutes, args.probe_minutes)
        print(json.dumps(results[(task, here)], indent=1), flush=True)
        tasks = list(TASKS)
        ordered = sorted(results.values(), key=lambda r: (tasks.index(r["task"]) if r["task"] in tasks else len(tasks),
                                                          "no native bf16" in (r.get("cpu") or "")))
        out.write_text(json.dumps({"cpu": here, "results": ordered}, indent=1))
        (HERE / "table.md").write_text(table(ordered, here))


if __name__ == "__main__":
    main()
