"""Starting a search warm from earlier ones (``warm_start:`` in the spec, ``search run --warm-start``).

A user who searched SST-2 yesterday should not start QNLI today from nothing. Two things carry over:

1. **First proposals.** The source searches' fronts, mapped into the new space (a parameter the new space has and
   whose value it allows is kept; one it lacks is drawn), are queued as the new search's first trials and trained
   on the new task. They count against the budget like any trial (they are real measurements of the new task),
   and each records where it came from (``warm_start`` on the trial: source search, trial, storage).
2. **Prior observations.** Every completed trial of the sources is handed to the sampler if it can use them
   (``sampler: known-cost`` models the new task's metric as the source's prediction, scaled by how well that
   prediction ranks the new task's own results so far, plus a Gaussian process of what it leaves unexplained;
   see KnownCostSampler.warm). Samplers that cannot (TPE, random, ...) still get the first proposals.

A source may live in another database (``NAME@URL``: a SQLite file from a laptop into a PostgreSQL search). Only
completed trials count: baselines, probe runs, repeats and failures are not observations of a configuration.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
import sqlalchemy.exc
from optuna.trial import TrialState

from autopeft.errors import UserError
from autopeft.results.pareto import dominates
from autopeft.search.candidates import config_key, draw
from autopeft.search.space import SearchSpace
from autopeft.spec import SearchSpec, WarmStartSource
from autopeft.store import storage


@dataclass
class SourceTrial:
    """One completed trial of a source search: what the new search may learn from."""

    search: str
    storage: str  # masked URL, for display
    number: int
    params: dict[str, Any]
    config: dict[str, Any]
    measurements: dict[str, float]  # every measured value: task metrics and costs
    on_front: bool  # on its own search's front (by that search's objectives)
    first_value: float  # its search's first objective, for ordering the front best first


def load_sources(spec: SearchSpec, missing_ok: bool = False) -> list[SourceTrial]:
    """The completed trials of every search ``spec.warm_start`` names; a clear error for a missing one, unless
    ``missing_ok`` (a resume: the first proposals were queued when the search started, and a source database
    left behind on another machine only costs the model its prior)."""
    found: list[SourceTrial] = []
    for source in spec.warm_start:
        url = source.storage or spec.storage
        try:
            store = storage.open_storage(url, create=False)
            study, source_spec = storage.load_search(store, source.search)
        except (UserError, sqlalchemy.exc.SQLAlchemyError) as exc:
            if missing_ok:
                continue
            raise UserError(f"warm_start: {source.search!r} cannot be read ({exc}); name an existing search, "
                            f"and its database as NAME@URL when it is not this search's") from exc
        found += _completed(study, source_spec, source.search, storage.mask_url(url))
    return found


def _completed(study: optuna.Study, spec: SearchSpec, name: str, url: str) -> list[SourceTrial]:
    trials = [t for t in study.get_trials(deepcopy=False)
              if t.state == TrialState.COMPLETE and t.values is not None and storage.CONFIG in t.user_attrs
              and not storage.is_reference(t) and not t.user_attrs.get(storage.DUPLICATE)]
    signs = [1.0 if o.resolved_direction == "maximize" else -1.0 for o in spec.objectives]
    feasible = [t for t in trials if all(v <= 0 for v in t.user_attrs.get(storage.VIOLATIONS, []))]
    front = {t.number for t in feasible if not any(dominates(o.values, t.values, signs) for o in feasible)}
    return [SourceTrial(name, url, t.number, dict(t.params), t.user_attrs[storage.CONFIG],
                        dict(t.user_attrs.get(storage.MEASUREMENTS, {})), t.number in front,
                        signs[0] * t.values[0]) for t in trials]


def first_proposals(sources: list[SourceTrial], space: SearchSpace, limit: int,
                    seed: int = 0) -> list[tuple[dict[str, Any], SourceTrial]]:
    """The sources' front points as parameters of ``space`` (at most ``limit``, best first, taking the sources in
    turn, one configuration once), each with the source trial it came from."""
    by_search: dict[str, list[SourceTrial]] = {}
    for trial in sorted((t for t in sources if t.on_front), key=lambda t: -t.first_value):
        by_search.setdefault(f"{trial.storage}/{trial.search}", []).append(trial)
    queues = list(by_search.values())
    in_turn = [queue[i] for i in range(max(map(len, queues), default=0)) for queue in queues if i < len(queue)]
    return in_space(in_turn, space, limit, seed)


def in_space(queue: list[SourceTrial], space: SearchSpace, limit: int,
             seed: int = 0) -> list[tuple[dict[str, Any], SourceTrial]]:
    """``queue``'s trials as parameters of ``space``, in order, each configuration once, at most ``limit``: a
    parameter the space has and allows is kept, one it lacks is drawn."""
    rng = np.random.default_rng(seed)
    chosen: list[tuple[dict[str, Any], SourceTrial]] = []
    seen: set[str] = set()
    for source in queue:
        if len(chosen) >= limit:
            break
        params, config, rejection = draw(space, rng, source.params, keep=1.0)
        key = config_key(config)
        if rejection is None and key not in seen:
            seen.add(key)
            chosen.append((params, source))
    return chosen


def queue_first_proposals(study: optuna.Study, spec: SearchSpec, space: SearchSpace,
                          sources: list[SourceTrial]) -> int:
    """Queue the sources' fronts as the search's first trials (a third of the budget at most, so the search still
    explores); returns how many were queued."""
    limit = max(1, spec.budget.trials // 3)
    proposals = first_proposals(sources, space, limit, spec.seed)
    for params, source in proposals:
        study.enqueue_trial(params, user_attrs={storage.WARM_START: {"search": source.search, "trial": source.number,
                                                             "storage": source.storage}},
                            skip_if_exists=False)
    return len(proposals)


def warm_sampler(sampler: optuna.samplers.BaseSampler, sources: list[SourceTrial]) -> bool:
    """Give the sources' trials to a sampler that models them (``warm``); False if it cannot use them."""
    warm = getattr(sampler, "warm", None)
    if not sources or not callable(warm):
        return False
    warm(sources)
    return True


def parse_source(text: str) -> WarmStartSource:
    """``NAME`` or ``NAME@URL`` (the command line's form) as a source: the spec's own short form."""
    if not text.strip().partition("@")[0]:
        raise UserError(f"--warm-start: {text!r} names no search; give NAME or NAME@URL")
    return WarmStartSource.model_validate(text.strip())
