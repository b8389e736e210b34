"""Proposal latency: how long the controller takes to propose trial n, up to 200 trials, per sampler.

    .venv/bin/python bench/search_efficiency/latency.py [--trials 200] [--samplers known-cost tpe gp nsga2 random]
        [--repeatable]

The real controller, space (search_spaces/full.yaml on MiniLM's 6 layers: method x layers x size x bits x
learning rate, continuous parts included) and a SQLite study file, with each trial answered at once by a smooth
function of its configuration, so that only proposing is timed: ask, decode, the repeat check and the meta-device
cost check, per trial. Writes latency.json.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from replay import AnsweringExecutor  # noqa: E402

from autopeft.search.controller import SearchController  # noqa: E402
from autopeft.search.cost import predict_cost  # noqa: E402
from autopeft.search.samplers import make_sampler  # noqa: E402
from autopeft.search.space import SearchSpace  # noqa: E402
from autopeft.search.trial import TrialRequest, TrialResult  # noqa: E402
from autopeft.spec import SEARCH_SPACES_DIR, load_spec  # noqa: E402
from autopeft.store import storage  # noqa: E402


class InstantExecutor(AnsweringExecutor):
    """Answers each trial at once from its predicted cost: accuracy rises with log parameters, plus a learning
    rate optimum; the values only need to give the sampler something to model."""

    def __init__(self, spec):
        super().__init__()
        self.spec = spec

    def _answer(self, request: TrialRequest) -> TrialResult:
        params = predict_cost(self.spec.model, 2, request.config)["trainable_params"]
        accuracy = 0.6 + 0.05 * math.log10(max(params, 10)) - 0.02 * abs(math.log10(request.config["learning_rate"])
                                                                       + 3)
        return TrialResult(request.number, ok=True, measurements={
            "accuracy": accuracy, "trainable_params": params, "trainable_percent": 100 * params / 22_713_986})


class TimedController(SearchController):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.proposal_seconds: list[float] = []

    def _start_one(self) -> bool:
        start = time.perf_counter()
        try:
            return super()._start_one()
        finally:
            self.proposal_seconds.append(time.perf_counter() - start)


def measure(sampler: str, trials: int, folder: Path, repeatable: bool = False) -> dict:
    raw = yaml.safe_load((ROOT / "examples" / "sst2.yaml").read_text())
    raw |= {"sampler": sampler, "search_space": "full", "budget": {"trials": trials, "steps_per_trial": 1},
            "repeatable": repeatable,
            "storage": f"sqlite:///{folder / sampler}.db", "output_dir": str(folder / "runs")}
    for key in ("train", "eval"):
        raw["data"][key] = str(ROOT / "examples" / raw["data"][key])
    spec_file = folder / f"{sampler}.yaml"
    spec_file.write_text(yaml.safe_dump(raw))
    spec = load_spec(spec_file)
    study = storage.create_search(storage.open_storage(spec.storage), sampler, spec, make_sampler(spec))
    space = SearchSpace.from_dict(yaml.safe_load((SEARCH_SPACES_DIR / "full.yaml").read_text()), 6,
                                  hidden_size=384)
    controller = TimedController(study, spec, space, InstantExecutor(spec), train_size=4000)
    controller.run()
    seconds = controller.proposal_seconds
    last = seconds[-20:]
    return {"trials": len(seconds), "mean_s": statistics.mean(seconds), "last_20_mean_s": statistics.mean(last),
            "last_20_max_s": max(last), "at": {n: seconds[n - 1] for n in (50, 100, 150, 200) if n <= len(seconds)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--samplers", nargs="+", default=["known-cost", "tpe", "gp", "nsga2", "random"])
    parser.add_argument("--repeatable", action="store_true",
                        help="Measure with repeatable: true (results under 'SAMPLER, repeatable').")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="autopeft-latency-") as tmp:
        for sampler in args.samplers:
            label = f"{sampler}, repeatable" if args.repeatable else sampler
            results[label] = measure(sampler, args.trials, Path(tmp), args.repeatable)
            print(label, json.dumps(results[label]), flush=True)
    out = HERE / "latency.json"
    saved = json.loads(out.read_text())["results"] if out.is_file() else {}  # other samplers' earlier figures
    out.write_text(json.dumps({"settings": vars(args), "results": {**saved, **results}}, indent=2))


if __name__ == "__main__":
    main()
