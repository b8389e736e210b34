"""Several labels per text, as a new user meets it: one CSV of texts and joined labels, `autopeft init`, then
`autopeft search run` on the spec it drafted, nothing edited.

    .venv/bin/python bench/new_tasks/multi_label.py          # about 7 minutes on 2 cores
    .venv/bin/python bench/new_tasks/multi_label.py --report # the JSON again from the last run's database

No multi-label set ships with the project or in ../shared, so the file is made from the bundled SST-2 sample's
4,000 real phrases (examples/data/sst2/train.tsv) with three labels: ``positive`` (the phrase's own human sentiment
label), ``film`` (it names a film or movie) and ``long`` (15 words or more), joined by commas, empty for none. Two
of the three are read from the words, so they are easy; the third is a real judgement. The spec is `init`'s:
MiniLM, the label column and separator it read, 20% of the rows held out, the `lora` space, 12 trials,
`steps_per_trial: auto`. Then the hand-picked baselines at the fidelity the probe chose.

Results: ``results_multi_label.json`` beside this script, and a row in bench/README.md (new_tasks): the fidelity
and the probe's cost, full fine-tuning (the probe's own run at that fidelity), the best hand-picked baseline, the
front's best and its cheapest point within noise of it, chance, the share of full fine-tuning's lead over chance
the front's best reaches, wall time and the processor.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench.new_tasks.run import AUTOPEFT, HAND_PICKED, cpu_name  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
WORK = Path("/tmp/new-tasks-multi-label")
NAME = "tags"


def labels_of(sentence: str, sentiment: str) -> str:
    words = set(sentence.split())
    return ",".join(name for name, on in (("film", bool({"film", "movie", "films", "movies"} & words)),
                                          ("long", len(sentence.split()) >= 15), ("positive", sentiment == "1"))
                    if on)


def write_data(path: Path) -> dict[str, int]:
    with open(ROOT / "examples" / "data" / "sst2" / "train.tsv", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "labels"])
        writer.writerows((r["sentence"], labels_of(r["sentence"], r["label"])) for r in rows)
    counts: dict[str, int] = {}
    for r in rows:
        for label in filter(None, labels_of(r["sentence"], r["label"]).split(",")):
            counts[label] = counts.get(label, 0) + 1
    return {"rows": len(rows), **counts}


def run(*args: str) -> str:
    done = subprocess.run([AUTOPEFT, *args], cwd=WORK, text=True, capture_output=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"})
    if done.returncode != 0:
        raise RuntimeError(f"autopeft {' '.join(args)} failed: {done.stderr[-2000:]}")
    return done.stdout


def main() -> None:
    storage = f"sqlite:///{WORK / 'tags.db'}"
    if "--report" in sys.argv:
        measured = json.loads((WORK / "measured.json").read_text())
    else:
        WORK.mkdir(parents=True, exist_ok=True)
        for old in WORK.glob("*"):
            if old.is_file():
                old.unlink()
        counts = write_data(WORK / "tags.csv")
        started = time.perf_counter()
        drafted = run("init", "tags.csv", "--out", "tags.yaml")
        run("search", "run", "tags.yaml", "--name", NAME, "--storage", storage)
        measured = {"data": counts, "drafted": drafted.strip().splitlines(),
                    "search_wall_s": round(time.perf_counter() - started, 1)}
        (WORK / "measured.json").write_text(json.dumps(measured))
        run("baselines", NAME, "--storage", storage, "--only", HAND_PICKED, "--json")
    report(storage, measured)


def better_beyond_noise(search, first, second) -> bool:
    """Whether ``first`` scores better than ``second`` beyond the eval set's noise: the paired bootstrap
    `search show` uses (autopeft/results/chance.py, ``significantly_better``), on their stored predictions."""
    from autopeft.results.chance import significantly_better
    from autopeft.store import storage
    from autopeft.store.predictions import EvalTargets, decode

    targets = EvalTargets.from_json(search.study.user_attrs.get(storage.EVAL_TARGETS))
    return significantly_better("micro_f1", True, decode(first.predictions), decode(second.predictions), targets,
                                seed=first.number)


def report(storage: str, measured: dict) -> None:

    import autopeft

    search = autopeft.load_search(NAME, storage=storage)
    records = search.records
    probe = [r for r in records if r.probe]
    fidelity = next(r.probe["steps"] for r in probe if r.probe.get("seed"))  # the repeat is at the chosen rung
    full = next(r for r in probe if r.probe == {"reference": "full", "steps": fidelity})
    assessed = search.chance  # the noise model's reading of the front (autopeft/results/noise.py)
    chance = assessed["chance"]
    front = sorted(search.front, key=lambda r: -r.measurements["micro_f1"])
    best = front[0]
    # each hand-picked configuration, and the cheapest front point with at least its micro F1 at no more of its
    # trainable parameters (the rule `autopeft baselines` reads a front by), or None
    baselines = {}
    for r in records:
        if r.baseline:
            value, size = r.measurements["micro_f1"], r.measurements["trainable_params"]
            holding = [p for p in search.front if p.measurements["micro_f1"] >= value
                       and p.measurements["trainable_params"] <= size]
            cheapest = min(holding, key=lambda p: p.measurements["trainable_params"], default=None)
            baselines[r.baseline] = {"micro_f1": value, "trainable_params": size,
                                     "held_by_front_trial": None if cheapest is None else cheapest.number}
            if cheapest is None:  # the best front point within its parameters: behind it beyond the noise?
                within = [p for p in search.front if p.measurements["trainable_params"] <= size]
                nearest = max(within, key=lambda p: p.measurements["micro_f1"], default=None)
                if nearest is not None:
                    baselines[r.baseline]["best_front_trial_within_its_parameters"] = {
                        "trial": nearest.number, "micro_f1": nearest.measurements["micro_f1"],
                        "trainable_params": nearest.measurements["trainable_params"],
                        "baseline_better_beyond_noise": better_beyond_noise(search, r, nearest)}
    lead = full.measurements["micro_f1"] - chance
    result = {
        "processor": cpu_name(), "data": measured["data"], "drafted": measured["drafted"],
        "fidelity_steps": fidelity,
        "probe_runs": len(probe), "probe_run_s_summed": round(sum(r.duration_s or 0 for r in probe), 1),
        "chance": {"micro_f1": chance, "predicts": assessed["predicts"], "examples": assessed["examples"]},
        "every_front_point_above_chance": not assessed["not_above_chance"],
        "matched_within_noise_by_cheaper": assessed["matched_within_noise"],
        "full_fine_tuning": {"micro_f1": full.measurements["micro_f1"],
                             "trainable_params": full.measurements["trainable_params"]},
        "baselines": baselines,
        "front": [{"trial": r.number, "micro_f1": r.measurements["micro_f1"],
                   "macro_f1": r.measurements["macro_f1"], "subset_accuracy": r.measurements["subset_accuracy"],
                   "trainable_params": r.measurements["trainable_params"]} for r in front],
        "front_best_share_of_full_lead": round((best.measurements["micro_f1"] - chance) / lead, 4) if lead > 0
        else None,
        "search_wall_s": measured["search_wall_s"],
    }
    (HERE / "results_multi_label.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
