"""Lob's signed webhook: what happened to a mailed letter, fed back to its
outbox row and to the loan (`contact_outcome`), the way the SendGrid route
feeds back an e-mail's delivery results.

Lob signs each delivery: `Lob-Signature` is the hex HMAC-SHA256, keyed with
the webhook's secret (LOB_WEBHOOK_SECRET), of `<Lob-Signature-Timestamp>.<raw
body>`. A request without both headers, with a signature that does not
match, with no secret configured, or signed outside
DUNNING_LOB_WEBHOOK_MAX_AGE_SECONDS of now (a replay) is refused with a 403,
before the body is parsed. Each event (`evt_...`) is acted on once.

The event names the letter's outbox row by the metadata the letter was
created with (`body.metadata.dunning_key`, channels/lob_letter.py): ids
only, no address.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from datetime import datetime, timezone

import structlog
from fastapi import APIRouter, Depends, HTTPException, Request

from db import outbox
from gateway.bodies import parse_json, storable
from gateway.deps import Gateway, Seen, gateway
from gateway.openapi import header, json_body
from runtime.settings import secret_value

log = structlog.get_logger(__name__)

router = APIRouter(tags=["webhooks"])

KEY_METADATA = "dunning_key"  # channels/lob_letter.py KEY_METADATA (the gateway imports no channel)

# What a letter event says to the loan (`contact_outcome`), and why only these:
#
# - `letter.returned_to_sender`: USPS brought it back as undeliverable. The
#   notice did not reach the consumer: `undelivered`, so the validation
#   notice is not provided by it (dunning/notice.py) and the next channel is
#   tried, and it does not start the bureau wait (a message "not reported
#   undeliverable", 1006.30(a)(1)).
# - `letter.delivered`: USPS's own "Delivered" scan of the piece, the
#   carrier reporting it at the address, as a mail server's acceptance is
#   for an e-mail: `delivered`.
# - `letter.rejected`, `letter.failed`, `letter.deleted`: Lob refused it,
#   could not render it, or it was cancelled before printing: it will never
#   be mailed, so it `failed`.
#
# `letter.mailed`, `letter.in_transit`, `letter.in_local_area`,
# `letter.processed_for_delivery`, `letter.re-routed` are NOT `delivered`:
# they are scans of a piece still on its way. Nothing needs them to be: the
# rule counts a letter as provided when it is sent by first-class mail
# (1006.42(a): mailing is a method reasonably expected to provide actual
# notice), which the outbox already knows from Lob taking the letter. They
# (and `letter.created`, `letter.rendered_*`) only confirm that Lob has the
# letter: a row a crashed send left in doubt becomes `sent`.
LOB_OUTCOMES = {
    "letter.returned_to_sender": "undelivered",
    "letter.delivered": "delivered",
    "letter.rejected": "failed",
    "letter.failed": "failed",
    "letter.deleted": "failed",
}
# Lob's events that say the letter will not, or did not, reach the consumer:
# the outbox keeps the report (a `sent` row stays `sent`, with the report as its error).
LOB_FAILED = {"letter.returned_to_sender", "letter.rejected", "letter.failed", "letter.deleted"}
# Any other event of a letter proves Lob has it.
LOB_HAS_IT = {
    "letter.created", "letter.rendered_pdf", "letter.rendered_thumbnails", "letter.mailed", "letter.in_transit",
    "letter.in_local_area", "letter.processed_for_delivery", "letter.re-routed", "letter.international_exit",
    "letter.delivered",
}

# The gateway's clock for the timestamp window (a test sets its own "now").
clock: Callable[[], float] = time.time


def signed_at(timestamp: str) -> float | None:
    """The signing moment in unix seconds. Lob's timestamp is read as
    milliseconds when it is one (13 digits now; seconds have 10 until the
    year 5138), as seconds otherwise; None when it is not a number."""
    try:
        value = int(timestamp.strip())
    except ValueError:
        return None
    if not 0 < value < 2**53:
        return None
    return value / 1000 if value >= 10**11 else float(value)


def signature_for(secret: str, timestamp: str, body: bytes) -> str:
    """Lob's signature of `body` signed at `timestamp`: hex HMAC-SHA256 of `timestamp.body`."""
    return hmac.new(secret.encode("utf-8"), timestamp.encode("utf-8") + b"." + body, hashlib.sha256).hexdigest()


