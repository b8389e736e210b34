"""Executors run trials somewhere and hand back results; the controller does not know where.

``RayExecutor`` keeps one long-lived actor per parallel slot (each loads the base model once) and shares the
tokenised data through Ray's object store. ``LocalExecutor`` runs trials one by one in this process: the same
worker code, for debugging and for tests that need no cluster. A replay back-end for search benchmarks can
implement the same three methods.

Each executor also owns the search's rung board (autopeft/search/rung_board.py) and hands it to every trial with rungs,
so trials running at the same time judge each other at a rung as they go.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Protocol

from autopeft.errors import UserError
from autopeft.plugins import Shipment, shipment
from autopeft.search.rung_board import Board, RayRungBoard, RungBoard
from autopeft.search.trial import TrialRequest, TrialResult
from autopeft.spec import SearchSpec
from autopeft.tasks.data import TaskData

log = logging.getLogger(__name__)


class _DefaultTokenAuthNotice(logging.Filter):
    """Ray (2.60) turns on token authentication for every local cluster that ``ray.init`` starts and says so at
    WARNING on every run ("Token authentication is enabled for this Ray cluster. Set RAY_AUTH_MODE=disabled to opt
    out ..."), advice that is not ours to act on for the private cluster a search starts. Only that notice is
    dropped: the logger's other messages (a missing token, authentication turned off) still show. A filter, not
    ``RAY_AUTH_MODE``: the mode is a security setting, and the filter leaves it as Ray chooses it, for a private
    cluster and for one joined through ``ray_address`` alike."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Token authentication is enabled for this Ray cluster.")


logging.getLogger("ray._private.authentication.authentication_token_setup").addFilter(_DefaultTokenAuthNotice())


def plugins_for(spec: SearchSpec) -> Shipment:
    """What every worker is handed of the plugins: this process's run-time registrations (a Ray worker never ran
    the register calls) and the user's metrics the spec measures."""
    return shipment(o.name for o in [*spec.objectives, *spec.constraints])


def with_board(request: TrialRequest, board: Board) -> TrialRequest:
    """The request with the executor's rung board in its rung plan (a request without rungs is left as it is)."""
    if request.rungs is None:
        return request
    return dataclasses.replace(request, rungs=dataclasses.replace(request.rungs, board=board))


class Executor(Protocol):
    capacity: int

    def submit(self, request: TrialRequest) -> None: ...

    def wait(self) -> list[TrialResult]:
        """Block until at least one submitted trial has finished; return every finished one."""
        ...

    def running(self) -> int: ...

    def shutdown(self) -> None: ...


class LocalExecutor:
    """Runs each trial in this process when the controller waits for it."""

    def __init__(self, spec: SearchSpec, data: TaskData):
        from workers.worker import TrialWorker

        self.capacity = 1
        self._worker = TrialWorker(spec.model.model_dump(), data, threads=spec.workers.cpus_per_trial,
                                   device=spec.workers.device, plugins=plugins_for(spec))
        self._queue: list[TrialRequest] = []
        self._board = RungBoard()

    def submit(self, request: TrialRequest) -> None:
        self._queue.append(with_board(request, self._board))

    def wait(self) -> list[TrialResult]:
        return [self._worker.run(self._queue.pop(0))]

    def running(self) -> int:
        return len(self._queue)

    def shutdown(self) -> None:
        self._queue.clear()


def trial_gpus(spec: SearchSpec) -> float:
    """GPUs Ray reserves per trial: the spec's (fractions share a GPU between trials), else one on CUDA."""
    if spec.workers.gpus_per_trial is not None:
        return spec.workers.gpus_per_trial
    return 1 if spec.workers.device == "cuda" else 0


def death_cause(exc: Exception) -> str:
    """Why a Ray actor died, in one line: the line after Ray's fixed first line that says "because", without
    Ray's list of common causes."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    cause = next((line for line in lines if "because" in line), lines[0] if lines else "")
    return cause.split(" Some common causes")[0]


def node_died(cause: str) -> bool:
    """Ray's words for an actor lost with its node ("The actor died because its node has died. Node Id: ...")."""
    return "because its node has died" in cause


