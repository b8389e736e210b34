"""A decoder on a user's own plain text (``data.text_columns`` of causal-lm): is the loss it reports right, what does
splitting long texts into blocks cost, and does a trial train as a plain Trainer + peft script does?

Two corpora nobody tuned for, each 400 texts to train on and 40 held-out texts (seeded draws):

- *wikipedia*: distinct Wikipedia passages from BoolQ (train passages to train, dev passages to evaluate;
  CC BY-SA 3.0, ../shared/data/boolq), a median of 88 words;
- *math*: LLM-Adapters' math training records (ODC-By 1.0, ../shared/data/llm-adapters) as plain text, each the
  problem and its worked solution, a median of 43 + 24 words.

On SmolLM2-135M-Instruct, measured in one process:

1. *Agreement*: the untouched model's ``eval_loss`` as the worker's evaluation reports it with every text in one
   block (``max_length`` 2,048) against an independent computation, transformers' own loss of each whole text
   weighted by its predicted tokens.
2. *Blocks*: the same at ``max_length`` 128, where long texts are split (each later block reading the 64 tokens
   before its own): the context a block does not see raises the loss by this much; and, for comparison, blocks cut
   end to end as run_clm cuts them (each reading one token of the block before).
3. *A trial against a plain script*: LoRA r=8 on q,v of every layer (alpha 16, lr 1e-3, 6% warm-up then linear
   decay, batch 8, the given steps) trained once by a one-trial search (the local executor, both cores) and once by
   ``transformers.Trainer`` + ``peft`` on run_clm's blocks (the texts, each closed by the end of sequence,
   concatenated and cut into 128-token blocks, ``DataCollatorForLanguageModeling(mlm=False)``); both adapters are
   then scored by the same evaluation (blocks of 128). The Trainer runs in fp32, the search at ``precision: auto``
   (bf16 where the CPU computes it natively): the times are shown, not offered as a like-for-like ratio
   (bench/llm_adapters/vs_plain.py is that comparison for instruction records).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/decoders/plain_text.py --steps 100   # -> plain_text.json
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

from common import HERE, ROOT, smollm2_setup

SHARED = ROOT.parent / "shared" / "data"
TRAIN_TEXTS, EVAL_TEXTS, BLOCK = 400, 40, 128


def _passages(path: Path) -> list[str]:
    return sorted({json.loads(line)["passage"] for line in path.read_text().splitlines() if line.strip()})


def corpora() -> dict[str, tuple[list[str], list[str]]]:
    """Each corpus's training and held-out texts."""
    rng = random.Random(0)
    boolq = SHARED / "boolq"
    wiki_train = rng.sample(_passages(boolq / "train.superglue.jsonl"), TRAIN_TEXTS)
    wiki_eval = rng.sample(_passages(boolq / "dev.superglue.jsonl"), EVAL_TEXTS)
    records = json.loads((SHARED / "llm-adapters" / "ft-training_set" / "math_data.json").read_text())
    problems = [f"{r['instruction']}\n{r['output']}" for r in rng.sample(records, TRAIN_TEXTS + EVAL_TEXTS)]
    return {"wikipedia": (wiki_train, wiki_eval), "math": (problems[:TRAIN_TEXTS], problems[TRAIN_TEXTS:])}


