"""The learnability probe (budget.steps_per_trial: auto) on a real task that needs more steps than its first rung:
it climbs the doubling ladder until a reference clears chance, stores its runs outside the budget and the front,
and the search then trains at the steps it chose."""

from __future__ import annotations

import json

import pytest

from autopeft.spec import load_spec, parse_spec
from autopeft.store import storage
from tests.conftest import ONE_AT_A_TIME, ROOT, run_cli, tiny_spec, write_spec

NAME = "probed"


@pytest.fixture(scope="module")
def probed(tmp_path_factory):
    from autopeft.search.launch import start_search

    tmp_path = tmp_path_factory.mktemp("probe")
    spec = tiny_spec(tmp_path, constraints=[], workers=ONE_AT_A_TIME)
    # LoRA at its usual rate learns the SST-2 sample within a few dozen steps of the tiny spec's batch of 8, not in
    # 16 or 32 (measured: the majority class, 0.531, at both), so the ladder climbs to 64 (0.823 with seed 0, 0.813
    # with seed 1).
    spec["budget"] = {"trials": 2, "steps_per_trial": "auto",
                      "probe": {"start_steps": 16, "max_steps": 64, "minutes": 5, "references": ["lora-r16-all"]}}
    loaded = load_spec(write_spec(tmp_path, spec))
    start_search(loaded, name=NAME, executor="local")
    study, stored = storage.load_search(storage.open_storage(loaded.storage), NAME)
    return tmp_path, loaded.storage, study, stored


def test_the_probe_climbs_past_a_first_rung_where_nothing_learns(probed):
    _, _, study, stored = probed
    probe = study.user_attrs[storage.PROBE]
    first, *later = probe["rungs"]
    assert first["steps"] == 16 and not first["results"]["lora-r16-all"]["above"]
    assert [r["steps"] for r in later] == [32 * 2**i for i in range(len(later))]  # doubling
    assert probe["chosen"] is not None and probe["chosen"] > 16
    chosen = next(r for r in probe["rungs"] if r["steps"] == probe["chosen"])
    assert chosen["results"]["lora-r16-all"]["above"]
    assert stored.budget.steps_per_trial == probe["chosen"]  # the stored spec carries the fidelity to resume


def test_probe_runs_are_stored_outside_the_budget_and_the_front(probed):
    _, _, study, stored = probed
    records = storage.trial_records(study, stored)
    probes = [r for r in records if r.probe]
    searched = [r for r in records if not r.reference]
    probe = study.user_attrs[storage.PROBE]
    # one run per rung, and the chosen rung's learner once more with another seed, which learned again
    again = [r for r in probes if "seed" in r.probe]
    assert [r.probe["steps"] for r in again] == [probe["chosen"]] and again[0].probe["seed"] == stored.seed + 1
    chosen = next(r for r in probe["rungs"] if r["steps"] == probe["chosen"])
    assert chosen["results"]["lora-r16-all"]["again"]["above"]
    assert len(probes) == len(probe["rungs"]) + 1
    assert sorted(r.probe["steps"] for r in probes if "seed" not in r.probe) == [r["steps"] for r in probe["rungs"]]
    assert len(searched) == 2 and storage.budget_spent(study.get_trials()) == 2
    assert not any(r.pareto for r in probes)
    for record in searched:  # trained at the chosen fidelity: the loss curve ends at that step
        assert record.loss_curve[-1][0] == probe["chosen"]


