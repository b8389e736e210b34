"""All searches in the database: state, trials done / running / failed / pruned, best metric, elapsed time."""

from __future__ import annotations

import streamlit as st

from dashboard import cache, data, navigation
from dashboard.views import Context


def render(ctx: Context) -> None:
    st.header("Searches")
    table = data.searches_frame(cache.searches(ctx.url))
    if table.empty:
        st.info("No searches in this database yet. Start one with `autopeft search run SPEC`.")
        return
    st.caption(f"{len(table)} searches in `{ctx.url}`. Select a row to open its Pareto front.")
    event = st.dataframe(
        table, hide_index=True, width="stretch", on_select="rerun", selection_mode="single-row", key="searches_table",
        column_config={"best": st.column_config.NumberColumn(format="%.4f"),
                       "elapsed_min": st.column_config.NumberColumn("elapsed (min)", format="%.1f"),
                       "started": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm")})
    rows = event.selection.rows if event else []
    if rows:
        navigation.open_search(str(table["search"].iloc[rows[0]]))
