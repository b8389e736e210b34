"""The autopeft dashboard. Start it with `autopeft dashboard [--storage URL] [--allow-launch]`.

The sidebar picks a search and a view; the view draws from the database through read-only, briefly cached SQL.
While the chosen search is running, the view is a fragment that redraws itself every few seconds, so the page
never reloads and widget choices (axes, filters) survive each refresh. With launching on, the New search view and
the Searches view's manage panel launch and manage searches as Ray jobs (``dashboard.launching``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `streamlit run` puts only dashboard/ on the path

from dashboard import access, cache, data, launching, navigation  # noqa: E402
from dashboard.views import (  # noqa: E402
    Context,
    compare,
    front,
    launch,
    pick,
    progress,
    searches,
    space,
    trial,
    trials,
)

RENDERERS = {"Searches": searches.render, "New search": launch.render, "Pareto front": front.render,
             "Progress": progress.render, "Trials": trials.render, "Trial": trial.render, "Space": space.render,
             "Compare": compare.render, "Pick and export": pick.render}
# Views that need no chosen search; views never redrawn by the live refresh (the Searches view with launching on
# refreshes itself while any of its searches or jobs is busy).
NO_SEARCH = ("Searches", "New search")
NOT_LIVE = ("Pick and export", "New search")
REFRESH_S = searches.REFRESH_S


def sidebar(url: str, found: list[data.Search], launch_on: bool) -> tuple[str | None, str, bool]:
    """Search and view pickers; returns (search, view, live)."""
    st.sidebar.title("autopeft")
    names = [s.name for s in found]
    chosen = None
    if names:
        if st.session_state.get("search") not in names:
            running = [s.name for s in found if s.state == "running"]
            st.session_state["search"] = (running or names)[-1]
        chosen = st.sidebar.selectbox("search", names, key="search")
    views = navigation.views(launch_on)
    if st.session_state.get("view") not in views:
        st.session_state["view"] = "Pareto front" if names else ("New search" if launch_on else "Searches")
    view = st.sidebar.radio("view", views, key="view")
    state = next((s.state for s in found if s.name == chosen), None)
    live = state == "running" and st.sidebar.toggle("live refresh", value=True, key="live",
                                                    help=f"Redraw every {REFRESH_S} s while the search runs.")
    if state:
        st.sidebar.caption(f"{chosen}: {state}" + (f", refreshing every {REFRESH_S} s" if live else ""))
    if launch_on:
        st.sidebar.text_input("your name", key="launched_by_name",
                              help="Recorded with the searches and jobs you launch from this page.")
    from autopeft.store.storage import mask_url  # the password never reaches the page

    st.sidebar.caption(f"database: `{mask_url(url)}` (read-only" + ("; launching on: searches run as Ray jobs)"
                                                                      if launch_on else ")"))
    return chosen, view, live


def main() -> None:
    st.set_page_config(page_title="autopeft", page_icon=":material/scatter_plot:", layout="wide")
    if not access.allowed():
        return
    navigation.apply_link()
    navigation.apply_request()
    url = data.default_storage_url()
    launch_on = launching.enabled()
    try:
        found = cache.searches(url)
    except data.StorageUnavailable as exc:
        if not launch_on:
            st.error(f"Cannot read the trial database: {exc}")
            return
        found = []  # nothing launched yet (the first search's job creates the database)
        st.sidebar.caption(f"database: {exc}")
    chosen, view, live = sidebar(url, found, launch_on)
    ctx = Context(url=url, search=chosen, searches=tuple(found), live=live)
    if chosen is None and view not in NO_SEARCH:
        st.info("No searches in this database yet. Start one with `autopeft search run SPEC`"
                + (" or under New search." if launch_on else "."))
        return
    render = guarded(RENDERERS[view])
    if live and view not in NOT_LIVE and not (launch_on and view == "Searches"):
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
