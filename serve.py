"""The web server: `streamlit run serve.py` serves the app of app.py (an st.App, Streamlit's
ASGI application) and one route of its own, which gives the browser its session cookie.

The cookie is set here, by the server, HttpOnly and SameSite=Strict, so no page script ever
sees a token that signs in: after a sign-in the page posts a one-time code (valid 60 s, usable
once) to COOKIE_ROUTE and gets the cookie in the answer (``mumic_core.store.auth.redeem_cookie_code``).
"""

from __future__ import annotations

from urllib.parse import urlsplit

import streamlit as st
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app_pages.signin import COOKIE, COOKIE_ROUTE
from app_pages.warm_start import warm_start
from mumic_core.store.auth import SESSION_MAX, redeem_cookie_code
from mumic_core.store.studio import open_studio


def _from_this_site(request: Request) -> bool:
    """Whether the request comes from a page of this server (not another site's form or script):
    the browser's Sec-Fetch-Site says so, or, from older browsers, the Origin matches the Host."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site == "same-origin"
    origin = request.headers.get("origin")
    return origin is not None and urlsplit(origin).netloc == request.headers.get("host")


async def session_cookie(request: Request) -> Response:
    """POST a one-time code: the session's cookie is set. DELETE: the cookie is dropped."""
    if not _from_this_site(request):
        return Response("refused: not from this site", status_code=403)
    done = Response(status_code=204, headers={"Cache-Control": "no-store"})
    secure = request.url.scheme == "https"
    if request.method == "DELETE":
        done.delete_cookie(COOKIE, path="/", secure=secure, httponly=True, samesite="strict")
        return done
    code = (await request.body())[:100].decode("ascii", "replace")
    token = await run_in_threadpool(redeem_cookie_code, open_studio(migrate=False), code)
    if token is None:
        return Response("refused: unknown, used or expired code", status_code=403)
    done.set_cookie(
        COOKIE,
        token,
        max_age=int(SESSION_MAX.total_seconds()),
        path="/",
        secure=secure,
        httponly=True,
        samesite="strict",
    )
    return done


warm_start()
app = st.App("app.py", routes=[Route(COOKIE_ROUTE, session_cookie, methods=["POST", "DELETE"])])
