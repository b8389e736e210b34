"""Standard configurations trained into a search, so "did the search beat the usual choices?" is in the data.

The points are the ones papers and practitioners reach for first (LoRA r=8 on query/value, a Pfeiffer adapter of
size 64, a prefix of 10, IA3, BitFit, full fine-tuning as the reference), with the learning rates of the methods
benchmark (``bench/methods``), in every layer. They run through the search's own workers at the search's fidelity
and are added to its study as finished trials (``optuna.trial.create_trial``; no parameters, since most of them lie
outside the search's space) marked ``baseline``: they spend none of the search's budget, never enter its Pareto
front, and the dashboard draws them as stars.

The comparison asks of each baseline whether a front trial matches or dominates it: at least its task metric
at no more trainable parameters.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import optuna
from optuna.trial import TrialState

from autopeft.errors import UserError
from autopeft.objectives import MEASUREMENTS
from autopeft.results.noise import NoiseReport
from autopeft.results.pareto import pareto_front
from autopeft.results.retrain import Run, run_all
from autopeft.results.untouched_model import remember_untouched
from autopeft.search.trial import TrialResult
from autopeft.spec import SearchSpec
from autopeft.store import storage
from autopeft.store.run_folder import run_folder
from autopeft.store.storage import TrialRecord

STANDARD: dict[str, dict[str, Any]] = {
    "lora-r8-qv": {"method": "lora", "lora": {"r": 8, "alpha_over_r": 2.0, "target_modules": ["query", "value"]},
                   "learning_rate": 1e-3},
    "pfeiffer-64": {"method": "pfeiffer", "pfeiffer": {"bottleneck": 64}, "learning_rate": 1e-3},
    "prefix-10": {"method": "prefix", "prefix": {"prefix_length": 10}, "learning_rate": 3e-3},
    "ia3": {"method": "ia3", "learning_rate": 3e-3},
    "bitfit": {"method": "bitfit", "learning_rate": 1e-3},
    "full": {"method": "full", "learning_rate": 5e-5},
}
COST = "trainable_params"


def chosen_names(only: Sequence[str]) -> list[str]:
    unknown = [name for name in only if name not in STANDARD]
    if unknown:
        raise UserError(f"--only: unknown baseline {unknown[0]!r}; one of {', '.join(STANDARD)}")
    return list(only) or list(STANDARD)


def trained_baselines(study: optuna.Study) -> set[str]:
    return {t.user_attrs[storage.BASELINE] for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.user_attrs.get(storage.BASELINE)}


def refusals(study: optuna.Study, spec: SearchSpec, names: Sequence[str]) -> dict[str, str]:
    """The named baselines that cannot be built on the search's model (BitFit on a model without biases), with
    the reason: the controller's own check before training, a build on a meta-device copy."""
    from autopeft.models.base import load_model_config, num_labels
    from autopeft.search.cost import predict_cost_for

    labels = study.user_attrs.get(storage.LABELS) or ["0", "1"]
    # outside the loop, so a model that cannot be loaded is an error, not every baseline "refused" for it
    model_config = copy.deepcopy(load_model_config(spec.model))
    model_config.num_labels = num_labels(spec.model.task, labels)
    refused = {}
    for name in names:
        try:
            predict_cost_for(model_config, spec.model.task, STANDARD[name],
                             trust_remote_code=spec.model.trust_remote_code)
        except (UserError, ValueError, TypeError, KeyError) as exc:
            refused[name] = str(exc) or type(exc).__name__
    return refused


def train_baselines(study: optuna.Study, spec: SearchSpec, names: Sequence[str], executor: str = "ray",
                    on_result: Callable[[Run, TrialResult], None] | None = None,
                    on_refused: Callable[[str, str], None] | None = None) -> list[str]:
    """Train the named baselines not yet in the study and add them as baseline trials; returns those trained.
    One that cannot be built on the model is not trained: ``on_refused`` hears its name and why. Each is stored
    as soon as it finishes, so the dashboard shows it then and an interrupted command keeps those it trained."""
    todo = [name for name in names if name not in trained_baselines(study)]
    for name, reason in refusals(study, spec, todo).items():
        todo.remove(name)
        if on_refused is not None:
            on_refused(name, reason)
    root = run_folder(spec.output_dir, study.study_name)
    runs = [Run(config=STANDARD[name], seed=spec.seed, output_dir=str(root / f"baseline-{name}")) for name in todo]

    def store(run: Run, result: TrialResult) -> None:
        remember_untouched(study, result)  # a search on eval_loss whose own trials all failed has none yet
        study.add_trial(_as_trial(spec, todo[result.number], result))  # numbered by position in runs
        if on_result is not None:
            on_result(run, result)

    if runs:
        run_all(spec, runs, executor=executor, on_result=store)
    return todo


def _as_trial(spec: SearchSpec, name: str, result: TrialResult) -> optuna.trial.FrozenTrial:
    return storage.finished_trial(spec, STANDARD[name], result, {storage.BASELINE: name})


def compare(records: list[TrialRecord], spec: SearchSpec,
            noise: NoiseReport | None = None) -> list[dict[str, Any]]:
    """Per baseline trial: its metric and cost, and the cheapest front trial with at least its metric at no more
    trainable parameters (None when the front has none), preferring one above chance.

    With the search's ``noise`` report, a front trial within noise of chance matches nothing: ``matched_by`` is
    then None and ``at_chance`` says that the baseline, the front trial or both learned nothing measurable, so
    "matched" never means "equally at chance"."""
    metric = spec.task_metric
    sign = 1.0 if MEASUREMENTS[metric].natural_direction == "maximize" else -1.0
    front = pareto_front(records, spec)
    rows = []
    for record in records:
        if not record.baseline or record.state != "COMPLETE":
            continue
        value, cost = record.measurements[metric], record.measurements[COST]
        covering = [r for r in front if sign * r.measurements[metric] >= sign * value
                    and r.measurements[COST] <= cost]
        # The cheapest covering point may be at chance while a dearer one, still within the baseline's cost, is
        # clearly above it: that one holds the baseline. Only when every covering point is at chance is the
        # nearest one reported, as at chance.
        learned = [r for r in covering if noise is None or not noise.is_at_chance(r.number)]
        best = min(learned or covering, key=lambda r: (r.measurements[COST], -sign * r.measurements[metric]),
                   default=None)
        at_chance = [] if noise is None else [
            side for side, number in (("baseline", record.number), ("front", None if best is None else best.number))
            if number is not None and noise.is_at_chance(number)]
        rows.append({"baseline": record.baseline, "trial": record.number, metric: value,
                     COST: cost, "feasible": record.feasible,
                     "matched_by": None if best is None or "front" in at_chance else best.number,
                     "nearest_front_trial": None if best is None else best.number,
                     f"front {metric}": None if best is None else best.measurements[metric],
                     f"front {COST}": None if best is None else best.measurements[COST],
                     "at_chance": at_chance})
    return rows
