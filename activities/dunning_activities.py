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

import dataclasses
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import structlog
from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import exports
from activities.pay_link import make_pay_link
from activities.payloads import (
    ASSIGN_FIELD_VISIT,
    RECORD_ARRANGEMENT,
    RECORD_LEGAL_OUTCOME,
    RECORD_VISIT,
    ArrangementEvent,
    FieldVisitAssignment,
    LegalOutcomeRecord,
    VisitOutcome,
    CLOSE_LOAN,
    ENTER_STAGE,
    OPEN_COMPLAINT,
    PREPARE_LOAN,
    REPORT_TO_BUREAU,
    RECORD_DECISION,
    RECORD_PAYMENT,
    RESOLVE_COMPLAINT,
    SEND_CONTACT,
    ComplaintOpened,
    ComplaintResolved,
    BureauReport,
    ContactOutcome,
    ContactRequest,
    DecisionRecord,
    LoanClosing,
    PaymentRecord,
    PreparedLoan,
    PrepareLoanInput,
    StageEntry,
)
from activities.rendering import TemplateMissing, TemplateRenderer
from channels.base import Channel, OutboundMessage, PermanentSendError, TransientSendError, mask
from db import audit
from db.models import (
    Borrower,
    BureauRecord,
    Complaint,
    Contact,
    FieldVisitRecord,
    LegalCase,
    Loan,
    Payment,
    PlanInstallment,
    PlanRecord,
    PromiseRecord,
)
from db.models import StageEntry as StageEntryRow
from dunning.contract import STAGE_CLOSED
from dunning.compliance import ProfileError
from loaders.config_files import load_profile
from dunning.policy import PolicyError
from loaders.config_files import load_policy
from runtime.settings import Settings

log = structlog.get_logger("activities")

T = TypeVar("T")

# Outbox states after which a message is never sent again for its key.
STATUS_PENDING = "pending"
STATUS_SENT = "sent"
STATUS_FAILED = "failed"
STATUS_SKIPPED = "skipped_no_address"
# The provider is being called: set (and committed) just before the request.
# A retry that finds a row still `sending` cannot know whether the provider
# took the message; for a provider without an idempotency key it does not
# send again but records the row `unconfirmed`, and the provider's status
# callback (the gateway) turns it into `sent` if the message went. A reminder
# lost to a crash is better than a reminder sent twice.
STATUS_SENDING = "sending"
STATUS_UNCONFIRMED = "unconfirmed"
FINAL_STATUSES = frozenset({STATUS_SENT, STATUS_FAILED, STATUS_SKIPPED, STATUS_UNCONFIRMED})
IN_FLIGHT_STATUSES = (STATUS_PENDING, STATUS_SENDING, STATUS_UNCONFIRMED)
# Not sent yet because a compliance cap said "not today"; not final: the same
# key is checked again (and sent, once the cap allows) by a later attempt.
STATUS_DEFERRED = "deferred"
_CONTACTS = Contact.__table__


def attempt_time() -> datetime:
    """Now, by the Temporal server's clock: when this activity attempt started.
    On the time-skipping test server that is its skipped time, so `sent_at`,
    the audit log and the daily call cap follow the workflows' timeline. Outside
    an activity (or in ActivityEnvironment's zero default), the wall clock."""
    try:
        started = activity.info().started_time
    except RuntimeError:
        started = None
    if started is None or started.timestamp() <= 0:
        return datetime.now(timezone.utc)
    return started if started.tzinfo is not None else started.replace(tzinfo=timezone.utc)


def _audit_key(*parts: str) -> str:
    """An audit entry's idempotency key, within the column's 255 characters."""
    key = "/".join(parts)
    if len(key) <= 255:
        return key
    return f"{key[:180]}#{hashlib.sha256(key.encode()).hexdigest()}"


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _bound_log(**fields):
    info = activity.info()
    return log.bind(
        workflow_id=info.workflow_id,
        run_id=info.workflow_run_id,
        activity=info.activity_type,
        attempt=info.attempt,
        **fields,
    )


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


