"""Warm start's first proposals, three ways, replayed on every recorded pair: is the source's front enough?

A source's front can be narrow (SST-2's and QNLI's fronts on the mean head are IA3 and LoRA) while the new task's
best points are another method (the uncertainty task's are parallel adapters). A portfolio that also queues each
method's best trial, as meta-learned warm starts do, hedges against that at the price of more queued trials.
Compared, with the known-cost sampler and the same 10-seed, 40-trial replay as warm.py:

- ``front``: what ``warm_start`` ships (autopeft.search.warm_start.first_proposals): the source's front, best first;
- ``front+method_best``: the front, then the best trial of each method the front lacks;
- ``interleaved``: at most two front points per method, then each other method's best, then the rest of the front.

    .venv/bin/python bench/search_efficiency/warm_portfolio.py

Writes warm_portfolio.json beside this file and prints trials to 95% of each target's best known hypervolume.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from compare import curves, first_reaching, hypervolume  # noqa: E402
from replay import load_table, replay, table_steps  # noqa: E402
from warm import SHARE, source_trials  # noqa: E402

import autopeft.search.warm_start as warm_start  # noqa: E402
from autopeft.search.space import SearchSpace  # noqa: E402
from autopeft.search.warm_start import SourceTrial, in_space  # noqa: E402

PAIRS = [("qnli_mean", "sst2_mean"), ("sst2_mean", "qnli_mean"), ("qnli_mean", "uncertainty_mean"),
         ("uncertainty_mean", "qnli_mean"), ("sst2_mean", "uncertainty_mean"), ("uncertainty_mean", "sst2_mean"),
         ("sst2_wide_mean", "qnli_mean"), ("qnli_mean", "sst2_wide_mean")]
Proposals = list[tuple[dict[str, Any], SourceTrial]]
SHIPPED = warm_start.first_proposals


def _best_per_method(sources: list[SourceTrial]) -> dict[str, SourceTrial]:
    best: dict[str, SourceTrial] = {}
    for trial in sorted(sources, key=lambda t: -t.first_value):
        best.setdefault(trial.config.get("method"), trial)
    return best


def front_then_method_best(sources: list[SourceTrial], space: SearchSpace, limit: int, seed: int = 0) -> Proposals:
    front = sorted((t for t in sources if t.on_front), key=lambda t: -t.first_value)
    covered = {t.config.get("method") for t in front}
    others = [t for method, t in _best_per_method(sources).items() if method not in covered]
    return in_space(front + sorted(others, key=lambda t: -t.first_value), space, limit, seed)


def interleaved(sources: list[SourceTrial], space: SearchSpace, limit: int, seed: int = 0) -> Proposals:
    front = sorted((t for t in sources if t.on_front), key=lambda t: -t.first_value)
    first: list[SourceTrial] = []
    for trial in front:
        if sum(t.config.get("method") == trial.config.get("method") for t in first) < 2:
            first.append(trial)
    covered = {t.config.get("method") for t in first}
    others = sorted((t for m, t in _best_per_method(sources).items() if m not in covered), key=lambda t: -t.first_value)
    return in_space(first + others + [t for t in front if t not in first], space, limit, seed)


VARIANTS: dict[str, Callable[..., Proposals]] = {
    "front": SHIPPED, "front+method_best": front_then_method_best, "interleaved": interleaved}


def main(seeds: int = 10, trials: int = 40) -> None:
    results: dict[str, dict[str, list[int | None]]] = {}
    for target, source in PAIRS:
        table = load_table(target)
        best = hypervolume([(r.accuracy, r.trainable_params) for r in table.values()])
        sources = source_trials(source)
        results[f"{target} from {source}"] = row = {}
        for name, variant in VARIANTS.items():
            warm_start.first_proposals = variant  # what queue_first_proposals calls
            try:
                row[name] = [first_reaching(curves(replay(target, "known-cost", seed, trials, steps=table_steps(table),
                                                          table=table, warm_from=sources))[0], SHARE * best)
                             for seed in range(seeds)]
            finally:
                warm_start.first_proposals = SHIPPED
            reached = [r if r is not None else trials + 1 for r in row[name]]
            print(f"{target} <- {source}: {name}: mean {statistics.mean(reached):.1f}, median "
                  f"{statistics.median(reached):.1f} ({row[name]})", flush=True)
    (HERE / "warm_portfolio.json").write_text(json.dumps(
        {"settings": {"seeds": seeds, "trials": trials, "sampler": "known-cost", "share": SHARE},
         "note": "trials to the share of the target's best known hypervolume, per seed (null: not within the "
                 "trials; counted as trials + 1 in the printed means)", "results": results}, indent=1))


if __name__ == "__main__":
    main()
