"""The activities of DunningWorkflow: every read and write outside the workflow.

Each is idempotent by a key the workflow derives from its id and the step, so
Temporal may retry any of them, or run one again after a worker crash, without
a second message, record or payment row appearing. They are synchronous: the
worker runs them in a thread pool, one database session per call.

Nothing personal leaves here towards Temporal: inputs and outputs carry ids
and money, provider errors are scrubbed of the recipient before they become an
outcome or a failure, and the engine hides SQL parameters from its errors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import TypeVar

import structlog
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.pay_link import make_pay_link
from activities.payloads import (
    CLOSE_LOAN,
    ENTER_STAGE,
    PREPARE_LOAN,
    RECORD_PAYMENT,
    SEND_CONTACT,
    ContactOutcome,
    ContactRequest,
    LoanClosing,
    PaymentRecord,
    PreparedLoan,
    PrepareLoanInput,
    StageEntry,
)
from activities.rendering import TemplateMissing, TemplateRenderer
from channels.base import Channel, OutboundMessage, PermanentSendError, mask
from db.models import Borrower, BureauRecord, Contact, LegalCase, Loan, Payment
from dunning.contract import STAGE_CLOSED
from dunning.money import minor_units
from dunning.policy import PolicyError, load_policy
from runtime.settings import Settings

log = structlog.get_logger("activities")

T = TypeVar("T")

# Outbox states after which a message is never sent again for its key.
STATUS_PENDING = "pending"
STATUS_SENT = "sent"
STATUS_FAILED = "failed"
STATUS_SKIPPED = "skipped_no_address"
FINAL_STATUSES = frozenset({STATUS_SENT, STATUS_FAILED, STATUS_SKIPPED})


def _bound_log(**fields):
    info = activity.info()
    return log.bind(
        workflow_id=info.workflow_id,
        run_id=info.workflow_run_id,
        activity=info.activity_type,
        attempt=info.attempt,
        **fields,
    )


def _format_money(amount: Decimal, currency: str) -> str:
    """ "1,200.00" (CNY), "1,200" (JPY): grouped, with the currency's decimals."""
    return f"{amount:,.{minor_units(currency)}f}"


def _recipient(borrower: Borrower, channel: str) -> str | None:
    if channel in ("sms", "voice"):
        return borrower.phone
    if channel == "email":
        return borrower.email
    # App push addresses the user in the lender's app: its device token when
    # the directory has one, else the borrower id the app signs in with.
    return borrower.push_token or borrower.borrower_id


def _scrub(text: str, recipient: str | None) -> str:
    """A provider's error without the address it may quote ("+86138... is not a
    valid number"), fit for an outcome, a log line or workflow history."""
    if recipient:
        text = text.replace(recipient, mask(recipient))
    return text[:500]


def _outcome(row: Contact) -> ContactOutcome:
    # Ids and codes only: never the recipient, the name or the body.
    return ContactOutcome(
        key=row.key,
        channel=row.channel,
        result=row.status,
        provider=row.provider or "",
        provider_message_id=row.provider_message_id or "",
        detail=_scrub(row.error or "", row.recipient)[:200],
    )


def _aware(instant: str) -> datetime:
    value = datetime.fromisoformat(instant)
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class _Claim:
    """An outbox row to send now, or the outcome when there is nothing to send."""

    message: OutboundMessage | None
    outcome: ContactOutcome | None


