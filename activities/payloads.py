"""Typed inputs and outputs of the activities.

These cross into workflow history, so they carry ids, money (decimal strings),
dates and codes only, never a name, phone number or e-mail address. Activities
look contact details up in the borrower directory themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Activity names, shared by the workflow (which calls them by name) and the
# worker (which registers them); see activities/dunning_activities.py.
PREPARE_LOAN = "prepare_loan"
# The send activity's error type when the database (the outbox, the
# borrower's coordinator) cannot be reached: the contact waits and is tried
# again (workflows/calls.py), it does not end `failed`.
DATABASE_UNAVAILABLE = "DatabaseUnavailable"
SEND_CONTACT = "send_contact"
# Contacts due at the same instant, through one activity (issue 19, item 5).
SEND_CONTACTS = "send_contacts"
ENTER_STAGE = "enter_stage"
RECORD_PAYMENT = "record_payment"
CLOSE_LOAN = "close_loan"
REPORT_TO_BUREAU = "report_to_bureau"
RECORD_DECISION = "record_decision"
OPEN_COMPLAINT = "open_complaint"
RESOLVE_COMPLAINT = "resolve_complaint"
RECORD_ARRANGEMENT = "record_arrangement"
ASSIGN_FIELD_VISIT = "assign_field_visit"
RECORD_VISIT = "record_visit"
RECORD_LEGAL_OUTCOME = "record_legal_outcome"
# Payment reversals (issue 18, item 3).
RECORD_PAYMENT_REVERSAL = "record_payment_reversal"
REOPEN_LOAN = "reopen_loan"


@dataclass(frozen=True)
class PrepareLoanInput:
    workflow_id: str
    loan_id: str
    borrower_id: str
    amount_due: str
    currency: str
    due_date: str  # ISO date
    policy: str


@dataclass(frozen=True)
class PreparedLoan:
    # The validated policy, as JSON. It enters history so that a running loan
    # keeps the policy it started with, and replay never depends on files.
    policy: dict
    # Borrower preferences, not contact details: an IANA zone and a locale code.
    time_zone: str
    language: str
    # True when the borrower directory has a row for this borrower.
    borrower_known: bool
    # The policy's compliance profile (config/profiles/), validated, as JSON.
    profile: dict | None = None
    # Every zone the borrower may be in (the primary first): zone names
    # only, from the directory's zone, address and number (loaders/zones.py).
    time_zones: tuple[str, ...] = ()
    # The statute of limitations of the loan's jurisdiction (issue 18, item
    # 2; dunning/limitation.py LimitationRule): `years`, `runs_from`,
    # `payment_restarts`, `partial_payment_restarts`, `disclosure`,
    # `disclosure_after_obsolescence` and, for a rule that runs from the last
    # payment, the placement's `last_payment_date`. Numbers, dates and keys:
    # never the jurisdiction. None: no limitation applies (none given, one
    # the profile does not list, a worker from before it).
    limitation: dict | None = None


@dataclass(frozen=True)
class ContactRequest:
    key: str  # idempotency key: workflow id + step; one message per key, ever
    workflow_id: str
    loan_id: str
    borrower_id: str
    stage: str
    channel: str  # sms | email | voice | push
    template: str  # template name under config/templates/<language>/
    days_past_due: int
    outstanding: str
    currency: str
    due_date: str
    # The profile's cap on voice calls per borrower per local day, across all
    # their loans (cn: 6); None for no such cap. Only the activity sees the
    # borrower's other loans, so it enforces it.
    voice_daily_cap: int | None = None
    # For a plan's messages: the amount and date the message states (an
    # installment's), when not the outstanding balance and the loan's due date.
    message_amount: str = ""
    message_due_date: str = ""
    # The profile's contact window ("HH:MM:SS"; "" for none): the activity
    # checks it again in every zone the directory leaves open at the moment
    # of sending (12 CFR 1006.6(b)(1)(i)), since the details may have changed
    # since the loan started (issue 15, item 3).
    window_start: str = ""
    window_end: str = ""
    # The profile's spacing between call attempts to the borrower, across
    # their loans (minutes; None for none): the activity holds a call while
    # another is in flight or the last one was this recent.
    min_minutes_between_calls: int | None = None
    # What the first line of an SMS or push may say (the profile's
    # [privacy] first_line): full | limited_content | no_amount_before_identity.
    privacy_first_line: str = "full"
    # The collector collects as a "debt collector": every communication
    # carries 1006.18(e)'s disclosure (the profile's [collector]).
    debt_collector_disclosure: bool = False
    # The loan-time instant the workflow decided the contact at, and the
    # loan's primary zone: the activity's window check runs on the loan's
    # clock (a demo policy's day is shorter than a real one).
    loan_at: str = ""
    time_zone: str = ""
    # For the validation notice (12 CFR 1006.34, Model Form B-1; issue 15,
    # item 4): who collects, as the profile's [collector] names it (a
    # business's details, not the borrower's; "" / (): the lender's name
    # stands in and the notice has no collector address), and the
    # profile's notices.validation_period_days (None: 30, 1006.34(b)(5)).
    collector_name: str = ""
    collector_mailing_address: tuple[str, ...] = ()
    collector_phone: str = ""
    dispute_email: str = ""
    dispute_url: str = ""
    validation_period_days: int | None = None
    # What the workflow charged since the loan was placed (money strings; ""
    # for none): the notice's itemization adds them to the placement's, and
    # what the outstanding balance shows besides as paid or credited.
    interest_charged: str = ""
    fees_charged: str = ""
    # Record the call (voice only; the profile's rules.record_calls, issue
    # 16 item 7): the provider records it, the script announces it
    # (`call_recorded`), the recording's reference is kept with the contact
    # and deleted after the profile's records_retention_years.
    record_call: bool = False
    # One voice per borrower (issue 17, item 1; the policy's [borrower] and
    # the profile's caps.borrower_daily_caps): at most this many messages on
    # this channel per borrower per local day, across their loans (None: no
    # such cap; voice has voice_daily_cap); and whether this step may join a
    # message merged with the borrower's other loans' steps due at the same
    # moment, the first waiting up to `gather_seconds` (real seconds, already
    # bounded by the window's end) for the others. The defaults are what a
    # request from an older workflow meant: no cap, nothing merged.
    borrower_daily_cap: int | None = None
    merge: bool = False
    gather_seconds: float = 0.0
    # A time-barred debt's message (issue 18, item 2): the templates' time-
    # barred variant (no threat of suit, 12 CFR 1006.26(b)) with the
    # disclosure the jurisdiction requires (a key of
    # config/compliance/limitation_disclosures.toml; "" for none), and
    # whether the account was reported to a bureau (the disclosure's "may
    # [continue to] report it"). A request without them (an older
    # workflow's, any other loan's) is an ordinary message.
    time_barred: bool = False
    limitation_disclosure: str = ""
    limitation_reported: bool = False


@dataclass(frozen=True)
class ContactOutcome:
    key: str
    channel: str
    # sent | failed | skipped_no_address | deferred (not sent yet: the same key
    # may be sent again from `not_before`)
    result: str
    provider: str = ""
    provider_message_id: str = ""
    detail: str = ""
    # For `deferred`: the earliest instant (ISO 8601 with the borrower's offset)
    # at which the contact may be tried again, and the rule that held it
    # (window, voice_daily_cap, call_spacing, borrower_daily_cap; "" from
    # older workers: the voice cap).
    not_before: str = ""
    rule: str = ""
    # Every zone the directory left open when the contact was tried (the
    # workflow's permit check uses them from then on); empty when not read.
    time_zones: tuple[str, ...] = ()
    # The outbox key of the message that carried this contact: the contact's
    # own key, or the key of the one message merged for several of the
    # borrower's loans (the same for each of them). "" when no message was
    # written (a window hold) and from older workers.
    message_key: str = ""


@dataclass(frozen=True)
class StageEntry:
    key: str  # idempotency key for the bureau record / legal case
    workflow_id: str
    loan_id: str
    stage: str
    days_past_due: int
    outstanding: str
    currency: str
    segment: str = ""  # the loan's risk segment from this stage on


@dataclass(frozen=True)
class PaymentRecord:
    key: str  # loan id + payment id, or a per-signal key when the id is missing
    workflow_id: str
    loan_id: str
    payment_id: str
    amount: str  # as received, even when it could not be parsed
    currency: str
    paid_at: str
    applied: bool
    reason: str = ""  # why it was not applied
    # How an applied payment was allocated (issue 18, item 3; "" from older
    # workflows): money strings, what a reversal undoes.
    fees_paid: str = ""
    interest_paid: str = ""
    principal_paid: str = ""
    overpaid: str = ""


@dataclass(frozen=True)
class LoanClosing:
    workflow_id: str
    loan_id: str
    outcome: str
    amount_paid: str
    outstanding: str
    final_stage: str
    closed_at: str
    # For the KPIs: where the loan was when it ended.
    days_past_due: int = 0
    segment: str = ""
    waived: str = "0"
    fees_charged: str = "0"
    interest_charged: str = "0"
    # What a reopening after a reversal starts from besides the rows (issue
    # 18, item 3; `loans.reopen_basis`): the clock anchor, where the charges
    # stood, the contract terms and the risk score. None from older workflows.
    reopen_basis: dict | None = None
    # The payments that closed it, written with the close in one transaction
    # (issue 19, item 2); empty from older workflows, which wrote them first.
    payments: list[PaymentRecord] = field(default_factory=list)


@dataclass(frozen=True)
class PaymentReversalRecord:
    """A payment reversed (issue 18, item 3): once per payment, by key."""

    key: str
    workflow_id: str
    loan_id: str
    payment_id: str
    amount: str
    currency: str
    fees: str
    interest: str
    principal: str
    returned_payment_fee: str
    reason: str  # a short code, never personal data
    reversed_at: str  # ISO instant the bank reversed it
    at: str  # ISO instant the signal came
    overpaid: str = "0"
    reopened: bool = False  # it reopened a loan closed `repaid`
    outstanding: str = ""  # the balance after it
    amount_paid: str = ""


@dataclass(frozen=True)
class ReopeningRecord:
    """A loan closed `repaid` reopened by a new run: the loan's row open
    again, audited; once per run."""

    key: str
    workflow_id: str
    loan_id: str
    payment_id: str  # the reversal that reopened it
    reason: str
    previous_outcome: str
    stage: str  # the stage it reopens in (the one it closed in)
    at: str
    days_past_due: int = 0


@dataclass(frozen=True)
class BureauReport:
    """One Metro 2-like record (dunning/bureau.py); one per key, ever."""

    key: str
    workflow_id: str
    loan_id: str
    days_past_due: int
    outstanding: str
    currency: str
    kind: str = "first"  # first | regular | correction | final
    cycle: str = ""  # "YYYY-MM", the reporting cycle (export file) it belongs to
    account_status: str = ""
    special_comment: str = ""
    compliance_code: str = ""
    first_delinquency: str = ""  # ISO date, never moves
    amount_past_due: str = ""
    original_amount: str = ""
    reported_on: str = ""  # the borrower's local date
    payment_rating: str = ""  # Metro 2 field 17B: 0-6, G, L with status 13 (and 05, 65, 88, 89, 94, 95); else blank
    # Issue 18, item 1 (a legal status): Metro 2 field 38, the Consumer
    # Information Indicator (A-D petition, E-H discharged, I-L dismissed, Q
    # removal; blank: none), and field 37, the ECOA code when not the
    # individual's 1 (X deceased). A record without them (an older workflow's) has neither.
    consumer_information_indicator: str = ""
    ecoa_code: str = ""


@dataclass(frozen=True)
class ArrangementEvent:
    """A plan or a promise to pay: made, an installment paid, kept or broken."""

    key: str
    workflow_id: str
    loan_id: str
    # plan_accepted | installment_paid | plan_kept | plan_broken |
    # promise_made | promise_kept | promise_broken | settlement_accepted |
    # settlement_pending | settlement_approved | settlement_refused |
    # settlement_paid | settlement_missed | settlement_lapsed (issue 18, item 4)
    kind: str
    number: int  # plan_no, promise_no or settlement_no
    currency: str
    at: str  # ISO instant
    amount: str = ""  # the plan's total, the installment's or the promise's amount
    due_date: str = ""  # the promise's by_date, the installment's due date
    installment: int = 0
    # For plan_accepted: [{"number", "due_date", "amount"}], and the waivers.
    schedule: list | None = None
    waived_fees: str = "0"
    waived_interest: str = "0"
    source: str = ""  # borrower | field_visit
    days_past_due: int = 0
    policy: str = ""
    segment: str = ""
    # A settlement's (issue 18, item 4): who proposed and who decided it (ids),
    # its discount (1 - amount / outstanding, 4 places) and, once paid, the
    # balance written off.
    agent_id: str = ""
    approver_id: str = ""
    discount: str = ""
    waived: str = ""


@dataclass(frozen=True)
class FieldVisitAssignment:
    key: str
    workflow_id: str
    loan_id: str
    visit_id: str
    staff_required: int  # the profile's field_visit_min_staff (cn: 2)
    days_past_due: int
    outstanding: str
    currency: str
    at: str


@dataclass(frozen=True)
class VisitOutcome:
    """The field team's outcome; their notes are in the database already."""

    key: str
    workflow_id: str
    loan_id: str
    visit_id: str
    outcome: str
    staff_ids: list
    at: str


