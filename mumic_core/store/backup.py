"""Backup and restore of a SQLite store: the database (SQLite's online backup, consistent while
the app and worker keep writing), the images and the models, in one tar file.

Embedding caches are left out: they are rebuilt from the images on first use.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import tarfile
import tempfile
from contextlib import closing, suppress
from datetime import UTC, datetime
from pathlib import Path

from db.migrate import known_revisions
from mumic_core.errors import MumicError
from mumic_core.store.auth import requires
from mumic_core.store.studio import Studio

MANIFEST = "manifest.json"
DB_NAME = "mumic.db"
FOLDERS = ("images", "models")
# in the schema since its first revision: a database without them is not this product's
PRODUCT_TABLES = ("images", "classes", "class_prompts", "annotations", "model_versions", "jobs")


class BackupError(MumicError, RuntimeError):
    """A backup or restore that cannot be done, with the reason."""


def _sqlite_path(url: str) -> Path:
    if not url.startswith("sqlite:///"):
        raise BackupError(
            "backup covers the embedded SQLite store; for PostgreSQL use pg_dump, and copy "
            "MUMIC_HOME/images and MUMIC_HOME/models"
        )
    return Path(url.removeprefix("sqlite:///"))


@requires("export")
def backup(studio: Studio, out: Path) -> dict:
    """Write ``out`` (a tar file); returns its manifest (file and row counts). A backup that cannot
    be written (a full disk, a missing folder) leaves nothing behind and says why."""
    db = _sqlite_path(studio.url)
    out = Path(out)
    if out.exists():
        raise BackupError(f"{out} exists; choose a new file name")
    partial = out.with_name(f".{out.name}.partial")
    try:
        return _write_backup(studio, db, out, partial)
    except (OSError, sqlite3.Error) as exc:
        with suppress(OSError):  # e.g. out's folder is a file
            partial.unlink(missing_ok=True)
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise BackupError(f"cannot write the backup {out}: {reason}") from None


def _write_backup(studio: Studio, db: Path, out: Path, partial: Path) -> dict:
    with tempfile.TemporaryDirectory(dir=out.parent if out.parent.exists() else None) as tmp:
        copy = Path(tmp) / DB_NAME
        with closing(sqlite3.connect(db)) as src, closing(sqlite3.connect(copy)) as dst:
            src.backup(dst)  # a consistent snapshot, page by page, while others write
            dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
            tables = [r[0] for r in dst.execute("SELECT name FROM sqlite_master WHERE type='table'")]
            rows = {t: dst.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in sorted(tables)}
        files = {f: sum(1 for p in (studio.settings.home / f).rglob("*") if p.is_file()) for f in FOLDERS}
        manifest = {"created": datetime.now(UTC).isoformat(), "rows": rows, "files": files}
        (Path(tmp) / MANIFEST).write_text(json.dumps(manifest, indent=1))
        with open(partial, "wb") as fh:
            with tarfile.open(fileobj=fh, mode="w") as tar:
                tar.add(Path(tmp) / MANIFEST, MANIFEST)
                tar.add(copy, DB_NAME)
                for folder in FOLDERS:
                    if (studio.settings.home / folder).is_dir():
                        tar.add(studio.settings.home / folder, folder)
            fh.flush()
            os.fsync(fh.fileno())  # on disk before it is called a backup
        partial.replace(out)
    return manifest


def restore(archive: Path, home: Path) -> dict:
    """Unpack a backup into ``home``, which must hold no store yet; returns the manifest. Every
    part is checked before anything is moved into ``home`` (the manifest, the entries, the
    database's integrity, tables and schema version): a refused backup leaves ``home`` as it was."""
    archive, home = Path(archive), Path(home)
    if (home / DB_NAME).exists() or any((home / f).is_dir() and any((home / f).iterdir()) for f in FOLDERS):
        raise BackupError(f"{home} already holds a store; restore into an empty MUMIC_HOME")
    created = not home.exists()
    try:
        with tarfile.open(archive) as tar:
            manifest = _checked_manifest(tar, archive)
            home.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(dir=home, prefix=".restore-"))
            try:
                tar.extractall(staging, filter="data")  # refuses absolute paths, '..' and links outside
                _check_database(staging / DB_NAME, archive)
                _move_into_place(staging, home)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    except BaseException as exc:
        if created:
            with suppress(OSError):
                home.rmdir()  # only when empty: nothing of someone else's is touched
        if isinstance(exc, tarfile.ReadError):
            raise BackupError(f"cannot restore {archive}: not a tar file") from None
        if isinstance(exc, (tarfile.TarError, OSError)):
            raise BackupError(f"cannot restore {archive}: {exc}") from exc
        raise
    return manifest


