"""loan_itemizations: the validation notice's debt information per loan

Revision ID: 0010
Revises: 0009

Issue 15, item 4. The placement's optional `itemization` block (12 CFR
1006.34(c)(2)(iii)-(ix), Model Form B-1): the itemization date, the amount
then, the interest, fees, payments and credits since, the current creditor
and the creditor on the itemization date, the account number and the kind of
debt. One row per loan, written with the loan; loans placed without it (and
every loan placed before this revision) have none, and their notice states
what the loan's own terms say.
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

import db.types

revision: str = '0010'
down_revision: Union[str, None] = '0009'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        'loan_itemizations',
        sa.Column('loan_id', sa.String(length=64), nullable=False),
        sa.Column('itemization_date', sa.Date(), nullable=False),
        sa.Column('amount_on_itemization_date', db.types.Money(), nullable=False),
        sa.Column('interest_since', db.types.Money(), nullable=False),
        sa.Column('fees_since', db.types.Money(), nullable=False),
        sa.Column('payments_since', db.types.Money(), nullable=False),
        sa.Column('credits_since', db.types.Money(), nullable=False),
        sa.Column('current_creditor', sa.String(length=200), nullable=False),
        sa.Column('creditor_on_itemization_date', sa.String(length=200), nullable=True),
        sa.Column('account_number', sa.String(length=64), nullable=True),
        sa.Column('debt_type', sa.String(length=32), nullable=False),
        sa.Column('created_at', db.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['loan_id'], ['loans.loan_id'], ),
        sa.PrimaryKeyConstraint('loan_id'),
    )


def downgrade() -> None:
    op.drop_table('loan_itemizations')
