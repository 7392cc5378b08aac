"""The borrower's one-click repayment page (an opaque pay-link token, found
by its hash: 410 when unknown, expired or revoked, all alike) with the plan
offers of the loan's policy, choosing one, and the "this is wrong" form
that raises a dispute (both CSRF-checked forms).

Every page here says: no Referer (the token is in the URL), no caching, no
framing, no script (a CSP with one nonce for the page's own style), no
sniffing. The buttons to the lender's payment page carry a signed,
short-lived hand-off (gateway/handoff.py), not the loan id.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timezone
from pathlib import Path

import structlog
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from activities.pay_link import PayLinkInvalid, resolve_pay_token
from dunning.pay_options import loan_today, nothing_to_pay, plan_offers, running_plan
from gateway import pay_csrf
from gateway.deps import Gateway, gateway
from gateway.handoff import handoff_secret, handoff_url, make_handoff
from gateway.openapi import form_body
from gateway.plans import propose_offer
from runtime.settings import secret_value
from services import inbound
from services.inbound import DISPUTE_CATEGORIES, NOTE_MAX_CHARS, InboundError, LoanPort
from services.visits import UPDATE_TIMEOUT_SECONDS, NoSuchLoan, UpdateRejected, UpdateTimedOut

log = structlog.get_logger(__name__)

router = APIRouter(tags=["borrowers"])

PAGES = Environment(
    loader=FileSystemLoader(Path(__file__).resolve().parents[1] / "templates"), autoescape=select_autoescape(["html"])
)


def security_headers(nonce: str) -> dict[str, str]:
    """The headers of every pay-page answer (issue 14, finding 5)."""
    return {
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
        "Pragma": "no-cache",
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Content-Security-Policy": (
            f"default-src 'none'; style-src 'nonce-{nonce}'; form-action 'self'; "
            "base-uri 'none'; frame-ancestors 'none'"
        ),
    }


def page(name: str, status: int, **values) -> HTMLResponse:
    nonce = secrets.token_urlsafe(16)
    body = PAGES.get_template(name).render(csp_nonce=nonce, **values)
    return HTMLResponse(body, status_code=status, headers=security_headers(nonce))


def refused_link() -> HTMLResponse:
    """Unknown, expired and revoked tokens get the same answer: it tells
    nothing of whether a token ever existed."""
    return page("link_refused.html", 410, expired=True)


def pay_token_loan(gw: Gateway, token: str) -> tuple[str, str] | HTMLResponse:
    """(loan id, token hash) of a live pay-link token, or the refusal page (410)."""
    try:
        with gw.sessions()() as db:
            row = resolve_pay_token(db, token, datetime.now(timezone.utc))
            return row.loan_id, row.token_hash
    except PayLinkInvalid:
        return refused_link()


def lender_links(gw: Gateway, loan_id: str, status: dict) -> dict[str, str]:
    """The pay page's two ways to the lender's page (pay, ask for a plan), each
    a signed hand-off. A dispute stays here: the page's own form (issue 17)."""
    secret = handoff_secret(secret_value(gw.edge.lender_handoff_secret), gw.core.signing_secret())
    amount, currency = str(status.get("outstanding") or ""), str(status.get("currency") or "")
    return {
        f"{action}_url": handoff_url(gw.edge.lender_pay_url, make_handoff(secret, loan_id, amount, currency, action))
        for action in ("pay", "plan")
    }


# The "this is wrong" form's choices, as the page words them
# (services/inbound.py DISPUTE_CATEGORIES: the codes the dispute carries).
DISPUTE_LABELS = {
    "amount_wrong": "The amount is wrong",
    "already_paid": "I have already paid",
    "not_my_loan": "This is not my loan",
    "identity_theft": "Someone took this loan in my name",
    "other": "Something else",
}


@router.get("/pay/{token}", response_class=HTMLResponse)
async def pay_page(token: str, request: Request, gw: Gateway = Depends(gateway)) -> HTMLResponse:
    """The one-click repayment page of a pay link (410 unknown, expired or
    revoked), with the plan offers of the loan's policy."""
    found = pay_token_loan(gw, token)
    if isinstance(found, HTMLResponse):
        return found
    loan_id, digest = found
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
    cookie = pay_csrf.browser_cookie(request) or pay_csrf.new_cookie()
    answer = page(
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
        dispute_action=f"{token}/dispute",
        dispute_reasons=DISPUTE_LABELS,
        disputed=bool(status.get("disputed")),
        note_max=NOTE_MAX_CHARS,
        csrf_field=pay_csrf.FIELD,
        csrf=pay_csrf.form_proof(gw.core.signing_secret(), cookie, digest),
        lender_name=gw.core.lender_name,
        **lender_links(gw, loan_id, status),
    )
    pay_csrf.set_cookie(answer, request, cookie)
    return answer


