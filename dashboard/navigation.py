"""Moving between views from inside a view (a click on a point opens its trial).

A widget's value cannot be changed once the widget has been drawn in the current run, so a view asks for a
move by leaving a request in the session state and rerunning; the app applies it before drawing the sidebar.
"""

from __future__ import annotations

import streamlit as st

VIEWS = ("Searches", "Pareto front", "Progress", "Trials", "Trial", "Space", "Compare", "Pick and export")
LAUNCH_VIEWS = ("New search",)  # shown only with launching on, after Searches
REQUEST = "_goto"


def views(launching: bool) -> tuple[str, ...]:
    return (VIEWS[0], *LAUNCH_VIEWS, *VIEWS[1:]) if launching else VIEWS


def open_trial(number: int) -> None:
    st.session_state[REQUEST] = {"view": "Trial", "trial_number": int(number)}
    st.rerun()


def open_search(name: str) -> None:
    st.session_state[REQUEST] = {"view": "Pareto front", "search": name}
    st.rerun()


def open_manage(name: str) -> None:
    """The Searches view with ``name``'s jobs, log and actions."""
    st.session_state[REQUEST] = {"view": "Searches", "manage_search": name}
    st.rerun()


def apply_request() -> None:
    """Called first thing in a run, before any widget whose value a request sets exists."""
    request = st.session_state.pop(REQUEST, None)
    if request:
        st.session_state.update(request)


def selected_trials(event: object) -> list[int]:
    """Trial numbers of the points a plotly selection event holds (click, box or lasso)."""
    selection = getattr(event, "selection", None) or (event.get("selection") if isinstance(event, dict) else None)
    points = (selection or {}).get("points", []) if isinstance(selection, dict) else getattr(selection, "points", [])
    numbers = []
    for point in points or []:
        custom = point.get("customdata") if isinstance(point, dict) else None
        if custom:
            numbers.append(int(custom[0]))
    return numbers


def clicked_trial(event: object) -> int | None:
    """The trial number of the point a plotly selection event picked, if any."""
    numbers = selected_trials(event)
    return numbers[0] if numbers else None


def apply_link() -> None:
    """Once per browser session: open the view, search and trial named in the URL (?view=Trial&trial=12)."""
    if st.session_state.get("_linked"):
        return
    st.session_state["_linked"] = True
    params = st.query_params
    if params.get("view") in VIEWS + LAUNCH_VIEWS:
        st.session_state["view"] = params["view"]
    if params.get("search"):
        st.session_state["search"] = st.session_state["manage_search"] = params["search"]
    if str(params.get("trial", "")).isdigit():
        st.session_state["trial_number"] = int(params["trial"])
