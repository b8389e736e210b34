"""Warm start: an earlier search's front is trained first, its trials inform the known-cost sampler's model, and a
source that cannot be read is refused before anything is created."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from autopeft.errors import UserError
from autopeft.search.controller import SearchController
from autopeft.search.launch import start_search
from autopeft.search.samplers import make_sampler
from autopeft.search.space import SearchSpace
from autopeft.search.trial import TrialResult
from autopeft.search.warm_start import load_sources, warm_sampler
from autopeft.spec import load_spec
from autopeft.store import storage
from tests.conftest import ONE_AT_A_TIME, run_cli, tiny_spec, write_spec
from tests.test_known_cost_sampler import RANKS, SmoothExecutor


def _source_front(url: str, name: str) -> list[tuple[int, dict]]:
    """(number, config) of the source's front points, best accuracy first."""
    study, spec = storage.load_search(storage.open_storage(url), name)
    from autopeft.results.pareto import pareto_front

    return [(r.number, r.config) for r in pareto_front(storage.trial_records(study, spec), spec)]


def test_a_warm_search_trains_the_source_front_first_from_another_database(small_search, postgres_url, tmp_path,
                                                                          capsys):
    folder, source_url, source_name = small_search
    front = _source_front(source_url, source_name)
    trials = 3 * len(front) + 1  # a third of the budget goes to the source's front
    spec = load_spec(write_spec(tmp_path, tiny_spec(
        tmp_path, budget={"trials": trials, "steps_per_trial": 4}, constraints=[], storage=postgres_url,
        warm_start=[f"{source_name}@{source_url}"], workers=ONE_AT_A_TIME)))
    name = start_search(spec, name="warm", executor="local")

    study, stored = storage.load_search(storage.open_storage(postgres_url), name)
    assert stored.warm_start[0].search == source_name and stored.warm_start[0].storage == source_url
    first = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)[:len(front)]
    assert [t.user_attrs[storage.CONFIG] for t in first] == [config for _, config in front]
    assert [t.user_attrs[storage.WARM_START]["trial"] for t in first] == [number for number, _ in front]
    assert all(t.state.name == "COMPLETE" for t in first)  # trained on this task, not copied
    later = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)[len(front):]
    assert later and not any(storage.WARM_START in t.user_attrs for t in later)
    assert storage.budget_spent(study.get_trials(deepcopy=False)) == trials  # they count against the budget

    # Where each came from, as the dashboard and `search show --json` see it.
    from dashboard.data import load_trials

    frame, _ = load_trials(postgres_url, name)
    origins = frame.sort_values("number")["warm_start"].tolist()
    assert origins[0] == f"{source_name} #{front[0][0]} ({storage.mask_url(source_url)})"
    assert not any(isinstance(o, str) for o in origins[len(front):])
    code, out, _ = run_cli(capsys, "search", "show", name, "--storage", postgres_url, "--json")
    shown = {t["number"]: t["warm_start"] for t in json.loads(out)["trials"]}
    assert code == 0 and shown[0] == {"search": source_name, "trial": front[0][0],
                                      "storage": storage.mask_url(source_url)}


def test_a_source_that_cannot_be_read_is_refused_before_anything_is_created(tmp_path, capsys):
    path = write_spec(tmp_path, tiny_spec(tmp_path, warm_start=["nope"]))
    with pytest.raises(UserError, match="warm_start: 'nope' cannot be read .*NAME@URL"):
        start_search(load_spec(path), name="cold", executor="local")
    assert not (tmp_path / "trials.db").exists() or "cold" not in storage.search_names(
        storage.open_storage(f"sqlite:///{tmp_path / 'trials.db'}"))
    missing = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    code, _, err = run_cli(capsys, "search", "run", str(path), "--warm-start", f"nope@{missing}")
    assert code != 0 and "warm_start: 'nope' cannot be read" in err and "no database file" in err
    assert not (tmp_path / "elsewhere.db").exists()  # reading a source never creates its database


class FallingExecutor(SmoothExecutor):
    """The opposite task: accuracy falls where the smooth one rises."""

    def wait(self) -> list[TrialResult]:
        [result] = super().wait()
        result.measurements["accuracy"] = 1.6 - result.measurements["accuracy"]
        return [result]


def _known_cost_search(tmp_path, name: str, trials: int, executor_kind, warm_start: list[str] | None = None,
                       sampler: str = "known-cost"):
    spec = load_spec(write_spec(tmp_path, tiny_spec(
        tmp_path, search_space=RANKS, sampler=sampler, budget={"trials": trials, "steps_per_trial": 1},
        constraints=[], warm_start=warm_start or []), f"{name}.yaml"))
    study = storage.create_search(storage.open_storage(spec.storage), name, spec, make_sampler(spec))
    space = SearchSpace.from_dict(RANKS, 6, hidden_size=384)
    sources = load_sources(spec)
    from autopeft.search.warm_start import queue_first_proposals

    queued = queue_first_proposals(study, spec, space, sources)
    warm_sampler(study.sampler, sources)
    executor = executor_kind(spec)
    SearchController(study, spec, space, executor, train_size=320).run()
    return spec, study, executor, queued


@pytest.mark.parametrize("task, related", [(SmoothExecutor, True), (FallingExecutor, False)])
def test_the_source_informs_the_model_as_far_as_it_ranks_the_new_task(tmp_path, task, related):
    _known_cost_search(tmp_path, "source", 9, SmoothExecutor, sampler="random")  # how the source searched: immaterial
    spec, study, executor, queued = _known_cost_search(tmp_path, "target", 7, task, warm_start=["source"])
    assert queued == 2 and executor.trained[:queued] == [c for _, c in _source_front(spec.storage, "source")][:2]
    transfer = study.sampler.transfers["accuracy"]
    assert transfer.correlation is not None  # measured on the target's own results, not assumed
    if related:
        assert transfer.correlation > 0.5 and transfer.weight > 0
    else:
        assert transfer.correlation < 0 and transfer.weight == 0  # a source that misleads is switched off


def test_a_service_launch_starts_only_from_the_services_own_searches(tmp_path):
    from autopeft.service.admission import ServiceConfig, admit

    config = ServiceConfig(storage_url=f"sqlite:///{tmp_path / 'service.db'}", root=tmp_path,
                           job_server="http://127.0.0.1:1")
    spec = tiny_spec(tmp_path, warm_start=[f"other@sqlite:///{tmp_path / 'mine.db'}"])
    for field in ("storage", "output_dir"):
        spec.pop(field)
    with pytest.raises(UserError, match="warm_start: .* names another database"):
        admit(config, yaml.safe_dump(spec), name="warm")


def test_the_source_model_is_fitted_once_while_its_trials_stay_the_same():
    """The source's trials do not change during a search: the next proposal keeps its fit instead of refitting it."""
    from autopeft.search.transfer import fit_transfer

    rng = np.random.default_rng(0)
    X_source, X_target = rng.random((40, 3)), rng.random((5, 3))
    y_source = X_source @ np.array([1.0, -0.5, 0.2])
    y_target = X_target @ np.array([1.0, -0.5, 0.2]) + 0.3
    first = fit_transfer(X_source, y_source, X_target[:4], y_target[:4])
    again = fit_transfer(X_source, y_source, X_target, y_target, first.source)
    assert again.source is first.source and again.correlation is not None and again.weight > 0
    grown = fit_transfer(np.vstack([X_source, X_target[:1]]), np.append(y_source, y_target[0]), X_target, y_target,
                         first.source)
    assert grown.source is not first.source  # other rows: fitted again (from the kept kernel)
