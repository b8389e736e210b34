"""Our default search, through the real CLI: ``autopeft search run`` on examples/sst2.yaml with the budget changed.

    .venv/bin/python bench/vs_naive/ours.py --seconds 500 --steps 250 --out /tmp/ours.json

The spec is examples/sst2.yaml as it is (LoRA space search_spaces/lora.yaml, TPE, the 1% trainable-parameter
constraint, two one-CPU trials at a time, the worker's default speed-ups) except for what the comparison fixes:
``budget.steps_per_trial`` = the naive search's steps, ``budget.wall_clock_minutes`` = the limit, a trial budget
too large to be reached first, and storage and adapters under the work folder in /tmp. ``--rungs`` turns early
stopping on (``budget.rungs``; off in the demo, so off by default here); ``--drop-constraints`` removes the 1%
constraint; ``--space`` searches another of search_spaces/ (``full``: every method, not only LoRA) instead of the
demo's. Data paths are made absolute, so the derived spec can live anywhere.

Trials are read back from the study: completed trials that are neither duplicates (a repeated proposal, told its
twin's values, not trained) nor baselines, with their measurements, configuration and ``datetime_complete``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")
HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))
DEMO_SPEC = ROOT / "examples" / "sst2.yaml"
AUTOPEFT = Path(sys.executable).parent / "autopeft"
LARGE_BUDGET = 100_000


def derived_spec(workdir: Path, seconds: float, steps: int, rungs: list[float] | None = None,
                 drop_constraints: bool = False, space: str | None = None) -> dict:
    spec = yaml.safe_load(DEMO_SPEC.read_text())
    if space:
        spec["search_space"] = space
    for field in ("train", "eval"):
        spec["data"][field] = str((DEMO_SPEC.parent / spec["data"][field]).resolve())
    spec["budget"] = {**spec["budget"], "trials": LARGE_BUDGET, "steps_per_trial": steps,
                      "wall_clock_minutes": seconds / 60}
    if rungs:
        spec["budget"]["rungs"] = rungs
    if drop_constraints:
        spec.pop("constraints", None)
    spec["storage"] = f"sqlite:///{workdir / 'ours.db'}"
    spec["output_dir"] = str(workdir / "runs")
    return spec


def read_trials(storage_url: str, name: str) -> list[dict]:
    """Every trial of the search, with its state as autopeft shows it; COMPLETE ones carry their measurements."""
    import optuna

    from autopeft.store import storage

    study = optuna.load_study(study_name=name, storage=storage_url)
    rows = []
    for trial in study.get_trials(deepcopy=False):
        attrs = trial.user_attrs
        state = trial.state.name
        for flag in (storage.BASELINE, storage.DUPLICATE, storage.REJECTED, storage.INTERRUPTED):
            if attrs.get(flag):
                state = flag.upper()
                break
        row = {"number": trial.number, "state": state, "config": attrs.get(storage.CONFIG, {})}
        if state == "COMPLETE":
            measured = attrs.get(storage.MEASUREMENTS, {})
            row |= {"accuracy": measured["accuracy"], "trainable_params": measured["trainable_params"],
                    "finished_at": trial.datetime_complete.timestamp(),
                    "feasible": all(v <= 0 for v in attrs.get(storage.VIOLATIONS, []))}
        elif trial.state.name == "PRUNED":
            row["stopped_at"] = attrs.get(storage.STOPPED_AT)
        rows.append(row)
    return rows


def search(seconds: float, steps: int, workdir: Path, name: str = "vs-naive-ours", rungs: list[float] | None = None,
           drop_constraints: bool = False, log: Path | None = None, space: str | None = None) -> dict:
    workdir.mkdir(parents=True, exist_ok=True)
    spec = derived_spec(workdir, seconds, steps, rungs, drop_constraints, space)
    spec_file = workdir / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(spec, sort_keys=False))
    (workdir / "ours.db").unlink(missing_ok=True)
    command = [str(AUTOPEFT), "search", "run", str(spec_file), "--name", name]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    with open(log or workdir / "ours.log", "w") as out:
        subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=env, check=True, cwd=workdir,
                       timeout=seconds + 900)
    return {"spec": spec, "command": command, "trials": read_trials(spec["storage"], name)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=500.0, help="budget.wall_clock_minutes, in seconds")
    parser.add_argument("--steps", type=int, default=250, help="budget.steps_per_trial")
    parser.add_argument("--rungs", type=float, nargs="*", default=None, help="budget.rungs (default: none)")
    parser.add_argument("--drop-constraints", action="store_true")
    parser.add_argument("--space", default=None, help="a space of search_spaces/ instead of the demo's (lora)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/vs-naive/ours"))
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    started = time.time()
    result = search(args.seconds, args.steps, args.workdir, rungs=args.rungs, drop_constraints=args.drop_constraints,
                    space=args.space)
    args.out.write_text(json.dumps({"started_at": started, **result}, indent=1))
    print(f"ours: {sum(t['state'] == 'COMPLETE' for t in result['trials'])} trials completed", flush=True)


if __name__ == "__main__":
    main()
