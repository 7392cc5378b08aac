"""Late fees and penalty interest, and how payments pay them off.

Pure functions over the loan's state, so the workflow replays them exactly.
Charges are posted day by day up to today whenever the workflow wakes (its
timers and signals) and before a payment is applied, so a payment never pays
interest of a day that had not begun, and the status shows what is owed now.
Posting writes no record: a charge changes amounts only.

What may be charged is the least of three things:
- the policy's `[charges]` (what the lender wants to charge);
- the loan's contract (`contract_terms` in the start input), where the
  profile forbids charges beyond it (`fees_beyond_contract = false`, both
  `cn` and `us`): a loan whose contract names no fee gets none;
- the profile's `annual_cost_cap`: the charges it covers (`cost_cap_covers`)
  never exceed, by any day, the cap's share of the base over the days past
  due. The base (`cost_cap_basis`) is the amount placed (`original_amount`:
  principal x cap x d / 365 by day d), or the principal owed each day
  (`owed`: the sum of principal_due x cap / 365 over the days). A charge that
  would cross it is cut to what is left, and not charged later.

Interest is rounded by the policy's rule each day, or, under
`exact_interest_accrual`, accrued exactly, charged in whole minor units
(rounded down) with the remainder carried in `interest_accrued`: what is
charged by any day never exceeds the rate (or the cap) on what was owed.

Under `payment_time_tolerance_hours` a payment made (`paid_at`) before it was
reported counts from when it was made: the charges of the days after it are
undone (`rewind`; the last days' states are kept in `charge_days`), the
payment applied, and those days charged again on what it left. Under
`charges_during_hold = false` no day begun while a hold stood is charged.
Whatever the profile, no day of a bankruptcy's stay, after a death or in a
hardship is charged (a legal status, issue 18, item 1: `_legal_freeze`).

A payment reversed (issue 18, item 3) is undone by the allocation
`apply_payment` returned for it (`unapply_payment`), and the contract's
`returned_payment_fee`, if it sets one, is charged within the cap
(`charge_returned_payment_fee`).

Every one of those settings defaults to the rules of profiles recorded before
it existed, under which this module computes exactly what it did then.
"""

from __future__ import annotations

import decimal
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from dunning.clock import LoanClock
from dunning.compliance import Profile
from dunning.money import minor_units
from dunning.policy import Policy
from dunning.state import ChargeDay, LoanState

_DAYS_IN_YEAR = Decimal(365)
# The precision of what is carried between days (accrued interest, the cap's
# allowance), rounded down: a borrower is never charged for the digits dropped.
_CARRIED = Decimal("1e-10")


@dataclass(frozen=True)
class Terms:
    """The charges that apply to one loan, after contract and profile."""

    late_fee: Decimal
    late_fee_day: int
    penalty_rate_annual: Decimal
    interest_from_day: int
    cost_cap_annual: Decimal | None
    rounding: str
    # The profile's newer rules (dunning/compliance.py, Rules); the defaults
    # are the behaviour before them.
    cost_cap_basis: str = "original_amount"
    cost_cap_covers: tuple[str, ...] = ("late_fees", "penalty_interest")
    exact_interest_accrual: bool = False
    payment_time_tolerance: timedelta | None = None
    charges_during_hold: bool = True
    # The contract's fee for a payment returned unpaid (issue 18, item 3).
    returned_payment_fee: Decimal = Decimal("0")

    @property
    def charges_anything(self) -> bool:
        return self.late_fee > 0 or self.penalty_rate_annual > 0

    @property
    def cap_covers_fees(self) -> bool:
        return "late_fees" in self.cost_cap_covers

    @property
    def cap_covers_interest(self) -> bool:
        return "penalty_interest" in self.cost_cap_covers


