"""Restore checks a backup completely before anything is moved into MUMIC_HOME: a refused restore
leaves it as it was, so a good restore afterwards works."""

from __future__ import annotations

import errno
import io
import json
import os
import sqlite3
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from mumic_core.cli import main
from mumic_core.store.backup import BackupError, backup, restore

pytestmark = pytest.mark.sqlite_only  # backup covers the embedded SQLite store


@pytest.fixture
def good_archive(studio, tmp_path: Path) -> Path:
    (studio.settings.home / "images" / "ab").mkdir(parents=True)
    (studio.settings.home / "images" / "ab" / "abcd.png").write_bytes(b"an image")
    archive = tmp_path / "good.tar"
    backup(studio, archive)
    return archive


def members(archive: Path) -> dict[str, bytes | None]:
    """name -> content (None for a folder) of every entry."""
    with tarfile.open(archive) as tar:
        return {m.name: tar.extractfile(m).read() if m.isfile() else None for m in tar.getmembers()}


def write_archive(path: Path, entries: dict[str, bytes | None], links: dict[str, str] | None = None) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return path


def doctored(good: Path, tmp_path: Path, name: str, **changes: bytes | None) -> Path:
    entries = members(good)
    entries.update({k.replace("__", "/").replace("_dot_", "."): v for k, v in changes.items()})
    return write_archive(tmp_path / f"{name}.tar", entries)


def sqlite_bytes(tmp_path: Path, *statements: str) -> bytes:
    path = tmp_path / "made.db"
    path.unlink(missing_ok=True)
    with sqlite3.connect(path) as con:
        for statement in statements:
            con.execute(statement)
    con.close()
    return path.read_bytes()


def sqlite_with_version(db: bytes, tmp_path: Path, version: str) -> bytes:
    path = tmp_path / "versioned.db"
    path.write_bytes(db)
    with sqlite3.connect(path) as con:
        con.execute("UPDATE alembic_version SET version_num = ?", (version,))
    con.close()
    return path.read_bytes()


def cases(good: Path, tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """label -> (a bad archive, what the refusal says)."""
    entries = members(good)
    db, manifest = entries["mumic.db"], json.loads(entries["manifest.json"])
    not_tar = tmp_path / "not-a-tar.tar"
    not_tar.write_bytes(b"hello" * 200)
    return {
        "garbage database": (
            doctored(good, tmp_path, "garbage", mumic_dot_db=b"not a database " * 100),
            "not an SQLite database",
        ),
        "truncated database": (doctored(good, tmp_path, "truncated", mumic_dot_db=db[: len(db) // 2]), "damaged"),
        "manifest is a list": (doctored(good, tmp_path, "list", manifest_dot_json=b"[1, 2]"), "manifest.json is not"),
        "manifest not JSON": (doctored(good, tmp_path, "notjson", manifest_dot_json=b"{rows"), "manifest.json is not"),
        "manifest lacks keys": (
            doctored(
                good,
                tmp_path,
                "nokeys",
                manifest_dot_json=json.dumps({k: v for k, v in manifest.items() if k != "rows"}).encode(),
            ),
            "manifest.json is not",
        ),
        "no product tables": (
            doctored(
                good,
                tmp_path,
                "notables",
                mumic_dot_db=sqlite_bytes(
                    tmp_path,
                    "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)",
                    "INSERT INTO alembic_version VALUES ('0007')",
                ),
            ),
            "lacks the tables",
        ),
        "unknown schema version": (
            doctored(good, tmp_path, "future", mumic_dot_db=sqlite_with_version(db, tmp_path, "9999")),
            "schema version '9999'",
        ),
        "no schema version": (
            doctored(
                good, tmp_path, "noversion", mumic_dot_db=sqlite_bytes(tmp_path, "CREATE TABLE images (id INTEGER)")
            ),
            "no schema version",
        ),
        "a link among the images": (
            write_archive(tmp_path / "link.tar", entries, {"images/ab/link.png": "abcd.png"}),
            "not a plain file",
        ),
        "a folder named mumic.db": (
            write_archive(tmp_path / "dirdb.tar", entries | {"mumic.db": None}),
            "not a plain file",
        ),
        "not a tar file": (not_tar, "not a tar file"),
    }


CASES = (
    "garbage database",
    "truncated database",
    "manifest is a list",
    "manifest not JSON",
    "manifest lacks keys",
    "no product tables",
    "unknown schema version",
    "no schema version",
    "a link among the images",
    "a folder named mumic.db",
    "not a tar file",
)


@pytest.mark.parametrize("label", CASES)
def test_a_refused_restore_changes_nothing_and_a_good_one_works_after_it(label, good_archive, tmp_path, monkeypatch):
    archive, reason = cases(good_archive, tmp_path)[label]
    target = tmp_path / "target"
    monkeypatch.setenv("MUMIC_HOME", str(target))
    result = CliRunner().invoke(main, ["restore", str(archive)])
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert result.exit_code == 1 and len(errors) == 1, (result.output, result.exception)
    assert reason in errors[0] and "Traceback" not in result.output, errors[0]
    assert not target.exists()  # made for the restore, and taken away again
    with pytest.raises(BackupError, match=reason):
        restore(archive, target)
    result = CliRunner().invoke(main, ["restore", str(good_archive)])
    assert result.exit_code == 0, (result.output, result.exception)
    assert (target / "images" / "ab" / "abcd.png").read_bytes() == b"an image"
    assert {p.name for p in target.iterdir()} >= {"mumic.db", "images", "models"}


def test_a_backup_onto_a_full_disk_says_so_in_one_line_and_leaves_nothing(studio, tmp_path, monkeypatch):
    def disk_full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(tarfile.TarFile, "addfile", disk_full)
    out = tmp_path / "out" / "store.tar"
    out.parent.mkdir()
    result = CliRunner().invoke(main, ["backup", str(out)])
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert result.exit_code == 1 and "Traceback" not in result.output, (result.output, result.exception)
    assert errors == [f"error: cannot write the backup {out}: No space left on device"]
    assert list(out.parent.iterdir()) == []  # no partial archive, no temporary copy of the database
    (tmp_path / "a-file").write_text("x")
    for folder in ("missing", "a-file"):  # no such folder; a file where the folder should be
        result = CliRunner().invoke(main, ["backup", str(tmp_path / folder / "store.tar")])
        assert result.exit_code == 1 and "Traceback" not in result.output, (result.output, result.exception)
        assert "cannot write the backup" in result.stderr and ".partial" not in result.stderr
