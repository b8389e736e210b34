"""What a decoder trial costs with and without gold answers: the bundled BoolQ records searched as they are
(answer_accuracy: each eval record's response generated and read) and with their answer field removed (the
Alpaca form; eval_loss: one teacher-forced pass, nothing generated).

The same spec otherwise (examples/boolq-smollm2.yaml's decoder, records, eval rows and fidelity), the same seed so
the same configurations, one trial at a time on the local executor, both searches in this process one after the
other. Per side: each trial's measured `train_time_s` and `eval_time_s`, and the ratio of the evaluation times.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/decoders/without_answers.py [--trials 3] [--examples boolq math]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import autopeft  # noqa: E402

EXAMPLES = {"boolq": ROOT / "examples" / "boolq-smollm2.yaml", "math": ROOT / "examples" / "math-smollm2.yaml"}
OUT = Path(__file__).with_name("without_answers.json")


def spec_for(example: Path, work: Path, answers: bool, trials: int) -> dict:
    spec = yaml.safe_load(example.read_text())
    data = spec["data"]
    for split in ("train", "eval"):
        source = (example.parent / data[split]).resolve()
        if answers:
            data[split] = str(source)
        else:
            records = json.loads(source.read_text())
            for record in records:
                record.pop("answer", None)
            (work / f"{split}.json").write_text(json.dumps(records))
            data[split] = str(work / f"{split}.json")
    spec["objectives"][0] = {"name": "answer_accuracy" if answers else "eval_loss"}
    spec["budget"] = {**spec["budget"], "trials": trials, "wall_clock_minutes": None}
    spec["workers"] = {"parallel": 1, "cpus_per_trial": 2}
    spec["storage"] = f"sqlite:///{work / 'trials.db'}"
    spec["output_dir"] = str(work / "runs")
    return spec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--examples", nargs="+", choices=sorted(EXAMPLES), default=["boolq"])
    args = parser.parse_args()
    everything = json.loads(OUT.read_text()) if OUT.is_file() else {}
    for name in args.examples:
        everything[name] = measure(EXAMPLES[name], args.trials)
        OUT.write_text(json.dumps(everything, indent=2) + "\n")


def measure(example: Path, trials: int) -> dict:
    results = {"example": example.name, "cpu": cpu_name(), "trials": trials}
    for side, answers in (("with_answers", True), ("without_answers", False)):
        work = Path(tempfile.mkdtemp(prefix=f"autopeft-{side}-"))
        search = autopeft.run_search(spec_for(example, work, answers, trials), name=side, executor="local",
                                     progress=False)
        table = search.trials_dataframe()
        results[side] = {"train_time_s": table["train_time_s"].round(2).tolist(),
                         "eval_time_s": table["eval_time_s"].round(2).tolist(),
                         "configurations": table["configuration"].tolist()}
        print(side, results[side], flush=True)
    with_eval = sum(results["with_answers"]["eval_time_s"])
    without_eval = sum(results["without_answers"]["eval_time_s"])
    results["eval_time_ratio"] = round(with_eval / without_eval, 1)
    results["same_configurations"] = (results["with_answers"]["configurations"]
                                      == results["without_answers"]["configurations"])
    print(f"{example.name}: evaluation: {with_eval:.1f} s with answers, {without_eval:.1f} s without "
          f"({results['eval_time_ratio']}x); same configurations: {results['same_configurations']}")
    return results


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").is_file() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


if __name__ == "__main__":
    main()
