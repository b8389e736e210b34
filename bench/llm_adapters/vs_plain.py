"""One LoRA trial on the real decoder: the project's trial worker against the plain script a user writes instead.

    flock /tmp/autopeft-heavy.lock .venv/bin/python bench/llm_adapters/vs_plain.py [--tasks boolq multiarith]
        [--repeats 2] [--steps 40] [--batch-size 4] [--eval-records boolq=48 multiarith=24] [--threads 2]
        [--micro-batch 4] [--contenders ours plain-bf16 plain-fp32 ours-options]

``ours-options`` is the same trial with closed-form answers read by likelihood (``answer_scoring: options``):
another evaluation than the plain script's, reported beside ``ours``.

Why: a search is only worth its machinery if each trial costs less than the script it replaces (issue #14, 5(c):
ours at least 2× faster per trial, same answer accuracy within noise). Both sides train the same configuration,
LoRA r=8 (alpha 16, no dropout) on q_proj and v_proj of every layer of SmolLM2-135M-Instruct
(``autopeft.decoders.smollm2``), on the same records with the same budget: ``--steps`` AdamW steps at
``--batch-size``, lr 1e-3, 6% linear warm-up then linear decay, gradient clipping 1.0, no weight decay, seed 0,
``--threads`` torch threads; then answer the same evaluation records greedily and save the adapter.

- ``ours``: the real trial worker (``workers.worker.TrialWorker.run`` with a ``TrialRequest``, as
  bench/llm_adapters/run.py runs it): build, train (``precision: auto``: bf16 autocast on a CPU with native bf16),
  evaluation in fp32 (gold-response loss and answers: workers/generation.py), save.
- ``plain-bf16`` / ``plain-fp32``: ``transformers.Trainer`` + ``peft``, LLM-Adapters' recipe (finetune.py and
  commonsense_evaluate.py) with greedy decoding: records tokenised with ``datasets.map`` as LLM-Adapters does
  (prompt + response + EOS, labels -100 on the prompt: ``train_on_inputs=False``), ``DataCollatorForSeq2Seq``,
  ``TrainingArguments`` at their defaults but for the budget (no evaluation or saving during training, no
  reporting), ``save_pretrained``, then ``model.generate`` (greedy, left-padded batches of ``--generate-batch`` in
  file order, LLM-Adapters' new-token limit: 32 for BoolQ, 256 for math) in fp32. ``bf16=True`` gives the Trainer
  the worker's bf16 autocast (like for like); fp32 is what the script gets out of the box.

Both sides read the same prompt text: ``autopeft.tasks.data.instruction_prompt`` (LLM-Adapters' Alpaca template) over
the same records (all training records; the evaluation records are the seeded draw the worker's ``eval_size`` makes),
and both score answers by the task's reading (``workers.generation.AnswerReading``) and ``answers_match``. Each
contender runs in a fresh process, interleaved (ours, plain-bf16, plain-fp32, then again), and the faster of the
repeats is kept (other work on a shared machine only adds time). Per run: load (tokenizer, model, data tokenised),
then (ours) the untouched model's evaluation, once per worker and timed apart (``untouched_s``: a search pays it
with its first trial), then the trial with the model loaded: build, train, evaluate, save, each timed; the headline
ratio is plain / ours on the trial with the model loaded (a worker loads once per search; a plain script per run:
``whole`` adds the load, and for ours the untouched evaluation; each side's own imports are timed apart). Checked
per task: both sides' training token ids and labels are identical, and the worker evaluated the same rows. Where the
time goes, also per task: the padded tokens each side's training batches hold (``padding``), and one training step's
bare forward and backward (``step_floor``). Writes vs_plain.json beside this file. """

from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT / "examples" / "data"

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from torch.nn import functional  # noqa: E402

from autopeft.tasks.answer_options import answer_words  # noqa: E402
from autopeft.tasks.data import instruction_prompt  # noqa: E402
from workers.generation import AnswerReading, answers_match, responses_state_answers  # noqa: E402


@dataclass(frozen=True)
class Task:
    train: Path
    eval: Path
    max_length: int
    plain_new_tokens: int  # LLM-Adapters' limit: commonsense_evaluate.py 32, evaluate.py (math) 256