def terms_for(policy: Policy, profile: Profile, state: LoanState) -> Terms:
    rules = profile.rules
    late_fee, rate = policy.charges.late_fee, policy.charges.penalty_rate_annual
    if not rules.fees_beyond_contract:
        late_fee = min(late_fee, state.contract_late_fee or Decimal("0"))
        rate = min(rate, state.contract_penalty_rate or Decimal("0"))
    cap = rules.annual_cost_cap
    if cap is not None and "penalty_interest" in rules.cost_cap_covers:
        rate = min(rate, cap)
    tolerance = rules.payment_time_tolerance_hours
    return Terms(
        late_fee=late_fee,
        late_fee_day=policy.charges.late_fee_day,
        penalty_rate_annual=rate,
        interest_from_day=policy.charges.interest_from_day,
        cost_cap_annual=cap,
        rounding=policy.charges.rounding,
        cost_cap_basis=rules.cost_cap_basis,
        cost_cap_covers=tuple(rules.cost_cap_covers),
        exact_interest_accrual=rules.exact_interest_accrual,
        payment_time_tolerance=timedelta(hours=tolerance) if tolerance is not None else None,
        charges_during_hold=rules.charges_during_hold,
        # Only ever what the contract sets: no policy adds one.
        returned_payment_fee=state.contract_returned_payment_fee or Decimal("0"),
    )


def _round(amount: Decimal, currency: str, rounding: str) -> Decimal:
    return amount.quantize(Decimal(1).scaleb(-minor_units(currency)), rounding=getattr(decimal, rounding))


def _carried(amount: Decimal) -> Decimal:
    return amount.quantize(_CARRIED, rounding=decimal.ROUND_DOWN)


def _allowance(terms: Terms, state: LoanState, day: int) -> Decimal | None:
    """What the covered charges may reach by `day`, exact (not rounded)."""
    if terms.cost_cap_annual is None:
        return None
    if terms.cost_cap_basis == "owed":
        return state.cost_cap_allowance
    return state.amount_due * terms.cost_cap_annual * day / _DAYS_IN_YEAR


def cap_through(terms: Terms, state: LoanState, day: int) -> Decimal | None:
    """The most that the charges the cap covers may reach by `day` (under the
    `owed` basis: by the last day posted), in whole minor units."""
    allowance = _allowance(terms, state, day)
    return None if allowance is None else _round(allowance, state.currency, "ROUND_DOWN")


def counted_charges(terms: Terms, state: LoanState) -> Decimal:
    """The charges so far that count against the cap."""
    return (state.fees_charged if terms.cap_covers_fees else Decimal("0")) + (
        state.interest_charged if terms.cap_covers_interest else Decimal("0")
    )


def post_charges(terms: Terms, state: LoanState, today: int) -> bool:
    """Charge every day past due up to `today` not charged yet; True if any was.

    While an installment plan runs, charges are frozen: those days are passed
    over, not charged later. So are the days of a hold where the profile
    says so (`charges_during_hold = false`): a day is passed over when a hold
    stood at this posting or was seen at any wake since the last one."""
    held = False
    if not terms.charges_during_hold:
        state.charges_held = state.charges_held or state.on_hold
        held = state.charges_held
    if today <= state.charges_through_day:
        return False
    frozen = state.active_plan is not None or held
    changed = False
    for day in range(state.charges_through_day + 1, today + 1):
        if terms.payment_time_tolerance is not None and terms.charges_anything:
            _remember(state, day)
        if terms.cost_cap_basis == "owed" and terms.cost_cap_annual is not None:
            # The cap's room grows with what is owed on each day past due.
            state.cost_cap_allowance = _carried(
                state.cost_cap_allowance + state.principal_due * terms.cost_cap_annual / _DAYS_IN_YEAR
            )
        if frozen or not terms.charges_anything or _legal_freeze(state, day):
            continue
        changed = _charge_day(terms, state, day) or changed
    state.charges_through_day = today
    if not terms.charges_during_hold:
        state.charges_held = state.on_hold
    if terms.payment_time_tolerance is not None:
        keep = math.ceil(terms.payment_time_tolerance / timedelta(hours=24)) + 1
        state.charge_days = [d for d in state.charge_days if d.day >= today - keep]
    return changed


