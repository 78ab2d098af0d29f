"""What each request needs: the store, acting as the caller of a valid API token."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated

from fastapi import Depends, Path, Query, Request
from fastapi.security import APIKeyHeader

from mumic_core.store.api_tokens import actor_for_api_token
from mumic_core.store.auth import PermissionDenied, require
from mumic_core.store.studio import Studio

MAX_PAGE = 500

# Documented as one header; Bearer, Label Studio's "Token" and Basic (any user name, the token as
# password: how Label Studio's ML-backend settings send credentials) are all read.
token_header = APIKeyHeader(
    name="Authorization",
    scheme_name="token",
    description="`Bearer <token>` (a personal API token; make one on the Accounts page or with "
    "`python -m mumic_core users token NAME`). `Token <token>` and Basic with the token as password also work.",
    auto_error=False,
)


class Unauthenticated(PermissionDenied):
    """No valid token: answered 401."""


def _secret(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    scheme = scheme.lower()
    if scheme in ("bearer", "token"):
        return value.strip() or None
    if scheme == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2] or None
    return None


def base_studio(request: Request) -> Studio:
    return request.app.state.studio


def caller(request: Request, authorization: Annotated[str | None, Depends(token_header)]) -> Studio:
    """The store acting as the token's user; 401 without a valid token."""
    studio = base_studio(request)
    actor = actor_for_api_token(studio, _secret(authorization))
    if actor is None:
        raise Unauthenticated("a valid API token is needed: send 'Authorization: Bearer <token>'")
    return studio.as_actor(actor)


Caller = Annotated[Studio, Depends(caller)]


def permitted(permission: str):
    """A dependency: the caller, who must hold ``permission`` (403 otherwise)."""

    def check(studio: Caller) -> Studio:
        require(studio, permission)
        return studio

    return check


Offset = Annotated[int, Query(ge=0, le=10**9, description="Items to skip.")]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description=f"Items per page (at most {MAX_PAGE}).")]


def next_offset(offset: int, limit: int, total: int) -> int | None:
    return offset + limit if offset + limit < total else None


# Ids as the database holds them (PostgreSQL's integer): larger ones are refused as invalid (422).
Id = Annotated[int, Path(ge=1, le=2**31 - 1)]


def page_of(items: list, offset: int, limit: int) -> dict:
    """One page of a list already in memory (classes, versions, tokens: short lists)."""
    total = len(items)
    return {
        "items": items[offset : offset + limit],
        "total": total,
        "offset": offset,
        "limit": limit,
        "next_offset": next_offset(offset, limit, total),
    }
