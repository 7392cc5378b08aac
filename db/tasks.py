"""Agent tasks: the one owner of an `agent_tasks` row's status.

Work that needs a person (a callback, a dispute to verify, a complaint to
review, a field visit, a legal filing, an unconfirmed send to check, a
settlement awaiting approval) is one row, written once by its key (the
workflow's `open_task` activity, activities/tasks.py). Its status is written
only here, and every move is checked against one table, `NEXT`:

    (a new row) -> open
    open        -> claimed | done     (an agent claims it; or completes it unclaimed)
    claimed     -> done               (only by the agent who claimed it)
    done        -> nothing            (final)

A move the table does not name is refused (`TaskConflict`) and the row keeps
its status: a task never goes back to open, and a done task is never claimed
or completed again. Each change appends its audit entry (db/audit.py) in the
same transaction, by a key of its own, so a retried call appends once:

    opened     kind `decision`, rule `task_opened`
    escalated  kind `decision`, rule `task_escalated`
    claimed    kind `operator`, rule `task_claimed`
    done       kind `operator`, rule `task_done`

What completing a task sends to the loan (config/tasks.toml) is the
services' business (services/tasks.py): this module only checks that the
outcome is one of the kind's, given by the caller as `allowed`.

Ids and codes only: an assignee is an id (never a name), a note holds no
e-mail address or phone number.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db import audit
from db.models import AgentTask
from dunning.inputs import ID_PATTERN
from dunning.keys import audit_key

OPEN = "open"
CLAIMED = "claimed"
DONE = "done"
STATUSES = (OPEN, CLAIMED, DONE)

KINDS = (
    "callback", "dispute_verification", "complaint_review", "field_visit", "legal_filing",
    "unconfirmed_send", "settlement_approval", "other",
    # A borrower's own request a person must read (services/inbound.py): an
    # SMS the keywords do not cover, from an unknown number, a dispute naming
    # no one loan, an action that failed; its subject is `inbound:<id>`.
    "inbound_request",
    # A legal status (issue 18, item 1): a bankruptcy notice for the legal
    # team; a deceased borrower's estate; the subject is the notice's reference.
    "bankruptcy_review", "estate_handling",
)

# Which status may follow which (None: a row not written yet); see above.
NEXT: dict[str | None, frozenset[str]] = {
    None: frozenset({OPEN}),
    OPEN: frozenset({CLAIMED, DONE}),
    CLAIMED: frozenset({DONE}),
    DONE: frozenset(),
}

# How much an escalation raises a task's priority (higher is listed first).
ESCALATION_STEP = 10
MAX_SLA_HOURS = 24 * 365
MAX_PRIORITY = 1_000_000
NOTE_MAX_CHARS = 500
_ID = re.compile(ID_PATTERN)
_EMAIL = re.compile(r"[^\s@]+@[^\s@]+\.[^\s@]+")
_PHONE = re.compile(r"\+\d[\d \-.()]{6,}")


class TaskError(ValueError):
    """A value that cannot be taken; `field` names it (a 422 / exit 2)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


class UnknownOutcome(TaskError):
    """An outcome that is not one of the task kind's; `allowed` lists them."""

    def __init__(self, kind: str, outcome: str, allowed: Collection[str]) -> None:
        self.kind, self.allowed = kind, tuple(allowed)
        shown = outcome if _ID.fullmatch(outcome or "") else repr(str(outcome)[:32])
        super().__init__("outcome", f"{shown} is not an outcome of a {kind} task: one of {', '.join(self.allowed)}")


class NoSuchTask(LookupError):
    pass


class TaskConflict(Exception):
    """The task's status (or its assignee) does not allow the move (a 409 / exit 1)."""

    def __init__(self, message: str, status: str, assignee: str | None) -> None:
        super().__init__(message)
        self.message, self.status, self.assignee = message, status, assignee


def may_follow(current: str | None, status: str) -> bool:
    """`status` may follow `current` (NEXT)."""
    return status in NEXT.get(current, frozenset())


def _move(row: AgentTask, status: str) -> None:
    if not may_follow(row.status, status):
        raise TaskConflict(f"task {row.id} is {row.status}: it cannot become {status}", row.status, row.assignee)
    row.status = status


def _now() -> datetime:
    return datetime.now(timezone.utc)


# ------------------------------------------------------------------ checks


def check_id(field: str, value: Any) -> str:
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise TaskError(field, "must be an id: a letter or digit, then up to 63 letters, digits, '.', '_', ':' or '-'")
    return value


