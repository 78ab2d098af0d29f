"""Backup and restore of a SQLite store: the database (SQLite's online backup, consistent while
the app and worker keep writing), the images and the models, in one tar file.

Embedding caches are left out: they are rebuilt from the images on first use.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import tarfile
import tempfile
from contextlib import closing
from datetime import datetime, timezone
from pathlib import Path

from .auth import requires
from .errors import MumicError
from .studio import Studio

MANIFEST = "manifest.json"
DB_NAME = "mumic.db"
FOLDERS = ("images", "models")


class BackupError(MumicError, RuntimeError):
    """A backup or restore that cannot be done, with the reason."""


def _sqlite_path(url: str) -> Path:
    if not url.startswith("sqlite:///"):
        raise BackupError("backup covers the embedded SQLite store; for PostgreSQL use pg_dump, and copy "
                          "MUMIC_HOME/images and MUMIC_HOME/models")
    return Path(url.removeprefix("sqlite:///"))


@requires("export")
def backup(studio: Studio, out: Path) -> dict:
    """Write ``out`` (a tar file); returns its manifest (file and row counts)."""
    db = _sqlite_path(studio.url)
    out = Path(out)
    if out.exists():
        raise BackupError(f"{out} exists; choose a new file name")
    with tempfile.TemporaryDirectory(dir=out.parent if out.parent.exists() else None) as tmp:
        copy = Path(tmp) / DB_NAME
        with closing(sqlite3.connect(db)) as src, closing(sqlite3.connect(copy)) as dst:
            src.backup(dst)  # a consistent snapshot, page by page, while others write
            dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
            tables = [r[0] for r in dst.execute("SELECT name FROM sqlite_master WHERE type='table'")]
            rows = {t: dst.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in sorted(tables)}
        files = {f: sum(1 for p in (studio.settings.home / f).rglob("*") if p.is_file()) for f in FOLDERS}
        manifest = {"created": datetime.now(timezone.utc).isoformat(), "rows": rows, "files": files}
        (Path(tmp) / MANIFEST).write_text(json.dumps(manifest, indent=1))
        partial = out.with_name(f".{out.name}.partial")
        with tarfile.open(partial, "w") as tar:
            tar.add(Path(tmp) / MANIFEST, MANIFEST)
            tar.add(copy, DB_NAME)
            for folder in FOLDERS:
                if (studio.settings.home / folder).is_dir():
                    tar.add(studio.settings.home / folder, folder)
        partial.replace(out)
    return manifest


def restore(archive: Path, home: Path) -> dict:
    """Unpack a backup into ``home``, which must hold no store yet; returns the manifest."""
    archive, home = Path(archive), Path(home)
    if (home / DB_NAME).exists() or any((home / f).is_dir() and any((home / f).iterdir()) for f in FOLDERS):
        raise BackupError(f"{home} already holds a store; restore into an empty MUMIC_HOME")
    try:
        with tarfile.open(archive) as tar:
            names = tar.getnames()
            if MANIFEST not in names or DB_NAME not in names:
                raise BackupError(f"{archive} is not a MuMIC Studio backup (no {MANIFEST} or {DB_NAME})")
            allowed = {MANIFEST, DB_NAME, *FOLDERS}
            strays = [n for n in names if n.split("/")[0] not in allowed]
            if strays:
                raise BackupError(f"{archive} holds unexpected entries, e.g. {strays[0]!r}")
            home.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(dir=home, prefix=".restore-"))
            try:
                tar.extractall(staging, filter="data")  # refuses absolute paths, '..' and links outside
                manifest = json.loads((staging / MANIFEST).read_text())
                for name in (DB_NAME, *FOLDERS):
                    if (staging / name).exists():
                        if (home / name).is_dir():
                            (home / name).rmdir()  # empty, checked above
                        (staging / name).replace(home / name)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    except (tarfile.TarError, OSError, json.JSONDecodeError) as exc:
        raise BackupError(f"cannot restore {archive}: {exc}") from exc
    return manifest
