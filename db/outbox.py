"""The contacts outbox: the one owner of a Contact row's status.

Every message goes through one row, keyed by its contact key
(dunning/keys.py). The send activity claims the row, calls the provider and
finishes it; a provider's callback (the gateway) confirms a send left in doubt
or records a failure. Both write the statuses through this module, so the
rules of which status may follow which live in one place:

    pending -> sending -> sent | failed | unconfirmed
    unconfirmed -> sent | failed        (a provider's callback settles the doubt)
    sent -> failed                      (the provider could not deliver it)
    pending -> skipped_no_address | deferred;  deferred -> pending/sending

A final status never moves back to an in-flight one, and a failed message
never becomes sent: a late or repeated callback cannot resurrect it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from db import audit
from db.models import Contact
from dunning.keys import audit_key
from dunning.masking import mask

# Outbox states after which a message is never sent again for its key.
PENDING = "pending"
SENT = "sent"
FAILED = "failed"
SKIPPED = "skipped_no_address"
# The provider is being called: set (and committed) just before the request.
# A retry that finds a row still `sending` cannot know whether the provider
# took the message; for a provider without an idempotency key it does not
# send again but records the row `unconfirmed`, and the provider's status
# callback (the gateway) turns it into `sent` if the message went. A reminder
# lost to a crash is better than a reminder sent twice.
SENDING = "sending"
UNCONFIRMED = "unconfirmed"
# Not sent yet because a compliance cap said "not today"; not final: the same
# key is checked again (and sent, once the cap allows) by a later attempt.
DEFERRED = "deferred"

FINAL_STATUSES = frozenset({SENT, FAILED, SKIPPED, UNCONFIRMED})
IN_FLIGHT_STATUSES = (PENDING, SENDING, UNCONFIRMED)
# A row whose send a provider's callback may still confirm or fail.
IN_DOUBT = (PENDING, SENDING, UNCONFIRMED)


def find(db: Session, key: str) -> Contact | None:
    return db.scalar(select(Contact).where(Contact.key == key))


def scrub(text: str, recipient: str | None) -> str:
    """A provider's error without the address it may quote ("+86138... is not a
    valid number"), fit for an outcome, a log line or workflow history."""
    if recipient:
        text = text.replace(recipient, mask(recipient))
    return text[:500]


def note_provider_message(row: Contact, provider: str, message_id: str | None) -> None:
    """A send whose record was lost (a worker killed after the provider took
    it) gets the provider's message id back from the callback."""
    if message_id and not row.provider_message_id:
        row.provider_message_id = message_id[:128]
        row.provider = row.provider or provider


def confirm_sent(db: Session, row: Contact, at: datetime) -> bool:
    """The provider took the message: a row still in doubt becomes `sent` and
    gets its audit entry. True when the row moved."""
    if row.status not in IN_DOUBT:
        return False
    row.status, row.sent_at = SENT, row.sent_at or at
    db.flush()
    audit_contact(db, row, row.sent_at)
    return True


def record_provider_failure(row: Contact, error: str) -> bool:
    """The provider could not send or deliver it: the error is kept, and a row
    that is in doubt or sent becomes `failed`. True when the status moved."""
    row.error = error
    if row.status in (*IN_DOUBT, SENT):
        row.status = FAILED
        return True
    return False


def audit_contact(db: Session, row: Contact, at: datetime) -> None:
    """The contact's audit entry: ids and codes, and the SHA-256 of the
    message instead of the message (it holds the borrower's name). Appended
    once per status the row reaches, whoever moved it there."""
    has_body = bool(row.body_text or row.body_html)
    audit.append(
        db, "contact", row.loan_id, row.workflow_id,
        {
            "key": row.key,
            "stage": row.stage,
            "channel": row.channel,
            "template": row.template,
            "language": row.language,
            "status": row.status,
            "provider": row.provider or "",
            "provider_message_id": row.provider_message_id or "",
            "attempts": row.attempts,
            "message_sha256": audit.message_digest(row.subject, row.body_text, row.body_html) if has_body else "",
            "detail": scrub(row.error or "", row.recipient)[:200],
        },
        at=at,
        key=audit_key(row.key, "contact", row.status),
    )
