"""Understanding the space: parallel coordinates, which methods reach the front, which parameters matter."""

from __future__ import annotations

import streamlit as st

from dashboard import analysis, cache, figures
from dashboard.views import Context


def render(ctx: Context) -> None:
    trials, spec = cache.trials(ctx.url, ctx.search)
    st.header(f"Understanding the space — {ctx.search}")
    if not (trials["state"] == "COMPLETE").any():
        st.info("No trial has completed yet.")
        return
    st.subheader("Parallel coordinates")
    st.caption(f"Completed trials; colour is {spec.task_metric}. Drag along an axis to filter.")
    st.plotly_chart(figures.parallel_coordinates(trials, spec), key="parcoords", width="stretch")
    st.subheader("Per method")
    breakdown = analysis.method_breakdown(trials, spec)
    left, right = st.columns([3, 2])
    left.dataframe(breakdown, hide_index=True, width="stretch")
    right.plotly_chart(figures.method_front_counts(breakdown), key="method_front", width="stretch")
    st.subheader("Parameter importance per objective")
    st.caption("Share of each objective's variance that a parameter explains on its own (correlation ratio η² "
               "over completed trials; numeric parameters in 8 quantile bins). Model-free and instant; it does "
               "not see interactions between parameters.")
    columns = st.columns(len(spec.objective_names))
    for column, objective in zip(columns, spec.objective_names):
        table = analysis.importance(trials, objective)
        if table.empty:
            column.caption(f"{objective}: not enough variety yet.")
        else:
            column.plotly_chart(figures.importance(table, objective), key=f"importance_{objective}", width="stretch")
