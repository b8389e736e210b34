"""Decoder training memory and time: gradient checkpointing and precision on SmolLM2-135M.

    .venv/bin/python bench/decoders/memory.py --out bench/decoders/memory.json
    python bench/decoders/memory.py --device cuda --batch-sizes 16 --steps 20 --out bench/decoders/memory_cuda.json

Each case trains in a fresh process (so its peak is its own): SmolLM2-135M-Instruct (``autopeft.decoders.smollm2``),
2 torch threads, batches of the bundled math training records (examples/data/math/train.json, max length 320;
prompt + worked answer, 150-300 tokens), the worker's own training loop (``workers.training.train``: AdamW, linear
schedule, clipping) and its forward under the precision the worker picks (``workers.precision``). Peak memory is
the worker's measure (``workers.measure.PeakMemory``: the process's resident set, sampled), taken over the whole
run after the model is loaded; time per step is the mean of the steps after the first.

Cases: LoRA r=8 on q,v and LoRA r=16 on every module (the search's references), batch 4 and 8, gradient
checkpointing off and on, precision fp32 and bf16 (autocast).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from common import DATA, HERE, cpu_name

CONFIGS = {
    "lora-r8-qv": {"method": "lora", "lora": {"r": 8, "alpha_over_r": 2.0, "target_modules": ["query", "value"]},
                   "learning_rate": 1e-3},
    "lora-r16-all": {"method": "lora", "lora": {"r": 16, "alpha_over_r": 2.0, "target_modules": [
        "query", "key", "value", "attention_output", "ffn_up", "ffn_down"]}, "learning_rate": 1e-3},
}


def one(case: dict) -> dict:
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from autopeft.decoders import smollm2
    from autopeft.methods import get_method
    from autopeft.spec import DataSpec, ModelSpec
    from autopeft.tasks.data import load_task_data
    from workers.measure import PeakMemory
    from workers.precision import autocast, resolve
    from workers.tasks import CausalLmRunner
    from workers.training import enable_gradient_checkpointing, train

    torch.set_num_threads(case["threads"])
    device = torch.device(case.get("device", "cpu"))
    precision = resolve(case["precision"], device)  # "auto": what a trial would run at on this processor
    folder = str(smollm2.get_model_path())
    data = load_task_data(DataSpec(train=str(DATA / "math" / "train.json"),
                                   eval=str(DATA / "math" / "multiarith.json"), max_length=320,
                                   eval_size=1), ModelSpec(name_or_path=folder, task="causal-lm"), seed=0)
    runner = CausalLmRunner(data, AutoTokenizer.from_pretrained(folder), device)
    base = AutoModelForCausalLM.from_pretrained(folder).to(device)
    layers = list(range(base.config.num_hidden_layers))
    config = {**CONFIGS[case["config"]], "layers": layers}
    model = get_method(config["method"]).build(base, config)
    if case["checkpointing"]:
        enable_gradient_checkpointing(model)
    stamps: list[float] = []

    def loss_of(indices):
        if device.type == "cuda":  # the step before has finished on the GPU, not only been queued
            torch.cuda.synchronize(device)
        stamps.append(time.perf_counter())
        with autocast(precision, device):
            return model(**runner.train_batch(indices)).loss.float()

    training = {"batch_size": case["batch_size"], "weight_decay": 0.0, "warmup_ratio": 0.0, "max_grad_norm": 1.0,
                "log_every": 1}
    with PeakMemory(device) as memory:
        started = time.perf_counter()
        curve = train(model, loss_of, len(data.train), steps=case["steps"], learning_rate=config["learning_rate"],
                      training=training, seed=0, lengths=data.train.lengths)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        ended = time.perf_counter()
    steps = np.diff([*stamps, ended])
    return {**case, "precision_run": precision, "peak_memory_mb": round(memory.peak_mb, 1),
            "step_s": round(float(np.mean(steps[1:])), 3),
            "first_step_s": round(float(steps[0]), 3), "total_s": round(ended - started, 2),
            "losses": [round(loss, 4) for _, loss in curve],
            "mean_tokens_per_example": round(float(np.mean(data.train.lengths)), 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--one", help="run one case (JSON) in this process and print its result")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--batch-sizes", default="4,8")
    parser.add_argument("--precisions", default="fp32,bf16", help="fp32, bf16, auto (what a trial would pick)")
    parser.add_argument("--checkpointing", default="off,on")
    parser.add_argument("--onednn-isa", help="cap oneDNN's instruction set (ONEDNN_MAX_CPU_ISA) in every case, "
                        "e.g. AVX512_CORE: a processor without native bf16, on one that has it")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                        help="cuda: peak memory is the GPU's allocated peak, step times wait for the GPU")
    parser.add_argument("--out", type=Path, default=HERE / "memory.json")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(json.loads(args.one))))
        return
    results = {"model": "SmolLM2-135M-Instruct (fp32 weights)", "cpu": cpu_name(), "threads": args.threads,
               "device": args.device, "onednn_max_cpu_isa": args.onednn_isa, "cases": []}
    if args.device == "cuda":
        import torch

        results["gpu"] = torch.cuda.get_device_name()
        results["torch"] = torch.__version__
    for config, batch, precision, checkpointing in itertools.product(
            args.configs.split(","), [int(b) for b in args.batch_sizes.split(",")], args.precisions.split(","),
            [flag == "on" for flag in args.checkpointing.split(",")]):
        case = {"config": config, "batch_size": batch, "precision": precision, "checkpointing": checkpointing,
                "steps": args.steps, "threads": args.threads, "device": args.device}
        env = {**os.environ, **({"ONEDNN_MAX_CPU_ISA": args.onednn_isa} if args.onednn_isa else {})}
        out = subprocess.run([sys.executable, __file__, "--one", json.dumps(case)], capture_output=True, text=True,
                             check=True, env=env).stdout
        results["cases"].append(json.loads(out.strip().splitlines()[-1]))
        print(json.dumps(results["cases"][-1]), flush=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
