"""borrowers.time_zone may be NULL: the zone is not known

Revision ID: 0008
Revises: 0007

Issue 15, item 2. A borrower placed with neither a time zone nor a phone that
has one used to get a made-up Asia/Shanghai, whatever the loan's policy said.
Placing now leaves the zone NULL ("not known") and prepare_loan gives each loan
its policy's `default_time_zone`. Rows already written are left as they are.
Going down, a NULL zone becomes Asia/Shanghai again, as placing used to write.
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = '0008'
down_revision: Union[str, None] = '0007'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('borrowers', schema=None) as batch_op:
        batch_op.alter_column('time_zone', existing_type=sa.String(length=64), nullable=True)


def downgrade() -> None:
    op.execute("UPDATE borrowers SET time_zone = 'Asia/Shanghai' WHERE time_zone IS NULL")
    with op.batch_alter_table('borrowers', schema=None) as batch_op:
        batch_op.alter_column('time_zone', existing_type=sa.String(length=64), nullable=False)
