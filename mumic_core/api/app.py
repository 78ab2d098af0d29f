"""The FastAPI app: routers, one JSON error shape, a body-size limit, the OpenAPI page at /docs.

Serve it with ``python -m uvicorn mumic_core.api.app:create_app --factory`` (the Procfile's
``api`` process). Every error is ``{"error": "one line for people"}``; server paths and
tracebacks stay in the server log.
"""

from __future__ import annotations

import logging
from importlib.metadata import PackageNotFoundError, version

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mumic_core.api.deps import Caller, Unauthenticated
from mumic_core.api.routes import classes, exports, images, jobs, label_studio, labels, models, tokens
from mumic_core.api.schemas import ErrorBody, Health, Me
from mumic_core.config import Settings, load_settings
from mumic_core.errors import REFUSALS, MumicError, ServiceUnavailable, StaleView, one_line
from mumic_core.store.auth import PERMISSIONS, PermissionDenied
from mumic_core.store.jobs import JobConflict
from mumic_core.store.studio import UnstorableValue, open_studio

log = logging.getLogger("mumic.api")
MAX_BODY = 256 * 2**20  # the largest request body (an upload of many images); larger ones get 413
API_PREFIX = "/api/v1"
ERRORS = {
    status: {"model": ErrorBody, "description": text}
    for status, text in (
        (400, "Refused: the message says why"),
        (401, "No valid API token"),
        (403, "The token's role may not do this"),
        (404, "Not found"),
        (409, "Conflict: a job already runs, or someone else changed the labels"),
        (413, "The request body is too large"),
        (422, "The request does not match the schema"),
        (503, "The database or job queue cannot be reached"),
    )
}


def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _status_of(exc: Exception) -> int:
    if isinstance(exc, Unauthenticated):
        return 401
    if isinstance(exc, PermissionDenied):
        return 403
    if isinstance(exc, (StaleView, JobConflict)):
        return 409
    if isinstance(exc, ServiceUnavailable):
        return 503
    if isinstance(exc, (KeyError, FileNotFoundError, LookupError)):
        return 404
    return 400


class BodyLimit:
    """Refuse bodies over ``limit`` bytes with 413 and the one JSON error shape, by their declared
    length or while reading (Starlette's own limit answers in plain text)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = _error(413, f"the request body is over {self.limit // 2**20} MiB")
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            await too_large(scope, receive, send)
            return
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _TooLarge
            return message

        async def sending(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await self.app(scope, counted, sending)
        except _TooLarge:
            if not started:
                await too_large(scope, receive, send)


class _TooLarge(Exception):
    pass


def _package_version() -> str | None:
    try:
        return version("mumic-studio")
    except PackageNotFoundError:
        return None


def create_app(settings: Settings | None = None) -> FastAPI:
    """The API over the store of ``settings`` (the environment's by default)."""
    app = FastAPIOffline(  # FastAPI, with the /docs page's scripts served here instead of from a CDN
        title="MuMIC Studio API",
        version="1",
        description="Images, classes, labels, suggestions, training jobs and model versions of a MuMIC "
        "Studio store. Authenticate with a personal API token: `Authorization: Bearer <token>`. Lists are "
        'paged with `offset` and `limit`; every error is `{"error": message}`.',
        responses=ERRORS,
    )
    app.state.studio = open_studio(settings or load_settings())

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return _error(422, f"{where}: {first.get('msg', 'invalid')}" if where else str(first.get("msg", "invalid")))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "request refused"
        return _error(exc.status_code, message, getattr(exc, "headers", None))

    async def refused(_: Request, exc: Exception) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthenticated) else None
        return _error(_status_of(exc), one_line(exc, REFUSALS), headers)

    for kind in (MumicError, *REFUSALS):
        app.add_exception_handler(kind, refused)

    @app.exception_handler(UnstorableValue)
    async def unstorable(request: Request, exc: UnstorableValue) -> JSONResponse:
        log.warning("%s %s: the database refused a value: %s", request.method, request.url.path, exc.orig)
        return _error(
            400, "a value cannot be stored: it holds a character the database refuses (such as NUL) or is out of range"
        )

    @app.exception_handler(Exception)
    async def failed(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return _error(500, one_line(exc))

    @app.get(f"{API_PREFIX}/health", tags=["meta"], responses={})
    def health() -> Health:
        """Whether the API is up (no token needed)."""
        return Health(status="ok", version=_package_version())

    @app.get(f"{API_PREFIX}/me", tags=["meta"])
    def me(studio: Caller) -> Me:
        """Who the token acts as, and what it may do."""
        actor = studio.actor
        return Me(username=actor.username, role=actor.role, permissions=sorted(PERMISSIONS[actor.role]))

    for router in (images, labels, classes, models, jobs, exports, tokens):
        app.include_router(router.router, prefix=API_PREFIX)
    app.include_router(label_studio.router)
    app.add_middleware(BodyLimit, limit=MAX_BODY)
    return app
