"""The trial database: Optuna studies on SQLAlchemy storage, plus what autopeft keeps on each trial.

Only the controller writes. A search is an Optuna study whose user attributes hold the resolved spec (so resume
needs only the name) and the controller's identity (so a second controller cannot run the same search). Each
trial's user attributes hold its decoded configuration and every measurement, so views never re-derive them.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from autopeft.errors import UserError
from autopeft.spec import SearchSpec, normalise_storage_url, parse_spec

optuna.logging.set_verbosity(optuna.logging.WARNING)

# Trial attribute names, in one place because the controller writes them and every view reads them.
CONFIG = "config"
MEASUREMENTS = "measurements"
LOSS_CURVE = "loss_curve"
ADAPTER_DIR = "adapter_dir"
WORKER = "worker"
FAIL_REASON = "fail_reason"
REJECTED = "rejected"
INTERRUPTED = "interrupted"
RETRY_OF = "retry_of"
VIOLATIONS = "constraint_violations"

SPEC = "spec"
CONTROLLER = "controller"
FINISHED = "finished"
LABELS = "labels"  # label names in head order, needed to rebuild the base for an exported adapter


def open_storage(url: str) -> optuna.storages.RDBStorage:
    url = normalise_storage_url(url)
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        # Readers (the CLI, the dashboard) may hold the file briefly; wait instead of failing the search.
        kwargs = {"connect_args": {"timeout": 60}}
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
    except Exception as exc:  # bad URL, unreachable server, missing driver: all need the user's fix
        raise UserError(f"storage: cannot open {url}: {exc}") from None


def search_names(storage: optuna.storages.BaseStorage) -> list[str]:
    return [s.study_name for s in storage.get_all_studies()]


def load_search(storage: optuna.storages.BaseStorage, name: str) -> tuple[optuna.Study, SearchSpec]:
    if name not in search_names(storage):
        raise UserError(f"no search named {name!r} in this storage; `autopeft search list` shows the searches")
    study = optuna.load_study(study_name=name, storage=storage)
    return study, parse_spec(study.user_attrs[SPEC], f"stored spec of {name}")


def create_search(storage: optuna.storages.BaseStorage, name: str, spec: SearchSpec,
                  sampler: optuna.samplers.BaseSampler) -> optuna.Study:
    if name in search_names(storage):
        raise UserError(f"a search named {name!r} exists; resume it with `autopeft search resume {name}` "
                        "or pick another --name")
    study = optuna.create_study(study_name=name, storage=storage, sampler=sampler,
                                directions=[o.resolved_direction for o in spec.objectives])
    study.set_user_attr(SPEC, spec.to_stored())
    return study


def claim_controller(study: optuna.Study) -> None:
    """Refuse to drive a search that a live controller on this host is driving."""
    owner = study.user_attrs.get(CONTROLLER)
    if owner and owner["host"] == socket.gethostname() and owner["pid"] != os.getpid() and _alive(owner["pid"]):
        raise UserError(f"search {study.study_name!r} is being run by process {owner['pid']}; stop it first")
    study.set_user_attr(CONTROLLER, {"host": socket.gethostname(), "pid": os.getpid()})


def release_controller(study: optuna.Study) -> None:
    study.set_user_attr(CONTROLLER, None)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def counts_against_budget(trial: FrozenTrial) -> bool:
    """A trial spends budget once it trained to an end: rejected proposals and interrupted runs do not."""
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return trial.state == TrialState.FAIL and not trial.user_attrs.get(REJECTED) \
        and not trial.user_attrs.get(INTERRUPTED)


def requeue_interrupted(study: optuna.Study, reason: str) -> list[int]:
    """Mark RUNNING trials (their controller is gone) as failed-interrupted and queue their configurations again.

    The new trials keep the same parameters, so the sampler's choices are not lost and nothing runs twice:
    the old trial is closed before its replacement exists.
    """
    requeued = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study._storage.set_trial_user_attr(trial._trial_id, INTERRUPTED, True)
        study._storage.set_trial_user_attr(trial._trial_id, FAIL_REASON, reason)
        study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
        if not trial.user_attrs.get(REJECTED) and trial.params:
            study.enqueue_trial(trial.params, user_attrs={RETRY_OF: trial.number})
        requeued.append(trial.number)
    return requeued


@dataclass
class TrialRecord:
    """One trial as the views see it."""

    number: int
    state: str
    config: dict[str, Any]
    values: dict[str, float]
    measurements: dict[str, float]
    fail_reason: str | None
    adapter_dir: str | None
    feasible: bool
    loss_curve: list[list[float]] = field(default_factory=list)
    worker: str = ""
    duration_s: float | None = None
    retry_of: int | None = None
    pareto: bool = False

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def trial_records(study: optuna.Study, spec: SearchSpec) -> list[TrialRecord]:
    records = []
    names = spec.objective_names
    for trial in study.get_trials(deepcopy=False):
        attrs = trial.user_attrs
        state = trial.state.name
        if attrs.get(REJECTED):
            state = "REJECTED"
        elif attrs.get(INTERRUPTED):
            state = "INTERRUPTED"
        elif trial.state == TrialState.WAITING:
            state = "QUEUED"
        duration = None
        if trial.datetime_start and trial.datetime_complete:
            duration = (trial.datetime_complete - trial.datetime_start).total_seconds()
        records.append(TrialRecord(
            number=trial.number,
            state=state,
            config=attrs.get(CONFIG, {}),
            values=dict(zip(names, trial.values)) if trial.values else {},
            measurements=attrs.get(MEASUREMENTS, {}),
            fail_reason=attrs.get(FAIL_REASON),
            adapter_dir=attrs.get(ADAPTER_DIR),
            feasible=all(v <= 0 for v in attrs.get(VIOLATIONS, [])),
            loss_curve=attrs.get(LOSS_CURVE, []),
            worker=attrs.get(WORKER, ""),
            duration_s=duration,
            retry_of=attrs.get(RETRY_OF),
        ))
    return records