class DunningActivities:
    def __init__(
        self,
        session_factory: sessionmaker[Session],
        channels: dict[str, Channel],
        renderer: TemplateRenderer,
        settings: Settings,
    ) -> None:
        self._sessions = session_factory
        self._channels = channels
        self._renderer = renderer
        self._settings = settings

    def _in_transaction(self, work: Callable[[Session], T]) -> T:
        """Run `work` in one transaction; if a concurrent attempt of the same
        activity inserted the same key first (IntegrityError), roll back and
        run it once more: the second time it finds that row and skips it."""
        try:
            with self._sessions.begin() as db:
                return work(db)
        except IntegrityError:
            with self._sessions.begin() as db:
                return work(db)

    # ------------------------------------------------------------ prepare_loan

    @activity.defn(name=PREPARE_LOAN)
    def prepare_loan(self, request: PrepareLoanInput) -> PreparedLoan:
        logger = _bound_log(loan_id=request.loan_id)
        try:
            policy = load_policy(request.policy, self._settings.policies_dir)
        except PolicyError as error:
            raise ApplicationError(str(error), type="PolicyError", non_retryable=True) from None

        def work(db: Session) -> PreparedLoan:
            borrower = db.get(Borrower, request.borrower_id)
            if borrower is None:
                # Started without placing (e.g. by the temporal CLI): the loan
                # runs on the policy's defaults, no loan row is written (its
                # foreign key needs the borrower), and each contact is skipped
                # until the directory has the borrower.
                return PreparedLoan(
                    policy=policy.model_dump(mode="json"),
                    time_zone=policy.default_time_zone,
                    language=policy.default_language,
                    borrower_known=False,
                )
            if db.get(Loan, request.loan_id) is None:
                db.add(
                    Loan(
                        loan_id=request.loan_id,
                        borrower_id=request.borrower_id,
                        amount_due=Decimal(request.amount_due),
                        currency=request.currency,
                        due_date=date.fromisoformat(request.due_date),
                        policy=request.policy,
                        workflow_id=request.workflow_id,
                    )
                )
            return PreparedLoan(
                policy=policy.model_dump(mode="json"),
                time_zone=borrower.time_zone,
                language=borrower.language,
                borrower_known=True,
            )

        prepared = self._in_transaction(work)
        if not prepared.borrower_known:
            logger.warning("borrower_not_in_directory", borrower_id=request.borrower_id)
        logger.info("loan_prepared", policy=policy.name, borrower_known=prepared.borrower_known)
        return prepared

    # ------------------------------------------------------------ send_contact

    @activity.defn(name=SEND_CONTACT)
    def send_contact(self, request: ContactRequest) -> ContactOutcome:
        logger = _bound_log(loan_id=request.loan_id, key=request.key, channel=request.channel)
        channel = self._channels.get(request.channel)
        if channel is None:
            raise ApplicationError(
                f"no provider for channel {request.channel!r}; known: {', '.join(sorted(self._channels))}",
                type="UnknownChannel",
                non_retryable=True,
            )
        # 1. The outbox row, committed before any provider is called.
        claim = self._claim(request)
        if claim.outcome is not None:
            logger.info("contact_recorded", result=claim.outcome.result, template=request.template)
            return claim.outcome
        message = claim.message
        # 2. The provider. If the worker dies after the provider accepted the
        # message and before step 3 commits, the row stays `pending` and the
        # retry sends it again. Local capture makes that harmless; real
        # providers get `message.key` as their idempotency key, and their
        # delivery callbacks reconcile `pending` rows (a later issue).
        try:
            receipt = channel.send(message)
        except PermanentSendError as error:
            detail = _scrub(str(error), message.recipient)
            logger.warning("contact_refused", error=detail)
            return self._finish(request.key, status=STATUS_FAILED, error=str(error))
        except Exception as error:
            # Transient (TransientSendError, a timeout, a bug): the row stays
            # `pending` with one more attempt counted, and Temporal's retry
            # sends the stored message again.
            detail = _scrub(str(error), message.recipient)
            self._count_attempt(request.key, detail)
            logger.warning("contact_send_failed", error=detail, error_type=type(error).__name__)
            if isinstance(error, ApplicationError):
                raise
            # Re-raised under the same type name (so retry policies can still
            # name it) but without the recipient the provider may have quoted.
            raise ApplicationError(detail, type=type(error).__name__) from None
        # 3. The receipt.
        outcome = self._finish(
            request.key, status=STATUS_SENT, provider=receipt.provider, message_id=receipt.message_id
        )
        logger.info("contact_sent", provider=receipt.provider, template=request.template, stage=request.stage)
        return outcome

    def _claim(self, request: ContactRequest) -> _Claim:
        """Write the outbox row (or find the one an earlier attempt wrote)."""
        for _ in range(2):
            with self._sessions() as db:
                row = db.scalar(select(Contact).where(Contact.key == request.key))
                if row is None:
                    row = self._new_row(db, request)
                    db.add(row)
                    try:
                        db.commit()
                    except IntegrityError:  # a concurrent attempt wrote it a moment ago
                        db.rollback()
                        continue
                if row.status in FINAL_STATUSES:
                    return _Claim(None, _outcome(row))
                return _Claim(self._message(row), None)
        raise RuntimeError(f"outbox row {request.key} could neither be written nor read")

    def _new_row(self, db: Session, request: ContactRequest) -> Contact:
        borrower = db.get(Borrower, request.borrower_id)
        row = Contact(
            key=request.key,
            workflow_id=request.workflow_id,
            loan_id=request.loan_id,
            borrower_id=request.borrower_id,
            stage=request.stage,
            channel=request.channel,
            template=request.template,
            language=borrower.language if borrower else "",
            status=STATUS_PENDING,
            body_text="",
            attempts=0,
        )
        recipient = _recipient(borrower, request.channel) if borrower else None
        if not recipient:
            row.status = STATUS_SKIPPED
            row.error = "borrower not in the directory" if borrower is None else f"no address for {request.channel}"
            return row
        context = {
            "lender_name": self._settings.lender_name,
            "borrower_name": borrower.name,
            "amount": _format_money(Decimal(request.outstanding), request.currency),
            "currency": request.currency,
            "due_date": date.fromisoformat(request.due_date),
            "days_past_due": request.days_past_due,
            "pay_link": make_pay_link(
                self._settings.pay_link_base_url, self._settings.signing_secret(), request.loan_id
            ),
            "loan_id": request.loan_id,
            "stage": request.stage,
        }
        try:
            rendered = self._renderer.render(request.template, request.channel, borrower.language, context)
        except TemplateMissing as error:
            raise ApplicationError(str(error), type="TemplateMissing", non_retryable=True) from None
        row.recipient = recipient
        row.subject, row.body_text, row.body_html = rendered.subject, rendered.text, rendered.html
        return row

    @staticmethod
    def _message(row: Contact) -> OutboundMessage:
        return OutboundMessage(
            key=row.key,
            channel=row.channel,
            recipient=row.recipient,
            language=row.language,
            text=row.body_text,
            subject=row.subject,
            html=row.body_html,
        )

    def _finish(self, key: str, status: str, provider: str = "", message_id: str = "", error: str = "") -> ContactOutcome:
        with self._sessions.begin() as db:
            row = db.scalar(select(Contact).where(Contact.key == key))
            row.status, row.attempts = status, row.attempts + 1
            row.provider, row.provider_message_id = provider or None, message_id or None
            row.error = error[:2000] or None
            if status == STATUS_SENT:
                row.sent_at = datetime.now(timezone.utc)
            return _outcome(row)

    def _count_attempt(self, key: str, error: str) -> None:
        with self._sessions.begin() as db:
            row = db.scalar(select(Contact).where(Contact.key == key))
            row.attempts, row.error = row.attempts + 1, error[:2000]

    # ------------------------------------------------------------- enter_stage

    @activity.defn(name=ENTER_STAGE)
    def enter_stage(self, entry: StageEntry) -> None:
        logger = _bound_log(loan_id=entry.loan_id, stage=entry.stage)

        def work(db: Session) -> None:
            loan = db.get(Loan, entry.loan_id)
            if loan is not None and loan.stage != STAGE_CLOSED:
                loan.stage = entry.stage
            if entry.stage == "credit_reporting":
                _insert_once(db, BureauRecord, entry.key, lambda: BureauRecord(
                    key=entry.key, loan_id=entry.loan_id, workflow_id=entry.workflow_id,
                    days_past_due=entry.days_past_due, balance=Decimal(entry.outstanding), currency=entry.currency,
                ))
            elif entry.stage == "legal":
                _insert_once(db, LegalCase, entry.key, lambda: LegalCase(
                    key=entry.key, loan_id=entry.loan_id, workflow_id=entry.workflow_id,
                    days_past_due=entry.days_past_due, outstanding=Decimal(entry.outstanding), currency=entry.currency,
                ))

        self._in_transaction(work)
        logger.info("stage_recorded", days_past_due=entry.days_past_due)

    # ---------------------------------------------------------- record_payment

    @activity.defn(name=RECORD_PAYMENT)
    def record_payment(self, record: PaymentRecord) -> None:
        logger = _bound_log(loan_id=record.loan_id, payment_id=record.payment_id)

        def work(db: Session) -> None:
            _insert_once(db, Payment, record.key, lambda: Payment(
                key=record.key, loan_id=record.loan_id, workflow_id=record.workflow_id,
                payment_id=record.payment_id, amount=record.amount, currency=record.currency,
                paid_at=record.paid_at, applied=record.applied, reason=record.reason or None,
            ))
            if not record.applied:
                return
            db.flush()
            loan = db.get(Loan, record.loan_id)
            if loan is not None:
                # The sum of applied payments, not an increment: a retry
                # cannot count a payment twice.
                amounts = db.scalars(
                    select(Payment.amount).where(Payment.loan_id == record.loan_id, Payment.applied.is_(True))
                ).all()
                loan.amount_paid = sum((Decimal(amount) for amount in amounts), Decimal("0"))

        self._in_transaction(work)
        logger.info("payment_recorded", applied=record.applied)

    # -------------------------------------------------------------- close_loan

    @activity.defn(name=CLOSE_LOAN)
    def close_loan(self, closing: LoanClosing) -> None:
        logger = _bound_log(loan_id=closing.loan_id)
        with self._sessions.begin() as db:
            loan = db.get(Loan, closing.loan_id)
            if loan is not None:
                loan.stage, loan.outcome = STAGE_CLOSED, closing.outcome
                loan.amount_paid = Decimal(closing.amount_paid)
                loan.closed_at = _aware(closing.closed_at)
        logger.info(
            "loan_closed", outcome=closing.outcome, final_stage=closing.final_stage, loan_known=loan is not None
        )


def _insert_once(db: Session, model, key: str, build: Callable[[], object]) -> None:
    if db.scalar(select(model).where(model.key == key)) is None:
        db.add(build())
