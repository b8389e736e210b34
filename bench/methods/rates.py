"""The methods that stay at chance at the shared learning-rate range's top: do they learn at their own rates?

    .venv/bin/python bench/methods/rates.py [--threads 2]

The ``full`` space draws every adapter's rate from one range, 1e-4 to 3e-3, the range LoRA and the bottleneck
adapters train well in. The methods bench (results.json) found IA3, BitFit, LayerNorm tuning, prefix tuning,
VeRA and prompt tuning at chance on QNLI at 3e-3, and prompt tuning on SST-2 as well, while their own papers train
them at higher rates: prompt tuning 0.3 (Lester et al., 2021, Adafactor) or 3e-2 (peft's prompt tuning guide),
VeRA 4e-3 to 1e-2 (Kopiczko et al., 2024, RoBERTa on GLUE), IA3 3e-3 (Liu et al., 2022, T-Few), prefix tuning
5e-3 to 1e-2 (P-tuning v2, Liu et al., 2022, on BERT-size classifiers). Each is trained here with the real
worker at 3e-3, 1e-2 and 3e-2 (the head at the same rate, as in a search), on two tasks at the fidelity
``steps_per_trial: auto`` chose for them (bench/new_tasks): QNLI at 256 steps and uncertainty detection at 128.
Results: ``rates.json`` (resumable).
"""

from __future__ import annotations

import argparse
import json
import sys

from run import HERE, ROOT, TASKS, minilm_and_training

from autopeft.search.trial import TrialRequest
from autopeft.spec import DataSpec
from autopeft.tasks.data import load_task_data
from workers.worker import TrialWorker

sys.path.insert(0, str(ROOT / "bench" / "new_tasks"))
import uncertainty_data  # noqa: E402

METHODS = {
    "IA3": {"method": "ia3"},
    "BitFit": {"method": "bitfit"},
    "LayerNorm tuning": {"method": "ln_tuning"},
    "prefix 10": {"method": "prefix", "prefix": {"prefix_length": 10}},
    "VeRA r=64": {"method": "vera", "vera": {"r": 64}},
    "prompt tuning 10 tokens": {"method": "prompt", "prompt": {"num_virtual_tokens": 10}},
}
RATES = (3e-3, 1e-2, 3e-2)


def tasks() -> dict[str, tuple[DataSpec, int]]:
    folder = uncertainty_data.main()  # the files as bench/new_tasks reads them
    train, dev = folder / "train.csv", folder / "dev.csv"
    return {"qnli": (TASKS["qnli"], 256),
            "uncertainty": (DataSpec(train=str(train), eval=str(dev), header=False, text_columns=["1"],
                                     label_column="0", max_length=64), 128)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tasks", nargs="+", default=["uncertainty", "qnli"])
    args = parser.parse_args()
    out = HERE / "rates.json"
    results = json.loads(out.read_text()) if out.is_file() else {}
    model, training = minilm_and_training()
    specs = tasks()
    for task in args.tasks:
        data_spec, steps = specs[task]
        data = load_task_data(data_spec, model, seed=0)
        worker = TrialWorker(model.model_dump(), data, threads=args.threads)
        for label, config in METHODS.items():
            for rate in RATES:
                key = f"{task} | {label} | {rate:g}"
                if key in results:
                    continue
                result = worker.run(TrialRequest(0, {"layers": list(range(6)), **config, "learning_rate": rate}, 0,
                                                 steps, training, f"/tmp/bench-rates/{task}/{label.replace(' ', '_')}"))
                results[key] = {"task": task, "configuration": label, "learning_rate": rate, "steps": steps,
                                "ok": result.ok, "fail_reason": result.fail_reason,
                                "accuracy": result.measurements.get("accuracy"),
                                "trainable_params": result.measurements.get("trainable_params")}
                out.write_text(json.dumps(results, indent=1) + "\n")
                print(json.dumps(results[key]), flush=True)


if __name__ == "__main__":
    main()
