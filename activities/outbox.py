"""send_contact: one message through the outbox and a provider.

The outbox row (db/outbox.py, which owns its statuses) is written and claimed
before any provider is called, so a retried attempt, or one run again after a
worker crash, never sends a second message for the same key. The voice cap
and the per-borrower daily caps across the borrower's loans are checked in
the same claim, since only the outbox sees the borrower's other loans; a step
the policy merges with the borrower's other loans' steps due with it goes
through activities/merging.py first (one message, one outbox row, for all of
them: issue 17, item 1). This module renders the message,
calls the provider and reports the outcome; every status it reaches is written
by db/outbox.py.

Nothing personal leaves here towards Temporal: the outcome carries ids and
codes, and a provider's error is scrubbed of the recipient before it becomes
an outcome or a failure.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.context import ActivityContext, bound_log
from activities.merging import SUMMARY_TEMPLATE, Merging, summary_context
from activities.limitation_disclosures import DisclosureMissing, disclosure_text
from activities.message_privacy import blocked_reason
from activities.pay_link import issue_pay_link
from activities.prepare import borrower_zones
from activities.payloads import (
    DATABASE_UNAVAILABLE,
    SEND_CONTACT,
    SEND_CONTACTS,
    ContactBatch,
    ContactOutcome,
    ContactOutcomes,
    ContactRequest,
)
from activities.rendering import RenderedMessage, TemplateMissing, TemplateRenderer
from channels.base import LETTER_HTML_MAX_CHARS, Channel, OutboundMessage, PermanentSendError, TransientSendError
from channels.unsubscribe import unsubscribe_url
from db import outbox
from db.models import Borrower, Contact, Loan, LoanItemization
from dunning.compliance import Window, next_opening_in_all
from dunning.money import quantize
from dunning.validation_period import period_end


class ContactSending:
    def __init__(self, context: ActivityContext, channels: dict[str, Channel], renderer: TemplateRenderer) -> None:
        self._context = context
        self._channels = channels
        self._renderer = renderer
        # Steps of the borrower's loans merged into one message (issue 17, item 1).
        self._merging = Merging(context, send=self._send, outcome_of=_outcome)

    def registered(self) -> list:
        return [self.send_contact, self.send_contacts]

    @activity.defn(name=SEND_CONTACTS)
    def send_contacts(self, batch: ContactBatch) -> ContactOutcomes:
        """Contacts due at the same instant, each sent as send_contact sends
        it, in order: one activity instead of one each (issue 19, item 5)."""
        def send(request: ContactRequest) -> ContactOutcome:
            # A heartbeat before each contact: a worker that dies mid-batch is
            # noticed within the heartbeat timeout, however long the batch.
            activity.heartbeat(request.key)
            return self.send_contact(request)

        return ContactOutcomes(send_each(batch, send, activity.info().attempt))

    @activity.defn(name=SEND_CONTACT)
    def send_contact(self, request: ContactRequest) -> ContactOutcome:
        """The message for one step, sent once by its key; held when the
        borrower's details read now put the moment outside the window."""
        try:
            return self._coordinated(request)
        except (OperationalError, InterfaceError) as error:
            # The database is the borrower's coordinator (the outbox, the
            # caps, the merged messages: db/borrower_messages.py). Without it
            # nothing may go out; the workflow makes the contact wait
            # (DATABASE_UNAVAILABLE), never lost and, by its key, never sent
            # twice. The driver's message may quote the statement's
            # parameters (a phone number): only its type is kept.
            raise ApplicationError(
                f"database unavailable ({type(getattr(error, 'orig', None) or error).__name__})", type=DATABASE_UNAVAILABLE,
            ) from None

    def _coordinated(self, request: ContactRequest) -> ContactOutcome:
        zones = self._context.in_transaction(lambda db: _zones_now(db, request))
        held = _outside_window(request, zones)
        if held is not None:
            bound_log(loan_id=request.loan_id, key=request.key, channel=request.channel).info(
                "contact_held_by_window", zones=list(zones))
            return held
        merged = self._merging.send(request, request.time_zone)
        if merged is not None:
            return replace(merged, time_zones=zones)
        return replace(self._send(request), time_zones=zones)

    def _send(self, request: ContactRequest) -> ContactOutcome:
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
            outcome = replace(_outcome(claim.row, claim.not_before), rule=claim.rule)
            logger.info("contact_recorded", result=outcome.result, template=request.template)
            return outcome
        message = _message(claim.row, record=_records_call(request))
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
        # One message for several of the borrower's loans (activities/merging.py):
        # its own amount, currency and link are its first loan's.
        summary = summary_context(
            db, request, base_url=settings.pay_link_base_url, secret=settings.pay_link_secret, at=at,
            max_age_days=settings.pay_link_max_age_days,
        ) if request.template == SUMMARY_TEMPLATE else None
        context = {
            "lender_name": settings.lender_name,
            "borrower_name": borrower.name,
            # The templates format it: |money(currency). A plan's message
            # states its installment and that installment's date instead.
            "amount": summary["totals"][0]["amount"] if summary else Decimal(request.message_amount or request.outstanding),
            "currency": summary["totals"][0]["currency"] if summary else request.currency,
            "due_date": date.fromisoformat(request.message_due_date or request.due_date),
            "days_past_due": request.days_past_due,
            # An opaque token for this message (its hash is written with the row).
            "pay_link": summary["loans"][0]["pay_link"] if summary else issue_pay_link(
                db, base_url=settings.pay_link_base_url, secret=settings.pay_link_secret, contact_key=request.key,
                loan_id=request.loan_id, workflow_id=request.workflow_id, now=at, max_age_days=settings.pay_link_max_age_days,
            ),
            "loan_id": request.loan_id,
            "stage": request.stage,
            # The one-click unsubscribe (channels/unsubscribe.py), signed for this message's key.
            "unsubscribe_url": unsubscribe_url(settings.public_base_url, settings.pay_link_secret, request.key),
            # The validation notice's information (12 CFR 1006.34(c)), read from
            # the directory in this session, never from Temporal; None for other templates.
            "notice": (validation_notice(db, request, borrower, settings.lender_name, at)
                       if request.template == VALIDATION_NOTICE_TEMPLATE else None),
            "debt_collector": request.debt_collector_disclosure,
            # A recorded call's script says so, before anything about the debt
            # (the profile's rules.record_calls; issue 16, item 7).
            "call_recorded": _records_call(request),
            "summary": summary,
            # A time-barred debt (issue 18, item 2): the templates' time-barred
            # variant and the disclosure its jurisdiction requires.
            "time_barred": bool(getattr(request, "time_barred", False)),
            "limitation_disclosure": "",
        }
        if context["time_barred"]:
            try:
                context["limitation_disclosure"] = disclosure_text(
                    settings.profiles_dir.parent, request.limitation_disclosure, borrower.language,
                    collector=settings.lender_name, reported=request.limitation_reported,
                )
            except DisclosureMissing as missing:
                # Never sent without the disclosure the law requires: the row
                # ends here, unsent for this key, with the reason (as a
                # message whose first line the privacy rules forbid).
                row.error = f"not sent: {missing}"
                return row
        try:
            rendered = self._renderer.render(request.template, request.channel, borrower.language, context)
            if request.template == VALIDATION_NOTICE_TEMPLATE and borrower.language != ENGLISH:
                english = self._renderer.render(request.template, request.channel, ENGLISH, context)
                rendered = with_english_notice(rendered, english, request.channel)
        except TemplateMissing as error:
            raise ApplicationError(str(error), type="TemplateMissing", non_retryable=True) from None
        # What a lock screen shows (activities/message_privacy.py): an SMS or
        # push whose first line the profile's [privacy] first_line forbids is
        # not sent. Its row ends here with no recipient (final, audited, never
        # sent for this key) and the rule it broke as the error.
        blocked = blocked_reason(
            request.channel, request.privacy_first_line, rendered.text, amount=context["amount"],
            currency=request.currency, config_dir=settings.profiles_dir.parent,
        )
        if blocked:
            row.subject, row.body_text, row.body_html = rendered.subject, rendered.text, rendered.html
            row.error = f"not sent: {blocked}"
            return row
        row.recipient = recipient
        row.subject, row.body_text, row.body_html = rendered.subject, rendered.text, rendered.html
        return row


