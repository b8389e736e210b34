"""A task as a new user meets it: a data file, `autopeft init`, then `autopeft search run` on the spec it drafted,
nothing edited; then the hand-picked baselines at the fidelity the probe chose. Shared by the benchmarks of the
tasks a user brings in their own form (multi_label.py, tagging.py).

The report reads the search back from its database: the fidelity and the probe's cost, full fine-tuning (the
probe's own run at that fidelity), each hand-picked baseline and whether the front holds it (a point with at least
its metric at no more of its trainable parameters, the rule `autopeft baselines` reads a front by), the front,
chance, and the share of full fine-tuning's lead over chance the front's best reaches.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.new_tasks.run import AUTOPEFT, HAND_PICKED, cpu_name


def autopeft_in(work: Path, *args: str) -> str:
    """One `autopeft` command in ``work``, as a user runs it; its output, or an error with its last words."""
    done = subprocess.run([AUTOPEFT, *args], cwd=work, text=True, capture_output=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"})
    if done.returncode != 0:
        raise RuntimeError(f"autopeft {' '.join(args)} failed: {done.stderr[-2000:]}")
    return done.stdout


def run_drafted(work: Path, name: str, write_data: Callable[[Path], tuple[list[str], dict[str, Any]]],
                steps: int | None = None) -> dict:
    """Write the data into a fresh ``work`` folder (``write_data`` gives `init`'s file arguments and what the
    data holds), draft the spec with `init`, search it, train the hand-picked baselines; what was measured on the
    way (kept in ``work``/measured.json, so that ``report`` can be rerun from the database alone). ``steps``: the
    one edit, a fixed ``steps_per_trial`` instead of the probe's choice."""
    work.mkdir(parents=True, exist_ok=True)
    for old in work.glob("*"):
        if old.is_file():
            old.unlink()
    files, counts = write_data(work)
    storage = f"sqlite:///{work / 'search.db'}"
    started = time.perf_counter()
    drafted = autopeft_in(work, "init", *files, "--out", "spec.yaml")
    if steps is not None:
        import yaml

        spec = yaml.safe_load((work / "spec.yaml").read_text())
        spec["budget"]["steps_per_trial"] = steps
        (work / "spec.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    autopeft_in(work, "search", "run", "spec.yaml", "--name", name, "--storage", storage)
    measured = {"data": counts, "drafted": drafted.strip().splitlines(), "steps_per_trial": steps or "auto",
                "search_wall_s": round(time.perf_counter() - started, 1)}
    (work / "measured.json").write_text(json.dumps(measured))
    autopeft_in(work, "baselines", name, "--storage", storage, "--only",
                HAND_PICKED + (",full" if steps is not None else ""), "--json")
    return measured


def _better_beyond_noise(search, metric: str, first, second) -> bool:
    """Whether ``first`` scores better than ``second`` beyond the eval set's noise: the paired bootstrap
    `search show` uses (autopeft/results/chance.py, ``significantly_better``), on their stored predictions."""
    from autopeft.results.chance import significantly_better
    from autopeft.store import storage
    from autopeft.store.predictions import EvalTargets, decode

    targets = EvalTargets.from_json(search.study.user_attrs.get(storage.EVAL_TARGETS))
    return significantly_better(metric, True, decode(first.predictions), decode(second.predictions), targets,
                                seed=first.number)


def report(work: Path, name: str, metric: str, front_metrics: tuple[str, ...]) -> dict:
    """The search's reading, as described above (``front_metrics``: the task metrics listed per front point)."""
    import autopeft

    measured = json.loads((work / "measured.json").read_text())
    search = autopeft.load_search(name, storage=f"sqlite:///{work / 'search.db'}")
    records = search.records
    probe = [r for r in records if r.probe]
    if probe:
        fidelity = next(r.probe["steps"] for r in probe if r.probe.get("seed"))  # the repeat is at the chosen rung
        full = next(r for r in probe if r.probe == {"reference": "full", "steps": fidelity})
    else:  # steps set by hand: full fine-tuning is the `full` baseline, trained at them
        fidelity = measured["steps_per_trial"]
        full = next(r for r in records if r.baseline == "full")
    assessed = search.chance  # the noise model's reading of the front (autopeft/results/noise.py)
    chance = assessed["chance"]
    front = sorted(search.front, key=lambda r: -r.measurements[metric])
    best = front[0]
    baselines = {}
    for r in records:
        if not r.baseline or r.baseline == "full":
            continue
        value, size = r.measurements[metric], r.measurements["trainable_params"]
        holding = [p for p in search.front if p.measurements[metric] >= value
                   and p.measurements["trainable_params"] <= size]
        cheapest = min(holding, key=lambda p: p.measurements["trainable_params"], default=None)
        baselines[r.baseline] = {metric: value, "trainable_params": size,
                                 "held_by_front_trial": None if cheapest is None else cheapest.number}
        if cheapest is None:  # the best front point within its parameters: behind it beyond the noise?
            within = [p for p in search.front if p.measurements["trainable_params"] <= size]
            nearest = max(within, key=lambda p: p.measurements[metric], default=None)
            if nearest is not None:
                baselines[r.baseline]["best_front_trial_within_its_parameters"] = {
                    "trial": nearest.number, metric: nearest.measurements[metric],
                    "trainable_params": nearest.measurements["trainable_params"],
                    "baseline_better_beyond_noise": _better_beyond_noise(search, metric, r, nearest)}
    lead = full.measurements[metric] - chance
    return {
        "processor": cpu_name(), "data": measured["data"], "drafted": measured["drafted"],
        "fidelity_steps": fidelity,
        "probe_runs": len(probe), "probe_run_s_summed": round(sum(r.duration_s or 0 for r in probe), 1),
        "chance": {metric: chance, "predicts": assessed["predicts"], "examples": assessed["examples"]},
        "every_front_point_above_chance": not assessed["not_above_chance"],
        "matched_within_noise_by_cheaper": assessed["matched_within_noise"],
        "full_fine_tuning": {metric: full.measurements[metric],
                             "trainable_params": full.measurements["trainable_params"]},
        "baselines": baselines,
        "front": [{"trial": r.number, **{m: r.measurements[m] for m in front_metrics},
                   "trainable_params": r.measurements["trainable_params"],
                   "configuration": r.config} for r in front],
        "front_best_share_of_full_lead": round((best.measurements[metric] - chance) / lead, 4) if lead > 0
        else None,
        "search_wall_s": measured["search_wall_s"],
    }
