"""Updates from outside the workflow, and field visit reports.

Shared by the gateway (`POST /visits/{visit_id}/report`, the pay page's and
the IVR's plans) and the command line (`starter.py update`, `starter.py visit`).

A field visit report has two parts that live in different places: the outcome
and the staff ids go to the workflow (the `record_visit` update: ids only),
the team's notes are personal data and go to the database
(`field_visits.notes`), never to Temporal. They are written in that order:

1. the update runs; if the workflow rejects it (one staff member where the
   profile needs two, an unknown or already reported visit, ...), nothing is
   written and the rejection is the answer;
2. once it is accepted, the notes are stored in one statement
   (`UPDATE ... SET notes = ? WHERE visit_id = ? AND notes IS NULL`), so they
   are either all there or not at all, and a stored note is never overwritten.

If step 2 fails (the database is down, the process dies), the caller gets an
error and sends the same report again: the workflow then rejects the update as
already reported, and the report is recognised as the same one (the visit is
done in the workflow with the same outcome, and the same staff where the
database already has them), so only the notes are stored and the answer is
200 `"duplicate": true`. A repeated report whose notes are already stored
gets the same answer; a different report for a done visit is rejected.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select, update
from temporalio.client import Client, WorkflowUpdateFailedError, WorkflowUpdateRPCTimeoutOrCancelledError

from db.models import FieldVisitRecord
from dunning import contract
from dunning.inputs import Identifier, PromiseToPay

# How long a caller waits for an update's answer: a workflow whose worker is
# down never answers, and a field app or a borrower must not wait for ever.
UPDATE_TIMEOUT_SECONDS = 30.0
# Keys that would carry personal data into Temporal's history if an update
# payload held them (unknown keys are ignored by the workflow, but they would
# still be stored in the history).
PERSONAL_KEYS = frozenset({"notes", "name", "phone", "email", "address", "national_id"})
NOTES_MAX_CHARS = 20_000


class UpdateRejected(Exception):
    """The workflow's validator (or handler) refused the update; the message
    names the key: 'staff_ids: a field visit needs 2 different staff (cn profile)'."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NoSuchLoan(Exception):
    """No open workflow for the loan (never placed, or closed)."""


class UpdateTimedOut(Exception):
    """No answer in time (no worker polling?); the update may still be applied."""


def refuse_personal_keys(payload: Any) -> None:
    """ValueError naming a key that must never enter Temporal."""
    if isinstance(payload, dict):
        found = sorted(PERSONAL_KEYS.intersection(payload))
        if found:
            raise ValueError(
                f"{found[0]}: personal data never goes to Temporal"
                + (" (field notes: `starter.py visit` or POST /visits/{visit_id}/report)" if found[0] == "notes" else "")
            )


def _rejection_message(error: WorkflowUpdateFailedError) -> str:
    cause = error.cause
    message = getattr(cause, "message", None) or str(cause or error)
    return " ".join(str(message).split())[:500]