def test_the_search_starts_from_the_reference_that_learned(probed):
    """The probe's LoRA learned at the chosen steps and the space can draw it: it is the search's first trial,
    trained again as one (marked with the probe run it repeats); the sampler proposes the rest."""
    _, url, study, _ = probed
    probe = study.user_attrs[storage.PROBE]
    chosen = next(r for r in probe["rungs"] if r["steps"] == probe["chosen"])
    first, second = [t for t in study.get_trials() if not storage.is_reference(t)]
    assert first.user_attrs[storage.WARM_START] == {"probe": "lora-r16-all", "search": NAME,
                                                    "trial": chosen["results"]["lora-r16-all"]["trial"]}
    config = first.user_attrs[storage.CONFIG]
    assert config["lora"]["r"] == 16 and len(config["lora"]["target_modules"]) == 6 and config["layers"] == [
        0, 1, 2, 3, 4, 5] and config["learning_rate"] == pytest.approx(1e-3)
    assert first.state.name == "COMPLETE" and storage.WARM_START not in second.user_attrs
    from dashboard import data

    trials, _ = data.load_trials(url, NAME)
    shown = trials.set_index("number").loc[first.number, "warm_start"]
    assert shown == f"probe run #{chosen['results']['lora-r16-all']['trial']} (lora-r16-all)"


def test_a_reference_the_space_cannot_draw_is_queued_as_its_stand_in(tmp_path):
    """Only full fine-tuning learned (BoolQ's case) and no PEFT space draws it: the search starts from fine-tuning
    every layer at full fine-tuning's rate, marked as the stand-in; where the space has neither, nothing is
    queued."""
    import optuna
    import yaml

    from autopeft.search.probe import ProbeOutcome, Rung, queue_learning_references
    from autopeft.search.space import SearchSpace
    from autopeft.spec import SEARCH_SPACES_DIR
    from dashboard.data import _warm_origin

    rung = Rung(256, 60.0, {"full": {"trial": 3, "accuracy": 0.645, "above": True},
                            "lora-r16-all": {"trial": 4, "accuracy": 0.631, "above": False}})
    outcome = ProbeOutcome(chosen=256, reason="test", seconds=60.0, rungs=[rung])
    spec = parse_spec(tiny_spec(tmp_path, budget={"trials": 6, "steps_per_trial": 256}))
    full = SearchSpace.from_dict(yaml.safe_load((SEARCH_SPACES_DIR / "full.yaml").read_text()), num_layers=6,
                                 hidden_size=384)
    study = optuna.create_study(directions=["maximize", "minimize"], study_name="s")
    assert queue_learning_references(study, spec, full, outcome) == ["full (as partial)"]
    [queued] = study.get_trials(deepcopy=False)
    config = full.suggest(optuna.trial.FixedTrial(queued.system_attrs["fixed_params"])).config
    assert config["method"] == "partial" and config["layers"] == list(range(6))
    assert config["learning_rate"] == pytest.approx(5e-5)
    origin = queued.user_attrs[storage.WARM_START]
    assert origin == {"probe": "full", "trial": 3, "search": "s", "as": "partial"}
    assert _warm_origin(origin) == "probe run #3 (full as partial)"
    lora = SearchSpace.from_dict(yaml.safe_load((SEARCH_SPACES_DIR / "lora.yaml").read_text()), num_layers=6,
                                 hidden_size=384)
    assert queue_learning_references(optuna.create_study(directions=["maximize", "minimize"]), spec, lora,
                                     outcome) == []


