"""The contacts outbox: the one owner of a Contact row's status.

Every message goes through one row, keyed by its contact key
(dunning/keys.py). The send activity claims the row (`claim`), calls the
provider and records how the call ended (`finish_sent`, `finish_refused`,
`count_attempt`); a provider's callback (the gateway) confirms a send left in
doubt or records a failure (`confirm_sent`, `record_provider_failure`). All of
them write the statuses through this module, and every move is checked
against one table, `NEXT` (what may follow what):

    (a new row)  -> pending | skipped_no_address | deferred
    deferred     -> deferred | pending | skipped_no_address   (checked again by a later attempt)
    pending      -> sending                  (an attempt claims it)
    sending      -> sending                  (a retry re-sends through a provider that dedupes by key)
    sending      -> pending                  (the provider said it did not take it: Temporal retries)
    pending | sending -> sent | failed | unconfirmed   (the provider's answer; or a retry that will
                                                        not send a message in doubt again)
    unconfirmed  -> sent | failed            (a provider's callback settles the doubt)
    sent | failed | skipped_no_address -> nothing   (final)

A move the table does not name is refused and the row keeps its status:
statuses only move forward. A final status never moves back to an in-flight
one, a failed message never becomes sent, and a sent one never becomes
failed: a provider that later reports it undelivered (or such a callback
replayed, late or forged with a stolen signature) leaves the row `sent`, with
the report kept in `error` and the workflow told (`contact_outcome`
undelivered), so a late or repeated callback, or a slow attempt finishing
after a callback, cannot rewrite what was sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone
from typing import Callable, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from db import audit
from db.models import Borrower, Contact
from db.scrubbing import scrub_recipient
from db.write_once import in_transaction
from dunning.keys import audit_key

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

# Which status may follow which (None: a row not written yet); see above.
NEXT: dict[str | None, frozenset[str]] = {
    None: frozenset({PENDING, SKIPPED, DEFERRED}),
    DEFERRED: frozenset({DEFERRED, PENDING, SKIPPED}),
    PENDING: frozenset({SENDING, SENT, FAILED, UNCONFIRMED}),
    SENDING: frozenset({SENDING, PENDING, SENT, FAILED, UNCONFIRMED}),
    UNCONFIRMED: frozenset({SENT, FAILED}),
    SENT: frozenset(),  # delivery failures reported later are kept in `error`
    FAILED: frozenset(),
    SKIPPED: frozenset(),
}

_CONTACTS = Contact.__table__
_UNCONFIRMED_DETAIL = (
    "interrupted while the provider was called; not sent again (the provider has no "
    "idempotency key); its status callback confirms it if it went"
)


def may_follow(current: str | None, status: str) -> bool:
    """`status` may follow `current` (NEXT)."""
    return status in NEXT.get(current, frozenset())


def _move(row: Contact, status: str) -> bool:
    """Set the row's status if NEXT allows it; False, and the row unchanged, if not."""
    if not may_follow(row.status, status):
        return False
    row.status = status
    return True


def find(db: Session, key: str) -> Contact | None:
    return db.scalar(select(Contact).where(Contact.key == key))


def scrub(text: str, recipient: str | None) -> str:
    """A provider's error without the address it may quote ("+86138... is not a
    valid number"), fit for an outcome, a log line or workflow history: in any
    formatting of it (db/scrubbing.py), not only as we sent it."""
    return scrub_recipient(text, recipient)[:500]


# ------------------------------------------------------------------ claiming


class ContactToSend(Protocol):
    """What the outbox needs of a contact (activities/payloads.py's
    ContactRequest): the db layer names no type of the activities."""

    key: str
    workflow_id: str
    loan_id: str
    borrower_id: str
    stage: str
    channel: str
    template: str
    voice_daily_cap: int | None
    min_minutes_between_calls: int | None
    # Also read, when the contact has it (getattr; ContactRequest does):
    # borrower_daily_cap: int | None, the per-borrower daily cap of a message
    # channel (issue 17, item 1).


