"""borrowers: SSN and date of birth; loan_itemizations: date opened and terms

Revision ID: 0012
Revises: 0011

Issue 16, item 3: the credit-bureau file is Metro 2, whose Base Segment
identifies the consumer by Social Security Number or date of birth and
reports the account's Date Opened and Terms (Duration, Frequency). All
nullable: rows already written have none of them.
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = '0012'
down_revision: Union[str, None] = '0011'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('borrowers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('ssn', sa.String(length=9), nullable=True))
        batch_op.add_column(sa.Column('date_of_birth', sa.Date(), nullable=True))
    with op.batch_alter_table('loan_itemizations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('date_opened', sa.Date(), nullable=True))
        batch_op.add_column(sa.Column('terms_duration', sa.String(length=3), nullable=True))
        batch_op.add_column(sa.Column('terms_frequency', sa.String(length=1), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('loan_itemizations', schema=None) as batch_op:
        batch_op.drop_column('terms_frequency')
        batch_op.drop_column('terms_duration')
        batch_op.drop_column('date_opened')
    with op.batch_alter_table('borrowers', schema=None) as batch_op:
        batch_op.drop_column('date_of_birth')
        batch_op.drop_column('ssn')