class RayExecutor:
    """One Ray actor per parallel slot; a crashed actor fails its trial and is replaced."""

    def __init__(self, spec: SearchSpec, data: TaskData):
        import ray

        from workers.worker import TrialWorker

        self._ray = ray
        workers = spec.workers
        self._started_ray = not ray.is_initialized()
        if self._started_ray:
            # The spec's address (or --ray-address) first, then RAY_ADDRESS; without either, a private local Ray.
            address = workers.ray_address or os.environ.get("RAY_ADDRESS")
            if address:
                ray.init(address=address, logging_level=logging.WARNING)
            else:
                # address="local": always a new private cluster. Without it, ray.init joins any cluster that
                # `ray start` runs on this machine (a service's, a colleague's) and refuses num_cpus there.
                ray.init(address="local", num_cpus=workers.parallel * workers.cpus_per_trial, include_dashboard=False,
                         object_store_memory=256 * 1024 * 1024, logging_level=logging.WARNING)
        self.capacity = workers.parallel
        resources = {"num_cpus": workers.cpus_per_trial, "num_gpus": trial_gpus(spec)}
        gpus = ray.cluster_resources().get("GPU", 0)
        if resources["num_gpus"] > gpus:  # else every actor waits for a GPU that never comes, the search for ever
            if self._started_ray:
                ray.shutdown()
            raise UserError(f"workers.device: each trial asks for {resources['num_gpus']:g} GPU and the Ray cluster "
                            f"has {gpus:g}; use device: auto or cpu, or a cluster with GPUs")
        self._actor_class = ray.remote(**resources)(TrialWorker)
        # The plugins travel by value (cloudpickle) with each actor's arguments: functions and classes defined in
        # a notebook or a script's __main__ reach processes that never ran the register calls.
        self._actor_args = (spec.model.model_dump(), ray.put(data), workers.cpus_per_trial, workers.device,
                            plugins_for(spec), True)  # own_process: an actor is its process's one tenant
        self._board = RayRungBoard(ray)
        self._idle = [self._new_actor() for _ in range(self.capacity)]
        self._pending: dict = {}  # object ref -> (actor, request)
        self._retried: set[int] = set()  # trials already run again after their node died

    def _new_actor(self):
        return self._actor_class.remote(*self._actor_args)

    def submit(self, request: TrialRequest) -> None:
        actor = self._idle.pop()
        request = with_board(request, self._board)
        self._pending[actor.run.remote(request)] = (actor, request)

    def wait(self) -> list[TrialResult]:
        """Results of finished trials. A trial whose node died is run again once on a new actor (the node's loss
        is not the trial's fault); a worker process that died on a live node fails its trial, since the trial
        itself may be what killed it (out of memory)."""
        ray = self._ray
        while True:
            # Wait in short slices: Python runs signal handlers (Ctrl-C, SIGTERM) only between them, and a trial
            # can take minutes.
            ready: list = []
            while not ready:
                ready, _ = ray.wait(list(self._pending), num_returns=len(self._pending), timeout=0.5)
            results = []
            for ref in ready:
                actor, request = self._pending.pop(ref)
                try:
                    results.append(ray.get(ref))
                    self._idle.append(actor)
                    continue
                except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as exc:
                    cause, kind = death_cause(exc), type(exc).__name__
                    # Unreachable, not dead: the connection to the actor's node broke (a node going down is
                    # often seen this way before Ray declares it dead); treated as the node's loss.
                    lost_node = node_died(cause) or isinstance(exc, ray.exceptions.ActorUnavailableError)
                ray.kill(actor)
                replacement = self._new_actor()
                if lost_node and request.number not in self._retried:
                    self._retried.add(request.number)
                    log.warning("trial %d: its node died or became unreachable (%s); running it again on a new "
                                "worker", request.number, cause)
                    self._pending[replacement.run.remote(request)] = (replacement, request)
                    continue
                reason = f"worker process died: {kind}: {cause}"
                log.warning("trial %d: %s; starting a new worker", request.number, reason)
                results.append(TrialResult(number=request.number, ok=False, fail_reason=reason))
                self._idle.append(replacement)
            if results or not self._pending:
                return results

    def running(self) -> int:
        return len(self._pending)

    def shutdown(self) -> None:
        for actor in self._idle + [a for a, _ in self._pending.values()]:
            self._ray.kill(actor)
        self._idle, self._pending = [], {}
        self._board.close(self._ray)
        if self._started_ray:
            self._ray.shutdown()


EXECUTORS = {"ray": RayExecutor, "local": LocalExecutor}
