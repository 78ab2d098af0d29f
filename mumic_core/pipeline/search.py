"""Search the collection by text or by example, through the active model's embeddings.

The faiss index lives under ``$MUMIC_HOME/index/<encoder key>/`` next to the embedding cache
of the same encoder. It is built when a version with a new encoder is promoted (a head-mode
version shares its parent's encoder, so its index too), and extended with images imported
since, the next time it is used.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
from sklearn.decomposition import PCA

from mumic_core.encoders.cache import in_slices
from mumic_core.model.duplicates import group_near_duplicates
from mumic_core.model.vector_index import VectorIndex
from mumic_core.pipeline.scoring import image_embeddings, load_scorer
from mumic_core.store.collection import all_image_ids, image_count
from mumic_core.store.jobs import Report
from mumic_core.store.queue import newest_image_id
from mumic_core.store.registry import VersionInfo, encoder_spec, get_version
from mumic_core.store.studio import Studio


def index_dir(studio: Studio, version: VersionInfo) -> Path:
    return studio.settings.home / "index" / encoder_spec(studio, version).key


def build_index(studio: Studio, version: VersionInfo) -> VectorIndex:
    """Index every image's embedding under this version's encoder, and save it."""
    scorer = load_scorer(studio, version)
    ids = all_image_ids(studio)
    emb = image_embeddings(studio, scorer, ids)
    index = VectorIndex.for_size(emb.shape[1], len(ids))
    for start, block in in_slices(emb):  # a 1M-image cache is not all resident at once
        index.add(ids[start : start + len(block)], block)
    index.save(index_dir(studio, version))
    return index


_loaded: dict[Path, tuple[int, VectorIndex, int]] = {}  # folder -> (file mtime, index, newest id), per process
_lock = threading.Lock()


def load_index(studio: Studio, version: VersionInfo) -> VectorIndex:
    """The saved index, memory-mapped, extended with images imported since (or built when there
    is none). Kept per process while its file is unchanged: a page rerun does not re-read it,
    and finds new images by the newest image id (a key seek; counting 1M images took 80 ms)."""
    folder = index_dir(studio, version)
    path = folder / "index.faiss"
    with _lock:
        if not path.exists():
            build_index(studio, version)
        mtime = path.stat().st_mtime_ns
        cached = _loaded.get(folder)
        if cached and cached[0] == mtime:
            index, newest = cached[1], cached[2]
        else:
            index = VectorIndex.load(folder)
            newest = int(index.ids().max()) if len(index) else 0
        if newest_image_id(studio) != newest:  # images were imported since: add those missing
            ids = all_image_ids(studio)
            new = ids[~np.isin(ids, index.ids())]
            if len(new):
                index = VectorIndex.load(folder, mapped=False)  # the mapped one is read-only
                index.add(new, image_embeddings(studio, load_scorer(studio, version), new))
                index.save(folder)
                index = VectorIndex.load(folder)
            newest = int(ids.max()) if len(ids) else 0
        _loaded[folder] = (path.stat().st_mtime_ns, index, newest)
        return index


def index_is_current(studio: Studio, version: VersionInfo) -> bool:
    """Whether the version's saved index holds every image (read from its ids, not loaded)."""
    saved = VectorIndex.saved_ids(index_dir(studio, version))
    if saved is None:
        return False
    return image_count(studio) == len(saved)


def search_text(studio: Studio, version: VersionInfo, text: str, k: int = 24) -> list[tuple[int, float]]:
    """(image id, similarity) of the images that best match a text query, best first: the query
    is centred as the version's zero-shot classes are (``Head.class_matrix``), so an image that
    resembles every text a little does not come first."""
    if not text.strip():
        return []
    scorer = load_scorer(studio, version)
    query = scorer.text_embeddings([[text.strip()]], keep=False)
    if scorer.head is not None:
        query = scorer.head.class_matrix([""], query)
    ids, scores = load_index(studio, version).search(query, k)
    return [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]


