"""scoped API keys for the internal API (stored as SHA-256 hashes)

Revision ID: 0005
Revises: 0004
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

import db.types

revision: str = '0005'
down_revision: Union[str, None] = '0004'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        'api_keys',
        sa.Column('key_id', sa.String(length=32), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('scopes', sa.String(length=500), nullable=False),
        sa.Column('secret_hash', sa.String(length=64), nullable=False),
        sa.Column('created_at', db.types.UTCDateTime(), nullable=False),
        sa.Column('revoked_at', db.types.UTCDateTime(), nullable=True),
        sa.Column('last_used_at', db.types.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint('key_id'),
    )


def downgrade() -> None:
    op.drop_table('api_keys')
