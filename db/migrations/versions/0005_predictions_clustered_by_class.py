"""predictions: primary key (version, class, image), so a new class appends its rows

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 01:40:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def _rebuild(key: list[str]) -> None:
    """Copy predictions into a table with primary key ``key`` (columns unchanged)."""
    op.create_table('_predictions_new',
    sa.Column('model_version_id', sa.Integer(), nullable=False),
    sa.Column('image_id', sa.Integer(), nullable=False),
    sa.Column('class_id', sa.Integer(), nullable=False),
    sa.Column('similarity', sa.Float(), nullable=False),
    sa.Column('score', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['class_id'], ['classes.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['image_id'], ['images.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['model_version_id'], ['model_versions.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint(*key)
    )
    columns = 'model_version_id, image_id, class_id, similarity, score'
    op.execute(f'INSERT INTO _predictions_new ({columns}) SELECT {columns} FROM predictions '
               f'ORDER BY {", ".join(key)}')
    with op.batch_alter_table('predictions', schema=None) as batch_op:
        batch_op.drop_index('ix_predictions_version_class_score')
    op.drop_table('predictions')
    op.rename_table('_predictions_new', 'predictions')
    with op.batch_alter_table('predictions', schema=None) as batch_op:
        batch_op.create_index('ix_predictions_version_class_score', ['model_version_id', 'class_id', 'score'],
                              unique=False)


def upgrade() -> None:
    _rebuild(['model_version_id', 'class_id', 'image_id'])


def downgrade() -> None:
    _rebuild(['model_version_id', 'image_id', 'class_id'])
