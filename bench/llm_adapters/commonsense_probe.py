"""Can the shipped 135M decoder learn one of LLM-Adapters' multiple-choice commonsense sets at a CPU budget?

    HF_HUB_OFFLINE=1 .venv/bin/python bench/llm_adapters/commonsense_probe.py --tasks piqa social_i_qa

For each set (LLM-Adapters' copies in ../shared/data/llm-adapters/dataset; only a test file each, so its first
``--train-records`` records train and the next ``--eval-records`` evaluate): the chance level (the most common
answer), the untouched SmolLM2-135M-Instruct, and one generous configuration (LoRA r=16 on every projection of
every layer, lr 1e-3, ``--steps`` steps at ``--batch-size``), all scored with ``answer_scoring: options`` (the likelier
option where the records state it: the reading that does not depend on the model answering in the records'
words), through the real trial worker. Why: 5(b) of the decoder issue needs an LLM-Adapters task this decoder can
learn above chance at a CPU budget; BoolQ and MultiArith cannot be (bench/README.md, llm_adapters).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from vs_plain import cpu, model_folder

from autopeft.results.chance import chance_level
from autopeft.search.trial import TrialRequest
from autopeft.spec import DataSpec, ModelSpec, TrainingSpec
from autopeft.tasks.data import load_task_data
from workers.worker import TrialWorker

HERE = Path(__file__).resolve().parent
DATASETS = HERE.parents[1].parent / "shared" / "data" / "llm-adapters" / "dataset"
EVERY_PROJECTION = ["query", "key", "value", "attention_output", "ffn_up", "ffn_down"]


def probe(task: str, args: argparse.Namespace, folder: Path) -> dict:
    rows = json.loads((DATASETS / task / "test.json").read_text())
    train, evaluation = rows[:args.train_records], rows[args.train_records:args.train_records + args.eval_records]
    (folder / f"{task}-train.json").write_text(json.dumps(train))
    (folder / f"{task}-eval.json").write_text(json.dumps(evaluation))
    model = ModelSpec(name_or_path=model_folder(), task="causal-lm")
    data = load_task_data(DataSpec(train=str(folder / f"{task}-train.json"), eval=str(folder / f"{task}-eval.json"),
                                   max_length=args.max_length, answer_scoring="options"), model, seed=0)
    level = chance_level(data)
    worker = TrialWorker(model.model_dump(), data, threads=args.threads, own_process=True)
    untouched = worker.untouched_reference(128)["metrics"]
    config = {"method": "lora", "learning_rate": 1e-3,
              "lora": {"r": 16, "alpha_over_r": 2.0, "dropout": 0.0, "target_modules": EVERY_PROJECTION}}
    start = time.perf_counter()
    result = worker.run(TrialRequest(0, config, 0, args.steps, TrainingSpec(batch_size=args.batch_size).model_dump(),
                                     str(folder / task)))
    if not result.ok:
        raise SystemExit(f"{task}: the trial failed: {result.fail_reason}")
    return {"train_records": len(train), "eval_records": len(evaluation),
            "chance": level.metrics["answer_accuracy"], "chance_predicts": level.predicts,
            "untouched": untouched, "trained": {"answer_accuracy": result.measurements["answer_accuracy"],
                                                "eval_loss": result.measurements["eval_loss"],
                                                "trainable_params": result.measurements["trainable_params"],
                                                "trial_s": round(time.perf_counter() - start, 1)},
            "binomial_se": (level.metrics["answer_accuracy"] * (1 - level.metrics["answer_accuracy"])
                            / len(evaluation)) ** 0.5}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=["piqa", "social_i_qa"])
    parser.add_argument("--train-records", type=int, default=1000)
    parser.add_argument("--eval-records", type=int, default=96)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=384)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=HERE / "commonsense_probe.json")
    args = parser.parse_args()
    results = {"cpu": cpu(), "budget": vars(args) | {"out": str(args.out)},
               "tasks": {}}
    with tempfile.TemporaryDirectory() as folder:
        for task in args.tasks:
            results["tasks"][task] = probe(task, args, Path(folder))
            print(task, json.dumps(results["tasks"][task]), flush=True)
    args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