def test_search_show_and_the_dashboard_show_the_probe(probed, capsys, monkeypatch):
    _, url, study, stored = probed
    code, out, _ = run_cli(capsys, "search", "show", NAME, "--storage", url)
    text = " ".join(out.split())
    assert code == 0
    assert f"Fidelity: {stored.budget.steps_per_trial} steps per trial, chosen by the learnability probe" in text
    code, out, _ = run_cli(capsys, "search", "show", NAME, "--storage", url, "--json")
    shown = json.loads(out)
    assert shown["probe"]["chosen"] == stored.budget.steps_per_trial
    assert {"reference": "lora-r16-all", "steps": 16} in [t["probe"] for t in shown["trials"]]
    from dashboard import data, figures

    trials, spec = data.load_trials(url, NAME)
    assert trials["probe"].sum() == len(study.user_attrs[storage.PROBE]["rungs"]) + 1  # + the seed repeat
    figure = figures.pareto(trials, spec, "trainable_params", "accuracy")
    [probe_trace] = [t for t in figure.data if t.name == "probe run"]
    assert len(probe_trace.x) == trials["probe"].sum()
    # The searches page counts and scores the search's own trials, as `search list` does, not the probe's runs
    [listed] = data.searches_frame(data.list_searches(url)).to_dict("records")
    searched = trials[~trials["probe"]]
    assert listed["complete"] == len(searched) == 2
    assert listed["best"] == pytest.approx(searched["accuracy"].max())
    assert listed["fidelity"] == f"{stored.budget.steps_per_trial} steps (probe)"
    monkeypatch.setenv("AUTOPEFT_STORAGE", url)
    from streamlit.testing.v1 import AppTest

    app = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=60)
    app.session_state["view"] = "Pareto front"
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    assert {m.label: m.value for m in app.metric}["Trials"] == "2"
    captions = [c.value for c in app.caption]
    assert f"Besides these: {int(trials['probe'].sum())} probe runs, reference points outside the budget and the " \
        "front." in captions
    assert any(c.startswith(f"Fidelity: {stored.budget.steps_per_trial} steps per trial, chosen by the learnability "
                            "probe") for c in captions)


class _SeedLuck:
    """A worker whose runs learn the task only with seed 0 and from 8 steps on: the fault — learning that one seed
    shows and another does not — that real training cannot be made to show on cue. Learned runs predict the gold
    labels, the others the majority label."""

    capacity = 1

    def __init__(self, gold, other_seeds_from: int = 10**6):
        self.gold, self.done, self.seen, self.other_seeds_from = gold, [], [], other_seeds_from

    def submit(self, request) -> None:
        import numpy as np

        from autopeft.search.trial import TrialResult
        from autopeft.store.predictions import LABELS, encode

        self.seen.append((request.config["method"], request.steps, request.seed))
        learned = request.steps >= (8 if request.seed == 0 else self.other_seeds_from)
        predicted = self.gold if learned else np.zeros_like(self.gold)
        self.done.append(TrialResult(number=request.number, ok=True, predictions=encode(LABELS, predicted),
                                     measurements={"accuracy": float((predicted == self.gold).mean()),
                                                   "trainable_params": 1000.0}))

    def wait(self):
        done, self.done = self.done, []
        return done

    def running(self) -> int:
        return len(self.done)

    def shutdown(self) -> None:
        pass


