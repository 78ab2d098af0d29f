"""queue orders: a version's images in priority and confidence order, written with its per-image
summaries, so a process reads one row instead of every summary in index order

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04 19:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "queue_orders",
        sa.Column(
            "model_version_id",
            sa.Integer(),
            sa.ForeignKey("model_versions.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("sort", sa.String(20), primary_key=True),
        sa.Column("scores_revision", sa.Integer(), nullable=False),
        sa.Column("ids", sa.LargeBinary(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("queue_orders")
