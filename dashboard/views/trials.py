"""Every trial in a sortable, filterable table; select a row to open its page."""

from __future__ import annotations

import streamlit as st

from dashboard import analysis, cache, navigation
from dashboard.views import Context

COLUMNS = ["number", "state", "warm_start", "method", "layers", "modules", "rank", "bottleneck", "prefix_length",
           "sparsity", "bits", "learning_rate"]


def render(ctx: Context) -> None:
    trials, spec = cache.trials(ctx.url, ctx.search)
    st.header(f"Trials — {ctx.search}")
    trials = trials.assign(pareto=analysis.front(trials, spec))
    a, b, c, d = st.columns([2, 2, 3, 1])
    states = a.multiselect("state", sorted(trials["state"].unique()), key="filter_state")
    methods = b.multiselect("method", sorted(trials["method"].dropna().unique()), key="filter_method")
    text = c.text_input("configuration or failure contains", key="filter_text")
    only_front = d.checkbox("front only", key="filter_front")
    shown = trials
    if states:
        shown = shown[shown["state"].isin(states)]
    if methods:
        shown = shown[shown["method"].isin(methods)]
    if text:
        haystack = shown["configuration"].fillna("") + " " + shown["fail_reason"].fillna("")
        shown = shown[haystack.str.contains(text, case=False, regex=False)]
    if only_front:
        shown = shown[shown["pareto"]]
    columns = [c for c in COLUMNS if c in shown and (c in ("number", "state") or shown[c].notna().any())]
    columns += [*spec.objective_names, *[m for m in ("peak_memory_mb", "train_time_s") if m not in
                                         spec.objective_names], "pareto", "fail_reason"]
    st.caption(f"{len(shown)} of {len(trials)} trials. Click a column header to sort; select a row to open it.")
    event = st.dataframe(
        shown[columns], hide_index=True, width="stretch", height=560, on_select="rerun", selection_mode="single-row",
        key="trials_table", column_config={"learning_rate": st.column_config.NumberColumn(format="%.2e"),
                                           "trainable_params": st.column_config.NumberColumn(format="%d")})
    rows = event.selection.rows if event else []
    if rows:
        navigation.open_trial(int(shown["number"].iloc[rows[0]]))
