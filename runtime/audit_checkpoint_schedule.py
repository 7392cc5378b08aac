"""The Temporal Schedule that writes the audit checkpoints (issue 19, item
1): `dunning-audit-checkpoint`, starting AuditCheckpointWorkflow
(workflows/audit_checkpoint.py) every DUNNING_AUDIT_CHECKPOINT_MINUTES
(default 5) on the worker's task queue. A Schedule, not a cron: Temporal
keeps the timing, retries the activity and shows every run.

`ensure_audit_checkpoint_schedule` creates it, or updates it to this
definition when it exists: the worker calls it at start (worker.py), so
any number of workers may, and an operator's pause stays.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
)

from runtime.schedules import ensure_schedule
from workflows.audit_checkpoint import AUDIT_CHECKPOINT_WORKFLOW

SCHEDULE_ID = "dunning-audit-checkpoint"
# Each run's workflow id is this with the scheduled time appended (Temporal's).
WORKFLOW_ID = "dunning-audit-checkpoint"


def audit_checkpoint_schedule(task_queue: str, every: timedelta) -> Schedule:
    """Every `every`; a run still going when the next is due: the next is
    skipped; runs missed while Temporal was down are not made up one by one
    (the next run commits to everything changed since the last checkpoint)."""
    return Schedule(
        action=ScheduleActionStartWorkflow(
            AUDIT_CHECKPOINT_WORKFLOW, id=WORKFLOW_ID, task_queue=task_queue, execution_timeout=every * 2,
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP, catchup_window=max(every, timedelta(minutes=1))),
    )


async def ensure_audit_checkpoint_schedule(client: Client, task_queue: str, every: timedelta) -> str:
    """Create the schedule, or update the existing one to this definition:
    "created" or "updated" (runtime/schedules.py)."""
    return await ensure_schedule(client, SCHEDULE_ID, audit_checkpoint_schedule(task_queue, every))
