"""Late fees and penalty interest, and how payments pay them off.

Pure functions over the loan's state, so the workflow replays them exactly.
Charges are posted day by day up to today whenever the workflow wakes (its
timers and signals) and before a payment is applied, so a payment never pays
interest of a day that had not begun, and the status shows what is owed now.

What may be charged is the least of three things:
- the policy's `[charges]` (what the lender wants to charge);
- the loan's contract (`contract_terms` in the start input), where the
  profile forbids charges beyond it (`fees_beyond_contract = false`, both
  `cn` and `us`): a loan whose contract names no fee gets none;
- the profile's `annual_cost_cap`: late fees plus penalty interest charged by
  day d never exceed principal x cap x d / 365. A charge that would cross it
  is cut to what is left, and not charged later.
Each charge is rounded to the currency's minor unit by the policy's rule.
"""

from __future__ import annotations

import decimal
from dataclasses import dataclass
from decimal import Decimal

from dunning.compliance import Profile
from dunning.money import minor_units
from dunning.policy import Policy
from dunning.state import LoanState

_DAYS_IN_YEAR = Decimal(365)


@dataclass(frozen=True)
class Terms:
    """The charges that apply to one loan, after contract and profile."""

    late_fee: Decimal
    late_fee_day: int
    penalty_rate_annual: Decimal
    interest_from_day: int
    cost_cap_annual: Decimal | None
    rounding: str

    @property
    def charges_anything(self) -> bool:
        return self.late_fee > 0 or self.penalty_rate_annual > 0


def terms_for(policy: Policy, profile: Profile, state: LoanState) -> Terms:
    late_fee, rate = policy.charges.late_fee, policy.charges.penalty_rate_annual
    if not profile.rules.fees_beyond_contract:
        late_fee = min(late_fee, state.contract_late_fee or Decimal("0"))
        rate = min(rate, state.contract_penalty_rate or Decimal("0"))
    cap = profile.rules.annual_cost_cap
    if cap is not None:
        rate = min(rate, cap)
    return Terms(
        late_fee=late_fee,
        late_fee_day=policy.charges.late_fee_day,
        penalty_rate_annual=rate,
        interest_from_day=policy.charges.interest_from_day,
        cost_cap_annual=cap,
        rounding=policy.charges.rounding,
    )


def _round(amount: Decimal, currency: str, rounding: str) -> Decimal:
    return amount.quantize(Decimal(1).scaleb(-minor_units(currency)), rounding=getattr(decimal, rounding))


def cap_through(terms: Terms, state: LoanState, day: int) -> Decimal | None:
    """The most that fees and interest together may reach by `day`."""
    if terms.cost_cap_annual is None:
        return None
    return _round(state.amount_due * terms.cost_cap_annual * day / _DAYS_IN_YEAR, state.currency, "ROUND_DOWN")


def post_charges(terms: Terms, state: LoanState, today: int) -> bool:
    """Charge every day past due up to `today` not charged yet; True if any was.

    While an installment plan runs, charges are frozen: those days are passed
    over, not charged later."""
    if today <= state.charges_through_day:
        return False
    frozen = state.active_plan is not None
    changed = False
    for day in range(state.charges_through_day + 1, today + 1):
        if frozen or not terms.charges_anything:
            continue
        fee = terms.late_fee if (not state.late_fee_charged and day >= terms.late_fee_day) else Decimal("0")
        interest = Decimal("0")
        if day >= terms.interest_from_day and state.principal_due > 0:
            interest = _round(state.principal_due * terms.penalty_rate_annual / _DAYS_IN_YEAR, state.currency, terms.rounding)
        cap = cap_through(terms, state, day)
        if cap is not None:
            room = max(cap - state.fees_charged - state.interest_charged, Decimal("0"))
            fee = min(fee, room)
            interest = min(interest, room - fee)
        if not state.late_fee_charged and day >= terms.late_fee_day:
            state.late_fee_charged = True  # once, even when the cap cut it
        if fee > 0:
            state.fees_due += fee
            state.fees_charged += fee
            changed = True
        if interest > 0:
            state.interest_due += interest
            state.interest_charged += interest
            changed = True
    state.charges_through_day = today
    return changed


def apply_payment(state: LoanState, amount: Decimal) -> None:
    """Fees first, then interest, then principal; anything over is kept as
    paid (an overpayment a person refunds), the balance stays at zero."""
    state.amount_paid += amount
    left = amount
    for part in ("fees_due", "interest_due", "principal_due"):
        owed = getattr(state, part)
        take = min(owed, left)
        setattr(state, part, owed - take)
        left -= take


def waive(state: LoanState, fees: bool, interest: bool) -> tuple[Decimal, Decimal]:
    """Waive the fees and/or interest owed now (a plan's concession)."""
    waived_fees = state.fees_due if fees else Decimal("0")
    waived_interest = state.interest_due if interest else Decimal("0")
    state.fees_due -= waived_fees
    state.interest_due -= waived_interest
    state.fees_waived += waived_fees
    state.interest_waived += waived_interest
    return waived_fees, waived_interest


def reinstate(state: LoanState, fees: Decimal, interest: Decimal) -> None:
    """A broken plan's waivers lapse: what was waived is owed again."""
    state.fees_due += fees
    state.interest_due += interest
    state.fees_waived -= fees
    state.interest_waived -= interest