def similar_images(studio: Studio, version: VersionInfo, image_id: int, k: int = 24) -> list[tuple[int, float]]:
    """Images most similar to one image (itself excluded), best first."""
    index = load_index(studio, version)
    if not index.contains(image_id):
        raise KeyError(f"no image {image_id}")
    query = index.index.reconstruct(int(image_id))
    ids, scores = index.search(query, k + 1)
    return [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0 and i != image_id][:k]


def near_duplicate_groups(
    studio: Studio,
    version: VersionInfo,
    min_similarity: float = 0.97,
    relative: float = 0.1,
    neighbours: int = 5,
    progress: Callable[[float], None] | None = None,
) -> list[list[int]]:
    """Groups of nearly identical images, largest first (``model.duplicates.group_near_duplicates``
    over each image's ``neighbours`` nearest in the index). ``progress`` gets the share of
    images searched."""
    index = load_index(studio, version)
    all_ids = all_image_ids(studio)
    if len(all_ids) < 2:
        return []
    emb = image_embeddings(studio, load_scorer(studio, version), all_ids)
    found, scores = nearest_of_each(index, emb, neighbours + 1, progress)
    return group_near_duplicates(all_ids, found, scores, min_similarity, relative)


def nearest_of_each(
    index: VectorIndex, emb: np.ndarray, k: int, progress: Callable[[float], None] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(ids, similarities), (N, k) each: the ``k`` nearest indexed images of every row of
    ``emb``. The queries are read a slice at a time from the cache, not rebuilt from the index:
    at 1M images the reconstructed vectors alone took 2 GiB."""
    hits = []
    for start, block in in_slices(emb):
        hits.append(index.search(block, k))
        if progress is not None:
            progress((start + len(block)) / len(emb))
    return np.concatenate([f for f, _ in hits]), np.concatenate([d for _, d in hits])


# Up to this many images the Explore page finds near-duplicates at once (one index search per
# image: 7.6 s for 100k on HNSW, 2.2 min for 1M, benchmarks/results/near_duplicates.md; so about
# 2 s here); above, the worker does it as a "near_duplicates" job and the page shows its result.
INLINE_DUPLICATE_IMAGES = 20_000
# A job stores its largest groups up to this many images in all (the rest are only counted).
STORED_DUPLICATE_IMAGES = 50_000


def run_near_duplicates_job(studio: Studio, params: dict, report: Report) -> dict:
    """The worker's "near_duplicates" job: ``near_duplicate_groups`` of ``params['version_id']``
    (and ``min_similarity``), the largest groups first."""
    version = get_version(studio, int(params["version_id"]))
    report("searching", 0.0, {})
    groups = near_duplicate_groups(
        studio,
        version,
        min_similarity=float(params.get("min_similarity", 0.97)),
        progress=lambda share: report("searching", share, {}),
    )
    kept, size = [], 0
    for group in groups:
        if size + len(group) > STORED_DUPLICATE_IMAGES:
            break
        kept.append(group)
        size += len(group)
    return {
        "version_id": version.id,
        "groups": kept,
        "group_count": len(groups),
        "images_in_groups": sum(len(g) for g in groups),
    }


def embedding_map(
    studio: Studio, version: VersionInfo, max_points: int = 5000, seed: int = 0
) -> tuple[list[int], np.ndarray]:
    """(image ids, (N, 2) coordinates): a PCA projection of up to ``max_points`` images' embeddings."""
    ids = all_image_ids(studio)
    if len(ids) > max_points:
        ids = np.sort(np.random.default_rng(seed).choice(ids, size=max_points, replace=False))
    if len(ids) < 3:
        return ids.tolist(), np.zeros((len(ids), 2))
    emb = image_embeddings(studio, load_scorer(studio, version), ids)
    return ids.tolist(), PCA(n_components=2, random_state=seed).fit_transform(emb)