TASKS = {
    "boolq": Task(DATA / "boolq" / "train.json", DATA / "boolq" / "test.json", 160, 32),
    "multiarith": Task(DATA / "math" / "train.json", DATA / "math" / "multiarith.json", 320, 256),
}
CONTENDERS = ("ours", "plain-bf16", "plain-fp32")
# ours with closed-form answers read by likelihood (data.answer_scoring: options) instead of generated: not the
# same evaluation as the plain script's, so it is compared beside "ours", never instead of it
OPTIONS = "ours-options"
LORA = {"r": 8, "alpha": 16, "dropout": 0.0}


@dataclass(frozen=True)
class Budget:
    steps: int
    batch_size: int
    learning_rate: float
    warmup_ratio: float
    seed: int
    eval_records: int
    threads: int
    generate_batch: int
    micro_batch: int = 0  # the Trainer's rows per forward (0: the whole batch); the rest by gradient accumulation


def model_folder() -> str:
    from autopeft.decoders import smollm2

    return str(smollm2.get_model_path())


def eval_positions(count: int, eval_records: int, seed: int) -> list[int]:
    """The evaluation rows the worker's ``eval_size`` draws (``DataFrame.sample``: the same rows, in its order)."""
    if eval_records >= count:
        return list(range(count))
    return [int(i) for i in pd.RangeIndex(count).to_series().sample(n=eval_records, random_state=seed)]


def records(task: Task, eval_records: int, seed: int) -> tuple[list[dict], list[dict]]:
    """Every training record, and the drawn evaluation records."""
    train = json.loads(task.train.read_text())
    evaluation = json.loads(task.eval.read_text())
    return train, [evaluation[i] for i in eval_positions(len(evaluation), eval_records, seed)]


def prompt_of(record: dict) -> str:
    return instruction_prompt(str(record["instruction"]), str(record.get("input", "") or ""))


def score(texts: list[str], golds: list[str], train_records: list[dict]) -> tuple[list[str], float]:
    """Answers read as the worker reads the task's (its closed set of words, whether its responses state them)."""
    train_answers = [str(r["answer"]) for r in train_records]
    reading = AnswerReading(tuple(answer_words([*train_answers, *golds]) or ()),
                            responses_state_answers([str(r["output"]) for r in train_records], train_answers))
    given = [reading.read(text, gold) for text, gold in zip(texts, golds)]
    return given, sum(map(answers_match, given, golds)) / len(golds)


# --- ours: the trial worker ------------------------------------------------------------------------------------


def run_ours(task: Task, budget: Budget, out: Path, answer_scoring: str = "generate") -> dict:
    from autopeft.search.trial import TrialRequest
    from autopeft.spec import DataSpec, ModelSpec, TrainingSpec
    from autopeft.store.predictions import decode
    from autopeft.tasks.data import load_task_data
    from workers.worker import TrialWorker

    start = time.perf_counter()
    model = ModelSpec(name_or_path=model_folder(), task="causal-lm")
    data = load_task_data(DataSpec(train=str(task.train), eval=str(task.eval), max_length=task.max_length,
                                   eval_size=budget.eval_records, answer_scoring=answer_scoring), model,
                          seed=budget.seed)
    # own_process: this child process holds nothing else, as a search's Ray actor does
    worker = TrialWorker(model.model_dump(), data, threads=budget.threads, own_process=True)
    config = {"method": "lora", "lora": {"r": LORA["r"], "alpha_over_r": LORA["alpha"] / LORA["r"],
                                         "dropout": LORA["dropout"], "target_modules": ["query", "value"]},
              "learning_rate": budget.learning_rate}
    training = TrainingSpec(batch_size=budget.batch_size, warmup_ratio=budget.warmup_ratio).model_dump()
    # The untouched model's evaluation (the decoder's reference, autopeft/results/untouched_model.py) is paid once per
    # worker, with a search's first trial, like loading: timed apart, not in the trial.
    loaded = time.perf_counter()
    worker.untouched_reference(training["eval_batch_size"])
    untouched_s = time.perf_counter() - loaded
    loaded = time.perf_counter()
    result = worker.run(TrialRequest(0, config, budget.seed, budget.steps, training, str(out)))
    done = time.perf_counter()
    if not result.ok:
        raise SystemExit(f"the worker's trial failed: {result.fail_reason}")
    measured = result.measurements
    train_s, eval_s, trial_s = measured["train_time_s"], measured["eval_time_s"], done - loaded
    return {"load_s": loaded - start - untouched_s, "untouched_s": untouched_s, "train_s": train_s, "eval_s": eval_s,
            "other_s": trial_s - train_s - eval_s,
            "trial_s": trial_s, "whole_s": done - start, "precision": result.execution["precision"],
            "answer_accuracy": measured["answer_accuracy"], "eval_loss": measured["eval_loss"],
            "answers": decode(result.predictions), "eval_rows": data.eval_rows,
            "trainable_params": measured["trainable_params"], "last_train_loss": result.loss_curve[-1][1]}


