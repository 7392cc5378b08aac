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

from dataclasses import replace
from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleCalendarSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
    ScheduleUpdate,
)

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
    "created" or "updated"."""
    schedule = retention_schedule(task_queue)
    try:
        await client.create_schedule(SCHEDULE_ID, schedule)
        return "created"
    except ScheduleAlreadyRunningError:
        # The definition is ours; its state (an operator's pause and note) is kept.
        await client.get_schedule_handle(SCHEDULE_ID).update(
            lambda current: ScheduleUpdate(schedule=replace(schedule, state=current.description.schedule.state))
        )
        return "updated"
