"""Keeping one of the service's Temporal Schedules as the code defines it
(the records retention job, the audit checkpoints): created when missing,
else updated to the definition with its state kept, so that every worker may
call it at start and an operator's pause stays."""

from __future__ import annotations

from dataclasses import replace

from temporalio.client import Client, Schedule, ScheduleAlreadyRunningError, ScheduleUpdate


async def ensure_schedule(client: Client, schedule_id: str, schedule: Schedule) -> str:
    """Create the schedule, or update the existing one to this definition:
    "created" or "updated"."""
    try:
        await client.create_schedule(schedule_id, schedule)
        return "created"
    except ScheduleAlreadyRunningError:
        # The definition is ours; its state (an operator's pause and note) is kept.
        await client.get_schedule_handle(schedule_id).update(
            lambda current: ScheduleUpdate(schedule=replace(schedule, state=current.description.schedule.state))
        )
        return "updated"
