"""What an attacker who owns the database does before rewriting the audit
log: lift the append-only triggers of migration 0007 (the owner can, with one
DDL statement). The tests of `verify` then tamper as they please; what they
show is that the keyed chain still gives the rewrite away."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session


def lift_append_only_guard(db: Session) -> None:
    """Disable (PostgreSQL) or drop (SQLite) the triggers that refuse UPDATE
    and DELETE on audit_log, inside the caller's transaction."""
    if db.get_bind().dialect.name == "postgresql":
        db.execute(text("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only"))
    else:
        db.execute(text("DROP TRIGGER IF EXISTS audit_log_no_update"))
        db.execute(text("DROP TRIGGER IF EXISTS audit_log_no_delete"))


def ids_continue_after_written_rows(db: Session) -> None:
    """Entries the tests write as the code before migration 0020 did (ids
    chosen by hand, no sequence): move PostgreSQL's id sequence past them,
    as the migration does for the entries it finds."""
    if db.get_bind().dialect.name == "postgresql":
        db.execute(text("SELECT setval('audit_log_seq', (SELECT max(seq) FROM audit_log))"))
