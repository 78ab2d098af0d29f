"""API tokens: each person makes and revokes their own tokens for the HTTP API (pipelines, Label
Studio's ML backend, the Python client). The secret is shown once."""

from __future__ import annotations

import streamlit as st

from app_pages.signin import signed_in_studio
from app_pages.ui import md, refuse
from mumic_core.store.api_tokens import create_token, list_tokens, revoke_token
from mumic_core.store.auth import ROLES, AccountError, PermissionDenied

s = signed_in_studio("review")
me = s.actor
st.title("API tokens")
st.caption(
    "A token lets a script or another tool (Label Studio, FiftyOne, the Python client) act as you over the "
    "HTTP API: `Authorization: Bearer <token>`. The API's reference is its OpenAPI page, `/docs` on the API "
    "server (port 8000 with `make run`)."
)
state = st.session_state
if shown := state.pop("new_api_token", None):
    name, secret = shown
    st.success(f"Token **{md(name)}** — copy it now, it is shown only once:")
    st.code(secret, language=None)

with st.form("new_token", clear_on_submit=True):
    c1, c2 = st.columns([3, 2])
    name = c1.text_input("Name", max_chars=100, placeholder="nightly import pipeline")
    roles = ROLES[ROLES.index(me.role) :]  # your role or less
    role = c2.radio("Acts as", roles, horizontal=True, help="A token can do at most what you can.")
    if st.form_submit_button("Make a token", type="primary"):
        try:
            info, secret = create_token(s, me.username, name, role)
        except (AccountError, PermissionDenied) as exc:
            refuse(exc)
        else:
            state.new_api_token = (info.name, secret)
            st.rerun()

tokens = list_tokens(s, me.username)
if not tokens:
    st.info("You have no tokens yet.")
for t in tokens:
    c1, c2, c3 = st.columns([4, 3, 1], vertical_alignment="center")
    c1.markdown(f"**{md(t.name)}** `{t.prefix}…` · {t.role}" + (" · *revoked*" if t.revoked else ""))
    used = t.last_used_at.strftime("%Y-%m-%d %H:%M") if t.last_used_at else "never"
    c2.caption(f"made {t.created_at:%Y-%m-%d} · last used {used}")
    if not t.revoked and c3.button("Revoke", key=f"revoke_{t.id}"):
        revoke_token(s, me.username, t.id)
        st.rerun()
