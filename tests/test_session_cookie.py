"""The session cookie is set by the web server (`streamlit run serve.py`), HttpOnly: page
scripts never see a token that signs in. Checked with a plain HTTP client against a real server."""

from __future__ import annotations

import urllib.error
import urllib.request
from email.message import Message

from conftest import PASSWORD
from test_browser import serve

from app_pages.signin import COOKIE, COOKIE_ROUTE
from mumic_core.store.auth import actor_for_token, add_user, cookie_code, sign_in, sign_out


def call(url: str, method: str, body: bytes | None = None, site: str = "same-origin") -> tuple[int, Message]:
    """(status, headers) of one request as a page of ``site`` would make it."""
    request = urllib.request.Request(url, data=body, method=method, headers={"Sec-Fetch-Site": site})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.headers
    except urllib.error.HTTPError as refused:
        return refused.code, refused.headers


def cookie_token(headers: Message) -> str:
    set_cookie = headers["Set-Cookie"]
    return set_cookie.split(";")[0].removeprefix(f"{COOKIE}=")


def test_the_server_sets_an_httponly_cookie_for_a_one_time_code(studio):
    add_user(studio, "ann", PASSWORD)
    tab_token = sign_in(studio, "ann", PASSWORD)
    code = cookie_code(studio, tab_token)
    assert cookie_code(studio, "forged") is None
    with serve(studio.settings.home) as url:
        route = url + COOKIE_ROUTE
        assert call(route, "POST", code.encode(), site="cross-site")[0] == 403  # another site's form
        status, headers = call(route, "POST", code.encode())
        assert status == 204
        attributes = [a.strip().lower() for a in headers["Set-Cookie"].split(";")]
        assert attributes[0].startswith(f"{COOKIE}=") and {"httponly", "samesite=strict", "path=/"} <= set(attributes)
        assert "no-store" in headers["Cache-Control"]
        token = cookie_token(headers)
        assert token not in (tab_token, code) and actor_for_token(studio, token).username == "ann"
        assert call(route, "POST", code.encode())[0] == 403  # used once
        assert call(route, "POST", b"made-up code")[0] == 403
        status, headers = call(route, "DELETE")
        assert status == 204 and "max-age=0" in headers["Set-Cookie"].lower()
        sign_out(studio, token)  # the cookie's session is the tab's: signing out ends both
        assert actor_for_token(studio, token) is None and actor_for_token(studio, tab_token) is None
        assert cookie_code(studio, tab_token) is None


def test_a_cookie_code_expires_and_dies_with_its_session(studio, monkeypatch):
    from datetime import timedelta

    from mumic_core.store import auth

    add_user(studio, "ann", PASSWORD)
    token = sign_in(studio, "ann", PASSWORD)
    late = cookie_code(studio, token)
    start = auth._now()
    monkeypatch.setattr(auth, "_now", lambda: start + auth.COOKIE_CODE_TTL + timedelta(seconds=1))
    assert auth.redeem_cookie_code(studio, late) is None
    monkeypatch.setattr(auth, "_now", lambda: start)
    code = cookie_code(studio, token)
    sign_out(studio, token)
    assert auth.redeem_cookie_code(studio, code) is None
