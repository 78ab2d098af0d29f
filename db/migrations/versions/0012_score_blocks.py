"""score blocks: a version's scores as float16 blocks of 1,024 images per class, not a row per
image and class (1M images x 120 classes: 117k rows instead of 120M); images indexed by
review count

The stored probabilities move over (rounded to float16); the similarities, which nothing read,
are dropped. Downgrading writes rows again, with each row's similarity set to its score.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 10:40:00
"""

from __future__ import annotations

import numpy as np
import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

BLOCK = 1024  # db.models.SCORE_BLOCK when this was written
_STORED = np.dtype("<f2")


def _create_blocks() -> None:
    op.create_table(
        "score_blocks",
        sa.Column("model_version_id", sa.Integer(), nullable=False),
        sa.Column("class_id", sa.Integer(), nullable=False),
        sa.Column("block", sa.Integer(), nullable=False),
        sa.Column("scores", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["class_id"], ["classes.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["model_version_id"], ["model_versions.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("model_version_id", "class_id", "block"),
    )
    op.create_index("ix_score_blocks_version_block", "score_blocks", ["model_version_id", "block"])


def _create_predictions() -> None:
    op.create_table(
        "predictions",
        sa.Column("model_version_id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("class_id", sa.Integer(), nullable=False),
        sa.Column("similarity", sa.Float(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["class_id"], ["classes.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["image_id"], ["images.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["model_version_id"], ["model_versions.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("model_version_id", "class_id", "image_id"),
    )
    op.create_index("ix_predictions_version_class_score", "predictions", ["model_version_id", "class_id", "score"])


def _pairs(conn, table: str) -> list[tuple[int, int]]:
    return [tuple(r) for r in conn.execute(sa.text(f"SELECT DISTINCT model_version_id, class_id FROM {table}"))]


def upgrade() -> None:
    # Which images are reviewed: a class-filtered queue reads them (50k of 1M) by this index.
    op.create_index("ix_images_review_count", "images", ["review_count"])
    _create_blocks()
    conn = op.get_bind()
    insert = sa.text("INSERT INTO score_blocks (model_version_id, class_id, block, scores) VALUES (:v, :c, :b, :s)")
    for version_id, class_id in _pairs(conn, "predictions"):  # one class's column at a time
        rows = conn.execute(
            sa.text("SELECT image_id, score FROM predictions WHERE model_version_id = :v AND class_id = :c"),
            {"v": version_id, "c": class_id},
        ).all()
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        column = np.full((int(ids.max()) // BLOCK + 1) * BLOCK, np.nan, dtype=_STORED)
        column[ids] = np.array([r[1] for r in rows], dtype=np.float32)
        blocks = sorted(set((ids // BLOCK).tolist()))
        conn.execute(
            insert,
            [{"v": version_id, "c": class_id, "b": b, "s": column[b * BLOCK : (b + 1) * BLOCK].tobytes()} for b in blocks],
        )
    op.drop_index("ix_predictions_version_class_score", "predictions")
    op.drop_table("predictions")


def downgrade() -> None:
    _create_predictions()
    conn = op.get_bind()
    insert = sa.text(
        "INSERT INTO predictions (model_version_id, image_id, class_id, similarity, score) VALUES (:v, :i, :c, :p, :p)"
    )
    for version_id, class_id in _pairs(conn, "score_blocks"):
        blocks = conn.execute(
            sa.text("SELECT block, scores FROM score_blocks WHERE model_version_id = :v AND class_id = :c"),
            {"v": version_id, "c": class_id},
        ).all()
        rows = []
        for block, data in blocks:
            values = np.frombuffer(data, dtype=_STORED).astype(np.float64)
            for k in np.flatnonzero(~np.isnan(values)).tolist():
                rows.append({"v": version_id, "c": class_id, "i": block * BLOCK + k, "p": values[k]})
        if rows:
            conn.execute(insert, rows)
    op.drop_index("ix_score_blocks_version_block", "score_blocks")
    op.drop_table("score_blocks")
    op.drop_index("ix_images_review_count", "images")
