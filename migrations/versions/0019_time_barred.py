"""loans: the borrower's jurisdiction and the last payment before placing

Revision ID: 0019
Revises: 0018

Issue 18, item 2: time-barred debt. A placement may carry the borrower's
`jurisdiction` (ISO 3166: US-CA, US-NY, CN), whose statute of limitations
applies to the debt (the compliance profile's [limitations]), and the
`last_payment_date` a statute that runs from the last payment counts from.
prepare_loan reads both and hands the workflow only the rule that applies
(numbers and keys, never the jurisdiction). Both nullable: loans placed
before have neither (no limitation is applied to them). The limitation
itself lives in the workflow; the day a debt becomes time-barred is an
audit entry (a decision, rule `time_barred`), a legal case it stops a
`legal_cases` row with status `time_barred`.
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = '0019'
down_revision: Union[str, None] = '0018'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('loans', schema=None) as batch_op:
        batch_op.add_column(sa.Column('jurisdiction', sa.String(length=8), nullable=True))
        batch_op.add_column(sa.Column('last_payment_date', sa.Date(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('loans', schema=None) as batch_op:
        batch_op.drop_column('last_payment_date')
        batch_op.drop_column('jurisdiction')
