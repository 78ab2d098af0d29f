"""Personal API tokens: what a pipeline or another tool uses instead of a password.

Each user makes and revokes their own (an admin may revoke anyone's). The secret is shown once;
the store keeps its SHA-256 and an 8-character prefix to tell tokens apart. A token acts as its
user with the lesser of the user's role and the token's own (an admin may make a token that can
only review), so demoting or disabling the user narrows or stops the token at once.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update

from db.models import ApiToken, User
from mumic_core.store.auth import (
    ROLES,
    AccountError,
    Actor,
    audit,
    hash_secret,
    normalize_username,
    requires,
)
from mumic_core.store.studio import Studio

TOKEN_PREFIX = "mumic_"
_TOUCH_EVERY = timedelta(minutes=5)  # how stale last_used_at may get before a request writes it


@dataclass(frozen=True)
class TokenInfo:
    """A token as its owner sees it (never the secret)."""

    id: int
    username: str
    name: str
    prefix: str
    role: str
    created_at: datetime
    last_used_at: datetime | None
    revoked: bool


def _info(row: ApiToken, username: str) -> TokenInfo:
    return TokenInfo(
        row.id, username, row.name, row.prefix, row.role, row.created_at, row.last_used_at, row.revoked_at is not None
    )


def _lesser(a: str, b: str) -> str:
    """The role with fewer rights of two (annotator < admin)."""
    return a if ROLES.index(a) >= ROLES.index(b) else b


@requires("users", unless_own="username")
def create_token(studio: Studio, username: str, name: str, role: str | None = None) -> tuple[TokenInfo, str]:
    """A new token for ``username`` (one's own, or anyone's for an admin); returns it and its
    secret, which is shown once. ``role`` caps it (default: the user's role)."""
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise AccountError("name the token (1 to 100 characters), e.g. the pipeline that will use it")
    if not name.isprintable():
        raise AccountError("a token's name may not hold control characters")
    if role is not None and role not in ROLES:
        raise AccountError(f"unknown role {role!r}; use {' or '.join(ROLES)}")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with studio.write() as s:
        user = s.scalar(select(User).where(User.username == normalize_username(username)))
        if user is None:
            raise AccountError(f"no account named {username!r}")
        row = ApiToken(
            user_id=user.id,
            name=name,
            token_hash=hash_secret(secret),
            prefix=secret[len(TOKEN_PREFIX) : len(TOKEN_PREFIX) + 8],
            role=_lesser(role or user.role, user.role),
            created_at=datetime.now(UTC),
        )
        s.add(row)
        s.flush()
        audit(s, studio, "create_token", username=user.username, token=row.prefix, role=row.role)
        return _info(row, user.username), secret


def list_tokens(studio: Studio, username: str | None = None) -> list[TokenInfo]:
    """Tokens of one user (or of everyone), newest first, revoked ones included."""
    query = select(ApiToken, User.username).join(User, User.id == ApiToken.user_id).order_by(ApiToken.id.desc())
    if username is not None:
        query = query.where(User.username == normalize_username(username))
    with studio.read() as s:
        return [_info(row, name) for row, name in s.execute(query)]


@requires("users", unless_own="username")
def revoke_token(studio: Studio, username: str, token_id: int) -> None:
    """Revoke one of ``username``'s tokens (one's own, or anyone's for an admin)."""
    with studio.write() as s:
        row = s.scalar(
            select(ApiToken)
            .join(User, User.id == ApiToken.user_id)
            .where(ApiToken.id == token_id, User.username == normalize_username(username))
        )
        if row is None:
            raise AccountError(f"{username} has no token with id {token_id}")
        if row.revoked_at is None:
            row.revoked_at = datetime.now(UTC)
            audit(s, studio, "revoke_token", username=username, token=row.prefix)


def actor_for_api_token(studio: Studio, secret: str | None) -> Actor | None:
    """Who a token acts as; None when it is unknown, revoked, or its account is disabled."""
    if not secret or not isinstance(secret, str) or len(secret) > 200:
        return None
    with studio.read() as s:
        found = s.execute(
            select(ApiToken, User)
            .join(User, User.id == ApiToken.user_id)
            .where(ApiToken.token_hash == hash_secret(secret))
        ).first()
    if found is None:
        return None
    row, user = found
    if row.revoked_at is not None or not user.active:
        return None
    now = datetime.now(UTC)
    last = row.last_used_at
    if last is None or now - (last if last.tzinfo else last.replace(tzinfo=UTC)) > _TOUCH_EVERY:
        with studio.write() as s:
            s.execute(update(ApiToken).where(ApiToken.id == row.id).values(last_used_at=now))
    return Actor(user.username, _lesser(row.role, user.role))
