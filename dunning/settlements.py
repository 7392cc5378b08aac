"""Settlements for less than the balance, in full satisfaction (issue 18,
item 4): what the policy accepts, whether the agent may grant it alone, and
when payments have paid it or its date has passed.

Pure functions, like dunning/arrangements.py: the `propose_settlement`
update's validator calls `check_settlement` (a rejection names the key or the
policy rule, nothing changes), the handler calls it again to build what it
accepts, and the loop and the planner ask `settlement_paid` and
`settlement_deadline`.

The discount is 1 - amount / outstanding. Whether it is within the agent's
limit is decided exactly (amount >= outstanding x (1 - limit)), never on the
rounded figure shown.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal, localcontext

from dunning.arrangements import ArrangementRejected, _open_for_arrangements
from dunning.inputs import SettlementProposal
from dunning.money import format_amount, parse_amount
from dunning.policy import Policy
from dunning.state import LoanState, Settlement

DISCOUNT_PLACES = Decimal("0.0001")


def discount_of(amount: Decimal, outstanding: Decimal) -> Decimal:
    """1 - amount / outstanding, to 4 places (0.2500 is 25 %)."""
    if outstanding <= 0:
        return Decimal("0")
    with localcontext() as context:  # the same answer whatever the caller's context
        context.prec = 28
        return (Decimal(1) - amount / outstanding).quantize(DISCOUNT_PLACES, rounding=ROUND_HALF_UP)


def within_limit(amount: Decimal, outstanding: Decimal, limit: Decimal) -> bool:
    """The discount is at most `limit`, exactly."""
    return amount >= outstanding * (Decimal(1) - limit)


def check_settlement(policy: Policy, state: LoanState, proposal: SettlementProposal, today: date) -> Settlement:
    """The settlement to take (`accepted` within the agent's limit, else
    `pending_approval`), or ArrangementRejected naming the key and the rule.

    `today` is the borrower's local date; nothing in `state` changes."""
    rules = policy.settlements
    _open_for_arrangements(state, "settlement")
    if not rules.enabled:
        raise ArrangementRejected("settlement: this policy takes no settlements (settlements.enabled)")
    try:
        amount = parse_amount(proposal.amount, state.currency)
    except ValueError as error:
        raise ArrangementRejected(f"amount: {error}") from None
    outstanding = state.outstanding
    if amount >= outstanding:
        raise ArrangementRejected(
            f"amount: must be less than the {format_amount(outstanding, state.currency)} outstanding "
            "(a settlement is for less than the balance; the balance itself is a repayment)"
        )
    if proposal.pay_by < today:
        raise ArrangementRejected(f"pay_by: {proposal.pay_by} is in the past (today is {today})")
    if (proposal.pay_by - today).days > rules.max_pay_by_days:
        raise ArrangementRejected(f"pay_by: at most {rules.max_pay_by_days} days from today (settlements.max_pay_by_days)")
    limit = rules.agent_limit(state.stage, state.segment)
    accepted = within_limit(amount, outstanding, limit)
    return Settlement(
        settlement_no=len(state.settlements) + 1,
        status="accepted" if accepted else "pending_approval",
        proposed_on=today,
        amount=amount,
        outstanding=outstanding,
        discount=discount_of(amount, outstanding),
        agent_limit=limit,
        pay_by=proposal.pay_by,
        agent_id=proposal.agent_id,
        paid_before=state.amount_paid,
        decided_on=today if accepted else None,
    )


def settlement_paid(settlement: Settlement, amount_paid: Decimal) -> bool:
    """Payments since it was proposed reach its amount."""
    return settlement.paid_under_settlement(amount_paid) >= settlement.amount


def settlement_deadline(policy: Policy, settlement: Settlement) -> date:
    """The first local day on which an unpaid settlement is missed: the day
    after `pay_by` (plus the policy's grace days)."""
    return settlement.pay_by + timedelta(days=policy.settlements.grace_days + 1)


def reminder_day(policy: Policy, settlement: Settlement) -> date | None:
    """The local day its reminder goes, or None when that day is not after
    the day it was accepted (the confirmation already says the date)."""
    if settlement.decided_on is None:
        return None
    day = settlement.pay_by - timedelta(days=policy.settlements.reminder_days_before)
    return day if day > settlement.decided_on else None
