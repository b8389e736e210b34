"""A default search on the decoder against LLM-Adapters' hand-picked methods, at one budget.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/llm_adapters/search.py [--tasks boolq multiarith sst2] [--trials 12]
        [--steps 40] [--minutes 25]
    HF_HUB_OFFLINE=1 python bench/llm_adapters/search.py --tasks multiarith --device cuda --parallel 4 \
        --gpus-per-trial 0.25 --cpus-per-trial 4 --batch-size 16 --steps 300 --data PATH/TO/LLM-Adapters \
        --train-records 3000 --eval-records 109 --trials 24 --minutes 60   # the GPU table's budget (run.py)

For each task, the bundled decoder example (examples/boolq-smollm2.yaml, examples/math-smollm2.yaml; ``sst2``: a
user's own task, SST-2 written as LLM-Adapters' records that answer in words, on the BoolQ example's settings) as
a user would widen it: the project's general ``full`` space instead of the example's LoRA-only one (nothing tailored to
decoders or to the task), ``--trials`` trials of ``--steps`` steps at batch 4, two workers of one CPU each, the
default sampler, a wall-clock cap. Then ``autopeft baselines`` trains the hand-picked configurations (LoRA r=8 on
q,v, Pfeiffer 64, prefix 10, IA3, BitFit, full fine-tuning) into the same search at the same fidelity and says,
by its rule, whether the front holds for each a point with at least its answer accuracy at no more trainable
parameters; a "match" made by points at chance does not count (the search's noise model says which are).

The budget and the workers are options, so that the same comparison runs where a task becomes learnable: on a
GPU at the budget of bench/llm_adapters/run.py's GPU table (``--data``: training records drawn from LLM-Adapters'
whole training sets, BoolQ evaluated on its test set; MultiArith stays the bundled held-out problems).

Everything runs through the command line a user has (``autopeft search run``, ``baselines --json``,
``search show --json``), on real Ray and a SQLite file under ``--work-dir``. Writes search.json beside this file;
bench/README.md has the table.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import yaml
from whole_sets import whole_set_files  # beside this file

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
EXAMPLES = ROOT / "examples"
SST2 = ROOT.parent / "shared" / "data" / "sst2"
AUTOPEFT = Path(sys.executable).with_name("autopeft")
# task -> (the example spec it starts from, eval records); sst2 is a user's own task in LLM-Adapters' record form,
# written from ../shared/data when the benchmark runs (sst2_records)
TASKS = {"boolq": ("boolq-smollm2.yaml", 48), "multiarith": ("math-smollm2.yaml", 16),
         "sst2": ("boolq-smollm2.yaml", 96)}
SST2_TRAIN_RECORDS = 400


def sst2_records(work: Path) -> dict[str, str]:
    """SST-2 (GLUE; ../shared/data/sst2) as a user would bring a task of their own to the decoder: LLM-Adapters'
    record form, the response stating the answer in words ("the sentiment is positive"), 400 seeded training
    sentences and the whole dev set (the spec's eval_size draws from it). Returns the data section's files."""
    def read(name: str) -> list[tuple[str, str]]:
        lines = (SST2 / name).read_text(encoding="utf-8").splitlines()[1:]
        return [(sentence.strip(), "positive" if label.strip() == "1" else "negative")
                for sentence, label in (line.rsplit("\t", 1) for line in lines if line.strip())]

    def records(rows: list[tuple[str, str]]) -> list[dict[str, str]]:
        return [{"instruction": f"Is the sentiment of this movie review positive or negative? Review: {sentence}"
                                "\n\nAnswer format: positive/negative",
                 "input": "", "output": f"the sentiment is {answer}", "answer": answer} for sentence, answer in rows]

    train = read("train.tsv")
    train = [train[i] for i in random.Random(0).sample(range(len(train)), SST2_TRAIN_RECORDS)]
    files = {"train": work / "sst2-train.json", "eval": work / "sst2-dev.json"}
    files["train"].write_text(json.dumps(records(train), indent=0))
    files["eval"].write_text(json.dumps(records(read("dev.tsv")), indent=0))
    return {split: str(path) for split, path in files.items()}


def spec_for(task: str, args: argparse.Namespace, work: Path) -> Path:
    """The task's example spec with the general space, the budget and absolute data paths."""
    example, eval_size = TASKS[task]
    spec = yaml.safe_load((EXAMPLES / example).read_text())
    spec["name"] = f"{task}-smollm2-full"
    spec["search_space"] = "full"
    for split in ("train", "eval"):
        spec["data"][split] = str((EXAMPLES / spec["data"][split]).resolve())
    if task == "sst2":
        spec["data"].update(sst2_records(work), max_length=128)
    if args.data is not None:
        files = whole_set_files(args.data, task, Path(spec["data"]["train"]), Path(spec["data"]["eval"]))
        spec["data"]["train"], spec["data"]["eval"] = (str(path.resolve()) for path in files)
    if args.train_records is not None:
        spec["data"]["train_size"] = args.train_records
    spec["data"]["eval_size"] = args.eval_records or eval_size
    spec["training"] = {**spec.get("training", {}), "batch_size": args.batch_size}
    spec["workers"] = {**spec.get("workers", {}), "parallel": args.parallel, "cpus_per_trial": args.cpus_per_trial,
                       "device": args.device, "gpus_per_trial": args.gpus_per_trial}
    spec["budget"] = {"trials": args.trials, "steps_per_trial": args.steps, "wall_clock_minutes": args.minutes}
    spec["storage"] = f"sqlite:///{work / 'search.db'}"
    spec["output_dir"] = str(work / "runs")
    path = work / f"{task}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def autopeft(*arguments: str, capture: bool = False) -> str:
    """One CLI command; its output goes to the terminal unless it is the JSON we keep."""
    done = subprocess.run([str(AUTOPEFT), *arguments], check=True, text=True,
                          stdout=subprocess.PIPE if capture else None, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return done.stdout or ""


def run_task(task: str, args: argparse.Namespace) -> dict:
    work = Path(args.work_dir) / task
    work.mkdir(parents=True, exist_ok=True)
    spec = spec_for(task, args, work)
    storage = ["--storage", f"sqlite:///{work / 'search.db'}"]
    name = f"{task}-{int(time.time())}"
    started = time.perf_counter()
    autopeft("search", "run", str(spec), "--name", name, *storage)
    search_s = time.perf_counter() - started
    started = time.perf_counter()
    comparison = json.loads(autopeft("baselines", name, "--json", *storage, capture=True))
    baselines_s = time.perf_counter() - started
    shown = json.loads(autopeft("search", "show", name, "--json", *storage, capture=True))
    return {"task": task, "name": name, "spec": yaml.safe_load(spec.read_text()), "search_s": search_s,
            "baselines_s": baselines_s, "comparison": comparison, "search": shown}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--minutes", type=float, default=25)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--train-records", type=int, default=None, help="training records drawn (default: the "
                        "example's whole training file)")
    parser.add_argument("--eval-records", type=int, default=None,
                        help="evaluation records drawn (default: boolq 48, multiarith 16, sst2 96)")
    parser.add_argument("--data", type=Path, default=None,
                        help="a copy of LLM-Adapters' data (dataset/, ft-training_set/): train on its whole sets")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    parser.add_argument("--parallel", type=int, default=2, help="trials at once")
    parser.add_argument("--cpus-per-trial", type=int, default=1)
    parser.add_argument("--gpus-per-trial", type=float, default=None, help="fractions share a GPU")
    parser.add_argument("--work-dir", default="/tmp/bench-llm-search")
    parser.add_argument("--out", type=Path, default=HERE / "search.json")
    args = parser.parse_args()
    results = json.loads(args.out.read_text()) if args.out.is_file() else {}
    for task in args.tasks:
        results[task] = run_task(task, args)
        args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
