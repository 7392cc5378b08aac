"""The demo's sample loans and their borrowers (scripts/demo.py), without a
server: the records place as they are (one borrower with two loans, one loan
placed before its due date), and the borrowers, the simulator's
(simulation/behaviour.py), count their days on the loan's 4-second clock."""

from __future__ import annotations

import importlib.util
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from db.directory import upsert_placements
from dunning.clock import LoanClock
from loaders.config_files import load_policy
from services.placement import validate_placements
from simulation.portfolio import BREAKS_PROMISE, KEEPS_PROMISE, NEVER_PAYS, PARTIAL_PAYER, PAYS_ON_REMINDER, TAKES_PLAN

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2027, 3, 1, 4, 0, tzinfo=timezone.utc)  # 12:00 in Shanghai


@pytest.fixture(scope="module")
def demo():
    spec = importlib.util.spec_from_file_location("demo_script", ROOT / "scripts" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_sample_loans_place_with_one_borrower_twice_and_one_loan_before_its_due_date(demo, session_factory):
    records = demo.sample_loans(NOW)
    placements = validate_placements(records)
    by_id = {p.loan_id: p for p in placements}
    assert len(by_id) == 8 and set(by_id) == set(demo.BEHAVIOURS)
    twice = [p for p in placements if p.borrower_id == "B-DEMO-1"]
    assert [p.loan_id for p in twice] == ["L-DEMO-1", "L-DEMO-7"] and twice[0].borrower == twice[1].borrower
    pre_due = by_id[demo.PRE_DUE_LOAN]
    today = NOW.astimezone(ZoneInfo(pre_due.borrower.time_zone)).date()
    assert (pre_due.due_date - today).days == demo.PRE_DUE_DAYS == 5
    assert all(p.due_date < today for p in placements if p.loan_id != demo.PRE_DUE_LOAN)
    summary = upsert_placements(session_factory, placements)
    assert (summary.borrowers_created, summary.loans_created) == (7, 8)


def test_the_borrowers_pay_promise_and_take_plans_as_the_simulators_do(demo):
    kinds = {loan_id: b.kind for loan_id, b in demo.BEHAVIOURS.items()}
    assert set(kinds.values()) == {PAYS_ON_REMINDER, PARTIAL_PAYER, KEEPS_PROMISE, BREAKS_PROMISE, TAKES_PLAN, NEVER_PAYS}
    plans = [demo.BEHAVIOURS[i] for i, k in kinds.items() if k == TAKES_PLAN]
    assert sorted(str(b.breaks_at) for b in plans) == ["2", "None"]  # one plan kept, one broken


def test_a_demo_borrower_counts_the_loans_fast_days_and_keeps_its_promise(demo):
    policy = load_policy("demo", ROOT / "config" / "policies")
    record = next(r for r in demo.sample_loans(NOW) if r["loan_id"] == "L-DEMO-2")
    borrower = demo.demo_borrower(record, policy)
    borrower.clock = LoanClock(NOW, borrower.loan.time_zone, borrower.loan.due_date, policy.day_seconds)
    assert borrower.day_of(NOW) == 5 and borrower.day_of(NOW + timedelta(seconds=4 * 4)) == 9
    # The first collections contact (the call stage's SMS, day 9) brings a promise ...
    sms_at = borrower.clock.real_time(borrower.clock.at(9, datetime.min.time().replace(hour=9)))
    status = {"stage": "call", "outstanding": "250.00", "next_action_at": None, "contacts": [
        {"at": sms_at.isoformat(), "channel": "sms", "stage": "call", "template": "reminder_followup", "result": "sent"}]}
    [promise] = borrower.look(sms_at + timedelta(seconds=2), status)
    assert promise.kind == "promise_to_pay" and promise.payload == {
        "amount": "250.00", "by_date": borrower.date_of(14).isoformat()}
    borrower.answered(promise, 9, {"promise_no": 1})
    # ... kept: the balance paid two days before its date.
    assert borrower.next_look == 12
    day_12 = borrower.clock.real_time(borrower.clock.at(12, demo.LOOK_AT))
    [payment] = borrower.look(day_12, {**status, "contacts": status["contacts"]})
    assert payment.kind == "repayment" and payment.payload["amount"] == "250.00" and borrower.done
