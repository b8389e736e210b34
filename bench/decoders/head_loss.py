"""A decoder's training memory and time with the loss computed from the deferred output head in chunks
(workers/head_loss.py) against the loss over the whole vocabulary's logits, on SmolLM2-135M-Instruct.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/decoders/head_loss.py            # -> head_loss.json

Each case trains in a fresh process (so its peak is its own), as a trial's worker trains: LoRA r=8 on q,v of every
layer, the worker's training loop (``workers.training.train``: AdamW, linear schedule, clipping), the runner's
loss (``CausalLmRunner.train_loss``: logits only where tokens are scored, the shared template once per batch) under
the precision a trial picks on this processor, frozen weights lowered as the worker lowers them. Peak memory is the
worker's measure (``workers.measure.PeakMemory``, the process's resident set), over the training after the model
is loaded; time per step is the median of the steps after the first. The two ways run alternately, twice each,
on the same batches and from the same start, so their loss curves are compared step by step.

Two kinds of records, neither tuned for:

- *math*: the bundled LLM-Adapters math training records (examples/data/math/train.json, prompt + worked answer,
  ``max_length`` 320): the loss scores the answer's tokens only;
- *wikipedia*: Wikipedia passages from BoolQ as plain text (``data.text_columns``, as bench/decoders/plain_text.py
  draws them, blocks of 256 tokens): the loss scores every token.
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import DATA, HERE, cpu_name

LORA = {"method": "lora", "lora": {"r": 8, "alpha_over_r": 2.0, "target_modules": ["query", "value"]},
        "learning_rate": 1e-3}


class _WholeLogits:
    """The runner's loss without the deferred head: logits over the whole vocabulary (the way before it)."""

    def head_of(self, *args) -> None:
        return None


def _task_data(records: str, model_spec, folder: Path):
    from autopeft.spec import DataSpec
    from autopeft.tasks.data import load_task_data

    if records == "math":
        spec = DataSpec(train=str(DATA / "math" / "train.json"), eval=str(DATA / "math" / "multiarith.json"),
                        max_length=320, eval_size=1)
    else:
        from plain_text import corpora, write_corpus

        train, held_out = corpora()["wikipedia"]
        write_corpus(folder, train, held_out[:2])
        spec = DataSpec(train=str(folder / "train.jsonl"), eval=str(folder / "eval.jsonl"), text_columns=["text"],
                        max_length=256)
    return load_task_data(spec, model_spec, seed=0)


def one(case: dict) -> dict:
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from autopeft.decoders import smollm2
    from autopeft.methods import get_method
    from autopeft.spec import ModelSpec
    from workers.lowered_weights import LoweredWeights
    from workers.measure import PeakMemory
    from workers.precision import autocast, resolve
    from workers.tasks import CausalLmRunner
    from workers.training import enable_gradient_checkpointing, train

    torch.set_num_threads(case["threads"])
    device = torch.device("cpu")
    precision = resolve(case.get("precision", "auto"), device)  # auto: what a trial would run at here
    folder = str(smollm2.get_model_path())
    with tempfile.TemporaryDirectory() as corpus:
        data = _task_data(case["records"], ModelSpec(name_or_path=folder, task="causal-lm"), Path(corpus))
    runner = CausalLmRunner(data, AutoTokenizer.from_pretrained(folder), device)
    if case["head"] == "whole logits":
        runner.deferred_head = _WholeLogits()
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(folder)
    model = get_method("lora").build(base, {**LORA, "layers": list(range(base.config.num_hidden_layers))})
    if case["checkpointing"]:
        enable_gradient_checkpointing(model)
    lowered = LoweredWeights()
    stamps: list[float] = []

    def loss_of(indices):
        stamps.append(time.perf_counter())
        batch = runner.train_batch(indices)
        runner.check_before_lowering(model, batch)
        with autocast(precision, device), lowered.during(model, precision):
            return runner.train_loss(model, lambda rows, **options: model(**rows, **options), batch).float()

    training = {"batch_size": case["batch_size"], "weight_decay": 0.0, "warmup_ratio": 0.0, "max_grad_norm": 1.0,
                "log_every": 1}
    with PeakMemory(device) as memory:
        curve = train(model, loss_of, len(data.train), steps=case["steps"], learning_rate=LORA["learning_rate"],
                      training=training, seed=0, lengths=data.train.lengths)
        ended = time.perf_counter()
    steps = np.diff([*stamps, ended])
    return {**case, "precision_run": precision, "peak_memory_mb": round(memory.peak_mb, 1),
            "step_s": round(float(np.median(steps[1:])), 3), "losses": [loss for _, loss in curve],
            "deferred": runner.deferred_head.head_of(model, data.train.input_ids[0], device) is not None,
            "mean_tokens_per_example": round(float(np.mean(data.train.lengths)), 1)}


def _summary(cases: list[dict]) -> list[dict]:
    """Per records × batch × checkpointing: each way's median peak and step, their ratios, and the largest
    difference between the two ways' losses at any step."""
    import numpy as np

    rows = []
    keys = sorted({(c["records"], c["batch_size"], c["checkpointing"]) for c in cases})
    for key in keys:
        ways = {head: [c for c in cases if (c["records"], c["batch_size"], c["checkpointing"]) == key
                       and c["head"] == head] for head in ("whole logits", "chunked")}
        peak = {head: round(float(np.median([c["peak_memory_mb"] for c in runs])), 1) for head, runs in ways.items()}
        step = {head: round(float(np.median([c["step_s"] for c in runs])), 3) for head, runs in ways.items()}
        difference = max(abs(a - b) for x, y in itertools.product(ways["whole logits"], ways["chunked"])
                         for a, b in zip(x["losses"], y["losses"]))
        rows.append({"records": key[0], "batch_size": key[1], "checkpointing": key[2],
                     "peak_memory_mb": peak, "step_s": step,
                     "memory_ratio": round(peak["chunked"] / peak["whole logits"], 3),
                     "speedup": round(step["whole logits"] / step["chunked"], 3),
                     "largest_loss_difference": round(difference, 5)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--one", help="run one case (JSON) in this process and print its result")
    parser.add_argument("--records", default="math,wikipedia")
    parser.add_argument("--batch-sizes", default="4,16")
    parser.add_argument("--checkpointing", default="off", help="off, on or off,on")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", default="auto", help="auto (what a trial would pick here), fp32 or bf16")
    parser.add_argument("--out", type=Path, default=HERE / "head_loss.json")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(json.loads(args.one))))
        return
    results = {"model": "SmolLM2-135M-Instruct (fp32 weights), LoRA r=8 q,v", "cpu": cpu_name(),
               "threads": args.threads, "cases": []}
    for records, batch, checkpointing, _, head in itertools.product(
            args.records.split(","), [int(b) for b in args.batch_sizes.split(",")],
            [flag == "on" for flag in args.checkpointing.split(",")], range(args.repeats),
            ("whole logits", "chunked")):
        case = {"records": records, "batch_size": batch, "checkpointing": checkpointing, "head": head,
                "steps": args.steps, "threads": args.threads, "precision": args.precision}
        out = subprocess.run([sys.executable, __file__, "--one", json.dumps(case)], capture_output=True, text=True,
                             check=True).stdout
        results["cases"].append(json.loads(out.strip().splitlines()[-1]))
        print(json.dumps(results["cases"][-1]), flush=True)
    results["summary"] = _summary(results["cases"])
    print(json.dumps(results["summary"], indent=1))
    args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
