"""Reminders before the due date (issue 17, item 5), through the contract on
the time-skipping server: a loan placed before it is due runs the policy's
pre_due stage, then, unpaid, the overdue stages on their usual days; paid
before the due date, it ends `repaid` at `pre_due`, with nothing charged.

The default policy sends them only to its riskier segments (high_risk,
high_balance). The borrower is in Shanghai and the steps go at 09:00 local,
so each test lets time pass until the contact it waits for is listed
instead of assuming the hour the server's clock stands at."""

from __future__ import annotations

from datetime import timedelta

import pytest

from sqlalchemy import select

from activities import payloads as acts
from db.models import Contact, Loan
from tests.support.temporal import loan_input, overdue_since, running_worker, time_env  # noqa: F401 (fixture)
from tests.test_workflow_scenarios import FakeActivities, fake_worker, payment, status

pytestmark = pytest.mark.asyncio

RISKY = 800  # the default policy's high_risk segment starts at 700


async def until_contacts(env, handle, count: int, days: int) -> dict:
    """Let time pass, half an hour at a time, until `count` contacts are listed."""
    for _ in range(days * 48):
        shown = await status(handle)
        if len(shown["contacts"]) >= count:
            return shown
        await env.sleep(timedelta(minutes=30))
    raise AssertionError(f"fewer than {count} contacts after {days} days: {shown['contacts']}")


async def test_a_loan_placed_five_days_early_gets_its_minus_3_and_minus_1_reminders_and_paid_on_day_minus_1_ends_repaid_at_pre_due(time_env):
    fake = FakeActivities()
    async with fake_worker(time_env, fake) as loans:
        handle = await loans.start(loan_input("L-PD-PAID", await overdue_since(time_env, -5), risk_score=RISKY))
        await time_env.sleep(timedelta(minutes=1))
        placed = await status(handle)
        assert (placed["stage"], placed["days_past_due"]) == ("pre_due", -5)

        reminded = await until_contacts(time_env, handle, 2, days=5)
        assert reminded["days_past_due"] == -1
        await handle.signal("repayment", payment("P-EARLY", "1200.00"))
        result = await handle.result()

    assert result == {"loan_id": "L-PD-PAID", "outcome": "repaid", "amount_paid": "1200.00", "final_stage": "pre_due"}
    assert [(c["channel"], c["day"], c["result"]) for c in reminded["contacts"]] == [("sms", -3, "sent"), ("push", -1, "sent")]
    assert [(r.channel, r.template, r.stage, r.days_past_due) for r in fake.sent] == [
        ("sms", "due_soon", "pre_due", -3), ("push", "due_soon", "pre_due", -1),
    ]
    [entered] = fake.written[acts.ENTER_STAGE]
    assert (entered["stage"], entered["days_past_due"]) == ("pre_due", -5)
    # Nothing is charged before the due date: the 1200.00 paid the whole debt.
    [closing] = fake.written[acts.CLOSE_LOAN]
    assert (closing["outcome"], closing["outstanding"]) == ("repaid", "0.00")


async def test_an_unpaid_early_loan_goes_on_to_the_reminder_stage_on_day_1(time_env):
    fake = FakeActivities()
    async with fake_worker(time_env, fake) as loans:
        handle = await loans.start(loan_input("L-PD-ON", await overdue_since(time_env, -2), risk_score=RISKY))
        # Placed on day -2: the day -3 reminder is past and never sent; day -1's is.
        shown = await until_contacts(time_env, handle, 2, days=4)

    assert [(c["stage"], c["channel"], c["day"]) for c in shown["contacts"][:2]] == [("pre_due", "push", -1), ("reminder", "sms", 1)]
    assert [e["stage"] for e in fake.written[acts.ENTER_STAGE]] == ["pre_due", "reminder"]


async def test_a_loan_outside_the_pre_due_segments_gets_no_reminder_before_it_is_due(time_env):
    fake = FakeActivities()
    async with fake_worker(time_env, fake) as loans:
        # No risk score, a small balance: the default policy's `small_balance` segment.
        handle = await loans.start(loan_input("L-PD-SAFE", await overdue_since(time_env, -3), amount="200.00"))
        await time_env.sleep(timedelta(minutes=1))
        waiting = await status(handle)
        shown = await until_contacts(time_env, handle, 1, days=5)

    assert (waiting["stage"], waiting["segment"]) == ("pending", "small_balance")
    assert {(c["stage"], c["day"]) for c in shown["contacts"]} == {("reminder", 1)}
    assert [e["stage"] for e in fake.written[acts.ENTER_STAGE]] == ["reminder"]


@pytest.mark.sqlite_only
async def test_the_reminder_before_the_due_date_is_rendered_and_recorded_by_the_real_activities(time_env, settings, seeded_borrower, session_factory):
    due = await overdue_since(time_env, -4)
    async with running_worker(time_env.client, settings) as loans:
        handle = await loans.start(loan_input("L-PD-REAL", due, risk_score=RISKY))
        await until_contacts(time_env, handle, 1, days=4)
        shown = await status(handle)

    with session_factory() as db:
        [sms] = db.scalars(select(Contact).where(Contact.loan_id == "L-PD-REAL")).all()
        loan = db.get(Loan, "L-PD-REAL")
    assert (sms.stage, sms.channel, sms.template, sms.status) == ("pre_due", "sms", "due_soon", "sent")
    # The borrower reads when it falls due, in their language, and no amount on the lock screen's line.
    first_line, rest = sms.body_text.split("\n", 1)
    assert "1,200.00" not in first_line and "1,200.00" in rest
    assert f"{due.month}月{due.day}日" in rest and "将于" in rest
    assert loan.stage == "pre_due" and shown["days_past_due"] == -3