@dataclass(frozen=True)
class Claim:
    """What claiming a key found. With `send`, the row is this attempt's to
    hand to the provider (committed `sending`); without, it has ended here
    (a final status, or `deferred` until `not_before`) and tells how."""

    row: Contact
    send: bool
    not_before: datetime | None = None
    rule: str = ""  # for `deferred`: voice_daily_cap | call_spacing | borrower_daily_cap


def new_row(contact: ContactToSend, language: str) -> Contact:
    """The outbox row of `contact`, without a message or a status yet."""
    return Contact(
        key=contact.key, workflow_id=contact.workflow_id, loan_id=contact.loan_id, borrower_id=contact.borrower_id,
        stage=contact.stage, channel=contact.channel, template=contact.template, language=language,
        body_text="", attempts=0,
    )


def claim(
    sessions: sessionmaker[Session],
    contact: ContactToSend,
    *,
    at: datetime,
    resend_in_doubt: bool,
    draft: Callable[[Session], Contact],
) -> Claim:
    """Write the outbox row (or find the one an earlier attempt wrote) and
    mark it `sending` for this attempt, committed before any provider is
    called. `draft` renders the message into a `new_row` (no recipient: the
    error says why there is nothing to send). A row that ends here (skipped,
    no address, unconfirmed) is audited in the same transaction; a `deferred`
    row is checked again."""
    for _ in range(3):
        with sessions() as db:
            row = find(db, contact.key)
            if row is not None and row.status in FINAL_STATUSES:
                return Claim(row, send=False)
            if row is not None and row.status == SENDING and not resend_in_doubt:
                ended = in_transaction(sessions, lambda other: _finish(
                    other, contact.key, UNCONFIRMED, at=at, count=False, error=_UNCONFIRMED_DETAIL,
                ))
                return Claim(ended, send=False)
            if row is not None and row.status in (PENDING, SENDING):
                if _mark_sending(db, contact.key, row.status):
                    return Claim(row, send=True)
                continue  # a concurrent attempt claimed it first
            try:
                claimed = _write(db, contact, row, at, draft)
                if claimed is None:  # a concurrent attempt moved the deferred row on
                    db.rollback()
                    continue
                if claimed.send:
                    db.flush()
                    _move(claimed.row, SENDING)
                db.commit()
                return claimed
            except IntegrityError:  # a concurrent attempt wrote it a moment ago
                db.rollback()
                continue
    raise RuntimeError(f"outbox row {contact.key} could neither be written nor read")


def _write(
    db: Session, contact: ContactToSend, row: Contact | None, at: datetime, draft: Callable[[Session], Contact]
) -> Claim | None:
    """A new outbox row, or a deferred one brought up to date: first the
    daily cap across the borrower's loans (the profile's voice cap for a
    call, the per-borrower cap of a message channel, issue 17 item 1) and
    the spacing of calls, then the message."""
    voice = contact.channel == "voice"
    cap = contact.voice_daily_cap if voice else getattr(contact, "borrower_daily_cap", None)
    spacing = getattr(contact, "min_minutes_between_calls", None) if voice else None
    if cap or spacing:
        # The count and the `sending` write are one transaction (claim
        # commits both), and one borrower's capped calls take turns from
        # before the count: on PostgreSQL on their directory row (FOR
        # UPDATE; READ COMMITTED, so the count sees what the claim before
        # committed); SQLite ignores FOR UPDATE, there the write below (the
        # new row, or the deferred row restamped) takes the database's write
        # lock before the count.
        borrower = db.scalar(select(Borrower).where(Borrower.borrower_id == contact.borrower_id).with_for_update())
        if borrower is not None:
            if row is None:
                row = new_row(contact, borrower.language)
                _move(row, DEFERRED)
                row.created_at = at
                db.add(row)
                db.flush()
            elif not _restamp_deferred(db, contact.key):
                return None
            if spacing:
                spaced_from = next_call_allowed(db, borrower, contact.key, at, spacing)
                if spaced_from is not None:
                    _move(row, DEFERRED)
                    row.error = f"call spacing: another call to the borrower within {spacing} minutes"
                    return Claim(row, send=False, not_before=spaced_from, rule="call_spacing")
            sent, next_midnight = messages_today(db, borrower, contact.channel, contact.key, at) if cap else (0, at)
            if cap and sent >= cap:
                _move(row, DEFERRED)
                if voice:
                    row.error = f"voice cap: {sent} calls today across the borrower's loans"
                    return Claim(row, send=False, not_before=next_midnight, rule="voice_daily_cap")
                row.error = f"borrower cap: {sent} {contact.channel} messages today across the borrower's loans"
                return Claim(row, send=False, not_before=next_midnight, rule="borrower_daily_cap")
    fresh = draft(db)
    _move(fresh, PENDING if fresh.recipient else SKIPPED)
    if row is None:
        row = fresh
        row.created_at = at
        db.add(row)
    else:  # the deferred row, now rendered with today's amounts
        _move(row, fresh.status)
        for column in ("stage", "template", "language", "recipient", "subject", "body_text", "body_html", "error"):
            setattr(row, column, getattr(fresh, column))
    if row.status in FINAL_STATUSES:
        db.flush()
        audit_contact(db, row, row.sent_at or at)
        return Claim(row, send=False)
    return Claim(row, send=True)


