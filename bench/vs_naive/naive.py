"""The naive search: what a user writes instead of autopeft — Ray Tune + OptunaSearch (TPE, two objectives), each
trial a plain ``transformers.Trainer`` + ``peft`` LoRA run.

    .venv/bin/python bench/vs_naive/naive.py --seconds 1000 --steps 250 --out /tmp/naive.json

The space is the same kind as autopeft's default LoRA space (search_spaces/lora.yaml), written the way a user
writes it for Ray Tune: LoRA rank in {1, 2, 4, 8, 16, 32, 64}; one boolean per module role (query, key, value,
attention output, FFN up, FFN down); one boolean per layer; learning rate log-uniform in [3e-4, 3e-3];
lora_alpha = 2r, no dropout. Empty sets are handled as a user would with a one-liner, by falling back to the
library's usual default: no module switched on -> query and value (peft's default targets for BERT); no layer
switched on -> all layers. The searcher is told the sampled switches, the trial trains the fallback, and the
trained modules and layers are recorded with the trial (``effective_*``).

Each trial trains ``--steps`` optimizer steps at batch 16 on the bundled 4,000-sentence SST-2 sample (max length
64; 6% linear warm-up then linear decay, clipping 1.0: the settings of bench/trial_speed/contenders.py) and is
evaluated on the full 872-sentence dev set; it reports dev accuracy and the trainable parameters counted on the
built model (LoRA matrices + classifier head). Two trials at a time with one CPU (and one torch thread) each, on a
``ray.init(num_cpus=2)`` local cluster, until ``TuneConfig(time_budget_s=...)`` runs out (Tune then stops the
trials in flight; they report nothing and do not count). Every finished trial records its wall-clock finish time
(``finished_at``, seconds since the epoch) so that the caller can place it on its own clock.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
TRIAL_SPEED = ROOT / "bench" / "trial_speed"
sys.path.insert(0, str(TRIAL_SPEED))
# Ray's worker processes inherit the driver's environment: they must find contenders.py (and the project) too.
os.environ["PYTHONPATH"] = os.pathsep.join([str(HERE), str(TRIAL_SPEED), str(ROOT), *filter(None, [os.environ.get(
    "PYTHONPATH")])])

import contenders  # noqa: E402  (bench/trial_speed/contenders.py: model, data and training settings)

RANKS = [1, 2, 4, 8, 16, 32, 64]
# Module roles, as in search_spaces/lora.yaml, and their names in a BERT layer (MiniLM-L6 is a BERT).
ROLES = {"query": "attention.self.query", "key": "attention.self.key", "value": "attention.self.value",
         "attention_output": "attention.output.dense", "ffn_up": "intermediate.dense", "ffn_down": "output.dense"}
FALLBACK_ROLES = ["query", "value"]  # peft's default LoRA targets for BERT


def num_layers() -> int:
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(contenders.model_path()).num_hidden_layers


def param_space(layers: int) -> dict:
    from ray import tune

    return {"r": tune.choice(RANKS), "learning_rate": tune.loguniform(3e-4, 3e-3),
            **{f"module_{role}": tune.choice([True, False]) for role in ROLES},
            **{f"layer_{i}": tune.choice([True, False]) for i in range(layers)}}


def effective(config: dict, layers: int) -> tuple[list[str], list[int]]:
    """The modules and layers a trial trains: the switched-on ones, or the fallback when none is on."""
    roles = [role for role in ROLES if config[f"module_{role}"]] or FALLBACK_ROLES
    on = [i for i in range(layers) if config[f"layer_{i}"]] or list(range(layers))
    return roles, on


def train_trial(config: dict, steps: int, seed: int, threads: int, layers: int) -> None:
    """One trial: build LoRA from the config, train with the Trainer, evaluate, report (runs in a Ray worker)."""
    import numpy as np
    import pandas as pd
    import torch
    from datasets import Dataset
    from peft import LoraConfig, TaskType, get_peft_model
    from ray import tune
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments

    torch.set_num_threads(threads)
    path = contenders.model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)

    def load(name: str) -> Dataset:
        frame = pd.read_csv(contenders.DATA / name, sep="\t", quoting=3, keep_default_na=False, dtype={"label": int})
        dataset = Dataset.from_pandas(frame.rename(columns={"label": "labels"}))
        return dataset.map(lambda b: tokenizer(b["sentence"], truncation=True, max_length=contenders.MAX_LENGTH),
                           batched=True, remove_columns=["sentence"])

    train, dev = load("train.tsv"), load("dev.tsv")
    roles, on = effective(config, layers)
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    # Full per-layer names ("encoder.layer.3.output.dense"): peft matches name suffixes, and a bare "output.dense"
    # would also catch every "attention.output.dense".
    targets = [f"encoder.layer.{i}.{ROLES[role]}" for i in on for role in roles]
    model = get_peft_model(model, LoraConfig(task_type=TaskType.SEQ_CLS, r=config["r"], lora_alpha=2 * config["r"],
                                             lora_dropout=0.0, target_modules=targets))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    output_dir = tune.get_context().get_trial_dir()
    args = TrainingArguments(output_dir=output_dir, max_steps=steps, per_device_train_batch_size=contenders.BATCH,
                             per_device_eval_batch_size=contenders.EVAL_BATCH, learning_rate=config["learning_rate"],
                             warmup_ratio=contenders.WARMUP, lr_scheduler_type="linear", weight_decay=0.0,
                             max_grad_norm=1.0, logging_steps=10, save_strategy="no", report_to=[],
                             disable_tqdm=True, use_cpu=True, seed=seed, dataloader_num_workers=0)
    trainer = Trainer(model=model, args=args, train_dataset=train, processing_class=tokenizer)
    trainer.train()
    predictions = trainer.predict(dev)
    accuracy = float((np.argmax(predictions.predictions, axis=-1) == predictions.label_ids).mean())
    model.save_pretrained(os.path.join(output_dir, "adapter"))
    tune.report({"accuracy": accuracy, "trainable_params": float(trainable), "finished_at": time.time(),
                 "effective_modules": roles, "effective_layers": on})


def search(seconds: float, steps: int, seed: int, workdir: Path, parallel: int = 2, cpus_per_trial: int = 1) -> dict:
    import ray
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    layers = num_layers()
    shutil.rmtree(workdir / "ray_results", ignore_errors=True)  # a fresh experiment, never a resumed one
    # address="local": a private cluster, as the product's executor starts; without it ray.init joins whatever
    # local cluster /tmp/ray/ray_current_cluster names (and refuses num_cpus there).
    ray.init(address="local", num_cpus=parallel * cpus_per_trial, include_dashboard=False, log_to_driver=False)
    try:
        # Multi-objective: metric and mode go to the searcher as lists, not to TuneConfig (Tune itself then has
        # no single metric, which is fine: nothing here asks it for a "best" trial). seed seeds its TPESampler.
        searcher = OptunaSearch(metric=["accuracy", "trainable_params"], mode=["max", "min"], seed=seed)
        trainable = tune.with_resources(
            tune.with_parameters(train_trial, steps=steps, seed=seed, threads=cpus_per_trial, layers=layers),
            {"cpu": cpus_per_trial})
        tuner = tune.Tuner(
            trainable, param_space=param_space(layers),
            tune_config=tune.TuneConfig(search_alg=searcher, num_samples=-1, max_concurrent_trials=parallel,
                                        time_budget_s=seconds),
            run_config=tune.RunConfig(name="naive", storage_path=str(workdir / "ray_results"), verbose=1))
        started_fit = time.time()
        grid = tuner.fit()
    finally:
        ray.shutdown()
    trials = []
    for result in grid:
        metrics = result.metrics or {}
        config = {k: v for k, v in (result.config or {}).items()}
        row = {"config": config, "error": None if result.error is None else str(result.error).splitlines()[0]}
        if "accuracy" in metrics:
            row |= {"state": "COMPLETE", "accuracy": metrics["accuracy"],
                    "trainable_params": metrics["trainable_params"], "finished_at": metrics["finished_at"],
                    "effective_modules": metrics["effective_modules"],
                    "effective_layers": metrics["effective_layers"]}
        else:
            row["state"] = "ERROR" if result.error is not None else "STOPPED"
        trials.append(row)
    return {"fit_started_at": started_fit, "layers": layers, "trials": trials}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=1000.0, help="Tune's time_budget_s")
    parser.add_argument("--steps", type=int, default=250, help="optimizer steps per trial (batch 16)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/vs-naive/naive"))
    parser.add_argument("--out", type=Path, required=True, help="where to write the trials as JSON")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    result = search(args.seconds, args.steps, args.seed, args.workdir)
    args.out.write_text(json.dumps(result, indent=1))
    done = sum(t["state"] == "COMPLETE" for t in result["trials"])
    print(f"naive: {done} of {len(result['trials'])} trials finished", flush=True)


if __name__ == "__main__":
    main()