# --- plain: Trainer + peft + generate ------------------------------------------------------------------------


def plain_tokenize(tokenizer, prompt: str, response: str, max_length: int) -> dict:
    """LLM-Adapters' generate_and_tokenize_prompt with train_on_inputs=False: prompt + response tokenised together,
    EOS added when there is room, labels -100 over the prompt's tokens."""
    ids = tokenizer(prompt + response, truncation=True, max_length=max_length)["input_ids"]
    if ids[-1] != tokenizer.eos_token_id and len(ids) < max_length:
        ids = ids + [tokenizer.eos_token_id]
    prompt_length = len(tokenizer(prompt, truncation=True, max_length=max_length)["input_ids"])
    return {"input_ids": ids, "attention_mask": [1] * len(ids),
            "labels": [-100] * prompt_length + ids[prompt_length:]}


def plain_generate(model, tokenizer, prompts: list[str], batch_size: int, max_new_tokens: int) -> list[str]:
    """Greedy ``generate`` on left-padded batches in file order; the new tokens decoded."""
    tokenizer.padding_side = "left"
    model.eval()
    texts: list[str] = []
    with torch.no_grad():
        for start in range(0, len(prompts), batch_size):
            batch = tokenizer(prompts[start:start + batch_size], return_tensors="pt", padding=True)
            output = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                                    pad_token_id=tokenizer.pad_token_id)
            texts += tokenizer.batch_decode(output[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
    return texts


def run_plain(task: Task, budget: Budget, out: Path, precision: str) -> dict:
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq, Trainer, TrainingArguments

    clock = [time.perf_counter()]

    def lap() -> float:
        clock.append(time.perf_counter())
        return clock[-1] - clock[-2]

    train_records, eval_records = records(task, budget.eval_records, budget.seed)
    tokenizer = AutoTokenizer.from_pretrained(model_folder())
    model = AutoModelForCausalLM.from_pretrained(model_folder())
    train_set = Dataset.from_list([{"prompt": prompt_of(r), "response": str(r["output"])} for r in train_records])
    train_set = train_set.map(lambda r: plain_tokenize(tokenizer, r["prompt"], r["response"], task.max_length),
                              remove_columns=["prompt", "response"])
    load_s = lap()
    torch.manual_seed(budget.seed)
    model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", r=LORA["r"], lora_alpha=LORA["alpha"],
                                             lora_dropout=LORA["dropout"], target_modules=["q_proj", "v_proj"]))
    build_s = lap()
    args = TrainingArguments(output_dir=str(out), max_steps=budget.steps,
                             per_device_train_batch_size=budget.micro_batch or budget.batch_size,
                             gradient_accumulation_steps=budget.batch_size // (budget.micro_batch or budget.batch_size),
                             learning_rate=budget.learning_rate,
                             lr_scheduler_type="linear", warmup_ratio=budget.warmup_ratio, weight_decay=0.0,
                             max_grad_norm=1.0, bf16=precision == "bf16", use_cpu=True, seed=budget.seed,
                             eval_strategy="no", save_strategy="no", report_to="none", logging_steps=10,
                             disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=train_set,
                      data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True, return_tensors="pt"))
    trainer.train()
    train_s = lap()
    texts = plain_generate(model, tokenizer, [prompt_of(r) for r in eval_records], budget.generate_batch,
                           task.plain_new_tokens)
    answers, accuracy = score(texts, [str(r["answer"]) for r in eval_records], train_records)
    eval_s = lap()
    model.save_pretrained(out / "adapter")
    save_s = lap()
    trial_s = build_s + train_s + eval_s + save_s
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return {"load_s": load_s, "train_s": train_s, "eval_s": eval_s, "other_s": build_s + save_s, "trial_s": trial_s,
            "whole_s": load_s + trial_s, "precision": precision, "answer_accuracy": accuracy, "answers": answers,
            "trainable_params": float(sum(p.numel() for p in model.parameters() if p.requires_grad)),
            "last_train_loss": losses[-1] if losses else None, "example_response": texts[0]}


