"""Installment plans and promises to pay: what the policy accepts, and how
payments keep them.

Pure functions: the workflow's update validators call `check_plan` and
`check_promise` (a rejection names the rule it breaks, nothing changes), the
update handlers call them again to build what they accept, and the loop asks
`plan_progress` / `promise_progress` what payments have done.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_DOWN, Decimal

from dunning.contract import STAGES
from dunning.inputs import InputError, PlanProposal, PromiseToPay
from dunning.money import minor_units, parse_amount
from dunning.policy import Policy
from dunning.state import Installment, LoanState, Plan, Promise


class ArrangementRejected(ValueError):
    """A proposal the policy does not allow: 'installments: at most 6 (plans.max_installments)'."""


def _open_for_arrangements(state: LoanState, what: str) -> None:
    if state.stage not in STAGES:
        raise ArrangementRejected(f"stage: a {what} needs a loan in dunning, this one is {state.stage}")
    if state.on_hold:
        raise ArrangementRejected(f"stage: collection is on hold (dispute, complaint or pause); no {what} now")
    if state.active_plan is not None:
        raise ArrangementRejected(f"plan: plan {state.active_plan.plan_no} is already running")
    if (settlement := state.open_settlement) is not None:
        raise ArrangementRejected(
            f"settlement: settlement {settlement.settlement_no} is {settlement.status.replace('_', ' ')}; "
            "nothing else is arranged until it ends"
        )
    if state.outstanding <= 0:
        raise ArrangementRejected("outstanding: nothing is owed")


def split(total: Decimal, count: int, currency: str) -> list[Decimal]:
    """`count` installments summing to `total` exactly: equal parts rounded
    down to the minor unit, the cents left over on the first."""
    unit = Decimal(1).scaleb(-minor_units(currency))
    part = (total / count).quantize(unit, rounding=ROUND_DOWN)
    return [total - part * (count - 1)] + [part] * (count - 1)


def check_plan(policy: Policy, state: LoanState, proposal: PlanProposal, today: date) -> Plan:
    """The plan to accept, or ArrangementRejected naming the key and the rule.

    `today` is the borrower's local date. Waivers are computed on what is owed
    now; nothing in `state` changes."""
    rules = policy.plans
    _open_for_arrangements(state, "plan")
    if not rules.enabled:
        raise ArrangementRejected("plan: this policy offers no installment plans (plans.enabled)")
    if state.stage_rank() < STAGES.index(rules.from_stage):
        raise ArrangementRejected(f"stage: plans are offered from the {rules.from_stage} stage (plans.from_stage)")
    if proposal.installments > rules.max_installments:
        raise ArrangementRejected(f"installments: at most {rules.max_installments} (plans.max_installments)")
    if proposal.installments > 1 and not rules.min_interval_days <= proposal.interval_days <= rules.max_interval_days:
        raise ArrangementRejected(
            f"interval_days: must be {rules.min_interval_days} to {rules.max_interval_days} "
            "(plans.min_interval_days, plans.max_interval_days)"
        )
    if proposal.first_due_date < today:
        raise ArrangementRejected(f"first_due_date: {proposal.first_due_date} is in the past (today is {today})")
    if (proposal.first_due_date - today).days > rules.first_due_within_days:
        raise ArrangementRejected(
            f"first_due_date: at most {rules.first_due_within_days} days from today (plans.first_due_within_days)"
        )
    dates = [proposal.first_due_date + timedelta(days=proposal.interval_days * i) for i in range(proposal.installments)]
    if (dates[-1] - today).days > rules.max_extension_days:
        raise ArrangementRejected(
            f"installments: the last one would be due {dates[-1]}, more than {rules.max_extension_days} days "
            "from today (plans.max_extension_days)"
        )
    if proposal.waive_fees and not rules.allow_fee_waiver and state.fees_due > 0:
        raise ArrangementRejected("waive_fees: this policy does not waive fees (plans.allow_fee_waiver)")
    if proposal.waive_interest and not rules.allow_interest_waiver and state.interest_due > 0:
        raise ArrangementRejected("waive_interest: this policy does not waive interest (plans.allow_interest_waiver)")
    waived_fees = state.fees_due if proposal.waive_fees else Decimal("0")
    waived_interest = state.interest_due if proposal.waive_interest else Decimal("0")
    total = state.outstanding - waived_fees - waived_interest
    amounts = split(total, proposal.installments, state.currency)
    if amounts[0] < total * rules.min_first_payment_ratio:
        raise ArrangementRejected(
            f"installments: the first payment ({amounts[0]}) is under {rules.min_first_payment_ratio:%} of the "
            "plan (plans.min_first_payment_ratio); propose fewer installments"
        )
    return Plan(
        plan_no=len(state.plans) + 1,
        accepted_on=today,
        total=total,
        paid_before=state.amount_paid,
        installments=[Installment(number=i + 1, due_date=d, amount=a) for i, (d, a) in enumerate(zip(dates, amounts))],
        waived_fees=waived_fees,
        waived_interest=waived_interest,
    )


@dataclass(frozen=True)
class PlanProgress:
    newly_paid: list[Installment]  # covered by payments since last asked
    missed: Installment | None  # the first installment past its grace, unpaid
    complete: bool


def plan_progress(policy: Policy, plan: Plan, amount_paid: Decimal, today: date) -> PlanProgress:
    """Which installments payments cover (in order, cumulatively), and whether
    one is unpaid past its due date plus the grace days."""
    covered = plan.paid_under_plan(amount_paid)
    running = Decimal("0")
    newly_paid, missed = [], None
    for installment in plan.installments:
        running += installment.amount
        if covered >= running:
            if installment.paid_on is None:
                newly_paid.append(installment)
        elif missed is None and (today - installment.due_date).days > policy.plans.grace_days:
            missed = installment
    return PlanProgress(newly_paid, missed, covered >= plan.total)


def plan_deadline(policy: Policy, plan: Plan, amount_paid: Decimal) -> date | None:
    """The first local day on which the plan counts as broken, if nothing is paid."""
    covered = plan.paid_under_plan(amount_paid)
    running = Decimal("0")
    for installment in plan.installments:
        running += installment.amount
        if covered < running:
            return installment.due_date + timedelta(days=policy.plans.grace_days + 1)
    return None


def check_promise(policy: Policy, state: LoanState, promise: PromiseToPay, today: date, source: str = "borrower") -> Promise:
    rules = policy.promises
    _open_for_arrangements(state, "promise")
    if not rules.enabled:
        raise ArrangementRejected("promise: this policy takes no promises to pay (promises.enabled)")
    if state.open_promise is not None:
        raise ArrangementRejected(f"promise: promise {state.open_promise.promise_no} is still open")
    if state.broken_promises >= rules.max_broken:
        raise ArrangementRejected(f"promise: {state.broken_promises} promises were broken; at most {rules.max_broken} (promises.max_broken)")
    try:
        amount = parse_amount(promise.amount, state.currency)
    except ValueError as error:
        raise ArrangementRejected(f"amount: {error}") from None
    if amount > state.outstanding:
        raise ArrangementRejected(f"amount: more than the {state.outstanding} outstanding")
    least = (state.outstanding * rules.min_amount_ratio).quantize(Decimal(1).scaleb(-minor_units(state.currency)))
    if amount < least:
        raise ArrangementRejected(f"amount: at least {least} ({rules.min_amount_ratio:%} of the outstanding, promises.min_amount_ratio)")
    if promise.by_date < today:
        raise ArrangementRejected(f"by_date: {promise.by_date} is in the past (today is {today})")
    if (promise.by_date - today).days > rules.max_days:
        raise ArrangementRejected(f"by_date: at most {rules.max_days} days from today (promises.max_days)")
    return Promise(
        promise_no=len(state.promises) + 1, amount=amount, by_date=promise.by_date, made_on=today,
        paid_before=state.amount_paid, source=source,
    )


def promise_kept(promise: Promise, amount_paid: Decimal) -> bool:
    return amount_paid - promise.paid_before >= promise.amount


def promise_deadline(policy: Policy, promise: Promise) -> date:
    """The first local day on which an unpaid promise counts as broken."""
    return promise.by_date + timedelta(days=policy.promises.grace_days + 1)


def parse_update(model, payload):
    """An update's payload, or ArrangementRejected naming the key."""
    from dunning.inputs import parse_signal

    try:
        return parse_signal(model, payload)
    except InputError as error:
        raise ArrangementRejected(str(error)) from None