@dataclass(frozen=True)
class LegalOutcomeRecord:
    key: str
    workflow_id: str
    loan_id: str
    outcome: str  # filed | judgment | settled | withdrawn | time_barred (issue 18, item 2: the debt became time-barred before filing)
    case_ref: str
    at: str


@dataclass(frozen=True)
class DecisionRecord:
    """A compliance decision (a contact postponed or skipped, and why) or an
    operator action (pause, resume, opt_out, dispute...), for the audit log."""

    key: str  # one audit entry per key, ever
    workflow_id: str
    loan_id: str
    kind: str  # decision | operator
    rule: str  # a code: "window", "voice_daily_cap", "pause", "opt_out", ...
    reason: str  # short text or code, never personal data
    channel: str = ""
    step_key: str = ""
    at: str = ""  # ISO instant the decision was made or the signal arrived


@dataclass(frozen=True)
class ComplaintOpened:
    key: str
    workflow_id: str
    loan_id: str
    complaint_id: str
    category: str
    at: str  # ISO instant the complaint arrived


@dataclass(frozen=True)
class ComplaintResolved:
    workflow_id: str
    loan_id: str
    complaint_id: str
    upheld: bool
    reviewer_id: str  # the reviewer's id, never a name
    at: str


# ------------------------------------------------------------ agent tasks (issue 17)

