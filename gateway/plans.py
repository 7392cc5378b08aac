"""A plan offer chosen outside the workflow (the pay page's button, keypad 2
on a call): the loan's policy's offer, proposed through the workflow's own
`propose_plan` update, which checks it like any other proposal."""

from __future__ import annotations

from dunning import contract
from dunning.pay_options import loan_today, offer_proposal
from gateway.deps import Gateway, temporal_errors
from services.visits import execute_update


async def propose_offer(gw: Gateway, loan_id: str, index: int, timeout: float) -> tuple[dict, dict]:
    """Propose the loan's policy's offer number `index` (propose_plan): the
    update's answer and the status it was built on. Raises LookupError (no
    such loan or offer), UpdateRejected, UpdateTimedOut, NoSuchLoan or
    HTTPException(503)."""
    status = await gw.loan_status(loan_id)
    if status is None:
        raise LookupError(f"no workflow {contract.workflow_id_for(loan_id)}")
    policy = gw.loan_policy(status)
    offers = policy.plans.offers if policy is not None else ()
    today = loan_today(status)
    if not 0 <= index < len(offers) or today is None:
        raise LookupError(f"offer: this loan's policy has no offer {index}")
    client = await gw.temporal()
    with temporal_errors():
        answer = await execute_update(
            client, loan_id, contract.UPDATE_PROPOSE_PLAN, offer_proposal(offers[index], today), timeout=timeout
        )
    return answer, status
