"""RecordsRetentionWorkflow: one run of the records retention job (issue 16,
item 7), started daily by the Temporal Schedule `dunning-records-retention`
(runtime/retention_schedule.py).

It fixes the moment it counts from (its input, or the workflow's clock at
its start) and has the activity `apply_records_retention`
(activities/retention.py) delete recordings past retention in batches, until
nothing more is due or a batch gets nothing done (what is left failed at
the provider and waits for tomorrow's run). Only counts enter its history.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

RECORDS_RETENTION_WORKFLOW = "RecordsRetentionWorkflow"
# activities/retention.py APPLY_RECORDS_RETENTION (a workflow imports no activity's module).
APPLY_RECORDS_RETENTION = "apply_records_retention"
BATCH = 200
MAX_BATCHES = 100

RETRY = RetryPolicy(initial_interval=timedelta(seconds=5), maximum_interval=timedelta(minutes=5), maximum_attempts=10)


@workflow.defn(name=RECORDS_RETENTION_WORKFLOW)
class RecordsRetentionWorkflow:
    @workflow.run
    async def run(self, now: str = "") -> dict:
        """`now`: the instant to count from (ISO 8601 with an offset); the
        workflow's clock when empty, as the Schedule starts it."""
        moment = now or workflow.now().isoformat()
        totals = {"now": moment, "deleted": 0, "already_gone": 0, "failed": 0, "problems": 0, "batches": 0}
        for _ in range(MAX_BATCHES):
            result = await workflow.execute_activity(
                APPLY_RECORDS_RETENTION,
                args=[moment, BATCH],
                result_type=dict,
                start_to_close_timeout=timedelta(minutes=30),
                heartbeat_timeout=timedelta(minutes=2),
                retry_policy=RETRY,
            )
            totals["batches"] += 1
            for name in ("deleted", "already_gone", "failed"):
                totals[name] += int(result.get(name, 0))
            totals["problems"] = max(totals["problems"], int(result.get("problems", 0)))
            if not result.get("more") or not (result.get("deleted", 0) + result.get("already_gone", 0)):
                break
        return totals