def check_key(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 255 or not value.isprintable():
        raise TaskError("key", "must be 1 to 255 printable characters")
    return value


def check_kind(value: Any) -> str:
    if value not in KINDS:
        raise TaskError("kind", f"must be one of {', '.join(KINDS)}")
    return value


def check_status(value: Any) -> str:
    if value not in STATUSES:
        raise TaskError("status", f"must be one of {', '.join(STATUSES)}")
    return value


def check_note(value: Any) -> str | None:
    """A note: ids and codes, at most 500 printable characters; never an
    e-mail address or a phone number. Empty is none."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > NOTE_MAX_CHARS or not value.isprintable():
        raise TaskError("note", f"must be at most {NOTE_MAX_CHARS} printable characters on one line")
    if _EMAIL.search(value) or _PHONE.search(value):
        raise TaskError("note", "ids and codes only: no e-mail address or phone number (personal data stays in the directory)")
    return value


def _check_int(field: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise TaskError(field, f"must be a whole number from {low} to {high}")
    return value


# ------------------------------------------------------------------ reading


def find(db: Session, task_id: int) -> AgentTask | None:
    return db.get(AgentTask, task_id)


def find_by_key(db: Session, key: str) -> AgentTask | None:
    return db.scalar(select(AgentTask).where(AgentTask.key == key))


def require(db: Session, task_id: int) -> AgentTask:
    row = find(db, task_id) if isinstance(task_id, int) and 0 < task_id < 2**31 else None
    if row is None:
        raise NoSuchTask(f"no task {task_id}")
    return row


def listing(
    db: Session,
    *,
    status: str | None = None,
    kind: str | None = None,
    loan_id: str | None = None,
    borrower_id: str | None = None,
    assignee: str | None = None,
    limit: int = 200,
) -> list[AgentTask]:
    """The tasks that match every filter given, most urgent first: priority
    (higher first), then due_at (earliest first), then id."""
    query = select(AgentTask)
    if status is not None:
        query = query.where(AgentTask.status == check_status(status))
    if kind is not None:
        query = query.where(AgentTask.kind == check_kind(kind))
    if loan_id is not None:
        query = query.where(AgentTask.loan_id == check_id("loan_id", loan_id))
    if borrower_id is not None:
        query = query.where(AgentTask.borrower_id == check_id("borrower_id", borrower_id))
    if assignee is not None:
        query = query.where(AgentTask.assignee == check_id("assignee", assignee))
    limit = _check_int("limit", limit, 1, 1000)
    return list(db.scalars(query.order_by(AgentTask.priority.desc(), AgentTask.due_at, AgentTask.id).limit(limit)))


def as_dict(row: AgentTask) -> dict:
    """A task as the API and the command line show it: ids, codes and instants (ISO, UTC)."""

    def instant(value: datetime | None) -> str | None:
        return None if value is None else value.astimezone(timezone.utc).isoformat()

    return {
        "id": row.id, "key": row.key, "kind": row.kind, "loan_id": row.loan_id, "borrower_id": row.borrower_id,
        "workflow_id": row.workflow_id, "subject": row.subject, "created_at": instant(row.created_at),
        "due_at": instant(row.due_at), "sla_hours": row.sla_hours, "priority": row.priority, "status": row.status,
        "assignee": row.assignee, "claimed_at": instant(row.claimed_at), "done_at": instant(row.done_at),
        "outcome": row.outcome, "note": row.note, "escalated_at": instant(row.escalated_at),
    }


# ------------------------------------------------------------------ audit


def _audit(db: Session, row: AgentTask, action: str, at: datetime, **fields: Any) -> None:
    kind = "operator" if action in ("claimed", "done") else "decision"
    who = f" by {row.assignee}" if action in ("claimed", "done") and row.assignee else ""
    what = f" {fields['outcome']}" if fields.get("outcome") else ""
    payload = {
        "rule": f"task_{action}", "reason": f"{row.kind} task {row.id} {action}{what}{who}",
        "task_id": row.id, "task_key": row.key, "task_kind": row.kind, "action": action,
        "status": row.status, "priority": row.priority, **fields,
    }
    audit.append(db, kind, row.loan_id, row.workflow_id, payload, at=at, key=audit_key("task", row.key, action))


# ------------------------------------------------------------------ writing


@dataclass(frozen=True)
class NewTask:
    """What a task is made from (the `open_task` activity's input, checked)."""

    key: str
    kind: str
    loan_id: str
    borrower_id: str
    workflow_id: str
    due_in_hours: int
    sla_hours: int = 0  # 0: the same as due_in_hours
    priority: int = 0
    subject: str | None = None
    note: str | None = None


def create(db: Session, task: NewTask, at: datetime | None = None) -> tuple[AgentTask, bool]:
    """The task for `task.key`, made open (and audited) unless one exists:
    the same key twice is one task (the first one's fields stand). True when
    this call made it. TaskError names a bad field."""
    key = check_key(task.key)
    existing = find_by_key(db, key)
    if existing is not None:
        return existing, False
    kind = check_kind(task.kind)
    loan_id = check_id("loan_id", task.loan_id)
    borrower_id = check_id("borrower_id", task.borrower_id)
    if not isinstance(task.workflow_id, str) or not 0 < len(task.workflow_id) <= 128 or not task.workflow_id.isprintable():
        raise TaskError("workflow_id", "must be 1 to 128 printable characters")
    due_in = _check_int("due_in_hours", task.due_in_hours, 0, MAX_SLA_HOURS)
    sla = _check_int("sla_hours", task.sla_hours, 0, MAX_SLA_HOURS) or due_in
    priority = _check_int("priority", task.priority, -MAX_PRIORITY, MAX_PRIORITY)
    subject = task.subject or None
    if subject is not None and (not isinstance(subject, str) or len(subject) > 255 or not subject.isprintable()):
        raise TaskError("subject", "must be an id or key of at most 255 printable characters")
    note = check_note(task.note)
    at = (at or _now()).astimezone(timezone.utc)
    row = AgentTask(
        key=key, kind=kind, loan_id=loan_id, borrower_id=borrower_id, workflow_id=task.workflow_id,
        subject=subject, created_at=at, due_at=at + timedelta(hours=due_in), sla_hours=sla, priority=priority,
        note=note,
    )
    row.status = None  # a row not written yet: NEXT[None]
    _move(row, OPEN)
    db.add(row)
    db.flush()
    _audit(db, row, "opened", at, due_at=row.due_at, sla_hours=sla, subject=subject)
    return row, True


def claim(db: Session, task_id: int, assignee: str, at: datetime | None = None) -> tuple[AgentTask, bool]:
    """An open task claimed by `assignee` (an id). The same agent claiming it
    again changes nothing (False); another agent's claim, or a done task, is
    a TaskConflict."""
    assignee = check_id("assignee", assignee)
    row = require(db, task_id)
    if row.status == CLAIMED and row.assignee == assignee:
        return row, False
    if row.status == CLAIMED:
        raise TaskConflict(f"task {row.id} is claimed by {row.assignee}", row.status, row.assignee)
    _move(row, CLAIMED)
    at = (at or _now()).astimezone(timezone.utc)
    row.assignee, row.claimed_at = assignee, at
    db.flush()
    _audit(db, row, "claimed", at, assignee=assignee)
    return row, True


def check_completion(row: AgentTask, assignee: str, outcome: str, allowed: Collection[str]) -> bool:
    """Whether `assignee` may complete the task with `outcome` (one of
    `allowed`, the kind's outcomes): TaskError / UnknownOutcome / TaskConflict
    if not. True when it is already done by the same agent with the same
    outcome (a repeated completion: nothing to do)."""
    assignee = check_id("assignee", assignee)
    if not isinstance(outcome, str) or outcome not in allowed:
        raise UnknownOutcome(row.kind, outcome if isinstance(outcome, str) else str(outcome), allowed)
    if row.status == DONE:
        if row.assignee == assignee and row.outcome == outcome:
            return True
        raise TaskConflict(f"task {row.id} is done already ({row.outcome}, by {row.assignee})", row.status, row.assignee)
    if row.status == CLAIMED and row.assignee != assignee:
        raise TaskConflict(f"task {row.id} is claimed by {row.assignee}", row.status, row.assignee)
    return False


def complete(
    db: Session, task_id: int, assignee: str, outcome: str, allowed: Collection[str],
    note: str | None = None, at: datetime | None = None,
) -> tuple[AgentTask, bool]:
    """The task done with `outcome`, by `assignee`: a task the same agent
    claimed, or an open one (claimed and done at once). The same completion
    again changes nothing (False)."""
    row = require(db, task_id)
    if check_completion(row, assignee, outcome, allowed):
        return row, False
    note = check_note(note)
    at = (at or _now()).astimezone(timezone.utc)
    if row.status == OPEN:
        row.assignee, row.claimed_at = assignee, at
    _move(row, DONE)
    row.outcome, row.done_at = outcome, at
    if note is not None:
        row.note = note
    db.flush()
    _audit(db, row, "done", at, assignee=assignee, outcome=outcome)
    return row, True


def escalate(db: Session, key: str, at: datetime | None = None, step: int = ESCALATION_STEP) -> tuple[AgentTask | None, bool]:
    """A task past its SLA, escalated once: its priority raised by `step`
    and `escalated_at` set, audited. A task escalated before, or done,
    changes nothing (False); no such key: (None, False)."""
    row = find_by_key(db, check_key(key))
    if row is None or row.status == DONE or row.escalated_at is not None:
        return row, False
    at = (at or _now()).astimezone(timezone.utc)
    row.priority = min(row.priority + step, MAX_PRIORITY)
    row.escalated_at = at
    db.flush()
    _audit(db, row, "escalated", at, overdue_since=row.created_at + timedelta(hours=row.sla_hours))
    return row, True
