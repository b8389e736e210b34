"""The decoder's training step three ways: the model's own loss, logits only where responses are scored, and the
shared template run once per batch (workers/response_loss.py), on SmolLM2-135M-Instruct with LoRA r=8 on q,v.

    .venv/bin/python bench/decoders/response_loss.py [--batch-sizes 4 8 16] [--threads 2] [--steps 6]
        [--precision bf16|fp32]

One forward + backward under bf16 autocast (or in fp32, as ``precision: auto`` trains where bf16 is not native)
per batch and way, the three ways interleaved on the same batches of the
bundled BoolQ slice (examples/data/boolq: a 36-token template in 67-token records); the median of all but the
first batch. Writes response_loss.json beside this file; bench/README.md has the table. The losses agree to float
rounding (tests/test_response_loss.py proves loss and gradients equal on a tiny decoder).
"""

from __future__ import annotations

import argparse
import copy
import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from common import DATA, HERE, cpu_name  # noqa: I001 - sets up the path first

from autopeft.decoders.smollm2 import get_model_path
from autopeft.methods import get_method
from autopeft.models.base import load_base_model, load_tokenizer
from autopeft.spec import DataSpec, ModelSpec
from autopeft.tasks.data import load_task_data
from workers.response_loss import response_loss
from workers.tasks import CausalLmRunner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--precision", choices=["bf16", "fp32"], default="bf16")
    parser.add_argument("--out", type=Path, default=HERE / "response_loss.json")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(args.threads)
    model_spec = ModelSpec.model_validate({"name_or_path": str(get_model_path()), "task": "causal-lm"})
    data_spec = DataSpec.model_validate({"train": str(DATA / "boolq" / "train.json"),
                                         "eval": str(DATA / "boolq" / "test.json"), "max_length": 160,
                                         "eval_size": 8})
    data = load_task_data(data_spec, model_spec, 0)
    runner = CausalLmRunner(data, load_tokenizer(model_spec), torch.device("cpu"))
    model = get_method("lora").build(copy.deepcopy(load_base_model(model_spec, [])),
                                     {"method": "lora", "lora": {"r": 8, "target_modules": ["query", "value"]},
                                      "learning_rate": 1e-3}).train()

    def forward(batch, **options):
        return model(**batch, **options)

    ways = {"model's own loss": lambda b: model(**b).loss,
            "logits on responses": lambda b: response_loss(model, forward, b, share_head=False),
            "+ template once": lambda b: response_loss(model, forward, b, share_head=True)}
    rng = np.random.default_rng(0)
    rows = []
    for batch_size in args.batch_sizes:
        batches = [runner.train_batch(rng.choice(len(data.train), batch_size, replace=False))
                   for _ in range(args.steps)]
        seconds: dict[str, list[float]] = {way: [] for way in ways}
        losses: dict[str, float] = {}
        for batch in batches:
            for way, loss_of in ways.items():
                started = time.perf_counter()
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.precision == "bf16"):
                    loss = loss_of(batch)
                loss.float().backward()
                seconds[way].append(time.perf_counter() - started)
                losses[way] = float(loss)
        medians = {way: float(np.median(times[1:])) for way, times in seconds.items()}
        own = medians["model's own loss"]
        rows.append({"batch_size": batch_size, "step_s": medians,
                     "vs_own": {way: own / value for way, value in medians.items()},
                     "last_loss": losses})
        print(json.dumps(rows[-1]), flush=True)
    args.out.write_text(json.dumps({"cpu": cpu_name(), "threads": args.threads, "torch": torch.__version__,
                                    "precision": "bf16 autocast" if args.precision == "bf16" else "fp32",
                                    "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
