from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import IntegrityError

from db.models import Annotation, Image
from db.session import get_engine
from mumic_core.errors import ClassError
from mumic_core.store.classes import add_class, list_classes, normalize_name
from mumic_core.store.collection import annotate, import_files
from mumic_core.store.label_io import export_labels
from mumic_core.synthetic.scenes import generate_collection


def _images(studio, tmp_path, n=3):
    rows = generate_collection(n, seed=1, out_dir=tmp_path / "src", size=64)
    report = import_files(studio, [(name, tmp_path / "src" / name) for name, _ in rows])
    with studio.read() as s:
        return list(s.scalars(select(Image).order_by(Image.id))), report


def test_migrations_create_the_schema(studio):
    engine = get_engine(studio.url)
    tables = set(inspect(engine).get_table_names())
    assert {
        "images",
        "classes",
        "class_prompts",
        "annotations",
        "score_blocks",
        "model_versions",
        "jobs",
        "alembic_version",
        "workers",
        "encode_batches",
    } <= tables


@pytest.mark.sqlite_only
def test_sqlite_runs_in_wal_mode(studio):
    with get_engine(studio.url).connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_migrations_match_the_models(studio):
    """The Alembic migrations build exactly the schema that db/models.py declares."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from db.models import Base

    with get_engine(studio.url).connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == [], diff


def test_class_names_are_validated(studio):
    add_class(studio, "Red Object", ["a red thing"])
    for bad, msg in [
        ("", "empty"),
        ("   ", "empty"),
        ("red   object", "already exists"),
        ("RED OBJECT", "already exists"),
        ("x" * 81, "limit is 80"),
    ]:
        with pytest.raises(ClassError, match=msg):
            add_class(studio, bad)
    assert [c.name for c in list_classes(studio)] == ["Red Object"]
    assert normalize_name("  Red \t Object ") == "red object"


def test_default_prompt_and_prompt_cleanup(studio):
    c = add_class(studio, "kite", ["  a kite ", "a kite", ""])
    assert c.prompt_texts == ["a kite"]
    assert add_class(studio, "ball").prompt_texts == ["a photo of a ball"]


def test_annotations_supersede_and_keep_history(studio, tmp_path):
    images, _ = _images(studio, tmp_path)
    cat = add_class(studio, "cat").id
    dog = add_class(studio, "dog").id
    image = images[0].id
    assert annotate(studio, image, {cat: True, dog: False}, "ann") == 2
    assert annotate(studio, image, {cat: True}, "bob") == 0  # same statement: nothing new
    assert annotate(studio, image, {cat: False}, "bob") == 1  # correction
    with studio.read() as s:
        rows = list(s.scalars(select(Annotation).where(Annotation.class_id == cat).order_by(Annotation.id)))
        reviewed = s.get(Image, image).review_count
    assert [(r.positive, r.is_current, r.annotator) for r in rows] == [(True, False, "ann"), (False, True, "bob")]
    assert rows[1].supersedes_id == rows[0].id
    assert reviewed == 3


def test_at_most_one_current_annotation_per_pair(studio, tmp_path):
    images, _ = _images(studio, tmp_path, n=1)
    cat = add_class(studio, "cat").id
    annotate(studio, images[0].id, {cat: True}, "ann")
    with pytest.raises(IntegrityError):
        with studio.write() as s:
            s.add(Annotation(image_id=images[0].id, class_id=cat, positive=False, annotator="x", is_current=True))


def test_export_formats(studio, tmp_path):
    images, _ = _images(studio, tmp_path, n=2)
    cat, dog = add_class(studio, "cat").id, add_class(studio, "dog").id
    annotate(studio, images[0].id, {cat: True, dog: False}, "ann")
    rows = list(csv.DictReader(io.StringIO(export_labels(studio, "csv"))))
    assert [(r["filename"], r["class"], r["state"], r["annotator"]) for r in rows] == [
        (images[0].original_name, "cat", "positive", "ann"),
        (images[0].original_name, "dog", "negative", "ann"),
        (images[1].original_name, "", "", ""),
    ]  # an image without labels has one empty row
    js = json.loads(export_labels(studio, "json"))
    assert [(x["class"], x["state"]) for x in js["images"][0]["labels"]] == [("cat", "positive"), ("dog", "negative")]
    coco = json.loads(export_labels(studio, "coco"))
    assert {c["name"] for c in coco["categories"]} == {"cat", "dog"}
    assert coco["annotations"] == [{"id": 1, "image_id": images[0].id, "category_id": 1}]
    assert coco["images"][0]["width"] == 64
    with pytest.raises(ValueError, match="unknown export format"):
        export_labels(studio, "xml")


def test_duplicate_content_is_stored_once(studio, tmp_path):
    _, report = _images(studio, tmp_path, n=2)
    src = tmp_path / "src"
    first = sorted(src.iterdir())[0]
    again = import_files(studio, [("copy.png", first)])
    assert again.added == [] and "already in the collection" in again.duplicates[0][1]
    with studio.read() as s:
        assert s.execute(text("select count(*) from images")).scalar() == 2


def test_scores_are_stored_in_class_blocks(studio):
    """A class's column is one key range: the key is (version, class, block)."""
    key = inspect(get_engine(studio.url)).get_pk_constraint("score_blocks")["constrained_columns"]
    assert key == ["model_version_id", "class_id", "block"]