def verified(gw: Gateway, request: Request, body: bytes) -> None:
    """403 unless Lob signed `body` recently with the webhook secret."""
    secret = secret_value(gw.core.lob_webhook_secret)
    signature = request.headers.get("Lob-Signature")
    timestamp = request.headers.get("Lob-Signature-Timestamp")
    if not (secret and signature and timestamp):
        raise HTTPException(403, "missing or unverifiable Lob webhook signature")
    at = signed_at(timestamp)
    if at is None or abs(clock() - at) > gw.core.lob_webhook_max_age_seconds:
        # Checked before the signature: an old signed body replayed is refused whatever it says.
        log.warning("lob_timestamp_refused")
        raise HTTPException(403, "stale Lob webhook timestamp: outside the replay window")
    if not hmac.compare_digest(signature.strip().lower().encode(), signature_for(secret, timestamp, body).encode()):
        log.warning("lob_signature_refused")
        raise HTTPException(403, "Lob webhook signature does not match")


def _event(event: dict) -> tuple[str, str, str, str] | None:
    """(event id, event type, outbox key, letter id) of a letter event that
    names a row the database could hold; None for anything else."""
    event_id = event.get("id")
    event_type = event.get("event_type")
    kind = event_type.get("id") if isinstance(event_type, dict) else event_type
    body = event.get("body")
    metadata = body.get("metadata") if isinstance(body, dict) else None
    key = metadata.get(KEY_METADATA) if isinstance(metadata, dict) else None
    letter_id = body.get("id") if isinstance(body, dict) else None
    letter_id = letter_id if isinstance(letter_id, str) else (event.get("reference_id") or "")
    if not all(isinstance(v, str) and v for v in (event_id, kind, key)) or not isinstance(letter_id, str):
        return None
    if not kind.startswith("letter.") or not all(storable(v) for v in (event_id, kind, key, letter_id)):
        return None  # not a letter's, or NUL / a lone surrogate: no outbox row has such a key
    return event_id, kind, key, letter_id


def record_event(gw: Gateway, kind: str, key: str, letter_id: str) -> str | None:
    """The event's result on its outbox row; the row's workflow id, or None
    when no letter row has the key."""
    with gw.sessions().begin() as db:
        row = outbox.find(db, key)
        if row is None or row.channel != "letter":
            return None
        outbox.note_provider_message(row, "lob", letter_id or None)
        if kind in LOB_FAILED:
            outbox.record_provider_failure(row, f"lob {kind}")
        elif kind in LOB_HAS_IT:
            outbox.confirm_sent(db, row, datetime.now(timezone.utc))
        return row.workflow_id


@router.post(
    "/webhooks/lob/events",
    responses={403: {"description": "missing, forged or stale Lob-Signature"}},
    openapi_extra={
        "parameters": [header("Lob-Signature"), header("Lob-Signature-Timestamp")],
        **json_body({"type": "object", "properties": {"id": {"type": "string"}, "event_type": {"type": "object"},
                                                      "body": {"type": "object"}}}),
    },
)
async def lob_events(request: Request, gw: Gateway = Depends(gateway)) -> dict:
    """Lob's signed webhook: a letter's returns and failures to its outbox row and its loan."""
    body = await request.body()
    verified(gw, request, body)
    event = parse_json(body, dict, "a JSON object (one Lob event)", "model_attributes_type")
    named = _event(event)
    if named is None:
        return {"processed": 0}
    event_id, kind, key, letter_id = named
    seen = Seen(gw.sessions, "lob")
    if not seen.add(event_id):
        return {"processed": 0}  # acted on already: a replay, or Lob's own retry
    try:
        workflow_id = record_event(gw, kind, key, letter_id)
        if workflow_id is None:
            return {"processed": 0}
        await gw.tell_contact_outcome(workflow_id, key, LOB_OUTCOMES.get(kind))
    except HTTPException:
        seen.discard(event_id)  # Temporal unreachable: Lob's retry may try again
        raise
    log.info("lob_event", key=key[:255], kind=kind, letter_id=letter_id[:64])
    return {"processed": 1}
