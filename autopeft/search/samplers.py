"""Sampler name -> Optuna sampler, configured for multi-objective, constrained, parallel PEFT search.

Constraints reach every sampler the same way: the controller sets them on the trial from measured values
(``Trial.set_constraint``), and Optuna's samplers read them from there.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import optuna

from autopeft.search.known_cost_sampler import KnownCostSampler
from autopeft.spec import SearchSpec

# TPE's `group` option is marked experimental; it is what makes conditional spaces work well, so we use it.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def _tpe(spec: SearchSpec, seed: int) -> optuna.samplers.BaseSampler:
    # multivariate + group: the per-layer and per-module switches are modelled jointly, and conditional
    # parameters get their own groups; constant_liar keeps parallel workers from being sent the same point.
    return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, constant_liar=True,
                                      n_startup_trials=max(4, min(10, spec.budget.trials // 3)))


def _random(spec: SearchSpec, seed: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.RandomSampler(seed=seed)


def _nsga2(spec: SearchSpec, seed: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, min(50, spec.budget.trials // 4)))


def _gp(spec: SearchSpec, seed: int) -> optuna.samplers.BaseSampler:
    # Optuna's GP (Matern kernel; log-EHVI for several objectives, constrained through Trial.set_constraint,
    # q-batch acquisition over running trials so parallel proposals differ). It models the parameters every
    # completed trial has (their intersection): a space's conditional parameters, and every parameter once a
    # trial without parameters is in the study (`autopeft baselines`), are drawn at random instead. Whether it
    # becomes the default waits for the recorded search benchmark (issue 4), not for belief.
    return optuna.samplers.GPSampler(seed=seed, n_startup_trials=max(4, min(10, spec.budget.trials // 3)),
                                     warn_independent_sampling=False)


def _known_cost(spec: SearchSpec, seed: int) -> optuna.samplers.BaseSampler:
    # Models only the objectives unknown before training and scores candidates with their exact known costs
    # (autopeft/search/known_cost_sampler.py); the controller binds it to the space and the meta-device cost count.
    # repeatable: no clock on counting candidates, so how many a proposal sees is the same on any machine.
    return KnownCostSampler(spec, seed, n_startup=max(3, min(8, spec.budget.trials // 4)),
                            counting_seconds=None if spec.repeatable else 0.8)


SAMPLERS: dict[str, Callable[[SearchSpec, int], optuna.samplers.BaseSampler]] = {
    "known-cost": _known_cost,
    "tpe": _tpe,
    "random": _random,
    "nsga2": _nsga2,
    "gp": _gp,
}


def make_sampler(spec: SearchSpec, trials_so_far: int = 0) -> optuna.samplers.BaseSampler:
    """A sampler seeded from the spec; a resumed search shifts the seed by the trials it already has, so that
    random proposals (and TPE's random start-up phase) do not replay the configurations of the first run."""
    return SAMPLERS[spec.sampler](spec, spec.seed + trials_so_far)