class ArrangementActivities:
    """Plans, promises, field visits and legal outcomes: the records the
    deep stages keep (a mixin of DunningActivities)."""

    @activity.defn(name=RECORD_ARRANGEMENT)
    def record_arrangement(self, event: ArrangementEvent) -> None:
        at = _aware(event.at)

        def work(db: Session) -> bool:
            if audit.has_key(db, _audit_key(event.key)):
                return False  # recorded by an earlier attempt
            family_key = event.key.split(f"/{event.kind}")[0]
            if event.kind == "plan_accepted":
                plan = PlanRecord(
                    key=family_key, loan_id=event.loan_id, workflow_id=event.workflow_id, plan_no=event.number,
                    status="active", total=Decimal(event.amount), currency=event.currency,
                    waived_fees=Decimal(event.waived_fees), waived_interest=Decimal(event.waived_interest),
                    policy=event.policy or None, segment=event.segment or None, days_past_due=event.days_past_due,
                    accepted_at=at,
                )
                db.add(plan)
                db.flush()
                for item in event.schedule or []:
                    db.add(PlanInstallment(
                        plan_id=plan.id, number=int(item["number"]), due_date=date.fromisoformat(item["due_date"]),
                        amount=Decimal(item["amount"]),
                    ))
            elif event.kind.startswith(("plan_", "installment_")):
                plan = db.scalar(select(PlanRecord).where(PlanRecord.key == family_key))
                if plan is not None and event.kind == "installment_paid":
                    row = db.scalar(select(PlanInstallment).where(
                        PlanInstallment.plan_id == plan.id, PlanInstallment.number == event.installment))
                    if row is not None:
                        row.paid_at = at
                elif plan is not None:
                    plan.status, plan.ended_at = event.kind.removeprefix("plan_"), at
            elif event.kind == "promise_made":
                db.add(PromiseRecord(
                    key=family_key, loan_id=event.loan_id, workflow_id=event.workflow_id, promise_no=event.number,
                    amount=Decimal(event.amount), currency=event.currency, by_date=date.fromisoformat(event.due_date),
                    status="open", source=event.source or "borrower", policy=event.policy or None,
                    segment=event.segment or None, made_at=at,
                ))
            else:
                promise = db.scalar(select(PromiseRecord).where(PromiseRecord.key == family_key))
                if promise is not None:
                    promise.status, promise.ended_at = event.kind.removeprefix("promise_"), at
            db.flush()
            audit.append(
                db, "arrangement", event.loan_id, event.workflow_id,
                {"key": event.key, "kind": event.kind, "number": event.number, "amount": event.amount,
                 "currency": event.currency, "due_date": event.due_date, "installment": event.installment,
                 "waived_fees": event.waived_fees, "waived_interest": event.waived_interest, "source": event.source},
                at=at,
                key=_audit_key(event.key),
            )
            return True

        recorded = self._in_transaction(work)
        _bound_log(loan_id=event.loan_id).info("arrangement_recorded", kind=event.kind, number=event.number, new=recorded)

    @activity.defn(name=ASSIGN_FIELD_VISIT)
    def assign_field_visit(self, assignment: FieldVisitAssignment) -> None:
        """The field team's assignment row; they work from the database."""
        at = _aware(assignment.at)

        def work(db: Session) -> bool:
            if not _insert_once(db, FieldVisitRecord, assignment.key, lambda: FieldVisitRecord(
                key=assignment.key, visit_id=assignment.visit_id, loan_id=assignment.loan_id,
                workflow_id=assignment.workflow_id, staff_required=assignment.staff_required,
                days_past_due=assignment.days_past_due, outstanding=Decimal(assignment.outstanding),
                currency=assignment.currency, status="assigned", assigned_at=at,
            )):
                return False
            db.flush()
            audit.append(
                db, "visit", assignment.loan_id, assignment.workflow_id,
                {"visit_id": assignment.visit_id, "action": "assigned", "staff_required": assignment.staff_required,
                 "days_past_due": assignment.days_past_due},
                at=at,
                key=_audit_key(assignment.key, "assigned"),
            )
            return True

        new = self._in_transaction(work)
        _bound_log(loan_id=assignment.loan_id).info("field_visit_assigned", visit_id=assignment.visit_id, new=new)

    @activity.defn(name=RECORD_VISIT)
    def record_visit(self, outcome: VisitOutcome) -> None:
        at = _aware(outcome.at)

        def work(db: Session) -> bool:
            row = db.scalar(select(FieldVisitRecord).where(FieldVisitRecord.visit_id == outcome.visit_id))
            if row is None or row.status == "done":
                return False
            row.status, row.outcome, row.reported_at = "done", outcome.outcome, at
            row.staff_ids = json.dumps(list(outcome.staff_ids))
            db.flush()
            audit.append(
                db, "visit", outcome.loan_id, outcome.workflow_id,
                {"visit_id": outcome.visit_id, "action": "reported", "outcome": outcome.outcome,
                 "staff_ids": list(outcome.staff_ids)},
                at=at,
                key=_audit_key(outcome.key),
            )
            return True

        new = self._in_transaction(work)
        _bound_log(loan_id=outcome.loan_id).info("field_visit_reported", visit_id=outcome.visit_id, outcome=outcome.outcome, new=new)

    @activity.defn(name=RECORD_LEGAL_OUTCOME)
    def record_legal_outcome(self, record: LegalOutcomeRecord) -> None:
        at = _aware(record.at)

        def work(db: Session) -> bool:
            if audit.has_key(db, _audit_key(record.key)):
                return False
            case = db.scalar(select(LegalCase).where(LegalCase.loan_id == record.loan_id).order_by(LegalCase.id.desc()))
            if case is not None:
                case.status, case.outcome_at = record.outcome, at
                case.case_ref = record.case_ref or case.case_ref
            audit.append(
                db, "legal", record.loan_id, record.workflow_id,
                {"outcome": record.outcome, "case_ref": record.case_ref},
                at=at,
                key=_audit_key(record.key),
            )
            return True

        new = self._in_transaction(work)
        _bound_log(loan_id=record.loan_id).info("legal_outcome_recorded", outcome=record.outcome, new=new)


