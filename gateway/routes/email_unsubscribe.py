"""One-click e-mail unsubscribe (RFC 8058): every e-mail carries a signed URL
on this route (channels/unsubscribe.py), in its `List-Unsubscribe` header and
in its footer (`{{ unsubscribe_url }}`).

- `POST /webhooks/email/unsubscribe?key=&sig=`: what a mail client's
  "unsubscribe" button sends (body `List-Unsubscribe=One-Click`, not needed
  here). The signature must be the one made for that outbox key with the
  gateway's signing secret (403 otherwise: a forged one, or another key's);
  the key's outbox row names the loan's workflow (a message merged for
  several of the borrower's loans, each of theirs), which gets `opt_out`
  `{"channel": "email"}` once: a key already acted on is answered as a
  duplicate and signals nothing (`Seen`, prefix `unsubscribe`).
- `GET` on the same URL (the footer's link, or a scanner following it) changes
  nothing: it shows a page whose button makes that POST, as RFC 8058 asks
  (a GET must never unsubscribe).
"""

from __future__ import annotations

import html
import secrets

import structlog
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse

from channels.unsubscribe import UNSUBSCRIBE_PATH, unsubscribe_signature_ok
from db import borrower_messages, outbox
from dunning import contract
from gateway.bodies import storable
from gateway.deps import Gateway, Seen, gateway

log = structlog.get_logger(__name__)

router = APIRouter(tags=["webhooks"])

OPT_OUT_EMAIL = {"channel": "email"}


def _signed_key(gw: Gateway, request: Request) -> str:
    """The outbox key the request's signature is good for; 403 otherwise."""
    key, signature = request.query_params.get("key"), request.query_params.get("sig")
    if not key or not signature or not storable(key) or not storable(signature):
        raise HTTPException(403, "forbidden")
    if not unsubscribe_signature_ok(gw.core.signing_secret(), key, signature):
        log.warning("email_unsubscribe_signature_refused")
        raise HTTPException(403, "forbidden")
    return key


def _headers() -> dict[str, str]:
    # The URL carries the signature: never sent on as a Referer, never cached.
    return {"Referrer-Policy": "no-referrer", "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
            "X-Frame-Options": "DENY"}


def _wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Unsubscribe / 退订</title><style nonce="{nonce}">body{{font-family:Arial,sans-serif;max-width:32em;margin:2em auto;padding:0 1em}}</style></head>
<body>{body}</body></html>
"""


def _page(body: str, status: int = 200) -> HTMLResponse:
    nonce = secrets.token_urlsafe(16)
    headers = _headers() | {"Content-Security-Policy": (
        f"default-src 'none'; style-src 'nonce-{nonce}'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")}
    return HTMLResponse(_PAGE.format(nonce=nonce, body=body), status_code=status, headers=headers)


@router.get(UNSUBSCRIBE_PATH, response_class=HTMLResponse, responses={403: {"description": "a forged or altered link"}})
async def email_unsubscribe_page(request: Request, gw: Gateway = Depends(gateway)) -> HTMLResponse:
    """The footer link's page: a button that makes the one-click POST. Changes nothing by itself."""
    _signed_key(gw, request)
    action = html.escape(f"{UNSUBSCRIBE_PATH}?{request.url.query}", quote=True)
    return _page(
        f'<form method="post" action="{action}">'
        '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
        "<p>Stop e-mails about this loan? / 不再接收此借款的邮件？</p>"
        '<button type="submit">Unsubscribe / 退订</button></form>'
    )


@router.post(UNSUBSCRIBE_PATH, responses={403: {"description": "a forged signature, or one made for another key"},
                                          404: {"description": "no e-mail has this key"}})
async def email_unsubscribe(request: Request, gw: Gateway = Depends(gateway)):
    """One-click unsubscribe (RFC 8058): `opt_out` email for the loan whose
    e-mail carried the link (for each loan, when one e-mail covered several of
    the borrower's loans), once."""
    key = _signed_key(gw, request)
    with gw.sessions().begin() as db:
        row = outbox.find(db, key)
        workflow_ids = []
        if row is not None and row.channel == "email":
            merged = borrower_messages.parts_of_message(db, key)
            workflow_ids = [part.workflow_id for part in merged] or [row.workflow_id]
    if not workflow_ids:
        raise HTTPException(404, "no such message")
    seen = Seen(gw.sessions, "unsubscribe")
    opted_out = False
    if seen.add(key):
        try:
            for workflow_id in workflow_ids:
                delivered = await gw.signal(workflow_id, contract.SIGNAL_OPT_OUT, dict(OPT_OUT_EMAIL))
                opted_out = opted_out or delivered
                log.info("email_unsubscribe", key=key[:255], workflow_id=workflow_id, delivered=delivered)
        except BaseException:
            seen.discard(key)  # not acted on: the mail client's retry may try again
            raise
        duplicate = False
    else:
        duplicate = True
    if _wants_html(request):
        return _page("<p>You will receive no more e-mails about this loan. / 您将不再收到此借款的邮件。</p>")
    return {"opted_out": opted_out, "duplicate": duplicate}
