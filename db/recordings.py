"""A recorded call's recording, kept with its contact row (issue 16, item 7).

Three small writes, each with its audit entry in the same transaction, none
of them touching the row's status (db/outbox.py owns that):

- `store_recording`: the provider's recording-status callback names the
  recording (Twilio's `RE...` sid) and its length; the row keeps them.
  Idempotent: the same callback again (a retry, a replay) changes nothing
  and appends nothing.
- `recordings_past_retention`: the rows whose recording is older than the
  retention of the loan's policy's profile (rules.records_retention_years),
  counted from the call (`sent_at`; `created_at` for a row whose send was
  never confirmed) and not deleted yet.
- `mark_recording_deleted`: the retention job deleted it at the provider;
  the row keeps the reference and when it was deleted (`recording_deleted_at`).

Audit entries are of kind `decision` (the rule: `record_calls` when a
recording is kept, `records_retention_years` when it is deleted), keyed by
the contact's key and the recording, so each is appended once. A contact's
own entries (kind `contact`, db/outbox.py) stay the ones that prove its
message. Audit entries themselves are never deleted.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db import audit
from db.models import Contact, Loan
from dunning.keys import audit_key

# Twilio's recording sid (the spec's pattern for Recordings/{Sid}).
RECORDING_SID = re.compile(r"^RE[0-9a-fA-F]{32}$")

RULE_RECORD = "record_calls"
RULE_RETENTION = "records_retention_years"

STORED = "stored"
DUPLICATE = "duplicate"  # the same recording again: nothing changed
OTHER = "other_recording"  # the row already keeps another recording: not replaced
UNKNOWN_KEY = "unknown_key"


def _aware(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def store_recording(db: Session, key: str, recording_sid: str, seconds: int | None, at: datetime) -> str:
    """Keep `recording_sid` (and its length in seconds) on the contact row
    `key`, and audit it; STORED, or why not (DUPLICATE, OTHER, UNKNOWN_KEY).

    A row that keeps another recording keeps it: the retention job deletes
    what the row names, so it is never replaced (a call makes one recording;
    a second one is logged by the caller for an operator)."""
    row = db.scalar(select(Contact).where(Contact.key == key))
    if row is None:
        return UNKNOWN_KEY
    if row.recording_ref == recording_sid:
        if row.recording_seconds is None and seconds is not None and row.recording_deleted_at is None:
            row.recording_seconds = seconds
        return DUPLICATE
    if row.recording_ref is not None:
        return OTHER
    row.recording_ref, row.recording_seconds = recording_sid, seconds
    db.flush()
    audit.append(
        db, "decision", row.loan_id, row.workflow_id,
        {
            "key": row.key, "rule": RULE_RECORD, "channel": row.channel, "step_key": row.key,
            "reason": f"call recorded: recording {recording_sid} ({'?' if seconds is None else seconds} s) kept "
                      f"with the contact",
            "recording_ref": recording_sid, "recording_seconds": seconds,
        },
        at=at,
        key=audit_key(row.key, "recording", recording_sid),
    )
    return STORED


# ------------------------------------------------------------------ retention


def years_before(now: datetime, years: int) -> datetime:
    """The same instant `years` calendar years earlier (29 February -> 28 February)."""
    try:
        return now.replace(year=now.year - years)
    except ValueError:
        return now.replace(year=now.year - years, day=28)


@dataclass(frozen=True)
class DueRecording:
    """A recording past its retention: what the job deletes, and why."""

    key: str
    loan_id: str
    workflow_id: str
    recording_ref: str
    provider: str
    called_at: datetime
    policy: str
    profile: str
    retention_years: int
    cutoff: datetime


def _called_at():
    return func.coalesce(Contact.sent_at, Contact.created_at)


def policies_with_recordings(db: Session) -> list[str]:
    """The policies of the loans whose contacts keep a recording not deleted yet."""
    return list(db.scalars(
        select(Loan.policy).distinct().join(Contact, Contact.loan_id == Loan.loan_id)
        .where(Contact.recording_ref.is_not(None), Contact.recording_deleted_at.is_(None))
        .order_by(Loan.policy)
    ))


def recordings_past_retention(
    db: Session, now: datetime, retention: Callable[[str], tuple[str, int]], policies: Iterable[str], limit: int,
) -> list[DueRecording]:
    """Up to `limit` recordings, oldest call first, of loans on `policies`,
    whose call was more than the retention of the policy's profile before
    `now` (`retention(policy)` -> (profile name, years)). A call exactly at
    the boundary is kept."""
    due: list[DueRecording] = []
    for policy in policies:
        if len(due) >= limit:
            break
        profile, years = retention(policy)
        cutoff = years_before(now, years)
        rows = db.execute(
            select(Contact.key, Contact.loan_id, Contact.workflow_id, Contact.recording_ref, Contact.provider,
                   _called_at().label("called_at"))
            .join(Loan, Loan.loan_id == Contact.loan_id)
            .where(Loan.policy == policy, Contact.recording_ref.is_not(None), Contact.recording_deleted_at.is_(None),
                   _called_at() < cutoff)
            .order_by(_called_at(), Contact.id)
            .limit(limit - len(due))
        ).all()
        due += [
            DueRecording(key=row.key, loan_id=row.loan_id, workflow_id=row.workflow_id, recording_ref=row.recording_ref,
                         provider=row.provider or "twilio", called_at=_aware(row.called_at), policy=policy,
                         profile=profile, retention_years=years, cutoff=cutoff)
            for row in rows
        ]
    return due


def mark_recording_deleted(db: Session, due: DueRecording, at: datetime, detail: str) -> bool:
    """The recording is gone at the provider: `recording_deleted_at` on its
    row and one audit entry. False (nothing written) when the row no longer
    names that recording undeleted (an earlier or concurrent run marked it)."""
    row = db.scalar(select(Contact).where(Contact.key == due.key))
    if row is None or row.recording_ref != due.recording_ref or row.recording_deleted_at is not None:
        return False
    row.recording_deleted_at = at
    db.flush()
    audit.append(
        db, "decision", row.loan_id, row.workflow_id,
        {
            "key": row.key, "rule": RULE_RETENTION, "channel": row.channel, "step_key": row.key,
            "reason": (f"recording {due.recording_ref} of the call of {due.called_at.date().isoformat()} deleted at "
                       f"{due.provider}: past the {due.profile} profile's {due.retention_years}-year retention "
                       f"({detail})")[:500],
            "recording_ref": due.recording_ref, "called_at": due.called_at, "cutoff": due.cutoff,
            "profile": due.profile, "policy": due.policy, "retention_years": due.retention_years,
        },
        at=at,
        key=audit_key(row.key, "recording_deleted", due.recording_ref),
    )
    return True


def closed_loans_past_retention(db: Session, policy: str, cutoff: datetime) -> int:
    """Loans on `policy` closed before `cutoff`: their other records (contact
    rows, messages, payments, plans) are past retention too. Counted for the
    report only: this issue deletes recordings alone."""
    return db.scalar(
        select(func.count()).select_from(Loan).where(Loan.policy == policy, Loan.closed_at.is_not(None),
                                                      Loan.closed_at < cutoff)
    ) or 0
