"""Sign-in for every page: the store as this browser tab's signed-in user, or a sign-in form.

Pages call :func:`signed_in_studio` first, so a page opened directly (or in a test) is as
closed as one reached through the navigation. The session token lives in the tab's session
state; the store keeps its hash and expiry (``mumic_core.store.auth``). The browser keeps the session
across page loads in an HttpOnly cookie that the web server sets (``serve.py``): this page only
hands the browser a one-time code for it, so page scripts never see a token that signs in.
"""

from __future__ import annotations

import gc
import json
import sys

import streamlit as st

from mumic_core.store.auth import (
    PermissionDenied,
    actor_for_token,
    cookie_code,
    sign_in,
    sign_out,
)
from mumic_core.store.leases import release
from mumic_core.store.studio import Studio, open_studio

COOKIE = "mumic_session"  # the cookie's token, so that a reload or a typed URL stays signed in
COOKIE_ROUTE = "/auth/session-cookie"  # serve.py: POST a one-time code to get the cookie, DELETE to drop it
PAGE_PERMISSIONS = {
    "review": "review",
    "dashboard": "review",
    "explore": "review",
    "classes": "classes",
    "import_export": "import",
    "training": "train",
    "jobs": "train",
    "accounts": "users",
    "api_tokens": "review",
}


def _token() -> tuple[str | None, str | None]:
    """(the tab's session token or the cookie's, the cookie's)."""
    cookie = st.context.cookies.get(COOKIE)
    cookie = cookie if isinstance(cookie, str) else None
    return st.session_state.get("auth_token") or cookie, cookie


def is_signed_in() -> bool:
    """Whether this tab has a valid session (nothing is drawn)."""
    return actor_for_token(open_studio(migrate=False), _token()[0]) is not None


_modules_when_frozen = 0


def _settle_heap() -> None:
    """Move what imports created (modules, classes, functions: torch's and Streamlit's are
    millions of objects) out of the garbage collector's sight, once per wave of new imports.
    Otherwise each full collection walks them all: 0.35 s, every few seconds of reviewing, in
    the middle of a page run. No collection first (it would cost those 0.35 s once): what little
    garbage is pending then stays for the life of the process."""
    global _modules_when_frozen
    if len(sys.modules) > _modules_when_frozen:
        gc.freeze()
        _modules_when_frozen = len(sys.modules)


def signed_in_studio(permission: str | None = None) -> Studio:
    """The store acting as the signed-in user; otherwise a sign-in form, and the page stops.
    A user without ``permission`` is told so, and the page stops."""
    _settle_heap()
    studio = open_studio(migrate=False)
    token, cookie = _token()
    actor = actor_for_token(studio, token)
    if actor is None:
        st.session_state.pop("auth_token", None)
        if cookie:
            _ask_browser_for_cookie(None)  # expired or revoked: forget it
        _sign_in_form(studio)
        st.stop()
    st.session_state["auth_token"] = token
    if st.session_state.pop("remember_token", False):
        _ask_browser_for_cookie(cookie_code(studio, token))
    if permission and not actor.may(permission):
        st.error(
            f"Signed in as **{actor.username}** ({actor.role}): this page needs the *{permission}* "
            "permission. Ask an admin."
        )
        st.stop()
    return studio.as_actor(actor)


def _sign_in_form(studio: Studio) -> None:
    if st.session_state.pop("forget_cookie", False):
        _ask_browser_for_cookie(None)
    st.title("MuMIC Studio")
    expired = st.session_state.pop("signed_out_reason", None)
    if expired:
        st.info(expired)
    with st.form("sign_in", border=True, width=420):
        st.subheader("Sign in")
        username = st.text_input("Username", key="sign_in_user", autocomplete="username")
        password = st.text_input("Password", type="password", key="sign_in_password", autocomplete="current-password")
        if st.form_submit_button("Sign in", type="primary"):
            address = st.context.ip_address  # None from this machine (and not a str in AppTest)
            try:
                st.session_state["auth_token"] = sign_in(
                    studio, username, password, address if isinstance(address, str) else None
                )
            except PermissionDenied as exc:
                st.error(str(exc).capitalize() + ".")
            else:
                st.session_state["remember_token"] = True
                st.rerun()
    st.caption(
        "No account? An admin adds one with `python -m mumic_core users add NAME`. The first admin's "
        "password is printed by `make run` (or `python -m mumic_core init`) on first start."
    )


def sign_out_button(studio: Studio) -> None:
    """Who is signed in, and a button to sign out, in the sidebar."""
    actor = studio.actor
    with st.sidebar:
        st.caption(f"Signed in as **{actor.username}** ({actor.role})")
        if st.button("Sign out", key="sign_out", icon=":material/logout:"):
            if holder := st.session_state.get("holder"):  # the images this browser holds for review
                release(studio, holder)
            sign_out(studio, st.session_state.pop("auth_token", None))
            st.session_state["signed_out_reason"] = "You are signed out."
            st.session_state["forget_cookie"] = True
            st.rerun()


def _ask_browser_for_cookie(code: str | None) -> None:
    """Have the browser fetch its session cookie from the web server with a one-time ``code``
    (or, with None, drop it). The server sets the cookie HttpOnly; the code is useless once used
    or a minute old, and the store still decides whether the cookie's token is valid (expiry,
    revocation)."""
    method, body = ("POST", json.dumps(code)) if code else ("DELETE", "null")
    st.html(
        f"<script>fetch({json.dumps(COOKIE_ROUTE)}, {{method: '{method}', body: {body}, "
        "credentials: 'same-origin'});</script>",
        unsafe_allow_javascript=True,
    )
