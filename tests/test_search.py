"""Search by text and by example through the faiss index; the index follows promotions and imports."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from sqlalchemy import delete, func, select

from db.models import Image
from mumic_core.pipeline.lifecycle import promote
from mumic_core.pipeline.search import index_dir, load_index, search_text, similar_images
from mumic_core.pipeline.training import TrainConfig, train
from mumic_core.store.collection import import_files
from mumic_core.store.registry import active_version
from mumic_core.synthetic.scenes import generate_collection


def test_text_and_example_search_and_index_lifecycle(demo_studio, tmp_path: Path):
    studio = demo_studio
    version = active_version(studio)
    hits = search_text(studio, version, "a red circle", k=5)
    assert len(hits) == 5 and all(a[1] >= b[1] for a, b in zip(hits, hits[1:]))  # best first
    assert (index_dir(studio, version) / "index.faiss").is_file()
    first = hits[0][0]
    similar = similar_images(studio, version, first, k=4)
    assert len(similar) == 4 and first not in [i for i, _ in similar]
    assert search_text(studio, version, "   ") == []

    # A near-copy of an image (same pixels, re-encoded) forms a near-duplicate group with it.
    from mumic_core.pipeline.search import embedding_map, near_duplicate_groups

    ids, xy = embedding_map(studio, version)
    assert len(ids) == 60 and xy.shape == (60, 2) and xy.std(axis=0).min() > 0
    assert embedding_map(studio, version, max_points=10)[1].shape == (10, 2)

    # A newly imported image is found the next time the index is used.
    rows = generate_collection(1, seed=99, out_dir=tmp_path / "new", size=96)
    assert import_files(studio, [(rows[0][0], tmp_path / "new" / rows[0][0])]).added == [rows[0][0]]
    with studio.read() as s:
        new_id = s.scalar(select(func.max(Image.id)))
    assert similar_images(studio, version, new_id, k=3)
    from PIL import Image as PILImage

    with PILImage.open(tmp_path / "new" / rows[0][0]) as im:
        im.convert("RGB").save(tmp_path / "copy.jpg", quality=92)  # other bytes, same picture
    import_files(studio, [("copy.jpg", tmp_path / "copy.jpg")])
    groups = near_duplicate_groups(studio, version)
    group = next(g for g in groups if new_id in g)
    assert new_id + 1 in group and len(group) < 10  # the copy, not half the collection

    # A head version shares the encoder, hence the index: promotion keeps it (at 1M images an
    # HNSW build takes minutes) and it still finds every image.
    result = train(studio, TrainConfig(mode="head", steps=20, activate="always"), version)
    path = index_dir(studio, version) / "index.faiss"
    before = path.stat().st_mtime_ns
    promote(studio, result.version)
    assert index_dir(studio, result.version) / "index.faiss" == path and path.stat().st_mtime_ns == before
    assert similar_images(studio, result.version, new_id, k=3)
    # Removing images from the index's view (fewer images than vectors) makes promotion rebuild it.
    with studio.write() as s:
        s.execute(delete(Image).where(Image.id == new_id + 1))
    promote(studio, result.version)
    assert path.stat().st_mtime_ns > before and not load_index(studio, result.version).contains(new_id + 1)


def test_near_duplicates_of_a_collection_smaller_than_the_neighbours_asked(demo_studio):
    """Three images, five neighbours asked: the search returns what there is, no shape error."""
    from mumic_core.pipeline.search import near_duplicate_groups

    studio = demo_studio
    with studio.write() as s:
        keep = s.scalars(select(Image.id).order_by(Image.id).limit(3)).all()
        s.execute(delete(Image).where(Image.id.not_in(keep)))
    version = active_version(studio)
    shutil.rmtree(index_dir(studio, version), ignore_errors=True)  # rebuilt over the three
    assert near_duplicate_groups(studio, version, neighbours=5) == []
    assert len(load_index(studio, version)) == 3


def _import_with_a_copy(studio, tmp_path: Path) -> int:
    """A new image and a re-encoded copy of it (other bytes, same picture); the new image's id."""
    from PIL import Image as PILImage

    rows = generate_collection(1, seed=77, out_dir=tmp_path / "dup", size=96)
    original = tmp_path / "dup" / rows[0][0]
    with PILImage.open(original) as im:
        im.convert("RGB").save(tmp_path / "dup-copy.jpg", quality=92)
    import_files(studio, [(rows[0][0], original), ("dup-copy.jpg", tmp_path / "dup-copy.jpg")])
    with studio.read() as s:
        return s.scalar(select(func.max(Image.id))) - 1


def test_near_duplicates_on_the_page_at_once_or_as_a_worker_job(demo_studio, tmp_path: Path, monkeypatch):
    """Small collections are searched in the request; above INLINE_DUPLICATE_IMAGES the Explore
    page queues a "near_duplicates" job and shows its stored groups once it has run."""
    from test_pages import page

    from mumic_core.pipeline import search
    from mumic_core.pipeline.queue import enqueue
    from mumic_core.pipeline.runner import run_job
    from mumic_core.store.jobs import JobConflict, list_jobs

    studio = demo_studio
    version = active_version(studio)
    original = _import_with_a_copy(studio, tmp_path)
    expected = search.near_duplicate_groups(studio, version)
    assert [original, original + 1] in expected

    at = page("explore.py").run()
    next(b for b in at.button if b.label == "Find near-duplicates").click().run()
    assert not at.exception and not list_jobs(studio, kind="near_duplicates")  # done in the request
    assert any(f"{len(expected):,} groups of nearly identical images" in c.value for c in at.caption)

    monkeypatch.setattr(search, "INLINE_DUPLICATE_IMAGES", 5)
    at = page("explore.py").run()
    next(b for b in at.button if b.label == "Find near-duplicates").click().run()
    assert not at.exception
    [job] = list_jobs(studio, kind="near_duplicates")
    assert job.status == "queued" and job.params == {"version_id": version.id}
    assert any("near-duplicates in the background" in c.value for c in at.caption)
    assert next(b for b in at.button if b.label == "Find near-duplicates").disabled  # one search at a time
    with pytest.raises(JobConflict):
        enqueue(studio, "near_duplicates", {"version_id": version.id})

    done = run_job(studio, job.id)  # what the worker does
    assert done.status == "succeeded" and done.progress == 1.0
    assert done.result == {
        "version_id": version.id,
        "groups": expected,
        "group_count": len(expected),
        "images_in_groups": sum(map(len, expected)),
    }
    at.run()
    assert not at.exception
    assert any(f"Found by job {job.id}" in c.value for c in at.caption)
    assert any(f"{len(expected):,} groups of nearly identical images" in c.value for c in at.caption)
    assert any(b.label.startswith("Review these") for b in at.button)  # a group goes to the Review queue

    # The stored groups are capped, largest first; the counts still cover every group.
    monkeypatch.setattr(search, "STORED_DUPLICATE_IMAGES", len(expected[0]) - 1)
    capped = search.run_near_duplicates_job(studio, {"version_id": version.id}, lambda *_: None)
    assert capped["groups"] == [] and capped["group_count"] == len(expected) > 0
