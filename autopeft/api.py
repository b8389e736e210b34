"""The Python API: start, resume and read searches from a notebook or a script.

One implementation with the command line, which is a thin layer over these functions: ``autopeft search run``
is :func:`run_search` with a rich progress bar, ``autopeft export`` is :meth:`Search.export`, and so on. The
names follow Optuna's (``optuna.create_study`` / ``optuna.load_study`` / ``study.trials_dataframe()``) so that
an Optuna user finds them where they expect::

    import autopeft

    search = autopeft.run_search("examples/sst2.yaml", trials=6)
    search.trials_dataframe()              # every trial, one row each
    best = search.pick("knee")[0]          # the knee of the front, never a point within noise of chance
    search.export("exported", picks=["knee"])

A spec can be a YAML file, a dict in the same shape, or a :class:`~autopeft.spec.SearchSpec`; data can be a
``datasets.DatasetDict`` or pandas frames passed in (``data=``), checked exactly as files are.
"""

from __future__ import annotations

import contextlib
import html
import json
import numbers
import os
import shutil
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from autopeft.arguments import checked_count, checked_executor
from autopeft.errors import AtChanceWarning, NotMergedWarning, SpecError, UserError
from autopeft.spec import (
    DEFAULT_STORAGE,
    STORAGE_VARIABLE,
    SearchSpec,
    WarmStartSource,
    normalise_storage_url,
    parse_spec,
    read_spec_file,
    resolve_spec,
    timestamped_name,
)
from autopeft.store.run_folder import DATA_FOLDER, PASSED_ROWS_NOTE, run_folder

if TYPE_CHECKING:
    import optuna
    import pandas as pd
    from torch import nn

    from autopeft.results.noise import NoiseReport
    from autopeft.results.responses import Prompt
    from autopeft.search.controller import Progress
    from autopeft.store.storage import TrialRecord

SpecLike = str | os.PathLike | Mapping[str, Any] | SearchSpec
Storage = str | os.PathLike | None  # a SQLAlchemy URL, or a SQLite file's path


def _storage_text(storage: Any) -> str | None:
    """``storage`` as a URL: a SQLAlchemy URL, or a ``pathlib.Path`` to a SQLite file (its URL)."""
    if storage is None or isinstance(storage, str):
        return storage
    if isinstance(storage, os.PathLike):
        return f"sqlite:///{Path(storage).resolve()}"
    raise UserError(f"storage: expected a database URL such as 'sqlite:///autopeft.db', or a SQLite file's path "
                    f"(got {type(storage).__name__})")


def default_storage() -> str:
    """The database searches are looked up in when none is named: $AUTOPEFT_STORAGE, else ./autopeft.db."""
    return os.environ.get(STORAGE_VARIABLE, DEFAULT_STORAGE)


class SearchInterrupted(KeyboardInterrupt):
    """Ctrl-C (or a notebook's interrupt) stopped a search: the trials it was running are queued for resume.

    A KeyboardInterrupt, so code that stops on Ctrl-C still stops; it carries what resuming needs."""

    def __init__(self, name: str, storage_url: str):
        from autopeft.store.storage import mask_url

        self.name, self.storage_url = name, storage_url
        super().__init__(f"search {name!r} interrupted; resume it with autopeft.resume_search({name!r}, "
                         f"storage={mask_url(storage_url)!r}) or: autopeft search resume {name} --storage "
                         f"{mask_url(storage_url)}")


class ProgressReporter(Protocol):
    """What a search tells its observer: once when it starts, then after every event of the controller."""

    def start(self, name: str, storage_url: str, spec: SearchSpec, budget: int) -> None: ...

    def __call__(self, event: Progress) -> None: ...

    def close(self) -> None: ...


