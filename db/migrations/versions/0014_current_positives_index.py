"""current positives index: the human positives per class counted from a partial index

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04 19:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_annotations_current_positive",
        "annotations",
        ["class_id"],
        sqlite_where=sa.text("is_current = 1 AND positive = 1"),
        postgresql_where=sa.text("is_current AND positive"),
    )


def downgrade() -> None:
    op.drop_index("ix_annotations_current_positive", "annotations")