def _checked_manifest(tar: tarfile.TarFile, archive: Path) -> dict:
    """The backup's manifest, once its entries are known to be what a backup holds."""
    entries = {m.name: m for m in tar.getmembers()}
    if MANIFEST not in entries or DB_NAME not in entries:
        raise BackupError(f"{archive} is not a MuMIC Studio backup (no {MANIFEST} or {DB_NAME})")
    strays = [n for n in entries if n.split("/")[0] not in {MANIFEST, DB_NAME, *FOLDERS}]
    if strays:
        raise BackupError(f"{archive} holds unexpected entries, e.g. {strays[0]!r}")
    for name, member in entries.items():
        if name in (MANIFEST, DB_NAME) and not member.isfile():
            raise BackupError(f"{archive}: {name} is not a plain file")
        if (name in FOLDERS and not member.isdir()) or not (member.isfile() or member.isdir()):
            raise BackupError(f"{archive}: {name!r} is not a plain file or folder")
    try:
        manifest = json.loads(tar.extractfile(entries[MANIFEST]).read())
    except (UnicodeDecodeError, json.JSONDecodeError):
        manifest = None
    if not (
        isinstance(manifest, dict)
        and isinstance(manifest.get("created"), str)
        and all(isinstance(manifest.get(k), dict) for k in ("rows", "files"))
    ):
        raise BackupError(
            f"{archive}: its {MANIFEST} is not a backup manifest (a JSON object with created, rows and files)"
        )
    return manifest


def _check_database(db: Path, archive: Path) -> None:
    """BackupError unless ``db`` is an intact SQLite database of this product, at a schema
    version this code can upgrade from."""
    try:
        with closing(sqlite3.connect(db)) as con:
            problems = [row[0] for row in con.execute("PRAGMA integrity_check")]
            if problems != ["ok"]:
                raise BackupError(f"{archive}: its database is damaged ({problems[0]})")
            tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if "alembic_version" not in tables:
                raise BackupError(f"{archive}: its database has no schema version (alembic_version table)")
            missing = [t for t in PRODUCT_TABLES if t not in tables]
            if missing:
                raise BackupError(f"{archive}: its database lacks the tables {', '.join(missing)}")
            versions = [row[0] for row in con.execute("SELECT version_num FROM alembic_version")]
    except sqlite3.DatabaseError as exc:
        if "not a database" in str(exc):
            raise BackupError(f"{archive}: its {DB_NAME} is not an SQLite database") from None
        raise BackupError(f"{archive}: its database is damaged ({exc})") from None
    if len(versions) != 1 or versions[0] not in known_revisions():
        raise BackupError(
            f"{archive}: its database has schema version {', '.join(map(repr, versions)) or 'none'}, "
            "which this version of MuMIC Studio does not know (made by a newer one?)"
        )


def _move_into_place(staging: Path, home: Path) -> None:
    """Move the checked parts into ``home``, the database last (a store is there only when all of
    it is); a part that cannot be moved takes back the ones moved before it."""
    moved: list[str] = []
    try:
        for name in (*FOLDERS, DB_NAME):
            if (staging / name).exists():
                if (home / name).is_dir():
                    (home / name).rmdir()  # empty, checked above
                (staging / name).replace(home / name)
                moved.append(name)
    except OSError:
        for name in moved:
            with suppress(OSError):
                (home / name).replace(staging / name)
        raise
