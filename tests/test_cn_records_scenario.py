"""Issue 16, the cn scenario: a loan under the `default` policy (profile cn)
paid down to a small residual, driven through its whole 180 days by the
planner and the transitions the workflow uses (tests/support/planner.py):

- the borrower is told (the `bureau_notice` message) before the first
  credit-bureau record (《征信业管理条例》第十五条);
- the 24 % cost cap holds to the cent on what is owed, every day, although
  only a few yuan are left (it used to be measured on the original amount,
  so 8.00 left bore 0.01 a day: 46 % a year).

Fixed dates and zone; no wall clock."""

from __future__ import annotations

from datetime import datetime, time, timezone
from decimal import Decimal

import pytest

from dunning.clock import LoanClock
from dunning.inputs import parse_signal, RepaymentSignal
from dunning.transitions.records import Moment
from dunning.versions import CURRENT
from loaders.config_files import load_policy, load_profile
from tests.support.planner import DUE, POLICIES, PROFILES, new_state, walk

SHANGHAI = "Asia/Shanghai"
CAP = load_profile("cn", PROFILES).rules.annual_cost_cap


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return LoanClock(datetime(2026, 1, 1, tzinfo=timezone.utc), SHANGHAI, DUE).at(day, time(hour, minute))


@pytest.mark.parametrize("residual", ["8.00", "11.00", "0.37"])
def test_a_cn_loan_paid_down_to_a_residual_is_told_before_it_is_reported_and_never_charged_past_the_cap(residual):
    policy = load_policy("default", POLICIES)
    state = new_state(contract_late_fee=Decimal("25.00"), contract_penalty_rate=Decimal("0.36"))
    start = at(1, 0, 30)
    events, action = walk(policy, state, start, until_day=3)

    # Day 3, 12:00: the borrower pays all but the residual (and the charges so far).
    paid_at = at(3, 12)
    clock = LoanClock(start, SHANGHAI, DUE)
    moment = Moment(f"dunning-{state.loan_id}", "run-1", clock.real_time(paid_at), clock)
    terms = CURRENT.begin(state, policy, load_profile("cn", PROFILES), clock, paid_at)
    owed_now = state.principal_due + state.fees_due + state.interest_due
    amount = owed_now - Decimal(residual)
    payload = {"payment_id": "P-1", "amount": str(amount), "currency": state.currency, "paid_at": paid_at.isoformat()}
    CURRENT.receive_payment(state, payload, moment, terms)
    assert state.principal_due == Decimal(residual)

    # Then day by day to the write-off, keeping the principal each day began with.
    owed_days: list[Decimal] = []
    moment_at = paid_at
    for day in range(4, policy.write_off_day + 1):
        owed_days.append(state.principal_due)
        more, action = walk(policy, state, clock.real_time(max(moment_at, at(day - 1, 0, 1))), until_day=day)
        events += more
        moment_at = at(day, 0, 1)
        if action.kind == "write_off":
            break
        charged_since = state.fees_charged + state.interest_charged
        # What was charged never exceeds the cap on what was owed, to the cent.
        allowed = (Decimal("1200.00") * 3 + sum(owed_days, Decimal("0"))) * CAP / 365
        assert charged_since <= allowed, f"day {day}: {charged_since} charged, {allowed} allowed"

    # Told first: the first record comes after the bureau_notice went out.
    told = min(c.loan_at for c in state.contacts if c.template == "bureau_notice" and c.went_out)
    assert state.bureau_reported and state.bureau.first_reported_on >= told.date()
    bureau_days = [e[1] for e in events if e[0] == "bureau"]
    notice_days = [e[3] for e in events if e[0] == "contact" and e[2] == "bureau_notice"]
    assert bureau_days and notice_days and min(notice_days) <= min(bureau_days)
    # After the payment only the residual bore charges: a few fen at most.
    assert state.interest_charged + state.fees_charged <= (Decimal("1200.00") * 3 + Decimal(residual) * 180) * CAP / 365
