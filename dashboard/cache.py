"""Cached reads and figures, so that a widget click or a live refresh costs what changed, not a rebuild.

A search's tables, noise report and Pareto figure are cached under its revision (``data.revision``: one cheap
query whose answer changes whenever anything shown of the search does), so a live view that redraws every few
seconds rebuilds them only when a trial was added, changed state or reported. Measured: one redraw of an
unchanged 25-trial search 0.072 CPU-seconds, against 0.294 when everything is rebuilt, as every redraw was while
these caches only lived 2 s (bench/README.md, dashboard_watch). The revision itself, the search list and
single-trial reads keep a two-second lifetime, which collapses the several reads of one render into one query set
while keeping a running search current.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from autopeft.spec import SearchSpec
from dashboard import data, figures

TTL_S = 2.0
# Revisions kept per cached read: the current one of each search looked at, and the one before while it changes.
KEPT = 16


@st.cache_data(ttl=TTL_S, show_spinner=False)
def searches(url: str) -> list[data.Search]:
    return data.list_searches(url)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def revision(url: str, name: str) -> tuple:
    return data.revision(url, name)


@st.cache_data(max_entries=KEPT, show_spinner=False)
def _trials(url: str, name: str, revision_key: tuple) -> tuple[pd.DataFrame, SearchSpec]:
    return data.load_trials(url, name)


def trials(url: str, name: str) -> tuple[pd.DataFrame, SearchSpec]:
    return _trials(url, name, revision(url, name))


@st.cache_data(max_entries=KEPT, show_spinner=False)
def _chance_metrics(url: str, name: str, revision_key: tuple) -> dict[str, float]:
    return data.chance_metrics(url, name)


def chance_metrics(url: str, name: str) -> dict[str, float]:
    return _chance_metrics(url, name, revision(url, name))


@st.cache_data(max_entries=KEPT, show_spinner=False)
def _untouched_metrics(url: str, name: str, revision_key: tuple) -> dict[str, float]:
    return data.untouched_metrics(url, name)


def untouched_metrics(url: str, name: str) -> dict[str, float]:
    return _untouched_metrics(url, name, revision(url, name))


@st.cache_data(max_entries=KEPT, show_spinner=False)
def _noise_report(url: str, name: str, revision_key: tuple) -> dict | None:
    trials_frame, spec = trials(url, name)
    return data.noise_report(url, name, trials_frame, spec)


def noise_report(url: str, name: str) -> dict | None:
    return _noise_report(url, name, revision(url, name))


@st.cache_resource(max_entries=KEPT, show_spinner=False)
def _pareto(url: str, name: str, x: str, y: str, revision_key: tuple) -> go.Figure:
    trials_frame, spec = trials(url, name)
    return figures.pareto(trials_frame, spec, x, y, chance=chance_metrics(url, name),
                          untouched=untouched_metrics(url, name))


def pareto(url: str, name: str, x: str, y: str) -> go.Figure:
    """The front view's figure, shared by every session looking at the same search and axes; never modified after
    it is built (st.cache_resource hands out the same object)."""
    return _pareto(url, name, x, y, revision(url, name))


@st.cache_data(ttl=TTL_S, show_spinner=False)
def loss_curve(url: str, trial_id: int) -> list[list[float]]:
    return data.loss_curve(url, trial_id)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def rung_values(url: str, trial_id: int) -> list[list[float]]:
    return data.rung_values(url, trial_id)


def clear() -> None:
    """Forget every cached read and figure (tests timing a cold page)."""
    st.cache_data.clear()
    st.cache_resource.clear()


@st.cache_data(max_entries=KEPT, show_spinner=False)
def label_names(url: str, name: str) -> list[str]:
    return data.label_names(url, name)


@st.cache_resource(max_entries=1, show_spinner=False)
def trial_model(url: str, name: str, number: int, adapter_dir: str, _spec: SearchSpec):
    """A trial's model and the search's tokenizer for the trial page's "Try it", one at a time: a model is loaded
    when a visitor first runs it (a decoder takes seconds) and kept while the same trial is tried again. ``_spec``
    (the page's, not part of the key: the search's name stands for it) is left unhashed."""
    from autopeft.models.base import load_tokenizer
    from autopeft.results.predict import load_trial_model

    return load_trial_model(_spec, label_names(url, name), adapter_dir, number), load_tokenizer(_spec.model)

