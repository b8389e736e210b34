"""Points of a search space drawn without a study: the candidates a sampler scores before it proposes one.

The space decides what a point is (conditional parameters, per-method variants, rules), so candidates are drawn
through ``SearchSpace.suggest`` itself, with a stand-in for ``optuna.Trial`` that draws each value at random and
remembers it. A point drawn this way has the parameters a real trial would get for it, so proposing it is a matter
of answering the real trial's draws with them. A *neighbour* keeps each value of a given point with a set
probability and redraws the rest, so a few of its parameters change and the conditional ones follow the space.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from autopeft.search.space import SearchSpace


def config_key(config: dict[str, Any]) -> str:
    """One string per configuration, equal for equal configurations (the controller's notion of a repeat)."""
    return json.dumps(config, sort_keys=True, separators=(",", ":"))


@dataclass
class Candidate:
    params: dict[str, Any]  # the sampler's parameter names -> values, as a trial drawing this point gets them
    config: dict[str, Any]
    costs: dict[str, float]  # the costs known before training
    # Set when the point is an early-stopped trial's configuration proposed again, to be trained to the end without
    # rungs (the number of that trial): a slow starter the rungs cut, that the model now believes in.
    finishes: int | None = None


class _DrawingTrial:
    """What ``SearchSpace.suggest`` needs of an ``optuna.Trial``: values drawn at random, or kept from ``base``."""

    def __init__(self, rng: np.random.Generator, base: dict[str, Any] | None = None, keep: float = 0.0):
        self.rng = rng
        self.base = base or {}
        self.keep = keep
        self.params: dict[str, Any] = {}

    def _kept(self, name: str, valid) -> tuple[bool, Any]:
        if name in self.base and valid(self.base[name]) and self.rng.random() < self.keep:
            return True, self.base[name]
        return False, None

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False, step: float | None = None):
        kept, value = self._kept(name, lambda v: low <= v <= high)
        if not kept:
            if log:
                value = math.exp(self.rng.uniform(math.log(low), math.log(high)))
            else:
                value = float(self.rng.uniform(low, high))
            value = min(max(value, low), high)
        self.params[name] = value
        return value

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1, log: bool = False):
        kept, value = self._kept(name, lambda v: low <= v <= high)
        if not kept and log:
            # Uniform in log space, as Optuna draws a log-scaled int: small ranks as likely per decade as large.
            # (A log-scaled int has low >= 1; each integer owns the half-widths around it.)
            drawn = math.exp(self.rng.uniform(math.log(low - 0.5), math.log(high + 0.5)))
            value = min(max(int(round(drawn)), low), high)
        elif not kept:
            value = low + step * int(self.rng.integers(0, (high - low) // step + 1))
        self.params[name] = value
        return value

    def suggest_categorical(self, name: str, choices: list[Any]):
        kept, value = self._kept(name, lambda v: v in choices)
        if not kept:
            value = choices[int(self.rng.integers(0, len(choices)))]
        self.params[name] = value
        return value


def draw(space: SearchSpace, rng: np.random.Generator, base: dict[str, Any] | None = None,
         keep: float = 0.0) -> tuple[dict[str, Any], dict[str, Any], str | None]:
    """(parameters, configuration, rejection) of one point: at random, or a neighbour of ``base`` (parameters)
    that keeps each of its values with probability ``keep``."""
    trial = _DrawingTrial(rng, base, keep)
    proposal = space.suggest(trial)  # type: ignore[arg-type]
    return trial.params, proposal.config, proposal.rejection
