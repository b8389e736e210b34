"""The decoder's evaluation passes at several token budgets per batch, on a CPU.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/eval_batching/decoder_scoring.py

SmolLM2-135M-Instruct as shipped (``autopeft.decoders.smollm2``), fp32, no gradients, the base model as a trial
loads it, 2 torch threads. Three kinds of pass (workers/generation.py), each on records whose lengths differ:

- ``loss only``: records without gold answers (the ``answer`` field removed), scored by their responses' loss
  (``score_responses``): the bundled BoolQ test slice (short responses) and 100 of the bundled math training
  records (worked answers of about 100 tokens);
- ``options``: ``answer_scoring: options`` (``score_and_choose``): BoolQ, and 100 PIQA test records from
  ``../shared/data/llm-adapters``;
- ``generate``: the default path, each gold response's loss and a greedy response from the same pass
  (``score_and_generate``): BoolQ and the bundled MultiArith slice.

The first two are timed through the worker's own evaluation (``CausalLmRunner.evaluate``, eval batch 128) with
``CPU_EVAL_TOKENS`` set to each budget; ``generate`` calls ``score_and_generate`` with the runner's own settings
and each budget, since its budget is not the CPU bound. Each variant is timed ``--repeats`` times in turn with the
others after one warm-up; the median is kept. What each variant computed (losses, options, answers) is compared
with the 8,192-token variant's, the budget every pass used before.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "decoders"))
from common import DATA, ROOT, smollm2_setup  # noqa: E402  (common puts the project on the path)

BUDGETS = [512, 1024, 2048, 4096, 8192]
BEFORE = 8192
PIQA = ROOT.parent / "shared" / "data" / "llm-adapters" / "dataset" / "piqa" / "test.json"
SETS = {
    "boolq-loss": ("loss", DATA / "boolq" / "test.json", None),
    "math-loss": ("loss", DATA / "math" / "train.json", 100),
    "boolq-options": ("options", DATA / "boolq" / "test.json", None),
    "piqa-options": ("options", PIQA, 100),
    "boolq-generate": ("generate", DATA / "boolq" / "test.json", 48),
    "multiarith-generate": ("generate", DATA / "math" / "multiarith.json", 24),
}


def eval_file(kind: str, source: Path, records: int | None, scratch: Path) -> str:
    """The eval records as the pass reads them: the first ``records`` of ``source``, without their answers for
    a loss-only pass."""
    rows = json.loads(source.read_text())[:records]
    if kind == "loss":
        for row in rows:
            row.pop("answer", None)
    path = scratch / f"{source.parent.name}-{source.stem}-{kind}.json"
    path.write_text(json.dumps(rows))
    return str(path)


def runner_for(kind: str, source: Path, records: int | None, model_spec, tokenizer, scratch: Path):
    import torch

    from autopeft.spec import DataSpec
    from autopeft.tasks.data import load_task_data
    from workers.tasks import CausalLmRunner

    evaluation = eval_file(kind, source, records, scratch)
    data = load_task_data(DataSpec(train=evaluation, eval=evaluation, max_length=512, train_size=8,
                                   answer_scoring="options" if kind == "options" else "generate"),
                          model_spec, seed=0)
    return CausalLmRunner(data, tokenizer, torch.device("cpu"))


def evaluate(kind: str, runner, model, budget: int, rows: int):
    """What the pass computed (per-record losses and, where it answers, the answers) at ``budget``."""
    import torch

    from autopeft.store.predictions import decode, losses_of
    from workers import batching
    from workers.generation import score_and_generate

    if kind == "generate":
        split = runner.data.eval
        scored = score_and_generate(model, runner.tokenizer, split.prompts, runner._gold_responses(), split.answers,
                                    max_new_tokens=runner.max_new_tokens, pad_id=runner.pad_id,
                                    device=torch.device("cpu"), max_rows=rows, reading=runner.reading,
                                    token_budget=budget)
        return list(scored.record_losses), scored.texts
    batching.CPU_EVAL_TOKENS = budget
    evaluation = runner.evaluate(model, rows)
    answers = decode(evaluation.predictions) if kind == "options" else None
    return list(losses_of(evaluation.predictions)), answers


def measure(name: str, runner, model, kind: str, repeats: int, rows: int) -> dict:
    seconds: dict[int, list[float]] = {budget: [] for budget in BUDGETS}
    computed: dict[int, tuple] = {}
    evaluate(kind, runner, model, BEFORE, rows)  # warm-up
    for _ in range(repeats):
        for budget in BUDGETS:
            start = time.perf_counter()
            computed[budget] = evaluate(kind, runner, model, budget, rows)
            seconds[budget].append(time.perf_counter() - start)
    lengths = [len(p) + len(r) for p, r in zip(runner.data.eval.prompts, runner._gold_responses())]
    before = statistics.median(seconds[BEFORE])
    losses_before, answers_before = computed[BEFORE]
    return {
        "set": name, "pass": kind, "records": len(lengths),
        "mean_tokens": round(statistics.mean(lengths), 1), "max_tokens": max(lengths),
        "seconds": {str(b): [round(s, 3) for s in values] for b, values in seconds.items()},
        "speedup_vs_8192": {str(b): round(before / statistics.median(values), 2) for b, values in seconds.items()},
        "largest_loss_difference": {str(b): float(max(abs(x - y) for x, y in zip(computed[b][0], losses_before)))
                                    for b in BUDGETS},
        "same_answers": None if answers_before is None else
        {str(b): sum(x == y for x, y in zip(computed[b][1], answers_before)) for b in BUDGETS},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rows", type=int, default=128, help="eval_batch_size: the most rows a batch holds")
    parser.add_argument("--sets", default=",".join(SETS), help="comma-separated, of: " + ", ".join(SETS))
    parser.add_argument("--out", type=Path, default=HERE / "decoder_scoring.json")
    args = parser.parse_args()
    from transformers import AutoModelForCausalLM

    folder, model_spec, tokenizer, header = smollm2_setup(args.threads)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        for name in args.sets.split(","):
            kind, source, records = SETS[name]
            runner = runner_for(kind, source, records, model_spec, tokenizer, Path(scratch))
            result = measure(name, runner, model, kind, args.repeats, args.rows)
            print(json.dumps(result), flush=True)
            results.append(result)
            args.out.write_text(json.dumps({**header, "precision": "fp32", "eval_batch_size": args.rows,
                                            "repeats": args.repeats, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
