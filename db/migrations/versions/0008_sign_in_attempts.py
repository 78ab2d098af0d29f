"""sign-in attempts per name and client address, recorded before the password check

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 10:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('sign_in_attempts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('username', sa.String(length=40), nullable=False),
    sa.Column('address', sa.String(length=64), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('outcome', sa.String(length=10), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_sign_in_attempts_at'), 'sign_in_attempts', ['at'], unique=False)
    op.create_index('ix_sign_in_attempts_username_at', 'sign_in_attempts', ['username', 'at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_sign_in_attempts_username_at', table_name='sign_in_attempts')
    op.drop_index(op.f('ix_sign_in_attempts_at'), table_name='sign_in_attempts')
    op.drop_table('sign_in_attempts')
