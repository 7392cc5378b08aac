"""The record writers: stages, payments, the closing, decisions, complaints,
the credit bureau, and the deep stages' plans, promises, field visits and
legal outcomes.

Each has one shape (`RecordWriters._write`): in one transaction, write the
record once by its key and name its audit entry, append that entry beside it,
and log whether this attempt wrote it. Temporal may retry any of them, or run
one again after a worker crash, without a second row or audit entry appearing.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import Integer, String, Text, bindparam, case, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import exports
from activities.context import ActivityContext, aware, bound_log
from activities.payloads import (
    ASSIGN_FIELD_VISIT,
    CLOSE_LOAN,
    ENTER_STAGE,
    OPEN_COMPLAINT,
    RECORD_ARRANGEMENT,
    RECORD_DECISION,
    RECORD_LEGAL_OUTCOME,
    RECORD_PAYMENT,
    RECORD_VISIT,
    REPORT_TO_BUREAU,
    RESOLVE_COMPLAINT,
    RECORD_PAYMENT_REVERSAL,
    REOPEN_LOAN,
    ArrangementEvent,
    BureauReport,
    ComplaintOpened,
    ComplaintResolved,
    DecisionRecord,
    FieldVisitAssignment,
    LegalOutcomeRecord,
    LoanClosing,
    PaymentRecord,
    PaymentReversalRecord,
    ReopeningRecord,
    StageEntry,
    VisitOutcome,
)
from db import audit
from db.models import (
    BureauRecord,
    Complaint,
    FieldVisitRecord,
    LegalCase,
    Loan,
    Payment,
    PaymentReversal,
    PlanInstallment,
    PlanRecord,
    PromiseRecord,
)
from db.models import StageEntry as StageEntryRow
from db.models import utcnow
from db.write_once import insert_once
from dunning.contract import STAGE_CLOSED
from dunning.keys import arrangement_record_key, audit_key, complaint_key, payment_key

_PAYMENTS = Payment.__table__
_LOANS = Loan.__table__


@dataclass(frozen=True)
class Entry:
    """The audit entry a record writer appends beside its record."""

    kind: str
    key: str
    payload: dict


class RecordWriters:
    def __init__(self, context: ActivityContext) -> None:
        self._context = context

    def registered(self) -> list:
        return [
            self.enter_stage, self.record_payment, self.close_loan, self.record_decision, self.open_complaint,
            self.resolve_complaint, self.report_to_bureau, self.record_arrangement, self.assign_field_visit,
            self.record_visit, self.record_legal_outcome, self.record_payment_reversal, self.reopen_loan,
        ]

    def _write(
        self, loan_id: str, workflow_id: str, at: datetime, work: Callable[[Session], Entry | None], event: str,
        **log_fields,
    ) -> bool:
        """The record writers' one shape: `work` writes the record (once by its
        key) and names its audit entry, or returns None when there is nothing
        new (an earlier attempt wrote it); the entry is appended in the same
        transaction, which runs once more if a concurrent attempt inserted the
        same key first. True when this attempt wrote it."""

        new = self._context.in_transaction(lambda db: _append(db, loan_id, workflow_id, at, work))
        bound_log(loan_id=loan_id).info(event, new=new, **log_fields)
        return new

    # ------------------------------------------------------------ the stages

    @activity.defn(name=ENTER_STAGE)
    def enter_stage(self, entry: StageEntry) -> None:
        at = self._context.clock()

        def work(db: Session) -> Entry | None:
            loan = db.get(Loan, entry.loan_id)
            previous = loan.stage if loan is not None else ""
            changed = loan is not None and loan.stage not in (STAGE_CLOSED, entry.stage)
            if loan is not None and loan.stage != STAGE_CLOSED:
                loan.stage = entry.stage
                loan.max_days_past_due = max(loan.max_days_past_due or 0, entry.days_past_due)
                if entry.segment:
                    loan.segment = entry.segment
            insert_once(db, StageEntryRow, entry.key, lambda: StageEntryRow(
                key=entry.key, loan_id=entry.loan_id, stage=entry.stage, days_past_due=entry.days_past_due,
                segment=entry.segment or None, outstanding=Decimal(entry.outstanding), entered_at=at,
            ))
            # The bureau record is not opened here: its time is the compliance
            # profile's (report_to_bureau), which may wait after the stage starts.
            record = "legal_case" if entry.stage == "legal" and self._open_legal_case(db, entry) else ""
            # Only a change is audited: a retry finds the loan at this stage
            # already (or, without a loan row, its entry by key).
            if not (changed or record or loan is None):
                return None
            return Entry("stage", audit_key(entry.key, "stage"), {
                "key": entry.key, "stage": entry.stage, "previous_stage": previous,
                "days_past_due": entry.days_past_due, "outstanding": entry.outstanding,
                "currency": entry.currency, "record": record,
            })

        self._write(entry.loan_id, entry.workflow_id, at, work, "stage_recorded",
                    stage=entry.stage, days_past_due=entry.days_past_due)

    def _open_legal_case(self, db: Session, entry: StageEntry) -> bool:
        """The loan's legal case, with the case file for the lawyers written
        from the records as they are now; False when it was opened before."""
        if not insert_once(db, LegalCase, entry.key, lambda: LegalCase(
            key=entry.key, loan_id=entry.loan_id, workflow_id=entry.workflow_id,
            days_past_due=entry.days_past_due, outstanding=Decimal(entry.outstanding), currency=entry.currency,
        )):
            return False
        db.flush()
        case = db.scalar(select(LegalCase).where(LegalCase.key == entry.key))
        case.documents = exports.write_legal_documents(db, self._context.settings.export_dir, entry.loan_id)
        return True

    @activity.defn(name=REPORT_TO_BUREAU)
    def report_to_bureau(self, report: BureauReport) -> None:
        """One Metro 2-like record: a row, then the cycle's export file
        rewritten from the rows (so a retry or a crash never leaves a line
        twice or missing in it)."""
        at = self._context.clock()
        cycle = report.cycle or at.strftime("%Y-%m")

        def work(db: Session) -> Entry | None:
            if not insert_once(db, BureauRecord, report.key, lambda: BureauRecord(
                key=report.key, loan_id=report.loan_id, workflow_id=report.workflow_id,
                days_past_due=report.days_past_due, balance=Decimal(report.outstanding), currency=report.currency,
                kind=report.kind, cycle=cycle, account_status=report.account_status or None,
                special_comment=report.special_comment or None, compliance_code=report.compliance_code or None,
                first_delinquency=date.fromisoformat(report.first_delinquency) if report.first_delinquency else None,
                amount_past_due=Decimal(report.amount_past_due) if report.amount_past_due else None,
                original_amount=Decimal(report.original_amount) if report.original_amount else None,
                reported_on=date.fromisoformat(report.reported_on) if report.reported_on else None,
                payment_rating=report.payment_rating or None,
                consumer_information_indicator=report.consumer_information_indicator or None,
                ecoa_code=report.ecoa_code or None,
                created_at=at,
            )):
                return None
            return Entry("stage", audit_key(report.key, "bureau"), {
                "key": report.key, "record": "bureau_record", "kind": report.kind, "cycle": cycle,
                "account_status": report.account_status, "compliance_code": report.compliance_code,
                "days_past_due": report.days_past_due, "outstanding": report.outstanding, "currency": report.currency,
            })

        self._write(report.loan_id, report.workflow_id, at, work, "bureau_reported",
                    kind=report.kind, cycle=cycle, status=report.account_status)
        with self._context.sessions() as db:
            written = exports.write_metro2_cycle(db, self._context.settings.export_dir, cycle, self._context.settings,
                                                 created=at.date())
        # Ids and field names only: a refusal never carries the values.
        bound_log(loan_id=report.loan_id).info(
            "bureau_cycle_written", cycle=cycle, file=str(written.path), accounts=len(written.accounts),
            refused=[refusal.as_dict() for refusal in written.refused],
        )

    # ------------------------------------------------------ money and the end

    @activity.defn(name=RECORD_PAYMENT)
    def record_payment(self, record: PaymentRecord) -> None:
        record = _storable_payment(record)
        self._write(record.loan_id, record.workflow_id, self._context.clock(), _payment_work(record), "payment_recorded",
                    payment_id=record.payment_id, applied=record.applied)

    @activity.defn(name=CLOSE_LOAN)
    def close_loan(self, closing: LoanClosing) -> None:
        at = aware(closing.closed_at)
        payments = [_storable_payment(p) for p in closing.payments]
        received = self._context.clock()

        def transaction(db: Session) -> list[bool]:
            # The payments that closed the loan and the close: one
            # transaction (issue 19, item 2), each with its audit entry.
            if any((p.loan_id, p.workflow_id) != (closing.loan_id, closing.workflow_id) for p in payments):
                done = [_append(db, p.loan_id, p.workflow_id, received, _payment_work(p)) for p in payments]
                return [*done, _append(db, closing.loan_id, closing.workflow_id, at, _closing_work(closing, at))]
            return _close_in_one_turn(db, closing, payments, at, received)

        new = self._context.in_transaction(transaction)
        for payment, written in zip(payments, new):
            bound_log(loan_id=payment.loan_id).info("payment_recorded", new=written, payment_id=payment.payment_id,
                                                    applied=payment.applied)
        bound_log(loan_id=closing.loan_id).info("loan_closed", new=new[-1], outcome=closing.outcome,
                                                final_stage=closing.final_stage)

    @activity.defn(name=RECORD_PAYMENT_REVERSAL)
    def record_payment_reversal(self, record: PaymentReversalRecord) -> None:
        """A payment reversed (issue 18, item 3): its row, once by key; the
        payment marked reversed (the loan's amount_paid leaves it out); one
        audit entry (kind `payment`, action `reversed`)."""
        at = self._context.clock()
        reversed_at = aware(record.reversed_at)

        def work(db: Session) -> Entry | None:
            if not insert_once(db, PaymentReversal, record.key, lambda: PaymentReversal(
                key=record.key, loan_id=record.loan_id, workflow_id=record.workflow_id, payment_id=record.payment_id,
                amount=Decimal(record.amount), currency=record.currency, fees=Decimal(record.fees),
                interest=Decimal(record.interest), principal=Decimal(record.principal),
                returned_payment_fee=Decimal(record.returned_payment_fee), reason=record.reason[:200],
                reversed_at=reversed_at, reopened=record.reopened, recorded_at=at,
            )):
                return None  # a retry: recorded (and audited) the first time
            payment = db.scalar(select(Payment).where(
                Payment.key == payment_key(record.workflow_id, record.payment_id), Payment.applied.is_(True)))
            if payment is not None and payment.reversed_at is None:
                payment.reversed_at = reversed_at
            loan = db.get(Loan, record.loan_id)
            if loan is not None:
                db.flush()
                loan.amount_paid = _amount_paid(db, record.loan_id)
            return Entry("payment", audit_key(record.key), {
                "key": record.key, "action": "reversed", "payment_id": record.payment_id, "amount": record.amount,
                "currency": record.currency, "fees": record.fees, "interest": record.interest,
                "principal": record.principal, "overpaid": record.overpaid,
                "returned_payment_fee": record.returned_payment_fee, "reason": record.reason[:200],
                "reversed_at": record.reversed_at, "reopened": record.reopened, "outstanding": record.outstanding,
            })

        self._write(record.loan_id, record.workflow_id, at, work, "payment_reversal_recorded",
                    payment_id=record.payment_id, reopened=record.reopened)

    @activity.defn(name=REOPEN_LOAN)
    def reopen_loan(self, record: ReopeningRecord) -> None:
        """A loan closed `repaid` reopened by a new run (a payment reversed):
        its row open again at the stage it closed in, audited (kind
        `closing`, action `reopened`); once per run, by key."""
        at = aware(record.at)

        def work(db: Session) -> Entry | None:
            if audit.has_key(db, audit_key(record.key)):
                return None  # reopened by an earlier attempt
            loan = db.get(Loan, record.loan_id)
            if loan is not None:
                loan.outcome, loan.closed_at, loan.reopened_at = None, None, at
                loan.stage = record.stage
            return Entry("closing", audit_key(record.key), {
                "key": record.key, "action": "reopened", "previous_outcome": record.previous_outcome,
                "payment_id": record.payment_id, "reason": record.reason[:200], "stage": record.stage,
                "days_past_due": record.days_past_due,
            })

        self._write(record.loan_id, record.workflow_id, at, work, "loan_reopened",
                    payment_id=record.payment_id, stage=record.stage)

    # -------------------------------------------- decisions and complaints

    @activity.defn(name=RECORD_DECISION)
    def record_decision(self, record: DecisionRecord) -> None:
        """A compliance decision (kind `decision`: a contact postponed or
        skipped, the rule and why) or an operator action (kind `operator`:
        pause, resume, opt_out, dispute...), appended once per key."""
        if record.kind not in ("decision", "operator"):
            raise ApplicationError(
                f"kind: {record.kind!r} is not 'decision' or 'operator'", type="InvalidDecision", non_retryable=True
            )
        entry = Entry(record.kind, audit_key(record.key), {
            "key": record.key, "rule": record.rule, "reason": record.reason[:500],
            "channel": record.channel, "step_key": record.step_key,
        })
        at = aware(record.at) if record.at else self._context.clock()
        self._write(record.loan_id, record.workflow_id, at, lambda db: entry, "decision_recorded",
                    kind=record.kind, rule=record.rule)

    @activity.defn(name=OPEN_COMPLAINT)
    def open_complaint(self, opened: ComplaintOpened) -> None:
        """The complaint record, open for internal review; once per loan and id."""
        at = aware(opened.at) if opened.at else self._context.clock()

        def work(db: Session) -> Entry | None:
            if _complaint(db, opened.loan_id, opened.complaint_id) is not None:
                return None
            db.add(Complaint(
                key=opened.key, complaint_id=opened.complaint_id, loan_id=opened.loan_id,
                workflow_id=opened.workflow_id, category=opened.category[:32], opened_at=at, status="open",
            ))
            return Entry("complaint", audit_key(opened.key, "opened"), {
                "complaint_id": opened.complaint_id, "action": "opened", "category": opened.category,
            })

        self._write(opened.loan_id, opened.workflow_id, at, work, "complaint_recorded",
                    complaint_id=opened.complaint_id, action="opened")

    @activity.defn(name=RESOLVE_COMPLAINT)
    def resolve_complaint(self, resolved: ComplaintResolved) -> None:
        """A reviewer's decision on an open complaint; once."""
        at = aware(resolved.at) if resolved.at else self._context.clock()

        def work(db: Session) -> Entry | None:
            row = _complaint(db, resolved.loan_id, resolved.complaint_id)
            if row is None:  # opened before this audit existed: keep the decision anyway
                row = Complaint(
                    key=complaint_key(resolved.workflow_id, resolved.complaint_id),
                    complaint_id=resolved.complaint_id, loan_id=resolved.loan_id, workflow_id=resolved.workflow_id,
                    category="other", opened_at=at, status="open",
                )
                db.add(row)
            if row.status == "resolved":
                return None
            row.status, row.resolution = "resolved", "upheld" if resolved.upheld else "rejected"
            row.resolved_at, row.reviewer_id = at, resolved.reviewer_id
            return Entry("complaint", audit_key(row.key, "resolved"), {
                "complaint_id": resolved.complaint_id, "action": "resolved", "resolution": row.resolution,
                "reviewer_id": resolved.reviewer_id,
            })

        self._write(resolved.loan_id, resolved.workflow_id, at, work, "complaint_recorded",
                    complaint_id=resolved.complaint_id, action="resolved", upheld=resolved.upheld)

    # ------------------------- the deep stages: plans, promises, visits, courts

    @activity.defn(name=RECORD_ARRANGEMENT)
    def record_arrangement(self, event: ArrangementEvent) -> None:
        at = aware(event.at)

        def work(db: Session) -> Entry | None:
            if audit.has_key(db, audit_key(event.key)):
                return None  # recorded by an earlier attempt
            _apply_arrangement(db, event, at)
            payload = {
                "key": event.key, "kind": event.kind, "number": event.number, "amount": event.amount,
                "currency": event.currency, "due_date": event.due_date, "installment": event.installment,
                "waived_fees": event.waived_fees, "waived_interest": event.waived_interest, "source": event.source,
            }
            if event.kind.startswith("settlement_"):
                # A settlement's record is this entry (issue 18, item 4): who
                # proposed and decided it, its discount, what was written off.
                payload.update(agent_id=event.agent_id, approver_id=event.approver_id, discount=event.discount,
                               waived=event.waived, days_past_due=event.days_past_due, segment=event.segment)
            return Entry("arrangement", audit_key(event.key), payload)

        self._write(event.loan_id, event.workflow_id, at, work, "arrangement_recorded",
                    kind=event.kind, number=event.number)

    @activity.defn(name=ASSIGN_FIELD_VISIT)
    def assign_field_visit(self, assignment: FieldVisitAssignment) -> None:
        """The field team's assignment row; they work from the database."""
        at = aware(assignment.at)

        def work(db: Session) -> Entry | None:
            if not insert_once(db, FieldVisitRecord, assignment.key, lambda: FieldVisitRecord(
                key=assignment.key, visit_id=assignment.visit_id, loan_id=assignment.loan_id,
                workflow_id=assignment.workflow_id, staff_required=assignment.staff_required,
                days_past_due=assignment.days_past_due, outstanding=Decimal(assignment.outstanding),
                currency=assignment.currency, status="assigned", assigned_at=at,
            )):
                return None
            return Entry("visit", audit_key(assignment.key, "assigned"), {
                "visit_id": assignment.visit_id, "action": "assigned", "staff_required": assignment.staff_required,
                "days_past_due": assignment.days_past_due,
            })

        self._write(assignment.loan_id, assignment.workflow_id, at, work, "field_visit_assigned",
                    visit_id=assignment.visit_id)

    @activity.defn(name=RECORD_VISIT)
    def record_visit(self, outcome: VisitOutcome) -> None:
        at = aware(outcome.at)

        def work(db: Session) -> Entry | None:
            row = db.scalar(select(FieldVisitRecord).where(FieldVisitRecord.visit_id == outcome.visit_id))
            if row is None or row.status == "done":
                return None
            row.status, row.outcome, row.reported_at = "done", outcome.outcome, at
            row.staff_ids = json.dumps(list(outcome.staff_ids))
            return Entry("visit", audit_key(outcome.key), {
                "visit_id": outcome.visit_id, "action": "reported", "outcome": outcome.outcome,
                "staff_ids": list(outcome.staff_ids),
            })

        self._write(outcome.loan_id, outcome.workflow_id, at, work, "field_visit_reported",
                    visit_id=outcome.visit_id, outcome=outcome.outcome)

    @activity.defn(name=RECORD_LEGAL_OUTCOME)
    def record_legal_outcome(self, record: LegalOutcomeRecord) -> None:
        at = aware(record.at)

        def work(db: Session) -> Entry | None:
            if audit.has_key(db, audit_key(record.key)):
                return None
            case = db.scalar(select(LegalCase).where(LegalCase.loan_id == record.loan_id).order_by(LegalCase.id.desc()))
            if case is not None:
                case.status, case.outcome_at = record.outcome, at
                case.case_ref = record.case_ref or case.case_ref
            return Entry("legal", audit_key(record.key), {"outcome": record.outcome, "case_ref": record.case_ref})

        self._write(record.loan_id, record.workflow_id, at, work, "legal_outcome_recorded", outcome=record.outcome)


def _apply_arrangement(db: Session, event: ArrangementEvent, at: datetime) -> None:
    """A plan or promise event on its row: accepted or made (a new row, and a
    plan's installments), an installment paid, or kept or broken."""
    record_key = arrangement_record_key(event.key, event.kind)
    if event.kind == "plan_accepted":
        plan = PlanRecord(
            key=record_key, loan_id=event.loan_id, workflow_id=event.workflow_id, plan_no=event.number,
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
        plan = db.scalar(select(PlanRecord).where(PlanRecord.key == record_key))
        if plan is not None and event.kind == "installment_paid":
            row = db.scalar(select(PlanInstallment).where(
                PlanInstallment.plan_id == plan.id, PlanInstallment.number == event.installment))
            if row is not None:
                row.paid_at = at
        elif plan is not None:
            plan.status, plan.ended_at = event.kind.removeprefix("plan_"), at
    elif event.kind.startswith("settlement_"):
        pass  # no table of its own: the audit entry is its record, the closing row the amount written off
    elif event.kind == "promise_made":
        db.add(PromiseRecord(
            key=record_key, loan_id=event.loan_id, workflow_id=event.workflow_id, promise_no=event.number,
            amount=Decimal(event.amount), currency=event.currency, by_date=date.fromisoformat(event.due_date),
            status="open", source=event.source or "borrower", policy=event.policy or None,
            segment=event.segment or None, made_at=at,
        ))
    else:
        promise = db.scalar(select(PromiseRecord).where(PromiseRecord.key == record_key))
        if promise is not None:
            promise.status, promise.ended_at = event.kind.removeprefix("promise_"), at


def _allocation_columns(record: PaymentRecord) -> dict:
    """An applied payment's allocation (issue 18, item 3), when the workflow sent it."""
    if not (record.applied and record.principal_paid):
        return {}
    return dict(
        fees_paid=Decimal(record.fees_paid or "0"), interest_paid=Decimal(record.interest_paid or "0"),
        principal_paid=Decimal(record.principal_paid), overpaid=Decimal(record.overpaid or "0"),
    )


def _amount_paid(db: Session, loan_id: str) -> Decimal:
    """The sum of the loan's applied payments not reversed, not an
    increment: a retry cannot count a payment twice."""
    amounts = db.scalars(select(Payment.amount).where(
        Payment.loan_id == loan_id, Payment.applied.is_(True), Payment.reversed_at.is_(None))).all()
    return sum((Decimal(amount) for amount in amounts), Decimal("0"))


def _storable(text: str) -> str:
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


def _complaint(db: Session, loan_id: str, complaint_id: str) -> Complaint | None:
    return db.scalar(select(Complaint).where(Complaint.loan_id == loan_id, Complaint.complaint_id == complaint_id))


def _append(db: Session, loan_id: str, workflow_id: str, at: datetime, work: Callable[[Session], Entry | None]) -> bool:
    """`work` and its audit entry in the caller's transaction; False when
    there was nothing new (an earlier attempt wrote it)."""
    entry = work(db)
    if entry is None:
        return False
    db.flush()
    audit.append(db, entry.kind, loan_id, workflow_id, entry.payload, at=at, key=entry.key)
    return True


def _storable_payment(record: PaymentRecord) -> PaymentRecord:
    """A bad payment is kept as it came, but made storable: a lone surrogate
    or a NUL (which PostgreSQL refuses) would fail the write for ever and
    hold the loan up behind it."""
    return dataclasses.replace(record, **{
        name: _storable(getattr(record, name)) for name in ("key", "payment_id", "amount", "currency", "paid_at", "reason")
    })


def _payment_work(record: PaymentRecord) -> Callable[[Session], Entry | None]:
    """Write a payment once by its key; its audit entry, or None for a retry."""

    def work(db: Session) -> Entry | None:
        if not insert_once(db, Payment, record.key, lambda: Payment(
            key=record.key, loan_id=record.loan_id, workflow_id=record.workflow_id,
            payment_id=record.payment_id, amount=record.amount, currency=record.currency,
            paid_at=record.paid_at, applied=record.applied, reason=record.reason or None,
            **_allocation_columns(record),
        )):
            return None  # a retry: recorded (and audited) the first time
        loan = db.get(Loan, record.loan_id) if record.applied else None
        if loan is not None:
            db.flush()
            loan.amount_paid = _amount_paid(db, record.loan_id)
        return Entry("payment", audit_key(record.key, "payment"), _payment_entry(record))

    return work


def _close_in_one_turn(
    db: Session, closing: LoanClosing, payments: list[PaymentRecord], at: datetime, received: datetime,
) -> list[bool]:
    """What `_payment_work` and `_closing_work` write for the closing, in
    Core statements built once, and their audit entries appended with one
    turn on the loan's chain (`audit.append_many`): the same rows and entries
    with about half the statements and no ORM flush, on every loan that ends.
    True for each payment, then the close, that this attempt wrote."""
    insert_payment = _INSERT_PAYMENT[db.get_bind().dialect.name == "postgresql"]
    written: list[bool] = []
    entries: list[audit.NewEntry] = []
    for record in payments:
        allocation = _allocation_columns(record)
        inserted = db.execute(insert_payment, {
            "key": record.key, "loan_id": record.loan_id, "workflow_id": record.workflow_id,
            "payment_id": record.payment_id, "amount": record.amount, "currency": record.currency,
            "paid_at": record.paid_at, "applied": record.applied, "reason": record.reason or None,
            "recorded_at": utcnow(), **{name: allocation.get(name) for name in _ALLOCATION},
        }).first()
        written.append(inserted is not None)
        if inserted is not None:  # a retry's payment was recorded (and audited) the first time
            entries.append(audit.NewEntry("payment", _payment_entry(record), received, audit_key(record.key, "payment")))
    loan = db.execute(_LOAN_STAGE, {"closing_loan_id": closing.loan_id}).first()
    changed = loan is None or loan.stage != STAGE_CLOSED or loan.outcome != closing.outcome
    if loan is not None:
        # The loan's amount_paid is the closing's: it counts these payments.
        db.execute(_CLOSE_LOAN_ROW, {
            "closing_loan_id": closing.loan_id, "outcome": closing.outcome,
            "amount_paid": Decimal(closing.amount_paid), "closed_at": at, "days_past_due": closing.days_past_due,
            "segment": closing.segment or None, "waived": Decimal(closing.waived),
            "fees_charged": Decimal(closing.fees_charged), "interest_charged": Decimal(closing.interest_charged),
            "reopen_basis": (json.dumps(closing.reopen_basis, sort_keys=True)
                             if closing.reopen_basis is not None else None),
        })
    if changed:
        entries.append(audit.NewEntry("closing", _closing_entry(closing), at,
                                      audit_key(closing.workflow_id, "closing", closing.closed_at)))
    appended = audit.append_many(db, closing.loan_id, closing.workflow_id, entries) if entries else []
    # An entry already under its key (a concurrent attempt's) means this attempt did not write it.
    flags = iter(appended)
    written = [new and next(flags) for new in written]
    return [*written, changed and next(flags)]


_ALLOCATION = ("fees_paid", "interest_paid", "principal_paid", "overpaid")
_PAYMENT_COLUMNS = ("key", "loan_id", "workflow_id", "payment_id", "amount", "currency", "paid_at", "applied",
                    "reason", "recorded_at", *_ALLOCATION)
# The closing's statements, built once (by dialect for the payment's ON CONFLICT).
_INSERT_PAYMENT = {
    is_postgresql: dialect.insert(_PAYMENTS).values({name: bindparam(name) for name in _PAYMENT_COLUMNS})
    .on_conflict_do_nothing(index_elements=["key"]).returning(_PAYMENTS.c.id)
    for is_postgresql, dialect in ((False, sqlite), (True, postgresql))
}
_LOAN_STAGE = select(_LOANS.c.stage, _LOANS.c.outcome).where(_LOANS.c.loan_id == bindparam("closing_loan_id"))
_CLOSE_LOAN_ROW = update(_LOANS).where(_LOANS.c.loan_id == bindparam("closing_loan_id")).values(
    stage=STAGE_CLOSED, outcome=bindparam("outcome"), amount_paid=bindparam("amount_paid", type_=_LOANS.c.amount_paid.type),
    closed_at=bindparam("closed_at", type_=_LOANS.c.closed_at.type),
    max_days_past_due=case(
        (func.coalesce(_LOANS.c.max_days_past_due, 0) < bindparam("days_past_due", type_=Integer),
         bindparam("days_past_due", type_=Integer)),
        else_=func.coalesce(_LOANS.c.max_days_past_due, 0)),
    segment=func.coalesce(bindparam("segment", type_=String), _LOANS.c.segment),
    waived=bindparam("waived", type_=_LOANS.c.waived.type),
    fees_charged=bindparam("fees_charged", type_=_LOANS.c.fees_charged.type),
    interest_charged=bindparam("interest_charged", type_=_LOANS.c.interest_charged.type),
    reopen_basis=func.coalesce(bindparam("reopen_basis", type_=Text), _LOANS.c.reopen_basis),
)


def _payment_entry(record: PaymentRecord) -> dict:
    return {
        "key": record.key, "payment_id": record.payment_id, "amount": record.amount,
        "currency": record.currency, "paid_at": record.paid_at, "applied": record.applied,
        "reason": record.reason,
    }


def _closing_entry(closing: LoanClosing) -> dict:
    return {
        "outcome": closing.outcome, "amount_paid": closing.amount_paid,
        "outstanding": closing.outstanding, "final_stage": closing.final_stage,
        "closed_at": closing.closed_at,
    }


def _closing_work(closing: LoanClosing, at: datetime) -> Callable[[Session], Entry | None]:
    """Close the loan's row; its audit entry, or None when it was closed so already."""

    def work(db: Session) -> Entry | None:
        loan = db.get(Loan, closing.loan_id)
        changed = loan is None or loan.stage != STAGE_CLOSED or loan.outcome != closing.outcome
        if loan is not None:
            loan.stage, loan.outcome = STAGE_CLOSED, closing.outcome
            loan.amount_paid = Decimal(closing.amount_paid)
            loan.closed_at = at
            loan.max_days_past_due = max(loan.max_days_past_due or 0, closing.days_past_due)
            loan.segment = closing.segment or loan.segment
            loan.waived = Decimal(closing.waived)
            loan.fees_charged = Decimal(closing.fees_charged)
            loan.interest_charged = Decimal(closing.interest_charged)
            if closing.reopen_basis is not None:
                loan.reopen_basis = json.dumps(closing.reopen_basis, sort_keys=True)
        if not changed:
            return None
        # Without a loan row, the entry's key keeps a retry from a second one.
        return Entry("closing", audit_key(closing.workflow_id, "closing", closing.closed_at), _closing_entry(closing))

    return work
