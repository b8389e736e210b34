"""Answers that did not move, a loss that did: what a decoder search on a CPU budget learned, on the real decoder.

The bundled decoder examples as shipped (records with answers, `answer_accuracy` the task metric, the LoRA space,
the examples' fidelity) and a control in which nothing can be learned (one LoRA configuration at a learning rate
too small to move the weights, 1e-8). Per search: the answers' chance level and the untouched model's answer
accuracy and loss, and per front point its answer accuracy and loss with the verdicts every surface shows: above
chance or not, better than the untouched model's answers or not, and whether its gold responses' loss fell clearly
below the untouched model's (the paired test; `form_not_answers`: the form learned, not the answers). Then the same
records searched with `eval_loss` as the task metric, which is read against the untouched model's loss.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/decoders/form_reading.py [--trials 3] [--examples boolq math]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import autopeft  # noqa: E402
from autopeft.results.views import chance_line  # noqa: E402
from bench.decoders.loss_reference import FROZEN_LORA  # noqa: E402
from bench.decoders.without_answers import EXAMPLES, cpu_name, spec_for  # noqa: E402

OUT = Path(__file__).with_name("form_reading.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--examples", nargs="+", choices=sorted(EXAMPLES), default=["boolq", "math"])
    parser.add_argument("--reread", action="store_true",
                        help="read the recorded searches again (their databases kept) with the reading as it now is")
    args = parser.parse_args()
    everything = json.loads(OUT.read_text()) if OUT.is_file() else {}
    if args.reread:
        for name in args.examples:
            for kind, result in everything[name].items():
                again = described(autopeft.load_search("form", storage=result["storage"]), result["metric"],
                                  result["seconds"], result["storage"])
                everything[name][kind] = again
                print(name, kind, again["form_not_answers"], flush=True)
        OUT.write_text(json.dumps(everything, indent=2) + "\n")
        return
    everything["cpu"] = cpu_name()
    for name in args.examples:
        everything[name] = {"answers_as_shipped": searched(EXAMPLES[name], args.trials, None, "answer_accuracy"),
                            "answers_control_lr_1e-8": searched(EXAMPLES[name], 2, FROZEN_LORA, "answer_accuracy"),
                            "loss_as_task_metric": searched(EXAMPLES[name], args.trials, None, "eval_loss")}
        OUT.write_text(json.dumps(everything, indent=2) + "\n")


def searched(example: Path, trials: int, space: dict | None, metric: str) -> dict:
    work = Path(tempfile.mkdtemp(prefix="autopeft-form-reading-"))
    spec = spec_for(example, work, answers=True, trials=trials)
    spec["objectives"][0] = {"name": metric}
    if space is not None:
        spec["search_space"] = space
    started = time.monotonic()
    search = autopeft.run_search(spec, name="form", executor="local", progress=False)
    result = described(search, metric, time.monotonic() - started, spec["storage"])
    print(example.name, metric, "control" if space else "as shipped",
          {k: v for k, v in result.items() if k != "front"}, flush=True)
    return result


def described(search: autopeft.Search, metric: str, seconds: float, storage: str) -> dict:
    """The search's reading as every surface gives it: chance, the untouched model, each front point's verdicts,
    and the trials that learned the form (the front's, or every searched trial's where nothing learned)."""
    report = search.chance
    front = {record.number: record for record in search.front}
    points = []
    for number, record in front.items():
        test = report["tests"].get(str(number), {})
        points.append({"trial": number, "configuration": record.config,
                       "answer_accuracy": round(record.measurements["answer_accuracy"], 4),
                       "eval_loss": round(record.measurements["eval_loss"], 4),
                       "above_chance": test.get("above"), "bar": test.get("bar"),
                       "better_than_untouched": None if report["untouched"] is None
                       else number not in report["no_better_than_untouched"],
                       "form_not_answers": str(number) in report["form_not_answers"]})
        print(points[-1], flush=True)
    every = {record.number: record for record in search.records}
    form = {number: {"configuration": every[int(number)].config, "eval_loss": round(loss, 4)}
            for number, loss in report["form_not_answers"].items()}
    return {"metric": metric, "chance": report["chance"], "predicts": report["predicts"],
            "examples": report["examples"], "untouched_answer_accuracy": report["untouched"],
            "untouched_loss": report["untouched_loss"], "front": points, "form_not_answers": form,
            "nothing_learned": report["nothing_learned"], "chance_line": chance_line(report),
            "seconds": round(seconds, 1), "storage": storage}


if __name__ == "__main__":
    main()