def _legal_freeze(state: LoanState, day: int) -> bool:
    """A bankruptcy's stay, a death or a hardship (issue 18, item 1) freezes
    the day's fees and interest, whatever the profile says of holds: from
    the status's effective date (a hardship: until its `until`), for every
    day not posted before it was set. Never charged later."""
    return state.legal_status is not None and state.legal_status.freezes_charges_on(day, state.due_date)


def _charge_day(terms: Terms, state: LoanState, day: int) -> bool:
    fee_due = not state.late_fee_charged and day >= terms.late_fee_day
    if terms.payment_time_tolerance is not None and state.principal_due <= 0:
        # Nothing owed (a payment made on time, reported since): not late.
        fee_due = False
    fee = terms.late_fee if fee_due else Decimal("0")
    accrues = day >= terms.interest_from_day and state.principal_due > 0
    daily = state.principal_due * terms.penalty_rate_annual / _DAYS_IN_YEAR if accrues else Decimal("0")
    allowance = _allowance(terms, state, day)
    if terms.exact_interest_accrual:
        pending = state.interest_accrued + daily
        if allowance is not None:
            room = max(allowance - counted_charges(terms, state), Decimal("0"))
            if terms.cap_covers_fees:
                fee = min(fee, _round(room, state.currency, "ROUND_DOWN"))
                room -= fee
            if terms.cap_covers_interest:
                pending = min(pending, room)  # what the cap cuts is not charged later
        interest = _round(pending, state.currency, "ROUND_DOWN")
        state.interest_accrued = _carried(pending - interest)
    else:
        interest = _round(daily, state.currency, terms.rounding) if accrues else Decimal("0")
        if allowance is not None:
            cap = _round(allowance, state.currency, "ROUND_DOWN")
            room = max(cap - counted_charges(terms, state), Decimal("0"))
            if terms.cap_covers_fees:
                fee = min(fee, room)
                room -= fee
            if terms.cap_covers_interest:
                interest = min(interest, room)
    if fee_due:
        state.late_fee_charged = True  # once, even when the cap cut it
    if fee > 0:
        state.fees_due += fee
        state.fees_charged += fee
    if interest > 0:
        state.interest_due += interest
        state.interest_charged += interest
    return fee > 0 or interest > 0


# ------------------------------------------------ payments made before they came


def _remember(state: LoanState, day: int) -> None:
    state.charge_days.append(
        ChargeDay(
            day=day, fees_due=state.fees_due, interest_due=state.interest_due, fees_charged=state.fees_charged,
            interest_charged=state.interest_charged, late_fee_charged=state.late_fee_charged,
            interest_accrued=state.interest_accrued, cost_cap_allowance=state.cost_cap_allowance,
            charges_held=state.charges_held, plan_active=state.active_plan is not None,
        )
    )


def paid_day(terms: Terms, clock: LoanClock, paid_at: datetime | None, loan_now: datetime) -> int | None:
    """The day past due a payment counts from for charges: its `paid_at`'s,
    when the profile has a tolerance and `paid_at` is within it before the
    payment reached the workflow (on the loan's clock); else None (when it
    was received). A `paid_at` in the future, or earlier than the tolerance,
    is not taken."""
    if terms.payment_time_tolerance is None or paid_at is None:
        return None
    # Bounded in real time first: a paid_at far in the past, mapped through a
    # fast demo clock, would leave the calendar (OverflowError in a signal
    # handler: a workflow task failing for ever, found by the crash tests).
    real_now = clock.real_time(loan_now)
    real_tolerance = real_now - clock.real_time(loan_now - terms.payment_time_tolerance)
    if paid_at > real_now or real_now - paid_at > real_tolerance:
        return None
    paid = clock.loan_time(paid_at)
    if paid > loan_now or loan_now - paid > terms.payment_time_tolerance:
        return None
    return clock.days_past_due(paid)


