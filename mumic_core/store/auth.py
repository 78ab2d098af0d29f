"""Accounts, roles and signed-in sessions.

Passwords are hashed with Argon2id (argon2-cffi). A session is a random token held by the
browser tab; the store keeps only its SHA-256, with an idle and an absolute expiry.

Every service function that changes something is marked with :func:`requires`, which checks
the studio's actor before the function runs, so a missing check in the UI cannot open a hole
(``tests/test_role_checks.py`` walks every service function): the command line and the worker
act as :data:`SYSTEM` (whoever runs them can read the database file anyway), a browser as the
signed-in user, and a studio opened without an actor may change nothing.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import ParamSpec, TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import and_, delete, func, or_, select, update

from db.models import AuditEvent, SignInAttempt, User, UserSession
from mumic_core.errors import MumicError

ROLES = ("admin", "annotator")
PERMISSIONS: dict[str, frozenset[str]] = {
    "annotator": frozenset({"review"}),
    "admin": frozenset({"review", "classes", "import", "export", "train", "models", "users", "settings"}),
}
_DOING = {
    "classes": "change classes",
    "import": "import",
    "export": "export",
    "train": "train or re-score models",
    "models": "activate models",
    "users": "manage accounts",
    "settings": "change settings",
    "review": "review",
}
SESSION_IDLE = timedelta(hours=8)
SESSION_MAX = timedelta(hours=24)
COOKIE_CODE_TTL = timedelta(seconds=60)  # how long a browser has to exchange its one-time cookie code
_SLIDE_EVERY = timedelta(minutes=5)  # how stale last_seen may get before a request writes it
MIN_PASSWORD = 10
MAX_FAILURES = 5  # wrong passwords for one name from one address within LOCKOUT, before it waits
MAX_FAILURES_PER_NAME = 10 * MAX_FAILURES  # ... from all addresses together (guessing from many)
LOCKOUT = timedelta(minutes=15)
ATTEMPTS_KEPT = timedelta(days=30)  # sign-in attempts (name, address, outcome) are kept this long
_USERNAME = re.compile(r"[a-z0-9][a-z0-9_.-]{1,39}")
_hasher = PasswordHasher()
P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class UserInfo:
    """An account as pages see it (never its password hash)."""

    id: int
    username: str
    role: str
    active: bool
    created_at: datetime | None

    @classmethod
    def of(cls, row: User) -> UserInfo:
        return cls(row.id, row.username, row.role, bool(row.active), row.created_at)


class PermissionDenied(MumicError, PermissionError):
    """The actor may not do this; the message says who and what."""


class AccountError(MumicError, ValueError):
    """A refused account change (bad name, weak password, unknown user)."""


@dataclass(frozen=True)
class Actor:
    """Who is acting: a signed-in user, or the trusted system (CLI, worker)."""

    username: str
    role: str
    system: bool = False

    def may(self, permission: str) -> bool:
        return permission in PERMISSIONS.get(self.role, frozenset())


SYSTEM = Actor("system", "admin", system=True)


def require(studio, permission: str) -> Actor:
    """The studio's actor, if it holds ``permission``; PermissionDenied otherwise."""
    actor = studio.actor
    if actor is None:
        raise PermissionDenied(f"sign in first: {permission} needs an account")
    if not actor.may(permission):
        raise PermissionDenied(f"{actor.username} is an {actor.role} and may not {_DOING.get(permission, permission)}")
    return actor


def require_self(studio, annotator: str, permission: str = "review") -> Actor:
    """``permission`` (review by default), and a signed-in user may only act as themself (only
    the system acts for others)."""
    actor = require(studio, permission)
    if not actor.system and annotator != actor.username:
        raise PermissionDenied(f"signed in as {actor.username}: cannot act as {annotator!r}")
    return actor


