"""borrowers: an optional postal address

Revision ID: 0009
Revises: 0008

Issue 15: a mailed letter (the validation notice's fallback), the consumer's
address on the notice (Model Form B-1), and the zones an address's state
spans (12 CFR 1006.6(b)(1)(i)). All columns are nullable: rows already
written have no address.
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = '0009'
down_revision: Union[str, None] = '0008'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

COLUMNS = (
    ("address_line1", 200), ("address_line2", 200), ("city", 100), ("region", 64), ("postal_code", 32), ("country", 2),
)


def upgrade() -> None:
    with op.batch_alter_table('borrowers', schema=None) as batch_op:
        for name, length in COLUMNS:
            batch_op.add_column(sa.Column(name, sa.String(length=length), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('borrowers', schema=None) as batch_op:
        for name, _ in reversed(COLUMNS):
            batch_op.drop_column(name)
