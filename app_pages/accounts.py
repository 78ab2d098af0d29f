"""Accounts (admins): add people, disable or re-enable them, reset a password, change a role."""

from __future__ import annotations

import secrets

import streamlit as st

from app_pages.signin import signed_in_studio
from app_pages.ui import isolate, md, refuse
from mumic_core.store.auth import (
    ROLES,
    AccountError,
    PermissionDenied,
    add_user,
    list_users,
    set_active,
    set_password,
    set_role,
)

s = signed_in_studio("users")
st.title("Accounts")
state = st.session_state

if shown := state.pop("new_password", None):
    who, password = shown
    st.success(
        f"New password for **{md(who)}**: `{password}` — shown once; give it to them in person or over a "
        "channel you trust. They can change it after signing in."
    )

users = list_users(s)
st.dataframe(
    [
        {
            "user": u.username,
            "role": u.role,
            "status": "active" if u.active else "disabled",
            "since": u.created_at.strftime("%Y-%m-%d") if u.created_at else "",
        }
        for u in users
    ],
    hide_index=True,
    width="stretch",
)

with st.expander("Add a person", icon=":material/person_add:", expanded=len(users) <= 1):
    with st.form("add_user", clear_on_submit=True):
        name = st.text_input("Username", max_chars=40, help="2–40 letters, digits, '.', '_' or '-'")
        role = st.radio("Role", ROLES, index=ROLES.index("annotator"), horizontal=True)
        submitted = st.form_submit_button("Add", type="primary")
    if submitted:
        password = secrets.token_urlsafe(12)
        try:
            added = add_user(s, name, password, role)
        except (AccountError, PermissionDenied) as exc:
            refuse(exc)
        else:
            state.new_password = (added.username, password)
            st.rerun()

st.subheader("Change an account")
by_name = {u.username: u for u in users}
who = st.selectbox(
    "Account",
    list(by_name),
    key="account",
    format_func=lambda n: isolate(n) + ("" if by_name[n].active else " (disabled)"),
)
if who:
    user = by_name[who]
    c1, c2, c3 = st.columns(3)
    try:
        new_role = c1.selectbox("Role", ROLES, index=ROLES.index(user.role), key=f"role_{who}")
        if new_role != user.role and c1.button("Change role", key="change_role"):
            set_role(s, who, new_role)
            st.rerun()
        if c2.button("Disable" if user.active else "Enable", key="toggle_active", disabled=who == s.actor.username):
            set_active(s, who, not user.active)
            st.rerun()
        if who == s.actor.username:
            c2.caption("You cannot disable your own account.")
        if c3.button("Reset password", key="reset_password", help="Makes a new random password; signs them out"):
            password = secrets.token_urlsafe(12)
            set_password(s, who, password)
            state.new_password = (who, password)
            st.rerun()
    except (AccountError, PermissionDenied) as exc:
        refuse(exc)