async def execute_update(
    client: Client, loan_id: str, name: str, payload: dict, timeout: float = UPDATE_TIMEOUT_SECONDS
) -> Any:
    """Run one of the contract's updates on dunning-<loan_id> and return its answer.

    UpdateRejected when the workflow refuses it, NoSuchLoan when there is no
    open workflow, UpdateTimedOut when no answer comes in `timeout` seconds.
    Other RPC errors (Temporal unreachable) are raised as they are."""
    from temporalio.service import RPCError, RPCStatusCode

    if name not in contract.UPDATES:
        raise ValueError(f"name: must be one of {', '.join(contract.UPDATES)}")
    refuse_personal_keys(payload)
    handle = client.get_workflow_handle(contract.workflow_id_for(loan_id))
    try:
        return await asyncio.wait_for(handle.execute_update(name, payload), timeout)
    except WorkflowUpdateFailedError as error:
        raise UpdateRejected(_rejection_message(error)) from None
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            raise NoSuchLoan(f"no open workflow {contract.workflow_id_for(loan_id)}") from None
        raise
    except (asyncio.TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
        raise UpdateTimedOut(f"{name}: no answer from {contract.workflow_id_for(loan_id)} in time; try again") from None


# ------------------------------------------------------------------ field visits


class FieldReport(BaseModel):
    """A field visit report as the field team's app (or `starter.py visit`)
    sends it. Only `outcome`, `staff_ids` and `promise` reach the workflow."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    outcome: Literal["met", "not_home", "refused", "promise", "paid"]
    staff_ids: Annotated[list[Identifier], Field(min_length=1, max_length=10)]
    notes: Annotated[str, Field(max_length=NOTES_MAX_CHARS, pattern=r"^[^\x00]*$")] = ""  # no NUL: PostgreSQL refuses it
    promise: PromiseToPay | None = None

    def update_payload(self, visit_id: str) -> dict:
        """The `record_visit` payload: ids, the outcome and the promise; no notes."""
        payload: dict[str, Any] = {"visit_id": visit_id, "outcome": self.outcome, "staff_ids": list(self.staff_ids)}
        if self.promise is not None:
            payload["promise"] = self.promise.model_dump(mode="json")
        return payload


@dataclass(frozen=True)
class VisitResult:
    """What became of a report: `recorded` (accepted now, notes stored),
    `duplicate` (the same report was accepted before; its notes are stored
    now or were already), `rejected` (nothing written), `unknown` (no such
    visit)."""

    result: Literal["recorded", "duplicate", "rejected", "unknown"]
    answer: dict = field(default_factory=dict)
    error: str = ""


class NotesNotStored(Exception):
    """The visit was recorded in the workflow but its notes could not be
    stored: sending the same report again stores them."""


def find_visit(sessions, visit_id: str) -> FieldVisitRecord | None:
    with sessions() as db:
        row = db.scalar(select(FieldVisitRecord).where(FieldVisitRecord.visit_id == visit_id))
        if row is not None:
            db.expunge(row)
        return row


def store_notes(sessions, visit_id: str, notes: str) -> bool:
    """Store the notes if none are stored yet (one statement: all or nothing).
    True if they are stored now or the same notes were already there."""
    with sessions.begin() as db:
        written = db.execute(
            update(FieldVisitRecord)
            .where(FieldVisitRecord.visit_id == visit_id, FieldVisitRecord.notes.is_(None))
            .values(notes=notes)
        ).rowcount
        if written == 1:
            return True
        current = db.scalar(select(FieldVisitRecord.notes).where(FieldVisitRecord.visit_id == visit_id))
        return current == notes


async def _visit_in_workflow(client: Client, loan_id: str, visit_id: str) -> dict | None:
    """The visit as the workflow's status shows it, or None if it cannot say."""
    try:
        status = await asyncio.wait_for(
            client.get_workflow_handle(contract.workflow_id_for(loan_id)).query(contract.QUERY_STATUS), UPDATE_TIMEOUT_SECONDS
        )
    except Exception:  # closed without a worker, unreachable: the database decides
        return None
    return next((v for v in status.get("field_visits") or [] if v.get("visit_id") == visit_id), None)


async def _same_report_already_recorded(client: Client, row: FieldVisitRecord, report: FieldReport) -> bool:
    """Was this very report accepted before (a retry after its notes were lost)?"""
    visit = await _visit_in_workflow(client, row.loan_id, row.visit_id)
    if visit is not None:
        done, outcome = visit.get("status") == "done", visit.get("outcome")
    else:
        done, outcome = row.status == "done", row.outcome
    if not done or outcome != report.outcome:
        return False
    current = find_visit_staff(row)
    return current is None or current == sorted(set(report.staff_ids))


def find_visit_staff(row: FieldVisitRecord) -> list[str] | None:
    """The staff the database has for a reported visit (written by the worker
    shortly after the update), or None if it has none yet."""
    if not row.staff_ids:
        return None
    try:
        return sorted(set(json.loads(row.staff_ids)))
    except (ValueError, TypeError):
        return None


async def report_visit(client: Client, sessions, visit_id: str, report: FieldReport) -> VisitResult:
    """Record a field visit: the update first (ids only), then the notes.

    NoSuchLoan / UpdateTimedOut / RPC errors are raised for the caller to map;
    NotesNotStored when the workflow took the report but the database did not
    take the notes (a retry of the same report stores them)."""
    row = find_visit(sessions, visit_id)
    if row is None:
        return VisitResult("unknown", error=f"visit_id: no field visit {visit_id!r}")
    try:
        answer = await execute_update(client, row.loan_id, contract.UPDATE_RECORD_VISIT, report.update_payload(visit_id))
    except (UpdateRejected, NoSuchLoan) as error:
        if not await _same_report_already_recorded(client, find_visit(sessions, visit_id) or row, report):
            if isinstance(error, NoSuchLoan):
                raise
            return VisitResult("rejected", error=error.message)
        try:
            stored = store_notes(sessions, visit_id, report.notes)
        except Exception as failure:
            raise NotesNotStored(f"visit {visit_id} is recorded; its notes could not be stored ({type(failure).__name__}): send the report again") from None
        if not stored:
            return VisitResult("rejected", error=getattr(error, "message", str(error)))
        return VisitResult("duplicate", {"visit_id": visit_id, "outcome": report.outcome, "duplicate": True})
    try:
        store_notes(sessions, visit_id, report.notes)
    except Exception as failure:
        raise NotesNotStored(f"visit {visit_id} is recorded; its notes could not be stored ({type(failure).__name__}): send the report again") from None
    return VisitResult("recorded", answer if isinstance(answer, dict) else {"answer": answer})
