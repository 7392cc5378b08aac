"""settlements: no schema change (a step kept in the chain)

Revision ID: 0017
Revises: 0016

Issue 18, item 4: settlements with approval limits need no table. Each
settlement event (accepted, pending approval, approved, refused, paid,
missed, lapsed) is an audit entry of kind `arrangement`, key
`<workflow id>/settlement/<n>/<kind>`, holding the amount, pay_by, discount,
the proposing agent and the approver; the approval is an `agent_tasks` row of
kind `settlement_approval` (migration 0013); and the balance a paid
settlement wrote off is the closing's `loans.waived` (migration 0004). The
revision exists because issue 18's migrations were numbered with it (0018
revises it); it changes nothing.
"""
from typing import Sequence, Union

revision: str = '0017'
down_revision: Union[str, None] = '0016'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
