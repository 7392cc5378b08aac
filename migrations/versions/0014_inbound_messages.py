"""inbound_messages: the borrower's own requests

Revision ID: 0014
Revises: 0013

Issue 17, item 3: inbound SMS (and the pay page's "this is wrong" form) are
kept here, one row per provider message id, with what was done about them;
they were appended to a JSON-lines file before (DUNNING_INBOUND_REPLIES_PATH,
gone). A new table: nothing already written changes.
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

import db.types

revision: str = '0014'
down_revision: Union[str, None] = '0013'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        'inbound_messages',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('message_key', sa.String(length=64), nullable=False),
        sa.Column('channel', sa.String(length=16), nullable=False),
        sa.Column('received_at', db.types.UTCDateTime(), nullable=False),
        sa.Column('sender', sa.String(length=64), nullable=True),
        sa.Column('borrower_id', sa.String(length=64), nullable=True),
        sa.Column('loan_ids', sa.Text(), nullable=False),
        sa.Column('body', sa.Text(), nullable=True),
        sa.Column('language', sa.String(length=16), nullable=True),
        sa.Column('action', sa.String(length=32), nullable=True),
        sa.Column('category', sa.String(length=32), nullable=True),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('result', sa.String(length=500), nullable=True),
        sa.Column('task_id', sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('message_key'),
    )
    with op.batch_alter_table('inbound_messages', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_inbound_messages_received_at'), ['received_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_inbound_messages_borrower_id'), ['borrower_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_inbound_messages_status'), ['status'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('inbound_messages', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_inbound_messages_status'))
        batch_op.drop_index(batch_op.f('ix_inbound_messages_borrower_id'))
        batch_op.drop_index(batch_op.f('ix_inbound_messages_received_at'))
    op.drop_table('inbound_messages')
