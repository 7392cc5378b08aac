"""payments: each payment's allocation and its reversal; payment_reversals;
loans: what a closed loan's reopening starts from

Revision ID: 0016
Revises: 0015

Issue 18, item 3: a payment can be reversed (returned, charged back). The
payment row keeps how it was allocated (fees, interest, principal), so a
reversal undoes exactly that, and when it was reversed (the loan's
`amount_paid` then leaves it out); each reversal is a row of its own, keyed,
with the returned-payment fee charged. A loan closed `repaid` whose payment
is reversed reopens from its rows: the closing now keeps what the rows do
not say (`reopen_basis`, JSON: the loan's clock anchor, where its charges
stood, its contract terms and risk score; ids and money only). All nullable or new: rows already written
have none of it (a payment without an allocation is refused a reversal, named).
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

import db.types

revision: str = '0016'
down_revision: Union[str, None] = '0015'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('fees_paid', db.types.Money(), nullable=True))
        batch_op.add_column(sa.Column('interest_paid', db.types.Money(), nullable=True))
        batch_op.add_column(sa.Column('principal_paid', db.types.Money(), nullable=True))
        batch_op.add_column(sa.Column('overpaid', db.types.Money(), nullable=True))
        batch_op.add_column(sa.Column('reversed_at', db.types.UTCDateTime(), nullable=True))
    with op.batch_alter_table('loans', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reopen_basis', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('reopened_at', db.types.UTCDateTime(), nullable=True))
    op.create_table(
        'payment_reversals',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('key', sa.String(length=255), nullable=False),
        sa.Column('loan_id', sa.String(length=64), nullable=False),
        sa.Column('workflow_id', sa.String(length=128), nullable=False),
        sa.Column('payment_id', sa.String(length=128), nullable=False),
        sa.Column('amount', db.types.Money(), nullable=False),
        sa.Column('currency', sa.String(length=3), nullable=False),
        sa.Column('fees', db.types.Money(), nullable=False),
        sa.Column('interest', db.types.Money(), nullable=False),
        sa.Column('principal', db.types.Money(), nullable=False),
        sa.Column('returned_payment_fee', db.types.Money(), nullable=False),
        sa.Column('reason', sa.String(length=200), nullable=False),
        sa.Column('reversed_at', db.types.UTCDateTime(), nullable=False),
        sa.Column('reopened', sa.Boolean(), nullable=False),
        sa.Column('recorded_at', db.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('key'),
    )
    with op.batch_alter_table('payment_reversals', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_payment_reversals_loan_id'), ['loan_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('payment_reversals', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_payment_reversals_loan_id'))
    op.drop_table('payment_reversals')
    with op.batch_alter_table('loans', schema=None) as batch_op:
        batch_op.drop_column('reopened_at')
        batch_op.drop_column('reopen_basis')
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.drop_column('reversed_at')
        batch_op.drop_column('overpaid')
        batch_op.drop_column('principal_paid')
        batch_op.drop_column('interest_paid')
        batch_op.drop_column('fees_paid')
