"""Several searches' fronts on one plot: two spaces, two samplers, two models on the same task."""

from __future__ import annotations

import streamlit as st

from dashboard import analysis, cache, figures
from dashboard.views import Context
from dashboard.views.front import axis_choices


def render(ctx: Context) -> None:
    st.header("Compare searches")
    names = ctx.names()
    default = [n for n in [ctx.search] if n] + [n for n in names if n != ctx.search][:2]
    chosen = st.multiselect("searches", names, default=default, key="compare_searches")
    if not chosen:
        st.info("Choose one or more searches.")
        return
    loaded = {name: cache.trials(ctx.url, name) for name in chosen}
    first_trials, first_spec = loaded[chosen[0]]
    common = [c for c in axis_choices(first_trials, first_spec)
              if all(c in trials and trials[c].notna().any() for trials, _ in loaded.values())]
    if len(common) < 2:
        st.warning("These searches share fewer than two measured quantities.")
        return
    left, right, _ = st.columns([1, 1, 2])
    x = left.selectbox("x axis", common, index=min(1, len(common) - 1), key="compare_x")
    y = right.selectbox("y axis", common, index=0, key="compare_y")
    fronts = {}
    for name, (trials, spec) in loaded.items():
        fronts[name] = trials[analysis.front(trials, spec, [x, y])]
    st.plotly_chart(figures.compare(fronts, x, y, first_spec), key="compare_chart", width="stretch")
    st.caption("Each search's front on these two axes, with its number of front trials in the legend.")
