"""review leases: an image shown to one review session is not handed to another

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 19:34:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('review_leases',
    sa.Column('image_id', sa.Integer(), nullable=False),
    sa.Column('holder', sa.String(length=64), nullable=False),
    sa.Column('annotator', sa.String(length=100), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['image_id'], ['images.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('image_id')
    )
    with op.batch_alter_table('review_leases', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_review_leases_expires_at'), ['expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_review_leases_holder'), ['holder'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('review_leases', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_review_leases_holder'))
        batch_op.drop_index(batch_op.f('ix_review_leases_expires_at'))

    op.drop_table('review_leases')
