"""The handle every service function takes: settings, database, image store, and who acts."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from sqlalchemy.exc import DatabaseError, DataError, OperationalError

from db.migrate import upgrade
from db.session import read_session, write_session
from mumic_core.config import Settings, load_settings, without_password
from mumic_core.errors import ServiceUnavailable
from mumic_core.store.images import ImageStore
from mumic_core.store.storage import storage_for

if TYPE_CHECKING:
    from mumic_core.store.auth import Actor


@dataclass(frozen=True)
class Studio:
    settings: Settings
    actor: Actor | None = None  # None: may read, may change nothing (see auth.require)

    def as_actor(self, actor: Actor | None) -> Studio:
        """The same store, acting as ``actor``."""
        return replace(self, actor=actor)

    @property
    def url(self) -> str:
        return self.settings.database_url

    @property
    def store(self) -> ImageStore:
        return ImageStore(storage_for(self.settings, "images"))

    def read(self):
        """Context manager: a read-only session."""
        return read_session(self.url)

    def write(self):
        """Context manager: a short write transaction (BEGIN IMMEDIATE on SQLite)."""
        return write_session(self.url)


# What the database raises for a value it cannot hold (a NUL in text on PostgreSQL, a number out
# of range): the caller's input, not a fault of the server.
UnstorableValue = DataError


def open_studio(settings: Settings | None = None, migrate: bool = True, actor: Actor | None = None) -> Studio:
    """Create the state folders and bring the schema up to date."""
    settings = settings or load_settings()
    settings.ensure_dirs()
    if migrate:
        try:
            upgrade(settings.database_url)
        except DatabaseError as exc:  # a server that cannot be reached, or a file that is not a database
            unreachable = isinstance(exc, OperationalError)
            raise ServiceUnavailable(
                f"cannot {'reach' if unreachable else 'open'} the database {without_password(settings.database_url)}: "
                f"{str(exc.orig or exc).strip().splitlines()[0]} "
                f"({'is the server running, and ' if unreachable else 'is '}MUMIC_DATABASE_URL right?)"
            ) from None
    return Studio(settings, actor)
