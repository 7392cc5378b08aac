"""POST /payments: the payment service's signed notifications, signalled to
the loan's workflow as `repayment`, once per payment_id. POST
/payments/reversals (issue 18, item 3): a payment that came back, signed the
same way, as `payment_reversed` (services/reversals.py: a loan closed
`repaid` reopens)."""

from __future__ import annotations

import structlog
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from sqlalchemy import select

from db.models import Payment
from dunning import contract
from dunning.inputs import Currency, Identifier, Instant, PaymentReversedSignal
from dunning.money import parse_amount
from gateway.bodies import invalid, parse_model
from gateway.deps import Gateway, gateway, temporal_errors
from gateway.openapi import header, json_body
from gateway.payment_signature import check_payment_signature
from services import reversals

log = structlog.get_logger(__name__)

router = APIRouter(tags=["payments"])
UNAUTHORIZED = "unauthorized"


class PaymentNotification(BaseModel):
    """POST /payments: what the payment service reports (becomes the `repayment` signal)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    loan_id: Identifier
    payment_id: Identifier
    currency: Currency
    amount: str
    paid_at: Instant | None = None


@router.post(
    "/payments",
    status_code=202,
    responses={401: {"description": "missing, forged or stale X-Dunning-Signature"}},
    openapi_extra={
        **json_body(PaymentNotification.model_json_schema()),
        "parameters": [
            header("X-Dunning-Signature", required=True,
                   description='t=<unix time>,v1=<hex HMAC-SHA256 of f"{t}.{raw body}">'),
        ],
    },
)
async def payment(request: Request, gw: Gateway = Depends(gateway)) -> JSONResponse:
    """A payment notification: signals `repayment` to dunning-<loan_id>, once per payment_id."""
    body = await _signed_body(request, gw)
    notice, data = parse_model(body, PaymentNotification)
    try:
        parse_amount(notice.amount, notice.currency)
    except ValueError as error:
        raise invalid("amount", str(error)) from None

    workflow_id = contract.workflow_id_for(notice.loan_id)
    answer = {"loan_id": notice.loan_id, "payment_id": notice.payment_id, "workflow_id": workflow_id}
    key = f"{notice.loan_id}/{notice.payment_id}"
    with gw.sessions()() as db:
        recorded = db.scalar(
            select(Payment.id).where(
                Payment.loan_id == notice.loan_id, Payment.payment_id == notice.payment_id, Payment.applied.is_(True)
            )
        )
    if recorded is not None or not gw.payments_seen.add(key):
        log.info("payment_duplicate", loan_id=notice.loan_id, payment_id=notice.payment_id)
        return JSONResponse({**answer, "signaled": False, "duplicate": True}, status_code=202)
    payload = {"payment_id": notice.payment_id, "amount": notice.amount, "currency": notice.currency}
    if notice.paid_at is not None:
        payload["paid_at"] = data["paid_at"]  # as the payment service wrote it
    try:
        delivered = await gw.signal(workflow_id, contract.SIGNAL_REPAYMENT, payload)
    except BaseException:
        gw.payments_seen.discard(key)  # not delivered: a retry may try again
        raise
    if not delivered:
        gw.payments_seen.discard(key)
        raise HTTPException(404, f"no open workflow {workflow_id}")
    return JSONResponse({**answer, "signaled": True, "duplicate": False}, status_code=202)


async def _signed_body(request: Request, gw: Gateway) -> bytes:
    """The raw body once its X-Dunning-Signature is good; else a generic 401."""
    signature = request.headers.get("X-Dunning-Signature")
    if not signature:  # refused before the body is read: an unsigned upload costs nothing
        log.warning("payment_signature_refused", reason="missing X-Dunning-Signature")
        raise HTTPException(401, UNAUTHORIZED)
    body = await request.body()
    problem = check_payment_signature(gw.edge.payments_secret, signature, body, gw.edge.payments_max_age_seconds)
    if problem is not None:
        # The reason (even "no secret is configured") goes to the log only:
        # the sender learns nothing about the configuration.
        log.warning("payment_signature_refused", reason=problem)
        raise HTTPException(401, UNAUTHORIZED)
    return body


class ReversalNotification(PaymentReversedSignal):
    """POST /payments/reversals: a payment applied to a loan came back (becomes `payment_reversed`)."""

    loan_id: Identifier


# What each answer of services/reversals.py is over HTTP.
_REVERSAL_STATUS = {
    reversals.SIGNALED: 202, reversals.REOPENED_LOAN: 202, reversals.DUPLICATE: 200,
    reversals.UNKNOWN_LOAN: 404, reversals.UNKNOWN_PAYMENT: 404, reversals.NO_WORKFLOW: 404,
    reversals.NOT_REVERSIBLE: 409, reversals.NOT_REOPENABLE: 409, reversals.BUSY: 409,
}


@router.post(
    "/payments/reversals",
    status_code=202,
    responses={
        200: {"description": "reversed already: nothing changed (`duplicate`)"},
        401: {"description": "missing, forged or stale X-Dunning-Signature"},
        404: {"description": "no such loan, no such payment applied to it, or no open workflow"},
        409: {"description": "cannot be reversed exactly, a loan closed other than repaid, or closing now (Retry-After)"},
    },
    openapi_extra={
        **json_body(ReversalNotification.model_json_schema()),
        "parameters": [
            header("X-Dunning-Signature", required=True,
                   description='t=<unix time>,v1=<hex HMAC-SHA256 of f"{t}.{raw body}">'),
        ],
    },
)
async def payment_reversal(request: Request, gw: Gateway = Depends(gateway)) -> JSONResponse:
    """A payment reversed: `payment_reversed` to dunning-<loan_id>, or the loan
    reopened when it closed repaid; once per payment (services/reversals.py)."""
    body = await _signed_body(request, gw)
    notice, data = parse_model(body, ReversalNotification)
    reversal = reversals.Reversal(
        loan_id=notice.loan_id, payment_id=notice.payment_id, reason=notice.reason,
        reversed_at=data.get("reversed_at") if notice.reversed_at is not None else None,  # as the service wrote it
    )
    try:
        with temporal_errors():
            answer = await reversals.reverse_payment(gw.temporal, gw.sessions(), gw.core.task_queue, reversal)
    except reversals.BadReversal as error:
        field_name = str(error).split(":", 1)[0]
        raise invalid(field_name, str(error)) from None
    log.info("payment_reversal", loan_id=notice.loan_id, payment_id=notice.payment_id, result=answer.result)
    headers = {"Retry-After": "5"} if answer.result == reversals.BUSY else None
    return JSONResponse(answer.as_dict(), status_code=_REVERSAL_STATUS[answer.result], headers=headers)
