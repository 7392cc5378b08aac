"""What a transition hands back besides the changed state: records to write.

A record names its writer by a kind below (the workflow maps each kind to its
activity and payload type), carries the payload's fields (ids, money as
decimal strings, dates and codes: never personal data) and a one-line summary
for the Temporal UI. Its key comes from dunning/keys.py, so a record retried
after a crash is written once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import cached_property
from typing import Any

from dunning import keys
from dunning.charges import Terms
from dunning.clock import LoanClock
from dunning.compliance import Profile
from dunning.money import format_amount
from dunning.policy import Policy
from dunning.state import LoanState

# The writers (activities/payloads.py has the activity behind each).
CONTACT = "contact"  # not a record but a message: sent through a provider
PAYMENT = "payment"
DECISION = "decision"
COMPLAINT_OPENED = "complaint_opened"
COMPLAINT_RESOLVED = "complaint_resolved"
ARRANGEMENT = "arrangement"
VISIT_ASSIGNED = "visit_assigned"
VISIT_OUTCOME = "visit_outcome"
LEGAL_OUTCOME = "legal_outcome"
STAGE_ENTRY = "stage_entry"
BUREAU = "bureau"
CLOSING = "closing"
TASK = "task"  # an agent task opened (db/tasks.py)
PAYMENT_REVERSAL = "payment_reversal"  # a payment reversed (issue 18, item 3)
REOPENING = "reopening"  # a loan closed `repaid` reopened by a reversal


@dataclass(frozen=True)
class Record:
    kind: str
    fields: dict[str, Any]
    summary: str


@dataclass(frozen=True)
class Write:
    """A record the loop writes and waits for, and the state change that
    follows it: a signal handled while the write runs sees the loan as it was,
    and a write that never succeeds changes nothing."""

    record: Record
    then: Callable[[], None]


@dataclass(frozen=True)
class Moment:
    """Which run, and when: the workflow's reading of its own clock
    (`workflow.now()`), passed in because the core has no clock."""

    workflow_id: str
    first_run_id: str  # names the chain of runs across continue-as-new
    now: datetime  # the real instant
    clock: LoanClock | None = None  # None until prepare_loan has answered

    @cached_property
    def loan_now(self) -> datetime:
        return self.clock.loan_time(self.now)

    @property
    def days_past_due(self) -> int:
        return self.clock.days_past_due(self.loan_now)

    @property
    def today(self) -> date:
        """The borrower's local date (on the loan's clock)."""
        return self.loan_now.date()

    @property
    def at(self) -> str:
        return self.now.isoformat()


@dataclass(frozen=True)
class Rules:
    """What governs one loan, fixed when it starts: its policy, its compliance
    profile and the charges it may bear (None: it bears none)."""

    policy: Policy
    profile: Profile
    terms: Terms | None = None


def money(state: LoanState, amount: Decimal) -> str:
    return format_amount(amount, state.currency)


def decision(
    state: LoanState, moment: Moment, kind: str, rule: str, reason: str, channel: str = "", step_key: str = ""
) -> Record:
    """A compliance decision or an operator action, for the audit log."""
    state.decisions_recorded += 1
    return Record(
        DECISION,
        dict(
            key=keys.decision_key(moment.workflow_id, moment.first_run_id, state.decisions_recorded),
            workflow_id=moment.workflow_id, loan_id=state.loan_id, kind=kind, rule=rule, reason=reason,
            channel=channel, step_key=step_key, at=moment.at,
        ),
        f"Record {kind}: {rule}",
    )


def operator_action(state: LoanState, moment: Moment, signal: str, reason: str, channel: str = "") -> Record:
    """An operator's (or the borrower's) signal, for the audit log with the time it arrived."""
    return decision(state, moment, "operator", signal, reason, channel)


def arrangement_event(state: LoanState, moment: Moment, kind: str, number: int, **fields: Any) -> Record:
    """A plan or a promise made, an installment paid, kept or broken."""
    family = keys.arrangement_family(kind)
    return Record(
        ARRANGEMENT,
        dict(
            key=keys.arrangement_event_key(moment.workflow_id, kind, number, fields.get("installment")),
            workflow_id=moment.workflow_id, loan_id=state.loan_id, kind=kind, number=number,
            currency=state.currency, at=moment.at, days_past_due=moment.days_past_due, policy=state.policy,
            segment=state.segment or "", **fields,
        ),
        f"{kind.replace('_', ' ').capitalize()} ({family} {number})",
    )
