"""Personal API tokens: make, list and revoke your own (an admin: anyone's)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from mumic_core.api.deps import Caller, Id, Limit, Offset, page_of
from mumic_core.api.schemas import Page, TokenCreate, TokenCreated, TokenOut
from mumic_core.store.api_tokens import TokenInfo, create_token, list_tokens, revoke_token
from mumic_core.store.auth import require

router = APIRouter(prefix="/tokens", tags=["tokens"])


def _out(t: TokenInfo) -> dict:
    return {
        "id": t.id,
        "username": t.username,
        "name": t.name,
        "prefix": t.prefix,
        "role": t.role,
        "created_at": t.created_at,
        "last_used_at": t.last_used_at,
        "revoked": t.revoked,
    }


@router.get("")
def get_tokens(
    studio: Caller,
    offset: Offset = 0,
    limit: Limit = 100,
    everyone: Annotated[bool, Query(description="An admin: every user's tokens.")] = False,
) -> Page[TokenOut]:
    """Your tokens (never their secrets), newest first."""
    if everyone:
        require(studio, "users")
    tokens = [TokenOut(**_out(t)) for t in list_tokens(studio, None if everyone else studio.actor.username)]
    return Page[TokenOut](**page_of(tokens, offset, limit))


@router.post("", status_code=201)
def make_token(studio: Caller, body: TokenCreate) -> TokenCreated:
    """A new token, for you (or, for an admin, for ``username``); its secret is in this answer only."""
    info, secret = create_token(studio, body.username or studio.actor.username, body.name, body.role)
    return TokenCreated(**_out(info), token=secret)


@router.delete("/{token_id}", status_code=204)
def delete_token(studio: Caller, token_id: Id) -> None:
    """Revoke a token: it stops working at once (yours, or for an admin anyone's)."""
    owner = next((t.username for t in list_tokens(studio) if t.id == token_id), None)
    if owner is None:
        raise KeyError(f"no token with id {token_id}")
    revoke_token(studio, owner, token_id)
