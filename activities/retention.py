"""The records retention job (issue 16, item 7): recorded calls' recordings
are deleted once they are past the retention of the loan's profile.

What is past retention:

- a call's recording: more than the profile's rules.records_retention_years
  (cn 5, us 3) after the call (the contact's `sent_at`; its `created_at`
  when the send was never confirmed), the profile being the one of the
  loan's policy (config/policies/<policy>.toml `profile`), read now. Such a
  recording is deleted at the provider (Twilio: DELETE
  /2010-04-01/Accounts/{AccountSid}/Recordings/{Sid}.json), its row gets
  `recording_deleted_at` (the reference stays, so the audit trail names
  what was deleted), and one audit entry per deletion is appended
  (db/recordings.py). A recording the provider no longer has (404) is
  marked the same way, with that said. A provider error leaves the row as it
  is, for the next run.
- every other record of a loan (its contact rows and their messages,
  payments, plans, promises, visits, bureau and legal records): the same
  number of years after the loan's last collection activity, which is its
  closing (`loans.closed_at`; 12 CFR 1006.100(a) counts from the last
  collection activity). This issue deletes only recordings: the job counts
  the closed loans past retention per policy, in its report, and deletes
  nothing of them.
- audit entries: never deleted (the chain is append-only and they hold ids,
  codes and digests, not personal data).

The job runs as the activity `apply_records_retention` of the
RecordsRetentionWorkflow (workflows/retention.py), started daily by the
Temporal Schedule `dunning-records-retention` (runtime/retention_schedule.py),
and from the command line (`starter.py retention run [--dry-run]`). Both call
`run_retention` with the moment they count from passed in; a dry run
deletes and writes nothing and lists what would go.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity

from channels.base import PermanentSendError, TransientSendError
from db import recordings
from db.models import Loan
from db.write_once import in_transaction
from loaders.config_files import load_policy, load_profile

# The activity's name; workflows/retention.py calls it by this name (the two
# layers do not import each other; tests/test_call_recording.py checks they agree).
APPLY_RECORDS_RETENTION = "apply_records_retention"
BATCH = 200

DELETED = "deleted"
ALREADY_GONE = "already_gone"  # the provider no longer had it: marked deleted
WOULD_DELETE = "would_delete"  # a dry run
FAILED = "failed"  # the provider refused or was not reached, or no provider to ask: kept for the next run


class RecordingStore(Protocol):
    """Where recordings are kept (channels/twilio_voice.py TwilioRecordings)."""

    provider: str

    def delete(self, recording_ref: str) -> bool:
        """True: deleted now; False: the provider no longer has it."""
        ...


@dataclass(frozen=True)
class RetentionItem:
    key: str
    loan_id: str
    recording_ref: str
    called_at: datetime
    profile: str
    retention_years: int
    result: str
    detail: str = ""


@dataclass
class RetentionReport:
    now: datetime
    dry_run: bool
    items: list[RetentionItem] = field(default_factory=list)
    # Policies whose profile could not be read: their recordings were not looked at.
    problems: list[str] = field(default_factory=list)
    # policy -> closed loans past retention (their other records: counted, not deleted)
    closed_loans_past_retention: dict[str, int] = field(default_factory=dict)
    more: bool = False  # the batch was full: there may be more to do

    def count(self, result: str) -> int:
        return sum(1 for item in self.items if item.result == result)

    def summary(self) -> dict:
        """Counts only: what enters workflow history."""
        return {
            "deleted": self.count(DELETED), "already_gone": self.count(ALREADY_GONE),
            "would_delete": self.count(WOULD_DELETE), "failed": self.count(FAILED),
            "problems": len(self.problems), "more": self.more,
        }


def _retention_of(policies_dir: Path, profiles_dir: Path) -> Callable[[str], tuple[str, int]]:
    cache: dict[str, tuple[str, int]] = {}

    def retention(policy: str) -> tuple[str, int]:
        if policy not in cache:
            profile = load_profile(load_policy(policy, policies_dir).profile, profiles_dir)
            cache[policy] = (profile.name, profile.rules.records_retention_years)
        return cache[policy]

    return retention


def run_retention(
    sessions: sessionmaker[Session],
    store: RecordingStore | None,
    policies_dir: Path,
    profiles_dir: Path,
    now: datetime,
    *,
    dry_run: bool = False,
    limit: int = BATCH,
    progress: Callable[[], None] = lambda: None,
) -> RetentionReport:
    """One pass: up to `limit` recordings past retention at `now`, deleted
    (or, with `dry_run`, listed), oldest call first."""
    if now.tzinfo is None:
        raise ValueError("now must be an aware instant")
    report = RetentionReport(now=now, dry_run=dry_run)
    retention = _retention_of(policies_dir, profiles_dir)
    with sessions() as db:
        readable = []
        for policy in db.scalars(select(Loan.policy).distinct().order_by(Loan.policy)):
            try:
                profile, years = retention(policy)
            except (ValueError, OSError) as error:  # a policy or profile file gone or broken
                report.problems.append(f"policy {policy}: {str(error)[:300]}")
                continue
            readable.append(policy)
            closed = recordings.closed_loans_past_retention(db, policy, recordings.years_before(now, years))
            if closed:
                report.closed_loans_past_retention[policy] = closed
        with_recordings = [p for p in recordings.policies_with_recordings(db) if p in readable]
        due = recordings.recordings_past_retention(db, now, retention, with_recordings, limit)
    report.more = len(due) >= limit
    for item in due:
        progress()
        report.items.append(_retire(sessions, store, item, now, dry_run))
    return report


def _retire(
    sessions: sessionmaker[Session], store: RecordingStore | None, due: recordings.DueRecording, now: datetime,
    dry_run: bool,
) -> RetentionItem:
    def item(result: str, detail: str = "") -> RetentionItem:
        return RetentionItem(due.key, due.loan_id, due.recording_ref, due.called_at, due.profile, due.retention_years,
                             result, detail)

    if dry_run:
        return item(WOULD_DELETE, f"past the {due.retention_years}-year retention (before {due.cutoff.isoformat()})")
    if store is None or store.provider != due.provider:
        return item(FAILED, f"no {due.provider} credentials to delete it with")
    try:
        deleted_now = store.delete(due.recording_ref)
    except (TransientSendError, PermanentSendError) as error:
        return item(FAILED, str(error)[:300])
    detail = f"deleted at {due.provider}" if deleted_now else f"{due.provider} no longer had it"
    in_transaction(sessions, lambda db: recordings.mark_recording_deleted(db, due, now, detail))
    return item(DELETED if deleted_now else ALREADY_GONE, detail)


def run_retention_until_done(
    sessions: sessionmaker[Session], store: RecordingStore | None, policies_dir: Path, profiles_dir: Path,
    now: datetime, *, dry_run: bool = False, batch: int = BATCH, max_batches: int = 1000,
) -> RetentionReport:
    """Batches until nothing more is due (or a batch gets nothing done: what
    is left failed, and waits for the next run). A dry run is one pass of
    `batch * max_batches` rows (it changes nothing, so batches would repeat)."""
    if dry_run:
        return run_retention(sessions, store, policies_dir, profiles_dir, now, dry_run=True, limit=batch * max_batches)
    total: RetentionReport | None = None
    for _ in range(max_batches):
        report = run_retention(sessions, store, policies_dir, profiles_dir, now, limit=batch)
        if total is None:
            total = report
        else:
            total.items += report.items
            total.more = report.more
        if not report.more or not (report.count(DELETED) + report.count(ALREADY_GONE)):
            break
    return total


class RecordsRetention:
    """The job as an activity, with the database, the provider and the
    configuration directories it reads."""

    def __init__(
        self, sessions: sessionmaker[Session], store: RecordingStore | None, policies_dir: Path, profiles_dir: Path,
    ) -> None:
        self._sessions = sessions
        self._store = store
        self._policies_dir = policies_dir
        self._profiles_dir = profiles_dir

    def registered(self) -> list:
        return [self.apply_records_retention]

    @activity.defn(name=APPLY_RECORDS_RETENTION)
    def apply_records_retention(self, now: str, limit: int) -> dict:
        """One batch at `now` (ISO 8601 with an offset, the workflow's clock);
        counts only come back (ids stay in the database and the audit log)."""
        moment = datetime.fromisoformat(now)
        report = run_retention(self._sessions, self._store, self._policies_dir, self._profiles_dir, moment,
                               limit=limit, progress=activity.heartbeat)
        activity.logger.info("records_retention %s", report.summary())
        return report.summary()
