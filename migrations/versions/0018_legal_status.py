"""bureau_records: the Metro 2 Consumer Information Indicator and ECOA code

Revision ID: 0018
Revises: 0017

Issue 18, item 1: a legal status reaches the credit bureau. A bankruptcy is
reported with the Consumer Information Indicator of its chapter (A-D a
petition, E-H discharged, I-L dismissed, Q removing one set by mistake), a
deceased borrower with ECOA code X (dunning/bureau.py). The records keep
them so that the cycle's Metro 2 file (activities/exports.py) carries them.
Both nullable: rows already written have neither (blank indicator, ECOA 1).
The statuses themselves need no table: they live in the workflow, and each
change is an audit entry (a decision, rule `legal_status`).
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = '0018'
down_revision: Union[str, None] = '0017'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('bureau_records', schema=None) as batch_op:
        batch_op.add_column(sa.Column('consumer_information_indicator', sa.String(length=2), nullable=True))
        batch_op.add_column(sa.Column('ecoa_code', sa.String(length=1), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('bureau_records', schema=None) as batch_op:
        batch_op.drop_column('ecoa_code')
        batch_op.drop_column('consumer_information_indicator')
