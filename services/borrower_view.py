"""One borrower at a glance: what `GET /borrowers/{borrower_id}` answers and
`starter.py borrower BORROWER_ID` prints (docs/contract.md, "The borrower view").

- `contact`: the directory row's contact details, masked (dunning/masking.py):
  enough to tell two apart, not enough to use. The SSN and the date of birth
  are never shown, not even masked; language, zone, region and country are
  preferences and places, shown as they are.
- `loans`: the borrower's loans from the directory (`loans`), open ones first,
  then the newest placed; at most `MAX_LOANS` (`truncated` says when more
  exist). Each open loan is asked its live `status` (the workflow's stage,
  days past due, outstanding, next action, contacts), all at once with at most
  `QUERY_CONCURRENCY` queries in flight. A loan whose workflow does not answer
  (closed in the directory, not started, no longer in Temporal, a failed or
  unanswered query) shows its directory row instead, and `note` says why.
- `outstanding`: the open loans' outstanding summed per currency, as decimal
  strings. A closed loan is shown with its final figures and not counted.
- `contacts`: every loan's contacts in time order, each with its loan id,
  channel, template, result, stage and time; never a recipient or a body.
  A live loan's come from its `status`, the others' from the `contacts` table.
- `tasks`: the open agent tasks of the borrower or of the loans shown.

Reading and asking only: nothing is written, nothing is sent to Temporal but
queries. Shared by the gateway and the command line.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import structlog
from sqlalchemy import case, func, inspect, or_, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client, WorkflowQueryFailedError, WorkflowQueryRejectedError
from temporalio.service import RPCError, RPCStatusCode

from db.models import Borrower, Contact, Loan
from dunning import contract
from dunning.masking import mask
from dunning.money import format_amount
from services.contacts import UnknownBorrower

__all__ = ["MAX_LOANS", "UnknownBorrower", "borrower_view", "read_directory"]

log = structlog.get_logger(__name__)

# A borrower with more loans than this shows this many (open ones first) and `"truncated": true`.
MAX_LOANS = 200
# Status queries in flight at once, per view.
QUERY_CONCURRENCY = 16
# A workflow whose worker is down never answers a query: the view shows its directory row instead.
QUERY_TIMEOUT_SECONDS = 10.0
# The contacts shown across loans (the latest ones) and `"contacts_truncated": true` past it.
MAX_CONTACTS = 1000
# The open tasks shown (the highest priority first).
MAX_TASKS = 500

# Masked with dunning/masking.py's `mask`; the others are shown as they are.
_MASKED = ("name", "phone", "email", "push_token", "address_line1", "address_line2", "city", "postal_code")
_PLAIN = ("language", "time_zone", "region", "country")
# The SSN and the date of birth (the Metro 2 file's identity) are in neither: never shown, not even masked.

# What a live `status` answer contributes to a loan's entry.
_FROM_STATUS = (
    "stage", "days_past_due", "amount_due", "amount_paid", "outstanding", "currency", "paused",
    "next_action", "next_action_at", "policy", "due_date", "as_of",
)

# An agent task (db/models.AgentTask, statuses open -> claimed -> done,
# db/tasks.py) is open until it is done. The table arrived with issue 17 at
# the same time as this view, so it is read defensively: no model, no table
# (a database not migrated to 0013 yet) or an unreadable one shows no tasks.
# TODO(agent tasks, issue 17): once `agent_tasks` has settled, read it through
# db/tasks.py's own query for a borrower's open tasks, if it grows one.
_DONE_TASK_STATUSES = frozenset({"done"})

ClientFactory = Callable[[], Awaitable[Client]]


@dataclass
class Directory:
    """What the database holds of one borrower, read in one session."""

    borrower_id: str
    contact: dict[str, Any]
    loans: list[dict[str, Any]]  # directory rows, open first then newest placed, at most MAX_LOANS
    loan_count: int
    contacts: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # loan id -> its contacts table rows
    tasks: list[dict[str, Any]] = field(default_factory=list)

    @property
    def truncated(self) -> bool:
        return self.loan_count > len(self.loans)


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat()


def masked_contact(row: Borrower) -> dict[str, Any]:
    """The directory row's contact details, masked; never its SSN or date of birth."""
    shown: dict[str, Any] = {name: (mask(value) if (value := getattr(row, name)) else None) for name in _MASKED}
    shown.update({name: getattr(row, name) for name in _PLAIN})
    return shown


