"""scale-out: registered workers, encode batches shared by workers, the host a job runs on

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28 04:30:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('workers',
    sa.Column('name', sa.String(length=120), nullable=False),
    sa.Column('host', sa.String(length=100), nullable=False),
    sa.Column('pid', sa.Integer(), nullable=False),
    sa.Column('device', sa.String(length=60), nullable=False),
    sa.Column('queue', sa.String(length=20), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_index(op.f('ix_workers_heartbeat_at'), 'workers', ['heartbeat_at'], unique=False)
    op.create_table('encode_batches',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('encoder_key', sa.String(length=200), nullable=False),
    sa.Column('version_id', sa.Integer(), nullable=False),
    sa.Column('image_ids', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('holder', sa.String(length=120), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('embeddings', sa.LargeBinary(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['version_id'], ['model_versions.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_encode_batches_encoder_key'), 'encode_batches', ['encoder_key'], unique=False)
    op.create_index(op.f('ix_encode_batches_status'), 'encode_batches', ['status'], unique=False)
    with op.batch_alter_table('jobs') as batch:
        batch.add_column(sa.Column('worker_host', sa.String(length=100), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('jobs') as batch:
        batch.drop_column('worker_host')
    op.drop_index(op.f('ix_encode_batches_status'), table_name='encode_batches')
    op.drop_index(op.f('ix_encode_batches_encoder_key'), table_name='encode_batches')
    op.drop_table('encode_batches')
    op.drop_index(op.f('ix_workers_heartbeat_at'), table_name='workers')
    op.drop_table('workers')