ENGLISH = "en"
_BODY = re.compile(r"<body[^>]*>(.*)</body>", re.S | re.I)


def with_english_notice(translated: RenderedMessage, english: RenderedMessage, channel: str) -> RenderedMessage:
    """12 CFR 1006.34(e): a translated validation notice only together with
    the English one, in the same communication. The English notice comes
    first and the translation follows it. A letter that would then exceed
    what the print-and-mail provider takes inline is the English notice alone
    (complete on its own; the translation may follow later, 1006.34(e))."""
    text = f"{english.text}\n\n{'-' * 40}\n\n{translated.text}"
    html = english.html
    if english.html and translated.html:
        inner = _BODY.search(translated.html)
        if inner is not None:
            page_break = '<div style="page-break-before:always"></div>'
            html = re.sub(r"</body>", lambda _: f"{page_break}{inner.group(1)}</body>", english.html, count=1, flags=re.I)
    if channel == "letter" and html and len(html) > LETTER_HTML_MAX_CHARS:
        return english
    subject = f"{english.subject} / {translated.subject}" if english.subject and translated.subject else english.subject
    return RenderedMessage(subject=subject, text=text, html=html)


def _recipient(borrower: Borrower, channel: str) -> str | None:
    if channel in ("sms", "voice"):
        return borrower.phone
    if channel == "email":
        return borrower.email
    if channel == "letter":
        # The postal address as JSON (channels/lob_letter.py reads it); none
        # without a first line. Kept only if it fits the outbox's recipient
        # column (512): a longer one is no address for a letter, not a crash.
        import json

        if not (borrower.address_line1 or "").strip():
            return None
        postal = json.dumps({
            "name": borrower.name, "address_line1": borrower.address_line1, "address_line2": borrower.address_line2,
            "city": borrower.city, "region": borrower.region, "postal_code": borrower.postal_code,
            "country": borrower.country,
        }, ensure_ascii=False, separators=(",", ":"))
        return postal if len(postal) <= 512 else None
    # App push addresses the user in the lender's app: its device token when
    # the directory has one, else the borrower id the app signs in with.
    return borrower.push_token or borrower.borrower_id


