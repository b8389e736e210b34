"""Launching and managing searches from the page (``autopeft dashboard --allow-launch``).

The page does nothing of its own here: every action is a call of ``autopeft.service.jobs.SearchJobs`` (the HTTP
API's too), so a spec is checked with the command line's own errors before anything starts, and each search runs
as a Ray job of the command line. `autopeft dashboard --allow-launch` names the job server and the service's root
in the environment; without them the dashboard only reads.

Searches are read as before, through the dashboard's read-only SQL; a search's jobs (state, who, when, log) come
from Ray's job server, briefly cached as the database reads are.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import streamlit as st

from autopeft.errors import UserError
from autopeft.service.jobs import SearchJob, SearchJobs
from dashboard import access, data
from dashboard.cache import TTL_S

JOB_SERVER_VARIABLE = "AUTOPEFT_JOB_SERVER"
ROOT_VARIABLE = "AUTOPEFT_SERVICE_ROOT"
MESSAGE = "_action_message"  # the last action's outcome, shown until the next one
T = TypeVar("T")


def enabled() -> bool:
    return bool(os.environ.get(JOB_SERVER_VARIABLE))


@st.cache_resource(show_spinner=False)
def _service(storage_url: str, root: str, job_server: str) -> SearchJobs:
    from autopeft.service.admission import ServiceConfig

    return SearchJobs(ServiceConfig(storage_url=storage_url, root=Path(root), job_server=job_server))


def service() -> SearchJobs:
    return _service(data.default_storage_url(), os.environ.get(ROOT_VARIABLE, "autopeft-service"),
                    os.environ[JOB_SERVER_VARIABLE])


@st.cache_data(ttl=TTL_S, show_spinner=False)
def _jobs() -> list[SearchJob]:
    return service().jobs()


def jobs() -> tuple[list[SearchJob], str | None]:
    """Every job of this service, oldest first, and what went wrong when the job server cannot be reached (the
    page then still shows the studies)."""
    try:
        return _jobs(), None
    except Exception as exc:
        return [], f"Ray's job server at {os.environ.get(JOB_SERVER_VARIABLE)} does not answer: {exc}"


@st.cache_data(ttl=TTL_S, show_spinner=False)
def log_tail(submission_id: str) -> str:
    try:
        return service().logs(submission_id)
    except Exception as exc:
        return f"(no log: {exc})"


def act(where: str, action: Callable[[SearchJobs], T], doing: str, done: Callable[[T], str]) -> T | None:
    """Run a write action with the token checked. Its outcome is kept for ``show_message(where)``: ``done``'s
    sentence, or the refusal, a bad request's being the command line's own message."""
    if not access.can_write():
        _keep(where, "error", "This needs the dashboard's token.")
        return None
    try:
        with st.spinner(doing):
            result = action(service())
    except UserError as exc:
        _keep(where, "error", str(exc))
        return None
    except Exception as exc:  # the job server refused or is unreachable
        _keep(where, "error", f"Ray's job server at {os.environ.get(JOB_SERVER_VARIABLE)} refused: {exc}")
        return None
    _jobs.clear()
    log_tail.clear()
    _keep(where, "success", done(result))
    return result


def _keep(where: str, kind: str, text: str) -> None:
    st.session_state[MESSAGE] = (where, kind, text)


def show_message(where: str) -> bool:
    """Show the last action's outcome if it was taken here (until the next action); True when it succeeded."""
    kept = st.session_state.get(MESSAGE)
    if not kept or kept[0] != where:
        return False
    (st.success if kept[1] == "success" else st.error)(kept[2])
    return kept[1] == "success"