def test_learning_that_one_seed_shows_and_another_does_not_stops_the_search(tmp_path):
    """Full fine-tuning clears chance at 8 steps with seed 0 and not with seed 1: the probe does not choose that
    rung, the search stops with what happened and what to try, and the repeat is stored as a probe run."""
    import numpy as np
    import optuna

    from autopeft.results.chance import ChanceLevel
    from autopeft.results.views import probe_line
    from autopeft.search.probe import NothingLearnable, find_steps
    from autopeft.store.predictions import LABELS, EvalTargets

    gold = np.array([0] * 120 + [1] * 80)
    level = ChanceLevel({"accuracy": 0.6}, len(gold), "always '0'")
    targets = EvalTargets(LABELS, gold, num_labels=2)
    spec = parse_spec(tiny_spec(tmp_path, constraints=[], budget={
        "trials": 4, "steps_per_trial": "auto",
        "probe": {"start_steps": 4, "max_steps": 16, "references": ["full"]}}))
    study = optuna.create_study(directions=["maximize", "minimize"], study_name="luck")
    worker = _SeedLuck(gold)
    with pytest.raises(NothingLearnable, match=r"full cleared chance at 8 steps with seed 0 \(1\.0000\) but not "
                       r"with seed 1 \(0\.6000\).*one seed's luck.*\(the ladder ended at 16 steps: doubling to 16 "
                       r"steps did not pay beyond noise for any reference\)\. Try more data or another model "
                       r"\(more steps did not pay beyond noise\)"):
        find_steps(study, spec, worker, level, targets)
    # 4 (chance), 8 (learns), 16 (learns, did not pay): 8 and then 16 tried again with seed 1
    assert worker.seen == [("full", 4, 0), ("full", 8, 0), ("full", 16, 0), ("full", 8, 1), ("full", 16, 1)]
    probe = study.user_attrs[storage.PROBE]
    assert probe["chosen"] is None and "not again with another seed" in probe["reason"]
    repeats = [t.user_attrs[storage.PROBE] for t in study.get_trials() if "seed" in t.user_attrs[storage.PROBE]]
    assert repeats == [{"reference": "full", "steps": 8, "seed": 1}, {"reference": "full", "steps": 16, "seed": 1}]
    assert "5 runs at 4, 8, 16 steps" in probe_line(study)
    # The ladder ended at its step cap instead: the advice names the cap that may let it climb further
    capped = parse_spec(tiny_spec(tmp_path, constraints=[], budget={
        "trials": 4, "steps_per_trial": "auto",
        "probe": {"start_steps": 4, "max_steps": 8, "references": ["full"]}}))
    with pytest.raises(NothingLearnable, match=r"\(the ladder ended at 8 steps: probe\.max_steps reached\)\. Try "
                       r"more data, another model, or a probe that may climb further \(budget\.probe\.max_steps\)"):
        find_steps(optuna.create_study(directions=["maximize", "minimize"], study_name="capped"), capped,
                   _SeedLuck(gold), level, targets)


def test_a_longer_rung_whose_learning_repeats_is_chosen_over_a_shorter_one_whose_does_not(tmp_path):
    import numpy as np
    import optuna

    from autopeft.results.chance import ChanceLevel
    from autopeft.search.probe import find_steps
    from autopeft.store.predictions import LABELS, EvalTargets

    gold = np.array([0] * 120 + [1] * 80)
    spec = parse_spec(tiny_spec(tmp_path, constraints=[], budget={
        "trials": 4, "steps_per_trial": "auto",
        "probe": {"start_steps": 4, "max_steps": 16, "references": ["full"]}}))
    study = optuna.create_study(directions=["maximize", "minimize"])
    worker = _SeedLuck(gold, other_seeds_from=16)
    outcome = find_steps(study, spec, worker, ChanceLevel({"accuracy": 0.6}, len(gold), "always '0'"),
                         EvalTargets(LABELS, gold, num_labels=2))
    assert outcome.chosen == 16 and "8 steps did not learn again with another seed, 16 did" in outcome.reason
    assert worker.seen[-2:] == [("full", 8, 1), ("full", 16, 1)]


def test_auto_is_a_spec_value_and_bad_ladders_are_named(tmp_path):
    spec = tiny_spec(tmp_path)
    spec["budget"] = {"trials": 2, "steps_per_trial": "auto", "probe": {"start_steps": 64, "max_steps": 32}}
    with pytest.raises(Exception, match=r"budget\.probe: .*max_steps 32 is below start_steps 64"):
        parse_spec(spec)
    spec["budget"] = {"trials": 2, "steps_per_trial": "lots"}
    with pytest.raises(Exception, match=r"budget\.steps_per_trial: give a whole number of steps .* or auto"):
        parse_spec(spec)


