"""Briefly cached reads, so that every widget click and every live refresh does not re-query the database.

A two-second time-to-live keeps a running search's view current (the live refresh runs every few seconds) while
collapsing the several reads one page render makes into one query set.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from autopeft.spec import SearchSpec
from dashboard import data

TTL_S = 2.0


@st.cache_data(ttl=TTL_S, show_spinner=False)
def searches(url: str) -> list[data.Search]:
    return data.list_searches(url)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def trials(url: str, name: str) -> tuple[pd.DataFrame, SearchSpec]:
    return data.load_trials(url, name)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def chance_metrics(url: str, name: str) -> dict[str, float]:
    return data.chance_metrics(url, name)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def noise_report(url: str, name: str) -> dict | None:
    trials_frame, spec = trials(url, name)
    return data.noise_report(url, name, trials_frame, spec)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def loss_curve(url: str, trial_id: int) -> list[list[float]]:
    return data.loss_curve(url, trial_id)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def rung_values(url: str, trial_id: int) -> list[list[float]]:
    return data.rung_values(url, trial_id)
