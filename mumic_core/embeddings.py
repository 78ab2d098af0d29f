"""Cached image embeddings per encoder, so zero-shot scoring is one matrix product."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from filelock import FileLock

from .classifier import encode_images
from .model_factory import Encoder


class EmbeddingCache:
    """``ids.npy`` + ``emb.npy`` under ``root/<encoder key>/``; extended, never rewritten in place."""

    def __init__(self, root: Path, key: str) -> None:
        self.dir = Path(root) / key
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock = FileLock(str(self.dir / ".lock"))

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, embeddings); empty arrays when nothing is cached yet."""
        ids_path, emb_path = self.dir / "ids.npy", self.dir / "emb.npy"
        if not ids_path.exists() or not emb_path.exists():
            return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
        ids, emb = np.load(ids_path), np.load(emb_path)
        n = min(len(ids), len(emb))
        return ids[:n], emb[:n]

    def ensure(
        self,
        encoder: Encoder,
        items: Sequence[tuple[int, Path]],
        progress: Callable[[int], None] | None = None,
        batch_size: int = 64,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings for ``items`` (image id, path), in their order, computing the missing ones."""
        with self._lock:
            ids, emb = self.load()
            known = set(ids.tolist())
            missing = [(i, p) for i, p in items if i not in known]
            if missing:
                new = encode_images(encoder, [p for _, p in missing], batch_size=batch_size, progress=progress)
                ids = np.concatenate([ids, np.array([i for i, _ in missing], dtype=np.int64)])
                emb = new if emb.size == 0 else np.concatenate([emb, new])
                self._save(ids, emb)
        index = {int(v): k for k, v in enumerate(ids)}
        order = np.array([index[i] for i, _ in items], dtype=np.int64)
        return ids[order] if len(order) else ids[:0], emb[order] if len(order) else emb[:0]

    def _save(self, ids: np.ndarray, emb: np.ndarray) -> None:
        for name, arr in (("emb.npy", emb), ("ids.npy", ids)):
            tmp = self.dir / f".{name}.tmp"
            with open(tmp, "wb") as fh:
                np.save(fh, arr)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.dir / name)