def test_a_search_that_found_nothing_says_what_the_probe_did_learn():
    """The probe's full fine-tuning cleared chance at the chosen fidelity, the search's trials did not: the closing
    summary says so (the task is learnable; the space did not find it in these trials)."""
    import optuna

    from autopeft.results import views
    from autopeft.store import storage

    study = optuna.create_study(directions=["maximize", "minimize"])
    assert views.probe_cleared_line(study, "accuracy") is None  # no probe, nothing to say
    rung = {"steps": 256, "seconds": 10.0, "results": {
        "full": {"trial": 3, "accuracy": 0.645, "bar": 0.641, "above": True},
        "lora-r16-all": {"trial": 4, "accuracy": 0.631, "bar": 0.641, "above": False}}}
    study.set_user_attr(storage.PROBE, {"chosen": 256, "reason": "r", "seconds": 20.0,
                                        "rungs": [{**rung, "steps": 128, "results": {}}, rung]})
    line = views.probe_cleared_line(study, "accuracy")
    assert line.startswith("The probe's full 0.6450 (bar 0.6410) cleared chance at 256 steps")
    assert "lora-r16-all" not in line and "search resume --trials" in line
    study.set_user_attr(storage.PROBE, {"chosen": None, "reason": "r", "seconds": 20.0, "rungs": [rung]})
    assert views.probe_cleared_line(study, "accuracy") is None  # the probe stopped the search: its own message



def _stopped_probe(tmp_path, worker, probe: dict, trials: int = 4, **spec_fields):
    """Run the probe on a scripted worker over 200 gold labels (chance 0.6) until it stops the search; returns the
    study and the message."""
    import optuna

    from autopeft.results.chance import ChanceLevel
    from autopeft.search.probe import NothingLearnable, find_steps
    from autopeft.store.predictions import LABELS, EvalTargets

    spec = parse_spec(tiny_spec(tmp_path, constraints=[], budget={"trials": trials, "steps_per_trial": "auto",
                                                                  "probe": probe}, **spec_fields))
    study = optuna.create_study(directions=["maximize", "minimize"], study_name="stopped")
    with pytest.raises(NothingLearnable) as stopped:
        find_steps(study, spec, worker, ChanceLevel({"accuracy": 0.6}, len(worker.gold), "always '0'"),
                   EvalTargets(LABELS, worker.gold, num_labels=2))
    return study, str(stopped.value)


class _SlowAtChance(_SeedLuck):
    """Every run takes a while and predicts the majority label (the search's seed is not 0, so nothing learns)."""

    def submit(self, request) -> None:
        import time

        time.sleep(0.5)
        super().submit(request)


def test_a_probe_stopped_by_its_time_cap_says_how_long_the_next_rung_and_its_repeat_needed(tmp_path):
    """Nothing cleared chance and the time cap kept the next rung from starting: the message names that rung and
    the minutes it would have needed, so the user knows how far to raise budget.probe.minutes. The cap reserves
    the next rung's repeat with another seed: without the repeat (probe.confirm: false) the same minutes climb."""
    import numpy as np

    # Each rung takes about 0.5 s and the next is estimated at 2.2 times the last: after the first, the next rung
    # alone would end near 1.6 s, with its repeat near 2.7 s; 2.5 s of probe in all is allowed.
    probe = {"start_steps": 4, "max_steps": 64, "minutes": 2.5 / 60, "references": ["full"]}
    worker = _SlowAtChance(np.array([0] * 120 + [1] * 80))
    study, message = _stopped_probe(tmp_path, worker, probe, seed=1)
    assert ("up to 4 steps (probe.minutes reached: the next rung, 8 steps and its repeat with another seed, would "
            "have ended after about 1 minute)") in message
    assert worker.seen == [("full", 4, 1)]
    assert study.user_attrs[storage.PROBE]["reason"].startswith("probe.minutes reached: the next rung, 8 steps")

    unconfirmed = _SlowAtChance(np.array([0] * 120 + [1] * 80))
    _, message = _stopped_probe(tmp_path, unconfirmed, {**probe, "confirm": False}, seed=1)
    assert ("full", 8, 1) in unconfirmed.seen and "the next rung, 8 steps, would" not in message


class _TwoSlots(_SeedLuck):
    """Two runs at a time, as two workers train them; records how many were in flight together."""

    capacity = 2

    def __init__(self, gold):
        super().__init__(gold)
        self.most_in_flight = 0

    def submit(self, request) -> None:
        super().submit(request)
        self.most_in_flight = max(self.most_in_flight, len(self.done))


