"""Changing a borrower's contact details: the internal API's one route for it,
behind a `borrowers:write` key (gateway/auth.py). Placing never changes them
(a disagreeing placement is a 409); this does, validated like a placement and
audited with the caller's key and masked before/after values
(services/contacts.py, shared with `starter.py borrower-contact`).

`GET /borrowers/{borrower_id}` (a `loans:read` key) shows one borrower: the
loans and their stages, the outstanding per currency, the contacts across
loans and the open tasks, contact details masked (services/borrower_view.py,
shared with `starter.py borrower`)."""

from __future__ import annotations

from typing import Annotated

import structlog
from fastapi import APIRouter, Depends, HTTPException
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field

from dunning.inputs import ID_PATTERN
from gateway.auth import AUTH_RESPONSES, Caller, require_scope
from gateway.deps import Gateway, gateway, temporal_errors
from services.borrower_view import borrower_view
from services.contacts import ContactError, UnknownBorrower, change_contact

log = structlog.get_logger(__name__)

router = APIRouter(tags=["borrowers"])


class ContactChangeBody(BaseModel):
    """The fields to change; a field left out stays as it is, `null` clears
    it (`time_zone: null`: the phone's zone again, else the loan policy's default). Checked as a placement's
    borrower block is, once merged with what the directory holds."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(max_length=200)] | None = None
    phone: Annotated[str, Field(max_length=64)] | None = None
    email: Annotated[str, Field(max_length=254)] | None = None
    push_token: Annotated[str, Field(max_length=512)] | None = None
    language: Annotated[str, Field(max_length=16)] | None = None
    time_zone: Annotated[str, Field(max_length=64)] | None = None


def caller_name(caller: Caller) -> str:
    """Who made the change, as the audit entry records it: the key's id and name, never the key."""
    return f"api_key:{caller.key_id} ({caller.name})"


@router.put(
    "/borrowers/{borrower_id}/contact",
    responses={**AUTH_RESPONSES, 404: {"description": "no such borrower"}},
)
def change_borrower_contact(
    body: ContactChangeBody,
    borrower_id: str = PathParam(..., pattern=ID_PATTERN),
    caller: Caller = Depends(require_scope("borrowers:write")),
    gw: Gateway = Depends(gateway),
) -> dict:
    """Change a borrower's contact details; the open loans use them from their
    next contact. 200 `{"borrower_id", "changed": [field names], "open_loans": [loan ids]}`."""
    # A plain def: FastAPI runs it in its thread pool, off the event loop.
    try:
        change = change_contact(gw.sessions(), borrower_id, body.model_dump(exclude_unset=True), by=caller_name(caller))
    except ContactError as error:
        raise RequestValidationError(
            [{"type": "value_error", "loc": ("body", field), "msg": message, "input": None} for field, message in error.problems]
        ) from None
    except UnknownBorrower:
        raise HTTPException(404, "no such borrower") from None
    log.info("borrower_contact_changed", borrower_id=borrower_id, fields=list(change.changed), key_id=caller.key_id)
    return change.as_dict()


@router.get(
    "/borrowers/{borrower_id}",
    responses={**AUTH_RESPONSES, 404: {"description": "no such borrower"}, 503: {"description": "Temporal is not reachable"}},
)
async def get_borrower(
    borrower_id: str = PathParam(..., pattern=ID_PATTERN),
    caller: Caller = Depends(require_scope("loans:read")),
    gw: Gateway = Depends(gateway),
) -> dict:
    """The borrower view (services/borrower_view.py, shared with `starter.py
    borrower`): the loans and their stages, the outstanding per currency, the
    contacts across loans and the open tasks; contact details masked. Without
    a `loans:read` key it is 401 whether or not the borrower exists."""
    try:
        with temporal_errors():
            view = await borrower_view(gw.sessions(), borrower_id, gw.temporal)
    except UnknownBorrower:
        raise HTTPException(404, "no such borrower") from None
    log.info("borrower_viewed", borrower_id=borrower_id, loans=len(view["loans"]), key_id=caller.key_id)
    return view
