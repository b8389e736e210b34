"""Prompt tuning's answers on SmolLM2, read two ways from the same trained adapters: the worker's evaluation as it
ships (the virtual tokens put in front of each left-padded prompt as embeddings, positions counted over the
prompt's own tokens: workers/generation.py, ``_virtual_tokens_in_front``) and through peft's own ``generate``,
which drops the position ids a left-padded row needs. Prints, per task, both accuracies and how many answers differ.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/llm_adapters/run.py --steps 40 --batch-size 4 --train-records 400 \\
        --eval-records boolq=48 multiarith=16 --threads 2 --methods "prompt tuning 10 tokens" \\
        --results bench/llm_adapters/results_prompt_positions.json --work-dir /tmp/llm-prompt
    HF_HUB_OFFLINE=1 .venv/bin/python bench/llm_adapters/prompt_positions.py /tmp/llm-prompt
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
sys.path.insert(0, str(HERE))

import torch  # noqa: E402
from peft import PeftModel  # noqa: E402
from run import DECODER, TASKS  # noqa: E402

import workers.generation  # noqa: E402
from autopeft.models.base import load_base_model, load_tokenizer  # noqa: E402
from autopeft.spec import DataSpec, ModelSpec, resolve_model_location  # noqa: E402
from autopeft.store.predictions import decode  # noqa: E402
from autopeft.tasks.data import load_task_data  # noqa: E402
from workers.tasks import CausalLmRunner  # noqa: E402

EVAL_RECORDS = {"boolq": 48, "multiarith": 16}  # the budget of the table's runs


def answers_both_ways(model: ModelSpec, task: str, adapter: Path) -> tuple[list[str], list[str], float, float]:
    _, train, evaluation, max_length = TASKS[task]
    data = load_task_data(DataSpec(train=str(train), eval=str(evaluation), max_length=max_length, train_size=400,
                                   eval_size=EVAL_RECORDS[task]), model, seed=0)
    runner = CausalLmRunner(data, load_tokenizer(model), torch.device("cpu"))
    adapted = PeftModel.from_pretrained(load_base_model(model, []), str(adapter)).eval()
    shipped = runner.evaluate(adapted, 16)
    in_front = workers.generation._virtual_tokens_in_front
    workers.generation._virtual_tokens_in_front = lambda *args: None  # peft's own generate
    try:
        through_peft = runner.evaluate(adapted, 16)
    finally:
        workers.generation._virtual_tokens_in_front = in_front
    return (decode(shipped.predictions), decode(through_peft.predictions), shipped.metrics["answer_accuracy"],
            through_peft.metrics["answer_accuracy"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("work_dir", type=Path, help="run.py's --work-dir")
    args = parser.parse_args()
    torch.set_num_threads(2)
    model = ModelSpec(name_or_path=resolve_model_location(DECODER, HERE)[0], task="causal-lm")
    for task in EVAL_RECORDS:
        adapter = args.work_dir / task / "prompt_tuning_10_tokens" / "adapter"
        shipped, through_peft, accuracy, peft_accuracy = answers_both_ways(model, task, adapter)
        differ = sum(a != b for a, b in zip(shipped, through_peft))
        print(f"{task}: accuracy {accuracy:.4f} (peft's generate: {peft_accuracy:.4f}); "
              f"{differ} of {len(shipped)} answers differ")


if __name__ == "__main__":
    main()
