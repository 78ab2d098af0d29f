"""Search the collection by text or by example, through the active model's embeddings.

The faiss index lives under ``$MUMIC_HOME/index/<encoder key>/`` next to the embedding cache
of the same encoder. It is rebuilt when a version is promoted, and extended with images
imported since, the next time it is used.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from db.models import ModelVersion

from .scoring import image_embeddings, image_items, load_scorer
from .studio import Studio
from .vector_index import VectorIndex


def index_dir(studio: Studio, version: ModelVersion) -> Path:
    from .registry import encoder_spec

    return studio.settings.home / "index" / encoder_spec(studio, version).key


def build_index(studio: Studio, version: ModelVersion) -> VectorIndex:
    """Index every image's embedding under this version's encoder, and save it."""
    scorer = load_scorer(studio, version)
    items = image_items(studio)
    emb = image_embeddings(studio, scorer, items)
    index = VectorIndex.build(np.array([i for i, _ in items], dtype=np.int64),
                              emb if len(items) else np.zeros((0, scorer.encoder.model_cfg["embed_dim"]), np.float32))
    index.save(index_dir(studio, version))
    return index


def load_index(studio: Studio, version: ModelVersion) -> VectorIndex:
    """The saved index, extended with images imported since (or built when there is none)."""
    folder = index_dir(studio, version)
    if not (folder / "index.faiss").exists():
        return build_index(studio, version)
    index = VectorIndex.load(folder)
    new = [(i, p) for i, p in image_items(studio) if not index.contains(i)]
    if new:
        emb = image_embeddings(studio, load_scorer(studio, version), new)
        index.add(np.array([i for i, _ in new], dtype=np.int64), emb)
        index.save(folder)
    return index


def search_text(studio: Studio, version: ModelVersion, text: str, k: int = 24) -> list[tuple[int, float]]:
    """(image id, cosine similarity) of the images that best match a text query, best first."""
    if not text.strip():
        return []
    query = load_scorer(studio, version).text_embeddings([[text.strip()]])
    ids, scores = load_index(studio, version).search(query, k)
    return [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]


def similar_images(studio: Studio, version: ModelVersion, image_id: int, k: int = 24) -> list[tuple[int, float]]:
    """Images most similar to one image (itself excluded), best first."""
    index = load_index(studio, version)
    if not index.contains(image_id):
        raise KeyError(f"no image {image_id}")
    query = index.index.reconstruct(int(image_id))
    ids, scores = index.search(query, k + 1)
    return [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0 and i != image_id][:k]
