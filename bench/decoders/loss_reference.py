"""A search on its loss read against the untouched model: which trials learned something, on the real decoder.

The bundled decoder examples with their answer field removed (the Alpaca form; objective `eval_loss`, as
`without_answers.py` makes them), searched as shipped (the LoRA space, the examples' fidelity), and a control in
which nothing can be learned: the same records, one LoRA configuration at a learning rate too small to move the
weights (1e-8). Per search: the untouched model's loss (the search's stored chance level), every completed trial's
loss with its paired test against it (bar, one standard deviation of the paired noise, verdict), and what the
surfaces said (`nothing_learned`). The untouched model's evaluation is also timed here on its own, in this process:
what the reference costs the search, once per worker.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/decoders/loss_reference.py [--trials 3] [--examples boolq math]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import optuna

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import autopeft  # noqa: E402
from autopeft.results.chance import chance_test  # noqa: E402
from autopeft.store import storage  # noqa: E402
from autopeft.store.predictions import EvalTargets, decode  # noqa: E402
from bench.decoders.without_answers import EXAMPLES, cpu_name, spec_for  # noqa: E402

OUT = Path(__file__).with_name("loss_reference.json")
# One LoRA configuration at a rate that cannot move the weights in a few steps: the control that learns nothing
FROZEN_LORA = {"name": "lora-at-1e-8", "parameters": {"lora.r": {"type": "categorical", "choices": [4, 8]}},
               "fixed": {"method": "lora", "lora.target_modules": ["query", "value"], "lora.alpha_over_r": 2.0,
                         "lora.dropout": 0.0, "learning_rate": 1e-8}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--examples", nargs="+", choices=sorted(EXAMPLES), default=["boolq", "math"])
    args = parser.parse_args()
    everything = json.loads(OUT.read_text()) if OUT.is_file() else {}
    everything["cpu"] = cpu_name()
    for name in args.examples:
        everything[name] = {"as_shipped": searched(EXAMPLES[name], args.trials, None),
                            "control_lr_1e-8": searched(EXAMPLES[name], 2, FROZEN_LORA),
                            "untouched_eval_s": untouched_seconds(EXAMPLES[name])}
        OUT.write_text(json.dumps(everything, indent=2) + "\n")


def searched(example: Path, trials: int, space: dict | None) -> dict:
    work = Path(tempfile.mkdtemp(prefix="autopeft-loss-reference-"))
    spec = spec_for(example, work, answers=False, trials=trials)
    if space is not None:
        spec["search_space"] = space
    started = time.monotonic()
    search = autopeft.run_search(spec, name="loss", executor="local", progress=False)
    seconds = time.monotonic() - started
    study = optuna.load_study(study_name="loss", storage=spec["storage"])
    targets = EvalTargets.from_json(study.user_attrs[storage.EVAL_TARGETS])
    report = search.chance
    rows = []
    for record in search.records:
        if record.state != "COMPLETE" or not record.predictions:
            continue
        value = record.measurements["eval_loss"]
        test = chance_test("eval_loss", False, value, decode(record.predictions), targets, None, report["trials"])
        rows.append({"trial": record.number, "configuration": record.config, "eval_loss": round(value, 4),
                     "bar": round(test.bar, 4), "noise": round(test.noise, 5), "learned": test.above,
                     "front": record.number in [int(n) for n in report["tests"]]})
        print(rows[-1], flush=True)
    result = {"untouched_loss": round(report["chance"], 4), "examples": report["examples"], "trials": rows,
              "nothing_learned": report["nothing_learned"], "seconds": round(seconds, 1)}
    print(example.name, "control" if space else "as shipped", {k: v for k, v in result.items() if k != "trials"},
          flush=True)
    return result


def untouched_seconds(example: Path) -> float:
    """One evaluation of the base model on the example's eval records, as a worker makes it before its first
    trial (the decoder loaded and the data tokenised beforehand, as a worker has them)."""
    import torch

    from autopeft.models.base import load_base_model, load_tokenizer
    from autopeft.spec import SearchSpec, resolve_spec
    from autopeft.tasks.data import load_task_data
    from workers.tasks import CausalLmRunner

    work = Path(tempfile.mkdtemp(prefix="autopeft-untouched-"))
    spec = resolve_spec(SearchSpec.model_validate(spec_for(example, work, answers=False, trials=1)), work,
                        str(example))
    torch.set_num_threads(2)
    data = load_task_data(spec.data, spec.model, spec.seed)
    runner = CausalLmRunner(data, load_tokenizer(spec.model), torch.device("cpu"))
    base = load_base_model(spec.model, [])
    started = time.monotonic()
    runner.evaluate(base, spec.training.eval_batch_size)
    return round(time.monotonic() - started, 2)


if __name__ == "__main__":
    main()