def _zones_now(db: Session, request: ContactRequest) -> tuple[str, ...]:
    """Every zone the directory leaves open now (issue 15, item 3: the
    details are read at each contact, not kept from the loan's start); ()
    when the request asks for no window check (from an older workflow) or
    an outbox row already exists (a retry: what was decided stands)."""
    if not (request.window_start and request.loan_at) or outbox.find(db, request.key) is not None:
        return ()
    borrower = db.get(Borrower, request.borrower_id)
    if borrower is None:
        return ()
    return borrower_zones(borrower, borrower.time_zone or request.time_zone)


def _outside_window(request: ContactRequest, zones: tuple[str, ...]) -> ContactOutcome | None:
    """A `deferred` outcome (rule `window`, `not_before` in loan time) when
    the decided moment is outside the window in one of `zones`."""
    if not zones:
        return None
    window = Window(start=time.fromisoformat(request.window_start), end=time.fromisoformat(request.window_end))
    loan_at = datetime.fromisoformat(request.loan_at)
    opening = next_opening_in_all(window, loan_at, zones)
    if opening == loan_at:
        return None
    detail = (f"outside the contact window {window.start:%H:%M}-{window.end:%H:%M} in one of the borrower's zones "
              f"({', '.join(zones)}), read at this contact")
    # No shared hour: the planner, told the zones, skips the step.
    not_before = opening or loan_at + timedelta(days=1)
    return ContactOutcome(key=request.key, channel=request.channel, result="deferred", detail=detail,
                          not_before=not_before.isoformat(), rule="window", time_zones=zones)


