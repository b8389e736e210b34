"""The dashboard rebuilds a search's tables, noise report and Pareto figure only when the database changed: a live
redraw of an unchanged search reads one fingerprint, and any change the views show (a new trial, a state change,
a rung, a value, an attribute) makes the next redraw rebuild."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState
from streamlit.testing.v1 import AppTest

from autopeft.spec import load_spec
from autopeft.store import storage
from dashboard import cache, data, figures
from tests.conftest import ROOT, tiny_spec, write_spec

APP = str(ROOT / "dashboard" / "app.py")


@pytest.fixture
def study(tmp_path, monkeypatch) -> tuple[str, optuna.Study]:
    """A search in a real SQLite file, written through Optuna's API as the controller writes it."""
    spec = load_spec(write_spec(tmp_path, tiny_spec(tmp_path)))
    url = f"sqlite:///{tmp_path / 'watched.db'}"
    created = optuna.create_study(study_name="watched", storage=storage.open_storage(url),
                                  directions=["maximize", "minimize"])
    created.set_user_attr(storage.SPEC, spec.to_stored())
    for accuracy, params in ((0.81, 5_000.0), (0.86, 40_000.0)):
        trial = created.ask()
        trial.set_user_attr(storage.CONFIG, {"method": "lora", "lora": {"r": 4}, "layers": [0, 1],
                                             "learning_rate": 1e-3})
        created.tell(trial, [accuracy, params])
    monkeypatch.setenv("AUTOPEFT_STORAGE", url)
    cache.clear()
    return url, created


def test_the_revision_changes_with_what_the_views_show(study):
    url, created = study
    seen = [data.revision(url, "watched")]

    def changed() -> bool:
        seen.append(data.revision(url, "watched"))
        return seen[-1] != seen[-2]

    assert not changed()  # read twice, nothing written in between
    trial = created.ask()
    assert changed()  # a new trial, running
    trial.set_user_attr(storage.CONFIG, {"method": "ia3", "layers": [1]})
    assert changed()  # its configuration recorded
    trial.set_user_attr(storage.RUNGS, [[6, 0.7]])
    assert changed()  # a rung, as the controller records it
    created._storage.set_trial_intermediate_value(trial._trial_id, 6, 0.7)
    assert changed()  # an intermediate value, as Optuna records one
    created.tell(trial, state=TrialState.PRUNED)
    assert changed()  # a state change
    created.set_user_attr(storage.FINISHED, True)
    assert changed()  # the search's own attributes
    created.set_user_attr(storage.FINISHED, False)
    assert changed()  # written again in place, under the same key
    assert data.revision(url, "no-such-search") == ()


def test_a_redraw_of_an_unchanged_search_rebuilds_nothing(study, monkeypatch):
    url, created = study
    built = {"tables": 0, "figures": 0}
    load_trials, pareto = data.load_trials, figures.pareto

    def counted_load(*args, **kwargs):
        built["tables"] += 1
        return load_trials(*args, **kwargs)

    def counted_pareto(*args, **kwargs):
        built["figures"] += 1
        return pareto(*args, **kwargs)

    monkeypatch.setattr(data, "load_trials", counted_load)
    monkeypatch.setattr(figures, "pareto", counted_pareto)
    app = AppTest.from_file(APP, default_timeout=120)
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    assert {m.label: m.value for m in app.metric}["Trials"] == "2"
    first = dict(built)
    assert first["tables"] >= 1 and first["figures"] == 1

    cache.revision.clear()  # the fingerprint's two seconds have passed: it is read again, and has not changed
    app.run()
    assert built == first

    trial = created.ask()  # the search moves on: the next redraw rebuilds and shows it
    created.tell(trial, [0.9, 90_000.0])
    cache.revision.clear()
    app.run()
    assert built["tables"] > first["tables"] and built["figures"] == 2
    assert {m.label: m.value for m in app.metric}["Trials"] == "3"
