"""audit log: one chain per loan, its heads, and signed checkpoints

Revision ID: 0020
Revises: 0019

Issue 19, item 1. Every append used to move the one `audit_head` row, so
concurrent loans queued on it. From here on each loan's entries form a chain
of their own:

- `audit_log.loan_seq`: an entry's place in its loan's chain (1, 2, ...),
  its `prev_hash` the hash of the loan's previous entry. `seq` stays the
  entry's id: on PostgreSQL from the new sequence `audit_log_seq` (started
  after the last entry), on SQLite the next one under the write lock.
- `audit_loan_heads`: one row per loan (its last loan_seq, hash and HMAC seal);
  an append locks only its own loan's row.
- `audit_checkpoints` and `audit_checkpoint_heads`: the signed checkpoints of
  db/audit_checkpoint.py (an RFC 6962 Merkle root over the loan heads changed
  since the previous one, chained) and the heads each committed to.
- The index on `audit_log.loan_id` becomes one on (loan_id, seq): the order
  `verify` walks the chains in, and still every by-loan read's index.

Existing entries are not rebuilt: they keep `loan_seq` NULL and stay the
global chain they were written as, which `verify` still walks the old way,
seq by seq, against the `audit_head` row (kept, and frozen from now on with
its seal). Re-hashing them into per-loan chains would need the audit key at
migration time and would replace hashes that outside checkpoints and
published heads name. A loan's first new entry starts its chain at the
genesis hash.

The append-only triggers of migration 0007 stay on `audit_log` as they are.
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

import db.types

revision: str = '0020'
down_revision: Union[str, None] = '0019'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == 'postgresql'
    # Adding a column and an index: no table rebuild, so the append-only
    # triggers on audit_log are untouched (a batch rebuild on SQLite would drop them).
    op.add_column('audit_log', sa.Column('loan_seq', sa.Integer(), nullable=True))
    op.drop_index('ix_audit_log_loan_id', table_name='audit_log')
    op.create_index('ix_audit_log_loan_chain', 'audit_log', ['loan_id', 'seq'], unique=False)
    if postgres:
        op.execute("CREATE SEQUENCE audit_log_seq OWNED BY audit_log.seq")
        op.execute(
            "SELECT setval('audit_log_seq', COALESCE((SELECT max(seq) FROM audit_log), 0) + 1, false)"
        )
    op.create_table('audit_loan_heads',
    sa.Column('loan_id', sa.String(length=64), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.Column('mac', sa.String(length=64), nullable=True),
    sa.Column('updated_at', db.types.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('loan_id')
    )
    op.create_table('audit_checkpoints',
    sa.Column('number', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('at', db.types.UTCDateTime(), nullable=False),
    sa.Column('prev_hash', sa.String(length=64), nullable=False),
    sa.Column('root', sa.String(length=64), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.Column('signature', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('number')
    )
    op.create_table('audit_checkpoint_heads',
    sa.Column('checkpoint', sa.Integer(), nullable=False),
    sa.Column('loan_id', sa.String(length=64), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['checkpoint'], ['audit_checkpoints.number'], ),
    sa.PrimaryKeyConstraint('checkpoint', 'loan_id')
    )
    op.create_index('ix_audit_checkpoint_heads_loan', 'audit_checkpoint_heads', ['loan_id', 'seq'], unique=False)


def downgrade() -> None:
    # Per-loan entries cannot go back into the one global chain: they stay
    # rows of audit_log, and a downgraded verify reports them. Downgrade only
    # a database that has none.
    op.drop_index('ix_audit_checkpoint_heads_loan', table_name='audit_checkpoint_heads')
    op.drop_table('audit_checkpoint_heads')
    op.drop_table('audit_checkpoints')
    op.drop_table('audit_loan_heads')
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("DROP SEQUENCE IF EXISTS audit_log_seq")
    op.drop_index('ix_audit_log_loan_chain', table_name='audit_log')
    op.create_index('ix_audit_log_loan_id', 'audit_log', ['loan_id'], unique=False)
    op.drop_column('audit_log', 'loan_seq')
