"""Pick winners (the knee, the best under a parameter budget, or by hand) and download them as an export."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from autopeft.spec import SearchSpec
from dashboard import analysis, bundle, cache, figures, navigation
from dashboard.views import Context
from dashboard.views.front import say_noise

MODES = ("knee point", "best under a budget", "by hand", "whole front")


def _picks(trials: pd.DataFrame, spec: SearchSpec, mode: str, noise: dict | None) -> list[int]:
    front_numbers = trials.loc[analysis.front(trials, spec), "number"].tolist()
    if noise is not None and mode != "whole front":
        # As `autopeft export --pick`: points within noise of chance (unless asked for, as --include-chance), and
        # points a cheaper one matches within noise, are not candidates.
        at_chance = set(noise["not_above_chance"])
        if st.checkbox("include points within noise of chance", key="include_chance"):
            at_chance = set()
        left_out = at_chance | {int(n) for n, q in noise["matched_within_noise"].items() if q not in at_chance}
        # Chosen among the front's own points: dropping a front point must not bring back one it dominated.
        trials = trials[trials["number"].isin(front_numbers) & ~trials["number"].isin(left_out)]
        if not analysis.front(trials, spec).any():
            st.warning("Every front point is within noise of chance: there is nothing to pick (tick the box to "
                       "pick among them anyway).")
            return []
    if mode == "knee point":
        knee = analysis.knee(trials, spec)
        return [] if knee is None else [knee]
    if mode == "best under a budget":
        costs = [n for n in spec.objective_names if n != spec.task_metric] or ["trainable_params"]
        cost = st.selectbox("budget on", costs, key="budget_name")
        values = trials.loc[analysis.candidates(trials), cost].dropna()
        limit = st.number_input(f"at most ({cost})", min_value=0.0, value=float(values.median()),
                                step=float(max(1.0, values.median() / 10)), key="budget_value")
        best = analysis.best_under_budget(trials, spec, cost, limit)
        if best is None:
            st.warning("No feasible completed trial fits this budget.")
        return [] if best is None else [best]
    return front_numbers


def _by_hand(trials: pd.DataFrame, spec: SearchSpec, x: str, y: str) -> list[int]:
    """Front trials picked by clicking, box- or lasso-selecting on the chart, or in the list under it."""
    front_numbers = trials.loc[analysis.front(trials, spec), "number"].tolist()
    current = [n for n in st.session_state.get("hand_picked", front_numbers[:1]) if n in front_numbers]
    # The chart's selection is in the session state before the chart is drawn, so the highlight and the list
    # (drawn after the chart) follow a new selection in this run; an unchanged one leaves the list as edited.
    selection = st.session_state.get("pick_chart_hand")
    selected = sorted({n for n in navigation.selected_trials(selection) if n in front_numbers})
    if selected and selected != st.session_state.get("_hand_selection"):
        current = selected
    st.session_state["_hand_selection"] = selected
    st.session_state["hand_picked"] = current
    st.plotly_chart(figures.pareto(trials, spec, x, y, highlight=current), key="pick_chart_hand",
                    on_select="rerun", selection_mode=("points", "box", "lasso"), width="stretch")
    st.caption("Click front points (shift-click for more) or draw a box or lasso around them.")
    return st.multiselect("front trials", front_numbers, key="hand_picked")


def render(ctx: Context) -> None:
    trials, spec = cache.trials(ctx.url, ctx.search)
    st.header(f"Pick and export — {ctx.search}")
    if not analysis.front(trials, spec).any():
        st.info("No completed feasible trial to pick yet.")
        return
    noise = cache.noise_report(ctx.url, ctx.search)
    say_noise(noise)
    mode = st.radio("pick", MODES, horizontal=True, key="pick_mode")
    x = spec.objective_names[1] if len(spec.objective_names) > 1 else spec.objective_names[0]
    y = spec.objective_names[0]
    if mode == "by hand":
        picked = _by_hand(trials, spec, x, y)
    else:
        picked = _picks(trials, spec, mode, noise)
        st.plotly_chart(figures.pareto(trials, spec, x, y, highlight=picked), key="pick_chart", width="stretch")
    if not picked:
        return
    chosen = trials[trials["number"].isin(picked)]
    st.dataframe(chosen[["number", "method", "configuration", *spec.objective_names, "adapter_dir"]],
                 hide_index=True, width="stretch")
    on_front = set(trials.loc[analysis.front(trials, spec), "number"])
    if not on_front.issuperset(picked):
        st.warning("This pick is not on the Pareto front of all objectives; the export (front trials only, as "
                   "`autopeft export`) does not include it.")
        picked = [n for n in picked if n in on_front]
        if not picked:
            return
    st.caption("The archive holds what `autopeft export` writes — peft adapter folders with config.yaml, "
               "metrics.json and a README, plus summary.csv and summary.md — for the picked front trials.")
    label = "whole front" if mode == "whole front" else \
        f"trial{'s' if len(picked) > 1 else ''} {', '.join(map(str, picked))}"
    st.download_button(f"Download export ({label})", key="download_export", mime="application/zip",
                       file_name=f"{ctx.search}-export.zip", icon=":material/download:",
                       data=lambda: bundle.export_zip(ctx.url, ctx.search,
                                                      None if mode == "whole front" else list(picked)))
