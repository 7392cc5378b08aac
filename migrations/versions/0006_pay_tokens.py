"""pay-link tokens, kept only as their SHA-256 (issue 14, finding 3 and 5)

Revision ID: 0006
Revises: 0005
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

import db.types

revision: str = '0006'
down_revision: Union[str, None] = '0005'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        'pay_tokens',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('token_hash', sa.String(length=64), nullable=False),
        sa.Column('contact_key', sa.String(length=255), nullable=False),
        sa.Column('loan_id', sa.String(length=64), nullable=False),
        sa.Column('workflow_id', sa.String(length=128), nullable=False),
        sa.Column('created_at', db.types.UTCDateTime(), nullable=False),
        sa.Column('expires_at', db.types.UTCDateTime(), nullable=False),
        sa.Column('revoked_at', db.types.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('token_hash'),
        sa.UniqueConstraint('contact_key'),
    )
    with op.batch_alter_table('pay_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_pay_tokens_loan_id'), ['loan_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('pay_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_pay_tokens_loan_id'))
    op.drop_table('pay_tokens')
