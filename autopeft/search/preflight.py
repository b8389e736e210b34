"""Checks that need the model's configuration but no training, run before a study exists.

A space whose methods cannot be placed on the model (a model type without a module map, a role the
architecture lacks, a method that cannot train on the chosen base) would otherwise be found one rejected trial
at a time, after the search was created. Here a few points are drawn from the space and built on a meta-device
copy of the model (shapes only, milliseconds each); if none builds, the user gets the reason before anything is
written. Likewise a constraint on a cost known before training (trainable parameters, adapter size) that no drawn
point meets: the controller would have drawn 200 proposals in a row against it, minutes of sampling, and left a
stopped search behind.
"""

from __future__ import annotations

import os

import optuna

from autopeft.errors import UserError
from autopeft.search.space import SearchSpace
from autopeft.spec import SearchSpec

TRIES = 16
CONSTRAINT_TRIES = 200  # as many as the controller draws in a row before it gives up (MAX_REJECTIONS_IN_A_ROW)


def check_fields_read(spec: SearchSpec) -> None:
    """Refuse a field the task reads nowhere, where a user may have put what belongs in another: set to anything
    but its default, since a stored spec (the service's, a resumed search's) writes every field out."""
    data = spec.data
    if spec.model.task == "causal-lm" and data.label_column != type(data).model_fields["label_column"].default:
        raise UserError(f"data.label_column: a decoder reads no labels; its records' gold answers are "
                        f"data.answer_column (default answer): write answer_column: {data.label_column}, or remove "
                        "label_column")


def check_device_available(spec: SearchSpec) -> None:
    """``workers.device: cuda`` on a machine without CUDA, where the trials run on this machine (no Ray cluster
    named): each trial's Ray actor asked for a GPU that never came, and the search waited for ever."""
    import torch

    if spec.workers.device != "cuda" or spec.workers.ray_address or os.environ.get("RAY_ADDRESS"):
        return  # a cluster's GPUs are counted when the executor joins it
    if not torch.cuda.is_available():
        raise UserError("workers.device: cuda, and torch sees no CUDA device on this machine; use device: auto (a "
                        "GPU where there is one, else the CPU) or cpu")


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


def check_constraints_reachable(spec: SearchSpec, space: SearchSpace, num_labels: int,
                                tries: int = CONSTRAINT_TRIES) -> None:
    """Raise UserError when none of ``tries`` random points of the space meets the constraints decided before
    training; returns at the first point that does (usually the first drawn). Constraints on what training
    measures are left to the trials."""
    from autopeft.results.views import describe_config
    from autopeft.search.cost import KNOWN_BEFORE_TRAINING, known_violations, predict_cost

    if not any(c.name in KNOWN_BEFORE_TRAINING for c in spec.constraints):
        return
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=spec.seed))
    closest: dict[str, tuple[float, float, dict]] = {}  # per broken constraint: least violation, value, point
    for _ in range(tries):
        proposal = space.suggest(study.ask())
        if proposal.rejection is not None:
            continue
        try:
            predicted = predict_cost(spec.model, num_labels, proposal.config)
        except (UserError, ValueError, TypeError, KeyError):
            continue  # check_space_builds has answered for a space where nothing builds
        violations = known_violations(spec.constraints, predicted)
        if violations is None:
            return
        for constraint, violation in zip(spec.constraints, violations):
            if 0 < violation < closest.get(constraint.name, (float("inf"),))[0]:
                value = predicted[KNOWN_BEFORE_TRAINING[constraint.name]]
                closest[constraint.name] = (violation, value, proposal.config)
    if not closest:
        return  # nothing built: not this check's to answer
    broken = [c for c in spec.constraints if c.name in closest]
    named = "; ".join(f"{c.name} {c.bounds()} (the closest drawn: {closest[c.name][1]:,.6g}, "
                      f"{describe_config(closest[c.name][2])})" for c in broken)
    sizes = {"smaller" if c.max is not None and closest[c.name][1] > c.max else "larger" for c in broken}
    towards = f"to {sizes.pop()} configurations" if len(sizes) == 1 else "to configurations that meet them"
    raise UserError(f"constraints: none of {tries} configurations drawn from the space meets {named}; loosen the "
                    f"bound or narrow the space {towards}")