@pytest.mark.sqlite_only
def test_a_lookup_of_some_images_scores_seeks_their_blocks(studio):
    """SQLite's plan for some images' scores seeks (version, block) instead of scanning the version."""
    from db.models import ScoreBlock

    engine = get_engine(studio.url)
    query = select(ScoreBlock.scores).where(
        ScoreBlock.model_version_id == 1, ScoreBlock.block.in_([0, 3]), ScoreBlock.class_id.in_([1, 2])
    )
    with engine.connect() as conn:
        sql = str(query.compile(engine, compile_kwargs={"literal_binds": True}))
        plan = " ".join(str(r) for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}"))
    assert "SEARCH" in plan and "SCAN" not in plan, plan


def test_the_score_blocks_round_trip_any_images_and_classes(studio):
    """Written per class, added to for new images, read back by column, by image and whole."""
    from db.models import SCORE_BLOCK
    from mumic_core.pipeline.lifecycle import ensure_base_version
    from mumic_core.store.classes import add_class
    from mumic_core.store.scores import (
        add_image_scores,
        class_column,
        score_matrix,
        scores_of_images,
        write_class_scores,
    )

    version = ensure_base_version(studio)
    a, b = (add_class(studio, name, [f"a {name}"]).id for name in ("apple", "bear"))
    rng = np.random.default_rng(0)
    ids = np.array([1, 2, SCORE_BLOCK - 1, SCORE_BLOCK, 3 * SCORE_BLOCK + 5])
    prob = rng.random((len(ids), 2)).astype(np.float32)
    new_ids, new_prob = np.array([7, 5 * SCORE_BLOCK]), rng.random((2, 2)).astype(np.float32)
    with studio.write() as s:
        write_class_scores(s.connection(), version.id, ids, [a, b], prob)
        add_image_scores(s.connection(), version.id, new_ids, [a, b], new_prob)
    every, expected = np.r_[ids, new_ids], np.r_[prob, new_prob].astype(np.float16).astype(np.float32)
    with studio.read() as s:
        column = class_column(s, version.id, b)
        some = scores_of_images(s, version.id, [int(every[3]), 999, int(every[-1])], [b, a])
        scored, matrix = score_matrix(s, version.id, [a, b])
    np.testing.assert_array_equal(column[every], expected[:, 1])
    assert np.isnan(np.delete(column, every)).all()
    np.testing.assert_array_equal(some[[0, 2]], expected[[3, -1]][:, ::-1])
    assert np.isnan(some[1]).all()
    order = np.argsort(every)
    np.testing.assert_array_equal(scored, every[order])
    np.testing.assert_array_equal(matrix.astype(np.float32), expected[order])