def _records_call(request: ContactRequest) -> bool:
    """The call is recorded (and its script, rendered with this, says so)."""
    return request.channel == "voice" and bool(getattr(request, "record_call", False))


def _message(row: Contact, record: bool = False) -> OutboundMessage:
    return OutboundMessage(
        key=row.key, channel=row.channel, recipient=row.recipient, language=row.language, text=row.body_text,
        subject=row.subject, html=row.body_html, category=row.stage, record=record,
    )


def _outcome(row: Contact, not_before: datetime | None = None) -> ContactOutcome:
    # Ids and codes only: never the recipient, the name or the body.
    return ContactOutcome(
        key=row.key, channel=row.channel, result=row.status, provider=row.provider or "",
        provider_message_id=row.provider_message_id or "", detail=outbox.scrub(row.error or "", row.recipient)[:200],
        not_before=not_before.isoformat() if not_before else "", message_key=row.key,
    )


# ------------------------------------------------------------ the validation notice

VALIDATION_NOTICE_TEMPLATE = "validation_notice"
# 1006.34(b)(5): the period ends 30 days after the assumed receipt.
DEFAULT_VALIDATION_PERIOD_DAYS = 30


def validation_notice(db: Session, request: ContactRequest, borrower: Borrower, lender_name: str, at: datetime) -> dict:
    """The `notice` context of the validation notice (activities/rendering.py,
    NOTICE_KEYS): 12 CFR 1006.34(c)'s validation information, laid out by
    the templates as Model Form B-1.

    The consumer's name and address come from the directory's borrower row
    and the itemization from the loan's `loan_itemizations` row (the
    placement's `itemization` block), both read here; the collector's
    details from the request (the profile's [collector]). A loan placed
    without an itemization is itemized from what its terms say: the
    itemization date is the due date, the amount then the amount due, and
    nothing charged, paid or credited since but what the workflow reports.
    """
    currency = request.currency
    outstanding = Decimal(request.outstanding)
    interest = _money_or_zero(request.interest_charged)
    fees = _money_or_zero(request.fees_charged)
    row = db.get(LoanItemization, request.loan_id)
    loan = db.get(Loan, request.loan_id)
    if row is not None:
        itemization_date = row.itemization_date
        amount_then = row.amount_on_itemization_date
        interest += row.interest_since
        fees += row.fees_since
        paid_before_placing = row.payments_since + row.credits_since
        placed_total = amount_then + row.interest_since + row.fees_since - paid_before_placing
        current_creditor = row.current_creditor
        # 1006.34(c)(2)(iii): the creditor then, for a consumer financial product debt only.
        creditor_then = row.creditor_on_itemization_date if row.debt_type == "consumer_financial_product" else None
        account = row.account_number
    else:
        itemization_date = date.fromisoformat(request.due_date)
        amount_then = loan.amount_due if loan is not None else outstanding
        paid_before_placing = Decimal("0")
        placed_total = amount_then
        current_creditor = lender_name
        creditor_then = lender_name
        account = None
    # What the balance shows was paid or credited since placing: the
    # repayments, plan waivers and anything else the workflow applied.
    paid_since_placing = placed_total + _since_placing(request) - outstanding
    if paid_since_placing < 0:
        # The balance grew by more than the charges the request reports (an
        # older workflow sends none): the difference is a fee, so that the
        # itemization still adds up to the current amount.
        fees -= paid_since_placing
        paid_since_placing = Decimal("0")
    paid_or_credited = paid_before_placing + paid_since_placing
    provided_on = _provided_on(request, at)
    period_days = request.validation_period_days
    ends = period_end(provided_on, DEFAULT_VALIDATION_PERIOD_DAYS if period_days is None else period_days)
    return {
        "collector_name": request.collector_name or lender_name,
        "collector_address": list(request.collector_mailing_address),
        "collector_phone": request.collector_phone or None,
        "dispute_email": request.dispute_email or None,
        "dispute_url": request.dispute_url or None,
        "consumer_name": borrower.name,
        "consumer_address": _address_lines(borrower),
        "current_creditor": current_creditor,
        "creditor_on_itemization_date": creditor_then,
        # 1006.34(c)(2)(iv) allows a truncated account number: the last four characters.
        "account_last4": _last4(account),
        "itemization_date": itemization_date,
        "amount_on_itemization_date": quantize(amount_then, currency),
        "interest_since": quantize(interest, currency),
        "fees_since": quantize(fees, currency),
        "paid_or_credited_since": quantize(paid_or_credited, currency),
        "current_amount": quantize(outstanding, currency),
        "itemized": row is not None,
        "provided_on": provided_on,
        "validation_period_ends": ends,
        "debt_collector": request.debt_collector_disclosure,
    }


