"""review: submissions, suggested scores, image score summaries

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 14:39:43.687145
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('submissions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('annotator', sa.String(length=100), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('undone_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('image_ids', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('submissions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_submissions_annotator'), ['annotator'], unique=False)

    op.create_table('image_scores',
    sa.Column('model_version_id', sa.Integer(), nullable=False),
    sa.Column('image_id', sa.Integer(), nullable=False),
    sa.Column('max_score', sa.Float(), nullable=False),
    sa.Column('uncertainty', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['image_id'], ['images.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['model_version_id'], ['model_versions.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('model_version_id', 'image_id')
    )
    with op.batch_alter_table('image_scores', schema=None) as batch_op:
        batch_op.create_index('ix_image_scores_version_max', ['model_version_id', 'max_score', 'image_id'],
                              unique=False)
        batch_op.create_index('ix_image_scores_version_uncertainty', ['model_version_id', 'uncertainty', 'image_id'],
                              unique=False)
    # Summaries for predictions stored before this revision.
    op.execute("INSERT INTO image_scores (model_version_id, image_id, max_score, uncertainty) "
               "SELECT model_version_id, image_id, max(score), min(abs(score - 0.5)) FROM predictions "
               "GROUP BY model_version_id, image_id")

    with op.batch_alter_table('annotations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('submission_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('suggested_score', sa.Float(), nullable=True))
        batch_op.create_index(batch_op.f('ix_annotations_submission_id'), ['submission_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('annotations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_annotations_submission_id'))
        batch_op.drop_column('suggested_score')
        batch_op.drop_column('submission_id')

    with op.batch_alter_table('image_scores', schema=None) as batch_op:
        batch_op.drop_index('ix_image_scores_version_uncertainty')
        batch_op.drop_index('ix_image_scores_version_max')

    op.drop_table('image_scores')
    with op.batch_alter_table('submissions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_submissions_annotator'))

    op.drop_table('submissions')