# --- the comparison ------------------------------------------------------------------------------------------


# What each side imports beyond what both do (torch, transformers): timed apart, as a search imports once per worker.
SIDE_IMPORTS = {"ours": ("workers.worker",), "plain": ("datasets", "peft", "transformers.trainer")}


def run_contender(contender: str, task_name: str, budget: Budget) -> dict:
    """One contender in this process (the child's side of ``run_child``)."""
    started = time.perf_counter()
    for module in SIDE_IMPORTS[contender.split("-")[0]]:
        importlib.import_module(module)
    import_s = time.perf_counter() - started
    torch.set_num_threads(budget.threads)
    out = Path(f"/tmp/autopeft-vs-plain/{task_name}-{contender}-{os.getpid()}")
    task = TASKS[task_name]
    if contender.startswith("ours"):
        measured = run_ours(task, budget, out, "options" if contender == OPTIONS else "generate")
    else:
        measured = run_plain(task, budget, out, contender.removeprefix("plain-"))
    measured["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    measured["import_s"] = import_s
    return measured


def run_child(contender: str, task_name: str, budget: Budget) -> dict:
    command = [sys.executable, __file__, "--child", contender, task_name, json.dumps(asdict(budget))]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{contender} on {task_name} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def same_tokens(task: Task, budget: Budget) -> dict:
    """How many training examples the plain tokenisation gives exactly the worker's ids and labels for."""
    from transformers import AutoTokenizer

    from autopeft.spec import DataSpec, ModelSpec
    from autopeft.tasks.data import load_task_data

    model = ModelSpec(name_or_path=model_folder(), task="causal-lm")
    data = load_task_data(DataSpec(train=str(task.train), eval=str(task.eval), max_length=task.max_length),
                          model, seed=budget.seed)
    tokenizer = AutoTokenizer.from_pretrained(model_folder())
    train_records, _ = records(task, budget.eval_records, budget.seed)
    same = 0
    for i, record in enumerate(train_records):
        plain = plain_tokenize(tokenizer, prompt_of(record), str(record["output"]), task.max_length)
        same += (plain["input_ids"] == data.train.input_ids[i].tolist()
                 and plain["labels"] == data.train.token_labels[i].tolist())
    return {"identical": same, "examples": len(train_records)}


def padding(task: Task, budget: Budget) -> dict:
    """Tokens each side's training batches hold over the budget (real, and padded to each batch's longest):
    the worker's length-grouped batches (seed 0) and the Trainer's own dataloader (after ``set_seed``)."""
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorForSeq2Seq,
        Trainer,
        TrainingArguments,
        set_seed,
    )

    from workers.training import training_batches

    tokenizer = AutoTokenizer.from_pretrained(model_folder())
    train_records, _ = records(task, budget.eval_records, budget.seed)
    examples = [plain_tokenize(tokenizer, prompt_of(r), str(r["output"]), task.max_length) for r in train_records]
    lengths = np.array([len(e["input_ids"]) for e in examples])
    batches = training_batches(len(lengths), budget.batch_size, budget.seed, lengths)
    grouped = [lengths[next(batches)] for _ in range(budget.steps)]
    args = TrainingArguments(output_dir="/tmp/autopeft-vs-plain/padding", per_device_train_batch_size=budget.batch_size,
                             use_cpu=True, seed=budget.seed, report_to="none")
    trainer = Trainer(model=AutoModelForCausalLM.from_pretrained(model_folder()), args=args, train_dataset=examples,
                      data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True, return_tensors="pt"))
    set_seed(budget.seed)
    shapes = [batch["attention_mask"] for _, batch in zip(range(budget.steps), trainer.get_train_dataloader())]
    return {"example_tokens": {"min": int(lengths.min()), "mean": float(lengths.mean()), "max": int(lengths.max())},
            "ours": {"real": int(sum(b.sum() for b in grouped)), "padded": int(sum(b.max() * len(b) for b in grouped))},
            "plain": {"real": int(sum(m.sum() for m in shapes)), "padded": int(sum(m.numel() for m in shapes))}}


