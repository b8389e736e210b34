"""A model of one measurement that is unknown before training (the task metric; time or memory), over configurations.

Inputs are read from the decoded configuration, not from the sampler's parameter names: ``learning_rate`` and
``learning_rate[partial]`` are one quantity to the model, a layer list is one switch per layer plus its length, and
each cost known before training enters as its log10, so what the size of an adapter says about its accuracy is
learnt once for every method. Numbers spanning a decade or more are taken on a log scale; every column is scaled to
[0, 1] over the points the encoder was fitted on (the candidates and the observed trials).

The regression is Optuna's Gaussian process (Matern 5/2 with a length scale per input, kernel parameters fitted by
maximum a posteriori with Optuna's priors, a learnt noise level): the same pieces as ``sampler: gp`` uses, kept
behind this module so that the rest of autopeft does not depend on Optuna's private ``_gp`` package. Trials still
running are added as if they had returned the model's own prediction (a "kriging believer"): their uncertainty
collapses, so parallel proposals spread out instead of piling onto one point.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from optuna._gp import gp as optuna_gp
from optuna._gp import prior as optuna_prior

Leaves = list[tuple[str, Any]]
FIDELITY = "@fidelity"  # the column holding the fraction of the steps a value was measured at
# Prior on the kernel parameters: Optuna's shapes, with weights chosen by the replay benchmark (see log_prior).
LENGTHSCALE_WEIGHT = 1.0
NOISE_RATE = 5.0


def log_prior(gpr: optuna_gp.GPRegressor) -> torch.Tensor:
    """Optuna's prior on the kernel parameters, with its weights as module settings: a trial's metric is noisy
    (seed to seed) and has cliffs (a learning rate too low leaves it at chance), which Optuna's default prior, made
    for smooth functions, fits with too little noise and too short length scales, so it is overconfident."""
    inverse = gpr.inverse_squared_lengthscales
    return (-(LENGTHSCALE_WEIGHT / inverse + LENGTHSCALE_WEIGHT * inverse).sum()
            + torch.log(gpr.kernel_scale) - gpr.kernel_scale
            + 0.1 * torch.log(gpr.noise_var) - NOISE_RATE * gpr.noise_var)


def leaves(config: dict[str, Any], known: dict[str, float], prefix: str = "") -> Leaves:
    """(column, raw value) pairs of a configuration and its known costs (costs as log10)."""
    found: Leaves = []
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            found += leaves(value, {}, name + ".")
        elif isinstance(value, list | tuple):
            found += [(f"{name}∋{item}", 1.0) for item in value]
            found.append((f"{name}#", float(len(value))))
        elif isinstance(value, bool):
            found.append((name, float(value)))
        elif isinstance(value, int | float):
            found.append((name, float(value)))
        elif value is not None:
            found.append((f"{name}={value}", 1.0))
    found += [(f"log10 {cost}", math.log10(max(value, 1.0))) for cost, value in sorted(known.items())]
    return found


class Encoder:
    """Configurations (as :func:`leaves`) -> rows of numbers in [0, 1], one column per leaf seen when fitted."""

    def __init__(self, rows: Iterable[Leaves]):
        values: dict[str, list[float]] = {}
        for row in rows:
            for column, value in row:
                values.setdefault(column, []).append(value)
        self.columns = {column: i for i, column in enumerate(sorted(values))}
        self.log = np.zeros(len(self.columns), dtype=bool)
        self.low = np.zeros(len(self.columns))
        self.span = np.ones(len(self.columns))
        for column, i in self.columns.items():
            seen = np.asarray(values[column])
            self.log[i] = bool(seen.min() > 0 and seen.max() >= 10 * seen.min() and not column.startswith("log10 "))
            seen = np.log10(seen) if self.log[i] else seen
            self.low[i] = seen.min()
            self.span[i] = max(seen.max() - seen.min(), 1e-12)

    def encode(self, rows: Sequence[Leaves]) -> np.ndarray:
        """A matrix of the rows; a leaf the encoder was not fitted on is left out, an absent one is 0."""
        matrix = np.zeros((len(rows), len(self.columns)))
        for r, row in enumerate(rows):
            for column, value in row:
                i = self.columns.get(column)
                if i is None:
                    continue
                value = math.log10(value) if self.log[i] else value
                matrix[r, i] = min(max((value - self.low[i]) / self.span[i], 0.0), 1.0)
        return matrix


class MetricModel:
    """A Gaussian process of one measurement (as a gain: larger is better) over encoded configurations."""

    def __init__(self, X: np.ndarray, y: np.ndarray, cache: MetricModel | None = None, center: float | None = None):
        self._data = (X.copy(), y.copy())  # what it was fitted on: a caller with the same data can keep this fit
        # The prediction where the data say nothing: the observed mean, or ``center`` (a task metric's chance level).
        self.mean = float(y.mean()) if center is None else float(center)
        self.scale = float(y.std()) or 1.0
        standardised = (y - self.mean) / self.scale
        previous = cache._gpr if cache is not None and cache._gpr.inverse_squared_lengthscales.shape[0] == \
            X.shape[1] else None
        self._gpr = optuna_gp.fit_kernel_params(
            X=X, Y=standardised, is_categorical=np.zeros(X.shape[1], dtype=bool),
            log_prior=log_prior, minimum_noise=optuna_prior.DEFAULT_MINIMUM_NOISE_VAR,
            deterministic_objective=False, gpr_cache=previous)

    def fitted_on(self, X: np.ndarray, y: np.ndarray) -> bool:
        """Whether this model was fitted on exactly these rows and values (then refitting would find the same)."""
        return (self._data[0].shape == X.shape and self._data[1].shape == y.shape
                and bool(np.array_equal(self._data[0], X)) and bool(np.array_equal(self._data[1], y)))

    def believe(self, X_running: np.ndarray) -> None:
        """Add running trials at the model's own predictions (they then count as known, with no new information)."""
        if len(X_running) == 0:
            return
        with torch.no_grad():
            running = torch.from_numpy(X_running)
            mean, _ = self._gpr.posterior(running)
            self._gpr.append_running_data(running, mean)

    def predict(self, X: np.ndarray, measured: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and standard deviation of the measurement (a gain) at each row of X: of its noise-free
        value, or (``measured``) of what a measurement will read, noise included."""
        with torch.no_grad():
            mean, var = self._gpr.posterior(torch.from_numpy(X))
            if measured:
                var = var + self._gpr.noise_var
        return self.mean + self.scale * mean.numpy(), self.scale * np.sqrt(var.numpy())
