"""Sign-in for every page: the store as this browser tab's signed-in user, or a sign-in form.

Pages call :func:`signed_in_studio` first, so a page opened directly (or in a test) is as
closed as one reached through the navigation. The session token lives in the tab's session
state; the store keeps its hash and expiry (``mumic_core.auth``).
"""

from __future__ import annotations

import streamlit as st

from mumic_core.auth import SESSION_MAX, PermissionDenied, actor_for_token, sign_in, sign_out
from mumic_core.studio import Studio, open_studio

COOKIE = "mumic_session"  # the token, so that a reload or a typed URL stays signed in
PAGE_PERMISSIONS = {"review": "review", "dashboard": "review", "explore": "review", "classes": "classes",
                    "import_export": "import", "training": "train", "jobs": "train"}


def signed_in_studio(permission: str | None = None) -> Studio:
    """The store acting as the signed-in user; otherwise a sign-in form, and the page stops.
    A user without ``permission`` is told so, and the page stops."""
    studio = open_studio(migrate=False)
    cookie = st.context.cookies.get(COOKIE)
    cookie = cookie if isinstance(cookie, str) else None
    token = st.session_state.get("auth_token") or cookie
    actor = actor_for_token(studio, token)
    if actor is None:
        st.session_state.pop("auth_token", None)
        if cookie:
            _write_cookie(None)  # expired or revoked: forget it
        _sign_in_form(studio)
        st.stop()
    st.session_state["auth_token"] = token
    if st.session_state.pop("remember_token", False):
        _write_cookie(token)
    if permission and not actor.may(permission):
        st.error(f"Signed in as **{actor.username}** ({actor.role}): this page needs the *{permission}* "
                 "permission. Ask an admin.")
        st.stop()
    return studio.as_actor(actor)


def _sign_in_form(studio: Studio) -> None:
    if st.session_state.pop("forget_cookie", False):
        _write_cookie(None)
    st.title("MuMIC Studio")
    expired = st.session_state.pop("signed_out_reason", None)
    if expired:
        st.info(expired)
    with st.form("sign_in", border=True, width=420):
        st.subheader("Sign in")
        username = st.text_input("Username", key="sign_in_user", autocomplete="username")
        password = st.text_input("Password", type="password", key="sign_in_password",
                                 autocomplete="current-password")
        if st.form_submit_button("Sign in", type="primary"):
            address = st.context.ip_address  # None from this machine (and not a str in AppTest)
            try:
                st.session_state["auth_token"] = sign_in(studio, username, password,
                                                         address if isinstance(address, str) else None)
            except PermissionDenied as exc:
                st.error(str(exc).capitalize() + ".")
            else:
                st.session_state["remember_token"] = True
                st.rerun()
    st.caption("No account? An admin adds one with `python -m mumic_core users add NAME`. The first admin's "
               "password is printed by `make run` (or `python -m mumic_core init`) on first start.")


def sign_out_button(studio: Studio) -> None:
    """Who is signed in, and a button to sign out, in the sidebar."""
    actor = studio.actor
    with st.sidebar:
        st.caption(f"Signed in as **{actor.username}** ({actor.role})")
        if st.button("Sign out", key="sign_out", icon=":material/logout:"):
            sign_out(studio, st.session_state.pop("auth_token", None))
            st.session_state["signed_out_reason"] = "You are signed out."
            st.session_state["forget_cookie"] = True
            st.rerun()


def _write_cookie(token: str | None) -> None:
    """Set (or clear) the session cookie in the browser; the store still decides whether the
    token is valid (expiry, revocation), so a stolen or stale cookie is worth nothing after that."""
    import streamlit.components.v1 as components

    value = f"{token}; max-age={int(SESSION_MAX.total_seconds())}" if token else "; max-age=0"
    components.html(f"<script>window.parent.document.cookie = '{COOKIE}={value}; path=/; SameSite=Strict';"
                    "</script>", height=0)
