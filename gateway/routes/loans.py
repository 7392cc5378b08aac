"""Placing overdue loans and reading their status: the internal API, each
route behind a scoped API key (gateway/auth.py), checked before anything is
read or looked up."""

from __future__ import annotations

import structlog
from fastapi import APIRouter, Depends, HTTPException
from fastapi import Path as PathParam

from db.directory import PlacementConflict
from dunning import contract
from dunning.inputs import ID_PATTERN
from gateway.auth import AUTH_RESPONSES, Caller, require_scope
from gateway.deps import Gateway, gateway, temporal_errors
from services.placement import Placement
from services.placing import Placing

READ_SCOPE = "loans:read"

log = structlog.get_logger(__name__)

router = APIRouter(tags=["loans"])


@router.post(
    "/loans/overdue", status_code=201,
    responses={**AUTH_RESPONSES, 409: {"description": "the record would change a borrower's contact details or a loan's terms; names ids and fields, never values"}},
)
async def place_loan(
    placement: Placement,
    caller: Caller = Depends(require_scope("loans:place")),
    gw: Gateway = Depends(gateway),
) -> dict:
    """Place one overdue loan (the starter's record: workflow input + `borrower` block); idempotent."""
    client = await gw.temporal()  # before writing: no Temporal, nothing written
    try:
        placing = Placing.write(gw.sessions(), [placement])  # services/placing.py: nothing written on a conflict
    except PlacementConflict as conflict:
        # Ids and field names only: the caller may be probing someone else's details.
        log.warning("placement_conflict", key_id=caller.key_id, conflicts=[c.as_dict() for c in conflict.conflicts])
        # Which fields differ is itself an answer: a key that may place but not
        # read could post a known loan with a wrong amount and a guessed phone,
        # and learn from the list whether the guess was right. Only a key that
        # reads loans gets the list; the log has it for everyone.
        detail = conflict.detail() if READ_SCOPE in caller.scopes else {"message": conflict.detail()["message"]}
        raise HTTPException(409, detail) from None
    with temporal_errors():
        [result] = [r async for r in placing.start_each(client, gw.core.task_queue)]
    log.info("loan_placed", loan_id=placement.loan_id, state=result.state, key_id=caller.key_id)
    return {
        "workflow_id": result.workflow_id,
        "run_id": result.run_id,
        "started": result.started,
        "state": result.state,
    }


@router.get("/loans/{loan_id}", responses={**AUTH_RESPONSES, 404: {"description": "no such loan workflow"}})
async def get_loan(
    loan_id: str = PathParam(..., pattern=ID_PATTERN),
    _caller: Caller = Depends(require_scope("loans:read")),
    gw: Gateway = Depends(gateway),
) -> dict:
    """The loan workflow's `status` query answer. Without a `loans:read` key
    it is 401 whether or not the loan exists: ids cannot be enumerated."""
    answer = await gw.loan_status(loan_id)
    if answer is None:
        raise HTTPException(404, f"no workflow {contract.workflow_id_for(loan_id)}")
    return answer
