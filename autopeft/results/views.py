"""Terminal views of searches and trials: the Pareto table, the search list, one search's trials."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna
from rich.table import Table

from autopeft.objectives import MEASUREMENTS
from autopeft.results.noise import ADVICE, NoiseReport, assess
from autopeft.results.pareto import pareto_front
from autopeft.spec import SearchSpec
from autopeft.store import storage
from autopeft.store.storage import TrialRecord


def format_value(name: str, value: float | None) -> str:
    if value is None:
        return "-"
    unit = MEASUREMENTS[name].unit if name in MEASUREMENTS else ""
    # task metrics to four places: two trials' losses or accuracies often differ only in the third
    if unit in ("fraction", "coefficient", "squared target units", "nats"):
        return f"{value:.4f}"
    if unit in ("parameters", "bytes"):
        return f"{int(value):,}"
    return f"{value:.2f}"


_ABBREVIATIONS = {"query": "q", "key": "k", "value": "v", "attention_output": "o", "ffn_up": "up",
                  "ffn_down": "down"}


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


class _Options:
    """A method's option block as its description reads it. Whatever the description does not read is still shown
    (``key=value``): a summary must tell two configurations apart, also when a method gains an option that its
    description has not learnt yet."""

    def __init__(self, options: dict[str, Any]):
        self._options = options
        self._read: set[str] = set()

    def take(self, key: str, hidden: Any = None) -> Any:
        """The option's value, or None when it is absent or ``hidden`` (the value the method uses when the option
        is absent: showing it would only lengthen every summary)."""
        self._read.add(key)
        value = self._options.get(key)
        return None if value is None or value == hidden else value

    def unread(self) -> list[str]:
        return [_plain(key, value) for key, value in self._options.items() if key not in self._read]


def _plain(key: str, value: Any) -> str:
    """Any option, readably: the fallback for what no description reads."""
    if isinstance(value, dict):
        return " ".join(_plain(f"{key}.{k}", v) for k, v in value.items())
    if isinstance(value, list):
        return f"{key}={'+'.join(map(str, value))}"
    if isinstance(value, float):
        return f"{key}={value:.2g}"
    return f"{key}={value}"


def _named(label: str, value: Any) -> list[str]:
    return [] if value is None else [f"{label}={value}"]


def _modules(options: _Options) -> list[str]:
    """Target modules as 'q+k+v+o'; absent, the method's default modules (not repeated here)."""
    roles = options.take("target_modules")
    return ["+".join(_ABBREVIATIONS.get(m, m) for m in roles)] if roles else []


def _per_layer(sizes: dict[Any, Any]) -> str:
    """{2: 16, 4: 16, 5: 4} -> '16@2,4;4@5': each size with the layers that have it (keys may be strings once
    the configuration has been through JSON storage)."""
    layers_of: dict[Any, list[int]] = {}
    for layer, size in sizes.items():
        layers_of.setdefault(size, []).append(int(layer))
    return ";".join(f"{size}@{layer_ranges(layers)}" for size, layers in layers_of.items())


def _lora(options: _Options) -> list[str]:
    """LoRA and DoRA, e.g. 'r=8 q+k+v+o'; the options of the LoRA literature only where set off their defaults."""
    ranks = options.take("layer_ranks")
    parts = _named("r", options.take("r")) + ([f"layer_ranks={_per_layer(ranks)}"] if ranks else [])
    parts += _modules(options)
    parts += _named("alpha", options.take("alpha")) + _named("alpha_over_r", options.take("alpha_over_r", 2.0))
    parts += _named("dropout", options.take("dropout", 0.0)) + _named("init", options.take("init", "default"))
    parts += _named("corda_method", options.take("corda_method", "ipm"))
    parts += ["rslora"] if options.take("use_rslora", False) else []
    return parts


def _adalora(options: _Options) -> list[str]:
    return (_named("init_r", options.take("init_r")) + _named("target_r", options.take("target_r"))
            + _modules(options) + _named("alpha", options.take("alpha")))


def _low_rank(options: _Options) -> list[str]:
    """LoHa, LoKr, VeRA: a rank and modules."""
    return (_named("r", options.take("r")) + _modules(options)
            + _named("alpha_over_r", options.take("alpha_over_r", 2.0)))


def _bottleneck(options: _Options) -> list[str]:
    """Houlsby, Pfeiffer and the parallel adapter (whose scaling defaults to 4)."""
    return (_named("bottleneck", options.take("bottleneck"))
            + _named("non_linearity", options.take("non_linearity", "relu"))
            + _named("scaling", options.take("scaling", 4.0)))


