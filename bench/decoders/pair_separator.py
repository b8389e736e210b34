"""Text pairs on a decoder classifier: the pair as its tokenizer's template encodes it (glued), against joined by
a line break.

A decoder's tokenizer (GPT-2's, LLaMA's, SmolLM2's) puts nothing between the two texts of a pair, so "What is the
capital?" and "Paris is ..." are read as "capital?Paris". Does a head on a decoder then learn a pair task worse?
SmolLM2-135M-Instruct as a sequence classifier (its head reads the last token) on QNLI (question, sentence;
``../shared/data/qnli``, GLUE). Each configuration is trained by the real trial worker twice per seed, on the same
seeded records, steps and batches: once on the two columns as the worker reads a pair (*glued*), once on one
column holding each pair joined by a line break (*line break*). Also counts, on QNLI's and RTE's dev pairs, how
many glued pairs tokenise otherwise than their two texts apart (tokens merged across the join).
Writes ``pair_separator.json`` beside this file and a Markdown table to stdout.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/decoders/pair_separator.py --steps 150 --seeds 0 1
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from common import HERE, ROOT, smollm2_setup

QNLI = ROOT.parent / "shared" / "data" / "qnli"
RTE = ROOT.parent / "shared" / "data" / "rte"
CONFIGS = {
    "LoRA r=8 q,v": {"method": "lora", "lora": {"r": 8, "target_modules": ["query", "value"]}, "learning_rate": 1e-3},
    "LoRA r=8 every projection": {"method": "lora", "lora": {"r": 8, "target_modules": [
        "query", "key", "value", "attention_output", "ffn_up", "ffn_down"]}, "learning_rate": 1e-3},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--train-size", type=int, default=2400)
    parser.add_argument("--eval-size", type=int, default=500)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--configs", nargs="+", default=["LoRA r=8 q,v"], choices=list(CONFIGS))
    args = parser.parse_args()

    import pandas as pd

    from autopeft.results.chance import chance_level
    from autopeft.search.trial import TrialRequest
    from autopeft.spec import DataSpec, TrainingSpec
    from autopeft.tasks.data import load_task_data
    from workers.worker import TrialWorker

    folder, _, tokenizer, header = smollm2_setup(args.threads)
    from autopeft.spec import ModelSpec

    model = ModelSpec(name_or_path=folder, task="sequence-classification")
    rows, out = [], Path(tempfile.mkdtemp(prefix="pairs-"))
    merged = {}
    for name, path, first_column, second_column in (("QNLI", QNLI / "dev.tsv", "question", "sentence"),
                                                    ("RTE", RTE / "dev.tsv", "sentence1", "sentence2")):
        frame = pd.read_csv(path, sep="\t", quoting=3)
        pairs = list(zip(frame[first_column].astype(str), frame[second_column].astype(str)))
        merged[name] = {"pairs": len(pairs), "merged_across_the_join": sum(
            tokenizer(a, b)["input_ids"] != tokenizer(a, add_special_tokens=False)["input_ids"]
            + tokenizer(b, add_special_tokens=False)["input_ids"] for a, b in pairs)}
    print(json.dumps(merged), flush=True)
    for split in ("train", "dev"):  # the same rows, each pair joined by a line break in one column
        frame = pd.read_csv(QNLI / f"{split}.tsv", sep="\t", quoting=3)
        frame["pair"] = frame["question"].astype(str) + "\n" + frame["sentence"].astype(str)
        frame.to_json(out / f"{split}.jsonl", orient="records", lines=True)
    readings = {
        "glued": DataSpec(train=str(QNLI / "train.tsv"), eval=str(QNLI / "dev.tsv"),
                          text_columns=["question", "sentence"], label_column="label", max_length=128,
                          train_size=args.train_size, eval_size=args.eval_size),
        "line break": DataSpec(train=str(out / "train.jsonl"), eval=str(out / "dev.jsonl"), text_columns=["pair"],
                               label_column="label", max_length=128, train_size=args.train_size,
                               eval_size=args.eval_size)}
    for reading, spec in readings.items():
        data = load_task_data(spec, model, seed=0)
        first = tokenizer.decode(data.eval.input_ids[0])
        level = chance_level(data)
        worker = TrialWorker(model.model_dump(), data, threads=args.threads)
        for name in args.configs:
            config = CONFIGS[name]
            for seed in args.seeds:
                started = time.perf_counter()
                result = worker.run(TrialRequest(0, dict(config), seed, args.steps,
                                                 {**TrainingSpec().model_dump(), "batch_size": 16},
                                                 str(out / reading / name / str(seed))))
                row = {"pairs": reading, "config": name, "seed": seed, "ok": result.ok,
                       "accuracy": result.measurements.get("accuracy") if result.ok else None,
                       "fail_reason": result.fail_reason, "seconds": round(time.perf_counter() - started, 1),
                       "chance": level.metrics["accuracy"], "first_eval_input": first[:160]}
                rows.append(row)
                print(json.dumps(row), flush=True)
    (HERE / "pair_separator.json").write_text(json.dumps({**header, "task": "QNLI", "steps": args.steps,
                                                          "batch_size": 16, "train_size": args.train_size,
                                                          "eval_size": args.eval_size, "merged": merged,
                                                          "rows": rows}, indent=1))
    print("| configuration | seed | glued | line break |\n|---|---|---|---|")
    for name in args.configs:
        for seed in args.seeds:
            got = {r["pairs"]: r["accuracy"] for r in rows if r["config"] == name and r["seed"] == seed}
            print(f"| {name} | {seed} | {got.get('glued')} | {got.get('line break')} |")


if __name__ == "__main__":
    main()
