"""What travels between the controller and a worker: a trial request out, a trial result back.

Plain dataclasses so they pickle through Ray unchanged and can be built by a replay back-end just as well.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class RungPlan:
    """Early stopping for one trial (autopeft/search/scheduler.py): the steps to evaluate at, the other trials'
    points at each of those steps as the database held them when the trial started, the objectives compared
    (+1 maximise, -1 minimise) and the reduction factor.

    ``board`` (autopeft/search/rung_board.py), set by the executor, adds the points that trials running alongside post
    while this one trains; ``known`` names the trials already in ``table``, so none is counted twice.
    """

    steps: tuple[int, ...]
    table: dict[int, list[dict[str, float]]]
    signs: dict[str, float]
    reduction_factor: float
    known: frozenset[int] = frozenset()
    board: Any = None


@dataclass(frozen=True)
class TrialRequest:
    number: int
    config: dict[str, Any]
    seed: int
    steps: int
    training: dict[str, Any]
    output_dir: str
    rungs: RungPlan | None = None


@dataclass
class TrialResult:
    number: int
    ok: bool
    measurements: dict[str, float] = field(default_factory=dict)
    fail_reason: str | None = None
    adapter_dir: str | None = None
    loss_curve: list[tuple[int, float]] = field(default_factory=list)
    worker: str = ""
    rung_points: list[tuple[int, dict[str, float]]] = field(default_factory=list)  # (step, point) per rung passed
    stopped_at: int | None = None  # the rung step where early stopping ended the trial
    execution: dict[str, Any] = field(default_factory=dict)  # how it ran: precision, frozen layers cached, ...
    predictions: dict[str, Any] = field(default_factory=dict)  # per eval example, encoded (store/predictions.py)
    # A decoder's base model evaluated as loaded, no adapter: its metrics, per-record predictions (with each
    # record's loss) and each record's response token count, what a trained adapter is read against
    # (autopeft/results/untouched_model.py); measured once per worker
    untouched: dict[str, Any] | None = None