def _prefix(options: _Options) -> list[str]:
    return _named("length", options.take("prefix_length")) + (
        ["reparameterized"] if options.take("reparameterize", False) else [])


def _autopeft(options: _Options) -> list[str]:
    """The AutoPEFT union, e.g. 'serial=6 parallel=3': the parts switched on (size 0 is off, as in the method)."""
    sizes = [("serial", options.take("serial")), ("parallel", options.take("parallel")),
             ("prefix", options.take("prefix_length"))]
    return [f"{label}={size}" for label, size in sizes if size]


def _mam(options: _Options) -> list[str]:
    return (_named("prefix", options.take("prefix_length")) + _named("bottleneck", options.take("bottleneck"))
            + _named("scaling", options.take("scaling", 4.0)))


def _unipelt(options: _Options) -> list[str]:
    return (_named("r", options.take("r")) + _named("prefix", options.take("prefix_length"))
            + _named("bottleneck", options.take("bottleneck")))


def _sparse(options: _Options) -> list[str]:
    """e.g. 'density=0.13% selection=random q+v': the density as a percentage, to two significant figures."""
    density = options.take("density")
    return (([f"density={float(density) * 100:.2g}%"] if density is not None else [])
            + _named("selection", options.take("selection")) + _modules(options))


def _prompt(options: _Options) -> list[str]:
    return _named("tokens", options.take("num_virtual_tokens"))


def _nothing(options: _Options) -> list[str]:
    """Methods with no options of their own (BitFit, LayerNorm tuning, partial and full fine-tuning)."""
    return []


@dataclass(frozen=True)
class _Description:
    """How one method reads in a summary: its options, and whether its ``layers`` mean anything (prompt tuning's
    tokens enter at the input and full fine-tuning trains everything, so a drawn placement changes nothing)."""

    options: Callable[[_Options], list[str]]
    placed: bool = True


_DESCRIPTIONS: dict[str, _Description] = {
    "lora": _Description(_lora), "dora": _Description(_lora), "adalora": _Description(_adalora),
    "loha": _Description(_low_rank), "lokr": _Description(_low_rank), "vera": _Description(_low_rank),
    "ia3": _Description(_modules), "prompt": _Description(_prompt, placed=False),
    "houlsby": _Description(_bottleneck), "pfeiffer": _Description(_bottleneck),
    "parallel": _Description(_bottleneck), "prefix": _Description(_prefix), "autopeft": _Description(_autopeft),
    "mam": _Description(_mam), "unipelt": _Description(_unipelt), "sparse": _Description(_sparse),
    "bitfit": _Description(_nothing), "ln_tuning": _Description(_nothing), "partial": _Description(_nothing),
    "full": _Description(_nothing, placed=False),
}
_OWN_KEYS = ("method", "layers", "learning_rate", "base_bits")  # the top-level keys the summary reads itself


def describe_config(config: dict[str, Any]) -> str:
    """A short one-line summary that tells configurations apart, e.g. 'lora r=8 q+k+v+o layers 2,4-5 lr 1.1e-03'
    or 'autopeft serial=6 parallel=3 layers 0-5 lr 1.0e-03' or 'prompt tokens=20 lr 3.0e-03 4-bit base'.

    Each method's options are read by its entry in ``_DESCRIPTIONS``; options at the value the method takes when
    they are absent are left out, anything unread is shown as ``key=value``. No ``layers`` means every layer.
    """
    method = config.get("method", "?")
    description = _DESCRIPTIONS.get(method, _Description(_nothing))
    block = config.get(method)
    options = _Options(block if isinstance(block, dict) else {})
    parts = [str(method), *description.options(options), *options.unread()]
    if "layers" in config and description.placed:
        parts.append(f"layers {layer_ranges(config['layers']) or 'none'}")  # none: a rejected point
    if "learning_rate" in config:
        parts.append(f"lr {config['learning_rate']:.1e}")
    if config.get("base_bits", 16) != 16:
        parts.append(f"{config['base_bits']}-bit base")
    parts += [_plain(key, value) for key, value in config.items() if key not in (*_OWN_KEYS, method)]
    return " ".join(parts)