def _money_or_zero(value: str) -> Decimal:
    return Decimal(value) if value and value.strip() else Decimal("0")


def _since_placing(request: ContactRequest) -> Decimal:
    return _money_or_zero(request.interest_charged) + _money_or_zero(request.fees_charged)


def _provided_on(request: ContactRequest, at: datetime) -> date:
    """The day the notice is provided: the loan's date at the decided moment
    (the planner's clock, in the borrower's zone), else the UTC date."""
    if request.loan_at:
        return datetime.fromisoformat(request.loan_at).date()
    return at.date()


def _address_lines(borrower: Borrower) -> list[str]:
    """The directory's postal address as a letter prints it (US style); empty when there is none."""
    if not borrower.address_line1:
        return []
    place = " ".join(part for part in (borrower.region, borrower.postal_code) if part)
    last = ", ".join(part for part in (borrower.city, place) if part)
    lines = [borrower.address_line1, borrower.address_line2, last]
    if borrower.country and borrower.country != "US":
        lines.append(borrower.country)
    return [line for line in lines if line]


def _last4(account: str | None) -> str | None:
    if not account:
        return None
    characters = [c for c in account if c.isalnum()]
    return "".join(characters[-4:]) or None


# The send failures the workflow's retry policy does not retry (workflows/calls.py SEND_RETRY).
FINAL_FAILURES = ("TemplateMissing", "PermanentSendError", "UnknownChannel")


def send_each(batch: ContactBatch, send, attempt: int) -> list[ContactOutcome]:
    """Each request through `send` (one contact), as the workflow would take
    one activity's failure: a contact refused for good is `failed` and the
    others still go; one that may succeed later fails the batch, which Temporal
    retries (the contacts sent already are found by their outbox keys and not
    sent again) until the last attempt, where it is `failed` too. The
    database down fails the batch at once: the workflow makes every contact
    in it wait (DATABASE_UNAVAILABLE). A failure's detail is its type only:
    the provider's text may quote an address."""
    outcomes: list[ContactOutcome] = []
    retry: Exception | None = None
    for request in batch.requests:
        try:
            outcomes.append(send(request))
        except Exception as error:
            kind = error.type if isinstance(error, ApplicationError) and error.type else type(error).__name__
            if kind == DATABASE_UNAVAILABLE:
                raise
            final = kind in FINAL_FAILURES or (isinstance(error, ApplicationError) and error.non_retryable)
            if not final and attempt < batch.max_attempts:
                retry = retry or error
                continue
            outcomes.append(ContactOutcome(key=request.key, channel=request.channel, result="failed",
                                           detail=f"not sent: {kind}"))
    if retry is not None:
        raise retry
    return outcomes
