"""What a decoder's evaluation adds to memory: the response loss over the whole batch at once, or a few rows at a time.

    .venv/bin/python bench/decoders/eval_memory.py --out bench/decoders/eval_memory.json

SmolLM2-135M-Instruct (``autopeft.decoders.smollm2``, fp32), 2 torch threads, the worker's evaluation
(``CausalLmRunner.evaluate``) of the first ``--records`` held-out MultiArith problems, whose gold responses are
worked answers of about 100 tokens. Each variant runs in a fresh process: one evaluation first (so the weights'
pages are resident), then a second one whose peak resident memory above the process's level before it is recorded
(sampled every 5 ms). ``whole batch``: ``LOSS_CHUNK_BYTES`` set so large that the loss takes every row at once, as
the worker did before; ``a few rows at a time``: as shipped. New tokens are held to ``--new-tokens`` (the loss pass
does not depend on them) so that each run is short.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
VARIANTS = {"whole batch": 1 << 50, "a few rows at a time": None}


def measure(records: int, new_tokens: int, chunk_bytes: int | None) -> dict:
    """One variant, in this process: the second evaluation's peak memory above the level before it."""
    import psutil
    import torch
    from common import DATA, smollm2_setup
    from evaluation import _first
    from transformers import AutoModelForCausalLM

    import workers.generation
    from autopeft.spec import DataSpec
    from autopeft.tasks.data import load_task_data
    from workers.tasks import CausalLmRunner

    folder, model_spec, tokenizer, header = smollm2_setup(2)
    data = load_task_data(DataSpec(train=str(DATA / "math" / "train.json"), eval=str(DATA / "math" / "multiarith.json"),
                                   max_length=320, train_size=200), model_spec, seed=0)
    data.eval = _first(data.eval, records)
    runner = CausalLmRunner(data, tokenizer, torch.device("cpu"), new_tokens)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    if chunk_bytes is not None:
        workers.generation.LOSS_CHUNK_BYTES = chunk_bytes
    runner.evaluate(model, 128)
    process = psutil.Process()
    before = process.memory_info().rss
    peak, done = [before], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            time.sleep(0.005)

    watcher = threading.Thread(target=sample)
    watcher.start()
    started = time.perf_counter()
    evaluation = runner.evaluate(model, 128)
    seconds = time.perf_counter() - started
    done.set()
    watcher.join()
    return {**header, "rss_before_mib": round(before / 2**20), "peak_above_mib": round((peak[0] - before) / 2**20),
            "seconds": round(seconds, 2), "eval_loss": round(evaluation.metrics["eval_loss"], 6),
            "response_tokens": int(runner.response_tokens.sum()), "records": records}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=24)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--out", type=Path, default=HERE / "eval_memory.json")
    parser.add_argument("--variant", choices=list(VARIANTS), help=argparse.SUPPRESS)  # one variant, in a child
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(measure(args.records, args.new_tokens, VARIANTS[args.variant])))
        return
    results = {}
    for variant in VARIANTS:
        child = subprocess.run([sys.executable, __file__, "--records", str(args.records), "--new-tokens",
                                str(args.new_tokens), "--variant", variant], capture_output=True, text=True,
                               check=True, cwd=HERE)
        results[variant] = json.loads(child.stdout.strip().splitlines()[-1])
        print(variant, results[variant], flush=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