def _restamp_deferred(db: Session, key: str) -> bool:
    """Touch a deferred row (its write lock, on SQLite) if it is still
    deferred; False when a concurrent attempt moved it on."""
    stamped = db.execute(
        update(_CONTACTS).where(_CONTACTS.c.key == key, _CONTACTS.c.status == DEFERRED).values(status=DEFERRED)
    )
    return stamped.rowcount == 1


def _mark_sending(db: Session, key: str, expected: str) -> bool:
    """Claim a pending (or in-doubt, idempotent) row for this attempt: only
    if it is still `expected`, so of two concurrent attempts one wins."""
    if not may_follow(expected, SENDING):
        return False
    moved = db.execute(
        update(_CONTACTS).where(_CONTACTS.c.key == key, _CONTACTS.c.status == expected).values(status=SENDING)
    )
    db.commit()
    return moved.rowcount == 1


def _zone(name: str | None) -> ZoneInfo:
    """The borrower's zone; UTC when the directory does not know it (None:
    placed without a zone or a phone that has one) or holds a bad name. The
    cap counts across the borrower's loans, so no one loan's policy decides."""
    if not name:
        return ZoneInfo("UTC")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def next_call_allowed(db: Session, borrower: Borrower, key: str, at: datetime, minutes: int) -> datetime | None:
    """When a call to the borrower (other than `key`) may go, if not now:
    one call at a time (another `pending` or `sending`: it may ring now), and
    `minutes` after the last one sent, across all their loans (issue 15, item
    9: postponed calls released at the window's opening went out in a burst).
    The caller holds the borrower's turn, as for the daily cap."""
    gap = timedelta(minutes=minutes)
    others = (Contact.borrower_id == borrower.borrower_id, Contact.channel == "voice", Contact.key != key)
    in_flight = db.scalar(select(func.count()).select_from(Contact).where(*others, Contact.status.in_((PENDING, SENDING))))
    if in_flight:
        return at + gap
    last = db.scalar(select(func.max(Contact.sent_at)).where(*others, Contact.status == SENT, Contact.sent_at > at - gap))
    if last is None:
        return None
    return _aware(last) + gap


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def voice_calls_today(db: Session, borrower: Borrower, key: str, at: datetime) -> tuple[int, datetime]:
    """The borrower's voice calls (other than `key`) on the local day of `at`
    in their zone, across all their loans; and the next local midnight
    (`messages_today` on the voice channel)."""
    return messages_today(db, borrower, "voice", key, at)


