"""All searches in the database: state, trials done / running / failed / pruned, best metric, elapsed time.

With launching on, each search's jobs too (who launched it and when, the latest job's state), searches whose job
has not created their study yet, and a panel that manages one search: its jobs, the controller's log tail, and
Stop, Resume, Baselines and Confirm, each a ``SearchJobs`` call. While any search or job is busy the view redraws
itself every few seconds.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from autopeft.service.jobs import SearchJob, listed_without_study
from dashboard import access, cache, data, launching, navigation
from dashboard.views import Context

REFRESH_S = 3
COLUMNS = {"best": st.column_config.NumberColumn(format="%.4f"),
           "elapsed_min": st.column_config.NumberColumn("elapsed (min)", format="%.1f"),
           "started": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm")}


def render(ctx: Context) -> None:
    st.header("Searches")
    if not launching.enabled():
        _table(ctx.url, data.searches_frame(cache.searches(ctx.url)))
        return
    if _busy(ctx.url):
        st.fragment(lambda: _refreshing(ctx), run_every=REFRESH_S)()
    else:
        _managed(ctx)


def _table(url: str, table: pd.DataFrame, studies: set[str] | None = None) -> None:
    if table.empty:
        st.info("No searches in this database yet. Start one with `autopeft search run SPEC`"
                + (" or under New search." if launching.enabled() else "."))
        return
    from autopeft.store.storage import mask_url  # the password never reaches the page

    st.caption(f"{len(table)} searches in `{mask_url(url)}`. Select a row to open its Pareto front.")
    event = st.dataframe(table, hide_index=True, width="stretch", on_select="rerun", selection_mode="single-row",
                         key="searches_table", column_config=COLUMNS)
    rows = event.selection.rows if event else []
    if rows:
        name = str(table["search"].iloc[rows[0]])
        if studies is None or name in studies:
            navigation.open_search(name)
        elif st.session_state.get("manage_search") != name:  # no study yet: its jobs, below
            navigation.open_manage(name)


# -- with launching on -----------------------------------------------------------------------------------------------

def _studies(url: str) -> list[data.Search]:
    try:
        return cache.searches(url)
    except data.StorageUnavailable:
        return []  # no database yet: the first search's job creates it


def _busy(url: str) -> bool:
    return any(s.state == "running" for s in _studies(url)) or any(job.active for job in launching.jobs()[0])


def _refreshing(ctx: Context) -> None:
    """One redraw; when nothing is busy any more, the page redraws once and stays still."""
    if not _busy(ctx.url):
        st.rerun()
    _managed(ctx)


def _managed(ctx: Context) -> None:
    studies = {s.name: s for s in _studies(ctx.url)}
    jobs, problem = launching.jobs()
    if problem:
        st.warning(problem)
    by_search: dict[str, list[SearchJob]] = {}
    for job in jobs:
        by_search.setdefault(job.search, []).append(job)
    by_search = {name: mine for name, mine in by_search.items() if name in studies or listed_without_study(mine)}
    _table(ctx.url, with_jobs(data.searches_frame(list(studies.values())), by_search), set(studies))
    names = list(dict.fromkeys([*studies, *by_search]))
    if not names:
        return
    if st.session_state.get("manage_search") not in names:
        st.session_state["manage_search"] = ctx.search if ctx.search in names else names[-1]
    st.subheader("Manage")
    name = st.selectbox("search", names, key="manage_search")
    _panel(name, studies.get(name), by_search.get(name, []))


def with_jobs(table: pd.DataFrame, by_search: dict[str, list[SearchJob]]) -> pd.DataFrame:
    """The searches table with each search's jobs: the latest one's state, who launched the search and when
    ("shell" for a search no job of this service started), and a row for each search a job is still creating."""
    def job_columns(name: str) -> dict[str, Any]:
        mine = by_search.get(name, [])
        if not mine:
            return {"job": None, "launched_by": "shell", "launched_at": None}
        return {"job": f"{mine[-1].status} ({mine[-1].action})", "launched_by": mine[0].launched_by,
                "launched_at": mine[0].launched_at}

    known = set(table["search"]) if not table.empty else set()
    rows = [{**row, **job_columns(row["search"])} for row in table.to_dict("records")]
    rows += [{"search": name, "state": "starting" if jobs[-1].active else "not started", **job_columns(name)}
             for name, jobs in by_search.items() if name not in known]
    return pd.DataFrame(rows)


def _panel(name: str, study: data.Search | None, mine: list[SearchJob]) -> None:
    latest = mine[-1] if mine else None
    row = data.searches_frame([study]).iloc[0] if study is not None else None
    state = study.state if study is not None else ("starting" if latest and latest.active else "not started")
    cols = st.columns(6)
    cols[0].metric("Job", latest.status if latest else "none")
    cols[1].metric("Action", latest.action if latest else "-")
    cols[2].metric("State", state)
    cols[3].metric("Done", "-" if row is None else f"{row['done']} / {row['budget']}")
    cols[4].metric("Running", "-" if row is None else int(row["running"]))
    cols[5].metric("Interrupted", "-" if row is None else int(row["interrupted"]))
    if latest is None:
        st.caption("Launched from a shell: its state comes from the study, its log is in that shell.")
    else:
        st.caption(f"Launched by **{mine[0].launched_by}** at {mine[0].launched_at}.")
        st.dataframe(pd.DataFrame([{"action": j.action, "status": j.status, "launched by": j.launched_by,
                                    "launched at": j.launched_at, "message": j.message, "job": j.submission_id}
                                   for j in mine]), hide_index=True, width="stretch", key="jobs_table")
        st.markdown(f"Controller log — the last lines of the latest job ({latest.action}):")
        st.code(launching.log_tail(latest.submission_id) or "(nothing printed yet)", language=None)
    _actions(name)


def _actions(name: str) -> None:
    """Stop, Resume, Baselines and Confirm; each outcome (or the command line's error) is shown above them."""
    from autopeft.results.baselines import STANDARD

    where = f"manage:{name}"
    launching.show_message(where)
    writable = access.can_write()
    if not writable:
        access.ask_for_write_token("Stopping, resuming, baselines and confirming")
    who = st.session_state.get("launched_by_name") or "dashboard"
    stop, resume, baselines, confirm = st.columns(4)
    with stop:
        st.caption("Stop as Ctrl-C does: running trials are closed as interrupted and queued for resume.")
        if st.button("Stop", key="stop", disabled=not writable, icon=":material/stop_circle:"):
            _do(where, lambda jobs: jobs.stop(name), f"Stopping {name} …",
                lambda stopped: f"Asked {name}'s {len(stopped)} running job(s) to stop.")
    with resume:
        trials = st.number_input("raise the budget to (trials; 0 keeps it)", min_value=0, value=0, step=1,
                                 key="resume_trials", disabled=not writable)
        if st.button("Resume", key="resume", disabled=not writable, icon=":material/play_circle:"):
            _do(where, lambda jobs: jobs.resume(name, trials=int(trials) or None, launched_by=who),
                f"Resuming {name} …", lambda job: f"Resuming {name}: job {job.submission_id}.")
    with baselines:
        only = st.multiselect("baselines (none chosen: all)", list(STANDARD), key="baselines_only",
                              disabled=not writable)
        if st.button("Baselines", key="baselines", disabled=not writable, icon=":material/stacked_line_chart:"):
            _do(where, lambda jobs: jobs.baselines(name, only=only or None, launched_by=who),
                f"Starting {name}'s baselines …", lambda job: f"Training baselines into {name}: job "
                                                             f"{job.submission_id}.")
    with confirm:
        picks = st.text_input("confirm picks", value="knee", key="confirm_picks", disabled=not writable,
                              help="knee | max:METRIC | min:METRIC | budget:METRIC<=X, separated by commas")
        seeds = st.number_input("seeds", min_value=1, value=3, step=1, key="confirm_seeds", disabled=not writable)
        if st.button("Confirm", key="confirm", disabled=not writable, icon=":material/verified:"):
            chosen = [p.strip() for p in picks.split(",") if p.strip()]
            _do(where, lambda jobs: jobs.confirm(name, picks=chosen or None, seeds=int(seeds), launched_by=who),
                f"Starting {name}'s confirmation …", lambda job: f"Confirming {name}: job {job.submission_id}.")


def _do(where: str, action, doing: str, done) -> None:
    launching.act(where, action, doing, done)
    st.rerun()  # the whole page: its state (and whether it refreshes itself) follows the action