def rewind(state: LoanState, day: int) -> None:
    """Undo the charges of the days after `day`, as far as the kept days go:
    never past a payment, a waiver or a plan's start or end (each ends what
    is kept, or the days under a plan are told apart)."""
    plan_now = state.active_plan is not None
    first = None
    while state.charge_days and state.charge_days[-1].day > day and state.charge_days[-1].plan_active == plan_now:
        first = state.charge_days.pop()
    if first is None:
        return
    state.fees_due, state.interest_due = first.fees_due, first.interest_due
    state.fees_charged, state.interest_charged = first.fees_charged, first.interest_charged
    state.late_fee_charged, state.interest_accrued = first.late_fee_charged, first.interest_accrued
    state.cost_cap_allowance, state.charges_held = first.cost_cap_allowance, first.charges_held
    state.charges_through_day = first.day - 1


def charge_and_apply(terms: Terms, state: LoanState, amount: Decimal, today: int, paid: int | None = None) -> Allocation:
    """A payment: the charges of the days begun before it, then the payment.
    `paid`: the day it was made (paid_day), when that was before `today`:
    charges after it are undone, the payment applied as of then, and the days
    since charged on what it left. Returns what it paid of each part."""
    if paid is None or paid >= today:
        post_charges(terms, state, today)
        return apply_payment(state, amount)
    rewind(state, paid)
    post_charges(terms, state, min(paid, today))
    allocation = apply_payment(state, amount)
    post_charges(terms, state, today)
    return allocation


# ------------------------------------------------------------- other changes


@dataclass(frozen=True)
class Allocation:
    """What one payment paid of each part, and over the balance."""

    fees: Decimal
    interest: Decimal
    principal: Decimal
    overpaid: Decimal


def apply_payment(state: LoanState, amount: Decimal) -> Allocation:
    """Fees first, then interest, then principal; anything over is kept as
    paid (an overpayment a person refunds), the balance stays at zero."""
    state.amount_paid += amount
    left = amount
    taken = []
    for part in ("fees_due", "interest_due", "principal_due"):
        owed = getattr(state, part)
        take = min(owed, left)
        setattr(state, part, owed - take)
        left -= take
        taken.append(take)
    state.charge_days.clear()  # a later payment never undoes charges before this one
    return Allocation(*taken, overpaid=left)


def unapply_payment(state: LoanState, amount: Decimal, fees: Decimal, interest: Decimal, principal: Decimal) -> None:
    """A payment reversed (issue 18, item 3): exactly what it paid of each
    part is owed again, and it no longer counts as paid. Charges posted since
    stay as they were (never recomputed on the days between), and no later
    payment undoes charges before the reversal."""
    state.amount_paid -= amount
    state.fees_due += fees
    state.interest_due += interest
    state.principal_due += principal
    state.charge_days.clear()


def charge_returned_payment_fee(terms: Terms, state: LoanState, today: int) -> Decimal:
    """The contract's fee for a returned payment, charged now (the days begun
    are posted first by the caller), cut to what the profile's cost cap
    leaves by `today` when the cap covers fees. None while a plan freezes the
    loan's charges or a hold stops them (`charges_during_hold = false`)."""
    fee = terms.returned_payment_fee
    if fee <= 0 or state.active_plan is not None or (not terms.charges_during_hold and state.on_hold):
        return Decimal("0")
    cap = cap_through(terms, state, today)
    if cap is not None and terms.cap_covers_fees:
        fee = min(fee, max(cap - counted_charges(terms, state), Decimal("0")))
    fee = _round(fee, state.currency, "ROUND_DOWN")
    if fee > 0:
        state.fees_due += fee
        state.fees_charged += fee
    return fee


def waive(state: LoanState, fees: bool, interest: bool) -> tuple[Decimal, Decimal]:
    """Waive the fees and/or interest owed now (a plan's concession)."""
    waived_fees = state.fees_due if fees else Decimal("0")
    waived_interest = state.interest_due if interest else Decimal("0")
    state.fees_due -= waived_fees
    state.interest_due -= waived_interest
    state.fees_waived += waived_fees
    state.interest_waived += waived_interest
    state.charge_days.clear()
    return waived_fees, waived_interest


def reinstate(state: LoanState, fees: Decimal, interest: Decimal) -> None:
    """A broken plan's waivers lapse: what was waived is owed again."""
    state.fees_due += fees
    state.interest_due += interest
    state.fees_waived -= fees
    state.interest_waived -= interest
    state.charge_days.clear()
