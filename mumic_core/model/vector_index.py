"""A faiss index of image embeddings (normalised, so inner product = cosine similarity).

Exact search (``IndexFlatIP``) for small collections; above ``APPROX_THRESHOLD`` vectors an
HNSW graph over float16 vectors (``IndexHNSWSQ``, half the memory of float32: 1.3 GB at 1M x
512), whose recall against exact search is measured by ``recall_at_k``. Vectors carry the image
ids; the index is saved with faiss's own format, and its ids beside it (``ids.npy``), so a
process can tell whether a saved index is current without loading it. A saved index is opened
memory-mapped by default: a web process reads only the pages its searches visit, where reading
a 1M-image index took 1.3 GB of its memory. A mapped index is read-only.
"""

from __future__ import annotations

import os
from pathlib import Path

import faiss
import numpy as np

APPROX_THRESHOLD = 50_000
HNSW_M = 32
INDEX_NAME = "index.faiss"
IDS_NAME = "ids.npy"


class VectorIndex:
    """Image ids and their embeddings, searchable by cosine similarity."""

    def __init__(self, dim: int, approximate: bool, ef_search: int = 128) -> None:
        if approximate:
            inner = faiss.IndexHNSWSQ(dim, faiss.ScalarQuantizer.QT_fp16, HNSW_M, faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efConstruction = 80
            inner.hnsw.efSearch = ef_search
        else:
            inner = faiss.IndexFlatIP(dim)
        self.index = faiss.IndexIDMap2(inner)
        self.approximate = approximate
        self.mapped = False

    @classmethod
    def for_size(cls, dim: int, n: int, threshold: int = APPROX_THRESHOLD) -> VectorIndex:
        """An empty index for ``n`` vectors: exact below ``threshold``, HNSW at or above it."""
        return cls(dim, approximate=n >= threshold)

    @classmethod
    def build(cls, ids: np.ndarray, emb: np.ndarray, threshold: int = APPROX_THRESHOLD) -> VectorIndex:
        """An index of these vectors (see ``for_size``)."""
        index = cls.for_size(emb.shape[1], len(ids), threshold)
        index.add(ids, emb)
        return index

    def __len__(self) -> int:
        return self.index.ntotal

    def add(self, ids: np.ndarray, emb: np.ndarray) -> None:
        """Add vectors (e.g. newly imported images); ids already present are replaced."""
        if self.mapped:  # faiss would abort the process: its vectors are a read-only view of the file
            raise ValueError("a memory-mapped index is read-only: load it with mapped=False to add to it")
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if len(ids) == 0:
            return
        present = ids[np.isin(ids, self.ids())]
        if len(present) and not self.approximate:
            self.index.remove_ids(present)
        elif len(present):  # HNSW cannot remove: keep the first vector of an id
            keep = ~np.isin(ids, present)
            ids, emb = ids[keep], emb[keep]
        emb = np.ascontiguousarray(emb, dtype=np.float32)
        if not self.index.is_trained:  # float16 quantisation: nothing learnt from the data
            self.index.train(emb)
        self.index.add_with_ids(emb, ids)

    def ids(self) -> np.ndarray:
        """The image ids in the index, in the order they were added."""
        return faiss.vector_to_array(self.index.id_map).astype(np.int64, copy=False)

    def contains(self, image_id: int) -> bool:
        try:
            self.index.reconstruct(int(image_id))
            return True
        except RuntimeError:
            return False

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids, similarities), each (Q, k), best first; -1 ids pad when fewer than k exist."""
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        scores, ids = self.index.search(q, min(k, max(1, len(self))))
        return ids, scores

    def save(self, folder: Path) -> None:
        """Write atomically (a reader never sees a half-written index)."""
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{INDEX_NAME}.tmp"
        faiss.write_index(self.index, str(tmp))
        ids_tmp = folder / f".{IDS_NAME}.tmp.npy"
        np.save(ids_tmp, self.ids())
        os.replace(tmp, folder / INDEX_NAME)
        os.replace(ids_tmp, folder / IDS_NAME)

    @staticmethod
    def saved_ids(folder: Path) -> np.ndarray | None:
        """The ids of the index saved in ``folder``, read without loading it (None: not saved)."""
        try:
            return np.load(folder / IDS_NAME)
        except (FileNotFoundError, ValueError):
            return None

    @classmethod
    def load(cls, folder: Path, mapped: bool = True) -> VectorIndex:
        """The index saved in ``folder``; ``mapped``: its vectors and graph stay in the file."""
        index = cls.__new__(cls)
        index.index = faiss.read_index(str(folder / INDEX_NAME), faiss.IO_FLAG_MMAP_IFC if mapped else 0)
        index.approximate = isinstance(faiss.downcast_index(index.index.index), faiss.IndexHNSW)
        index.mapped = mapped
        return index


def recall_at_k(approx: VectorIndex, exact: VectorIndex, queries: np.ndarray, k: int) -> float:
    """Share of the exact top-k neighbours that the approximate index also returns."""
    a, _ = approx.search(queries, k)
    e, _ = exact.search(queries, k)
    hits = sum(len(set(x[x >= 0]) & set(y[y >= 0])) for x, y in zip(a, e))
    return hits / max(1, int((e >= 0).sum()))
