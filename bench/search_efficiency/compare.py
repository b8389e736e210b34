"""Compare samplers on the recorded tables: hypervolume against trials and against training steps, over seeds.

    .venv/bin/python bench/search_efficiency/compare.py [--tasks sst2 qnli] [--seeds 10] [--trials 100]

Per task and sampler (random, TPE, NSGA-II, GP, known-cost; TPE and known-cost also with early stopping at rungs
25% / 50%, reduction factor 3: "+es"), each seed replays a whole search (replay.py). Hypervolume is taken in
(dev accuracy, log10 trainable parameters), maximising the first and minimising the second, against the reference point
(accuracy 0.5 = chance on these balanced tasks, 10^7 trainable parameters); only completed trials count (stopped
ones never enter the front). "Best known" is the hypervolume of the whole table. Writes results.json and table.md.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from replay import ReplayedTrial, load_table, replay, table_steps  # noqa: E402

from autopeft.spec import SearchSpec  # noqa: E402

DEFAULT_SAMPLER = SearchSpec.model_fields["sampler"].default

REFERENCE = (0.5, 7.0)  # accuracy, log10 trainable parameters
EARLY_STOPPING = [0.25, 0.5]
# label -> (sampler, rungs, whether the study holds the task's chance level, as a real search's does[, the sampler's
# options changed from its defaults])
CONTENDERS = {
    "random": ("random", [], True),
    "tpe": ("tpe", [], True),
    "nsga2": ("nsga2", [], True),
    "gp": ("gp", [], True),
    "known-cost": ("known-cost", [], True),
    "tpe+es": ("tpe", EARLY_STOPPING, True),
    "known-cost+es": ("known-cost", EARLY_STOPPING, True),
    # What the chance level changes for the known-cost sampler: the same sampler in a study without it.
    "known-cost, no chance level": ("known-cost", [], False),
    "known-cost+es, no chance level": ("known-cost", EARLY_STOPPING, False),
    # A variant is the same sampler with options changed, e.g. ("known-cost", [], True, {"n_startup": 4}). The
    # standard-configurations start-up was measured so (commit 5fc42ae, standard_first.json) and not kept.
}
CHECKPOINTS = (10, 20, 33, 50, 75, 100)


def hypervolume(points: list[tuple[float, float]]) -> float:
    """2-D hypervolume of (accuracy, trainable params) points: accuracy up, log10 params down, from REFERENCE."""
    ref_accuracy, ref_log = REFERENCE
    kept = sorted((math.log10(p), a) for a, p in points if a > ref_accuracy and math.log10(p) < ref_log)
    area, best = 0.0, ref_accuracy
    for log_params, accuracy in kept:
        if accuracy > best:
            area += (ref_log - log_params) * (accuracy - best)
            best = accuracy
    return area


def curves(trials: list[ReplayedTrial]) -> tuple[list[float], list[tuple[int, float]]]:
    """Hypervolume after each trial, and (steps spent so far, hypervolume) after each trial."""
    by_trials, by_steps, points, steps = [], [], [], 0
    for trial in trials:
        steps += trial.steps
        if trial.state == "COMPLETE":
            points.append((trial.accuracy, trial.trainable_params))
        value = hypervolume(points)
        by_trials.append(value)
        by_steps.append((steps, value))
    return by_trials, by_steps


def at_steps(by_steps: list[tuple[int, float]], budget: int) -> float:
    return max((v for s, v in by_steps if s <= budget), default=0.0)


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.pstdev(values) if len(values) > 1 else 0.0


def first_reaching(curve: list[float], target: float) -> int | None:
    return next((i + 1 for i, v in enumerate(curve) if v >= target), None)


def summarise(task: str, runs: dict[str, list[dict]], best_known: float, trials: int, steps: int) -> dict:
    summary = {"best_known": best_known}
    for label, seeds in runs.items():
        hv = [r["by_trials"] for r in seeds]
        row = {f"hv@{n}": mean_std([c[n - 1] for c in hv]) for n in CHECKPOINTS
               if n <= trials and all(len(c) >= n for c in hv)}
        reach = [first_reaching(c, 0.95 * best_known) for c in hv]
        row["trials_to_95%"] = {"reached": sum(r is not None for r in reach), "of": len(reach),
                                "median": statistics.median([r for r in reach if r is not None])
                                if any(r is not None for r in reach) else None}
        row["steps_spent"] = mean_std([r["by_steps"][-1][0] for r in seeds])
        row["final_hv"] = mean_std([c[-1] for c in hv])
        row["trials"] = min(len(c) for c in hv)
        row["proposal_s"] = statistics.mean(r["seconds"] / len(r["by_trials"]) for r in seeds)
        summary[label] = row
    random_100 = summary["random"]["final_hv"][0]
    for label in runs:
        length = summary[label]["trials"]
        mean_curve = [statistics.mean(r["by_trials"][i] for r in runs[label]) for i in range(length)]
        summary[label]["trials_to_random_final"] = first_reaching(mean_curve, random_100)
    for label in runs:  # early stopping against the same sampler without it: steps to its final hypervolume
        plain = label.removesuffix("+es")
        if plain == label or plain not in runs:
            continue
        target = summary[plain]["final_hv"][0]
        grid = range(steps, trials * steps + 1, steps // 5)
        mean_by_steps = [(b, statistics.mean(at_steps(r["by_steps"], b) for r in runs[label])) for b in grid]
        reached = next((b for b, v in mean_by_steps if v >= target), None)
        summary[label]["steps_to_plain_final"] = reached
        summary[label]["steps_ratio"] = None if reached is None else reached / (trials * steps)
    return summary


def table(results: dict, trials: int) -> str:
    lines = []
    for task, summary in results.items():
        best = summary["best_known"]
        lines += [f"**{task}** — best known hypervolume (whole table) {best:.4f}; mean ± std over "
                  f"{summary['seeds']} seeds; default = {summary['default_sampler']}", "",
                  "| sampler | " + " | ".join(f"HV@{n}" for n in CHECKPOINTS if n <= trials)
                  + " | trials to 95% of best (reached/seeds, median) | trials to random's final HV (mean curve) "
                  "| training steps spent | proposal s/trial |",
                  "|---" * (len([n for n in CHECKPOINTS if n <= trials]) + 5) + "|"]
        for label, row in summary.items():
            if not isinstance(row, dict) or "final_hv" not in row:
                continue
            cells = [f"{row[f'hv@{n}'][0]:.4f} ± {row[f'hv@{n}'][1]:.4f}" if f"hv@{n}" in row else "—"
                     for n in CHECKPOINTS if n <= trials]
            reach = row["trials_to_95%"]
            steps = f"{row['steps_spent'][0]:,.0f}"
            if "steps_ratio" in row:
                ratio, plain = row["steps_ratio"], label.removesuffix("+es")
                steps += (f" (reaches {plain}'s final HV at {100 * ratio:.0f}% of its steps)"
                          if ratio is not None else f" (never reaches {plain}'s final HV)")
            lines.append(f"| {label} | " + " | ".join(cells)
                         + f" | {reach['reached']}/{reach['of']}, {reach['median']} | "
                         f"{row['trials_to_random_final'] or '—'} | {steps} | {row['proposal_s']:.3f} |")
        lines.append("")
    return "\n".join(lines)


def _rounded(value):
    """Five decimals are plenty for hypervolumes and seconds, and keep the per-seed curves small on disk."""
    if isinstance(value, float):
        return round(value, 5)
    if isinstance(value, list | tuple):
        return [_rounded(v) for v in value]
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["sst2", "qnli"])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--only", nargs="*", default=None, help="run only these contenders")
    parser.add_argument("--out", default="results.json",
                        help="results file here (its table: the same name, .md); e.g. a run with more seeds")
    parser.add_argument("--gp-trials", type=int, default=None,
                        help="trials per GP search, if fewer (its proposals cost about 1-2 s each here)")
    args = parser.parse_args()
    contenders = dict(CONTENDERS)
    if args.only:
        # random search is the yardstick every summary reads ("trials to random's final HV"): always replayed
        contenders = {k: v for k, v in contenders.items() if k in args.only or k == "random"}
    out = HERE / args.out
    saved = json.loads(out.read_text()) if out.is_file() else {}
    results = saved.get("summary", {})
    raw = saved.get("runs", {})
    for task in args.tasks:
        table_rows = load_table(task)
        steps = table_steps(table_rows)
        best_known = hypervolume([(r.accuracy, r.trainable_params) for r in table_rows.values()])
        runs: dict[str, list[dict]] = {}
        for label, (sampler, rungs, chance, *options) in contenders.items():
            runs[label] = []
            for seed in range(args.seeds):
                start = time.perf_counter()
                budget = args.gp_trials if sampler == "gp" and args.gp_trials else args.trials
                trials = replay(task, sampler, seed, budget, rungs=rungs, steps=steps, table=table_rows,
                                chance=chance, sampler_options=options[0] if options else None)
                by_trials, by_steps = curves(trials)
                runs[label].append({"seed": seed, "by_trials": by_trials, "by_steps": by_steps,
                                    "seconds": time.perf_counter() - start,
                                    "stopped": sum(t.state == "PRUNED" for t in trials)})
            print(task, label, f"final HV {statistics.mean(r['by_trials'][-1] for r in runs[label]):.4f}",
                  f"{statistics.mean(r['seconds'] for r in runs[label]):.1f}s/search", flush=True)
        raw[task] = {label: r for label, r in {**raw.get(task, {}), **runs}.items() if label in CONTENDERS}
        results[task] = summarise(task, raw[task], best_known, args.trials, steps)
        results[task] |= {"seeds": args.seeds, "default_sampler": DEFAULT_SAMPLER, "steps_per_trial": steps}
        out.write_text(json.dumps(_rounded({"settings": vars(args), "reference": REFERENCE, "summary": results,
                                            "runs": raw}), separators=(",", ":")))
    markdown = HERE / ("table.md" if args.out == "results.json" else Path(args.out).with_suffix(".md").name)
    markdown.write_text(table(results, args.trials))
    print(markdown.read_text())


if __name__ == "__main__":
    main()