def test_migrations_0005_and_0012_keep_every_prediction(tmp_path):
    """Upgrading a store from revision 0004 re-keys predictions without losing a row (0005), then
    moves them into score blocks (0012, float16) and back on a downgrade."""
    from alembic import command

    from db.migrate import alembic_config

    url = f"sqlite:///{tmp_path / 'old.db'}"
    command.upgrade(alembic_config(url), "0004")
    engine = get_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO model_versions (id, name, kind, description, architecture, weights, "
            "training_config, metrics, status, created_at) VALUES "
            "(1, 'v1', 'base', '', 'a', 'b', '{}', '{}', 'ready', '2026-01-01')"
        )
        conn.exec_driver_sql(
            "INSERT INTO classes (id, name, normalized_name, description, active, created_at) "
            "VALUES (1, 'a', 'a', '', 1, '2026-01-01'), (2, 'b', 'b', '', 1, '2026-01-01')"
        )
        conn.exec_driver_sql(
            "INSERT INTO images (id, sha256, original_name, relpath, width, height, format, split, "
            "added_at) VALUES (1, 'x', 'x.png', 'x.png', 1, 1, 'PNG', 'train', '2026-01-01'), "
            "(2, 'y', 'y.png', 'y.png', 1, 1, 'PNG', 'train', '2026-01-01')"
        )
        conn.exec_driver_sql(
            "INSERT INTO predictions VALUES (1, 1, 1, 0.1, 0.2), (1, 1, 2, 0.3, 0.4), "
            "(1, 2, 1, 0.5, 0.6), (1, 2, 2, 0.7, 0.8)"
        )
    engine.dispose()
    command.upgrade(alembic_config(url), "0011")
    engine = get_engine(url)
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT model_version_id, image_id, class_id, similarity, score "
            "FROM predictions ORDER BY image_id, class_id"
        ).all()
    assert [tuple(r) for r in rows] == [
        (1, 1, 1, 0.1, 0.2),
        (1, 1, 2, 0.3, 0.4),
        (1, 2, 1, 0.5, 0.6),
        (1, 2, 2, 0.7, 0.8),
    ]
    assert inspect(engine).get_pk_constraint("predictions")["constrained_columns"][1] == "class_id"
    engine.dispose()
    command.upgrade(alembic_config(url), "head")
    engine = get_engine(url)
    with engine.connect() as conn:
        blocks = {
            tuple(r[:3]): np.frombuffer(r[3], dtype="<f2")
            for r in conn.exec_driver_sql("SELECT model_version_id, class_id, block, scores FROM score_blocks")
        }
        assert "predictions" not in inspect(engine).get_table_names()
    assert set(blocks) == {(1, 1, 0), (1, 2, 0)}
    stored = np.array([0.2, 0.6, 0.4, 0.8], dtype=np.float16)
    np.testing.assert_array_equal(np.r_[blocks[1, 1, 0][1:3], blocks[1, 2, 0][1:3]], stored)
    assert np.isnan(blocks[1, 1, 0][3:]).all() and np.isnan(blocks[1, 1, 0][0])
    engine.dispose()
    command.downgrade(alembic_config(url), "0011")
    engine = get_engine(url)
    with engine.connect() as conn:
        back = conn.exec_driver_sql(
            "SELECT image_id, class_id, score FROM predictions ORDER BY image_id, class_id"
        ).all()
    assert [tuple(r) for r in back] == [
        (1, 1, float(stored[0])),
        (1, 2, float(stored[2])),
        (2, 1, float(stored[1])),
        (2, 2, float(stored[3])),
    ]