OPEN_TASK = "open_task"
ESCALATE_TASK = "escalate_task"


@dataclass(frozen=True)
class TaskRequest:
    """Work for a person (db/tasks.py): made once by `key`; the same key again
    is the same task. Ids and codes only: `subject` is an id (a complaint id,
    a visit id, an outbox key), `note` a short code, never personal data."""

    key: str  # one task per key, ever: e.g. dunning-L-1/task/dispute_verification/1
    workflow_id: str
    loan_id: str
    borrower_id: str
    kind: str  # one of db/tasks.py KINDS (callback, dispute_verification, inbound_request, ...)
    due_in_hours: int  # due_at = at + due_in_hours
    sla_hours: int = 0  # when it is overdue enough to escalate; 0: the same as due_in_hours
    priority: int = 0  # higher is listed first
    subject: str = ""  # complaint_review needs the complaint id here
    note: str = ""
    at: str = ""  # ISO instant the workflow decided it (default: the activity's clock)


@dataclass(frozen=True)
class TaskOpened:
    """The task the key names (made now or before): its row id, status and when it is due."""

    key: str
    task_id: int
    status: str  # open | claimed | done
    due_at: str  # ISO instant, UTC


@dataclass(frozen=True)
class TaskEscalation:
    key: str
    at: str = ""  # ISO instant the SLA ran out (default: the activity's clock)


@dataclass(frozen=True)
class ContactBatch:
    """Contacts of one loan due at the same instant (issue 19, item 5), sent
    in order by one `send_contacts` activity. `max_attempts` is the workflow's
    retry policy's: on that attempt a contact that still fails for a reason
    that may pass is reported `failed` instead of failing the batch."""

    requests: list[ContactRequest]
    max_attempts: int = 5


@dataclass(frozen=True)
class ContactOutcomes:
    """One outcome per request, in the batch's order."""

    outcomes: list[ContactOutcome]
