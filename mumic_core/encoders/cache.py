"""Cached image embeddings per encoder, so zero-shot scoring is one matrix product.

The cache is append-only parts (``part-NNNNNN-emb.npy`` then its ``-ids.npy``, the ids file
written last as the commit mark), so a long encoding that is killed keeps every finished part
and the next run resumes where it stopped. Parts are merged into one when encoding ends.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import mmap
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
from filelock import FileLock

from mumic_core.encoders.encoding import encode_images
from mumic_core.encoders.factory import Encoder

SLICE_ROWS = 65_536  # embeddings per slice of a pass over the whole cache (128 MiB at 512-d)
_PART = re.compile(r"part-(\d{6})-ids\.npy$")
# Per process: folder -> (its parts and their commit times, ids, embeddings, the ids' sort order).
# A page rerun then finds a few rows of a 1M-image cache without re-reading or re-sorting its ids.
_loaded: dict[Path, tuple[tuple, np.ndarray, np.ndarray, np.ndarray]] = {}


class EmbeddingCache:
    """Embeddings of one encoder under ``root/<encoder key>/``."""

    def __init__(self, root: Path, key: str, chunk: int = 1024) -> None:
        self.dir = Path(root) / key
        self.chunk = chunk  # images encoded between two saved parts
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock = FileLock(str(self.dir / ".lock"))
        if (self.dir / "ids.npy").exists():  # a cache written before parts existed
            with self._lock:
                if (self.dir / "ids.npy").exists():
                    os.replace(self.dir / "emb.npy", self.dir / "part-000000-emb.npy")
                    os.replace(self.dir / "ids.npy", self.dir / "part-000000-ids.npy")

    def _parts(self) -> list[int]:
        return sorted(int(m.group(1)) for p in self.dir.iterdir() if (m := _PART.match(p.name)))

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, embeddings) of every committed part; empty arrays when nothing is cached yet.
        Embeddings are memory-mapped, so looking up a few rows of a large cache reads only those."""
        return self._indexed()[:2]

    def _indexed(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``load()`` and the ids' sort order, kept per process while the parts are unchanged."""
        stamp = tuple((n, (self.dir / f"part-{n:06d}-ids.npy").stat().st_mtime_ns) for n in self._parts())
        hit = _loaded.get(self.dir)
        if hit is not None and hit[0] == stamp:
            return hit[1], hit[2], hit[3]
        ids, emb = self._read()
        # Parts are usually written in id order: then the order is known without sorting 1M ids.
        sorter = np.arange(len(ids)) if _ascending(ids) else np.argsort(ids, kind="stable")
        _loaded[self.dir] = (stamp, ids, emb, sorter)
        return ids, emb, sorter

    def _read(self) -> tuple[np.ndarray, np.ndarray]:
        ids, embs = [], []
        for n in self._parts():
            part_ids = np.load(self.dir / f"part-{n:06d}-ids.npy")
            part_emb = np.load(self.dir / f"part-{n:06d}-emb.npy", mmap_mode="r")
            k = min(len(part_ids), len(part_emb))
            ids.append(part_ids[:k])
            embs.append(part_emb[:k])
        if not ids:
            return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
        if len(ids) == 1 and (_ascending(ids[0]) or len(np.unique(ids[0])) == len(ids[0])):  # the usual, merged state
            return ids[0], embs[0]
        all_ids, all_emb = np.concatenate(ids), np.concatenate(embs)
        _, first = np.unique(all_ids, return_index=True)  # a merge may briefly leave duplicates
        first.sort()
        return all_ids[first], all_emb[first]

    def missing(self, ids: Sequence[int]) -> list[int]:
        """The ids among ``ids`` not cached yet, ascending."""
        wanted = np.asarray(ids, dtype=np.int64).reshape(-1)
        with self._lock:
            cached, _, sorter = self._indexed()
        return np.unique(wanted[~_found(cached, sorter, wanted)]).tolist()

    def add(self, ids: np.ndarray, emb: np.ndarray) -> None:
        """Save embeddings computed elsewhere (another worker's batch) as a new part."""
        with self._lock:
            self._append(np.asarray(ids, dtype=np.int64), np.asarray(emb, dtype=np.float32))

    def ensure(
        self,
        encoder: Callable[[], Encoder],
        ids: Sequence[int],
        locate: Callable[[list[int]], Sequence[tuple[int, Path]]],
        progress: Callable[[int], None] | None = None,  # called with the number of images just encoded
        batch_size: int = 64,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings for image ``ids``, in their order. Ids not cached yet are encoded from the
        files that ``locate(missing ids)`` names as (id, path), saved part by part, by the encoder
        ``encoder()`` returns (called only then: a fresh process reading cached rows loads no model)."""
        wanted = np.asarray(ids, dtype=np.int64).reshape(-1)
        with self._lock:
            cached, emb, sorter = self._indexed()
            missing = np.unique(wanted[~_found(cached, sorter, wanted)]).tolist()
            if missing:
                items, model = list(locate(missing)), encoder()
                for start in range(0, len(items), self.chunk):
                    chunk = items[start : start + self.chunk]
                    new = encode_images(model, [p for _, p in chunk], batch_size=batch_size, progress=progress)
                    self._append(np.array([i for i, _ in chunk], dtype=np.int64), new)
                self._merge(*self.load())
                cached, emb, sorter = self._indexed()
        if not len(wanted):
            return cached[:0], np.asarray(emb[:0])
        pos = np.minimum(np.searchsorted(cached, wanted, sorter=sorter), len(cached) - 1) if len(cached) else None
        if pos is None or (cached[sorter[pos]] != wanted).any():
            lost = wanted if pos is None else wanted[cached[sorter[pos]] != wanted]
            raise KeyError(f"no file to embed for image ids {lost[:5].tolist()}")
        rows = sorter[pos]
        if len(rows) == len(cached) and (rows == np.arange(len(rows))).all():
            return cached, np.asarray(emb)  # all of the cache in its order: no copy of a memory map
        return cached[rows], _gather(emb, rows)

    def _append(self, ids: np.ndarray, emb: np.ndarray) -> int:
        parts = self._parts()
        n = parts[-1] + 1 if parts else 0
        _atomic_save(self.dir / f"part-{n:06d}-emb.npy", emb)
        _atomic_save(self.dir / f"part-{n:06d}-ids.npy", ids)  # commit mark
        return n

    def _merge(self, ids: np.ndarray, emb: np.ndarray) -> None:
        """Replace all parts by one (the new part is committed before the old ones go)."""
        old = self._parts()
        if len(old) <= 1:
            return
        self._append(ids, emb)
        for n in old:
            (self.dir / f"part-{n:06d}-ids.npy").unlink(missing_ok=True)
            (self.dir / f"part-{n:06d}-emb.npy").unlink(missing_ok=True)


def in_slices(emb: np.ndarray, rows: int = SLICE_ROWS) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, float32 rows) of ``emb``, a slice at a time. Each slice of a memory-mapped
    cache is unmapped from this process once the caller is done with it, so a pass over 1M
    embeddings (1.9 GiB) does not stay in the process's resident memory (the kernel still keeps
    the file in its page cache for the next pass)."""
    for start in range(0, len(emb), rows):
        block = emb[start : start + rows]
        yield start, np.asarray(block, dtype=np.float32)
        release_pages(block)


def _gather(emb: np.ndarray, rows: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """``emb[rows]``, read in ascending order a chunk of rows at a time, each chunk's span of a
    mapped cache dropped after: a read of rows spread over the file maps much of it (the kernel
    maps 64 KiB around each row read), and 50k labelled images of 1M mapped 1.6 GiB at once."""
    out = np.empty((len(rows), emb.shape[1]), dtype=emb.dtype)
    order = np.argsort(rows, kind="stable")
    for a in range(0, len(rows), chunk):
        at = order[a : a + chunk]
        out[at] = emb[rows[at]]
        release_pages(emb[rows[at[0]] : rows[at[-1]] + 1])
    return out


def release_pages(arr: np.ndarray) -> None:
    """Drop the pages of a read-only memory-mapped array from this process (Linux madvise
    DONTNEED: they are read again from the page cache when next used). Other arrays: nothing."""
    if _madvise is None or arr.flags.writeable or not arr.nbytes or not _mapped(arr):
        return
    start = -(-arr.ctypes.data // mmap.PAGESIZE) * mmap.PAGESIZE  # whole pages inside the array only
    stop = (arr.ctypes.data + arr.nbytes) // mmap.PAGESIZE * mmap.PAGESIZE
    if stop > start:
        _madvise(ctypes.c_void_p(start), ctypes.c_size_t(stop - start), _MADV_DONTNEED)


def _mapped(arr: np.ndarray) -> bool:
    """Whether the array's memory is a file mapping (a memmap, or a view of one)."""
    base = arr
    while isinstance(base, np.ndarray):
        if isinstance(base, np.memmap):
            return True
        base = base.base
    return isinstance(base, mmap.mmap)


def _libc_madvise() -> Callable | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    fn.argtypes, fn.restype = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int), ctypes.c_int
    return fn


_MADV_DONTNEED = 4
_madvise = _libc_madvise()


def _ascending(ids: np.ndarray) -> bool:
    """Strictly ascending (so also free of duplicates): a check of 1M ids in a millisecond."""
    return bool((ids[1:] > ids[:-1]).all())


def _found(cached: np.ndarray, sorter: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Which of ``wanted`` are in ``cached`` (sorted by ``sorter``): a binary search each."""
    if not len(cached):
        return np.zeros(len(wanted), dtype=bool)
    pos = np.minimum(np.searchsorted(cached, wanted, sorter=sorter), len(cached) - 1)
    return cached[sorter[pos]] == wanted


def _atomic_save(path: Path, arr: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        np.save(fh, arr)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class PromptCache:
    """Text embeddings of class prompts for one encoder, in ``root/<encoder key>/prompts.npz``:
    a fresh process (a web server after a restart) gets every class's text embedding without
    loading the model and running its text tower over every class's prompts."""

    def __init__(self, root: Path, key: str) -> None:
        self.path = Path(root) / key / "prompts.npz"
        self._lock = FileLock(str(self.path.with_name(".prompts.lock")))

    def _entries(self) -> dict[tuple[str, ...], np.ndarray]:
        try:
            stamp = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return {}
        hit = _prompts_loaded.get(self.path)
        if hit is None or hit[0] != stamp:
            with np.load(self.path) as data:
                keys = [tuple(json.loads(k)) for k in data["keys"].tolist()]
                hit = (stamp, dict(zip(keys, data["emb"].astype(np.float32))))
            _prompts_loaded[self.path] = hit
        return hit[1]

    def get(self, prompts: Sequence[tuple[str, ...]]) -> dict[tuple[str, ...], np.ndarray]:
        """The embeddings kept of these prompt tuples (the others are left out)."""
        entries = self._entries()
        return {p: entries[p] for p in prompts if p in entries}

    def add(self, prompts: Sequence[tuple[str, ...]], emb: np.ndarray) -> None:
        """Keep these prompt tuples' embeddings (rows of ``emb``) beside those already kept."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            entries = {**self._entries(), **dict(zip(prompts, np.asarray(emb, dtype=np.float32)))}
            tmp = self.path.with_name(f".{self.path.name}.tmp")
            with open(tmp, "wb") as fh:
                np.savez(
                    fh,
                    keys=np.array([json.dumps(list(k)) for k in entries], dtype=str),
                    emb=np.stack(list(entries.values())),
                )
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)


_prompts_loaded: dict[Path, tuple[int, dict[tuple[str, ...], np.ndarray]]] = {}  # per process: file -> (mtime, entries)