@router.post(
    "/pay/{token}/plan",
    response_class=HTMLResponse,
    responses={
        403: {"description": "a cross-site post, or a form without this page's CSRF field and cookie"},
        409: {"description": "the workflow rejected the plan (the page says which rule)"},
        410: {"description": "unknown, expired or revoked pay-link token"},
        422: {"description": "no such offer"},
    },
    openapi_extra=form_body(
        {"offer": "the offer's number on the page (0 for the first)", "csrf": "the page's hidden CSRF field"},
        ["offer", "csrf"],
    ),
)
async def pay_plan(token: str, request: Request, gw: Gateway = Depends(gateway)) -> HTMLResponse:
    """The borrower chose a plan offer on the pay page: `propose_plan` with its
    schedule from today; the accepted schedule, or the rejection (409).
    Another site's post, or a form this browser was not shown for this link,
    is refused (403) before anything is read or proposed."""
    found = pay_token_loan(gw, token)
    if isinstance(found, HTMLResponse):
        return found
    loan_id, digest = found
    if pay_csrf.cross_site(request, (gw.core.pay_link_base_url, gw.edge.public_base_url)):
        log.info("pay_page_plan_cross_site", loan_id=loan_id)
        return page("link_refused.html", 403, form_refused=True)

    def result(status: int, **values) -> HTMLResponse:
        return page("plan_result.html", status, lender_name=gw.core.lender_name, loan_id=loan_id, back=f"../{token}", **values)

    try:
        form = await request.form()
        raw, proof = form.get("offer"), form.get(pay_csrf.FIELD)
    except Exception:  # not a form (a multipart body it cannot read, ...)
        raw = proof = None
    if not pay_csrf.form_is_ours(request, proof, gw.core.signing_secret(), digest):
        log.info("pay_page_plan_csrf_refused", loan_id=loan_id)
        return page("link_refused.html", 403, form_refused=True)
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


@router.post(
    "/pay/{token}/dispute",
    response_class=HTMLResponse,
    responses={
        403: {"description": "a cross-site post, or a form without this page's CSRF field and cookie"},
        409: {"description": "the loan has nothing left to pay"},
        410: {"description": "unknown, expired or revoked pay-link token"},
        422: {"description": "no such reason, or a note over 500 characters"},
    },
    openapi_extra=form_body(
        {"reason": f"one of {', '.join(DISPUTE_CATEGORIES)}", "note": "optional, at most 500 characters",
         "csrf": "the page's hidden CSRF field"},
        ["reason", "csrf"],
    ),
)
async def pay_dispute(token: str, request: Request, gw: Gateway = Depends(gateway)) -> HTMLResponse:
    """The borrower says the loan is wrong: the request is stored (the note in
    the database only), then `dispute` `{"reason": "pay_page:<reason>"}` goes
    to the loan unless a dispute is open already; the workflow opens its
    dispute_verification task (services/inbound.py). Refused like the plan
    form: 403 another site's post or a form this browser was not shown."""
    found = pay_token_loan(gw, token)
    if isinstance(found, HTMLResponse):
        return found
    loan_id, digest = found
    if pay_csrf.cross_site(request, (gw.core.pay_link_base_url, gw.edge.public_base_url)):
        log.info("pay_page_dispute_cross_site", loan_id=loan_id)
        return page("link_refused.html", 403, form_refused=True)
    try:
        form = await request.form()
        reason, note, proof = form.get("reason"), form.get("note"), form.get(pay_csrf.FIELD)
    except Exception:  # not a form this page sends
        reason = note = proof = None
    if not pay_csrf.form_is_ours(request, proof, gw.core.signing_secret(), digest):
        log.info("pay_page_dispute_csrf_refused", loan_id=loan_id)
        return page("link_refused.html", 403, form_refused=True)

    def result(status: int, **values) -> HTMLResponse:
        return page("dispute_result.html", status, lender_name=gw.core.lender_name, loan_id=loan_id, back=f"../{token}",
                    **values)

    try:
        done = await inbound.dispute_from_pay_page(gw.sessions(), LoanPort(gw.signal, gw.loan_status), loan_id, reason,
                                                   note if note != "" else None)
    except InboundError as error:
        return result(422, problem=error.field)
    except inbound.NoSuchLoan:
        return page("link_refused.html", 404, missing=True)
    except HTTPException:  # Temporal unreachable before anything was stored
        return page("link_refused.html", 503, unavailable=True)
    return result(409 if done.outcome == "closed" else 200, outcome=done.outcome)
