"""The essential floor: what any implementation of the service must do for a
loan that is placed and then repaid, and nothing else.

EssentialWorkflow takes DunningWorkflow's input and `repayment` signal, like
the no-op floor (bench/noop.py), and runs the two durable writes a repaid
loan cannot do without, with the real activities, as DunningWorkflow runs
them: `prepare_loan` (the loan's row, its policy and profile read) as a local
activity, and on the signal `close_loan` (the payment, the close and their
audit entries in one transaction) as a local activity. No planning, no
search attributes, no contacts, no state. Its worker is built exactly like
the dunning worker's (bench/worker_proc.py), so

    essential / floor   is the most any workflow that keeps these records can reach;
    dunning / essential  is what the dunning workflow's own decisions cost.

The benchmark reports both next to dunning / floor (docs/benchmarks.md).
"""

from datetime import timedelta, timezone
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy

from activities.payloads import CLOSE_LOAN, PREPARE_LOAN, LoanClosing, PaymentRecord, PrepareLoanInput

ESSENTIAL_WORKFLOW = "EssentialWorkflow"
_LOCAL = {"start_to_close_timeout": timedelta(seconds=60), "retry_policy": RetryPolicy(maximum_attempts=5)}


@workflow.defn(name=ESSENTIAL_WORKFLOW)
class EssentialWorkflow:
    def __init__(self) -> None:
        self._payment: dict | None = None

    @workflow.run
    async def run(self, loan: dict) -> dict:
        workflow_id = workflow.info().workflow_id
        await workflow.execute_local_activity(PREPARE_LOAN, PrepareLoanInput(
            workflow_id=workflow_id, loan_id=loan["loan_id"], borrower_id=loan["borrower_id"],
            amount_due=loan["amount_due"], currency=loan["currency"], due_date=loan["due_date"], policy=loan["policy"],
        ), **_LOCAL)
        await workflow.wait_condition(lambda: self._payment is not None)
        payment = self._payment or {}
        payment_id = str(payment.get("payment_id"))
        closed_at = workflow.now().astimezone(timezone.utc).isoformat()
        await workflow.execute_local_activity(CLOSE_LOAN, LoanClosing(
            workflow_id=workflow_id, loan_id=loan["loan_id"], outcome="repaid", amount_paid=loan["amount_due"],
            outstanding="0.00", final_stage="pending", closed_at=closed_at,
            payments=[PaymentRecord(
                key=f"{loan['loan_id']}/{payment_id}", workflow_id=workflow_id, loan_id=loan["loan_id"],
                payment_id=payment_id, amount=str(payment.get("amount")), currency=str(payment.get("currency")),
                paid_at=str(payment.get("paid_at") or closed_at), applied=True, principal_paid=loan["amount_due"],
                fees_paid="0.00", interest_paid="0.00", overpaid="0.00",
            )],
        ), **_LOCAL)
        return {"loan_id": loan["loan_id"], "outcome": "repaid"}

    @workflow.signal(name="repayment")
    def repayment(self, payload: Any = None) -> None:
        self._payment = payload if isinstance(payload, dict) else {}



