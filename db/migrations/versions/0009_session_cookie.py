"""the session cookie's own token (HttpOnly, set by the server) and the one-time code that obtains it

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 14:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('user_sessions') as batch:
        batch.add_column(sa.Column('cookie_hash', sa.String(length=64), nullable=True))
        batch.add_column(sa.Column('cookie_code_hash', sa.String(length=64), nullable=True))
        batch.add_column(sa.Column('cookie_code_until', sa.DateTime(timezone=True), nullable=True))
        batch.create_unique_constraint('uq_user_sessions_cookie_hash', ['cookie_hash'])
        batch.create_unique_constraint('uq_user_sessions_cookie_code_hash', ['cookie_code_hash'])


def downgrade() -> None:
    with op.batch_alter_table('user_sessions') as batch:
        batch.drop_constraint('uq_user_sessions_cookie_code_hash', type_='unique')
        batch.drop_constraint('uq_user_sessions_cookie_hash', type_='unique')
        batch.drop_column('cookie_code_until')
        batch.drop_column('cookie_code_hash')
        batch.drop_column('cookie_hash')
