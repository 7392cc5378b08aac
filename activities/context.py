"""What every part of the activities shares: their settings, the database,
the clock and the log line that names the activity attempt.

The activities never read the process's settings (runtime/settings.py): the
worker's assembly (runtime/worker_build.py) hands them an ActivitySettings
with the few values they use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TypeVar

import structlog
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity

from db.write_once import in_transaction
from dunning.metro2 import Furnisher

log = structlog.get_logger("activities")

T = TypeVar("T")


@dataclass(frozen=True)
class ActivitySettings:
    """The settings the activities use."""

    lender_name: str  # the messages' sender
    policies_dir: Path  # config/policies: prepare_loan loads the loan's policy
    profiles_dir: Path  # config/profiles: and the policy's compliance profile
    pay_link_base_url: str  # the one-click repayment page a message links to
    pay_link_secret: str  # derives those links' tokens (activities/pay_link.py)
    export_dir: Path  # the bureau's cycle files and the legal cases' documents
    pay_link_max_age_days: int = 30  # how long a link opens its page
    # The gateway's public URL: the e-mails' one-click unsubscribe links (channels/unsubscribe.py).
    public_base_url: str = "http://localhost:8000"
    # The Metro 2 bureau file's furnisher (activities/exports.py).
    metro2: Furnisher = Furnisher()


def attempt_time() -> datetime:
    """Now, by the Temporal server's clock: when this activity attempt started.
    On the time-skipping test server that is its skipped time, so `sent_at`,
    the audit log and the daily call cap follow the workflows' timeline. Outside
    an activity (or in ActivityEnvironment's zero default), the wall clock."""
    try:
        started = activity.info().started_time
    except RuntimeError:
        started = None
    if started is None or started.timestamp() <= 0:
        return datetime.now(timezone.utc)
    return started if started.tzinfo is not None else started.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class ActivityContext:
    """The database, the settings and the clock, shared by the parts."""

    sessions: sessionmaker[Session]
    settings: ActivitySettings
    # Now, as an aware UTC instant: sent_at, the audit log, the call cap.
    clock: Callable[[], datetime] = attempt_time

    def in_transaction(self, work: Callable[[Session], T]) -> T:
        return in_transaction(self.sessions, work)


def bound_log(**fields):
    """The log, bound to this activity attempt (workflow, run, activity, attempt) and `fields`."""
    info = activity.info()
    return log.bind(
        workflow_id=info.workflow_id,
        run_id=info.workflow_run_id,
        activity=info.activity_type,
        attempt=info.attempt,
        **fields,
    )


def aware(instant: str) -> datetime:
    """An ISO instant from a payload; one without an offset is UTC."""
    value = datetime.fromisoformat(instant)
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)
