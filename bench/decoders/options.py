"""Closed-form answers by likelihood (``answer_scoring: options``) against greedy generation (``generate``): the
same records, the same model, agreement and time.

    .venv/bin/python bench/decoders/options.py --out bench/decoders/options.json

SmolLM2-135M-Instruct (``autopeft.decoders.smollm2``), 2 torch threads. Six of LLM-Adapters' commonsense sets, all
answered "the correct answer is X": BoolQ (the bundled slice, examples/data/boolq) and PIQA, SIQA, WinoGrande,
ARC-Easy and OpenBookQA from ``../shared/data/llm-adapters`` (their test files, drawn apart with a fixed seed into
``--train`` training records and ``--records`` eval records). Two models per set: the base as it is (zero-shot),
and a LoRA r=8 on q,v trained ``--steps`` steps at batch 4 (lr 1e-3) on the set's training records.

Both paths are the worker's own evaluation (``CausalLmRunner.evaluate``, eval batch 128), timed as a whole, the
faster of ``--repeats`` interleaved runs kept. ``answered``: the records whose generated response gives one of
the options; the options path always gives one. Agreement is counted on all records, on the answered ones, and
on those whose greedy response begins with "the correct answer is" (``following_the_template``): there the two
must agree, as the option is read at the very token greedy decoding chooses next (up to the rounding of batched
arithmetic).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import DATA, ROOT, smollm2_setup
from evaluation import timed, train_lora

from autopeft.spec import DataSpec
from autopeft.store.predictions import decode
from autopeft.tasks.data import load_task_data
from workers.generation import generate_answers
from workers.tasks import CausalLmRunner

SHARED = ROOT.parent / "shared" / "data" / "llm-adapters" / "dataset"
SETS = {"boolq": None, "piqa": "piqa", "siqa": "social_i_qa", "winogrande": "winogrande", "arc_easy": "ARC-Easy",
        "openbookqa": "openbookqa"}
EVAL_BATCH = 128
TEMPLATE = "the correct answer is "  # the words every response of the six sets states its answer after


def _files(name: str, train: int, records: int, folder: Path) -> tuple[str, str, int | None]:
    """The set's training and eval files (a drawn-apart split of its test file where it has no bundled slice)."""
    if SETS[name] is None:
        return str(DATA / "boolq" / "train.json"), str(DATA / "boolq" / "test.json"), records
    rows = json.loads((SHARED / SETS[name] / "test.json").read_text())
    order = np.random.default_rng(0).permutation(len(rows))
    paths = []
    for split, picked in (("train", order[:train]), ("eval", order[train:train + records])):
        path = folder / f"{name}-{split}.json"
        path.write_text(json.dumps([rows[i] for i in picked]))
        paths.append(str(path))
    return paths[0], paths[1], None


def measure(model, runners: dict[str, CausalLmRunner], repeats: int) -> dict:
    times: dict[str, list[float]] = {name: [] for name in runners}
    answers: dict[str, list[str]] = {}
    metrics = {}
    for _ in range(repeats):
        for name, runner in runners.items():
            evaluated, seconds = timed(lambda r=runner: r.evaluate(model, EVAL_BATCH))
            times[name].append(seconds)
            answers[name], metrics[name] = decode(evaluated.predictions), evaluated.metrics
    golds = [g.strip().lower() for g in runners["generate"].data.eval.answers]
    options = {n.lower() for n in runners["options"].data.answer_options.names}
    count = len(golds)
    out = {"records": count}
    for name in runners:
        out[name] = {"seconds": round(min(times[name]), 2), "per_record_s": round(min(times[name]) / count, 4),
                     "answer_accuracy": round(metrics[name]["answer_accuracy"], 4),
                     "eval_loss": round(metrics[name]["eval_loss"], 5)}
    generating = runners["generate"]
    split = generating.data.eval
    texts = generate_answers(model, generating.tokenizer, split.prompts, split.answers,
                             max_new_tokens=generating.max_new_tokens, pad_id=generating.pad_id,
                             device=torch.device("cpu"), reading=generating.reading)
    followed = [i for i, t in enumerate(texts) if t.strip().lower().startswith(TEMPLATE)]
    given = [a.strip().lower() for a in answers["generate"]]
    chosen = [a.strip().lower() for a in answers["options"]]
    answered = [i for i, a in enumerate(given) if a in options]
    out["answered_by_generation"] = len(answered)
    out["following_the_template"] = len(followed)
    out["agree_following"] = sum(given[i] == chosen[i] for i in followed)
    out["agree_all"] = sum(a == b for a, b in zip(given, chosen))
    out["agree_answered"] = sum(given[i] == chosen[i] for i in answered)
    out["options_accuracy_on_answered"] = round(float(np.mean([chosen[i] == golds[i] for i in answered])), 4) \
        if answered else None
    out["generate_accuracy_on_answered"] = round(float(np.mean([given[i] == golds[i] for i in answered])), 4) \
        if answered else None
    out["speedup"] = round(out["generate"]["seconds"] / out["options"]["seconds"], 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=48)
    parser.add_argument("--train", type=int, default=400)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--sets", default=",".join(SETS))
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("options.json"))
    args = parser.parse_args()
    from transformers import AutoModelForCausalLM

    folder, model_spec, tokenizer, header = smollm2_setup(args.threads)
    results = {**header, "steps": args.steps, "sets": {}}
    with tempfile.TemporaryDirectory() as scratch:
        for name in args.sets.split(","):
            train, evaluation, eval_size = _files(name, args.train, args.records, Path(scratch))
            runners = {}
            for scoring in ("generate", "options"):
                data = load_task_data(DataSpec(train=train, eval=evaluation, max_length=512, eval_size=eval_size,
                                               train_size=min(args.train, 400), answer_scoring=scoring),
                                      model_spec, seed=0)
                runners[scoring] = CausalLmRunner(data, tokenizer, torch.device("cpu"))
            base = AutoModelForCausalLM.from_pretrained(folder).eval()
            row = {"options": runners["options"].data.answer_options.names,
                   "zero_shot": measure(base, runners, args.repeats)}
            started = time.perf_counter()
            lora = train_lora(base, runners["generate"], steps=args.steps)
            row["train_s"] = round(time.perf_counter() - started, 1)
            row[f"lora_r8_qv_{args.steps}_steps"] = measure(lora, runners, args.repeats)
            results["sets"][name] = row
            print(name, json.dumps(row), flush=True)
            args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
