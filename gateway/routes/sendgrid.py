"""SendGrid's signed event webhook: delivery results to the outbox,
engagement to the loan's contacts, unsubscribes and spam reports to `opt_out`.

Replays are refused twice over: the signed timestamp must lie within
DUNNING_SENDGRID_MAX_AGE_SECONDS of now (SendGrid signs each delivery, its
retries too, when it sends it), and each event is acted on once, by its
`sg_event_id` or, for an event without one, by the SHA-256 of its content."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from datetime import datetime, timezone

import structlog
from fastapi import APIRouter, Depends, HTTPException, Request

from db import borrower_messages, outbox
from dunning import contract
from gateway.bodies import parse_json, storable
from gateway.deps import Gateway, gateway
from gateway.openapi import header, json_body

log = structlog.get_logger(__name__)

router = APIRouter(tags=["webhooks"])

# SendGrid events the loan's status shows on the e-mail contact.
SENDGRID_OUTCOMES = {"delivered": "delivered", "bounce": "bounced", "dropped": "bounced", "open": "opened", "click": "clicked"}
SENDGRID_OPT_OUT = {"unsubscribe", "spamreport", "group_unsubscribe"}
SENDGRID_FAILED = {"bounce", "dropped"}

# The gateway's clock for the timestamp window (a test sets its own "now").
clock: Callable[[], float] = time.time


def verified(gw: Gateway, request: Request, body: bytes) -> None:
    """403 unless the event webhook signature proves SendGrid sent `body`."""
    signature = request.headers.get("X-Twilio-Email-Event-Webhook-Signature")
    timestamp = request.headers.get("X-Twilio-Email-Event-Webhook-Timestamp")
    if not (gw.edge.sendgrid_webhook_public_key and signature and timestamp):
        raise HTTPException(403, "missing or unverifiable event webhook signature")
    if not fresh(timestamp, gw.edge.sendgrid_max_age_seconds, clock()):
        # Checked before the signature: an old signed body replayed is refused
        # whatever it says, and costs no ECDSA verification.
        log.warning("sendgrid_timestamp_refused")
        raise HTTPException(403, "stale event webhook timestamp: outside the replay window")
    from sendgrid.helpers.eventwebhook import EventWebhook

    try:
        verifier = EventWebhook()
        key = verifier.convert_public_key_to_ecdsa(gw.edge.sendgrid_webhook_public_key)
        good = verifier.verify_signature(body.decode("utf-8"), signature, timestamp, key)
    except Exception:  # bad base64, bad DER, not UTF-8, bad key: not verified
        good = False
    if not good:
        log.warning("sendgrid_signature_refused")
        raise HTTPException(403, "event webhook signature does not match")


def fresh(timestamp: str, max_age_seconds: int, now: float) -> bool:
    """The signed timestamp (unix seconds) is within `max_age_seconds` of `now`, either way."""
    try:
        signed_at = int(timestamp.strip())
    except ValueError:
        return False
    return -(2**53) < signed_at < 2**53 and abs(now - signed_at) <= max_age_seconds


def delivery_key(event: dict) -> str:
    """What makes the event once-only: its `sg_event_id`, else the SHA-256 of
    its content (sorted keys), so a replayed event without an id matches."""
    event_id = event.get("sg_event_id")
    if isinstance(event_id, str) and event_id:
        return event_id
    content = json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256/" + hashlib.sha256(content.encode("utf-8", "surrogatepass")).hexdigest()


def _outbox_key(event: object) -> tuple[str, str] | None:
    """(event kind, outbox key) of an event that names a row the database could hold."""
    if not isinstance(event, dict):
        return None
    kind, key = event.get("event"), event.get("dunning_key")
    if not isinstance(kind, str) or not isinstance(key, str) or not key:
        return None
    if not all(storable(v) for v in (kind, key, *(event.get(f) for f in ("sg_event_id", "sg_message_id", "status"))) if isinstance(v, str)):
        return None  # NUL or a lone surrogate: no outbox row has such a key, and no database could store it
    return kind, key


def record_event(gw: Gateway, kind: str, key: str, event: dict) -> str | None:
    """The event's result on its outbox row; the row's workflow id, or None when no row has the key."""
    with gw.sessions().begin() as db:
        row = outbox.find(db, key)
        if row is None:
            return None
        message_id = event.get("sg_message_id")
        outbox.note_provider_message(row, "sendgrid", message_id if isinstance(message_id, str) else None)
        if kind == "delivered":
            outbox.confirm_sent(db, row, datetime.now(timezone.utc))
        elif kind in SENDGRID_FAILED:
            code = event.get("status") if isinstance(event.get("status"), str) else ""
            outbox.record_provider_failure(row, f"sendgrid {kind}" + (f" ({code[:16]})" if code else ""))
        return row.workflow_id


@router.post(
    "/webhooks/sendgrid/events",
    responses={403: {"description": "missing or forged event webhook signature"}},
    openapi_extra={
        "parameters": [header("X-Twilio-Email-Event-Webhook-Signature"), header("X-Twilio-Email-Event-Webhook-Timestamp")],
        **json_body({"type": "array", "items": {"type": "object"}}),
    },
)
async def sendgrid_events(request: Request, gw: Gateway = Depends(gateway)) -> dict:
    """SendGrid's signed event webhook: delivery results to the outbox, unsubscribes to `opt_out` email."""
    body = await request.body()
    verified(gw, request, body)
    events = parse_json(body, list, "a JSON array of events", "list_type")
    processed = opted_out = 0
    for event in events:
        named = _outbox_key(event)
        if named is None:
            continue
        kind, key = named
        if not gw.events_seen.add(delivery_key(event)):
            continue  # acted on already: a replay, or SendGrid's own retry
        workflow_id = record_event(gw, kind, key, event)
        if workflow_id is None:
            continue
        processed += 1
        await gw.tell_contact_outcome(workflow_id, key, SENDGRID_OUTCOMES.get(kind))
        if kind in SENDGRID_OPT_OUT:
            # An e-mail merged for several of the borrower's loans: each of them (issue 17, item 1).
            with gw.sessions()() as db:
                targets = [part.workflow_id for part in borrower_messages.parts_of_message(db, key)] or [workflow_id]
            for target in targets:
                await gw.signal(target, contract.SIGNAL_OPT_OUT, {"channel": "email"})
            opted_out += 1
        log.info("sendgrid_event", key=key[:255], kind=kind)
    return {"processed": processed, "opted_out": opted_out}