def front_table(records: list[TrialRecord], spec: SearchSpec, title: str = "Pareto front",
                noise: NoiseReport | None = None) -> Table:
    """The front, best task metric first; with the search's ``noise`` report, a column saying which points are
    within noise of chance and which a cheaper point matches."""
    table = Table(title=title)
    table.add_column("trial", justify="right")
    names = spec.objective_names
    for name in names:
        arrow = "↑" if dict(zip(names, spec.objectives))[name].resolved_direction == "maximize" else "↓"
        table.add_column(f"{name} {arrow}", justify="right")
    if noise is not None:
        table.add_column("noise")
    table.add_column("configuration")
    for record in pareto_front(records, spec):
        cells = [str(record.number), *[format_value(n, record.values[n]) for n in names]]
        if noise is not None:
            cells.append(noise_note(noise, record.number))
        table.add_row(*cells, describe_config(record.config))
    return table


def front_or_why_none(records: list[TrialRecord], spec: SearchSpec, study: optuna.Study, title: str = "Pareto front",
                      noise: NoiseReport | None = None) -> Table | str:
    """The front's table, or where the search has no front point, one sentence saying why: an empty table with
    its headers reads like a display fault, and a search the probe stopped never trained a trial to put there."""
    table = front_table(records, spec, title=title, noise=noise)
    return table if table.row_count else f"{title}: none — {why_no_front(study)}"


def why_no_front(study: optuna.Study) -> str:
    """Why a search has no front point, in one sentence: the probe stopped it, or none of its trials has completed
    within its constraints (yet, or at all: failed and infeasible trials are not on a front)."""
    if probe_stopped(study.user_attrs.get(storage.PROBE)):
        return f"{PROBE_STOPPED} before it trained a trial (the probe's runs are not the front)."
    return "no trial of the search has completed within its constraints."


def noise_note(noise: NoiseReport, number: int) -> str:
    """One front point against the noise, in a few words."""
    notes = []
    test = noise.tests.get(number)
    seeds = f" ({test.seeds} new seeds)" if test is not None and test.method == "confirmed" else ""
    if noise.is_at_chance(number):
        notes.append(f"at chance{seeds}")
    elif test is not None:
        notes.append(f"above chance{seeds}" + (", just: confirm it" if test.near_bar else ""))
    if number in noise.matched_by:
        notes.append(f"≈ trial {noise.matched_by[number]} (cheaper)")
    return ", ".join(notes) or "untested"


def search_summary(study_summary: optuna.Study, spec: SearchSpec, records: list[TrialRecord] | None = None,
                   noise: NoiseReport | None | bool = False) -> dict[str, Any]:
    """State, progress, best value and the front against chance. ``records`` and ``noise`` (None: no chance level
    stored): what the caller has already read and assessed, so that it is not done twice."""
    records = storage.trial_records(study_summary, spec) if records is None else list(records)
    by_state: dict[str, int] = {}
    baselines = [r for r in records if r.baseline]
    probes = [r for r in records if r.probe]
    records = [r for r in records if not r.reference]  # reference points, not the search's trials
    for record in records:
        by_state[record.state] = by_state.get(record.state, 0) + 1
    metric = spec.task_metric
    scores = [r.measurements[metric] for r in records if r.state == "COMPLETE" and metric in r.measurements]
    searched = [t for t in study_summary.get_trials(deepcopy=False) if not storage.is_reference(t)]
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
        "probe_runs": len(probes),
        "probe_stopped": probe_stopped(attrs.get(storage.PROBE)),
        **_against_chance(assess(study_summary, records + baselines, spec) if noise is False else noise),
        "wall_clock": attrs.get(storage.WALL_CLOCK),
    }


def _against_chance(noise: NoiseReport | None) -> dict[str, Any]:
    """``front_vs_chance`` and, for a decoder whose front learned nothing above chance, ``form_only``: whether some
    front point's responses' loss still fell clearly below the untouched model's (the form learned, not the
    answers)."""
    verdict = _front_vs_chance(noise)
    return {"front_vs_chance": verdict, "form_only": verdict == "none" and bool(noise.form_not_answers)}


def _front_vs_chance(noise: NoiseReport | None) -> str | None:
    """The whole front against chance in one word: above, partly (some points within noise), none (nothing
    learned); None where it cannot be told (no chance level stored, or no front yet)."""
    if noise is None or not noise.front or not noise.tests:
        return None
    if noise.nothing_learned:
        return "none"
    return "partly" if noise.at_chance else "above"