class NotebookProgress:
    """A tqdm bar (``tqdm.auto``: a widget in Jupyter, text in a terminal) with the best task metric so far."""

    def __init__(self) -> None:
        self.metric, self.maximize = "", True
        self.best: float | None = None
        self.bar = None

    def start(self, name: str, storage_url: str, spec: SearchSpec, budget: int) -> None:
        # tqdm.auto draws a widget in Jupyter, which needs ipywidgets; without them it warns and falls back to text,
        # so take the text bar directly.
        try:
            import ipywidgets  # noqa: F401
            from tqdm.auto import tqdm
        except ImportError:
            from tqdm import tqdm

        self.metric, self.maximize = spec.task_metric, spec.task_metric_direction == "maximize"
        self.bar = tqdm(total=budget, desc=f"search {name}", unit="trial")

    def __call__(self, event: Progress) -> None:
        last = event.last
        if last is not None and last.ok:
            value = last.measurements.get(self.metric)
            if value is not None and (self.best is None or (value > self.best) == self.maximize):
                self.best = value
        self.bar.total = event.budget
        self.bar.n = event.finished
        best = "-" if self.best is None else f"{self.best:.4f}"
        self.bar.set_postfix_str(f"best {self.metric} {best}, running {event.running}", refresh=False)
        self.bar.refresh()
        if last is not None and not last.ok:
            self.bar.write(f"trial {last.number} failed: {last.fail_reason}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


Progressing = bool | ProgressReporter | Callable[["Progress"], None] | None


class _CallbackReporter:
    """A plain callable as a reporter: it gets the controller's events, and nothing at start or close."""

    def __init__(self, callback: Callable[[Progress], None]):
        self.callback = callback

    def start(self, name: str, storage_url: str, spec: SearchSpec, budget: int) -> None:
        pass

    def __call__(self, event: Progress) -> None:
        self.callback(event)

    def close(self) -> None:
        pass


def _reporter(progress: Progressing) -> ProgressReporter | None:
    if progress is True:
        return NotebookProgress()
    if not progress:
        return None
    if all(hasattr(progress, m) for m in ("start", "close")):
        return progress
    return _CallbackReporter(progress)


# ---------------------------------------------------------------------------------------------------------------
# Specs and data
# ---------------------------------------------------------------------------------------------------------------


def _raw_spec(spec: SpecLike) -> tuple[dict[str, Any], Path, str]:
    """(the spec as a mapping, the folder its relative paths are read from, its source for messages)."""
    if isinstance(spec, SearchSpec):
        return spec.model_dump(mode="json", exclude_unset=True), Path.cwd(), "<SearchSpec>"
    if isinstance(spec, Mapping):
        return dict(spec), Path.cwd(), "<dict>"
    if not isinstance(spec, (str, os.PathLike)):
        raise UserError(f"spec: expected a YAML file path, a dict or a SearchSpec, got {type(spec).__name__}")
    raw = read_spec_file(spec)
    if not isinstance(raw, dict):
        raise SpecError(str(spec), ["(top level): the spec must be a YAML mapping of fields"])
    return raw, Path(spec).resolve().parent, str(spec)


def resolve(spec: SpecLike, *, data: Any = None, name: str | None = None, base_dir: Path | None = None,
            source: str | None = None) -> tuple[SearchSpec, str]:
    """The validated, resolved spec (paths absolute, space inlined) and the search's name.

    With ``data``, the rows are written as parquet files into the search's output folder first, and the spec reads
    them like any files: the same checks, and workers, ``resume`` and ``export`` find them without the Python
    objects."""
    raw, spec_dir, read_from = _raw_spec(spec)
    source = source or read_from  # how errors name the spec: its file, or e.g. <dict>
    base_dir = base_dir or spec_dir  # else: the spec file's folder, or for a dict the working directory
    stem = raw.get("name") or (Path(source).stem if not source.startswith("<") else "search")
    name = name or timestamped_name(stem)
    if data is not None:
        # Beside the trials' adapters: output_dir is read from the working directory, as resolve_spec reads it.
        folder = run_folder(Path.cwd() / str(raw.get("output_dir", "runs")), name) / DATA_FOLDER
        options = _data_section(raw.get("data"))
        passed = _materialise_data(data, folder, str(options.get("label_column", "label")),
                                   held_out=options.get("eval_fraction") is not None)
        if options.get("label_values") is not None or options.get("label_columns") is not None or \
                not _is_classification(raw):
            passed.pop("label_values", None)  # the user's own order wins; other tasks read no classes
        raw["data"] = {**options, **passed}
    try:
        parsed = parse_spec(raw, source)
        resolved = resolve_spec(parsed, base_dir, source)
    except BaseException:
        if data is not None:
            remove_data(folder)  # written for a spec that was refused: it belongs to nothing
        raise
    if not raw.get("name"):
        resolved.name = stem  # a dict or SearchSpec has no file name to take it from
    return resolved, name


def _is_classification(raw: Mapping[str, Any]) -> bool:
    """Whether the spec's model is a classifier, multi-label too (the model section's task, or its default)."""
    from autopeft.spec import LABELLED_TASKS, ModelSpec

    model = raw.get("model")
    task = model.get("task") if isinstance(model, Mapping) else None
    return (task or ModelSpec.model_fields["task"].default) in LABELLED_TASKS


def _data_section(section: Any) -> dict[str, Any]:
    """The spec's data options without its sources, which the passed-in data replaces."""
    if section is None:
        return {}
    if not isinstance(section, Mapping):
        raise SpecError("<spec>", ["data: expected a mapping of data options (text_columns, label_column, ...)"])
    return {k: v for k, v in section.items() if k not in ("train", "eval", "dataset")}


def _split(data: Mapping[str, Any], names: Sequence[str]) -> tuple[str, Any]:
    """The first of ``names`` that ``data`` holds, and its rows."""
    key = next((n for n in names if n in data and data[n] is not None), None)
    if key is None:
        hold_out = "" if names[0] == "train" else (" or hold out part of the training rows with the spec's "
                                                   "data.eval_fraction: 0.2")
        raise UserError(f"data: no {names[0]!r} split among {sorted(data)}; pass data={{'train': ..., 'eval': ...}} "
                        f"(a DatasetDict with train and validation splits works too){hold_out}")
    return key, data[key]


def _as_frame(rows: Any, split: str) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """The rows as a DataFrame, and for a ``datasets.Dataset`` its class columns' names in its order."""
    import pandas as pd

    if isinstance(rows, pd.DataFrame):
        return rows.reset_index(drop=True), {}
    if hasattr(rows, "to_pandas") and hasattr(rows, "features"):  # a datasets.Dataset
        from autopeft.tasks.hf_datasets import dataset_frame

        return dataset_frame(rows)
    if isinstance(rows, (str, os.PathLike)):
        from autopeft.tasks.data import read_table

        return read_table(str(rows), split), {}
    raise UserError(f"data[{split!r}]: expected a datasets.Dataset, a pandas DataFrame or a file path, got "
                    f"{type(rows).__name__}")


MADE_FOLDER = "made"  # the passed-rows note's record of the outermost folder written to hold them


def _materialise_data(data: Any, folder: Path, label_column: str, held_out: bool = False) -> dict[str, Any]:
    """Write the passed-in splits as parquet files; returns the spec's ``train``/``eval`` fields for them, and
    ``label_values`` where the training rows are a ``datasets.Dataset`` whose label column is a class column
    (its names, in its order: the head's). ``held_out``: the spec holds out evaluation rows from the training
    rows (``data.eval_fraction``), so only ``train`` is read."""
    if not isinstance(data, Mapping):
        raise UserError(f"data: expected a mapping of splits such as {{'train': ..., 'eval': ...}} or a "
                        f"datasets.DatasetDict, got {type(data).__name__}")
    if folder.exists():
        # Another search's rows (a name reused): its resume, baselines and export read them, so never overwrite.
        raise UserError(f"data: {folder} already holds the data of a search of that name; choose another name")
    frames, keys, classes = {}, {}, {}
    splits = (("train", ("train",)), *(() if held_out else (("eval", ("eval", "validation", "test")),)))
    for field, names in splits:
        keys[field], rows = _split(data, names)
        frames[field], classes[field] = _as_frame(rows, keys[field])
        if frames[field].empty:
            raise UserError(f"data[{keys[field]!r}]: no rows; pass at least one example")
    made = next(p for p in reversed([folder, *folder.parents]) if not p.exists())  # what a refusal removes
    folder.mkdir(parents=True)
    for field, frame in frames.items():
        frame.to_parquet(folder / f"{field}.parquet", index=False)
    (folder / PASSED_ROWS_NOTE).write_text(json.dumps({**keys, MADE_FOLDER: str(made)}))
    fields: dict[str, Any] = {field: str(folder / f"{field}.parquet") for field in frames}
    if label_column in classes["train"]:
        fields["label_values"] = classes["train"][label_column]
    return fields


def remove_data(folder: Path) -> None:
    """Remove the rows written for a search that was refused, and the folders written to hold them (the search's,
    and ``output_dir`` where it was made for them) while nothing else is in them."""
    made = folder.parent
    with contextlib.suppress(OSError, ValueError, KeyError):
        made = Path(json.loads((folder / PASSED_ROWS_NOTE).read_text())[MADE_FOLDER])
    shutil.rmtree(folder, ignore_errors=True)
    for parent in folder.parents:
        if parent != made and made not in parent.parents:
            break  # above what was made for the rows: the user's
        try:
            parent.rmdir()
        except OSError:
            break  # something else is in it


# ---------------------------------------------------------------------------------------------------------------
# Starting, resuming, joining
# ---------------------------------------------------------------------------------------------------------------


def run_search(spec: SpecLike, *, name: str | None = None, storage: Storage = None, trials: int | None = None,
               data: Any = None, warm_start: str | Sequence[str] | None = None, executor: str = "ray",
               ray_address: str | None = None, progress: Progressing = True) -> Search:
    """Start a new search and run it to its budget; returns it finished.

    ``spec``: a YAML file, a dict of the same fields, or a SearchSpec. ``storage`` overrides the spec's database;
    ``trials`` its budget. ``data``: ``{"train": ..., "eval": ...}`` (datasets, pandas frames or files) or a
    DatasetDict with train and validation splits, used in place of the spec's files. ``warm_start``: earlier
    searches (``"NAME"`` or ``"NAME@URL"``, a list or comma-separated) to start from, in place of the spec's
    ``warm_start`` (their fronts are trained first; see autopeft/search/warm_start.py). ``executor``: ``"ray"``
    (parallel workers; ``ray_address`` joins a cluster) or ``"local"`` (one trial at a time in this process).
    ``progress``: True for a progress bar, False for none, or a callable that receives each event.
    Ctrl-C raises :class:`SearchInterrupted` after queueing the running trials for :func:`resume_search`."""
    trials, executor = checked_count("trials", trials), checked_executor(executor)
    resolved, name = resolve(spec, data=data, name=name)
    if warm_start is not None:
        resolved.warm_start = warm_start_sources(warm_start)
    url = normalise_storage_url(_storage_text(storage) or resolved.storage)
    # Imported once the spec is known good: the search pulls in torch, transformers and peft (seconds), and a
    # mistyped field should be answered at once.
    from autopeft.search.launch import start_search

    try:
        _run(_reporter(progress), name, url, resolved, trials or resolved.budget.trials, lambda on_progress:
             start_search(resolved, name=name, storage_url=url, trials=trials, executor=executor,
                          ray_address=ray_address, on_progress=on_progress))
    except UserError:
        if data is not None and name not in _names_if_any(url):
            remove_data(Path(resolved.data.train).parent)  # refused before the search was created
        raise
    return load_search(name, storage=url)


def warm_start_sources(value: str | Sequence[str]) -> list[WarmStartSource]:
    """``"a,b@sqlite:///x.db"`` or ``["a", "b@URL"]`` as sources, their database URLs made absolute."""
    from autopeft.search.warm_start import parse_source

    texts = value.split(",") if isinstance(value, str) else list(value)
    sources = [parse_source(text) for text in texts if text.strip()]
    for source in sources:
        if source.storage:
            source.storage = normalise_storage_url(source.storage)
    return sources


def _names_if_any(url: str) -> list[str]:
    """The searches in the database; none when it does not exist yet."""
    from autopeft.store import storage as store

    try:
        return store.search_names(store.open_storage(url, create=False))
    except UserError:  # no database file yet
        return []


def resume_search(name: str, *, storage: Storage = None, trials: int | None = None, executor: str = "ray",
                  ray_address: str | None = None, progress: Progressing = True) -> Search:
    """Finish a stopped or interrupted search's budget (``trials`` raises it first, so a finished search goes
    on); the trials it left running are proposed again."""
    trials, executor = checked_count("trials", trials), checked_executor(executor)
    url = normalise_storage_url(_storage_text(storage) or default_storage())
    search = load_search(name, storage=url)
    from autopeft.search.launch import resume_search as resume  # after the search is found (see run_search)

    _run(_reporter(progress), name, url, search.spec, trials or search.spec.budget.trials, lambda on_progress: resume(
        name, storage_url=url, executor=executor, ray_address=ray_address, on_progress=on_progress, trials=trials))
    return load_search(name, storage=url)  # read again: the budget may have been raised, the steps chosen


def join_search(name: str, *, storage: Storage = None, executor: str = "ray", ray_address: str | None = None,
                progress: Progressing = True) -> Search:
    """Add a controller with its own workers to a running search (PostgreSQL): they share its budget."""
    executor = checked_executor(executor)
    url = normalise_storage_url(_storage_text(storage) or default_storage())
    search = load_search(name, storage=url)
    from autopeft.search.launch import join_search as join  # after the search is found (see run_search)

    _run(_reporter(progress), name, url, search.spec, search.spec.budget.trials, lambda on_progress: join(
        name, storage_url=url, executor=executor, ray_address=ray_address, on_progress=on_progress))
    return load_search(name, storage=url)


def _run(reporter: ProgressReporter | None, name: str, url: str, spec: SearchSpec, budget: int,
         action: Callable[[Callable | None], Any]) -> None:
    """Run ``action`` (a start, resume or join) with the reporter around it; Ctrl-C becomes SearchInterrupted."""
    if reporter is not None:
        reporter.start(name, url, spec, budget)
    try:
        action(reporter)
    except KeyboardInterrupt as exc:
        if isinstance(exc, SearchInterrupted):
            raise
        raise SearchInterrupted(name, url) from None
    finally:
        if reporter is not None:
            reporter.close()


# ---------------------------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------------------------


def load_search(name: str, *, storage: Storage = None) -> Search:
    """A stored search by name (finished, running or stopped), to read, pick from and export."""
    from autopeft.store import storage as store

    url = normalise_storage_url(_storage_text(storage) or default_storage())
    study, spec = store.load_search(store.open_storage(url, create=False), name)
    return Search(name, url, study, spec)


def delete_search(name: str, *, storage: Storage = None, files: bool = True, force: bool = False) -> list[Path]:
    """Remove a search and its trials from the database and, with ``files``, what it wrote to disk (its trials'
    adapters, probe runs, baselines and passed-in rows, under ``output_dir/NAME``); returns what was left in that
    folder because the search did not write it. Refused while the search runs (``force``: its controller's machine
    is gone). Searches warm-started from it keep their trials and their record of where those came from."""
    from autopeft.store import storage as store
    from autopeft.store.run_folder import remove_run_folder

    spec = store.delete_search(store.open_storage(normalise_storage_url(_storage_text(storage) or default_storage()),
                                                  create=False), name, force=force)
    if not files or spec is None:
        return []
    return remove_run_folder(run_folder(spec.output_dir, name))


def search_summaries(storage: Storage = None) -> list[dict[str, Any]]:
    """Every search in the database: state, progress, best task metric, front against chance."""
    from autopeft.results.views import search_summary
    from autopeft.store import storage as store

    backend = store.open_storage(normalise_storage_url(_storage_text(storage) or default_storage()), create=False)
    return [search_summary(*store.load_search(backend, name))
            for name in store.search_names(backend, stored_only=True)]


def list_searches(storage: Storage = None) -> pd.DataFrame:
    """:func:`search_summaries` as a DataFrame, one row per search."""
    import pandas as pd

    return pd.DataFrame(search_summaries(storage))


def _pick_texts(picks: Any, field: str) -> list[str]:
    """Picks as texts: one, several, or a list of them (``pick(["knee", "max:accuracy"])`` reads as it looks)."""
    if isinstance(picks, str):
        return [picks]
    flat = [q for p in picks for q in (p if isinstance(p, (list, tuple)) else [p])] \
        if isinstance(picks, (list, tuple)) else [picks]
    for given in flat:
        if not isinstance(given, str):
            raise UserError(f"{field}: expected picks such as 'knee', 'max:accuracy' or 'budget:trainable_params"
                            f"<=100000' (got {type(given).__name__}); a trial is chosen by pick, not by record")
    return flat


def _export_folder(out_dir: Any) -> Path:
    """The folder an export goes to: named, and not a file (the copy failed half-way on a file's path)."""
    if not isinstance(out_dir, (str, os.PathLike)) or not str(out_dir).strip():
        raise UserError(f"out_dir: name the folder to export to, e.g. 'exports/demo' (got {out_dir!r})")
    folder = Path(out_dir)
    for part in (folder, *folder.parents):
        if part.exists() and not part.is_dir():
            raise UserError(f"out_dir: {part} is a file; name a folder to export to")
    return folder


@dataclass
class Search:
    """One search in its database: its spec, its trials, its front and what the noise model says of it.

    Reads are snapshots: call :meth:`refresh` to see a running search's newest trials."""

    name: str
    storage_url: str
    study: optuna.Study
    spec: SearchSpec

    def __post_init__(self) -> None:
        self._records: list[TrialRecord] | None = None
        self._noise: tuple[NoiseReport | None] | None = None
        # the last trial asked to generate or predict, its model and tokenizer, kept for the next call: loading a
        # decoder takes seconds, a response a second
        self._loaded: tuple[int, nn.Module, Any] | None = None

    def __repr__(self) -> str:
        summary = self.summary
        return (f"Search({self.name!r}, {summary['state']}, {summary['complete']}/{summary['budget']} trials, "
                f"front of {len(self.front)})")

    def refresh(self) -> Search:
        """Read the trials again (a running search adds them as they finish)."""
        self._records, self._noise = None, None
        return self

    @property
    def records(self) -> list[TrialRecord]:
        """Every trial as the views see it (baselines and probe runs included, marked ``reference``)."""
        if self._records is None:
            from autopeft.results.pareto import pareto_front
            from autopeft.store.storage import trial_records

            self._records = trial_records(self.study, self.spec)
            pareto_front(self._records, self.spec)  # marks record.pareto
        return self._records

    @property
    def front(self) -> list[TrialRecord]:
        """The Pareto-optimal feasible trials, in front order."""
        from autopeft.results.pareto import pareto_front

        return pareto_front(self.records, self.spec)

    @property
    def noise(self) -> NoiseReport | None:
        """Where the front stands against chance and which points a cheaper one matches within noise (None for
        a search stored without a chance level)."""
        if self._noise is None:
            from autopeft.results.noise import assess

            self._noise = (assess(self.study, self.records, self.spec),)
        return self._noise[0]

    @property
    def chance(self) -> dict[str, Any] | None:
        """The noise report as plain data: the chance level, each tested point's bar, ``nothing_learned``."""
        return None if self.noise is None else self.noise.to_json()

    @property
    def data_notes(self) -> list[str]:
        """What reading the data noted when the search started (or last resumed), as its notes said it: training
        records that would train nothing, empty texts, texts longer than ``data.max_length``, a label that holds
        most evaluation rows where accuracy is the metric."""
        from autopeft.store.storage import DATA_NOTES

        return list(self.study.user_attrs.get(DATA_NOTES, []))

    @property
    def summary(self) -> dict[str, Any]:
        """State, progress and best value, as ``autopeft search list`` shows them."""
        from autopeft.results.views import search_summary

        return search_summary(self.study, self.spec, self.records, self.noise)

    def trials_dataframe(self) -> pd.DataFrame:
        """One row per trial: state, objectives, every measurement, the configuration (in words and as a dict),
        front membership and the noise model's verdict, failure reasons."""
        import pandas as pd

        from autopeft.results.views import describe_config

        noise = self.noise
        rows = []
        for record in self.records:
            test = None if noise is None else noise.tests.get(record.number)
            rows.append({
                "trial": record.number,
                "state": record.state,
                "method": record.config.get("method"),
                **{name: record.values.get(name) for name in self.spec.objective_names},
                **{name: value for name, value in record.measurements.items()
                   if name not in self.spec.objective_names},
                "pareto": record.pareto,
                "feasible": record.feasible,
                "above_chance": None if test is None else test.above,
                "matched_within_noise_by": None if noise is None else noise.matched_by.get(record.number),
                "reference": record.baseline or (record.probe or {}).get("reference"),
                "configuration": describe_config(record.config) if record.config else "",
                "config": record.config,
                "fail_reason": record.fail_reason,
                "duration_s": record.duration_s,
                "adapter_dir": record.adapter_dir,
            })
        return pd.DataFrame(rows).set_index("trial") if rows else pd.DataFrame()

    def front_dataframe(self) -> pd.DataFrame:
        """:meth:`trials_dataframe`'s rows on the Pareto front."""
        frame = self.trials_dataframe()
        return frame[frame["pareto"]] if not frame.empty else frame

    def pick(self, *picks: str, include_chance: bool = False) -> list[TrialRecord]:
        """The front points the picks choose: ``"knee"``, ``"max:METRIC"``, ``"min:METRIC"``,
        ``"budget:METRIC<=X"`` (autopeft/results/pick.py). Points within noise of chance are never picked unless
        ``include_chance``, and a point a cheaper one matches within noise gives way to it."""
        from autopeft.results.pick import choose, parse_pick

        texts = _pick_texts(picks, "picks") or ["knee"]  # the knee: the usual want
        chosen = [parse_pick(p, self.spec, flag="pick") for p in texts]
        return choose(self.records, self.spec, chosen, self.noise, include_chance)

    def export(self, out_dir: str | os.PathLike, *, picks: str | Sequence[str] = (), merged: bool = False,
               include_chance: bool = False, flag: str = "picks") -> list[Path]:
        """Write the front (or the picked points, as :meth:`pick` reads them) as adapter folders their library
        loads, with summary.md/.csv; returns the folders written. ``merged`` also writes the base with the adapter
        folded in, where the method allows it. (``flag``: the option named in errors about a pick.)"""
        from autopeft.results.export import at_chance_message, export_front, not_merged_message
        from autopeft.results.pick import parse_pick

        chosen = [parse_pick(p, self.spec, flag=flag) for p in _pick_texts(picks, flag)]
        exported = export_front(self.study, self.spec, _export_folder(out_dir), merged=merged, picks=chosen,
                                include_chance=include_chance)
        message = at_chance_message(self.noise, [int(p.name.removeprefix("trial-")) for p in exported],
                                    self.spec.task_metric)
        if message:
            warnings.warn(message, AtChanceWarning, stacklevel=2)
        unmerged = not_merged_message(exported, merged)
        if unmerged:
            warnings.warn(unmerged, NotMergedWarning, stacklevel=2)
        return exported

    def baselines(self, only: Sequence[str] = (), *, executor: str = "ray", on_result: Callable | None = None,
                  on_refused: Callable[[str, str], None] | None = None) -> list[dict[str, Any]]:
        """Train the standard configurations (LoRA r8, Pfeiffer, prefix, IA3, BitFit, full) at the search's
        fidelity, outside its budget and front, and compare each with the front. One the model cannot take (BitFit
        where it has no biases) is not trained; ``on_refused`` hears its name and why."""
        from autopeft.results.baselines import chosen_names, compare, train_baselines

        executor = checked_executor(executor)
        names = chosen_names(list(only))
        train_baselines(self.study, self.spec, names, executor=executor, on_result=on_result, on_refused=on_refused)
        self.refresh()
        return [row for row in compare(self.records, self.spec, self.noise) if row["baseline"] in names]

    def confirm(self, trials: Sequence[int] = (), *, picks: Sequence[str] = (), near_chance: bool = False,
                seeds: int = 3, steps: int | None = None, executor: str = "ray", on_result: Callable | None = None,
                on_start: Callable[[list[TrialRecord]], None] | None = None) -> dict[int, dict[str, Any]]:
        """Retrain chosen trials (default: the whole front) with new seeds; store and return mean ± std per trial.
        ``near_chance``: the front points just above chance, as a search retrains them at its end. ``on_start``
        hears which trials were chosen, ``on_result`` each run as it finishes."""
        from autopeft.results.confirm import confirm_trials, near_chance_points, select

        seeds, steps = checked_count("seeds", seeds, allow_none=False), checked_count("steps", steps)
        executor = checked_executor(executor)
        if sum(map(bool, (trials, picks, near_chance))) > 1:
            raise UserError("trials, picks and near_chance: give one of them")
        if near_chance:
            noise = self.noise
            chosen = select(self.records, [] if noise is None else near_chance_points(noise))
            if not chosen:
                raise UserError(f"near_chance: no front point of search {self.name!r} is within one standard "
                                "deviation of noise above its chance bar, untested by new seeds")
        elif trials:
            chosen = select(self.records, list(trials))
        elif picks:
            # As pick chooses, except that a point within noise of chance may be confirmed: more seeds are how to
            # tell whether it is.
            chosen = self.pick(*picks, include_chance=True)
        else:
            chosen = self.front
        if not chosen:
            raise UserError(f"search {self.name!r} has no completed feasible trial to confirm yet")
        if on_start is not None:
            on_start(chosen)
        confirmations = confirm_trials(self.study, self.spec, chosen, seeds=seeds, steps=steps, executor=executor,
                                       on_result=on_result)
        self.refresh()
        return confirmations

    def load_model(self, trial: int | str | TrialRecord) -> nn.Module:
        """The base model with ``trial``'s trained adapter on it, ready for inference (its library's loader)."""
        from autopeft.results.predict import load_trial_model
        from autopeft.store.storage import LABELS

        number = self.trial_number(trial)
        record = next((r for r in self.records if r.number == number), None)
        if record is None:
            raise UserError(f"trial {number}: {self.name!r} has no such trial; `autopeft search show` lists them")
        return load_trial_model(self.spec, self.study.user_attrs.get(LABELS, []), record.adapter_dir, number)

    def generate(self, trial: int | str | TrialRecord, prompts: Prompt | Sequence[Prompt], *,
                 max_new_tokens: int = 128) -> str | list[str]:
        """A decoder search's ``trial`` answering new prompts: each an instruction (text, or ``{"instruction": ...,
        "input": ...}``), for a search on chat records a conversation (a list of messages, or text as the user's
        one message), for a search on plain
        text the text to continue; prompted as the search trained and evaluated it and decoded greedily to the end
        of sequence or ``max_new_tokens``. One prompt gives one response, a list a list
        (autopeft/results/responses.py). The trial's model stays loaded until another trial is asked."""
        from autopeft.results.responses import checked_prompts, prompt_form, respond

        listed, single = checked_prompts(self.spec, prompts, max_new_tokens)  # before the model is loaded
        model, tokenizer = self._trial_model(trial)
        responses = respond(model, tokenizer, listed, prompt_form(self.spec), max_new_tokens)
        return responses[0] if single else responses

    def predict(self, trial: int | str | TrialRecord, texts: Any, *, probabilities: bool = False) -> Any:
        """A classification or regression search's ``trial`` on new texts, read as the search read its evaluation
        rows (its tokenizer and ``data.max_length``, a pair as its tokenizer joins two texts, the head's pooling),
        so the same rows give the predictions stored with the trial (autopeft/results/predict.py).

        ``texts``: a text, for a search on pairs a ``(first, second)`` tuple, or a row as a mapping by the spec's
        text columns; or a list of those, or a DataFrame with those columns. Returns the label name (a regression:
        the number) for one input, a list for many; with ``probabilities`` each label's probability, a dict for one
        input and a DataFrame (a column per label, in head order) for many.

        A tagger (token-classification) takes a sentence (a text, split at whitespace), a list of them, a list of
        word lists, or a DataFrame with the words column, and returns each sentence's ``(word, tag)`` pairs (the
        tag None for a word past ``data.max_length`` tokens).

        A multiple-choice search takes a ``(question, [option, ...])`` tuple, a row by the spec's column names (its
        options as the data holds them), a list of those, or a DataFrame with those columns, and returns the option
        chosen for each question; with ``probabilities`` a dict of each option's probability."""
        from autopeft.results.predict import as_predictions, checked_rows, predict_rows, predict_tags
        from autopeft.store.storage import LABELS

        rows, single = checked_rows(self.spec, texts, probabilities)  # before the model is loaded
        model, tokenizer = self._trial_model(trial)
        if self.spec.model.task == "token-classification":
            tagged = predict_tags(model, tokenizer, self.spec, rows, list(self.study.user_attrs.get(LABELS, [])))
            return tagged[0] if single else tagged
        if self.spec.model.task == "multiple-choice":
            from autopeft.results.predict_choices import as_choices, option_probabilities

            return as_choices(option_probabilities(model, tokenizer, self.spec, rows), probabilities, single)
        outputs = predict_rows(model, tokenizer, self.spec, rows)
        predicted = as_predictions(outputs, self.spec, list(self.study.user_attrs.get(LABELS, [])), probabilities,
                                   single)
        import pandas as pd

        if probabilities and isinstance(texts, pd.DataFrame):
            predicted.index = texts.index  # a DataFrame's rows keep their labels: frame.join(probabilities) lines up
        return predicted

    def trial_number(self, trial: int | str | TrialRecord, *, include_chance: bool = False) -> int:
        """A trial named as a user names it: its number (also as text, from a command line or a request, or a numpy
        integer from a DataFrame's index), a record of this search, or a pick (``"knee"``, ``"max:accuracy"``,
        ...: the first point it chooses, as :meth:`pick`)."""
        if isinstance(trial, str):
            from autopeft.results.pick import choose, parse_pick

            if trial.isdigit():
                return int(trial)
            chosen = parse_pick(trial, self.spec, flag="trial", expected="a trial number (e.g. 0), or a pick: ")
            return choose(self.records, self.spec, [chosen], self.noise, include_chance)[0].number
        if isinstance(trial, numbers.Integral) and not isinstance(trial, bool):
            return int(trial)
        from autopeft.store.storage import TrialRecord

        if isinstance(trial, TrialRecord):
            own = next((r for r in self.records if r.number == trial.number), None)
            if own is None or own.adapter_dir != trial.adapter_dir:  # the same number in another search
                raise UserError(f"trial: that record is trial {trial.number} of another search, not of "
                                f"{self.name!r}; load that search, or give a trial number of this one")
            return trial.number
        hint = "; pick() gives a list: take one of its records, e.g. search.pick('knee')[0]" \
            if isinstance(trial, (list, tuple)) else ""
        raise UserError(f"trial: expected a trial number, a pick such as 'knee', or a record of this search (got "
                        f"{type(trial).__name__}){hint}")

    def _trial_model(self, trial: int | str | TrialRecord) -> tuple[nn.Module, Any]:
        """``trial``'s model and the search's tokenizer, loaded once and kept until another trial is asked."""
        from autopeft.models.base import load_tokenizer

        number = self.trial_number(trial)
        if self._loaded is None or self._loaded[0] != number:
            self._loaded = None  # the previous trial's model goes before the next one is loaded
            self._loaded = (number, self.load_model(number), load_tokenizer(self.spec.model))
        return self._loaded[1], self._loaded[2]

    def _repr_html_(self) -> str:
        """The front as a table in Jupyter, and below it the data notes (a search loaded later printed none)."""
        front = self.front_dataframe()
        columns = [*self.spec.objective_names, "above_chance", "configuration"]
        notes = "".join(f"<p><i>Data note:</i> {html.escape(note)}</p>" for note in self.data_notes)
        if front.empty:
            from autopeft.results.views import why_no_front

            return f"<p><b>{self.name}</b>: no front point — {html.escape(why_no_front(self.study))}</p>{notes}"
        table = front[[c for c in columns if c in front.columns]].to_html()
        return f"<p><b>{self.name}</b>: {self!r}</p>{table}{notes}"