def write_corpus(folder: Path, train: list[str], held_out: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, texts in (("train.jsonl", train), ("eval.jsonl", held_out)):
        (folder / name).write_text("\n".join(json.dumps({"text": t}) for t in texts))


def runner_for(folder: Path, model_spec, tokenizer, max_length: int):
    import torch

    from autopeft.spec import DataSpec
    from autopeft.tasks.data import load_task_data
    from workers.tasks import CausalLmRunner

    data = load_task_data(DataSpec(train=str(folder / "train.jsonl"), eval=str(folder / "eval.jsonl"),
                                   text_columns=["text"], max_length=max_length), model_spec, seed=0)
    return data, CausalLmRunner(data, tokenizer, torch.device("cpu"))


def whole_text_loss(model, tokenizer, texts: list[str]) -> float:
    """transformers' own mean loss of each whole text (and its end of sequence), weighted by its predicted tokens."""
    import torch

    total, tokens = 0.0, 0
    with torch.inference_mode():
        for text in texts:
            ids = torch.tensor([tokenizer(text)["input_ids"] + [tokenizer.eos_token_id]])
            total += float(model(input_ids=ids, labels=ids).loss) * (ids.shape[1] - 1)
            tokens += ids.shape[1] - 1
    return total / tokens


def end_to_end_loss(model, tokenizer, texts: list[str]) -> float:
    """The loss of blocks cut end to end (each reading only the last token of the block before, scored there): what
    the sliding window of autopeft/tasks/text_blocks.py was measured against."""
    import torch

    total, tokens = 0.0, 0
    with torch.inference_mode():
        for text in texts:
            ids = tokenizer(text)["input_ids"] + [tokenizer.eos_token_id]
            for start in range(0, len(ids) - 1, BLOCK - 1):
                block = torch.tensor([ids[start:start + BLOCK]])
                total += float(model(input_ids=block, labels=block).loss) * (block.shape[1] - 1)
                tokens += block.shape[1] - 1
    return total / tokens


def lora_space() -> dict:
    return {"name": "lora-r8-qv", "parameters": {}, "fixed": {
        "method": "lora", "lora.r": 8, "lora.alpha_over_r": 2.0, "lora.dropout": 0.0,
        "lora.target_modules": ["query", "value"], "learning_rate": 1e-3}}


def search_trial(folder: Path, model_path: str, steps: int) -> dict:
    import autopeft

    spec = {"name": "plain-text", "model": {"name_or_path": model_path, "task": "causal-lm"},
            "data": {"train": str(folder / "train.jsonl"), "eval": str(folder / "eval.jsonl"),
                     "text_columns": ["text"], "max_length": BLOCK},
            "objectives": [{"name": "eval_loss"}, {"name": "trainable_params"}], "constraints": [],
            "search_space": lora_space(), "training": {"batch_size": 8, "eval_batch_size": 16},
            "budget": {"trials": 1, "steps_per_trial": steps}, "workers": {"parallel": 1, "cpus_per_trial": 2},
            "storage": f"sqlite:///{folder / 'trials.db'}", "output_dir": str(folder / "runs"), "seed": 0}
    started = time.perf_counter()
    search = autopeft.run_search(spec, name="plain-text", executor="local", progress=False)
    record = search.records[0]
    return {"eval_loss": record.values["eval_loss"], "train_time_s": record.measurements["train_time_s"],
            "trial_s": record.duration_s, "search_s": time.perf_counter() - started,
            "untouched_eval_loss": search.chance["chance"], "above_untouched": search.chance["tests"]
            [str(record.number)]["above"], "adapter_dir": record.adapter_dir}


def trainer_trial(folder: Path, model_path: str, tokenizer, train: list[str], steps: int) -> dict:
    """run_clm's way: the texts concatenated and cut into blocks, trained by the Trainer with a LoRA of the same
    shape at the same schedule."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, DataCollatorForLanguageModeling, Trainer, TrainingArguments

    stream = [t for text in train for t in tokenizer(text)["input_ids"] + [tokenizer.eos_token_id]]
    blocks = [stream[i:i + BLOCK] for i in range(0, len(stream) - BLOCK + 1, BLOCK)]
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32),
                           LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "v_proj"],
                                      task_type="CAUSAL_LM"))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    arguments = TrainingArguments(output_dir=str(folder / "trainer"), max_steps=steps, per_device_train_batch_size=8,
                                  learning_rate=1e-3, warmup_ratio=0.06, lr_scheduler_type="linear",
                                  max_grad_norm=1.0, weight_decay=0.0, logging_steps=steps, save_strategy="no",
                                  report_to=[], use_cpu=True, seed=0, dataloader_num_workers=0)
    trainer = Trainer(model=model, args=arguments, train_dataset=Dataset.from_dict({"input_ids": blocks}),
                      data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False))
    started = time.perf_counter()
    trainer.train()
    elapsed = time.perf_counter() - started
    model.save_pretrained(folder / "trainer-adapter")
    return {"train_time_s": elapsed, "blocks": len(blocks), "adapter_dir": str(folder / "trainer-adapter")}


def adapter_loss(runner, model_path: str, adapter_dir: str) -> float:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32),
                                      adapter_dir)
    return runner.evaluate(model, 16).metrics["eval_loss"]


def measure(name: str, train: list[str], held_out: list[str], steps: int, setup) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    model_path, model_spec, tokenizer = setup
    folder = Path(tempfile.mkdtemp(prefix=f"plain-text-{name}-"))
    write_corpus(folder, train, held_out)
    base = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).eval()
    whole_data, whole = runner_for(folder, model_spec, tokenizer, 2048)
    block_data, blocked = runner_for(folder, model_spec, tokenizer, BLOCK)
    independent = whole_text_loss(base, tokenizer, held_out)
    one_block = whole.evaluate(base, 16).metrics["eval_loss"]
    in_blocks = blocked.evaluate(base, 16).metrics["eval_loss"]
    cut_end_to_end = end_to_end_loss(base, tokenizer, held_out)
    del base
    ours = search_trial(folder, model_path, steps)
    plain = trainer_trial(folder, model_path, tokenizer, train, steps)
    ours["eval_loss_rescored"] = adapter_loss(blocked, model_path, ours["adapter_dir"])
    plain["eval_loss"] = adapter_loss(blocked, model_path, plain["adapter_dir"])
    tokens = [len(tokenizer(t)["input_ids"]) + 1 for t in held_out]
    return {
        "texts": {"train": len(train), "eval": len(held_out), "eval_tokens_median": sorted(tokens)[len(tokens) // 2],
                  "eval_texts_longer_than_block": sum(t > BLOCK for t in tokens),
                  "eval_blocks": len(block_data.eval), "train_blocks": len(block_data.train)},
        "untouched": {"independent_whole_texts": independent, "ours_one_block": one_block,
                      "agreement_rel": abs(one_block - independent) / independent,
                      "ours_blocks_128": in_blocks, "block_cost_rel": in_blocks / one_block - 1,
                      "end_to_end_blocks_128": cut_end_to_end, "end_to_end_cost_rel": cut_end_to_end / one_block - 1},
        "lora_r8_qv": {"steps": steps, "batch_size": 8, "ours": ours, "trainer_peft": plain,
                       "loss_drop_ours": 1 - ours["eval_loss"] / in_blocks,
                       "loss_drop_trainer": 1 - plain["eval_loss"] / in_blocks},
        "whole_data_eval_records": len(whole_data.eval),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--corpora", nargs="*", default=["wikipedia", "math"])
    args = parser.parse_args()
    folder, model_spec, tokenizer, header = smollm2_setup(args.threads)
    texts = corpora()
    results = {**header, "block": BLOCK, "corpora": {}}
    for name in args.corpora:
        results["corpora"][name] = measure(name, *texts[name], args.steps, (folder, model_spec, tokenizer))
        print(name, json.dumps(results["corpora"][name], indent=1), flush=True)
    (HERE / "plain_text.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