def counted(number: int, noun: str) -> str:
    """``1 trial``, ``6 trials``: a count in words a reader would write (a one-trial search said "1 trials")."""
    return f"{number:,} {noun}{'' if number == 1 else 's'}"


def chance_line(report: dict[str, Any]) -> str:
    """The noise report in plain sentences: where the front stands against chance, and what to try when it does
    not clear it."""
    text = f"Chance: {report['metric']} {report['chance']:.4f} ({report['predicts']}, {report['examples']:,} " \
           "eval examples)."
    tests = report["tests"]
    if report["nothing_learned"]:
        text += (f" NO CONFIGURATION LEARNED THE TASK: every front point is within noise of chance after "
                 f"{counted(report['trials'], 'trial')}, so this front is noise, not a result. Try {ADVICE}.")
        for sentence in (untouched_sentence(report), unanswered_sentence(report)):
            text += f" {sentence}" if sentence else ""
        return text
    doubtful = report["not_above_chance"]
    if doubtful:
        bars = ", ".join(_doubt(n, tests[str(n)], report) for n in doubtful)
        retrain = "" if all(tests[str(n)]["method"] == "confirmed" for n in doubtful) else (
            "; they may be luck, not learning: retrain them with `autopeft confirm` before trusting them")
        text += f" Front points within noise of it after {counted(report['trials'], 'trial')}: {bars}{retrain}."
    elif tests and not report.get("near_bar"):
        beyond = "above" if report["maximize"] else "below"  # a loss clears its chance level by being lower
        text += f" Every tested front point is clearly {beyond} it ({counted(report['trials'], 'trial')})."
    for sentence in (retrained_sentence(report), near_bar_sentence(report), untouched_sentence(report),
                     unanswered_sentence(report)):
        text += f" {sentence}" if sentence else ""
    matched = report["matched_within_noise"]
    if matched:
        pairs = ", ".join(f"{n} by {q}" for n, q in matched.items())
        text += f" Matched within noise by a cheaper front point (paired bootstrap): {pairs}."
    return text


def _doubt(number: int, test: dict[str, Any], report: dict[str, Any]) -> str:
    """One doubtful front point for the chance line. A point that scores chance itself (a constant prediction,
    whose permutation null has no spread, so its bar is chance exactly) is said to be so: "needs > 0.5092" beside
    a chance of 0.5092 reads as a margin of zero."""
    if test["value"] == report["chance"] == test["bar"]:
        return f"{number} (scores chance itself)"
    needs = f"needs {'>' if report['maximize'] else '<'} {test['bar']:.4f}"
    if test["method"] == "confirmed":
        return f"{number} (retrained: {test['value']:.4f} over {test['seeds']} new seeds, {needs})"
    return f"{number} ({needs})"


def retrained_sentence(report: dict[str, Any]) -> str | None:
    """The front points whose verdict comes from new seeds and that held above chance, in one sentence (those
    that did not are among the points within noise)."""
    held = [(n, t) for n, t in report.get("confirmed", {}).items() if t["above"]]
    if not held:
        return None
    return ("Retrained with new seeds and still above chance (their mean, by a 5% margin of a mean): "
            + ", ".join(f"{n} ({t['value']:.4f} over {t['seeds']} seeds)" for n, t in held) + ".")


def untouched_sentence(report: dict[str, Any]) -> str | None:
    """A decoder scored by its answers against the model before training (the zero-shot row): its score, and the
    front points not clearly better than it; None where the search has no such reference."""
    untouched = report.get("untouched")
    if untouched is None:
        return None
    text = f"The untouched model (no adapter trained) scores {report['metric']} {untouched:.4f}"
    same = report.get("no_better_than_untouched") or []
    if not same:
        text += "; every front point answers clearly better (paired bootstrap)."
    else:
        text += (f"; front points not clearly better than it (paired bootstrap): {', '.join(map(str, same))}: "
                 "training did not improve on the model as it was.")
    form = form_sentence(report)
    return text + (f" {form}" if form else "")


def form_sentence(report: dict[str, Any]) -> str | None:
    """The front points whose answers did not improve although their responses' loss fell clearly below the
    untouched model's: what they learned, and what may carry it to the answers; None where there are none."""
    form = report.get("form_not_answers") or {}
    if not form:
        return None
    losses = ", ".join(f"{n} ({loss:.4f})" for n, loss in form.items())
    return (f"{'Trials' if report['nothing_learned'] else 'Front points'} whose answers do not clearly beat both "
            f"chance and the untouched model, though their "
            f"gold responses' loss fell clearly below its {report['untouched_loss']:.4f} (paired test): {losses}: "
            "training taught the responses' form, not the answers; more steps, more training records or a larger "
            "model may carry it to the answers.")


