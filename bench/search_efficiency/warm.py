"""Warm start, replayed: a search of one recorded table started from another table's trials, against a cold start.

For each (target, source) pair and sampler, the same 10-seed replay as compare.py, once cold and once with the
source table's trials as an earlier search (``warm_start``): its front queued as the first proposals, all its
trials handed to the sampler's model (the known-cost sampler uses them as a ranking-weighted prior; TPE cannot,
so it gets the first proposals only). Reported: trials to 95% of the target table's best known hypervolume.

    .venv/bin/python bench/search_efficiency/warm.py [--seeds 10] [--trials 40]

Writes warm.json and warm.md beside this file.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import optuna

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from build_table import load_space  # noqa: E402
from compare import curves, first_reaching, hypervolume  # noqa: E402
from replay import config_key, load_table, replay, table_steps  # noqa: E402

from autopeft.results.pareto import dominates  # noqa: E402
from autopeft.search.warm_start import SourceTrial  # noqa: E402

# (target, source): the two tables that share one space, then each of them from a third task over the same space
# and back (uncertainty: hedge detection on Wikipedia sentences, unlike both)
PAIRS = [("qnli", "sst2"), ("sst2", "qnli"), ("sst2", "uncertainty"), ("qnli", "uncertainty"),
         ("uncertainty", "sst2"), ("uncertainty", "qnli")]
SAMPLERS = ["tpe", "known-cost"]
SHARE = 0.95


def points_of(task: str) -> dict[str, dict]:
    """Each configuration of the task's space with the parameters a trial drawing it gets (key -> params)."""
    space = load_space(task)
    found: dict[str, dict] = {}

    def collect(trial: optuna.Trial) -> float:
        config = space.suggest(trial).config
        found.setdefault(config_key(config), dict(trial.params))
        return 0.0

    study = optuna.create_study(sampler=optuna.samplers.BruteForceSampler(seed=0))
    study.optimize(collect, n_trials=int(space.size()) * 3)
    return found


def source_trials(task: str) -> list[SourceTrial]:
    """The recorded table of ``task`` as an earlier search's completed trials."""
    table, params = load_table(task), points_of(task)
    rows = [(key, row) for key, row in table.items() if key in params]
    values = [(row.accuracy, row.trainable_params) for _, row in rows]
    return [SourceTrial(f"table:{task}", "recorded", i, params[key], json.loads(key),
                        {"accuracy": row.accuracy, "trainable_params": row.trainable_params},
                        not any(dominates(other, mine, (1.0, -1.0)) for other in values), row.accuracy)
            for i, ((key, row), mine) in enumerate(zip(rows, values))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--pairs", nargs="+", default=[f"{t}<{s}" for t, s in PAIRS], metavar="TARGET<SOURCE",
                        help="replay only these; pairs measured before (same settings) stay in warm.json")
    args = parser.parse_args()
    out = HERE / "warm.json"
    kept = json.loads(out.read_text()) if out.is_file() else {}
    settings = {"seeds": args.seeds, "trials": args.trials}
    results: dict[str, dict] = kept.get("results", {}) if kept.get("settings", {}) == settings else {}
    for target, source in (pair.split("<") for pair in args.pairs):
        table = load_table(target)
        steps = table_steps(table)
        best = hypervolume([(r.accuracy, r.trainable_params) for r in table.values()])
        sources = source_trials(source)
        key = f"{target} from {source}"
        results[key] = {"best_known": best, "source_front": sum(s.on_front for s in sources)}
        for sampler in SAMPLERS:
            for mode in ("cold", "warm"):
                reached, at10, at20 = [], [], []
                for seed in range(args.seeds):
                    trials = replay(target, sampler, seed, args.trials, steps=steps, table=table,
                                    warm_from=sources if mode == "warm" else None)
                    curve, _ = curves(trials)
                    reached.append(first_reaching(curve, SHARE * best))
                    at10.append(curve[min(9, len(curve) - 1)] / best)
                    at20.append(curve[min(19, len(curve) - 1)] / best)
                hit = [r for r in reached if r is not None]
                results[key][f"{sampler} {mode}"] = {
                    "trials_to_95": reached, "median": statistics.median(hit) if len(hit) == len(reached) else None,
                    "mean": statistics.mean(hit) if hit else None, "reached": f"{len(hit)}/{len(reached)}",
                    "hv_share_at_10": statistics.mean(at10), "hv_share_at_20": statistics.mean(at20)}
                print(key, sampler, mode, results[key][f"{sampler} {mode}"], flush=True)
        out.write_text(json.dumps({"settings": settings, "share": SHARE, "results": results}, indent=1))
    lines = ["| target ← source | sampler | start | trials to 95% HV (mean; median) | reached | HV share @10 | "
             "HV share @20 |", "|---|---|---|---|---|---|---|"]
    for key, rows in results.items():
        for label, row in rows.items():
            if not isinstance(row, dict):
                continue
            sampler, mode = label.rsplit(" ", 1)
            mean = "–" if row["mean"] is None else f"{row['mean']:.1f}"
            median = "–" if row["median"] is None else f"{row['median']:.0f}"
            lines.append(f"| {key.replace(' from ', ' ← ')} | {sampler} | {mode} | {mean}; {median} | "
                         f"{row['reached']} | {row['hv_share_at_10']:.3f} | {row['hv_share_at_20']:.3f} |")
    (HERE / "warm.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
