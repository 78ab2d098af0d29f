"""Reading and writing people's CSV files.

Reading: a bad row is reported by line number and skipped, never fatal; only a missing header
refuses a whole file (without it no row can be understood). Commas are the separator, and
semicolons or tabs are recognised from the header (spreadsheets in many locales save those).
Text is UTF-8 (a byte-order mark is dropped), or UTF-16 with its byte-order mark (a spreadsheet's
"Unicode text"); lines may end in LF, CRLF or a lone CR (old Mac spreadsheets).
Values are kept as written (a file name may start with a space); callers strip what they compare.

Writing: a value that a spreadsheet would run as a formula (it starts with ``= + - @``, a tab or a
carriage return) is written with a leading apostrophe, as OWASP recommends against CSV injection;
:func:`from_cell` undoes exactly that, so the product's own exports read back unchanged.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

MAX_FIELD = 10_000  # characters; names, labels and prompts are far shorter
MAX_FILE_BYTES = 64 * 2**20
DELIMITERS = (",", ";", "\t")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_DELIMITER_NAMES = {",": "commas", ";": "semicolons", "\t": "tabs"}


@dataclass
class CsvRows:
    """The good rows (line number, values by column) and one 'line N: reason' per bad row."""

    rows: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    delimiter: str = ","
    columns: list[str] = field(default_factory=list)


def read_csv_rows(source: Path | bytes, required: Sequence[str], optional: Sequence[str] = ()) -> CsvRows:
    """Parse a UTF-8 CSV whose header names the ``required`` columns (others allowed in
    ``optional``). Rows that are not UTF-8, hold NUL bytes, have the wrong number of fields or a
    field over MAX_FIELD characters are reported with their line number. Values are returned as
    written, after undoing the exporter's formula guard (:func:`from_cell`)."""
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    if len(data) > MAX_FILE_BYTES:
        raise ValueError(f"the CSV file is larger than {MAX_FILE_BYTES // 2**20} MiB")
    text = _decode(data)
    delimiter, header = _header(text, required, optional)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    next(reader, None)
    out = CsvRows(delimiter=delimiter, columns=[h for h in header if h])
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
            out.rows.append((line, {h: from_cell(v) for h, v in zip(header, values) if h}))


def _decode(data: bytes) -> str:
    """UTF-16 with a byte-order mark as such; anything else as UTF-8, bytes that are not kept as
    surrogates so that the rows holding them are refused by line number."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            raise ValueError("the file starts as UTF-16 text but is not valid UTF-16; save it as CSV UTF-8") from None
    if b"\x00" in data[:200].split(b"\n", 1)[0]:
        raise ValueError("the header holds NUL bytes: UTF-16 text without a byte-order mark? Save it as CSV UTF-8")
    return data.decode("utf-8", errors="surrogateescape").removeprefix("\ufeff")


def _header(text: str, required: Sequence[str], optional: Sequence[str]) -> tuple[str, list[str]]:
    """The separator and the (lower-cased) column names; ValueError naming what is wrong."""
    first = re.split(r"\r\n|\r|\n", text, maxsplit=1)[0]
    candidates = []
    for delimiter in DELIMITERS:
        try:
            header = [h.strip().lower() for h in next(csv.reader(io.StringIO(first), delimiter=delimiter))]
        except (StopIteration, csv.Error):
            header = []
        missing = [c for c in required if c not in header]
        candidates.append((len(missing), delimiter, header, missing))
        if not missing:
            break
    _, delimiter, header, missing = min(candidates, key=lambda c: c[0])
    if missing:
        other = next((d for d in DELIMITERS[1:] if d in first and "," not in first), None)
        hint = f"; it seems to use {_DELIMITER_NAMES[other]} between columns" if other else ""
        raise ValueError(
            f"expected a header naming the columns {', '.join(required)} (missing {', '.join(missing)}{hint})"
        )
    unknown = [h for h in header if h and h not in (*required, *optional)]
    if unknown:
        raise ValueError(f"unknown column {unknown[0]!r}; the columns are {', '.join((*required, *optional))}")
    twice = next((h for k, h in enumerate(header) if h and h in header[:k]), None)
    if twice:
        raise ValueError(f"the column {twice!r} appears twice in the header; which one holds the values is unclear")
    return delimiter, header


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


def to_cell(value: object) -> str:
    """A value as a CSV cell a spreadsheet will not run as a formula (OWASP: prefix ``'``).
    A value that already starts with ``'`` before such a character (or another ``'``) gets one
    more, so :func:`from_cell` is its exact inverse."""
    text = "" if value is None else str(value)
    if text.startswith(_FORMULA_START) or (text.startswith("'") and text[1:2] in (*_FORMULA_START, "'")):
        return "'" + text
    return text


def from_cell(text: str) -> str:
    """Undo :func:`to_cell`: one leading ``'`` before a formula character or another ``'`` goes."""
    if text.startswith("'") and text[1:2] in (*_FORMULA_START, "'"):
        return text[1:]
    return text


def write_csv(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """CSV text with formula-safe cells (:func:`to_cell`)."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows([to_cell(v) for v in row] for row in rows)
    return buf.getvalue()
