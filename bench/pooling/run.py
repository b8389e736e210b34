"""What the head reads: the model's declared pooling (``model.pooling: auto``, the mean for the bundled MiniLM)
against transformers' [CLS] pooler, on the hand-picked configurations and the same records.

For each task (the new_tasks specs as a user wrote them, plus the bundled SST-2 sample), each hand-picked
configuration of ``autopeft baselines`` (autopeft/results/baselines.py, ``STANDARD``) is trained twice by the real trial
worker, once per pooling, with the same seed, steps, batches and evaluation rows: the [CLS] rows are the baseline
measured in the same run. Reports accuracy against the majority label (chance) and its noise bar, trial time, and
writes ``results.json`` beside this file (with the processor; after each task) and a Markdown table to stdout.

    .venv/bin/python bench/pooling/run.py [--tasks sst2 qnli rte boolq] [--steps 200] [--configs ...]
    .venv/bin/python bench/pooling/run.py --table-only      # the table of results.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from autopeft.results.baselines import STANDARD  # noqa: E402
from autopeft.results.chance import chance_level  # noqa: E402
from autopeft.search.trial import TrialRequest  # noqa: E402
from autopeft.spec import load_spec  # noqa: E402
from autopeft.tasks.data import load_task_data  # noqa: E402
from workers.precision import cpu_has_native_bf16  # noqa: E402
from workers.worker import TrialWorker  # noqa: E402

SPECS = {"sst2": ROOT / "examples" / "sst2.yaml", **{t: ROOT / "bench" / "new_tasks" / f"{t}.yaml"
                                                    for t in ("qnli", "rte", "boolq", "uncertainty")}}


def _processor() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def run_task(task: str, configs: list[str], steps: int, eval_size: int, train_size: int, threads: int,
             out_dir: Path) -> list[dict]:
    rows = []
    for pooling in ("cls", "auto"):
        spec = load_spec(SPECS[task])
        spec.model.pooling = pooling
        spec.data.eval_size = min(eval_size, spec.data.eval_size or eval_size)
        spec.data.train_size = train_size
        data = load_task_data(spec.data, spec.model, spec.seed)
        worker = TrialWorker(spec.model.model_dump(), data, threads=threads)
        level = chance_level(data)
        majority = level.metrics["accuracy"]
        bar = majority + level.margin("accuracy", 1)  # one trial's binomial bar: above it is above chance
        for name in configs:
            started = time.perf_counter()
            result = worker.run(TrialRequest(0, dict(STANDARD[name]), spec.seed, steps,
                                             {**spec.training.model_dump(), "batch_size": 16},
                                             str(out_dir / task / pooling / name)))
            row = {"task": task, "pooling": pooling, "resolved": worker.pooling, "config": name,
                   "ok": result.ok, "fail_reason": result.fail_reason, "majority": majority, "bar": bar,
                   "eval_rows": level.examples, "seconds": time.perf_counter() - started}
            if result.ok:
                row.update(accuracy=result.measurements["accuracy"],
                           trainable_params=int(result.measurements["trainable_params"]))
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| task (chance; one trial's bar; eval rows) | configuration | trainable params (cls / mean) | [CLS] "
             "pooler | declared (mean) | difference |", "|---|---|---|---|---|---|"]
    by_key = {(r["task"], r["config"], r["pooling"]): r for r in rows}
    for task, config in dict.fromkeys((r["task"], r["config"]) for r in rows):
        cls, mean = by_key.get((task, config, "cls")), by_key.get((task, config, "auto"))
        if not (cls and mean and cls["ok"] and mean["ok"]):
            continue
        def shown(row: dict) -> str:
            return f"{row['accuracy']:.4f}" + ("" if row["accuracy"] >= row["bar"] else " (at chance)")

        lines.append(f"| {task} ({cls['majority']:.3f}; {cls['bar']:.3f}; {cls['eval_rows']}) | {config} | "
                     f"{cls['trainable_params']:,} / {mean['trainable_params']:,} | {shown(cls)} | {shown(mean)} | "
                     f"{mean['accuracy'] - cls['accuracy']:+.4f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["sst2", "qnli", "rte", "boolq"], choices=sorted(SPECS))
    parser.add_argument("--configs", nargs="+", default=["lora-r8-qv", "pfeiffer-64", "ia3", "bitfit"],
                        choices=sorted(STANDARD))
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--eval-size", type=int, default=500)
    parser.add_argument("--train-size", type=int, default=4000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("results.json"))
    parser.add_argument("--table-only", action="store_true", help="print the table of --out and stop")
    args = parser.parse_args()
    if args.table_only:
        print(table(json.loads(args.out.read_text())["rows"]))
        return
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for task in args.tasks:  # written after each task, so a stopped run keeps the tasks it finished
            rows += run_task(task, args.configs, args.steps, args.eval_size, args.train_size, args.threads,
                             Path(scratch))
            args.out.write_text(json.dumps({
                "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                "machine": {"processor": _processor(), "native_bf16": cpu_has_native_bf16(),
                            "python": platform.python_version()},
                "rows": rows}, indent=2))
    print(table(rows))


if __name__ == "__main__":
    main()
