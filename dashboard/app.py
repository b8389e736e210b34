"""The autopeft dashboard. Start it with `autopeft dashboard [--storage URL]`.

The sidebar picks a search and a view; the view draws from the database through read-only, briefly cached SQL.
While the chosen search is running, the view is a fragment that redraws itself every few seconds, so the page
never reloads and widget choices (axes, filters) survive each refresh.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `streamlit run` puts only dashboard/ on the path

from dashboard import access, cache, data, navigation  # noqa: E402
from dashboard.views import Context, compare, front, pick, progress, searches, space, trial, trials  # noqa: E402

RENDERERS = {"Searches": searches.render, "Pareto front": front.render, "Progress": progress.render,
             "Trials": trials.render, "Trial": trial.render, "Space": space.render, "Compare": compare.render,
             "Pick and export": pick.render}
REFRESH_S = 3


def sidebar(url: str, found: list[data.Search]) -> tuple[str | None, str, bool]:
    """Search and view pickers; returns (search, view, live)."""
    st.sidebar.title("autopeft")
    names = [s.name for s in found]
    chosen = None
    if names:
        if st.session_state.get("search") not in names:
            running = [s.name for s in found if s.state == "running"]
            st.session_state["search"] = (running or names)[-1]
        chosen = st.sidebar.selectbox("search", names, key="search")
    if st.session_state.get("view") not in navigation.VIEWS:
        st.session_state["view"] = "Pareto front" if names else "Searches"
    view = st.sidebar.radio("view", navigation.VIEWS, key="view")
    state = next((s.state for s in found if s.name == chosen), None)
    live = state == "running" and st.sidebar.toggle("live refresh", value=True, key="live",
                                                    help=f"Redraw every {REFRESH_S} s while the search runs.")
    if state:
        st.sidebar.caption(f"{chosen}: {state}" + (f", refreshing every {REFRESH_S} s" if live else ""))
    from autopeft.storage import mask_url  # the password never reaches the page

    st.sidebar.caption(f"database: `{mask_url(url)}` (read-only)")
    return chosen, view, live


def main() -> None:
    st.set_page_config(page_title="autopeft", page_icon=":material/scatter_plot:", layout="wide")
    if not access.allowed():
        return
    navigation.apply_link()
    navigation.apply_request()
    url = data.default_storage_url()
    try:
        found = cache.searches(url)
    except data.StorageUnavailable as exc:
        st.error(f"Cannot read the trial database: {exc}")
        return
    chosen, view, live = sidebar(url, found)
    ctx = Context(url=url, search=chosen, searches=tuple(found), live=live)
    if chosen is None and view != "Searches":
        st.info("No searches in this database yet. Start one with `autopeft search run SPEC`.")
        return
    render = guarded(RENDERERS[view])
    if live and view != "Pick and export":
        st.fragment(lambda: live_body(render, ctx), run_every=REFRESH_S)()
    else:
        render(ctx)


def guarded(render: Callable[[Context], None]) -> Callable[[Context], None]:
    """A view that cannot read its search (unreadable spec, database gone) says so instead of failing the page."""
    def run(ctx: Context) -> None:
        try:
            render(ctx)
        except data.StorageUnavailable as exc:
            st.error(f"Cannot show {ctx.search!r}: {exc}")
    return run


def live_body(render: Callable[[Context], None], ctx: Context) -> None:
    """One live redraw of the view; when the search stops running, the whole page redraws once and stays still."""
    state = next((s.state for s in cache.searches(ctx.url) if s.name == ctx.search), None)
    if state != "running":
        st.rerun()
    render(ctx)


main()