def unanswered_sentence(report: dict[str, Any]) -> str | None:
    """The front points (and the untouched model) at least half of whose generated responses stated none of the
    task's answers: their score counts those as wrong, so it reads the answers' form as much as the task; with the
    fix where the answers are a closed set (``answer_scoring: options``). None where every point answered."""
    points = report.get("unanswered") or {}
    untouched = report.get("untouched_unanswered")
    if not points and untouched is None:
        return None
    records = report["answer_records"]
    said = [f"{n} ({count} of {records})" for n, count in points.items()]
    if untouched is not None:
        said.append(f"the untouched model ({untouched} of {records})")
    text = (f"Responses that state none of the task's answers, so count as wrong: {', '.join(said)}; the score "
            "says as much about the answers' wording as about the task.")
    closed = report.get("closed_answers")
    if closed:
        shown = ", ".join(closed[:5]) + (", ..." if len(closed) > 5 else "")
        text += (f" The answers are a closed set ({shown}): data.answer_scoring: options reads the likelier one "
                 "where the records state it, without generating (README, Decoders).")
    else:
        text += " More steps or training records teach the records' way of stating the answer."
    return text


def near_bar_sentence(report: dict[str, Any]) -> str | None:
    """The front points that clear chance on one seed by less than one standard deviation of noise, with the
    command that settles them; None when there are none."""
    near = report.get("near_bar") or []
    if not near:
        return None
    tests = report["tests"]
    points = ", ".join(f"{n} ({tests[str(n)]['value']:.4f}, bar {tests[str(n)]['bar']:.4f})" for n in near)
    return (f"Above chance by less than one standard deviation of noise, on one seed: {points}; as likely a "
            f"false alarm as not: `autopeft confirm SEARCH --trials "
            f"{','.join(map(str, near))}` retrains {'them' if len(near) > 1 else 'it'} (automatic after a search "
            "unless budget.confirm_near_chance is 0).")


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


def probe_line(study: optuna.Study) -> str | None:
    """The learnability probe's decision in one sentence (autopeft/search/probe.py); None for a search without one."""
    return probe_sentence(study.user_attrs.get(storage.PROBE))


PROBE_STOPPED = "nothing learnable: the probe stopped the search"  # what every list of searches says of one


def probe_stopped(probe: dict[str, Any] | None) -> bool:
    """Whether the learnability probe found nothing learnable and so stopped the search before its budget."""
    return bool(probe) and probe.get("chosen") is None


def probe_sentence(probe: dict[str, Any] | None) -> str | None:
    """:func:`probe_line` from the stored decision itself (the dashboard reads it without Optuna)."""
    if not probe:
        return None
    runs = sum(len(rung["results"]) + sum("again" in r for r in rung["results"].values()) for rung in probe["rungs"])
    ladder = ", ".join(str(rung["steps"]) for rung in probe["rungs"])
    if probe["chosen"] is None:
        return (f"Fidelity: the learnability probe found nothing learnable ({probe['reason']}; {runs} runs at "
                f"{ladder} steps, {probe['seconds']:.0f} s).")
    return (f"Fidelity: {probe['chosen']} steps per trial, chosen by the learnability probe ({probe['reason']}; "
            f"{runs} runs at {ladder} steps, {probe['seconds']:.0f} s).")


def probe_cleared_line(study: optuna.Study, metric: str) -> str | None:
    """Where the search learned nothing but the probe's references did at the chosen fidelity: say which did, so
    "nothing learned" is read as "the space did not find it in these trials", not "the task cannot be learned"."""
    probe = study.user_attrs.get(storage.PROBE)
    if not probe or probe.get("chosen") is None:
        return None
    rung = next((r for r in probe["rungs"] if r["steps"] == probe["chosen"]), None)
    from autopeft.search.probe import learned

    cleared = {name: r for name, r in (rung or {}).get("results", {}).items() if learned(r)}
    if not cleared:
        return None
    which = ", ".join(f"{name} {r[metric]:.4f} (bar {r['bar']:.4f})" for name, r in cleared.items())
    return (f"The probe's {which} cleared chance at {probe['chosen']} steps; the searched configurations did not. "
            "Try more trials (search resume --trials N), or more steps per trial.")

