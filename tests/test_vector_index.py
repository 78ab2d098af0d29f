"""The faiss index: exact below the threshold, HNSW above, ids kept, saved and loaded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mumic_core.model.vector_index import VectorIndex, recall_at_k


def unit(rng: np.random.Generator, n: int, d: int = 32) -> np.ndarray:
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_exact_search_returns_the_nearest_ids_by_cosine():
    rng = np.random.default_rng(0)
    emb = unit(rng, 500)
    ids = np.arange(1000, 1500, dtype=np.int64)
    index = VectorIndex.build(ids, emb, threshold=10_000)
    assert not index.approximate and len(index) == 500
    found, scores = index.search(emb[[3, 7]], k=5)
    assert found[:, 0].tolist() == [1003, 1007] and np.allclose(scores[:, 0], 1.0, atol=1e-5)
    brute = np.argsort(-(emb @ emb[3]))[:5] + 1000
    assert found[0].tolist() == brute.tolist()


def test_hnsw_above_the_threshold_has_high_recall_and_survives_save_and_load(tmp_path: Path):
    rng = np.random.default_rng(1)
    emb = unit(rng, 3000)
    ids = np.arange(3000, dtype=np.int64) * 7
    approx = VectorIndex.build(ids, emb, threshold=1000)
    exact = VectorIndex.build(ids, emb, threshold=10**9)
    assert approx.approximate and not exact.approximate
    queries = unit(rng, 100)
    assert recall_at_k(approx, exact, queries, k=10) >= 0.9
    approx.save(tmp_path / "idx")
    loaded = VectorIndex.load(tmp_path / "idx")
    assert loaded.approximate and len(loaded) == 3000
    assert np.array_equal(loaded.search(queries, 10)[0], approx.search(queries, 10)[0])


def test_adding_images_extends_the_index_and_replaces_known_ids():
    rng = np.random.default_rng(2)
    index = VectorIndex.build(np.arange(10, dtype=np.int64), unit(rng, 10), threshold=100)
    new = unit(rng, 3)
    index.add(np.array([5, 10, 11], dtype=np.int64), new)
    assert len(index) == 12  # id 5 replaced, 10 and 11 added
    assert index.search(new[0], 1)[0][0, 0] == 5
    assert index.contains(11) and not index.contains(99)
    empty = VectorIndex.build(np.zeros(0, dtype=np.int64), np.zeros((0, 32), dtype=np.float32))
    ids, _ = empty.search(new, 3)
    assert (ids == -1).all()


@pytest.mark.parametrize("threshold", [10**9, 1000], ids=["exact", "hnsw"])
def test_a_saved_index_opens_mapped_searches_alike_and_refuses_to_grow(tmp_path: Path, threshold: int):
    """Opened mapped by default (a web process reads only the pages it visits); adding to a
    mapped index is a clear error, where faiss itself would abort the process."""
    rng = np.random.default_rng(3)
    emb, queries = unit(rng, 2000), unit(rng, 20)
    VectorIndex.build(np.arange(2000, dtype=np.int64), emb, threshold=threshold).save(tmp_path / "idx")
    mapped, owned = VectorIndex.load(tmp_path / "idx"), VectorIndex.load(tmp_path / "idx", mapped=False)
    assert mapped.mapped and not owned.mapped and mapped.approximate == (threshold == 1000)
    assert np.array_equal(mapped.search(queries, 10)[0], owned.search(queries, 10)[0])
    assert mapped.contains(1999) and np.allclose(mapped.index.reconstruct(7), emb[7], atol=1e-3)
    with pytest.raises(ValueError, match="read-only"):
        mapped.add(np.array([5000]), queries[:1])
    owned.add(np.array([5000]), queries[:1])
    assert len(owned) == 2001 and len(mapped) == 2000
