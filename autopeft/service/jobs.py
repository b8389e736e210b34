"""The service's actions on searches, as Ray jobs: launch, stop, resume, baselines, confirm, and their state.

Each action is a job whose entrypoint is the command line itself (``python -m autopeft.cli search run ...``), so a
search launched from the page or over HTTP runs the very code a shell runs, its trials on the cluster's workers.
Ray keeps the jobs (state, logs, start and end) and stops them; this module only names them: every job carries
metadata (search, action, who, when), by which the service finds a search's jobs again, also after a restart.

Stopping is Ray's ``stop_job``: SIGTERM to the entrypoint, which takes Ctrl-C's path (running trials closed as
interrupted, queued for resume), with ``RAY_JOB_STOP_WAIT_TIME_S`` to finish before Ray kills it.
"""

from __future__ import annotations

import secrets
import shlex
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

from autopeft.errors import UserError
from autopeft.service.admission import (
    ServiceConfig,
    admit,
    bundled_examples,
    check_name,
    read_spec_text,
    save_uploads,
    timestamped_name,
)
from autopeft.service.cluster import STOP_GRACE_S
from autopeft.store import storage

SEARCH, ACTION, BY, AT = "autopeft_search", "autopeft_action", "autopeft_launched_by", "autopeft_launched_at"
ACTIVE = ("PENDING", "RUNNING")
LOG_LINES = 60
AGENT_WAIT_S = 90  # how long a launch waits for a starting head's job agent


@dataclass
class SearchJob:
    """One job of a search, as Ray reports it."""

    submission_id: str
    search: str
    action: str  # run, resume, baselines, confirm
    status: str  # PENDING, RUNNING, STOPPED, SUCCEEDED, FAILED
    launched_by: str
    launched_at: str
    message: str = ""
    start_time: float | None = None  # seconds since the epoch
    end_time: float | None = None

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def listed_without_study(jobs: list[SearchJob]) -> bool:
    """Whether a name whose study is missing is still listed for its jobs (oldest first): while its latest job is
    creating the search, or failed or was stopped perhaps before it did. A latest job that succeeded made the study,
    so where that is gone the search was deleted (from a shell) and is not listed again."""
    return bool(jobs) and jobs[-1].status != "SUCCEEDED"


