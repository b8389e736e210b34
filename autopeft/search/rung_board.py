"""The rung board: where trials running at the same time see each other's points at a rung.

A trial's rung plan carries the points the database held when it started. Trials dispatched together would
otherwise judge each other blind: with eight workers the first eight trials see nothing, and every later one
misses whatever its neighbours reached since. The executor therefore hands each trial a board for the life of the
search; a worker posts its point at every rung it reaches and reads its rivals' there before deciding, so early
stopping is asynchronous successive halving (as ASHA and MOASHA are) rather than a snapshot rule.

``RungBoard`` is the in-process board (the local executor's, and the state of the Ray actor); ``RayRungBoard``
is the same two calls through a Ray actor, so it pickles into a trial request and works from any node.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Protocol

from autopeft.search.scheduler import RungPoint

log = logging.getLogger(__name__)


class Board(Protocol):
    def post(self, number: int, step: int, point: RungPoint) -> None: ...

    def read(self, step: int) -> dict[int, RungPoint]: ...


class RungBoard:
    """Every trial's point at every rung it reached, keyed by trial number (a trial run again after its node died
    posts over its earlier point)."""

    def __init__(self) -> None:
        self._points: dict[int, dict[int, dict[str, float]]] = {}
        self._lock = threading.Lock()

    def post(self, number: int, step: int, point: RungPoint) -> None:
        with self._lock:
            self._points.setdefault(step, {})[number] = dict(point)

    def read(self, step: int) -> dict[int, RungPoint]:
        with self._lock:
            return dict(self._points.get(step, {}))


class RayRungBoard:
    """A ``RungBoard`` held by a Ray actor that takes no CPU (it only stores a few floats per rung).

    The actor is pinned to the controller's node, which the search cannot outlive anyway, so losing a worker node
    never takes the board with it. Should the board still be unreachable, a trial judges by its table alone (as
    before boards existed) rather than fail: early stopping is an economy, not a result."""

    def __init__(self, ray: Any) -> None:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        here = NodeAffinitySchedulingStrategy(node_id=ray.get_runtime_context().get_node_id(), soft=True)
        self._actor: Any = ray.remote(num_cpus=0, scheduling_strategy=here)(RungBoard).remote()

    def post(self, number: int, step: int, point: RungPoint) -> None:
        import ray

        try:
            ray.get(self._actor.post.remote(number, step, dict(point)), timeout=60)
        except (ray.exceptions.RayError, TimeoutError) as exc:
            log.warning("trial %d: the rung board is unreachable (%s); its point is not shared", number, exc)

    def read(self, step: int) -> dict[int, RungPoint]:
        import ray

        try:
            return ray.get(self._actor.read.remote(step), timeout=60)
        except (ray.exceptions.RayError, TimeoutError) as exc:
            log.warning("the rung board is unreachable (%s); judging by the recorded trials alone", exc)
            return {}

    def close(self, ray: Any) -> None:
        if self._actor is not None:
            ray.kill(self._actor)
            self._actor = None
