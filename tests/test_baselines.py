"""`autopeft baselines` on a real search: the six standard configurations trained by the real worker into the
study, outside its budget and its front, and compared with the front."""

from __future__ import annotations

import json

from autopeft.results.baselines import STANDARD, compare
from autopeft.results.pareto import pareto_front
from autopeft.results.views import search_summary
from autopeft.store import storage
from tests.conftest import ROOT, tiny_spec
from tests.conftest import run_cli as cli


def test_baselines_are_trained_marked_and_compared(small_search, capsys):
    _, url, name = small_search
    study, spec = storage.load_search(storage.open_storage(url), name)
    before = storage.trial_records(study, spec)
    front_before = [r.number for r in pareto_front(before, spec)]

    code, out, err = cli(capsys, "baselines", name, "--executor", "local", "--json", "--storage", url)
    assert code == 0, err
    rows = json.loads(out)
    assert sorted(row["baseline"] for row in rows) == sorted(STANDARD)

    records = storage.trial_records(study, spec)
    added = [r for r in records if r.baseline]
    assert len(added) == len(STANDARD) and all(r.state == "COMPLETE" for r in added)
    params = {r.baseline: r.measurements["trainable_params"] for r in added}
    # Real builds: full fine-tuning trains every weight, BitFit and IA3 far fewer than LoRA r=8 on q,v.
    assert params["full"] > 2e7 and params["ia3"] < params["lora-r8-qv"] and params["bitfit"] < params["full"]
    for record in added:
        assert record.values["trainable_params"] == record.measurements["trainable_params"]
        assert 0.0 <= record.values["accuracy"] <= 1.0 and record.adapter_dir
        assert record.loss_curve[-1][0] == spec.budget.steps_per_trial  # the search's fidelity
    # Each dated when it ran, not when it was stored: one after another on the local executor, each lasting at
    # least its measured training and evaluation (the dashboard's timeline draws these bars).
    ran = sorted((t for t in study.get_trials() if t.user_attrs.get(storage.BASELINE)), key=lambda t: t.number)
    for trial, after in zip(ran, ran[1:]):
        assert trial.datetime_complete <= after.datetime_start, (trial.number, after.number)
    for trial in ran:
        measured = trial.user_attrs[storage.MEASUREMENTS]
        assert trial.duration.total_seconds() >= measured["train_time_s"] + measured["eval_time_s"], trial.number

    # Not part of the search: the budget, the front and the summary are what they were.
    assert sum(storage.counts_against_budget(t) for t in study.get_trials()) == spec.budget.trials
    assert [r.number for r in pareto_front(records, spec)] == front_before
    summary = search_summary(study, spec)
    assert summary["complete"] == len(before) and summary["baselines"] == len(STANDARD)

    # The report agrees with the definition: a covering front trial has at least the metric at no more params.
    by_number = {r.number: r for r in records}
    for row in compare(records, spec):
        baseline = by_number[row["trial"]]
        covering = [r for r in pareto_front(records, spec)
                    if r.values["accuracy"] >= baseline.values["accuracy"]
                    and r.values["trainable_params"] <= baseline.values["trainable_params"]]
        assert (row["matched_by"] is not None) == bool(covering)

    # Running it again trains nothing new.
    code, out, _ = cli(capsys, "baselines", name, "--executor", "local", "--only", "ia3", "--storage", url)
    assert code == 0 and "matches or dominates" in out
    assert len([r for r in storage.trial_records(study, spec) if r.baseline]) == len(STANDARD)


def test_unknown_baseline_is_a_one_line_error(small_search, capsys):
    _, url, name = small_search
    code, _, err = cli(capsys, "baselines", name, "--only", "lora-r16", "--storage", url)
    assert code == 2 and err.startswith("error: --only") and err.count("\n") == 1


def test_a_baseline_the_model_cannot_take_is_refused_before_training(tmp_path):
    """BitFit on a LLaMA decoder (no bias terms): not trained, not stored, and its reason is heard; the others are
    checked the same way and pass."""
    import optuna

    from autopeft.results.baselines import refusals, train_baselines
    from autopeft.spec import SearchSpec
    from tests.test_generation import tiny_decoder

    boolq = ROOT / "examples" / "data" / "boolq"
    tiny_decoder(tmp_path, json.loads((boolq / "train.json").read_text()))
    spec = SearchSpec.model_validate({
        **tiny_spec(tmp_path), "model": {"name_or_path": str(tmp_path), "task": "causal-lm"},
        "data": {"train": str(boolq / "train.json"), "eval": str(boolq / "test.json"), "max_length": 96},
        "objectives": [{"name": "answer_accuracy"}, {"name": "trainable_params"}], "constraints": []})
    study = optuna.create_study(directions=["maximize", "minimize"])
    refused = refusals(study, spec, list(STANDARD))
    assert list(refused) == ["bitfit"] and "bias" in refused["bitfit"]
    heard = []
    assert train_baselines(study, spec, ["bitfit"], executor="local", on_refused=lambda *a: heard.append(a)) == []
    assert heard == [("bitfit", refused["bitfit"])] and study.trials == []
    # a model that cannot be loaded is an error naming the field, not every baseline "refused" for it
    import pytest

    from autopeft.errors import UserError

    gone = spec.model_copy(update={"model": spec.model.model_copy(update={"name_or_path": str(tmp_path / "gone")})})
    with pytest.raises(UserError, match="model.name_or_path"):
        refusals(study, gone, list(STANDARD))


def test_a_baseline_at_chance_is_held_by_a_dearer_point_above_chance_not_the_cheapest_at_chance():
    """Seen on a new task: IA3 at chance (0.518 @ 14,594) was reported "both at chance" against the front's
    cheapest point (0.520 @ 1,378, at chance) although a front point at 3,842 parameters scored 0.672, clearly
    above chance. The dearer point within the baseline's cost holds it."""
    from autopeft.results.chance import ChanceTest
    from autopeft.results.noise import NoiseReport
    from autopeft.spec import SearchSpec

    spec = SearchSpec.model_validate(tiny_spec(ROOT))

    def record(number: int, accuracy: float, params: float, baseline: str | None = None) -> storage.TrialRecord:
        return storage.TrialRecord(number=number, state="COMPLETE", config={"method": "lora"},
                                   values={"accuracy": accuracy, "trainable_params": params},
                                   measurements={"accuracy": accuracy, "trainable_params": params},
                                   fail_reason=None, adapter_dir=None, feasible=True, baseline=baseline)

    records = [record(38, 0.520, 1378), record(27, 0.672, 3842), record(101, 0.518, 14594, baseline="ia3")]
    bar = 0.566
    noise = NoiseReport("accuracy", True, None, 2, [38, 27],
                        tests={n: ChanceTest(v, bar, v > bar, "permutation")
                               for n, v in ((38, 0.520), (27, 0.672), (101, 0.518))})
    [row] = compare(records, spec, noise)
    assert row["matched_by"] == 27 and row["at_chance"] == ["baseline"]
    # Without a point above chance under its cost, the nearest one is named and is not a match.
    [row] = compare([records[0], records[2]], spec, NoiseReport(
        "accuracy", True, None, 1, [38], tests={n: noise.tests[n] for n in (38, 101)}))
    assert row["matched_by"] is None and row["nearest_front_trial"] == 38 and row["at_chance"] == ["baseline", "front"]
