"""borrower_message_groups, borrower_message_parts: one voice per borrower

Revision ID: 0015
Revises: 0014

Issue 17, item 1: the steps of one borrower's loans due at the same moment on
one channel gather into a group (db/borrower_messages.py owns both tables)
and go out as one message, whose outbox row every part's loan names by its
key. New tables: nothing already written changes.
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

import db.types

revision: str = '0015'
down_revision: Union[str, None] = '0014'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        'borrower_message_groups',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('borrower_id', sa.String(length=64), nullable=False),
        sa.Column('channel', sa.String(length=16), nullable=False),
        sa.Column('local_day', sa.Date(), nullable=False),
        sa.Column('opened_at', db.types.UTCDateTime(), nullable=False),
        sa.Column('deadline', db.types.UTCDateTime(), nullable=False),
        sa.Column('closed_at', db.types.UTCDateTime(), nullable=True),
        sa.Column('message_key', sa.String(length=255), nullable=True),
        sa.Column('sender_key', sa.String(length=255), nullable=True),
        sa.Column('deferred_until', db.types.UTCDateTime(), nullable=True),
        sa.Column('deferred_rule', sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('message_key'),
    )
    with op.batch_alter_table('borrower_message_groups', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_borrower_message_groups_borrower_id'), ['borrower_id'], unique=False)
    op.create_table(
        'borrower_message_parts',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('key', sa.String(length=255), nullable=False),
        sa.Column('group_id', sa.Integer(), nullable=False),
        sa.Column('workflow_id', sa.String(length=128), nullable=False),
        sa.Column('loan_id', sa.String(length=64), nullable=False),
        sa.Column('borrower_id', sa.String(length=64), nullable=False),
        sa.Column('stage', sa.String(length=32), nullable=False),
        sa.Column('template', sa.String(length=64), nullable=False),
        sa.Column('outstanding', db.types.Money(), nullable=False),
        sa.Column('currency', sa.String(length=3), nullable=False),
        sa.Column('due_date', sa.Date(), nullable=False),
        sa.Column('days_past_due', sa.Integer(), nullable=False),
        sa.Column('daily_cap', sa.Integer(), nullable=True),
        sa.Column('privacy_first_line', sa.String(length=32), nullable=False),
        sa.Column('debt_collector', sa.Boolean(), nullable=False),
        sa.Column('joined_at', db.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['group_id'], ['borrower_message_groups.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('key'),
    )
    with op.batch_alter_table('borrower_message_parts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_borrower_message_parts_group_id'), ['group_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('borrower_message_parts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_borrower_message_parts_group_id'))
    op.drop_table('borrower_message_parts')
    with op.batch_alter_table('borrower_message_groups', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_borrower_message_groups_borrower_id'))
    op.drop_table('borrower_message_groups')
