"""revisions: a counter per model version, raised whenever its stored scores or per-image
summaries change, and a labels counter raised by every labels write and undo, so processes can
keep what they derived from them (queue orders, counts, reviewed images) until they move;
undos are counted apart

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03 14:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "store_revisions",
        sa.Column("name", sa.String(40), primary_key=True),
        sa.Column("value", sa.Integer(), nullable=False, server_default="0"),
    )
    op.bulk_insert(table, [{"name": "labels", "value": 0}, {"name": "undos", "value": 0}])
    op.add_column("model_versions", sa.Column("scores_revision", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    # Not a batch (SQLite would copy model_versions, and its foreign keys would cascade the
    # drop of the old table into every version's scores): SQLite >= 3.35 drops a column itself.
    op.drop_column("model_versions", "scores_revision")
    op.drop_table("store_revisions")
