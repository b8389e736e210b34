"""How the search is going: hypervolume against trials and against wall time, and what each worker ran when."""

from __future__ import annotations

import streamlit as st

from autopeft.results.views import counted
from dashboard import analysis, cache, figures, navigation
from dashboard.views import Context


def render(ctx: Context) -> None:
    trials, spec = cache.trials(ctx.url, ctx.search)
    st.header(f"Progress — {ctx.search}")
    history = analysis.hypervolume_history(trials, spec)
    if history.empty:
        st.info("No feasible trial has completed yet.")
    else:
        st.caption(f"Hypervolume of the feasible completed trials over {', '.join(spec.objective_names)} "
                   "(normalised to the search's range, reference point 1.1; parameter counts in log10). "
                   f"Now {history['hypervolume'].iloc[-1]:.4f} after {counted(len(history), 'trial')}.")
        left, right = st.columns(2)
        left.plotly_chart(figures.hypervolume(history, "completed"), key="hv_trials", width="stretch")
        right.plotly_chart(figures.hypervolume(history, "complete"), key="hv_time", width="stretch")
    st.subheader("Trials over time per worker")
    if trials["start"].notna().any():
        event = st.plotly_chart(figures.worker_timeline(trials), key="timeline", on_select="rerun",
                                selection_mode="points", width="stretch")
        clicked = navigation.clicked_trial(event)
        if clicked is not None:
            navigation.open_trial(clicked)
    else:
        st.info("No trial has started yet.")
