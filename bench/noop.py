"""The floor: a workflow with DunningWorkflow's shape and nothing else.

One activity, then wait for the `repayment` signal, then complete. It takes
the same input (a loan record) and the same signal payload as DunningWorkflow
and runs on a worker built exactly like the dunning worker (same sandbox
runner, executor, cache size), so whatever DunningWorkflow costs above it is
the cost of the dunning service's own code.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import activity, workflow

NOOP_WORKFLOW = "NoopWorkflow"
NOOP_ACTIVITY = "noop_prepare"


@activity.defn(name=NOOP_ACTIVITY)
def noop_prepare(loan: Any) -> dict:
    """Synchronous, like the dunning activities: it runs in the same thread pool."""
    return {"loan_id": loan.get("loan_id") if isinstance(loan, dict) else None}


@workflow.defn(name=NOOP_WORKFLOW)
class NoopWorkflow:
    def __init__(self) -> None:
        self._paid = False

    @workflow.run
    async def run(self, loan: Any) -> dict:
        await workflow.execute_activity(NOOP_ACTIVITY, loan, start_to_close_timeout=timedelta(seconds=30))
        await workflow.wait_condition(lambda: self._paid)
        return {"loan_id": loan.get("loan_id") if isinstance(loan, dict) else None, "outcome": "repaid"}

    @workflow.signal(name="repayment")
    def repayment(self, payload: Any = None) -> None:
        self._paid = True
