"""Access to the dashboard when it listens beyond this machine.

On 127.0.0.1 (the default) only local users can reach it and it asks nothing. Bound elsewhere, `autopeft dashboard`
sets a token (given, or generated and printed once) in ``AUTOPEFT_DASHBOARD_TOKEN``; a visitor must present it, in
the link (``?token=...``) or typed once per session, before any search data is read.
"""

from __future__ import annotations

import hmac
import os

import streamlit as st

TOKEN_VARIABLE = "AUTOPEFT_DASHBOARD_TOKEN"


def allowed() -> bool:
    """True when no token is required or the visitor presented the right one (checked in constant time)."""
    expected = os.environ.get(TOKEN_VARIABLE)
    if not expected:
        return True
    if st.session_state.get("authorised"):
        return True
    offered = st.query_params.get("token") or st.session_state.get("token_input", "")
    if offered and hmac.compare_digest(offered.encode(), expected.encode()):
        st.session_state["authorised"] = True
        return True
    st.title("autopeft")
    st.text_input("Access token", type="password", key="token_input",
                  help="This dashboard is reachable from other machines; its token was printed when it started.")
    if offered:
        st.error("That token is not right.")
    return False