def test_the_references_repeats_run_side_by_side(tmp_path):
    """Both references cleared chance with seed 0 and neither does with seed 1: their repeats train together, as
    the rung did, so the probe overruns its minutes by one run, not two; both are stored and both named."""
    import numpy as np

    worker = _TwoSlots(np.array([0] * 120 + [1] * 80))
    study, message = _stopped_probe(tmp_path, worker, {"start_steps": 8, "max_steps": 8,
                                                       "references": ["full", "lora-r16-all"]})
    assert ("full cleared chance at 8 steps with seed 0 (1.0000) but not with seed 1 (0.6000); lora-r16-all cleared "
            "chance at 8 steps with seed 0 (1.0000) but not") in message
    assert sorted(worker.seen[2:]) == [("full", 8, 1), ("lora", 8, 1)] and worker.most_in_flight == 2
    rung = study.user_attrs[storage.PROBE]["rungs"][0]
    assert {name: r["again"]["above"] for name, r in rung["results"].items()} == {"full": False,
                                                                                 "lora-r16-all": False}


class _FastAndSlowLearner(_SeedLuck):
    """LoRA learns the task outright from 8 steps; full fine-tuning gets only half of the minority class right at 8
    steps and all of it from 16 on, whatever the seed: a fast learner that has levelled off beside a slow one still
    climbing."""

    def submit(self, request) -> None:
        import numpy as np

        from autopeft.search.trial import TrialResult
        from autopeft.store.predictions import LABELS, encode

        self.seen.append((request.config["method"], request.steps, request.seed))
        predicted = np.zeros_like(self.gold)
        if request.steps >= 8 and (request.config["method"] == "lora" or request.steps >= 16):
            predicted = self.gold.copy()
        elif request.steps >= 8:  # full fine-tuning at 8 steps: the first half of the minority class
            minority = np.flatnonzero(self.gold == 1)
            predicted[minority[: len(minority) // 2]] = 1
        self.done.append(TrialResult(number=request.number, ok=True, predictions=encode(LABELS, predicted),
                                     measurements={"accuracy": float((predicted == self.gold).mean()),
                                                   "trainable_params": 1000.0}))


def test_a_doubling_pays_while_any_reference_still_gains(tmp_path):
    """LoRA reads the same at 8 and 16 steps, full fine-tuning rises from 0.8 to 1.0: each reference is compared
    with itself a rung before, so the ladder climbs past 8 and stops where neither gains (32 did not pay)."""
    import numpy as np
    import optuna

    from autopeft.results.chance import ChanceLevel
    from autopeft.search.probe import find_steps
    from autopeft.store.predictions import LABELS, EvalTargets

    gold = np.array([0] * 120 + [1] * 80)
    spec = parse_spec(tiny_spec(tmp_path, constraints=[], budget={
        "trials": 4, "steps_per_trial": "auto",
        "probe": {"start_steps": 4, "max_steps": 64, "references": ["full", "lora-r16-all"]}}))
    study = optuna.create_study(directions=["maximize", "minimize"])
    worker = _FastAndSlowLearner(gold)
    outcome = find_steps(study, spec, worker, ChanceLevel({"accuracy": 0.6}, len(gold), "always '0'"),
                         EvalTargets(LABELS, gold, num_labels=2))
    rungs = {r.steps: {name: res["accuracy"] for name, res in r.results.items()} for r in outcome.rungs}
    assert rungs[8] == {"full": 0.8, "lora-r16-all": 1.0} and rungs[16] == {"full": 1.0, "lora-r16-all": 1.0}
    assert outcome.chosen == 16 and sorted(rungs) == [4, 8, 16, 32]
    assert outcome.reason == "doubling to 32 steps did not pay beyond noise for any reference"


class _LearnsALittle(_SeedLuck):
    """From 8 steps on, whatever the seed, every run gets 5 of the 80 minority labels right: 0.625 against chance
    0.6, which clears chance as one run and not as the best of 200 trials."""

    def submit(self, request) -> None:
        import numpy as np

        from autopeft.search.trial import TrialResult
        from autopeft.store.predictions import LABELS, encode

        self.seen.append((request.config["method"], request.steps, request.seed))
        predicted = np.zeros_like(self.gold)
        if request.steps >= 8:
            predicted[np.flatnonzero(self.gold == 1)[:5]] = 1
        self.done.append(TrialResult(number=request.number, ok=True, predictions=encode(LABELS, predicted),
                                     measurements={"accuracy": float((predicted == self.gold).mean()),
                                                   "trainable_params": 1000.0}))


def test_a_reference_that_learns_too_little_for_a_large_search_to_show_stops_it(tmp_path):
    """The reference clears chance as one run, but the best of a 200-trial search would need more to be told
    from luck: the probe does not choose that fidelity, and the message says how far each run got, against which
    bar, and what to try. The same learning is enough for a search of 4 trials, which then runs at 8 steps."""
    import numpy as np
    import optuna

    from autopeft.results.chance import ChanceLevel
    from autopeft.search.probe import find_steps
    from autopeft.store.predictions import LABELS, EvalTargets

    gold = np.array([0] * 120 + [1] * 80)
    probe = {"start_steps": 4, "max_steps": 16, "references": ["full"]}
    study, message = _stopped_probe(tmp_path, _LearnsALittle(gold), probe, trials=200)
    rungs = study.user_attrs[storage.PROBE]["rungs"]
    assert [r["search_trials"] for r in rungs] == [200, 200, 200]
    eight = rungs[1]["results"]["full"]
    assert eight["accuracy"] == 0.625 and not eight["above"] and eight["alone_bar"] < 0.625 < eight["bar"]
    assert (f"full 0.6250 at 8 steps cleared chance as one run (bar {eight['alone_bar']:.4f}), not the "
            f"{eight['bar']:.4f} that the best of about 200 searched trials needs") in message
    assert "could not be told from luck" in message
    assert "fewer trials, whose best faces a lower bar (budget.trials" in message
    assert study.user_attrs[storage.PROBE]["reason"].startswith(
        "probe.max_steps reached, and no reference cleared chance by the margin a search's best point needs (full "
        "0.6250 at 8 steps cleared chance as one run")

    spec = parse_spec(tiny_spec(tmp_path, constraints=[], budget={"trials": 4, "steps_per_trial": "auto",
                                                                  "probe": probe}))
    outcome = find_steps(optuna.create_study(directions=["maximize", "minimize"]), spec, _LearnsALittle(gold),
                         ChanceLevel({"accuracy": 0.6}, len(gold), "always '0'"),
                         EvalTargets(LABELS, gold, num_labels=2))
    assert outcome.chosen == 8 and outcome.rungs[1].results["full"]["above"]


def test_the_search_trials_a_rung_expects_come_from_its_budget_and_its_wall_clock(tmp_path):
    """Two workers, a 20-minute search, references that took 100 s side by side: about 24 trials at those steps;
    one worker trains the two references one after the other, so each took 50 s: 24 again. Without a wall clock
    the budget's trials; never more than them."""
    from autopeft.search.probe import expected_search_trials

    timed = parse_spec(tiny_spec(tmp_path, budget={"trials": 200, "steps_per_trial": "auto",
                                                   "wall_clock_minutes": 20}))
    assert expected_search_trials(timed, capacity=2, references=2, rung_seconds=100.0) == 24
    assert expected_search_trials(timed, capacity=1, references=2, rung_seconds=100.0) == 24
    assert expected_search_trials(timed, capacity=2, references=2, rung_seconds=1.0) == 200
    untimed = parse_spec(tiny_spec(tmp_path, budget={"trials": 200, "steps_per_trial": "auto"}))
    assert expected_search_trials(untimed, capacity=2, references=2, rung_seconds=100.0) == 200
