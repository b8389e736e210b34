"""Who may read the dashboard, and who may launch and manage searches from it.

On 127.0.0.1 (the default) only local users can reach it, and a read-only dashboard asks nothing. Bound elsewhere,
`autopeft dashboard` sets a token (given, or generated and printed once) in ``AUTOPEFT_DASHBOARD_TOKEN``; a visitor
must present it, in the link (``?token=...``) or typed once per session, before any search data is read.

With launching on (``--allow-launch``) a token is always set, and every write (launch, stop, resume, baselines,
confirm) needs it; on 127.0.0.1 reads stay open (``AUTOPEFT_DASHBOARD_OPEN_READS``), so the token is asked for only
where a write control is.
"""

from __future__ import annotations

import hmac
import os

import streamlit as st

TOKEN_VARIABLE = "AUTOPEFT_DASHBOARD_TOKEN"
OPEN_READS_VARIABLE = "AUTOPEFT_DASHBOARD_OPEN_READS"


def _presented() -> bool:
    """Whether this session presented the token (in the link or typed; compared in constant time)."""
    expected = os.environ.get(TOKEN_VARIABLE)
    if not expected:
        return False
    if st.session_state.get("authorised"):
        return True
    offered = st.query_params.get("token") or st.session_state.get("token_input", "")
    if offered and hmac.compare_digest(offered.encode(), expected.encode()):
        st.session_state["authorised"] = True
        return True
    return False


def _ask(help: str) -> None:
    st.text_input("Access token", type="password", key="token_input", help=help)
    if st.session_state.get("token_input") or st.query_params.get("token"):
        st.error("That token is not right.")


def allowed() -> bool:
    """True when reading needs no token or the visitor presented the right one."""
    if not os.environ.get(TOKEN_VARIABLE) or os.environ.get(OPEN_READS_VARIABLE) or _presented():
        return True
    st.title("autopeft")
    _ask("This dashboard is reachable from other machines; its token was printed when it started.")
    return False


def can_write() -> bool:
    """True when this session may launch and manage searches: only ever with the dashboard's token."""
    return _presented()


def ask_for_write_token(what: str) -> None:
    """Say that ``what`` needs the token, and take it."""
    st.warning(f"{what} needs the dashboard's token: open the link `autopeft dashboard --allow-launch` printed "
               "(it ends in `?token=…`), or enter the token here.", icon=":material/lock:")
    _ask("Printed when the dashboard started (`--token`, or generated).")
