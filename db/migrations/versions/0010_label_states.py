"""label states: assumed negatives stored explicitly

Every image-class pair is a human positive, a human negative, an assumed negative (the image was
labelled and the class was not named) or unknown (no current row). Before this revision a class
not named on a labelled image was unknown. The upgrade makes those pairs of the *active* classes
assumed negatives on every image that has at least one current positive label, the meaning that
imports and reviews give them from now on, as one submission of ``migration`` so that an admin
can re-declare it (``python -m mumic_core labels declare SUBMISSION partial``) to make them
unknown again. The downgrade deletes the assumed rows and the column.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 06:00:00
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("annotations") as batch:
        batch.add_column(sa.Column("assumed", sa.Boolean(), nullable=False, server_default=sa.false()))
    bind = op.get_bind()
    labelled = sa.text(
        "SELECT DISTINCT image_id FROM annotations WHERE is_current = :yes AND positive = :yes ORDER BY image_id"
    )
    image_ids = [row[0] for row in bind.execute(labelled, {"yes": True})]
    if not image_ids:
        return
    now = datetime.now(UTC)
    submissions = sa.table(
        "submissions",
        sa.column("id", sa.Integer),
        sa.column("annotator", sa.String),
        sa.column("created_at", sa.DateTime(timezone=True)),
        sa.column("image_ids", sa.JSON),
    )
    submission_id = bind.execute(
        submissions.insert()
        .values(annotator="migration", created_at=now, image_ids=image_ids)
        .returning(submissions.c.id)
    ).scalar_one()
    bind.execute(
        sa.text(
            "INSERT INTO annotations (image_id, class_id, positive, assumed, annotator, source, is_current,"
            " created_at, submission_id)"
            " SELECT i.id, c.id, :no, :yes, 'migration', 'migration', :yes, :now, :sid"
            " FROM images i CROSS JOIN classes c"
            " WHERE c.active = :yes"
            " AND EXISTS (SELECT 1 FROM annotations a WHERE a.image_id = i.id AND a.is_current = :yes"
            "             AND a.positive = :yes)"
            " AND NOT EXISTS (SELECT 1 FROM annotations a WHERE a.image_id = i.id AND a.class_id = c.id"
            "                 AND a.is_current = :yes)"
        ),
        {"no": False, "yes": True, "now": now, "sid": submission_id},
    )


def downgrade() -> None:
    op.execute(
        sa.text(
            "UPDATE annotations SET supersedes_id = NULL"
            " WHERE supersedes_id IN (SELECT id FROM annotations WHERE assumed = true)"
        )
    )
    op.execute(sa.text("DELETE FROM annotations WHERE assumed = true"))
    with op.batch_alter_table("annotations") as batch:
        batch.drop_column("assumed")
