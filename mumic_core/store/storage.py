"""Where images and published model versions are kept: local disk, or any fsspec store (S3...).

A :class:`Storage` is an fsspec filesystem and a root; keys are relative POSIX paths below
the root. Local storage is used in place. Remote files are read through a local copy under
``$MUMIC_HOME/cache/storage/<area>/<key>``; that is safe because what is stored never changes
once written (images are content-addressed, and a model version's folder is complete before
the version is registered).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import fsspec
from fsspec.implementations.local import LocalFileSystem

if TYPE_CHECKING:
    from mumic_core.config import Settings


def write_file_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a synced temporary file renamed into place: a failure
    (a full disk) leaves no partial file, and a file that was there stays as it was. The OSError
    raised then names ``path``, not the temporary file."""
    path = Path(path)
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno is not None:
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise


class Storage:
    """Files below ``url`` (a local folder or an fsspec URL); remote reads go through ``cache_dir``."""

    def __init__(self, url: str | Path, cache_dir: Path | None = None, options: dict | None = None) -> None:
        self.fs, root = fsspec.core.url_to_fs(str(url), **(options or {}))
        self.remote = not isinstance(self.fs, LocalFileSystem)
        self.root = root.rstrip("/")
        self.local_root = None if self.remote else Path(root)
        if self.remote and cache_dir is None:
            raise ValueError(f"remote storage {url} needs a local cache folder")
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None

    def __repr__(self) -> str:
        return f"Storage({self.fs.unstrip_protocol(self.root)!r})"

    def _remote(self, key: str) -> str:
        return f"{self.root}/{key}"

    def path(self, key: str) -> Path:
        """The local path of ``key`` without fetching it: the file itself, or its cached copy."""
        return (self.local_root if self.local_root is not None else self.cache_dir).joinpath(*PurePosixPath(key).parts)

    def exists(self, key: str) -> bool:
        if not self.remote:
            return self.path(key).is_file()
        return self.path(key).is_file() or self.fs.exists(self._remote(key))

    def write_bytes(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key``, never leaving a partial file under that name: local,
        a synced temporary file renamed into place; remote, one upload."""
        if self.remote:
            self.fs.pipe_file(self._remote(key), data)
            return
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_file_atomically(path, data)

    def read_bytes(self, key: str) -> bytes:
        if not self.remote:
            return self.path(key).read_bytes()
        try:
            return self.fs.cat_file(self._remote(key))
        except FileNotFoundError:
            raise FileNotFoundError(f"not in storage: {key}") from None

    def local_path(self, key: str) -> Path:
        """A local file holding ``key`` (fetched into the cache first when remote);
        FileNotFoundError when it is not stored."""
        return self.local_paths([key])[0]

    def local_paths(self, keys: Sequence[str], check: bool = True) -> list[Path]:
        """Local files for many keys; remote ones not cached yet are fetched in one batch (fsspec
        downloads them concurrently). Local storage only checks that they exist when ``check``."""
        paths = [self.path(k) for k in keys]
        if not self.remote:
            for key, path in zip(keys, paths):
                if check and not path.is_file():
                    raise FileNotFoundError(f"not in storage: {key}")
            return paths
        missing = list({str(p): (k, p) for k, p in zip(keys, paths) if not p.is_file()}.values())
        if missing:
            tag = uuid.uuid4().hex[:12]
            tmps = [p.with_name(f".{p.name}.{tag}.tmp") for _, p in missing]
            for folder in {t.parent for t in tmps}:
                folder.mkdir(parents=True, exist_ok=True)
            try:
                self.fs.get([self._remote(k) for k, _ in missing], [str(t) for t in tmps])
                for (_, path), tmp in zip(missing, tmps):
                    os.replace(tmp, path)
            except FileNotFoundError:
                absent = [k for k, _ in missing if not self.fs.exists(self._remote(k))]
                raise FileNotFoundError(f"not in storage: {', '.join(absent[:5]) or missing[0][0]}") from None
            finally:
                for tmp in tmps:
                    tmp.unlink(missing_ok=True)
        return paths

    def upload_dir(self, folder: Path, prefix: str) -> int:
        """Copy every file below the local ``folder`` to ``prefix/...`` (replacing what was
        there); returns the number of files. Local storage: nothing to do when it is the same folder."""
        folder = Path(folder)
        files = sorted(p for p in folder.rglob("*") if p.is_file())
        if self.local_root is not None and self.path(prefix).resolve() == folder.resolve():
            return len(files)
        target = self._remote(prefix)
        if self.fs.exists(target):
            self.fs.rm(target, recursive=True)
        if files and not self.remote:  # object stores have no folders to make
            for rel in {p.parent.relative_to(folder).as_posix() for p in files}:
                self.fs.makedirs(target if rel == "." else f"{target}/{rel}", exist_ok=True)
        if files:
            self.fs.put([str(p) for p in files], [f"{target}/{p.relative_to(folder).as_posix()}" for p in files])
        self.fs.invalidate_cache(target)
        return len(files)

    def local_dir(self, prefix: str, dest: Path | None = None) -> Path | None:
        """A local folder holding everything below ``prefix``: for local storage the folder
        itself; for remote storage ``dest`` (default: in the cache), downloaded into a temporary
        sibling and renamed into place unless it is already there (a local ``dest`` elsewhere is
        copied the same way). None when nothing is stored."""
        path = self.path(prefix)
        if not self.remote and (dest is None or Path(dest) == path):
            return path if path.is_dir() else None
        dest = Path(dest) if dest is not None else path
        if dest.is_dir():
            return dest
        target = self._remote(prefix)
        self.fs.invalidate_cache(target)
        files = self.fs.find(target)
        if not files:
            return None
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp"))
        try:
            local = [tmp.joinpath(*PurePosixPath(f).relative_to(PurePosixPath(target)).parts) for f in files]
            for folder in {p.parent for p in local}:
                folder.mkdir(parents=True, exist_ok=True)
            self.fs.get(files, [str(p) for p in local])
            try:
                os.replace(tmp, dest)
            except OSError:
                if not dest.is_dir():  # not a concurrent download that finished first
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return dest


def storage_for(settings: Settings, area: str) -> Storage:
    """The storage of ``area`` ("images" or "models"): under MUMIC_HOME by default, else
    ``<MUMIC_STORAGE_URL>/<area>`` with a read-through cache under ``$MUMIC_HOME/cache/storage``."""
    if not settings.storage_url:
        return Storage(settings.home / area)
    url = settings.storage_url.rstrip("/") + "/" + area
    return Storage(url, settings.storage_cache_dir / area, settings.storage_options)
