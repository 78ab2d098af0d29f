"""Bulk inserts through the database driver (the fast path for large writes)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def insert_many(conn, table, columns: Sequence[str], rows: Iterable[tuple]) -> None:
    """INSERT rows (tuples in ``columns`` order) through the driver: executemany on SQLite (at
    100k rows, SQLAlchemy's per-row parameter processing costs as much as SQLite's own
    inserting), COPY on PostgreSQL (in the same transaction; executemany wrote 12M rows in 320 s)."""
    if conn.dialect.name == "postgresql":
        cursor = conn.connection.driver_connection.cursor()
        with cursor, cursor.copy(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return
    compiled = table.insert().compile(dialect=conn.dialect, column_keys=list(columns))
    if conn.dialect.positional:
        assert list(compiled.positiontup) == list(columns), compiled.positiontup
        params = list(rows)
    else:
        params = [dict(zip(columns, r)) for r in rows]
    if params:
        conn.exec_driver_sql(str(compiled), params)


def fetch_rows(conn, query) -> list[tuple]:
    """A SELECT's rows as the driver's plain tuples, for numbers in bulk: 1M rows without
    SQLAlchemy's per-row objects and processing (0.3 s instead of 2 s)."""
    return conn.execute(query).cursor.fetchall()
