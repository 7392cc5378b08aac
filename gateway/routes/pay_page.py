"""The borrower's one-click repayment page (a signed pay link: 403 forged,
410 expired) with the plan offers of the loan's policy, and choosing one."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlencode

import structlog
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from activities.pay_link import PayLinkInvalid, read_pay_token
from dunning.pay_options import loan_today, nothing_to_pay, plan_offers, running_plan
from gateway.deps import Gateway, gateway
from gateway.openapi import form_body
from gateway.plans import propose_offer
from services.visits import UPDATE_TIMEOUT_SECONDS, NoSuchLoan, UpdateRejected, UpdateTimedOut

log = structlog.get_logger(__name__)

router = APIRouter(tags=["borrowers"])

PAGES = Environment(
    loader=FileSystemLoader(Path(__file__).resolve().parents[1] / "templates"), autoescape=select_autoescape(["html"])
)


def page(name: str, status: int, **values) -> HTMLResponse:
    return HTMLResponse(PAGES.get_template(name).render(**values), status_code=status)


def pay_token_loan(gw: Gateway, token: str) -> str | HTMLResponse:
    """The loan id of a pay-link token, or the refusal page (403 forged, 410 expired)."""
    try:
        return read_pay_token(gw.core.signing_secret(), token, gw.core.pay_link_max_age_days * 86400)
    except PayLinkInvalid as error:
        expired = "expired" in str(error)
        return page("link_refused.html", 410 if expired else 403, expired=expired)


@router.get("/pay/{token}", response_class=HTMLResponse)
async def pay_page(token: str, gw: Gateway = Depends(gateway)) -> HTMLResponse:
    """The one-click repayment page of a signed pay link (403 forged, 410 expired),
    with the plan offers of the loan's policy."""
    loan_id = pay_token_loan(gw, token)
    if isinstance(loan_id, HTMLResponse):
        return loan_id
    try:
        status = await gw.loan_status(loan_id)
    except HTTPException as error:
        return page("link_refused.html", error.status_code, unavailable=True)
    if status is None:
        return page("link_refused.html", 404, missing=True)
    closed, plan = nothing_to_pay(status), running_plan(status)
    policy = None if closed or plan else gw.loan_policy(status)
    today = loan_today(status)
    offers = plan_offers(policy, status, today) if policy is not None and today is not None else []
    pay_url = gw.edge.lender_pay_url
    query = {"loan": loan_id}
    return page(
        "pay.html",
        200,
        loan_id=loan_id,
        outstanding=status.get("outstanding"),
        currency=status.get("currency"),
        days_past_due=status.get("days_past_due"),
        closed=closed,
        plan=plan,
        offers=offers,
        plan_action=f"{token}/plan",
        pay_url=f"{pay_url}?{urlencode(query)}",
        plan_url=f"{pay_url}?{urlencode({**query, 'action': 'plan'})}",
        dispute_url=f"{pay_url}?{urlencode({**query, 'action': 'dispute'})}",
        lender_name=gw.core.lender_name,
    )


@router.post(
    "/pay/{token}/plan",
    response_class=HTMLResponse,
    responses={
        403: {"description": "forged or altered pay-link token"},
        409: {"description": "the workflow rejected the plan (the page says which rule)"},
        410: {"description": "expired pay-link token"},
        422: {"description": "no such offer"},
    },
    openapi_extra=form_body({"offer": "the offer's number on the page (0 for the first)"}, ["offer"]),
)
async def pay_plan(token: str, request: Request, gw: Gateway = Depends(gateway)) -> HTMLResponse:
    """The borrower chose a plan offer on the pay page: `propose_plan` with its
    schedule from today; the accepted schedule, or the rejection (409)."""
    loan_id = pay_token_loan(gw, token)
    if isinstance(loan_id, HTMLResponse):
        return loan_id

    def result(status: int, **values) -> HTMLResponse:
        return page("plan_result.html", status, lender_name=gw.core.lender_name, loan_id=loan_id, back=f"../{token}", **values)

    try:
        form = await request.form()
        raw = form.get("offer")
    except Exception:  # not a form (a multipart body it cannot read, ...)
        raw = None
    index = int(raw) if isinstance(raw, str) and raw.strip().isdigit() and len(raw.strip()) <= 3 else None
    if index is None:
        return result(422, problem="offer: choose one of the plans on the page")
    try:
        answer, status = await propose_offer(gw, loan_id, index, UPDATE_TIMEOUT_SECONDS)
    except LookupError as error:
        if str(error).startswith("offer"):
            return result(422, problem=str(error))
        return page("link_refused.html", 404, missing=True)
    except NoSuchLoan:
        return page("link_refused.html", 404, missing=True)
    except UpdateRejected as error:
        log.info("pay_page_plan_rejected", loan_id=loan_id, offer=index, reason=error.message)
        return result(409, rejected=error.message)
    except (UpdateTimedOut, HTTPException):
        return page("link_refused.html", 503, unavailable=True)
    log.info("pay_page_plan_accepted", loan_id=loan_id, offer=index, plan_no=answer.get("plan_no"))
    return result(200, plan=answer, currency=status.get("currency", ""))
