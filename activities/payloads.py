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


@dataclass(frozen=True)
class ContactOutcome:
    key: str
    channel: str
    # sent | failed | skipped_no_address
    result: str
    provider: str = ""
    provider_message_id: str = ""
    detail: str = ""


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