class SearchJobs:
    """Launch and manage searches on one Ray cluster's job server, storing into one database."""

    def __init__(self, config: ServiceConfig, client=None):
        from ray.job_submission import JobSubmissionClient

        self.config = config
        self.client = client or JobSubmissionClient(config.job_server)

    # -- launching -------------------------------------------------------------------------------------------------

    def launch(self, text: str, *, name: str | None = None, launched_by: str = "",
               uploads: dict[str, bytes] | None = None) -> SearchJob:
        """Admit a spec (YAML text, with the files it names) and start its search as a job."""
        raw = read_spec_text(text)
        name = check_name(name) if name else timestamped_name(str(raw.get("name") or "search"))
        with self._launching(name):
            self._refuse_if_active(name)
            self._refuse_if_taken(name)  # before the files are written: an existing search's resume reads them
            base = save_uploads(self.config, name, uploads) if uploads else None
            admitted = None
            try:
                admitted = admit(self.config, text, name=name, base_dir=base)
                return self._submit(name, "run", ["search", "run", str(admitted.spec_path), "--name", name],
                                    launched_by)
            except BaseException:
                # refused, or the cluster would not take the job: the files belong to no search, and a later
                # launch of the name must not find them
                if base is not None:
                    shutil.rmtree(base, ignore_errors=True)
                if admitted is not None:
                    admitted.spec_path.unlink(missing_ok=True)
                raise

    def launch_example(self, example: str, *, name: str | None = None, launched_by: str = "") -> SearchJob:
        """Start a bundled example (``sst2``: the README demo) in the service's database and folders."""
        examples = bundled_examples()
        if example not in examples:
            raise UserError(f"example: no {example!r}; one of {', '.join(examples)}")
        path = examples[example]
        text = path.read_text()
        name = check_name(name) if name else timestamped_name(str(read_spec_text(text).get("name") or example))
        with self._launching(name):
            self._refuse_if_active(name)
            admitted = admit(self.config, text, name=name, base_dir=path.parent, own_places=True)
            return self._submit(name, "run", ["search", "run", str(admitted.spec_path), "--name", name],
                                launched_by)

    def resume(self, name: str, *, trials: int | None = None, launched_by: str = "") -> SearchJob:
        """Go on with a stopped search (``trials`` raises its budget first)."""
        search = self._idle_search(name)
        if trials is not None and trials < 1:
            raise UserError("trials: at least 1")
        spent = storage.budget_spent(search.study.get_trials(deepcopy=False))
        if trials is not None and trials <= spent:
            # The command line refuses fewer (and more would train nothing); its job would fail after the 201.
            raise UserError(f"trials: {trials} is not above the {spent} trials {name!r} has spent; give more to go "
                            f"on (the budget is {search.spec.budget.trials})")
        if trials is None and search.summary["state"] == "finished":
            raise UserError(f"search {name!r} has finished its budget of {search.spec.budget.trials} trials; give "
                            "trials (a higher budget) to go on")
        args = ["search", "resume", name] + (["--trials", str(trials)] if trials else [])
        return self._submit(name, "resume", args, launched_by)

    def baselines(self, name: str, *, only: list[str] | None = None, launched_by: str = "") -> SearchJob:
        """Train the standard configurations into a search that is not running."""
        from autopeft.results.baselines import chosen_names

        self._idle_search(name)
        names = chosen_names(only or [])
        return self._submit(name, "baselines", ["baselines", name, "--only", ",".join(names)], launched_by)

    def confirm(self, name: str, *, picks: list[str] | None = None, seeds: int = 3,
                launched_by: str = "") -> SearchJob:
        """Retrain front points of a search that is not running with new seeds (default: the knee)."""
        from autopeft.results.pick import parse_pick

        search = self._idle_search(name)
        picks = picks or ["knee"]
        for pick in picks:
            parse_pick(pick, search.spec, flag="picks")
        if seeds < 1:
            raise UserError("seeds: at least 1")
        args = ["confirm", name, "--seeds", str(seeds)] + [a for p in picks for a in ("--pick", p)]
        return self._submit(name, "confirm", args, launched_by)

    # -- stopping --------------------------------------------------------------------------------------------------

    def stop(self, name: str) -> list[SearchJob]:
        """Stop a search's running jobs as Ctrl-C would: its running trials are queued for resume."""
        active = [job for job in self.jobs(name) if job.active]
        if not active:
            from autopeft.api import load_search

            summary = load_search(name, storage=self.config.storage_url).summary
            if summary["state"] == "running":
                raise UserError(f"search {name!r} runs from a shell, not as a job of this service; stop it there "
                                "(Ctrl-C, or kill -TERM its controller process)")
            raise UserError(f"search {name!r} has no running job to stop (it is {summary['state']})")
        for job in active:
            self.client.stop_job(job.submission_id)
        return active

    # -- deleting --------------------------------------------------------------------------------------------------

    def delete(self, name: str) -> dict[str, Any]:
        """Remove a search that is not running: its trials, its files (adapters, and the admitted spec and uploads
        this service keeps for it) and this service's records of its jobs, so neither the list nor a later launch of
        the name meets it again. Returns what was left in its run folder because no search wrote it."""
        import shutil

        from autopeft.api import delete_search

        check_name(name)
        self._idle_search(name)  # a name with no search is answered before a lock is taken
        with self._launching(name):  # not while a launch of the same name is being admitted
            self._idle_search(name)
            left = delete_search(name, storage=self.config.storage_url)
            (self.config.specs_dir / f"{name}.yaml").unlink(missing_ok=True)
            shutil.rmtree(self.config.uploads_dir / name, ignore_errors=True)
            for job in self.jobs(name):
                self.client.delete_job(job.submission_id)
        return {"deleted": name, "kept": [str(path) for path in left]}

    # -- reading ---------------------------------------------------------------------------------------------------

    def jobs(self, name: str | None = None) -> list[SearchJob]:
        """This service's jobs (of one search, or all), oldest first."""
        found = []
        for info in self.client.list_jobs():
            metadata = info.metadata or {}
            if SEARCH not in metadata or (name is not None and metadata[SEARCH] != name):
                continue
            found.append(SearchJob(
                submission_id=info.submission_id, search=metadata[SEARCH], action=metadata.get(ACTION, ""),
                status=str(getattr(info.status, "value", info.status)), launched_by=metadata.get(BY, ""),
                launched_at=metadata.get(AT, ""), message=info.message or "",
                start_time=None if info.start_time is None else info.start_time / 1000,
                end_time=None if info.end_time is None else info.end_time / 1000))
        return sorted(found, key=lambda job: (job.start_time or 0, job.submission_id))

    def logs(self, submission_id: str, lines: int = LOG_LINES) -> str:
        """The last ``lines`` lines the job printed (the command line's progress and closing summary)."""
        text = self.client.get_job_logs(submission_id)
        return "\n".join(text.splitlines()[-lines:])

    def searches(self) -> list[dict[str, Any]]:
        """Every search in the service's database, and every search a job is creating, with its latest job."""
        from autopeft.api import search_summaries

        by_search: dict[str, list[SearchJob]] = {}
        for job in self.jobs():  # oldest first, so each search's list is too
            by_search.setdefault(job.search, []).append(job)
        summaries = {s["name"]: s for s in _summaries(self.config.storage_url, search_summaries)}
        names = [*summaries, *(name for name, mine in by_search.items()
                               if name not in summaries and listed_without_study(mine))]
        rows = []
        for name in names:
            mine = by_search.get(name, [])
            latest = mine[-1] if mine else None
            rows.append({"name": name, "search": summaries.get(name),
                         "job": None if latest is None else latest.to_json(),
                         "launched_by": mine[0].launched_by if mine else "shell",
                         "launched_at": mine[0].launched_at if mine else None})
        return rows

    def status(self, name: str, log_lines: int = LOG_LINES) -> dict[str, Any]:
        """A search's state from its study, its jobs, and the latest job's log tail."""
        from autopeft.api import load_search

        jobs = self.jobs(name)
        try:
            summary = load_search(name, storage=self.config.storage_url).summary
        except UserError:
            if not jobs:
                raise UserError(f"no search named {name!r} in the service's database, and no job for one") from None
            summary = None  # the job has not created the search yet (or failed before it did)
        latest = jobs[-1] if jobs else None
        return {"name": name, "search": summary, "jobs": [job.to_json() for job in jobs],
                "launched_by": jobs[0].launched_by if jobs else "shell",
                "log": None if latest is None else self.logs(latest.submission_id, log_lines)}

    # -- helpers ---------------------------------------------------------------------------------------------------

    def _refuse_if_active(self, name: str) -> None:
        if any(job.active for job in self.jobs(name)):
            raise UserError(f"search {name!r} has a job running; wait for it or stop it first")

    def _launching(self, name: str):
        """One launch (or delete) at a time, across the service and the dashboards sharing its root: the checks,
        the files and the job's submission happen as one step, so two launches of one name in the same moment
        cannot both pass the checks and overwrite each other's spec. One lock for every name: a file per name
        was left behind by every refused launch and every delete of a name that does not exist."""
        from filelock import FileLock

        locks = self.config.root / "locks"
        locks.mkdir(parents=True, exist_ok=True)
        return FileLock(str(locks / "launching.lock"), timeout=300)

    def _refuse_if_taken(self, name: str) -> None:
        try:
            store = storage.open_storage(self.config.storage_url, create=False)
        except UserError:
            return  # no database file yet (nothing launched so far): every name is free, and none is created here
        storage.check_name_free(store, name)

    def _idle_search(self, name: str):
        """The search, when neither a job of this service nor a shell is running it."""
        from autopeft.api import load_search

        search = load_search(name, storage=self.config.storage_url)
        self._refuse_if_active(name)
        if search.summary["state"] == "running":
            raise UserError(f"search {name!r} is running (from a shell); wait for it or stop it first")
        return search

    def _submit(self, name: str, action: str, args: list[str], launched_by: str) -> SearchJob:
        """A job running ``python -m autopeft.cli ARGS --storage $AUTOPEFT_STORAGE`` on the cluster's head. The
        database URL travels in the job's environment, not its command line, which Ray shows to anyone who lists
        jobs."""
        entrypoint = " ".join(shlex.quote(part) for part in [sys.executable, "-m", "autopeft.cli", *args])
        entrypoint += ' --storage "$AUTOPEFT_STORAGE"'
        launched_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        metadata = {SEARCH: name, ACTION: action, BY: launched_by or "anonymous", AT: launched_at}
        submission_id = f"autopeft-{name}-{action}-{time.strftime('%Y%m%d%H%M%S')}-{secrets.token_hex(3)}"
        runtime_env = {"env_vars": {"AUTOPEFT_STORAGE": self.config.storage_url, "PYTHONUNBUFFERED": "1",
                                    "RAY_JOB_STOP_WAIT_TIME_S": str(STOP_GRACE_S)}}
        deadline = time.monotonic() + AGENT_WAIT_S
        while True:
            try:
                self.client.submit_job(entrypoint=entrypoint, submission_id=submission_id, metadata=metadata,
                                       runtime_env=runtime_env)
                break
            except RuntimeError as exc:
                # A fresh head answers before its job agent is up ("No available agent to submit job, please try
                # again later"): wait for it, as Ray asks.
                if "No available agent" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(1)
        return SearchJob(submission_id, name, action, "PENDING", metadata[BY], launched_at)


def _summaries(url: str, read) -> list[dict[str, Any]]:
    try:
        return read(url)
    except UserError:  # no database yet: nothing launched so far
        return []

