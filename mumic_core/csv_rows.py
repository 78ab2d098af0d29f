"""Reading people's CSV files: a bad row is reported by line number and skipped, never fatal.

Only a missing header refuses a whole file (without it no row can be understood).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

MAX_FIELD = 10_000  # characters; names, labels and prompts are far shorter
MAX_FILE_BYTES = 64 * 2**20


@dataclass
class CsvRows:
    """The good rows (line number, values by column) and one 'line N: reason' per bad row."""

    rows: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def read_csv_rows(source: Path | bytes, required: Sequence[str], optional: Sequence[str] = ()) -> CsvRows:
    """Parse a UTF-8 CSV whose header names the ``required`` columns (others allowed in
    ``optional``). Rows that are not UTF-8, hold NUL bytes, have the wrong number of fields or a
    field over MAX_FIELD characters are reported with their line number."""
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    if len(data) > MAX_FILE_BYTES:
        raise ValueError(f"the CSV file is larger than {MAX_FILE_BYTES // 2**20} MiB")
    text = data.decode("utf-8", errors="surrogateescape").removeprefix("\ufeff")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip().lower() for h in next(reader)]
    except (StopIteration, csv.Error):
        header = []
    missing = [c for c in required if c not in header]
    if missing:
        raise ValueError(f"expected a header naming the columns {', '.join(required)} "
                         f"(missing {', '.join(missing)})")
    unknown = [h for h in header if h and h not in (*required, *optional)]
    if unknown:
        raise ValueError(f"unknown column {unknown[0]!r}; the columns are {', '.join((*required, *optional))}")
    out = CsvRows()
    while True:
        line = reader.line_num + 1
        try:
            values = next(reader)
        except StopIteration:
            return out
        except csv.Error as exc:
            out.errors.append(f"line {line}: unreadable CSV ({str(exc).replace(chr(0), 'NUL')})")
            continue
        if not any(v.strip() for v in values):
            continue  # blank line
        reason = _bad_row(values, header)
        if reason:
            out.errors.append(f"line {line}: {reason}")
        else:
            out.rows.append((line, {h: v.strip() for h, v in zip(header, values) if h}))


def _bad_row(values: list[str], header: list[str]) -> str | None:
    if len(values) != len(header):
        return f"{len(values)} fields where the header has {len(header)}"
    for v in values:
        if any("\udc80" <= ch <= "\udcff" for ch in v):
            return "not UTF-8 text"
        if "\x00" in v:
            return "holds a NUL byte"
        if len(v) > MAX_FIELD:
            return f"a field of {len(v):,} characters (the limit is {MAX_FIELD:,})"
    return None
