"""Engine and sessions.

SQLite runs in WAL mode with a busy timeout. Python's sqlite3 does not begin a transaction
before a SELECT, so a read-modify-write could interleave with another process; here pysqlite's
own transaction handling is switched off and every write session starts with
``BEGIN IMMEDIATE``, which takes the write lock before the first read. Keep write sessions
short: compute first, then open one.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

_IMMEDIATE = "mumic_begin_immediate"


def _is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def get_engine(url: str) -> Engine:
    """One engine per URL and process."""
    with _engines_lock:
        if url not in _engines:
            _engines[url] = _create_engine(url)
        return _engines[url]


def _create_engine(url: str) -> Engine:
    if _is_sqlite(url):
        engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn, _record) -> None:
            dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA cache_size=-65536")  # 64 MiB of pages (default 2): bulk writes into 1M+ row indexes
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn) -> None:
            immediate = conn.get_execution_options().get(_IMMEDIATE, False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    else:
        engine = create_engine(url, pool_pre_ping=True)
    return engine


def dispose_engines() -> None:
    """Close every pooled connection of this process and forget the engines (tests, forks)."""
    with _engines_lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
    _factories.cache_clear()


@functools.cache
def _factories(url: str) -> tuple[sessionmaker, sessionmaker]:
    engine = get_engine(url)
    read = sessionmaker(engine, expire_on_commit=False)
    write = sessionmaker(engine.execution_options(**{_IMMEDIATE: True}), expire_on_commit=False)
    return read, write


@contextmanager
def read_session(url: str) -> Iterator[Session]:
    """A session for reading. Closing it (not rolling back) keeps loaded objects usable,
    detached; anything written in it is discarded with the connection's transaction."""
    session = _factories(url)[0]()
    try:
        yield session
    finally:
        session.close()


@contextmanager
def write_session(url: str) -> Iterator[Session]:
    """A short write transaction that holds the write lock from its first statement.

    Commits on success, rolls back on error. On PostgreSQL use ``with_for_update()`` on
    rows that are read and then changed.
    """
    session = _factories(url)[1]()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