def messages_today(db: Session, borrower: Borrower, channel: str, key: str, at: datetime) -> tuple[int, datetime]:
    """The borrower's messages on `channel` (other than `key`) on the local
    day of `at` in their zone, across all their loans; and the next local
    midnight. A message merged for several loans is one outbox row, so it
    counts once.

    Counted: the messages sent that day (`sent_at` in it); every message in
    flight now (`pending` or `sending`: claimed for sending, it may go at any
    moment), whatever day its row was created, since a message postponed on
    an earlier day and released today keeps that day's `created_at` (issue
    15, item 8: two loans' released calls did not see each other); and
    messages in doubt (`unconfirmed`, they may have gone) written that day.
    The caller holds the borrower's turn (`_write`), so no other claim counts
    meanwhile."""
    zone = _zone(borrower.time_zone)
    today = at.astimezone(zone).date()
    start = datetime.combine(today, time(0), tzinfo=zone)
    end = datetime.combine(today + timedelta(days=1), time(0), tzinfo=zone)
    start_utc, end_utc = start.astimezone(timezone.utc), end.astimezone(timezone.utc)
    count = db.scalar(
        select(func.count()).select_from(Contact).where(
            Contact.borrower_id == borrower.borrower_id,
            Contact.channel == channel,
            Contact.key != key,
            or_(
                and_(Contact.status == SENT, Contact.sent_at >= start_utc, Contact.sent_at < end_utc),
                # In flight: a message that may go now, whenever its row was written.
                Contact.status.in_((PENDING, SENDING)),
                # In doubt: a message that may have gone, on the day its row was written.
                and_(Contact.status == UNCONFIRMED, Contact.created_at >= start_utc, Contact.created_at < end_utc),
            ),
        )
    )
    return count or 0, end


# ------------------------------------------------------ how an attempt ended


def finish_sent(db: Session, key: str, at: datetime, provider: str, message_id: str) -> Contact:
    """The provider took the message: its receipt."""
    return _finish(db, key, SENT, at=at, provider=provider, message_id=message_id)


def finish_refused(db: Session, key: str, at: datetime, error: str) -> Contact:
    """The provider refused the message for good."""
    return _finish(db, key, FAILED, at=at, error=error)


def _finish(
    db: Session, key: str, status: str, *, at: datetime, provider: str = "", message_id: str = "", error: str = "",
    count: bool = True,
) -> Contact:
    row = find(db, key)
    previous = row.status
    if status == UNCONFIRMED and previous in FINAL_STATUSES:
        return row  # the provider's callback confirmed it meanwhile
    if status != previous and not _move(row, status):
        return row  # the provider's callback failed it meanwhile: it stays failed
    row.attempts = row.attempts + (1 if count else 0)
    if status == UNCONFIRMED:
        row.error = error[:2000]
        db.flush()
        audit_contact(db, row, row.sent_at or at)
        return row
    row.provider, row.provider_message_id = provider or None, message_id or None
    row.error = error[:2000] or None
    if status == SENT:
        row.sent_at = at
    if previous != status:  # a concurrent attempt that finished first was audited already
        db.flush()
        audit_contact(db, row, row.sent_at or at)
    return row


def count_attempt(db: Session, key: str, error: str, back_to_pending: bool) -> None:
    """An attempt whose provider call raised: counted, with its (scrubbed)
    error. With `back_to_pending` (the provider said it did not take the
    message) a `sending` row goes back to `pending` for Temporal's retry;
    otherwise it stays `sending`, in doubt."""
    row = find(db, key)
    row.attempts, row.error = row.attempts + 1, error[:2000]
    if back_to_pending and row.status == SENDING:
        _move(row, PENDING)


# ------------------------------------------------ the providers' callbacks


def note_provider_message(row: Contact, provider: str, message_id: str | None) -> None:
    """A send whose record was lost (a worker killed after the provider took
    it) gets the provider's message id back from the callback."""
    if message_id and not row.provider_message_id:
        row.provider_message_id = message_id[:128]
        row.provider = row.provider or provider


def confirm_sent(db: Session, row: Contact, at: datetime) -> bool:
    """The provider took the message: a row still in doubt becomes `sent` and
    gets its audit entry. True when the row moved."""
    if not _move(row, SENT):
        return False
    row.sent_at = row.sent_at or at
    db.flush()
    audit_contact(db, row, row.sent_at)
    return True


def record_provider_failure(row: Contact, error: str) -> bool:
    """The provider could not send or deliver it: the error is kept, and a row
    still in doubt becomes `failed`. A `sent` row stays `sent` (statuses only
    move forward): the delivery failure is its `error`. True when the status moved."""
    row.error = error
    return _move(row, FAILED)


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
