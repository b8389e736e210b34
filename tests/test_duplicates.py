"""Repeated proposals: a configuration already trained is answered from its record, not trained again, and a
finite space that has been trained through ends the search instead of spinning.

The executor answers instantly from a fixed table (the replay back-end's idea): the subject is the controller's
bookkeeping on a real SQLite study, not training.
"""

from __future__ import annotations

from collections import deque

from optuna.trial import TrialState

from autopeft.search.controller import SearchController
from autopeft.search.samplers import make_sampler
from autopeft.search.space import SearchSpace
from autopeft.search.trial import TrialRequest, TrialResult
from autopeft.spec import load_spec
from autopeft.store import storage
from tests.conftest import tiny_spec, write_spec

SPACE = {"name": "two-points", "fixed": {"method": "lora", "learning_rate": 0.001},
         "parameters": {"lora.r": {"type": "categorical", "choices": [2, 4]},
                        "layers": {"type": "layers", "form": "top", "starts": [-1]}}}


class AnsweringExecutor:
    capacity = 1

    def __init__(self):
        self.queue: deque[TrialRequest] = deque()
        self.trained: list[dict] = []

    def submit(self, request: TrialRequest) -> None:
        self.queue.append(request)

    def running(self) -> int:
        return len(self.queue)

    def wait(self) -> list[TrialResult]:
        request = self.queue.popleft()
        self.trained.append(request.config)
        rank = request.config["lora"]["r"]
        return [TrialResult(request.number, ok=True, measurements={
            "accuracy": 0.7 + rank / 100, "trainable_params": 1000.0 * rank, "trainable_percent": 0.01})]

    def shutdown(self) -> None:
        self.queue.clear()


def test_repeats_are_answered_from_their_twin_and_a_trained_through_space_ends_the_search(tmp_path):
    spec = load_spec(write_spec(tmp_path, tiny_spec(tmp_path, search_space=SPACE, sampler="tpe",
                                                    budget={"trials": 6, "steps_per_trial": 1})))
    study = storage.create_search(storage.open_storage(spec.storage), "repeats", spec, make_sampler(spec))
    executor = AnsweringExecutor()
    controller = SearchController(study, spec, SearchSpace.from_dict(SPACE, 6, hidden_size=384), executor,
                                  train_size=320)
    controller.run()

    assert sorted(c["lora"]["r"] for c in executor.trained) == [2, 4]  # each point trained exactly once
    assert controller.exhausted and study.user_attrs[storage.FINISHED] is True
    trials = study.get_trials()
    trained = [t for t in trials if storage.counts_against_budget(t)]
    assert len(trained) == 2
    by_number = {t.number: t for t in trials}
    for repeat in (t for t in trials if t.user_attrs.get(storage.DUPLICATE)):
        twin = by_number[repeat.user_attrs[storage.DUPLICATE_OF]]
        assert repeat.state == TrialState.COMPLETE and repeat.values == twin.values
        assert repeat.user_attrs[storage.CONFIG] == twin.user_attrs[storage.CONFIG]
    records = storage.trial_records(study, spec)
    assert {r.state for r in records} <= {"COMPLETE", "DUPLICATE"}
