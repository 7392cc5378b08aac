"""The loan's state as the workflow keeps it: money, flags, what was done.

It is a pydantic model so that it crosses continue-as-new as plain JSON and
the status query is a projection of it. It holds ids and money only.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from typing import Literal

from pydantic import BaseModel, Field, model_validator

from dunning.contract import STAGE_PENDING, STAGES


class ContactEntry(BaseModel):
    at: datetime  # real instant, in the borrower's zone
    loan_at: datetime  # the same moment on the loan's clock (differs only on a fast demo clock)
    channel: str
    stage: str
    template: str
    day: int
    step: str = ""  # the planner's step key, which a provider's outcome names
    result: str  # sent | failed | skipped_no_address | skipped_opt_out | skipped_segment | skipped_superseded | skipped_stage_ended
    # For a step a rule held and that was never sent: the rule (voice_7_in_7, ...).
    rule: str = ""
    # The outbox key of the message that carried it: its own key, or the key
    # of one message merged across the borrower's loans, the same in each of
    # them (issue 17, item 1). "" when no message was written for it.
    message_key: str = ""

    @property
    def went_out(self) -> bool:
        """Sent to the provider (whatever it reported after: answered, busy, ...)."""
        return self.result not in ("failed", "undelivered", "bounced") and not self.result.startswith("skipped")


class UnappliedPayment(BaseModel):
    payment_id: str
    amount: str
    currency: str
    reason: str
    received_at: datetime


class RejectedSignal(BaseModel):
    signal: str
    error: str
    received_at: datetime


class Installment(BaseModel):
    number: int
    due_date: date
    amount: Decimal
    paid_on: date | None = None  # the local day it was covered


class Plan(BaseModel):
    """An accepted installment plan (the `propose_plan` update)."""

    plan_no: int
    status: Literal["active", "kept", "broken"] = "active"
    accepted_on: date
    total: Decimal  # what the borrower owes under the plan (waivers deducted)
    paid_before: Decimal  # amount_paid when it was accepted: later payments count
    installments: list[Installment]
    waived_fees: Decimal = Decimal("0")
    waived_interest: Decimal = Decimal("0")
    ended_on: date | None = None

    def paid_under_plan(self, amount_paid: Decimal) -> Decimal:
        return amount_paid - self.paid_before


class Promise(BaseModel):
    """A promise to pay (the `promise_to_pay` update, or a field visit's)."""

    promise_no: int
    amount: Decimal
    by_date: date
    made_on: date
    paid_before: Decimal
    status: Literal["open", "kept", "broken"] = "open"
    source: Literal["borrower", "field_visit"] = "borrower"
    ended_on: date | None = None


class Settlement(BaseModel):
    """A settlement for less than the balance, in full satisfaction (the
    `propose_settlement` update; issue 18, item 4): accepted at once within
    the agent's limit, else pending an approver's `settlement_decision`."""

    settlement_no: int
    status: Literal["pending_approval", "accepted", "refused", "paid", "missed", "lapsed"]
    proposed_on: date
    amount: Decimal  # what the borrower pays in full satisfaction
    outstanding: Decimal  # the balance when it was proposed
    discount: Decimal  # 1 - amount / outstanding, 4 places (the limit is checked exactly)
    agent_limit: Decimal  # the largest discount the agent could grant alone then
    pay_by: date
    agent_id: str
    paid_before: Decimal  # amount_paid when it was proposed: later payments count
    approver_id: str = ""
    decided_on: date | None = None  # approved or refused
    ended_on: date | None = None  # paid, missed, refused or lapsed
    waived: Decimal = Decimal("0")  # written off when it was paid

    @property
    def open(self) -> bool:
        return self.status in ("pending_approval", "accepted")

    def paid_under_settlement(self, amount_paid: Decimal) -> Decimal:
        return amount_paid - self.paid_before


class BureauState(BaseModel):
    """What was reported to the credit bureau, for the next record."""

    first_reported_on: date | None = None
    # Date of first delinquency: set with the first record and never moved.
    first_delinquency: date | None = None
    last_cycle: str = ""  # "YYYY-MM" of the last regular record
    records: int = 0
    correction_due: bool = False  # a payment after a record: correct it at once
    reported_disputed: bool = False  # a record carried XB
    reported_93: bool = False  # a record carried 93 (placed for collection)
    reported_97: bool = False  # a record carried 97 (charged off)
    # Issue 18, item 1 (dunning/bureau.py): the Consumer Information
    # Indicator the bureau has on file (it stays until another one or a
    # removal, Q, is reported), and whether a record carried ECOA code X
    # (deceased: the account is not reported again, CRRG FAQ 19).
    cii_on_file: str = ""
    reported_deceased: bool = False


class FieldVisit(BaseModel):
    visit_id: str
    assigned_on: date
    status: Literal["assigned", "done"] = "assigned"
    outcome: str = ""


class ValidationNotice(BaseModel):
    """The validation notice under a profile that requires its delivery
    (12 CFR 1006.34, 1006.38): when it was provided, when the validation
    period ends, and a dispute in that period awaiting verification."""

    channel: str = ""  # how it was provided (email delivered, letter mailed)
    provided_on: date | None = None  # the loan's local day
    period_ends: date | None = None  # 1006.34(b)(5)
    verification_required: bool = False  # a dispute before the period ended (1006.38(d)(2))
    verification_sent_on: date | None = None
    verification_reference: str = ""

    @property
    def awaiting_verification(self) -> bool:
        return self.verification_required and self.verification_sent_on is None


class OpenTask(BaseModel):
    """An agent task the loan opened and watches until its SLA runs out."""

    key: str
    kind: str
    due: datetime  # loan time the SLA runs out


class LegalCase(BaseModel):
    # time_barred (issue 18, item 2): the debt became time-barred before the
    # case was filed; it is never filed (12 CFR 1006.26(b)).
    status: Literal["opened", "filed", "judgment", "settled", "withdrawn", "time_barred"] = "opened"
    opened_on: date
    case_ref: str = ""


class LegalStatusInForce(BaseModel):
    """A legal status in force (the `legal_status` signal; issue 18, item 1):
    ids and dates only."""

    status: Literal["bankruptcy_filed", "deceased", "cease_communication", "hardship"]
    reference: str
    effective_date: date
    until: date | None = None  # hardship: the day the loan resumes
    chapter: int | None = None  # bankruptcy_filed: 7, 11, 12 or 13
    since: date  # the loan's local day it was set
    # The agent task the loop still has to open for it ("" once opened, or none).
    task_pending: str = ""


class LegalStatusChange(BaseModel):
    """One `legal_status` applied (and a hardship that ended on its `until`)."""

    status: str
    reference: str
    effective_date: date
    at: datetime  # the real instant it was applied


class LegalStatuses(BaseModel):
    """The loan's legal statuses (issue 18, item 1; dunning/legal_status.py
    has what each one allows): those in force, every change, and what an
    ended bankruptcy or a deceased borrower's estate left behind."""

    in_force: list[LegalStatusInForce] = Field(default_factory=list)
    changes: list[LegalStatusChange] = Field(default_factory=list)
    # The petition's day (days past due of its date): the account status the
    # bureau is told while the bankruptcy runs and once it is discharged.
    petition_day: int | None = None
    petition_date: date | None = None
    dismissed_chapter: int | None = None  # the last bankruptcy was dismissed (Metro 2 CII I-L)
    discharged_chapter: int | None = None  # discharged: the loan ends `discharged` (CII E-H)
    estate_outcome: Literal["written_off", "settled"] | None = None  # a deceased borrower's loan, ended by an operator

    def find(self, status: str) -> LegalStatusInForce | None:
        return next((s for s in self.in_force if s.status == status), None)

    @property
    def holds(self) -> bool:
        """A bankruptcy's automatic stay, or a deceased borrower: no contact,
        no escalation, no new charges."""
        return any(s.status in ("bankruptcy_filed", "deceased") for s in self.in_force)

    def freezes_charges_on(self, day: int, due_date: date) -> bool:
        """Whether no fee or interest is charged for the day `day` past due:
        from a bankruptcy's petition, a death, a hardship's start (until the
        hardship's `until`), as long as the status stands."""
        for status in self.in_force:
            if status.status == "cease_communication":
                continue
            first = (status.effective_date - due_date).days
            end = (status.until - due_date).days if status.until is not None else None
            if day >= first and (end is None or day < end):
                return True
        return False


class LimitationRestart(BaseModel):
    """A payment that started the statute of limitations again."""

    payment_id: str
    on: date  # the local day the payment counts from


class Limitation(BaseModel):
    """The statute of limitations that applies to the loan (issue 18, item 2;
    dunning/limitation.py): the rule prepare_loan gave (numbers and keys,
    never the jurisdiction), the day it runs from, the payments that
    restarted it, and the local day the loan became time-barred."""

    years: int
    runs_from: Literal["first_delinquency", "last_payment"]
    payment_restarts: bool = False
    partial_payment_restarts: bool = False
    disclosure: str = ""
    disclosure_after_obsolescence: str = ""
    # The day the period runs from before any payment the loan received: the
    # first day of delinquency, or the placement's last payment.
    runs_from_date: date
    restarts: list[LimitationRestart] = Field(default_factory=list)
    # FCRA 605(a)(4), (c)(1): the first day an account placed for collection
    # is too old for a consumer report (date of first delinquency + 180 days
    # + 7 years).
    obsolete_on: date
    # The day the debt became time-barred, once the loan has recorded it
    # (None: not yet). Never undone: a payment does not revive it.
    time_barred_since: date | None = None

    @property
    def runs_since(self) -> date:
        return max([self.runs_from_date, *(r.on for r in self.restarts)])

    @property
    def time_barred(self) -> bool:
        return self.time_barred_since is not None


class ChargeDay(BaseModel):
    """The charges' state before a day past due was charged, kept for the
    last few days under a profile's payment_time_tolerance_hours, so that a
    payment made before that day (and reported later) undoes its charges."""

    day: int
    fees_due: Decimal
    interest_due: Decimal
    fees_charged: Decimal
    interest_charged: Decimal
    late_fee_charged: bool
    interest_accrued: Decimal
    cost_cap_allowance: Decimal
    charges_held: bool
    plan_active: bool  # a day under a plan is never charged again once it has ended


class PaymentAllocation(BaseModel):
    """What one applied payment paid of each part (issue 18, item 3): a
    reversal undoes exactly this. Payments applied before it was kept have
    none (their reversal is refused, named)."""

    payment_id: str
    amount: Decimal
    fees: Decimal
    interest: Decimal
    principal: Decimal
    overpaid: Decimal = Decimal("0")  # over the balance: kept as paid, refunded by a person


class Reversal(BaseModel):
    """A payment reversed (the `payment_reversed` signal): the allocation
    undone and the returned-payment fee charged."""

    payment_id: str
    reason: str
    reversed_at: datetime  # when the bank reversed it (or the signal came)
    amount: Decimal
    fees: Decimal
    interest: Decimal
    principal: Decimal
    returned_payment_fee: Decimal = Decimal("0")
    received_at: datetime | None = None  # None: carried from the records into a reopened run
    reopened: bool = False  # it reopened the loan after it closed `repaid`


class Reopening(BaseModel):
    """A run that reopened a loan closed `repaid` (services/reversals.py):
    which reversal, what it closed as, and the loan-time instant it reopened
    at (set when the run has its clock). Steps planned before that instant
    are not shown as missed: the loan was closed then."""

    payment_id: str
    reason: str = ""
    closed_outcome: str = "repaid"
    closed_stage: str = ""
    at: datetime | None = None


class LoanState(BaseModel):
    loan_id: str
    borrower_id: str
    amount_due: Decimal
    currency: str
    due_date: date
    policy: str

    # Known once prepare_loan has answered.
    time_zone: str = "UTC"
    # Every zone the borrower may be in (the primary first), read from the
    # directory at the start and again at each contact; empty in a run from
    # before multi-zone checks (then only `time_zone`).
    contact_zones: list[str] = Field(default_factory=list)
    language: str = ""
    clock_anchor: datetime | None = None

    stage: str = STAGE_PENDING
    amount_paid: Decimal = Decimal("0")
    applied_payment_ids: list[str] = Field(default_factory=list)
    unapplied_payments: list[UnappliedPayment] = Field(default_factory=list)
    opted_out: list[str] = Field(default_factory=list)
    paused: bool = False
    pause_reason: str = ""
    disputed: bool = False
    dispute_upheld: bool = False
    open_complaints: list[str] = Field(default_factory=list)
    resolved_complaints: list[str] = Field(default_factory=list)
    bureau_reported: bool = False
    # Contacts a compliance rule postponed: step key -> loan time they may go.
    deferred: dict[str, datetime] = Field(default_factory=dict)
    # The rule that postponed each of them (window, voice_7_in_7, ...).
    deferred_rules: dict[str, str] = Field(default_factory=dict)
    # Steps of the current stage already sent or skipped (keys), reset when
    # the stage changes, so the set stays small however long the loan lives.
    done_steps: list[str] = Field(default_factory=list)
    contacts: list[ContactEntry] = Field(default_factory=list)
    rejected_signals: list[RejectedSignal] = Field(default_factory=list)
    signals_received: int = 0
    decisions_recorded: int = 0
    # The borrower asked for the repayment link (keypad 1 on a call): each
    # request is one SMS, sent by the planner like any other contact.
    pay_link_requests: int = 0

    # What the loan's contract allows beyond the principal (start input), and
    # the risk score the lender gave it: ids and money only.
    contract_late_fee: Decimal | None = None
    contract_penalty_rate: Decimal | None = None
    risk_score: int | None = None

    # The balance by part. Payments go to fees, then interest, then principal.
    # None in a state carried over from before charges existed: derived below.
    principal_due: Decimal | None = None
    fees_due: Decimal = Decimal("0")
    interest_due: Decimal = Decimal("0")
    fees_charged: Decimal = Decimal("0")  # all ever charged (the cost cap counts these)
    interest_charged: Decimal = Decimal("0")
    late_fee_charged: bool = False
    charges_through_day: int = 0  # days past due whose charges are posted
    fees_waived: Decimal = Decimal("0")  # waived under a kept plan (or one still running)
    interest_waived: Decimal = Decimal("0")
    principal_waived: Decimal = Decimal("0")  # written off by a settlement paid (issue 18, item 4)

    segment: str | None = None
    partial_payments: int = 0
    plans: list[Plan] = Field(default_factory=list)
    promises: list[Promise] = Field(default_factory=list)
    settlements: list[Settlement] = Field(default_factory=list)
    bureau: BureauState = Field(default_factory=BureauState)
    visits: list[FieldVisit] = Field(default_factory=list)
    legal: LegalCase | None = None
    # Set once the profile requires the notice's delivery (None otherwise).
    validation: ValidationNotice | None = None
    # Agent tasks (issue 17): the SLA hours per kind the loan opens tasks
    # with (None in a run from before them: it opens none), and the tasks
    # still watched for their SLA.
    task_sla_hours: dict[str, int] | None = None
    open_tasks: list[OpenTask] = Field(default_factory=list)
    disputes_opened: int = 0  # numbers each dispute's task
    # Reminders before the due date (issue 17, item 5) for a loan started
    # since they exist; a run from before them waits in `pending` as it did.
    pre_due: bool = False

    # Charges under a profile's newer rules (dunning/charges.py; all stay at
    # their defaults under the rules of profiles recorded before them):
    # interest accrued but not charged yet, less than one minor unit
    # (exact_interest_accrual); the cost cap's allowance so far, exact
    # (cost_cap_basis `owed`: the principal owed each day x cap / 365); a hold
    # seen when charges were last posted (charges_during_hold false); and the
    # last days' charges, undone by a payment made before them
    # (payment_time_tolerance_hours).
    interest_accrued: Decimal = Decimal("0")
    cost_cap_allowance: Decimal = Decimal("0")
    charges_held: bool = False
    charge_days: list[ChargeDay] = Field(default_factory=list)
    # Legal statuses (issue 18, item 1): None until the first `legal_status`
    # signal (and in every run from before it).
    legal_status: LegalStatuses | None = None

    # Payment reversals (issue 18, item 3): each applied payment's allocation
    # (since they are kept), the reversals, the contract's returned-payment
    # fee, and the reopening when this run reopened a loan closed `repaid`.
    payment_allocations: list[PaymentAllocation] = Field(default_factory=list)
    reversals: list[Reversal] = Field(default_factory=list)
    contract_returned_payment_fee: Decimal | None = None
    reopened: Reopening | None = None
    # The statute of limitations (issue 18, item 2): None when none applies
    # (a jurisdiction the profile does not list, none given, and every run
    # from before it).
    limitation: Limitation | None = None

    @model_validator(mode="after")
    def _derive_principal(self) -> LoanState:
        if self.principal_due is None:
            self.principal_due = max(self.amount_due - self.amount_paid, Decimal("0"))
        return self

    @property
    def outstanding(self) -> Decimal:
        return max(self.principal_due + self.fees_due + self.interest_due, Decimal("0"))

    @property
    def waived(self) -> Decimal:
        return self.fees_waived + self.interest_waived + self.principal_waived

    @property
    def active_plan(self) -> Plan | None:
        return next((p for p in reversed(self.plans) if p.status == "active"), None)

    @property
    def open_settlement(self) -> Settlement | None:
        """The settlement pending approval or accepted, if any."""
        return next((s for s in reversed(self.settlements) if s.open), None)

    @property
    def accepted_settlement(self) -> Settlement | None:
        """An accepted settlement, waiting to be paid: no escalation meanwhile."""
        found = self.open_settlement
        return found if found is not None and found.status == "accepted" else None

    @property
    def open_promise(self) -> Promise | None:
        return next((p for p in reversed(self.promises) if p.status == "open"), None)

    @property
    def broken_promises(self) -> int:
        return sum(1 for p in self.promises if p.status == "broken")

    @property
    def open_visit(self) -> FieldVisit | None:
        return next((v for v in reversed(self.visits) if v.status == "assigned"), None)

    @property
    def in_court(self) -> bool:
        """A case filed or judged: the court process, not the cadence, goes on."""
        return self.legal is not None and self.legal.status in ("filed", "judgment")

    @property
    def on_hold(self) -> bool:
        return self.paused or self.disputed or bool(self.open_complaints) or self.awaiting_verification or self.legal_hold

    @property
    def legal_hold(self) -> bool:
        """A bankruptcy's stay or a deceased borrower (issue 18, item 1)."""
        return self.legal_status is not None and self.legal_status.holds

    @property
    def awaiting_verification(self) -> bool:
        return self.validation is not None and self.validation.awaiting_verification

    @property
    def zones(self) -> tuple[str, ...]:
        """The zones the contact window is checked in."""
        return tuple(self.contact_zones) or (self.time_zone,)

    def stage_rank(self) -> int:
        return STAGES.index(self.stage) if self.stage in STAGES else -1

    def channel_opted_out(self, channel: str) -> bool:
        return "all" in self.opted_out or channel in self.opted_out