def step_floor(task: Task, budget: Budget, repeats: int = 5) -> dict:
    """One training step's forward and backward alone (LoRA r=8 q,v, a batch of the median training example,
    fastest of ``repeats``; bf16 autocast where the CPU has it natively, else fp32, as ``precision: auto``): with
    logits at every position (what both sides compute), with logits only at the scored response positions, and
    the forward alone; the floor under any training loop."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from workers.precision import cpu_has_native_bf16

    native = cpu_has_native_bf16()

    torch.set_num_threads(budget.threads)
    tokenizer = AutoTokenizer.from_pretrained(model_folder())
    train_records, _ = records(task, budget.eval_records, budget.seed)
    examples = [plain_tokenize(tokenizer, prompt_of(r), str(r["output"]), task.max_length) for r in train_records]
    median = sorted(examples, key=lambda e: len(e["input_ids"]))[len(examples) // 2]
    ids, labels = (torch.tensor([median[key]] * budget.batch_size) for key in ("input_ids", "labels"))
    scored = labels[0] != -100
    first = int(scored.nonzero()[0])
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(model_folder()), LoraConfig(
        task_type="CAUSAL_LM", r=LORA["r"], lora_alpha=LORA["alpha"], target_modules=["q_proj", "v_proj"]))
    model.train()
    inner = model.get_base_model()

    def every_position() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=native):
            loss = model(input_ids=ids, labels=labels).loss
        loss.float().backward()

    def response_only() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=native):
            hidden = inner.model(input_ids=ids).last_hidden_state[:, first - 1:-1]
            logits = inner.lm_head(hidden).float()
        functional.cross_entropy(logits.flatten(0, 1), labels[:, first:].flatten()).backward()

    def forward_only() -> None:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=native):
            model(input_ids=ids, labels=labels)

    def fastest(step: Callable[[], None]) -> float:
        times = []
        for _ in range(repeats + 1):  # the first is a warm-up
            started = time.perf_counter()
            step()
            times.append(time.perf_counter() - started)
        return min(times[1:])

    return {"precision": "bf16" if native else "fp32", "tokens": len(median["input_ids"]),
            "scored_tokens": int(scored.sum()),
            "forward_backward_s": fastest(every_position), "logits_on_response_only_s": fastest(response_only),
            "forward_only_s": fastest(forward_only)}


def same_eval_rows(task: Task, budget: Budget, ours: list[dict]) -> bool:
    """Whether the worker evaluated the records the plain side did (its ``eval_rows``; None: every row)."""
    count = len(json.loads(task.eval.read_text()))
    drawn = eval_positions(count, budget.eval_records, budget.seed)
    return all((run["eval_rows"] or list(range(count))) == drawn for run in ours)


def best_of(runs: list[dict]) -> dict:
    return min(runs, key=lambda run: run["trial_s"])


def summarise(runs: dict[str, list[dict]]) -> dict:
    best = {name: best_of(rs) for name, rs in runs.items()}
    ours = best["ours"]
    summary: dict = {"best": {name: {k: v for k, v in b.items() if k != "answers"} for name, b in best.items()}}
    for name in [n for n in CONTENDERS[1:] if n in best]:
        plain = best[name]
        for side in [s for s in ("ours", OPTIONS) if s in best]:
            mine = best[side]
            summary[f"{name} / {side}"] = {
                "trial": plain["trial_s"] / mine["trial_s"], "whole": plain["whole_s"] / mine["whole_s"],
                "train": plain["train_s"] / mine["train_s"], "eval": plain["eval_s"] / mine["eval_s"],
                "answers_equal": sum(a == b for a, b in zip(plain["answers"], mine["answers"])),
                "accuracy_ours_minus_plain": mine["answer_accuracy"] - plain["answer_accuracy"]}
    summary["answers_given"] = {name: dict(Counter(b["answers"]).most_common(4)) for name, b in best.items()}
    accuracy = ours["answer_accuracy"]
    summary["binomial_se"] = (accuracy * (1 - accuracy) / len(ours["answers"])) ** 0.5
    return summary


def cpu() -> dict:
    described = dict(line.split(":", 1) for line in subprocess.run(["lscpu"], capture_output=True, text=True)
                     .stdout.splitlines() if ":" in line)
    flags = described.get("Flags", "").split()
    return {"model_name": described.get("Model name", "unknown").strip(), "cpus": os.cpu_count(),
            **{flag: flag in flags for flag in ("avx512_bf16", "amx_bf16", "amx_tile")}}


def eval_records_for(items: list[str], task: str) -> int:
    """``48`` for every task, or ``boolq=48 multiarith=24`` per task."""
    counts = {name or "*": int(count) for name, _, count in (item.rpartition("=") for item in items)}
    return counts.get(task, counts.get("*", 48))


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        print(json.dumps(run_contender(sys.argv[2], sys.argv[3], Budget(**json.loads(sys.argv[4])))))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["boolq"], choices=list(TASKS))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--eval-records", nargs="+", default=["boolq=48", "multiarith=24"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--generate-batch", type=int, default=8, help="the plain side's generate batch size")
    parser.add_argument("--micro-batch", type=int, default=0,
                        help="the plain side's rows per forward, the rest by gradient accumulation, as LLM-Adapters' "
                             "finetune.py (--batch_size 16 --micro_batch_size 4); 0: the whole batch")
    parser.add_argument("--contenders", nargs="+", default=list(CONTENDERS), choices=[*CONTENDERS, OPTIONS],
                        help="which to run (ours always runs): on a CPU without native bf16, plain-bf16 is "
                             "emulated, many times slower, and not what a user there would run")
    parser.add_argument("--out", type=Path, default=HERE / "vs_plain.json")
    args = parser.parse_args()
    contenders = ["ours", *(name for name in args.contenders if name != "ours")]
    import peft
    import transformers

    results = json.loads(args.out.read_text()) if args.out.is_file() else {}
    results["_meta"] = {"cpu": cpu(), "torch": torch.__version__, "transformers": transformers.__version__,
                        "peft": peft.__version__, "model": "SmolLM2-135M-Instruct (autopeft.decoders.smollm2)",
                        "lora": LORA, "command": " ".join(sys.argv[1:])}
    for task_name in args.tasks:
        budget = Budget(args.steps, args.batch_size, args.learning_rate, 0.06, 0,
                        eval_records_for(args.eval_records, task_name), args.threads, args.generate_batch,
                        args.micro_batch)
        runs: dict[str, list[dict]] = {name: [] for name in contenders}
        for repeat in range(args.repeats):
            for name in contenders:
                runs[name].append(run_child(name, task_name, budget))
                shown = {k: runs[name][-1][k] for k in ("load_s", "train_s", "eval_s", "trial_s", "answer_accuracy")}
                print(task_name, repeat, name, json.dumps(shown), flush=True)
        results[task_name] = {"budget": asdict(budget), "plain_new_tokens": TASKS[task_name].plain_new_tokens,
                              "training_tokens_same": same_tokens(TASKS[task_name], budget),
                              "eval_records_same": same_eval_rows(TASKS[task_name], budget, runs["ours"]),
                              "padding": padding(TASKS[task_name], budget),
                              "step_floor": step_floor(TASKS[task_name], budget),
                              **summarise(runs), "runs": runs}
        args.out.write_text(json.dumps(results, indent=1) + "\n")
        print(json.dumps({k: v for k, v in results[task_name].items() if k != "runs"}, indent=1), flush=True)


if __name__ == "__main__":
    main()
