"""The audit checkpoint job's one activity (issue 19, item 1): write a signed
checkpoint of the loan heads changed since the last one
(db/audit_checkpoint.py), then append it to the file outside the database.

Run by AuditCheckpointWorkflow (workflows/audit_checkpoint.py), which the
Temporal Schedule `dunning-audit-checkpoint` starts every few minutes, and
by `python -m compliance.audit_cli checkpoint`. Its result is counts only:
no loan id, no personal data enters the workflow's history.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import structlog
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity

from activities.context import attempt_time
from db import audit_checkpoint, audit_key
from db.write_once import in_transaction

# The activity's name; workflows/audit_checkpoint.py calls it by this name
# (the two layers do not import each other; tests/test_audit_checkpoints.py checks they agree).
WRITE_AUDIT_CHECKPOINT = "write_audit_checkpoint"

log = structlog.get_logger("audit_checkpoint")


def write_checkpoint(sessions: sessionmaker[Session], outside: Path, at: datetime, secret: bytes | None = None) -> dict:
    """Write one checkpoint at `at` (when a head changed) and export every
    checkpoint the outside file lacks. The database first: a checkpoint
    outside that the database never committed would read as a rollback."""
    key = secret if secret is not None else audit_key.current()
    # A concurrent writer took the number: the retry commits to what is left.
    written = in_transaction(sessions, lambda db: audit_checkpoint.write(db, at, key))
    with sessions() as db:
        exported = audit_checkpoint.export(db, outside)
    made = written.checkpoint
    if written.unsealed:
        # The loans are ids, not personal data; the log names them for the
        # operator, the workflow's history gets only their number.
        log.warning("audit_heads_unsealed", loans=list(written.unsealed[:20]), count=len(written.unsealed))
    return {
        "checkpoint": made.number if made else 0,
        "heads": made.size if made else 0,
        "root": made.root if made else "",
        "exported": exported,
        "unsealed": len(written.unsealed),
    }


class AuditCheckpoints:
    """The activity, over the database and the outside file of the settings."""

    def __init__(
        self, sessions: sessionmaker[Session], outside: Path, clock: Callable[[], datetime] = attempt_time
    ) -> None:
        self._sessions = sessions
        self._outside = outside
        self._clock = clock

    def registered(self) -> list:
        return [self.write_audit_checkpoint]

    @activity.defn(name=WRITE_AUDIT_CHECKPOINT)
    def write_audit_checkpoint(self) -> dict:
        """One checkpoint, timed by the server's clock (the attempt's start)."""
        return write_checkpoint(self._sessions, self._outside, self._clock())
