"""Typed inputs and outputs of the activities.

These cross into workflow history, so they carry ids, money (decimal strings),
dates and codes only, never a name, phone number or e-mail address. Activities
look contact details up in the borrower directory themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

# Activity names, shared by the workflow (which calls them by name) and the
# worker (which registers them); see activities/dunning_activities.py.
PREPARE_LOAN = "prepare_loan"
SEND_CONTACT = "send_contact"
ENTER_STAGE = "enter_stage"
RECORD_PAYMENT = "record_payment"
CLOSE_LOAN = "close_loan"
REPORT_TO_BUREAU = "report_to_bureau"
RECORD_DECISION = "record_decision"
OPEN_COMPLAINT = "open_complaint"
RESOLVE_COMPLAINT = "resolve_complaint"


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
    # at which the contact may be tried again.
    not_before: str = ""


@dataclass(frozen=True)
class StageEntry:
    key: str  # idempotency key for the bureau record / legal case
    workflow_id: str
    loan_id: str
    stage: str
    days_past_due: int
    outstanding: str
    currency: str


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


@dataclass(frozen=True)
class LoanClosing:
    workflow_id: str
    loan_id: str
    outcome: str
    amount_paid: str
    outstanding: str
    final_stage: str
    closed_at: str


@dataclass(frozen=True)
class BureauReport:
    key: str  # one first report per loan
    workflow_id: str
    loan_id: str
    days_past_due: int
    outstanding: str
    currency: str


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
