"""audit log: keyed entries (scheme, head seal) and append-only triggers

Revision ID: 0007
Revises: 0006

`audit_log.scheme`: the entries already written are `sha256` (their plain
hash, verified the old way, as a prefix of the log); db/audit.py writes every
new one `hmac-sha256`, keyed with the audit key kept outside the database.
`audit_head.mac`: the head's seal under the same key (NULL until the first
keyed append, or `audit_cli seal`).

Append-only: a trigger refuses UPDATE and DELETE (and, on PostgreSQL,
TRUNCATE) of `audit_log` rows. A trigger rather than REVOKE: the service
usually runs its own migrations and so owns the table, and an owner (or a
superuser) keeps every privilege a REVOKE would take away; the trigger refuses
the owner too. It can still be dropped or disabled by the owner, a deliberate
DDL step: what such a person rewrites then fails `audit_cli verify`, because
they do not hold the audit key. Where a separate role runs the migrations,
also `REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM <app role>`
(docs/operations.md).
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = '0007'
down_revision: Union[str, None] = '0006'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

_PG_FUNCTION = """
CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END
$$
"""


def upgrade() -> None:
    op.add_column('audit_log', sa.Column('scheme', sa.String(length=16), nullable=False, server_default='sha256'))
    op.add_column('audit_head', sa.Column('mac', sa.String(length=64), nullable=True))
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(_PG_FUNCTION)
        op.execute(
            "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
            "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()"
        )
        op.execute(
            "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()"
        )
    else:
        for operation in ('UPDATE', 'DELETE'):
            op.execute(
                f"CREATE TRIGGER audit_log_no_{operation.lower()} BEFORE {operation} ON audit_log "
                f"BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: {operation} refused'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_truncate ON audit_log")
        op.execute("DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log")
        op.execute("DROP FUNCTION IF EXISTS audit_log_append_only()")
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_update")
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_delete")
    with op.batch_alter_table('audit_head', schema=None) as batch_op:
        batch_op.drop_column('mac')
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_column('scheme')
