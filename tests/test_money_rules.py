"""The pure money rules of the deep stages: charges never pass their caps,
payments conserve every cent, plans split balances exactly, and bureau
status codes follow days past due."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from dunning import bureau
from dunning.arrangements import ArrangementRejected, check_plan, check_promise, plan_progress, split
from dunning.charges import apply_payment, cap_through, post_charges, terms_for
from loaders.config_files import load_profile
from dunning.inputs import PlanProposal, PromiseToPay
from loaders.config_files import load_policy
from dunning.state import LoanState

CONFIG = Path(__file__).resolve().parent.parent / "config"
DUE = date(2026, 11, 1)
amounts = st.decimals(min_value=Decimal("1.00"), max_value=Decimal("99999.99"), places=2)


def loan(amount="1200.00", **changes) -> LoanState:
    changes.setdefault("stage", "negotiation")
    return LoanState(loan_id="L-1", borrower_id="B-1", amount_due=Decimal(amount), currency="CNY", due_date=DUE,
                     policy="default", **changes)


def proposal(installments: int, first_due: date, **more) -> PlanProposal:
    return PlanProposal.model_validate({"installments": installments, "first_due_date": first_due.isoformat(), **more})


def policy_with_charges(fee="100.00", rate="0.36"):
    policy = load_policy("default", CONFIG / "policies")
    charges = policy.charges.model_copy(update={"late_fee": Decimal(fee), "penalty_rate_annual": Decimal(rate)})
    return policy.model_copy(update={"charges": charges})


@settings(max_examples=200, deadline=None)
@given(amount=amounts, fee=amounts, rate=st.decimals(min_value=0, max_value=3, places=4),
       days=st.integers(min_value=1, max_value=400), contract_fee=amounts, contract_rate=st.decimals(min_value=0, max_value=1, places=4))
def test_charges_never_pass_the_contract_or_the_cn_cost_cap_on_any_day(amount, fee, rate, days, contract_fee, contract_rate):
    profile = load_profile("cn", CONFIG / "profiles")
    state = loan(str(amount), contract_late_fee=contract_fee, contract_penalty_rate=contract_rate)
    terms = terms_for(policy_with_charges(str(fee), str(rate)), profile, state)
    assert terms.late_fee <= contract_fee and terms.penalty_rate_annual <= min(contract_rate, profile.rules.annual_cost_cap)
    for day in range(1, days + 1, 7):  # posted in uneven steps, as wakes come
        post_charges(terms, state, day)
        assert state.fees_charged + state.interest_charged <= cap_through(terms, state, day)
    assert state.fees_charged <= contract_fee


def test_without_contract_terms_a_cn_or_us_loan_is_never_charged():
    for profile_name in ("cn", "us"):
        state = loan()
        terms = terms_for(policy_with_charges(), load_profile(profile_name, CONFIG / "profiles"), state)
        post_charges(terms, state, 200)
        assert (state.fees_due, state.interest_due, state.outstanding) == (0, 0, Decimal("1200.00"))


@settings(max_examples=200, deadline=None)
@given(amount=amounts, payments=st.lists(amounts, max_size=6), days=st.integers(min_value=1, max_value=90))
def test_payments_go_to_fees_then_interest_then_principal_and_no_cent_is_lost(amount, payments, days):
    state = loan(str(amount), contract_late_fee=Decimal("50.00"), contract_penalty_rate=Decimal("0.2"))
    terms = terms_for(policy_with_charges(), load_profile("cn", CONFIG / "profiles"), state)
    post_charges(terms, state, days)
    owed = state.outstanding
    for paid in payments:
        fees_before, interest_before = state.fees_due, state.interest_due
        apply_payment(state, paid)
        if state.fees_due > 0:  # fees are paid first
            assert state.interest_due == interest_before and state.principal_due == amount
        if fees_before and state.interest_due < interest_before:
            assert state.fees_due == 0
    paid_total = sum(payments, Decimal("0"))
    assert state.amount_paid == paid_total
    assert state.outstanding == max(owed - paid_total, Decimal("0"))


@given(total=amounts, count=st.integers(min_value=1, max_value=24))
def test_a_plan_splits_the_balance_exactly_with_the_odd_cents_first(total, count):
    parts = split(total, count, "CNY")
    assert sum(parts) == total and len(parts) == count
    assert all(p == parts[1] for p in parts[1:]) and Decimal("0") <= parts[0] - parts[-1] < Decimal("0.01") * count


def test_plans_and_promises_outside_the_policy_are_rejected_naming_the_rule():
    policy = load_policy("default", CONFIG / "policies")
    today = DUE + timedelta(days=20)
    state = loan()
    rejected = []
    for asked in (
        proposal(7, today + timedelta(days=3)),
        proposal(3, today - timedelta(days=1)),
        proposal(3, today + timedelta(days=3), interval_days=3),
    ):
        try:
            check_plan(policy, state, asked, today)
        except ArrangementRejected as error:
            rejected.append(str(error).split(":")[0])
    assert rejected == ["installments", "first_due_date", "interval_days"]
    plan = check_plan(policy, state, proposal(3, today + timedelta(days=3)), today)
    state.plans.append(plan)
    try:
        check_promise(policy, state, PromiseToPay.model_validate({"amount": "100.00", "by_date": today.isoformat()}), today)
    except ArrangementRejected as error:
        assert str(error).startswith("plan: plan 1 is already running")
    else:
        raise AssertionError("a promise during a plan was accepted")
    # Payments cover installments in order; a missed one shows after its grace days.
    progress = plan_progress(policy, plan, Decimal("400.00"), plan.installments[1].due_date + timedelta(days=4))
    assert [i.number for i in progress.newly_paid] == [1] and progress.missed.number == 2 and not progress.complete


def test_bureau_status_codes_follow_days_past_due_then_collection_then_payment():
    state = loan(stage="credit_reporting")
    assert [bureau.status_code(state, d) for d in (29, 30, 60, 90, 120, 150, 180)] == ["11", "71", "78", "80", "82", "83", "84"]
    state.stage = "legal"
    assert bureau.status_code(state, 95) == "93"
    assert bureau.status_code(state, 95, outcome="written_off") == "97"  # a charge-off (issue 16)
    assert bureau.status_code(state, 95, outcome="repaid", was_93=True) == "62"
    assert bureau.status_code(loan(), 40, outcome="repaid") == "13"
    state.disputed = True
    assert bureau.compliance_code(state) == "XB"
    state.disputed, state.bureau.reported_disputed = False, True
    assert bureau.compliance_code(state) == "XH"


@settings(max_examples=200, deadline=None)
@given(profile_name=st.sampled_from(["cn", "us"]), amount=amounts, rate=st.decimals(min_value=0, max_value=1, places=4),
       steps=st.lists(st.integers(min_value=1, max_value=12), min_size=1, max_size=30),
       payments=st.lists(st.decimals(min_value=Decimal("0.01"), max_value=Decimal("99999.99"), places=2), max_size=30))
def test_charges_never_pass_the_yearly_limit_on_what_is_owed_each_day_under_cn_and_us(profile_name, amount, rate, steps, payments):
    """Issue 16, item 5: by every wake, what was charged is at most the
    limit (cn: 24 % a year, fees and interest; us: the contract's rate,
    interest) of the principal owed on each day so far, to the cent, with
    payments paying the balance down to small residuals along the way."""
    profile = load_profile(profile_name, CONFIG / "profiles")
    state = loan(str(amount), contract_late_fee=Decimal("25.00"), contract_penalty_rate=rate)
    terms = terms_for(policy_with_charges("100.00", "3"), profile, state)
    limit = terms.cost_cap_annual if profile_name == "cn" else terms.penalty_rate_annual
    owed, day = [], 0
    for n, step in enumerate(steps):
        owed += [state.principal_due] * step  # a day's charge is on the principal it begins with
        day += step
        post_charges(terms, state, day)
        charged = state.interest_charged + (state.fees_charged if profile_name == "cn" else 0)
        assert charged <= sum(owed, Decimal("0")) * limit / 365
        assert Decimal("0") <= state.interest_accrued < Decimal("0.01")
        if n < len(payments) and state.outstanding > 0:
            apply_payment(state, min(payments[n], state.outstanding))
