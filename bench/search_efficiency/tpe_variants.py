"""Does tuning TPE's own settings close the gap to the ≤ 33-trial target? Replays the default TPE and four
variants on the recorded tables (10 seeds, 100 trials each) and prints mean hypervolume at 33, 50 and 100 trials.

    .venv/bin/python bench/search_efficiency/tpe_variants.py [--tasks sst2 qnli] [--seeds 10]

Writes ``tpe_variants.json``. Each variant replaces the ``tpe`` entry of the sampler registry for its runs, so the
controller, space and replay are exactly those of ``compare.py``.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import optuna
from compare import curves
from replay import load_table, replay

import autopeft.search.samplers as samplers

HERE = Path(__file__).resolve().parent


def _startup(spec) -> int:
    return max(4, min(10, spec.budget.trials // 3))  # the default's rule


VARIANTS = {
    "default (multivariate, grouped, 10 start-up)": samplers.SAMPLERS["tpe"],
    "5 start-up trials": lambda spec, seed: optuna.samplers.TPESampler(
        seed=seed, multivariate=True, group=True, constant_liar=True, n_startup_trials=5),
    "5 start-up, 64 EI candidates": lambda spec, seed: optuna.samplers.TPESampler(
        seed=seed, multivariate=True, group=True, constant_liar=True, n_startup_trials=5, n_ei_candidates=64),
    "64 EI candidates": lambda spec, seed: optuna.samplers.TPESampler(
        seed=seed, multivariate=True, group=True, constant_liar=True, n_startup_trials=_startup(spec),
        n_ei_candidates=64),
    "univariate": lambda spec, seed: optuna.samplers.TPESampler(
        seed=seed, constant_liar=True, n_startup_trials=_startup(spec)),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["sst2", "qnli"])
    parser.add_argument("--seeds", type=int, default=10)
    args = parser.parse_args()
    default = samplers.SAMPLERS["tpe"]
    out = HERE / "tpe_variants.json"
    results: dict[str, dict[str, dict[str, float]]] = json.loads(out.read_text()) if out.is_file() else {}
    try:
        for task in args.tasks:
            table = load_table(task)
            for name, make in VARIANTS.items():
                samplers.SAMPLERS["tpe"] = make
                runs = [curves(replay(task, "tpe", seed, 100, table=table))[0] for seed in range(args.seeds)]
                row = {f"hv@{n}": round(statistics.mean(c[n - 1] for c in runs), 4) for n in (33, 50, 100)}
                results.setdefault(task, {})[name] = row  # other tasks' rows are kept
                print(task, name, row, flush=True)
    finally:
        samplers.SAMPLERS["tpe"] = default
    out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
