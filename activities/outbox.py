"""send_contact: one message through the outbox and a provider.

The outbox row (db/outbox.py, which owns its statuses) is written and claimed
before any provider is called, so a retried attempt, or one run again after a
worker crash, never sends a second message for the same key. The voice cap
across the borrower's loans is checked in the same claim, since only the
outbox sees the borrower's other loans. This module renders the message,
calls the provider and reports the outcome; every status it reaches is written
by db/outbox.py.

Nothing personal leaves here towards Temporal: the outcome carries ids and
codes, and a provider's error is scrubbed of the recipient before it becomes
an outcome or a failure.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy.orm import Session
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.context import ActivityContext, bound_log
from activities.pay_link import issue_pay_link
from activities.payloads import SEND_CONTACT, ContactOutcome, ContactRequest
from activities.rendering import TemplateMissing, TemplateRenderer
from channels.base import Channel, OutboundMessage, PermanentSendError, TransientSendError
from channels.unsubscribe import unsubscribe_url
from db import outbox
from db.models import Borrower, Contact


class ContactSending:
    def __init__(self, context: ActivityContext, channels: dict[str, Channel], renderer: TemplateRenderer) -> None:
        self._context = context
        self._channels = channels
        self._renderer = renderer

    def registered(self) -> list:
        return [self.send_contact]

    @activity.defn(name=SEND_CONTACT)
    def send_contact(self, request: ContactRequest) -> ContactOutcome:
        logger = bound_log(loan_id=request.loan_id, key=request.key, channel=request.channel)
        channel = self._channels.get(request.channel)
        if channel is None:
            raise ApplicationError(
                f"no provider for channel {request.channel!r}; known: {', '.join(sorted(self._channels))}",
                type="UnknownChannel",
                non_retryable=True,
            )
        sessions, at = self._context.sessions, self._context.clock()
        # 1. The outbox row, committed before any provider is called, and
        # claimed (`sending`) by this attempt alone.
        claim = outbox.claim(
            sessions, request, at=at, resend_in_doubt=getattr(channel, "idempotent_by_key", False),
            draft=lambda db: self._draft(db, request, at),
        )
        if not claim.send:
            outcome = _outcome(claim.row, claim.not_before)
            logger.info("contact_recorded", result=outcome.result, template=request.template)
            return outcome
        message = _message(claim.row)
        # 2. The provider. If the worker dies now, the row stays `sending`:
        # the retry re-sends only to a provider that dedupes by key (see
        # db/outbox.py, SENDING); Twilio's status callback reconciles the rest.
        try:
            receipt = channel.send(message)
        except PermanentSendError as error:
            detail = outbox.scrub(str(error), message.recipient)
            logger.warning("contact_refused", error=detail)
            return _outcome(self._context.in_transaction(
                lambda db: outbox.finish_refused(db, request.key, at, error=str(error))
            ))
        except Exception as error:
            # TransientSendError: the provider said it did not take the
            # message (429, 5xx), so the row goes back to `pending` and
            # Temporal's retry sends it. Anything else (a timeout, a bug) may
            # have reached the provider: the row stays `sending`, in doubt.
            detail = outbox.scrub(str(error), message.recipient)
            with sessions.begin() as db:
                outbox.count_attempt(db, request.key, detail, back_to_pending=isinstance(error, TransientSendError))
            logger.warning("contact_send_failed", error=detail, error_type=type(error).__name__)
            if isinstance(error, ApplicationError):
                raise
            # Re-raised under the same type name (so retry policies can still
            # name it) but without the recipient the provider may have quoted.
            raise ApplicationError(detail, type=type(error).__name__) from None
        # 3. The receipt.
        outcome = _outcome(self._context.in_transaction(
            lambda db: outbox.finish_sent(db, request.key, at, receipt.provider, receipt.message_id)
        ))
        logger.info("contact_sent", provider=receipt.provider, template=request.template, stage=request.stage)
        return outcome

    def _draft(self, db: Session, request: ContactRequest, at: datetime) -> Contact:
        """The outbox row with its message rendered for the borrower, or, when
        there is nothing to send, with no recipient and the reason."""
        borrower = db.get(Borrower, request.borrower_id)
        row = outbox.new_row(request, borrower.language if borrower else "")
        recipient = _recipient(borrower, request.channel) if borrower else None
        if not recipient:
            row.error = "borrower not in the directory" if borrower is None else f"no address for {request.channel}"
            return row
        settings = self._context.settings
        context = {
            "lender_name": settings.lender_name,
            "borrower_name": borrower.name,
            # The templates format it: |money(currency). A plan's message
            # states its installment and that installment's date instead.
            "amount": Decimal(request.message_amount or request.outstanding),
            "currency": request.currency,
            "due_date": date.fromisoformat(request.message_due_date or request.due_date),
            "days_past_due": request.days_past_due,
            # An opaque token for this message (its hash is written with the row).
            "pay_link": issue_pay_link(
                db, base_url=settings.pay_link_base_url, secret=settings.pay_link_secret, contact_key=request.key,
                loan_id=request.loan_id, workflow_id=request.workflow_id, now=at, max_age_days=settings.pay_link_max_age_days,
            ),
            "loan_id": request.loan_id,
            "stage": request.stage,
            # The one-click unsubscribe (channels/unsubscribe.py), signed for this message's key.
            "unsubscribe_url": unsubscribe_url(settings.public_base_url, settings.pay_link_secret, request.key),
        }
        try:
            rendered = self._renderer.render(request.template, request.channel, borrower.language, context)
        except TemplateMissing as error:
            raise ApplicationError(str(error), type="TemplateMissing", non_retryable=True) from None
        row.recipient = recipient
        row.subject, row.body_text, row.body_html = rendered.subject, rendered.text, rendered.html
        return row


def _recipient(borrower: Borrower, channel: str) -> str | None:
    if channel in ("sms", "voice"):
        return borrower.phone
    if channel == "email":
        return borrower.email
    # App push addresses the user in the lender's app: its device token when
    # the directory has one, else the borrower id the app signs in with.
    return borrower.push_token or borrower.borrower_id


def _message(row: Contact) -> OutboundMessage:
    return OutboundMessage(
        key=row.key, channel=row.channel, recipient=row.recipient, language=row.language, text=row.body_text,
        subject=row.subject, html=row.body_html, category=row.stage,
    )


def _outcome(row: Contact, not_before: datetime | None = None) -> ContactOutcome:
    # Ids and codes only: never the recipient, the name or the body.
    return ContactOutcome(
        key=row.key, channel=row.channel, result=row.status, provider=row.provider or "",
        provider_message_id=row.provider_message_id or "", detail=outbox.scrub(row.error or "", row.recipient)[:200],
        not_before=not_before.isoformat() if not_before else "",
    )
