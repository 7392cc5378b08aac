"""The loan's state as the workflow keeps it: money, flags, what was done.

It is a pydantic model so that it crosses continue-as-new as plain JSON and
the status query is a projection of it. It holds ids and money only.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from pydantic import BaseModel, Field

from dunning.contract import STAGE_PENDING, STAGES


class ContactEntry(BaseModel):
    at: datetime  # real instant, in the borrower's zone
    loan_at: datetime  # the same moment on the loan's clock (differs only on a fast demo clock)
    channel: str
    stage: str
    template: str
    day: int
    step: str = ""  # the planner's step key, which a provider's outcome names
    result: str  # sent | failed | skipped_no_address | skipped_opt_out | skipped_segment


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


class LoanState(BaseModel):
    loan_id: str
    borrower_id: str
    amount_due: Decimal
    currency: str
    due_date: date
    policy: str

    # Known once prepare_loan has answered.
    time_zone: str = "UTC"
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

    @property
    def outstanding(self) -> Decimal:
        return max(self.amount_due - self.amount_paid, Decimal("0"))

    @property
    def on_hold(self) -> bool:
        return self.paused or self.disputed or bool(self.open_complaints)

    def stage_rank(self) -> int:
        return STAGES.index(self.stage) if self.stage in STAGES else -1

    def channel_opted_out(self, channel: str) -> bool:
        return "all" in self.opted_out or channel in self.opted_out
