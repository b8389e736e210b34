"""Answer evaluation on the real decoder: the plain path against the fast one, same records, same model.

    .venv/bin/python bench/decoders/evaluation.py --out bench/decoders/evaluation.json

SmolLM2-135M-Instruct (``autopeft.decoders.smollm2``), 2 torch threads, on the first ``--records`` records of the
bundled BoolQ test slice and of the held-out MultiArith records (examples/data). Two models per task: the base as
it is (zero-shot), and a LoRA r=8 on q,v trained 6 steps at batch 4 on the task's training slice (lr 1e-3).

- ``plain``: the evaluation as it was: a teacher-forced loss pass in length-sorted batches of 8, then
  ``generate`` to 32 new tokens in batches of 2 prompts in file order (``workers.generation.reference_answers``;
  eval_batch_size 8 gave generation batches of 2);
- ``fast``: the worker's evaluation now (``CausalLmRunner.evaluate``, eval_batch_size 128): loss and prompt cache
  from one forward pass with the prompt template computed once, length-sorted batches, new tokens from the task
  (longest gold response + a margin), each row stopped once its answer is given;
- ``fast_same_length``: the same held to the plain path's 32 new tokens, so the answers of the two can be
  compared one by one (first-found answers must be equal by construction);
- ``fast_through_generate``: ``fast`` decoding through ``generate`` from the scoring pass's cache, as the worker
  did before its own greedy loop (``own_loop_vs_generate``: what the loop gains).

Each is timed as a whole (loss and answers); answers are read by the task's rules (``CausalLmRunner.reading``)
and scored with ``answers_match``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from common import DATA, smollm2_setup

import workers.generation
from autopeft.spec import DataSpec
from autopeft.store.predictions import decode
from autopeft.tasks.data import load_task_data
from workers.generation import (
    answers_match,
    common_prefix_length,
    reference_answers,
    shares_prompt_cache,
)
from workers.tasks import CausalLmRunner

TASKS = {"boolq": (DATA / "boolq" / "train.json", DATA / "boolq" / "test.json", 160),
         "multiarith": (DATA / "math" / "train.json", DATA / "math" / "multiarith.json", 320)}
PLAIN_TOKENS, PLAIN_EVAL_BATCH, FAST_BATCH = 32, 8, 128


def train_lora(base, runner: CausalLmRunner, steps: int = 6, batch: int = 4):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    model = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    order = np.random.default_rng(0).permutation(len(runner.data.train))
    model.train()
    for step in range(steps):
        loss = model(**runner.train_batch(order[step * batch:(step + 1) * batch])).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    return model


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def measure(model, runner: CausalLmRunner, tokenizer, repeats: int) -> dict:
    split = runner.data.eval
    golds = split.answers

    def plain():
        losses, tokens, _ = runner._loss(model, PLAIN_EVAL_BATCH)
        texts = reference_answers(model, tokenizer, split.prompts, max_new_tokens=PLAIN_TOKENS,
                                  batch_size=PLAIN_EVAL_BATCH // 4, pad_id=runner.pad_id, device=torch.device("cpu"))
        return float(losses.sum()) / tokens, texts  # _loss keeps each record's summed loss

    def fast(max_new_tokens=None, through_generate=False):
        evaluate = CausalLmRunner(runner.data, tokenizer, runner.device, max_new_tokens).evaluate
        if through_generate:  # the decoding before the worker's own loop: ``generate`` from the scoring pass's cache
            with mock.patch.object(workers.generation, "plain_greedy", lambda model: False):
                evaluated = evaluate(model, FAST_BATCH)
        else:
            evaluated = evaluate(model, FAST_BATCH)
        return evaluated.metrics["eval_loss"], decode(evaluated.predictions)

    out = {"records": len(golds), "max_new_tokens": runner.max_new_tokens, "shares_prompt_cache":
           shares_prompt_cache(model), "common_prefix_tokens": common_prefix_length(split.prompts)}
    answers = {}
    runs = {"plain": plain, "fast": fast, "fast_same_length": lambda: fast(PLAIN_TOKENS),
            "fast_through_generate": lambda: fast(through_generate=True)}
    times: dict[str, list[float]] = {name: [] for name in runs}
    results = {}
    for _ in range(repeats):  # interleaved, the fastest of each kept: other work on the machine only adds time
        for name, run in runs.items():
            results[name], seconds = timed(run)
            times[name].append(seconds)
    for name, (loss, given) in results.items():
        seconds = min(times[name])
        answers[name] = given if name != "plain" else [runner.reading.read(t, g) for t, g in zip(given, golds)]
        out[name] = {"seconds": round(seconds, 2), "per_record_s": round(seconds / len(golds), 3),
                     "eval_loss": round(loss, 5), "answer_accuracy": round(float(np.mean(
                         [answers_match(a, g) for a, g in zip(answers[name], golds)])), 4)}
        if name == "plain":
            out[name]["example_responses"] = given[:3]
    out["speedup"] = round(out["plain"]["seconds"] / out["fast"]["seconds"], 2)
    out["own_loop_vs_generate"] = round(out["fast_through_generate"]["seconds"] / out["fast"]["seconds"], 2)
    for name in ("fast", "fast_same_length", "fast_through_generate"):
        out[f"answers_equal_{name}_vs_plain"] = sum(a == b for a, b in zip(answers[name], answers["plain"]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=24)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("evaluation.json"))
    args = parser.parse_args()
    from transformers import AutoModelForCausalLM

    folder, model_spec, tokenizer, header = smollm2_setup(args.threads)
    results = {**header, "tasks": {}}
    for task in args.tasks.split(","):
        train, evaluation, max_length = TASKS[task]
        data_spec = DataSpec(train=str(train), eval=str(evaluation), max_length=max_length, train_size=200)
        data = load_task_data(data_spec, model_spec, seed=0)
        data.eval = _first(data.eval, args.records)
        runner = CausalLmRunner(data, tokenizer, torch.device("cpu"))
        base = AutoModelForCausalLM.from_pretrained(folder).eval()
        results["tasks"][task] = {"zero_shot": measure(base, runner, tokenizer, args.repeats)}
        print(task, "zero-shot", json.dumps(results["tasks"][task]["zero_shot"], indent=1)[:1500], flush=True)
        started = time.perf_counter()
        lora = train_lora(base, runner)
        trained = {"train_s": round(time.perf_counter() - started, 2), **measure(lora, runner, tokenizer, args.repeats)}
        results["tasks"][task]["lora_r8_qv_6_steps"] = trained
        print(task, "lora", json.dumps(results["tasks"][task]["lora_r8_qv_6_steps"], indent=1)[:1500], flush=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")


def _first(split, count: int):
    from dataclasses import replace

    keep = range(min(count, len(split)))
    return replace(split, input_ids=[split.input_ids[i] for i in keep],
                   token_labels=[split.token_labels[i] for i in keep], prompts=[split.prompts[i] for i in keep],
                   answers=[split.answers[i] for i in keep])


if __name__ == "__main__":
    main()
