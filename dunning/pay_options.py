"""What the repayment page offers a borrower, read from the loan's `status`
answer (the contract's query): whether there is anything to pay, the plan
already running, and what each of the policy's plan offers would be if
accepted today.

An offer's schedule is the workflow's own arithmetic (`arrangements.split`:
the balance less what the offer waives, equal parts with the cents left over
on the first installment), so the page shows what `propose_plan` would
accept. The workflow checks the plan again when one is chosen; nothing here
decides anything for the loan. Pure: the caller passes the status and the
policy in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from dunning import contract
from dunning.arrangements import split
from dunning.money import format_amount
from dunning.policy import PlanOffer, Policy


@dataclass(frozen=True)
class ScheduledInstallment:
    number: int
    due_date: str  # ISO date
    amount: str  # formatted in the loan's currency


@dataclass(frozen=True)
class OfferSchedule:
    """One plan offer as the page shows it: accepted today, what would be due when."""

    index: int  # the offer's number in the policy (what the page posts back)
    interval_days: int
    total: str
    waive_fees: bool  # only when there are fees to waive
    waive_interest: bool
    installments: tuple[ScheduledInstallment, ...]


def _money(value: Any) -> Decimal:
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return Decimal("0")


def loan_today(status: dict) -> date | None:
    """The borrower's local date on the loan's own clock (due date + days past
    due, which the status query counts in the borrower's zone), the date the
    workflow checks a plan's first due date against."""
    try:
        return date.fromisoformat(str(status["due_date"])) + timedelta(days=int(status["days_past_due"]))
    except (KeyError, TypeError, ValueError):
        return None


def nothing_to_pay(status: dict) -> bool:
    """The loan is closed, or owes nothing."""
    if status.get("stage") == contract.STAGE_CLOSED:
        return True
    try:
        return float(status.get("outstanding")) <= 0
    except (TypeError, ValueError):
        return False


def running_plan(status: dict) -> dict | None:
    """The status's plan while it is active."""
    plan = status.get("plan")
    return plan if (plan or {}).get("status") == "active" else None


def offer_proposal(offer: PlanOffer, today: date) -> dict:
    """The propose_plan payload for a policy's plan offer, accepted today."""
    return {
        "installments": offer.installments,
        "first_due_date": (today + timedelta(days=offer.first_due_in_days)).isoformat(),
        "interval_days": offer.interval_days,
        "waive_fees": offer.waive_fees,
        "waive_interest": offer.waive_interest,
    }


def offers_open(policy: Policy, status: dict) -> bool:
    """Whether the page offers plans now: the policy has offers, the loan is in
    a stage that takes plans, not on hold, owes something and has no plan running.
    (The workflow checks again when one is chosen.)"""
    rules = policy.plans
    stage = status.get("stage")
    plan = status.get("plan") or {}
    return bool(
        rules.enabled
        and rules.offers
        and stage in contract.STAGES
        and contract.STAGES.index(stage) >= contract.STAGES.index(rules.from_stage)
        and plan.get("status") != "active"
        and not status.get("paused")
        and not status.get("disputed")
        and not status.get("open_complaints")
        and _money(status.get("outstanding")) > 0
    )


def offer_schedule(index: int, offer: PlanOffer, status: dict, today: date) -> OfferSchedule | None:
    """What an offer would be if accepted today; None if there is nothing to split."""
    currency = str(status.get("currency") or "")
    fees, interest = _money(status.get("fees")), _money(status.get("interest"))
    total = _money(status.get("outstanding"))
    if offer.waive_fees:
        total -= fees
    if offer.waive_interest:
        total -= interest
    if total <= 0 or not currency:
        return None
    first = today + timedelta(days=offer.first_due_in_days)
    return OfferSchedule(
        index=index,
        interval_days=offer.interval_days,
        total=format_amount(total, currency),
        waive_fees=offer.waive_fees and fees > 0,
        waive_interest=offer.waive_interest and interest > 0,
        installments=tuple(
            ScheduledInstallment(i + 1, (first + timedelta(days=offer.interval_days * i)).isoformat(),
                                 format_amount(amount, currency))
            for i, amount in enumerate(split(total, offer.installments, currency))
        ),
    )


def plan_offers(policy: Policy, status: dict, today: date) -> list[OfferSchedule]:
    """Every offer of the policy the page can show today (none when offers are closed)."""
    if not offers_open(policy, status):
        return []
    schedules = (offer_schedule(i, offer, status, today) for i, offer in enumerate(policy.plans.offers))
    return [schedule for schedule in schedules if schedule is not None]
