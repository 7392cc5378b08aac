"""contacts: a call's recording; bureau_records: the Metro 2 payment rating

Revision ID: 0011
Revises: 0010

Issue 16: calls are recorded where the profile says so, and the recording is
referenced from its contact until the retention job deletes it (item 7); a
bureau record carries Metro 2's Payment Rating (item 2). All nullable: rows
already written have neither.
"""
from typing import Sequence, Union

import sqlalchemy as sa

import db.types
from alembic import op

revision: str = '0011'
down_revision: Union[str, None] = '0010'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('contacts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('recording_ref', sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column('recording_seconds', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('recording_deleted_at', db.types.UTCDateTime(), nullable=True))
    with op.batch_alter_table('bureau_records', schema=None) as batch_op:
        batch_op.add_column(sa.Column('payment_rating', sa.String(length=1), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('bureau_records', schema=None) as batch_op:
        batch_op.drop_column('payment_rating')
    with op.batch_alter_table('contacts', schema=None) as batch_op:
        batch_op.drop_column('recording_deleted_at')
        batch_op.drop_column('recording_seconds')
        batch_op.drop_column('recording_ref')
