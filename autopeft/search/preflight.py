"""Checks that need the model's configuration but no training, run before a study exists.

A space whose methods cannot be placed on the model (a model type without a module map, a role the
architecture lacks, a method that cannot train on the chosen base) would otherwise be found one rejected trial
at a time, after the search was created. Here a few points are drawn from the space and built on a meta-device
copy of the model (shapes only, milliseconds each); if none builds, the user gets the reason before anything is
written.
"""

from __future__ import annotations

import optuna

from autopeft.errors import UserError
from autopeft.search.space import SearchSpace
from autopeft.spec import SearchSpec

TRIES = 16


def check_space_builds(spec: SearchSpec, space: SearchSpace, num_labels: int = 2, tries: int = TRIES) -> None:
    """Raise UserError unless at least one of ``tries`` random points of the space builds on the model."""
    from autopeft.search.cost import predict_cost

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=spec.seed))
    reasons: list[str] = []
    for _ in range(tries):
        proposal = space.suggest(study.ask())
        if proposal.rejection is not None:
            reasons.append(f"invalid configuration: {proposal.rejection}")
            continue
        try:
            predict_cost(spec.model, num_labels, proposal.config)
            return
        except (UserError, ValueError, TypeError, KeyError) as exc:
            reasons.append(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    common = max(set(reasons), key=reasons.count)
    raise UserError(f"search_space: none of {tries} sampled configurations can be built on "
                    f"{spec.model.name_or_path}: {common}")