class DunningActivities(ArrangementActivities):
    def __init__(
        self,
        session_factory: sessionmaker[Session],
        channels: dict[str, Channel],
        renderer: TemplateRenderer,
        settings: Settings,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._sessions = session_factory
        self._channels = channels
        self._renderer = renderer
        self._settings = settings
        # Now, as an aware UTC instant: sent_at, the audit log, the call cap.
        self._clock = clock or attempt_time

    def registered(self) -> list:
        """Every activity, for the worker to register."""
        return [
            self.prepare_loan, self.send_contact, self.enter_stage, self.record_payment, self.close_loan,
            self.record_decision, self.open_complaint, self.resolve_complaint, self.report_to_bureau,
            self.record_arrangement, self.assign_field_visit, self.record_visit, self.record_legal_outcome,
        ]

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
            profile = load_profile(policy.profile, self._settings.profiles_dir)
        except (PolicyError, ProfileError) as error:
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
                    profile=profile.model_dump(mode="json"),
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
                profile=profile.model_dump(mode="json"),
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
        # 1. The outbox row, committed before any provider is called, and
        # claimed (`sending`) by this attempt alone.
        claim = self._claim(request, resend_in_doubt=getattr(channel, "idempotent_by_key", False))
        if claim.outcome is not None:
            logger.info("contact_recorded", result=claim.outcome.result, template=request.template)
            return claim.outcome
        message = claim.message
        # 2. The provider. If the worker dies now, the row stays `sending`:
        # the retry re-sends only to a provider that dedupes by key (see
        # STATUS_SENDING); Twilio's status callback reconciles the rest.
        try:
            receipt = channel.send(message)
        except PermanentSendError as error:
            detail = _scrub(str(error), message.recipient)
            logger.warning("contact_refused", error=detail)
            return self._finish(request.key, status=STATUS_FAILED, error=str(error))
        except Exception as error:
            # TransientSendError: the provider said it did not take the
            # message (429, 5xx), so the row goes back to `pending` and
            # Temporal's retry sends it. Anything else (a timeout, a bug) may
            # have reached the provider: the row stays `sending`, in doubt.
            detail = _scrub(str(error), message.recipient)
            self._count_attempt(request.key, detail, back_to_pending=isinstance(error, TransientSendError))
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

    def _claim(self, request: ContactRequest, resend_in_doubt: bool = True) -> _Claim:
        """Write the outbox row (or find the one an earlier attempt wrote) and
        mark it `sending` for this attempt. A row that ends here (skipped, no
        address, unconfirmed) is audited in the same transaction; a `deferred`
        row is checked again."""
        for _ in range(3):
            with self._sessions() as db:
                row = db.scalar(select(Contact).where(Contact.key == request.key))
                if row is not None and row.status in FINAL_STATUSES:
                    return _Claim(None, _outcome(row))
                if row is not None and row.status == STATUS_SENDING and not resend_in_doubt:
                    return _Claim(None, self._finish(
                        request.key, status=STATUS_UNCONFIRMED, count=False,
                        error="interrupted while the provider was called; not sent again (the provider has no "
                              "idempotency key); its status callback confirms it if it went",
                    ))
                if row is not None and row.status in (STATUS_PENDING, STATUS_SENDING):
                    if self._mark_sending(db, request.key, row.status):
                        return _Claim(self._message(row), None)
                    continue  # a concurrent attempt claimed it first
                try:
                    claim = self._write_row(db, request, row)
                    if claim is None:  # a concurrent attempt moved the deferred row on
                        db.rollback()
                        continue
                    if claim.message is not None:
                        db.flush()
                        db.execute(update(_CONTACTS).where(_CONTACTS.c.key == request.key).values(status=STATUS_SENDING))
                    db.commit()
                    return claim
                except IntegrityError:  # a concurrent attempt wrote it a moment ago
                    db.rollback()
                    continue
        raise RuntimeError(f"outbox row {request.key} could neither be written nor read")

    def _write_row(self, db: Session, request: ContactRequest, row: Contact | None) -> _Claim | None:
        """A new outbox row, or a deferred one brought up to date: first the
        voice cap across the borrower's loans, then the rendering."""
        cap = request.voice_daily_cap if request.channel == "voice" else None
        if cap:
            # PostgreSQL: one borrower's capped calls take turns on their
            # directory row. SQLite ignores FOR UPDATE; there the write below
            # takes the database's write lock before the count.
            borrower = db.scalar(
                select(Borrower).where(Borrower.borrower_id == request.borrower_id).with_for_update()
            )
            if borrower is not None:
                if row is None:
                    row = Contact(
                        key=request.key, workflow_id=request.workflow_id, loan_id=request.loan_id,
                        borrower_id=request.borrower_id, stage=request.stage, channel=request.channel,
                        template=request.template, language=borrower.language, status=STATUS_DEFERRED,
                        body_text="", attempts=0, created_at=self._clock(),
                    )
                    db.add(row)
                    db.flush()
                else:
                    stamped = db.execute(
                        update(_CONTACTS)
                        .where(_CONTACTS.c.key == request.key, _CONTACTS.c.status == STATUS_DEFERRED)
                        .values(status=STATUS_DEFERRED)
                    )
                    if stamped.rowcount != 1:
                        return None
                calls, next_midnight = self._voice_calls_today(db, borrower, request.key)
                if calls >= cap:
                    detail = f"voice cap: {calls} calls today across the borrower's loans"
                    row.status, row.error = STATUS_DEFERRED, detail
                    return _Claim(None, ContactOutcome(
                        key=request.key, channel=request.channel, result=STATUS_DEFERRED, detail=detail,
                        not_before=next_midnight.isoformat(),
                    ))
        fresh = self._new_row(db, request)
        if row is None:
            row = fresh
            row.created_at = self._clock()
            db.add(row)
        else:  # the deferred row, now rendered with today's amounts
            for column in (
                "stage", "template", "language", "recipient", "subject", "body_text", "body_html", "status", "error",
            ):
                setattr(row, column, getattr(fresh, column))
        if row.status in FINAL_STATUSES:
            db.flush()
            self._audit_contact(db, row)
            return _Claim(None, _outcome(row))
        return _Claim(self._message(row), None)

    def _voice_calls_today(self, db: Session, borrower: Borrower, key: str) -> tuple[int, datetime]:
        """The borrower's voice calls (other than `key`) on this local day in
        their zone, across all their loans: sent ones, and ones in flight
        (pending) since the day began; and the next local midnight."""
        zone = _zone(borrower.time_zone)
        today = self._clock().astimezone(zone).date()
        start = datetime.combine(today, time(0), tzinfo=zone)
        end = datetime.combine(today + timedelta(days=1), time(0), tzinfo=zone)
        start_utc, end_utc = start.astimezone(timezone.utc), end.astimezone(timezone.utc)
        calls = db.scalar(
            select(func.count()).select_from(Contact).where(
                Contact.borrower_id == borrower.borrower_id,
                Contact.channel == "voice",
                Contact.key != key,
                or_(
                    and_(Contact.status == STATUS_SENT, Contact.sent_at >= start_utc, Contact.sent_at < end_utc),
                    # In flight or in doubt counts too: a call that may have rung.
                    and_(Contact.status.in_(IN_FLIGHT_STATUSES), Contact.created_at >= start_utc, Contact.created_at < end_utc),
                ),
            )
        )
        return calls or 0, end

    def _audit_contact(self, db: Session, row: Contact) -> None:
        audit_contact(db, row, row.sent_at or self._clock())

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
            # The templates format it: |money(currency). A plan's message
            # states its installment and that installment's date instead.
            "amount": Decimal(request.message_amount or request.outstanding),
            "currency": request.currency,
            "due_date": date.fromisoformat(request.message_due_date or request.due_date),
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
            category=row.stage,
        )

    def _mark_sending(self, db: Session, key: str, expected: str) -> bool:
        """Claim a pending (or in-doubt, idempotent) row for this attempt."""
        moved = db.execute(
            update(_CONTACTS).where(_CONTACTS.c.key == key, _CONTACTS.c.status == expected).values(status=STATUS_SENDING)
        )
        db.commit()
        return moved.rowcount == 1

    def _finish(
        self, key: str, status: str, provider: str = "", message_id: str = "", error: str = "", count: bool = True
    ) -> ContactOutcome:
        def work(db: Session) -> ContactOutcome:
            row = db.scalar(select(Contact).where(Contact.key == key))
            previous = row.status
            if previous in FINAL_STATUSES and status == STATUS_UNCONFIRMED:
                return _outcome(row)  # the provider's callback confirmed it meanwhile
            row.status, row.attempts = status, row.attempts + (1 if count else 0)
            if status == STATUS_UNCONFIRMED:
                row.error = error[:2000]
                db.flush()
                self._audit_contact(db, row)
                return _outcome(row)
            row.provider, row.provider_message_id = provider or None, message_id or None
            row.error = error[:2000] or None
            if status == STATUS_SENT:
                row.sent_at = self._clock()
            if previous != status:  # a concurrent attempt that finished first was audited already
                db.flush()
                self._audit_contact(db, row)
            return _outcome(row)

        return self._in_transaction(work)

    def _count_attempt(self, key: str, error: str, back_to_pending: bool) -> None:
        with self._sessions.begin() as db:
            row = db.scalar(select(Contact).where(Contact.key == key))
            row.attempts, row.error = row.attempts + 1, error[:2000]
            if back_to_pending and row.status == STATUS_SENDING:
                row.status = STATUS_PENDING

    # ------------------------------------------------------------- enter_stage

    @activity.defn(name=ENTER_STAGE)
    def enter_stage(self, entry: StageEntry) -> None:
        logger = _bound_log(loan_id=entry.loan_id, stage=entry.stage)

        def work(db: Session) -> None:
            loan = db.get(Loan, entry.loan_id)
            previous = loan.stage if loan is not None else ""
            changed = loan is not None and loan.stage not in (STAGE_CLOSED, entry.stage)
            if loan is not None and loan.stage != STAGE_CLOSED:
                loan.stage = entry.stage
                loan.max_days_past_due = max(loan.max_days_past_due or 0, entry.days_past_due)
                if entry.segment:
                    loan.segment = entry.segment
            _insert_once(db, StageEntryRow, entry.key, lambda: StageEntryRow(
                key=entry.key, loan_id=entry.loan_id, stage=entry.stage, days_past_due=entry.days_past_due,
                segment=entry.segment or None, outstanding=Decimal(entry.outstanding), entered_at=self._clock(),
            ))
            record = ""
            # The bureau record is not opened here: its time is the compliance
            # profile's (report_to_bureau), which may wait after the stage starts.
            if entry.stage == "legal":
                if _insert_once(db, LegalCase, entry.key, lambda: LegalCase(
                    key=entry.key, loan_id=entry.loan_id, workflow_id=entry.workflow_id,
                    days_past_due=entry.days_past_due, outstanding=Decimal(entry.outstanding), currency=entry.currency,
                )):
                    record = "legal_case"
                    db.flush()
                    case = db.scalar(select(LegalCase).where(LegalCase.key == entry.key))
                    # The case file for the lawyers, from the records as they are now.
                    case.documents = exports.write_legal_documents(db, self._settings.export_dir, entry.loan_id)
            # Only a change is audited: a retry finds the loan at this stage
            # already (or, without a loan row, its entry by key).
            if changed or record or loan is None:
                db.flush()
                audit.append(
                    db, "stage", entry.loan_id, entry.workflow_id,
                    {
                        "key": entry.key, "stage": entry.stage, "previous_stage": previous,
                        "days_past_due": entry.days_past_due, "outstanding": entry.outstanding,
                        "currency": entry.currency, "record": record,
                    },
                    at=self._clock(),
                    key=_audit_key(entry.key, "stage"),
                )

        self._in_transaction(work)
        logger.info("stage_recorded", days_past_due=entry.days_past_due)

    # -------------------------------------------------------- report_to_bureau

    @activity.defn(name=REPORT_TO_BUREAU)
    def report_to_bureau(self, report: BureauReport) -> None:
        """One Metro 2-like record: a row, then the cycle's export file
        rewritten from the rows (so a retry or a crash never leaves a line
        twice or missing in it)."""
        cycle = report.cycle or self._clock().strftime("%Y-%m")

        def work(db: Session) -> bool:
            if _insert_once(db, BureauRecord, report.key, lambda: BureauRecord(
                key=report.key, loan_id=report.loan_id, workflow_id=report.workflow_id,
                days_past_due=report.days_past_due, balance=Decimal(report.outstanding), currency=report.currency,
                kind=report.kind, cycle=cycle, account_status=report.account_status or None,
                special_comment=report.special_comment or None, compliance_code=report.compliance_code or None,
                first_delinquency=date.fromisoformat(report.first_delinquency) if report.first_delinquency else None,
                amount_past_due=Decimal(report.amount_past_due) if report.amount_past_due else None,
                original_amount=Decimal(report.original_amount) if report.original_amount else None,
                reported_on=date.fromisoformat(report.reported_on) if report.reported_on else None,
                created_at=self._clock(),
            )):
                db.flush()
                audit.append(
                    db, "stage", report.loan_id, report.workflow_id,
                    {"key": report.key, "record": "bureau_record", "kind": report.kind, "cycle": cycle,
                     "account_status": report.account_status, "compliance_code": report.compliance_code,
                     "days_past_due": report.days_past_due, "outstanding": report.outstanding, "currency": report.currency},
                    at=self._clock(),
                    key=_audit_key(report.key, "bureau"),
                )
                return True
            return False

        inserted = self._in_transaction(work)
        with self._sessions() as db:
            path = exports.write_bureau_cycle(db, self._settings.export_dir, cycle)
        _bound_log(loan_id=report.loan_id).info(
            "bureau_reported", kind=report.kind, cycle=cycle, status=report.account_status, new=inserted, file=str(path)
        )

    # ---------------------------------------------------------- record_payment

    @activity.defn(name=RECORD_PAYMENT)
    def record_payment(self, record: PaymentRecord) -> None:
        # A bad payment is kept as it came, but made storable: a lone
        # surrogate or a NUL (which PostgreSQL refuses) would fail the write
        # for ever and hold the loan up behind it.
        record = dataclasses.replace(record, **{
            name: _storable(getattr(record, name)) for name in ("key", "payment_id", "amount", "currency", "paid_at", "reason")
        })
        logger = _bound_log(loan_id=record.loan_id, payment_id=record.payment_id)

        def work(db: Session) -> None:
            inserted = _insert_once(db, Payment, record.key, lambda: Payment(
                key=record.key, loan_id=record.loan_id, workflow_id=record.workflow_id,
                payment_id=record.payment_id, amount=record.amount, currency=record.currency,
                paid_at=record.paid_at, applied=record.applied, reason=record.reason or None,
            ))
            if not inserted:  # a retry: recorded (and audited) the first time
                return
            db.flush()
            audit.append(
                db, "payment", record.loan_id, record.workflow_id,
                {
                    "key": record.key, "payment_id": record.payment_id, "amount": record.amount,
                    "currency": record.currency, "paid_at": record.paid_at, "applied": record.applied,
                    "reason": record.reason,
                },
                at=self._clock(),
                key=_audit_key(record.key, "payment"),
            )
            if not record.applied:
                return
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

        def work(db: Session) -> bool:
            loan = db.get(Loan, closing.loan_id)
            changed = loan is None or loan.stage != STAGE_CLOSED or loan.outcome != closing.outcome
            if loan is not None:
                loan.stage, loan.outcome = STAGE_CLOSED, closing.outcome
                loan.amount_paid = Decimal(closing.amount_paid)
                loan.closed_at = _aware(closing.closed_at)
                loan.max_days_past_due = max(loan.max_days_past_due or 0, closing.days_past_due)
                loan.segment = closing.segment or loan.segment
                loan.waived = Decimal(closing.waived)
                loan.fees_charged = Decimal(closing.fees_charged)
                loan.interest_charged = Decimal(closing.interest_charged)
            if changed:  # without a loan row, the entry's key keeps a retry from a second one
                audit.append(
                    db, "closing", closing.loan_id, closing.workflow_id,
                    {
                        "outcome": closing.outcome, "amount_paid": closing.amount_paid,
                        "outstanding": closing.outstanding, "final_stage": closing.final_stage,
                        "closed_at": closing.closed_at,
                    },
                    at=_aware(closing.closed_at),
                    key=_audit_key(closing.workflow_id, "closing", closing.closed_at),
                )
            return loan is not None

        loan_known = self._in_transaction(work)
        logger.info("loan_closed", outcome=closing.outcome, final_stage=closing.final_stage, loan_known=loan_known)

    # --------------------------------------------------------- record_decision

    @activity.defn(name=RECORD_DECISION)
    def record_decision(self, record: DecisionRecord) -> None:
        """A compliance decision (kind `decision`: a contact postponed or
        skipped, the rule and why) or an operator action (kind `operator`:
        pause, resume, opt_out, dispute...), appended once per key."""
        logger = _bound_log(loan_id=record.loan_id, kind=record.kind, rule=record.rule)
        if record.kind not in ("decision", "operator"):
            raise ApplicationError(
                f"kind: {record.kind!r} is not 'decision' or 'operator'", type="InvalidDecision", non_retryable=True
            )

        def work(db: Session) -> None:
            audit.append(
                db, record.kind, record.loan_id, record.workflow_id,
                {
                    "key": record.key, "rule": record.rule, "reason": record.reason[:500],
                    "channel": record.channel, "step_key": record.step_key,
                },
                at=_aware(record.at) if record.at else self._clock(),
                key=_audit_key(record.key),
            )

        self._in_transaction(work)
        logger.info("decision_recorded")

    # ------------------------------------------------------------- complaints

    @activity.defn(name=OPEN_COMPLAINT)
    def open_complaint(self, opened: ComplaintOpened) -> None:
        """The complaint record, open for internal review; once per loan and id."""
        logger = _bound_log(loan_id=opened.loan_id, complaint_id=opened.complaint_id)
        at = _aware(opened.at) if opened.at else self._clock()

        def work(db: Session) -> bool:
            if _complaint(db, opened.loan_id, opened.complaint_id) is not None:
                return False
            db.add(Complaint(
                key=opened.key, complaint_id=opened.complaint_id, loan_id=opened.loan_id,
                workflow_id=opened.workflow_id, category=opened.category[:32], opened_at=at, status="open",
            ))
            db.flush()
            audit.append(
                db, "complaint", opened.loan_id, opened.workflow_id,
                {"complaint_id": opened.complaint_id, "action": "opened", "category": opened.category},
                at=at,
                key=_audit_key(opened.key, "opened"),
            )
            return True

        logger.info("complaint_recorded", opened=self._in_transaction(work))

    @activity.defn(name=RESOLVE_COMPLAINT)
    def resolve_complaint(self, resolved: ComplaintResolved) -> None:
        """A reviewer's decision on an open complaint; once."""
        logger = _bound_log(loan_id=resolved.loan_id, complaint_id=resolved.complaint_id)
        at = _aware(resolved.at) if resolved.at else self._clock()

        def work(db: Session) -> bool:
            row = _complaint(db, resolved.loan_id, resolved.complaint_id)
            if row is None:  # opened before this audit existed: keep the decision anyway
                row = Complaint(
                    key=f"{resolved.workflow_id}/complaint/{resolved.complaint_id}", complaint_id=resolved.complaint_id,
                    loan_id=resolved.loan_id, workflow_id=resolved.workflow_id, category="other", opened_at=at,
                    status="open",
                )
                db.add(row)
            if row.status == "resolved":
                return False
            row.status, row.resolution = "resolved", "upheld" if resolved.upheld else "rejected"
            row.resolved_at, row.reviewer_id = at, resolved.reviewer_id
            db.flush()
            audit.append(
                db, "complaint", resolved.loan_id, resolved.workflow_id,
                {
                    "complaint_id": resolved.complaint_id, "action": "resolved", "resolution": row.resolution,
                    "reviewer_id": resolved.reviewer_id,
                },
                at=at,
                key=_audit_key(row.key, "resolved"),
            )
            return True

        logger.info("complaint_recorded", resolved=self._in_transaction(work), upheld=resolved.upheld)


def _insert_once(db: Session, model, key: str, build: Callable[[], object]) -> bool:
    """Add the row unless one with `key` exists; True when it was added."""
    if db.scalar(select(model).where(model.key == key)) is None:
        db.add(build())
        return True
    return False


def _storable(text: str) -> str:
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


def _complaint(db: Session, loan_id: str, complaint_id: str) -> Complaint | None:
    return db.scalar(select(Complaint).where(Complaint.loan_id == loan_id, Complaint.complaint_id == complaint_id))


def audit_contact(db: Session, row: Contact, at: datetime) -> None:
    """The contact's audit entry: ids and codes, and the SHA-256 of the
    message instead of the message (it holds the borrower's name). Also
    appended by the gateway when a provider's callback confirms a send."""
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
            "detail": _scrub(row.error or "", row.recipient)[:200],
        },
        at=at,
        key=_audit_key(row.key, "contact", row.status),
    )
