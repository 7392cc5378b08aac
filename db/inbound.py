"""Inbound messages: the one owner of an `inbound_messages` row.

A borrower's own request (an inbound SMS, the pay page's "this is wrong"
form) is written once, by its message key, before anything is done about
it, and finished once with what was done:

    (a new row) -> received -> done | failed

`receive` answers None for a key already written: the same Twilio message
delivered again (a retry, a replay, a second gateway process) acts once,
whoever wins the race, because the key is unique in the database.

The row holds personal data (the sender's number, the text) like the
borrower directory does; what it keeps of what was done (`result`) is ids
and codes only, and so is everything the callers log (`mask` the number).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import InboundMessage

RECEIVED = "received"
DONE = "done"
FAILED = "failed"
CHANNELS = ("sms", "pay_page")

BODY_MAX_CHARS = 1600  # Twilio's longest message: ten segments
KEY_MAX_CHARS = 64
RESULT_MAX_CHARS = 500
SENDER_MAX_CHARS = 64


def message_key(provider_id: str) -> str:
    """The row's key for a provider's message id: the id itself (a Twilio
    MessageSid is 34 characters), or, for anything longer, its SHA-256, so
    two long ids that share a beginning stay two messages."""
    if 0 < len(provider_id) <= KEY_MAX_CHARS and provider_id.isprintable():
        return provider_id
    return "sha256:" + hashlib.sha256(provider_id.encode("utf-8", "surrogatepass")).hexdigest()[:KEY_MAX_CHARS - 7]


@dataclass(frozen=True)
class NewMessage:
    key: str  # message_key(...)
    channel: str
    sender: str | None = None
    borrower_id: str | None = None
    loan_ids: Sequence[str] = field(default_factory=tuple)
    body: str | None = None
    action: str | None = None  # what was asked (the keyword's action), known before anything is done
    language: str | None = None
    category: str | None = None


def find(db: Session, key: str) -> InboundMessage | None:
    return db.scalar(select(InboundMessage).where(InboundMessage.message_key == key))


def receive(db: Session, message: NewMessage, at: datetime | None = None) -> InboundMessage | None:
    """The message written (`received`), or None when its key was written
    before. A concurrent writer of the same key makes the caller's commit
    fail with an IntegrityError: the same answer, a duplicate."""
    if message.channel not in CHANNELS:
        raise ValueError(f"channel: one of {', '.join(CHANNELS)}")
    if find(db, message.key) is not None:
        return None
    row = InboundMessage(
        message_key=message.key[:KEY_MAX_CHARS], channel=message.channel,
        received_at=(at or datetime.now(timezone.utc)).astimezone(timezone.utc),
        sender=message.sender[:SENDER_MAX_CHARS] if message.sender else None,
        borrower_id=message.borrower_id, loan_ids=json.dumps(list(message.loan_ids)),
        body=message.body[:BODY_MAX_CHARS] if message.body else None, action=message.action,
        language=message.language, category=message.category, status=RECEIVED,
    )
    db.add(row)
    db.flush()
    return row


def finish(db: Session, message_id: int, *, status: str, result: str, task_id: int | None = None) -> InboundMessage:
    """What was done about the message: `done`, or `failed` (an agent task
    then holds it). Only a `received` row is finished; finishing it again
    changes nothing."""
    if status not in (DONE, FAILED):
        raise ValueError(f"status: {DONE} or {FAILED}")
    row = db.get(InboundMessage, message_id)
    if row is None:
        raise LookupError(f"no inbound message {message_id}")
    if row.status == RECEIVED:
        row.status, row.task_id = status, task_id
        row.result = result[:RESULT_MAX_CHARS]
        db.flush()
    return row


def loan_ids(row: InboundMessage) -> list[str]:
    return list(json.loads(row.loan_ids or "[]"))
