"""deep stages: plans, promises, field visits, stage entries, Metro 2 fields

Revision ID: 0004
Revises: 0003
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

import db.types


revision: str = '0004'
down_revision: Union[str, None] = '0003'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    # Existing rows get defaults (server_default) so NOT NULL columns can be added to them.
    op.create_table('field_visits',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('visit_id', sa.String(length=128), nullable=False),
    sa.Column('loan_id', sa.String(length=64), nullable=False),
    sa.Column('workflow_id', sa.String(length=128), nullable=False),
    sa.Column('staff_required', sa.Integer(), nullable=False),
    sa.Column('days_past_due', sa.Integer(), nullable=False),
    sa.Column('outstanding', db.types.Money(precision=18, scale=4), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('outcome', sa.String(length=16), nullable=True),
    sa.Column('staff_ids', sa.Text(), nullable=True),
    sa.Column('notes', sa.Text(), nullable=True),
    sa.Column('assigned_at', db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('reported_at', db.types.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('key'),
    sa.UniqueConstraint('visit_id')
    )
    with op.batch_alter_table('field_visits', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_field_visits_loan_id'), ['loan_id'], unique=False)

    op.create_table('plans',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('loan_id', sa.String(length=64), nullable=False),
    sa.Column('workflow_id', sa.String(length=128), nullable=False),
    sa.Column('plan_no', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('total', db.types.Money(precision=18, scale=4), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('waived_fees', db.types.Money(precision=18, scale=4), nullable=False),
    sa.Column('waived_interest', db.types.Money(precision=18, scale=4), nullable=False),
    sa.Column('policy', sa.String(length=64), nullable=True),
    sa.Column('segment', sa.String(length=64), nullable=True),
    sa.Column('days_past_due', sa.Integer(), nullable=False),
    sa.Column('accepted_at', db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('ended_at', db.types.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('key')
    )
    with op.batch_alter_table('plans', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_plans_loan_id'), ['loan_id'], unique=False)

    op.create_table('promises',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('loan_id', sa.String(length=64), nullable=False),
    sa.Column('workflow_id', sa.String(length=128), nullable=False),
    sa.Column('promise_no', sa.Integer(), nullable=False),
    sa.Column('amount', db.types.Money(precision=18, scale=4), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('by_date', sa.Date(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('policy', sa.String(length=64), nullable=True),
    sa.Column('segment', sa.String(length=64), nullable=True),
    sa.Column('made_at', db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('ended_at', db.types.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('key')
    )
    with op.batch_alter_table('promises', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_promises_loan_id'), ['loan_id'], unique=False)

    op.create_table('stage_entries',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('loan_id', sa.String(length=64), nullable=False),
    sa.Column('stage', sa.String(length=32), nullable=False),
    sa.Column('days_past_due', sa.Integer(), nullable=False),
    sa.Column('segment', sa.String(length=64), nullable=True),
    sa.Column('outstanding', db.types.Money(precision=18, scale=4), nullable=False),
    sa.Column('entered_at', db.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('key')
    )
    with op.batch_alter_table('stage_entries', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_stage_entries_loan_id'), ['loan_id'], unique=False)

    op.create_table('plan_installments',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('plan_id', sa.Integer(), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('due_date', sa.Date(), nullable=False),
    sa.Column('amount', db.types.Money(precision=18, scale=4), nullable=False),
    sa.Column('paid_at', db.types.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['plan_id'], ['plans.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('plan_id', 'number', name='uq_plan_installments_plan_number')
    )
    with op.batch_alter_table('plan_installments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_plan_installments_plan_id'), ['plan_id'], unique=False)

    with op.batch_alter_table('bureau_records', schema=None) as batch_op:
        batch_op.add_column(sa.Column('kind', sa.String(length=16), nullable=False, server_default='first'))
        batch_op.add_column(sa.Column('cycle', sa.String(length=7), nullable=True))
        batch_op.add_column(sa.Column('account_status', sa.String(length=2), nullable=True))
        batch_op.add_column(sa.Column('special_comment', sa.String(length=2), nullable=True))
        batch_op.add_column(sa.Column('compliance_code', sa.String(length=2), nullable=True))
        batch_op.add_column(sa.Column('first_delinquency', sa.Date(), nullable=True))
        batch_op.add_column(sa.Column('amount_past_due', db.types.Money(precision=18, scale=4), nullable=True))
        batch_op.add_column(sa.Column('original_amount', db.types.Money(precision=18, scale=4), nullable=True))
        batch_op.add_column(sa.Column('reported_on', sa.Date(), nullable=True))
        batch_op.create_index(batch_op.f('ix_bureau_records_cycle'), ['cycle'], unique=False)

    with op.batch_alter_table('legal_cases', schema=None) as batch_op:
        batch_op.add_column(sa.Column('documents', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('case_ref', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('outcome_at', db.types.UTCDateTime(timezone=True), nullable=True))

    with op.batch_alter_table('loans', schema=None) as batch_op:
        batch_op.add_column(sa.Column('segment', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('max_days_past_due', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('fees_charged', db.types.Money(precision=18, scale=4), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('interest_charged', db.types.Money(precision=18, scale=4), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('waived', db.types.Money(precision=18, scale=4), nullable=False, server_default='0'))



def downgrade() -> None:
    with op.batch_alter_table('loans', schema=None) as batch_op:
        batch_op.drop_column('waived')
        batch_op.drop_column('interest_charged')
        batch_op.drop_column('fees_charged')
        batch_op.drop_column('max_days_past_due')
        batch_op.drop_column('segment')

    with op.batch_alter_table('legal_cases', schema=None) as batch_op:
        batch_op.drop_column('outcome_at')
        batch_op.drop_column('case_ref')
        batch_op.drop_column('documents')

    with op.batch_alter_table('bureau_records', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_bureau_records_cycle'))
        batch_op.drop_column('reported_on')
        batch_op.drop_column('original_amount')
        batch_op.drop_column('amount_past_due')
        batch_op.drop_column('first_delinquency')
        batch_op.drop_column('compliance_code')
        batch_op.drop_column('special_comment')
        batch_op.drop_column('account_status')
        batch_op.drop_column('cycle')
        batch_op.drop_column('kind')

    with op.batch_alter_table('plan_installments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_plan_installments_plan_id'))

    op.drop_table('plan_installments')
    with op.batch_alter_table('stage_entries', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_stage_entries_loan_id'))

    op.drop_table('stage_entries')
    with op.batch_alter_table('promises', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_promises_loan_id'))

    op.drop_table('promises')
    with op.batch_alter_table('plans', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_plans_loan_id'))

    op.drop_table('plans')
    with op.batch_alter_table('field_visits', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_field_visits_loan_id'))

    op.drop_table('field_visits')