def _directory_outstanding(row: Loan) -> Decimal:
    """What the directory row says is owed: the amount due and what was charged,
    less what was waived and paid (never below zero)."""
    owed = (row.amount_due or Decimal(0)) + (row.fees_charged or Decimal(0)) + (row.interest_charged or Decimal(0))
    return max(owed - (row.waived or Decimal(0)) - (row.amount_paid or Decimal(0)), Decimal(0))


def _loan_row(row: Loan) -> dict[str, Any]:
    return {
        "loan_id": row.loan_id,
        "workflow_id": row.workflow_id,
        "stage": row.stage,
        "outcome": row.outcome,
        "days_past_due": None,
        "amount_due": format_amount(row.amount_due, row.currency),
        "amount_paid": format_amount(row.amount_paid or Decimal(0), row.currency),
        "outstanding": format_amount(_directory_outstanding(row), row.currency),
        "currency": row.currency,
        "paused": None,
        "next_action": None,
        "next_action_at": None,
        "policy": row.policy,
        "due_date": row.due_date.isoformat(),
        "as_of": None,
        "placed_at": _iso(row.placed_at),
        "closed_at": _iso(row.closed_at),
    }


def _contact_row(row: Contact) -> dict[str, Any]:
    # No recipient, subject or body: a contact is shown by what and when.
    return {
        "loan_id": row.loan_id,
        "channel": row.channel,
        "template": row.template,
        "stage": row.stage,
        "result": row.status,
        "at": _iso(row.sent_at or row.created_at),
    }


def _open_tasks(db: Session, borrower_id: str, loan_ids: list[str]) -> list[dict[str, Any]]:
    """The open (and claimed) agent tasks of the borrower or its loans, the
    highest priority first, then the soonest due; [] without an `agent_tasks`
    table (see _DONE_TASK_STATUSES)."""
    try:
        from db.models import AgentTask  # type: ignore[attr-defined]
    except ImportError:  # TODO(agent tasks, issue 17): no `agent_tasks` model in this tree
        return []
    try:
        from db.tasks import DONE

        done = frozenset({DONE})
    except ImportError:
        done = _DONE_TASK_STATUSES
    try:
        if not inspect(db.get_bind()).has_table(AgentTask.__tablename__):
            return []  # the model is there, its migration not applied yet
        wanted = [AgentTask.borrower_id == borrower_id]
        if loan_ids:
            wanted.append(AgentTask.loan_id.in_(loan_ids))
        rows = db.scalars(
            select(AgentTask).where(or_(*wanted), AgentTask.status.not_in(done))
            .order_by(AgentTask.priority.desc(), AgentTask.due_at, AgentTask.id).limit(MAX_TASKS)
        ).all()
    except SQLAlchemyError as error:
        log.warning("borrower_view_tasks_unreadable", borrower_id=borrower_id, error=type(error).__name__)
        return []
    # Ids and codes only: a task's note is not shown here.
    return [
        {
            "task_id": getattr(row, "id", None),
            "kind": getattr(row, "kind", None),
            "loan_id": getattr(row, "loan_id", None),
            "status": getattr(row, "status", None),
            "priority": getattr(row, "priority", None),
            "due_at": _iso(getattr(row, "due_at", None)),
            "assignee": getattr(row, "assignee", None),
        }
        for row in rows
    ]


def read_directory(sessions: sessionmaker[Session], borrower_id: str, max_loans: int = MAX_LOANS) -> Directory:
    """The borrower's row, loans, contacts and tasks from the database; raises
    UnknownBorrower for a borrower the directory does not hold."""
    with sessions() as db:
        row = db.get(Borrower, borrower_id)
        if row is None:
            raise UnknownBorrower(borrower_id)
        contact = masked_contact(row)
        loan_count = db.scalar(select(func.count()).select_from(Loan).where(Loan.borrower_id == borrower_id)) or 0
        loans = db.scalars(
            select(Loan).where(Loan.borrower_id == borrower_id)
            .order_by(case((Loan.outcome.is_(None), 0), else_=1), Loan.placed_at.desc(), Loan.loan_id)
            .limit(max_loans)
        ).all()
        rows = [_loan_row(loan) for loan in loans]
        loan_ids = [loan.loan_id for loan in loans]
        contacts: dict[str, list[dict[str, Any]]] = {}
        # One query per 500 ids: a driver's parameter limit is never reached.
        for start in range(0, len(loan_ids), 500):
            for contact_row in db.scalars(select(Contact).where(Contact.loan_id.in_(loan_ids[start:start + 500]))):
                contacts.setdefault(contact_row.loan_id, []).append(_contact_row(contact_row))
        tasks = _open_tasks(db, borrower_id, loan_ids)
    return Directory(borrower_id, contact, rows, loan_count, contacts, tasks)