def requires(
    permission: str, *, acting_as: str | None = None, unless_own: str | None = None
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Mark a service function that changes something (or reads what only some may read): the
    studio's actor must hold ``permission``, checked before the function runs.

    ``acting_as`` names the argument that says for whom the call acts (an annotator's name):
    it must be the signed-in user. ``unless_own`` names an argument that, when it is the
    signed-in user, makes ``permission`` unnecessary (one's own password). The marks
    (``fn.requires``, ``fn.acting_as``) let tests find every checked function."""

    def mark(fn: Callable[P, R]) -> Callable[P, R]:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def checked(*args: P.args, **kwargs: P.kwargs) -> R:
            studio = args[0] if args else kwargs["studio"]
            named = signature.bind_partial(*args, **kwargs).arguments if acting_as or unless_own else {}
            actor = studio.actor
            own = bool(unless_own) and actor is not None and named.get(unless_own) == actor.username
            if acting_as:
                require_self(studio, named.get(acting_as), permission)
            elif not own:
                require(studio, permission)
            return fn(*args, **kwargs)

        checked.requires, checked.acting_as = permission, acting_as
        return checked

    return mark


def audit(session, studio, action: str, **details) -> None:
    """Record who did ``action`` in the caller's write transaction."""
    actor = studio.actor.username if studio.actor else "anonymous"
    session.add(AuditEvent(actor=actor, action=action, details=details))


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo else when.replace(tzinfo=UTC)  # SQLite drops the zone


def normalize_username(name: str) -> str:
    clean = (name or "").strip().lower()
    if not _USERNAME.fullmatch(clean):
        raise AccountError(
            "a username is 2-40 characters: letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return clean


def _check_password(password: str) -> None:
    if len(password or "") < MIN_PASSWORD:
        raise AccountError(f"a password needs at least {MIN_PASSWORD} characters")
    if len(password) > 1024:
        raise AccountError("a password may have at most 1024 characters")


@requires("users")
def add_user(studio, username: str, password: str, role: str = "annotator") -> UserInfo:
    """Create an account (admin only)."""
    name = normalize_username(username)
    if role not in ROLES:
        raise AccountError(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
    _check_password(password)
    with studio.write() as s:
        if s.scalar(select(User.id).where(User.username == name)) is not None:
            raise AccountError(f"user {name!r} already exists")
        user = User(username=name, password_hash=_hasher.hash(password), role=role, active=True)
        s.add(user)
        audit(s, studio, "add_user", username=name, role=role)
        s.flush()
        return UserInfo.of(user)


@requires("users")
def list_users(studio) -> list[UserInfo]:
    """Every account, by name."""
    with studio.read() as s:
        return [UserInfo.of(row) for row in s.scalars(select(User).order_by(User.username))]


@requires("users")
def set_active(studio, username: str, active: bool) -> None:
    """Disable (signing out every session) or re-enable an account."""
    name = normalize_username(username)
    with studio.write() as s:
        user = s.scalar(select(User).where(User.username == name))
        if user is None:
            raise AccountError(f"no user {name!r}")
        if (
            not active
            and user.role == "admin"
            and s.scalar(select(User.id).where(User.role == "admin", User.active.is_(True), User.id != user.id)) is None
        ):
            raise AccountError(f"{name!r} is the last active admin; add another admin first")
        user.active = active
        if not active:
            s.execute(update(UserSession).where(UserSession.user_id == user.id).values(revoked=True))
        audit(s, studio, "enable_user" if active else "disable_user", username=name)


@requires("users")
def set_role(studio, username: str, role: str) -> None:
    """Give an account another role; the last active admin keeps theirs."""
    name = normalize_username(username)
    if role not in ROLES:
        raise AccountError(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
    with studio.write() as s:
        user = s.scalar(select(User).where(User.username == name))
        if user is None:
            raise AccountError(f"no user {name!r}")
        if (
            user.role == "admin"
            and role != "admin"
            and user.active
            and s.scalar(select(User.id).where(User.role == "admin", User.active.is_(True), User.id != user.id)) is None
        ):
            raise AccountError(f"{name!r} is the last active admin; make another admin first")
        user.role = role
        audit(s, studio, "set_role", username=name, role=role)


@requires("users", unless_own="username")
def set_password(studio, username: str, password: str) -> None:
    """A new password (admins for anyone; a user for themself); signs out the other sessions."""
    name = normalize_username(username)
    _check_password(password)
    with studio.write() as s:
        user = s.scalar(select(User).where(User.username == name))
        if user is None:
            raise AccountError(f"no user {name!r}")
        user.password_hash = _hasher.hash(password)
        s.execute(update(UserSession).where(UserSession.user_id == user.id).values(revoked=True))
        audit(s, studio, "set_password", username=name)


def ensure_first_admin(studio) -> str | None:
    """On a store without accounts: create ``admin`` with a random password and return it
    (to be shown once); None when accounts exist."""
    with studio.write() as s:
        if s.scalar(select(User.id).limit(1)) is not None:
            return None
        password = secrets.token_urlsafe(12)
        s.add(User(username="admin", password_hash=_hasher.hash(password), role="admin", active=True))
        s.add(AuditEvent(actor="system", action="add_user", details={"username": "admin", "role": "admin"}))
    return password


def hash_secret(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def sign_in(studio, username: str, password: str, address: str | None = None) -> str:
    """A new session token for correct credentials of an active account; one vague error
    otherwise (it does not say whether the name exists).

    Guessing is throttled per name and client ``address`` (MAX_FAILURES within LOCKOUT), so a
    stranger's guesses lock out only the stranger's address, and per name across all addresses
    (MAX_FAILURES_PER_NAME) against guessing from many. Each attempt is counted and recorded in
    one transaction before Argon2 runs, so parallel guesses cannot outrun the limits."""
    refused = PermissionDenied("wrong username or password, or the account is disabled")
    try:
        name = normalize_username(username)
    except AccountError:
        raise refused from None
    attempt_id, user = _begin_attempt(studio, name, (address or "local")[:64])
    if user is None:
        _hasher.hash(password or "x")  # same work either way: no timing hint that the name is free
        _end_attempt(studio, attempt_id, "failed")
        raise refused
    try:
        _hasher.verify(user.password_hash, password or "")
    except (VerificationError, InvalidHashError):
        _end_attempt(studio, attempt_id, "failed")
        raise refused from None
    if not user.active:
        _end_attempt(studio, attempt_id, "disabled")
        raise refused
    token, now = secrets.token_urlsafe(32), _now()
    with studio.write() as s:
        s.add(
            UserSession(
                token_hash=hash_secret(token),
                user_id=user.id,
                created_at=now,
                last_seen_at=now,
                expires_at=now + SESSION_IDLE,
            )
        )
        s.execute(update(SignInAttempt).where(SignInAttempt.id == attempt_id).values(outcome="succeeded"))
        if _hasher.check_needs_rehash(user.password_hash):
            s.execute(update(User).where(User.id == user.id).values(password_hash=_hasher.hash(password)))
    return token


def _begin_attempt(studio, name: str, address: str) -> tuple[int, User | None]:
    """Count the name's recent failures (in-flight attempts count as failures) and record this
    attempt as pending, atomically: SQLite's BEGIN IMMEDIATE serialises it, PostgreSQL an
    advisory lock on the name. Raises PermissionDenied when a limit is reached."""
    now = _now()
    with studio.write() as s:
        if s.bind.dialect.name == "postgresql":
            key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
            s.execute(select(func.pg_advisory_xact_lock(key)))
        s.execute(delete(SignInAttempt).where(SignInAttempt.at < now - ATTEMPTS_KEPT))
        counted = (
            SignInAttempt.username == name,
            SignInAttempt.at > now - LOCKOUT,
            SignInAttempt.outcome.in_(("pending", "failed")),
        )
        here, failed = SignInAttempt.address == address, SignInAttempt.outcome == "failed"
        total, at_address, failed_total, failed_here = s.execute(
            select(
                func.count(),
                func.count().filter(here),
                func.count().filter(failed),
                func.count().filter(and_(here, failed)),
            ).where(*counted)
        ).one()
        if at_address >= MAX_FAILURES or total >= MAX_FAILURES_PER_NAME:
            if failed_here >= MAX_FAILURES or failed_total >= MAX_FAILURES_PER_NAME:
                raise PermissionDenied(
                    f"too many failed sign-ins for this name; try again in {LOCKOUT.seconds // 60} minutes"
                )
            raise PermissionDenied(
                "too many sign-ins for this name at once (still being checked); try again in a moment"
            )
        attempt = SignInAttempt(username=name, address=address, at=now, outcome="pending")
        s.add(attempt)
        user = s.scalar(select(User).where(User.username == name))
        s.flush()
        return attempt.id, user


def _end_attempt(studio, attempt_id: int, outcome: str) -> None:
    with studio.write() as s:
        s.execute(update(SignInAttempt).where(SignInAttempt.id == attempt_id).values(outcome=outcome))


def _of_token(key: str):
    """The session a token's hash names: the tab's own token or the browser cookie's."""
    return or_(UserSession.token_hash == key, UserSession.cookie_hash == key)


def actor_for_token(studio, token: str | None) -> Actor | None:
    """The signed-in user of a session token (a tab's or a cookie's), sliding its idle expiry;
    None when the token is unknown, expired, revoked, or its account is disabled."""
    if not token or not isinstance(token, str):
        return None
    key = hash_secret(token)
    now = _now()
    with studio.read() as s:
        row = s.execute(
            select(UserSession, User).join(User, User.id == UserSession.user_id).where(_of_token(key))
        ).first()
    if row is None:
        return None
    sess, user = row
    if sess.revoked or not user.active or _aware(sess.expires_at) <= now:
        return None
    if now - _aware(sess.last_seen_at) > _SLIDE_EVERY:
        with studio.write() as s:
            s.execute(
                update(UserSession)
                .where(UserSession.token_hash == sess.token_hash)
                .values(last_seen_at=now, expires_at=min(now + SESSION_IDLE, _aware(sess.created_at) + SESSION_MAX))
            )
    return Actor(user.username, user.role)


def sign_out(studio, token: str | None) -> None:
    """End a session, for the tab and the browser's cookie alike (nothing happens for an
    unknown token)."""
    if token:
        with studio.write() as s:
            s.execute(update(UserSession).where(_of_token(hash_secret(token))).values(revoked=True))


def cookie_code(studio, token: str) -> str | None:
    """A one-time code, valid for COOKIE_CODE_TTL, with which the browser obtains the session's
    cookie from the web server (``serve.py``): the server sets it HttpOnly, so page scripts never
    see a token that signs in. None when ``token`` signs nobody in."""
    if actor_for_token(studio, token) is None:
        return None
    code = secrets.token_urlsafe(32)
    with studio.write() as s:
        s.execute(
            update(UserSession)
            .where(_of_token(hash_secret(token)))
            .values(cookie_code_hash=hash_secret(code), cookie_code_until=_now() + COOKIE_CODE_TTL)
        )
    return code


def redeem_cookie_code(studio, code: str | None) -> str | None:
    """A new cookie token for the session a one-time code was made for (any earlier cookie
    token of it stops working); None when the code is unknown, used, expired, or its session
    has ended."""
    if not code or not isinstance(code, str) or len(code) > 100:
        return None
    token = secrets.token_urlsafe(32)
    with studio.write() as s:
        redeemed = s.execute(
            update(UserSession)
            .where(UserSession.cookie_code_hash == hash_secret(code), UserSession.cookie_code_until > _now())
            .values(cookie_hash=hash_secret(token), cookie_code_hash=None, cookie_code_until=None)
        ).rowcount
    return token if redeemed and actor_for_token(studio, token) else None
