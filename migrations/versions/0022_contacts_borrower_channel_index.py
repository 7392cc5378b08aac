"""contacts: the per-borrower caps' index is (borrower_id, channel)

Revision ID: 0022
Revises: 0020

Issue 19, item 3. Every capped contact (a call's daily cap and spacing, a
message channel's per-borrower daily cap) counts, under the borrower's lock,
that borrower's contacts on one channel across all their loans
(db/outbox.py `messages_today`, `next_call_allowed`). With an index on
`borrower_id` alone that reads every contact the borrower was ever sent,
on every channel, and filters; on (borrower_id, channel) it reads the
channel's only. On PostgreSQL, for a borrower with 10 loans (240 contacts,
523,200 in the table), EXPLAIN ANALYZE: 243 buffers and 132-178 us per
count before, 63 buffers and 40-45 us after (docs/benchmarks.md, "Tuning").

It replaces `ix_contacts_borrower_id`, whose every lookup it serves (its
first column), so a contact still writes as many index entries as before.
`sent_at` is left out of it on purpose: a column in an index makes the
update that sets it write every index of the row again (no HOT update), and
every sent contact sets it.
"""
from typing import Sequence, Union

from alembic import op

revision: str = '0022'
down_revision: Union[str, None] = '0020'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    # create_index/drop_index, not a batch: no table rebuild on SQLite.
    op.create_index('ix_contacts_borrower_channel', 'contacts', ['borrower_id', 'channel'], unique=False)
    op.drop_index('ix_contacts_borrower_id', table_name='contacts')


def downgrade() -> None:
    op.create_index('ix_contacts_borrower_id', 'contacts', ['borrower_id'], unique=False)
    op.drop_index('ix_contacts_borrower_channel', table_name='contacts')
