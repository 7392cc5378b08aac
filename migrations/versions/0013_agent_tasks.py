"""agent_tasks: work that needs a person

Revision ID: 0013
Revises: 0012

Issue 17, item 4: callbacks, disputes to verify, complaints to review, field
visits, legal filings, unconfirmed sends and settlements awaiting approval,
one row per task key (db/tasks.py owns the status: open -> claimed -> done).
A new table: nothing already written changes.
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

import db.types

revision: str = '0013'
down_revision: Union[str, None] = '0012'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        'agent_tasks',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('key', sa.String(length=255), nullable=False),
        sa.Column('kind', sa.String(length=32), nullable=False),
        sa.Column('loan_id', sa.String(length=64), nullable=False),
        sa.Column('borrower_id', sa.String(length=64), nullable=False),
        sa.Column('workflow_id', sa.String(length=128), nullable=False),
        sa.Column('subject', sa.String(length=255), nullable=True),
        sa.Column('created_at', db.types.UTCDateTime(), nullable=False),
        sa.Column('due_at', db.types.UTCDateTime(), nullable=False),
        sa.Column('sla_hours', sa.Integer(), nullable=False),
        sa.Column('priority', sa.Integer(), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('assignee', sa.String(length=64), nullable=True),
        sa.Column('claimed_at', db.types.UTCDateTime(), nullable=True),
        sa.Column('done_at', db.types.UTCDateTime(), nullable=True),
        sa.Column('outcome', sa.String(length=32), nullable=True),
        sa.Column('note', sa.String(length=500), nullable=True),
        sa.Column('escalated_at', db.types.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('key'),
    )
    with op.batch_alter_table('agent_tasks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_agent_tasks_kind'), ['kind'], unique=False)
        batch_op.create_index(batch_op.f('ix_agent_tasks_loan_id'), ['loan_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_agent_tasks_borrower_id'), ['borrower_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_agent_tasks_due_at'), ['due_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_agent_tasks_status'), ['status'], unique=False)
        batch_op.create_index(batch_op.f('ix_agent_tasks_assignee'), ['assignee'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('agent_tasks', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_agent_tasks_assignee'))
        batch_op.drop_index(batch_op.f('ix_agent_tasks_status'))
        batch_op.drop_index(batch_op.f('ix_agent_tasks_due_at'))
        batch_op.drop_index(batch_op.f('ix_agent_tasks_borrower_id'))
        batch_op.drop_index(batch_op.f('ix_agent_tasks_loan_id'))
        batch_op.drop_index(batch_op.f('ix_agent_tasks_kind'))
    op.drop_table('agent_tasks')
