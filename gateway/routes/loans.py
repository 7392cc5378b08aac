"""Placing overdue loans and reading their status."""

from __future__ import annotations

import structlog
from fastapi import APIRouter, Depends, HTTPException
from fastapi import Path as PathParam

from db.directory import upsert_placements
from dunning import contract
from dunning.inputs import ID_PATTERN
from gateway.deps import Gateway, gateway, temporal_errors
from services.placement import Placement
from services.placing import closed_outcomes, start_placement

log = structlog.get_logger(__name__)

router = APIRouter(tags=["loans"])


@router.post("/loans/overdue", status_code=201)
async def place_loan(placement: Placement, gw: Gateway = Depends(gateway)) -> dict:
    """Place one overdue loan (the starter's record: workflow input + `borrower` block); idempotent."""
    client = await gw.temporal()  # before writing: no Temporal, nothing written
    db = gw.sessions()
    summary = upsert_placements(db, [placement])
    for conflict in summary.conflicts:
        log.warning("placement_conflict", detail=conflict)
    closed = closed_outcomes(db, [placement.loan_id])
    with temporal_errors():
        result = await start_placement(client, gw.core.task_queue, placement, closed.get(placement.loan_id))
    log.info("loan_placed", loan_id=placement.loan_id, state=result.state)
    return {
        "workflow_id": result.workflow_id,
        "run_id": result.run_id,
        "started": result.started,
        "state": result.state,
    }


@router.get("/loans/{loan_id}", responses={404: {"description": "no such loan workflow"}})
async def get_loan(loan_id: str = PathParam(..., pattern=ID_PATTERN), gw: Gateway = Depends(gateway)) -> dict:
    """The loan workflow's `status` query answer."""
    answer = await gw.loan_status(loan_id)
    if answer is None:
        raise HTTPException(404, f"no workflow {contract.workflow_id_for(loan_id)}")
    return answer
