"""Terminal views of searches and trials: the Pareto table, the search list, one search's trials."""

from __future__ import annotations

from typing import Any

import optuna
from rich.table import Table

from autopeft import storage
from autopeft.chance import ChanceLevel, not_above_chance
from autopeft.objectives import MEASUREMENTS
from autopeft.pareto import pareto_front
from autopeft.spec import SearchSpec
from autopeft.storage import TrialRecord


def format_value(name: str, value: float | None) -> str:
    if value is None:
        return "-"
    unit = MEASUREMENTS[name].unit if name in MEASUREMENTS else ""
    if unit in ("fraction", "coefficient", "squared target units"):
        return f"{value:.4f}"
    if unit in ("parameters", "bytes"):
        return f"{int(value):,}"
    return f"{value:.2f}"


_ABBREVIATIONS = {"query": "q", "key": "k", "value": "v", "attention_output": "o", "ffn_up": "up",
                  "ffn_down": "down"}
_SHOWN_OPTIONS = ("r", "bottleneck", "prefix_length", "sparsity", "bits")


def layer_ranges(layers: list[int]) -> str:
    """[0, 1, 2, 5] -> '0-2,5'."""
    parts: list[str] = []
    for layer in sorted(layers):
        if parts and _last(parts[-1]) == layer - 1:
            start = parts[-1].split("-")[0]
            parts[-1] = f"{start}-{layer}"
        else:
            parts.append(str(layer))
    return ",".join(parts)


def _last(part: str) -> int:
    return int(part.split("-")[-1])


def describe_config(config: dict[str, Any]) -> str:
    """A short one-line summary, e.g. 'lora r=8 q+v layers 0-5 lr 1e-03'."""
    method = config.get("method", "?")
    options = config.get(method, {})
    parts = [method]
    parts += [f"{key}={options[key]}" for key in _SHOWN_OPTIONS if key in options]
    if "target_modules" in options:
        parts.append("+".join(_ABBREVIATIONS.get(m, m) for m in options["target_modules"]))
    if "layers" in config:
        parts.append(f"layers {layer_ranges(config['layers'])}")
    if "learning_rate" in config:
        parts.append(f"lr {config['learning_rate']:.1e}")
    return " ".join(parts)


def front_table(records: list[TrialRecord], spec: SearchSpec, title: str = "Pareto front") -> Table:
    table = Table(title=title)
    table.add_column("trial", justify="right")
    names = spec.objective_names
    for name in names:
        arrow = "↑" if dict(zip(names, spec.objectives))[name].resolved_direction == "maximize" else "↓"
        table.add_column(f"{name} {arrow}", justify="right")
    table.add_column("configuration")
    for record in pareto_front(records, spec):
        table.add_row(str(record.number), *[format_value(n, record.values[n]) for n in names],
                      describe_config(record.config))
    return table


def search_summary(study_summary: optuna.Study, spec: SearchSpec) -> dict[str, Any]:
    records = storage.trial_records(study_summary, spec)
    by_state: dict[str, int] = {}
    baselines = [r for r in records if r.baseline]
    records = [r for r in records if not r.baseline]  # reference points, not the search's trials
    for record in records:
        by_state[record.state] = by_state.get(record.state, 0) + 1
    metric = spec.task_metric
    scores = [r.measurements[metric] for r in records if r.state == "COMPLETE" and metric in r.measurements]
    searched = [t for t in study_summary.get_trials(deepcopy=False) if not t.user_attrs.get(storage.BASELINE)]
    starts = [t.datetime_start for t in searched if t.datetime_start]
    ends = [t.datetime_complete for t in searched if t.datetime_complete]
    attrs = study_summary.user_attrs
    controller = attrs.get(storage.CONTROLLER)
    if attrs.get(storage.FINISHED):
        state = "finished"
    elif storage.any_controller_running(study_summary):
        state = "running"
    elif controller:
        state = "interrupted"
    else:
        state = "stopped"
    return {
        "name": study_summary.study_name,
        "state": state,
        "budget": spec.budget.trials,
        "complete": by_state.get("COMPLETE", 0),
        "running": by_state.get("RUNNING", 0),
        "failed": by_state.get("FAIL", 0),
        "pruned": by_state.get("PRUNED", 0),
        "rejected": by_state.get("REJECTED", 0),
        "interrupted": by_state.get("INTERRUPTED", 0),
        "baselines": len(baselines),
        "metric": metric,
        "best": (max if spec.task_metric_direction == "maximize" else min)(scores) if scores else None,
        "elapsed_s": (max(ends) - min(starts)).total_seconds() if starts and ends else None,
    }


def chance_report(study: optuna.Study, records: list[TrialRecord], spec: SearchSpec) -> dict[str, Any] | None:
    """The search's chance level on its task metric and the front points not clearly above it (autopeft/chance.py),
    or None for a search stored without one."""
    level = ChanceLevel.from_json(study.user_attrs.get(storage.CHANCE))
    metric = spec.task_metric
    if level is None or metric not in level.metrics:
        return None
    trials = sum(1 for r in records if r.state == "COMPLETE" and not r.baseline)
    front = {r.number: r.values[metric] for r in records if r.pareto and metric in r.values}
    if spec.task_metric_direction == "maximize":
        doubtful = not_above_chance(front, level, metric, trials)
    else:
        doubtful = []  # no noise model for a minimised metric (mse)
    margin = level.margin(metric, trials)
    return {"metric": metric, "chance": level.metrics[metric], "predicts": level.predicts,
            "examples": level.examples, "margin": margin, "trials": trials, "not_above_chance": doubtful}


def chance_line(report: dict[str, Any]) -> str:
    """The chance report in one or two sentences, for ``search show``."""
    text = (f"Chance: {report['metric']} {report['chance']:.4f} ({report['predicts']}, {report['examples']:,} "
            "eval examples).")
    if report["margin"] is None:
        return text
    bar = report["chance"] + report["margin"]
    if not report["not_above_chance"]:
        return text + f" Every front point is clearly above it (> {bar:.4f} after {report['trials']} trials)."
    points = ", ".join(str(n) for n in report["not_above_chance"])
    return text + (f" Front points within noise of it (< {bar:.4f} after {report['trials']} trials): {points}; "
                   "they may be luck, not learning: retrain them with `autopeft confirm` before trusting them.")


def confirmation_table(records: list[TrialRecord], spec: SearchSpec, title: str = "Confirmed trials") -> Table:
    """Trials retrained with more seeds (``autopeft confirm``): the searched value beside mean ± std."""
    table = Table(title=title)
    for column in ("trial", "seeds", "steps"):
        table.add_column(column, justify="right")
    names = [spec.task_metric] + [n for n in spec.objective_names if n != spec.task_metric]
    for name in names:
        table.add_column(f"{name} searched", justify="right")
        table.add_column(f"{name} mean ± std", justify="right")
    table.add_column("configuration")
    for record in records:
        confirmation = record.confirmation
        if not confirmation:
            continue
        cells = [str(record.number), f"{confirmation['succeeded']}/{len(confirmation['seeds'])}",
                 str(confirmation.get("steps") or "-")]
        for name in names:
            mean, std = confirmation["mean"].get(name), confirmation["std"].get(name)
            searched = record.values.get(name, record.measurements.get(name))
            cells += [format_value(name, searched),
                      "-" if mean is None else f"{format_value(name, mean)} ± {format_value(name, std)}"]
        table.add_row(*cells, describe_config(record.config))
    return table
