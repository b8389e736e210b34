"""The live Pareto front: any two measurements as axes, the front as a staircase, click a point to open it."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from autopeft.objectives import MEASUREMENTS
from autopeft.results.noise import ADVICE
from autopeft.results.views import (
    counted,
    near_bar_sentence,
    probe_sentence,
    probe_stopped,
    retrained_sentence,
    unanswered_sentence,
    untouched_sentence,
)
from autopeft.spec import SearchSpec
from dashboard import analysis, cache, navigation
from dashboard.views import Context


def counts_row(trials: pd.DataFrame, front_size: int) -> None:
    """The headline counts of the search's own trials, every one read from the database; baselines and probe runs
    are reference points outside the budget and the front, counted apart (as `autopeft search list` does)."""
    baselines, probes = trials["baseline"].astype(bool), analysis.probe_runs(trials)
    searched = trials[~baselines & ~probes]
    states = searched["state"].value_counts()
    cols = st.columns(6)
    cols[0].metric("Trials", len(searched))
    cols[1].metric("Complete", int(states.get("COMPLETE", 0)))
    cols[2].metric("Running", int(states.get("RUNNING", 0)))
    cols[3].metric("Failed", int(states.get("FAIL", 0)))
    cols[4].metric("Pruned", int(states.get("PRUNED", 0)))
    cols[5].metric("On the front", front_size)
    apart = {"baseline": int(baselines.sum()), "probe run": int((probes & ~baselines).sum())}
    if any(apart.values()):
        counted = " and ".join(f"{n} {what}{'s' if n > 1 else ''}" for what, n in apart.items() if n)
        points = "reference points" if sum(apart.values()) > 1 else "a reference point"
        st.caption(f"Besides these: {counted}, {points} outside the budget and the front.")


def axis_choices(trials: pd.DataFrame, spec: SearchSpec) -> list[str]:
    """The search's objectives first, then every other measurement some trial has."""
    measured = [m for m in MEASUREMENTS if m in trials and trials[m].notna().any()]
    return list(dict.fromkeys([*spec.objective_names, *measured]))


def say_noise(report: dict | None) -> None:
    """Where the front stands against chance, in the words ``autopeft search show`` uses: an error when nothing
    was learned, a warning naming the points within noise, nothing when the whole front is clearly above it."""
    if report is None:
        return
    if report["nothing_learned"]:
        st.error(f"**No configuration learned the task above chance.** Every front point is within noise of "
                 f"chance ({report['metric']} {report['chance']:.4f}, {report['predicts']}) after "
                 f"{counted(report['trials'], 'trial')}: this front is noise, not a result. Try {ADVICE}.")
    elif report["not_above_chance"]:
        doubtful = report["not_above_chance"]
        retrained = [n for n in doubtful if report["tests"][str(n)]["method"] == "confirmed"]
        advice = (" They may be luck, not learning; confirm them with more seeds (`autopeft confirm`) before "
                  "trusting them." if len(retrained) < len(doubtful) else "")
        again = f" Retrained with new seeds and at chance: {', '.join(map(str, retrained))}." if retrained else ""
        st.warning(f"Front points within noise of chance ({report['metric']} {report['chance']:.4f}): trials "
                   f"{', '.join(map(str, doubtful))}.{advice}{again}")
    for sentence in (retrained_sentence(report), near_bar_sentence(report), untouched_sentence(report),
                     unanswered_sentence(report)):
        if sentence:
            st.info(sentence)
    matched = report["matched_within_noise"]
    if matched:
        st.caption("Matched within noise by a cheaper front point (paired bootstrap): "
                   + ", ".join(f"trial {n} by trial {q}" for n, q in matched.items()) + ".")


def say_probe(probe: dict | None) -> None:
    """The learnability probe's decision in the words ``autopeft search show`` uses: an error when it found nothing
    learnable (the search stopped before its budget, so there is no front), a caption with the steps it chose."""
    sentence = probe_sentence(probe)
    if sentence is None:
        return
    if probe_stopped(probe):
        st.error("**Nothing learnable: the learnability probe stopped this search before it spent its budget**, "
                 "so it has no front; the probe's runs are drawn as open triangles. " + sentence + " Try more data, "
                 "another model, or a larger probe (budget.probe.max_steps, budget.probe.minutes).")
    else:
        st.caption(sentence)


def render(ctx: Context) -> None:
    trials, spec = cache.trials(ctx.url, ctx.search)
    st.header(f"Pareto front — {ctx.search}")
    listed = next((s for s in cache.searches(ctx.url) if s.name == ctx.search), None)
    say_probe(listed.probe if listed else None)
    for note in listed.data_notes if listed else []:
        st.warning(f"**Data note** (when the search started): {note}")
    choices = axis_choices(trials, spec)
    left, right, _ = st.columns([1, 1, 2])
    default_x = spec.objective_names[1] if len(spec.objective_names) > 1 else choices[0]
    x = left.selectbox("x axis", choices, index=choices.index(default_x), key="front_x")
    y = right.selectbox("y axis", choices, index=choices.index(spec.objective_names[0]), key="front_y")
    on_front = analysis.front(trials, spec, [x, y])
    counts_row(trials, int(on_front.sum()))
    if trials.dropna(subset=[x, y]).empty:
        st.info("No trial has finished yet; the front appears with the first completed trial.")
        return
    chance = cache.chance_metrics(ctx.url, ctx.search)
    say_noise(cache.noise_report(ctx.url, ctx.search))
    event = st.plotly_chart(cache.pareto(ctx.url, ctx.search, x, y), key="pareto_chart",
                            on_select="rerun", selection_mode="points", width="stretch")
    st.caption("Front points are large and outlined, dominated points faded, infeasible ones red crosses, pruned "
               "ones open diamonds, baselines stars, the learnability probe's runs open triangles. Parameter counts "
               "and sizes are on a log scale. "
               + ("The dotted line is chance: the constant prediction's score. " if {x, y} & set(chance) else "")
               + ("The dashed line is the untouched model: the base with no adapter trained. "
                  if {x, y} & set(cache.untouched_metrics(ctx.url, ctx.search)) else "")
               + "Click a point to open its trial.")
    clicked = navigation.clicked_trial(event)
    if clicked is not None:
        navigation.open_trial(clicked)
    st.dataframe(trials.loc[on_front, ["number", "method", "configuration", *dict.fromkeys([x, y])]]
                 .sort_values(x), hide_index=True, width="stretch")