@dataclass(frozen=True)
class _Answer:
    status: dict | None
    note: str | None  # why there is no status


async def _ask_status(client: Client, workflow_id: str, timeout: float) -> _Answer:
    """The loan's live `status`, or why there is none. Temporal unreachable is raised."""
    handle = client.get_workflow_handle(workflow_id)
    try:
        return _Answer(await asyncio.wait_for(handle.query(contract.QUERY_STATUS), timeout), None)
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            return _Answer(None, "no workflow answers (not started, or no longer in Temporal): shown from the directory")
        if error.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
            raise
        return _Answer(None, f"the status query failed ({error.status.name if error.status else 'error'}): shown from the directory")
    except (WorkflowQueryFailedError, WorkflowQueryRejectedError) as error:
        return _Answer(None, f"the status query failed ({type(error).__name__}): shown from the directory")
    except asyncio.TimeoutError:
        return _Answer(None, f"the workflow did not answer in {timeout:g} s (no worker?): shown from the directory")


def _merge(row: dict[str, Any], answer: _Answer | None) -> dict[str, Any]:
    """A loan's entry: its live status over its directory row, or the row and why."""
    entry = dict(row)
    if answer is None:
        entry["source"], entry["note"] = "directory", f"closed ({row['outcome']}): shown from the directory"
        return entry
    if answer.status is None:
        entry["source"], entry["note"] = "directory", answer.note
        return entry
    entry.update({name: answer.status.get(name) for name in _FROM_STATUS})
    entry["source"], entry["note"] = "workflow", None
    return entry


def _sorted_contacts(contacts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    def moment(contact: dict[str, Any]) -> datetime:
        try:
            at = datetime.fromisoformat(str(contact["at"]))
        except ValueError:
            return datetime.min.replace(tzinfo=timezone.utc)
        return at if at.tzinfo else at.replace(tzinfo=timezone.utc)

    return sorted(contacts, key=lambda c: (moment(c), c["loan_id"], c["channel"], c["template"]))


async def borrower_view(
    sessions: sessionmaker[Session],
    borrower_id: str,
    client: ClientFactory,
    *,
    max_loans: int = MAX_LOANS,
    concurrency: int = QUERY_CONCURRENCY,
    query_timeout: float = QUERY_TIMEOUT_SECONDS,
) -> dict[str, Any]:
    """The borrower view (the module doc; its JSON: docs/contract.md).

    `client` is called for the Temporal client only when the borrower has an
    open loan. Raises UnknownBorrower; Temporal unreachable is raised as the
    client raises it (RPCError UNAVAILABLE), for the caller to report."""
    directory = await asyncio.to_thread(read_directory, sessions, borrower_id, max_loans)
    open_rows = [row for row in directory.loans if row["outcome"] is None]
    answers: dict[str, _Answer] = {}
    if open_rows:
        temporal = await client()
        limit = asyncio.Semaphore(max(1, concurrency))

        async def ask(row: dict[str, Any]) -> tuple[str, _Answer]:
            async with limit:
                return row["loan_id"], await _ask_status(temporal, row["workflow_id"], query_timeout)

        answers = dict(await asyncio.gather(*(ask(row) for row in open_rows)))

    loans = [_merge(row, answers.get(row["loan_id"])) for row in directory.loans]
    outstanding: dict[str, Decimal] = {}
    contacts: list[dict[str, Any]] = []
    for loan in loans:
        answer = answers.get(loan["loan_id"])
        if loan["outcome"] is None and loan["outstanding"] is not None and loan["currency"]:
            outstanding[loan["currency"]] = outstanding.get(loan["currency"], Decimal(0)) + Decimal(loan["outstanding"])
        if answer is not None and answer.status is not None:
            contacts.extend(
                {"loan_id": loan["loan_id"], "channel": c.get("channel"), "template": c.get("template"),
                 "stage": c.get("stage"), "result": c.get("result"), "at": c.get("at")}
                for c in answer.status.get("contacts") or ()
            )
        else:
            contacts.extend(directory.contacts.get(loan["loan_id"], ()))
    contacts = _sorted_contacts(contacts)
    return {
        "borrower_id": directory.borrower_id,
        "contact": directory.contact,
        "loan_count": directory.loan_count,
        "truncated": directory.truncated,
        "loans": loans,
        "outstanding": {currency: format_amount(total, currency) for currency, total in sorted(outstanding.items())},
        "contacts": contacts[-MAX_CONTACTS:],
        "contacts_truncated": len(contacts) > MAX_CONTACTS,
        "tasks": directory.tasks,
    }
