"""AuditCheckpointWorkflow: one run of the audit checkpoint job (issue 19,
item 1), started every few minutes by the Temporal Schedule
`dunning-audit-checkpoint` (runtime/audit_checkpoint_schedule.py).

Its one activity, `write_audit_checkpoint` (activities/audit_checkpoint.py),
writes a signed checkpoint of the loan heads changed since the last one and
appends it to the file outside the database. It takes no input and its
history holds counts and a Merkle root only: no loan id, no personal data.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

AUDIT_CHECKPOINT_WORKFLOW = "AuditCheckpointWorkflow"
# activities/audit_checkpoint.py WRITE_AUDIT_CHECKPOINT (a workflow imports no activity's module).
WRITE_AUDIT_CHECKPOINT = "write_audit_checkpoint"

# A checkpoint missed now is made by the next run: retries stop well before it.
RETRY = RetryPolicy(initial_interval=timedelta(seconds=2), maximum_interval=timedelta(seconds=30), maximum_attempts=5)


@workflow.defn(name=AUDIT_CHECKPOINT_WORKFLOW)
class AuditCheckpointWorkflow:
    @workflow.run
    async def run(self) -> dict:
        return await workflow.execute_activity(
            WRITE_AUDIT_CHECKPOINT,
            result_type=dict,
            start_to_close_timeout=timedelta(minutes=4),
            retry_policy=RETRY,
        )
