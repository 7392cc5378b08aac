"""The Temporal Schedule that runs the records retention job every day
(issue 16, item 7): `dunning-records-retention`, starting
RecordsRetentionWorkflow (workflows/retention.py) at 03:00 UTC on the
worker's task queue.

`ensure_retention_schedule` creates it, or updates it to this definition
when it exists: the worker calls it at start (worker.py) and an operator can
with `starter.py retention schedule`. Running it again changes nothing
else (a pause an operator set stays), so any number of workers may.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleCalendarSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
)

from runtime.schedules import ensure_schedule
from workflows.retention import RECORDS_RETENTION_WORKFLOW

SCHEDULE_ID = "dunning-records-retention"
# Each run's workflow id is this with the scheduled time appended (Temporal's).
WORKFLOW_ID = "dunning-records-retention"
HOUR_UTC = 3


def retention_schedule(task_queue: str) -> Schedule:
    """Daily at 03:00 UTC; a run still going when the next is due: the next is
    skipped; a run missed while Temporal was down is made up within a day."""
    return Schedule(
        action=ScheduleActionStartWorkflow(
            RECORDS_RETENTION_WORKFLOW, id=WORKFLOW_ID, task_queue=task_queue,
            execution_timeout=timedelta(hours=12),
        ),
        spec=ScheduleSpec(
            calendars=[ScheduleCalendarSpec(hour=[ScheduleRange(HOUR_UTC)], minute=[ScheduleRange(0)],
                                            second=[ScheduleRange(0)])],
            time_zone_name="UTC",
        ),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP, catchup_window=timedelta(days=1)),
    )


async def ensure_retention_schedule(client: Client, task_queue: str) -> str:
    """Create the schedule, or update the existing one to this definition:
    "created" or "updated" (runtime/schedules.py)."""
    return await ensure_schedule(client, SCHEDULE_ID, retention_schedule(task_queue))
