"""DunningWorkflow on the time-skipping test server, with the real activities
writing to a fresh SQLite database and the local capture provider.

Each test reads like the scenario it checks: place a loan some days past due,
let time pass, signal it as a payment service or an operator would, and look
at what the workflow answers and what the database recorded.
"""

from __future__ import annotations

import json

from datetime import timedelta

import pytest
from sqlalchemy import select
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError

from temporalio.worker import Replayer

from db.models import BureauRecord, Contact, LegalCase, Loan, Payment
from runtime.worker_build import sandbox_runner
from workflows.dunning import DunningWorkflow
from tests.support.temporal import loan_input, overdue_since, running_worker, time_env  # noqa: F401 (fixture)

pytestmark = pytest.mark.asyncio


async def status(handle) -> dict:
    return await handle.query("status")


async def status_once(env, handle, condition, within=timedelta(days=1), step=timedelta(minutes=30)) -> dict:
    """Let time pass in steps until the status meets `condition` (the test
    server's clock may stand at any hour, so 'the 09:00 reminders' may be
    minutes or hours away)."""
    waited = timedelta(0)
    while True:
        now = await status(handle)
        if condition(now):
            return now
        if waited >= within:
            raise AssertionError(f"status never met the condition within {within}: {now}")
        await env.sleep(step)
        waited += step


async def test_a_loan_that_is_never_paid_walks_all_five_stages_and_is_written_off(time_env, settings, seeded_borrower, session_factory):
    async with running_worker(time_env.client, settings) as loans:
        handle = await loans.start(loan_input("L-WALK", await overdue_since(time_env, 1)))
        result = await handle.result()
        history = await handle.fetch_history()

    # The workflow code replays its own history: nothing in it is nondeterministic.
    await Replayer(workflows=[DunningWorkflow], workflow_runner=sandbox_runner()).replay_workflow(history)
    # The whole 180-day lifecycle is under 300 events (issue 19, item 5), in
    # one run: continue-as-new is a safety net (tests/test_continue_as_new.py).
    runs, run_id = [], handle.first_execution_run_id or handle.run_id
    while run_id:
        events = (await time_env.client.get_workflow_handle(handle.id, run_id=run_id).fetch_history()).events
        runs.append(len(events))
        last = events[-1]
        run_id = (last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
                  if last.HasField("workflow_execution_continued_as_new_event_attributes") else None)
    assert len(runs) == 1 and sum(runs) <= 300, runs

    assert result == {"loan_id": "L-WALK", "outcome": "written_off", "amount_paid": "0.00", "final_stage": "legal"}
    with session_factory() as db:
        contacts = db.scalars(select(Contact).where(Contact.loan_id == "L-WALK").order_by(Contact.id)).all()
        loan = db.get(Loan, "L-WALK")
        bureau = db.scalars(select(BureauRecord).where(BureauRecord.loan_id == "L-WALK")).all()
        legal = db.scalars(select(LegalCase).where(LegalCase.loan_id == "L-WALK")).all()
    stages_in_order = list(dict.fromkeys(c.stage for c in contacts))
    assert stages_in_order == ["reminder", "call", "negotiation", "credit_reporting", "legal"]
    assert [(c.channel, c.template) for c in contacts[:3]] == [
        ("sms", "reminder_friendly"), ("push", "reminder_friendly"), ("email", "reminder_friendly"),
    ]
    assert all(c.status == "sent" for c in contacts)
    assert len({c.key for c in contacts}) == len(contacts)
    assert loan.outcome == "written_off" and loan.stage == "closed"
    # The first bureau record as credit_reporting starts, one per monthly
    # cycle after it, and the charge-off as the last; the date of first
    # delinquency never moves.
    bureau.sort(key=lambda r: r.id)
    assert bureau[0].days_past_due == 31 and bureau[0].kind == "first" and bureau[0].account_status == "71"
    assert [r.kind for r in bureau[1:-1]] == ["regular"] * (len(bureau) - 2) and bureau[-1].kind == "final"
    assert len({r.cycle for r in bureau if r.kind != "final"}) == len(bureau) - 1
    assert {r.first_delinquency for r in bureau} == {loan.due_date + timedelta(days=30)}
    # In legal, placed for collection (93); the final record the charge-off (97, issue 16).
    assert [r.account_status for r in bureau[:-1] if r.days_past_due >= 91] == ["93"] * sum(1 for r in bureau[:-1] if r.days_past_due >= 91)
    assert (bureau[-1].account_status, bureau[-1].payment_rating) == ("97", None)
    assert len(legal) == 1 and legal[0].days_past_due == 91
    assert [d["name"] for d in json.loads(legal[0].documents)] == ["contract", "statement_of_account", "contact_evidence"]


async def test_repayment_during_the_call_stage_ends_the_loan_repaid_at_call(time_env, settings, seeded_borrower):
    async with running_worker(time_env.client, settings) as loans:
        handle = await loans.start(loan_input("L-CALL", await overdue_since(time_env, 9)))
        await time_env.sleep(timedelta(minutes=1))
        assert (await status(handle))["stage"] == "call"
        await handle.signal("repayment", {"payment_id": "P-1", "amount": "1200.00", "currency": "CNY", "paid_at": "2026-11-05T10:00:00+08:00"})
        result = await handle.result()
    assert result == {"loan_id": "L-CALL", "outcome": "repaid", "amount_paid": "1200.00", "final_stage": "call"}


async def test_partial_and_duplicate_payments_count_once_and_lower_the_balance(time_env, settings, seeded_borrower, session_factory):
    async with running_worker(time_env.client, settings) as loans:
        handle = await loans.start(loan_input("L-PART", await overdue_since(time_env, 2)))
        await time_env.sleep(timedelta(minutes=1))
        payment = {"payment_id": "P-1", "amount": "300.00", "currency": "CNY"}
        await handle.signal("repayment", payment)
        await handle.signal("repayment", payment)  # the payment service retried
        await handle.signal("repayment", {"payment_id": "P-2", "amount": "100.50", "currency": "CNY"})
        now = await status(handle)
        assert (now["amount_paid"], now["outstanding"], now["stage"]) == ("400.50", "799.50", "reminder")
        await handle.signal("repayment", {"payment_id": "P-3", "amount": "799.50", "currency": "CNY"})
        result = await handle.result()
    assert result["outcome"] == "repaid" and result["amount_paid"] == "1200.00" and result["final_stage"] == "reminder"
    with session_factory() as db:
        payments = db.scalars(select(Payment).where(Payment.loan_id == "L-PART")).all()
        assert sorted(p.payment_id for p in payments) == ["P-1", "P-2", "P-3"]
        assert db.get(Loan, "L-PART").amount_paid == 1200


async def test_a_payment_in_the_wrong_currency_or_with_a_bad_amount_is_kept_unapplied(time_env, settings, seeded_borrower, session_factory):
    async with running_worker(time_env.client, settings) as loans:
        handle = await loans.start(loan_input("L-FX", await overdue_since(time_env, 3)))
        await time_env.sleep(timedelta(minutes=1))
        await handle.signal("repayment", {"payment_id": "P-USD", "amount": "100.00", "currency": "USD"})
        await handle.signal("repayment", {"payment_id": "P-BAD", "amount": "12,00", "currency": "CNY"})
        await handle.signal("repayment", {"payment_id": "P-FLOAT", "amount": 99.9, "currency": "CNY"})
        await handle.signal("repayment", "not even an object")
        await time_env.sleep(timedelta(minutes=1))
        now = await status(handle)
    assert now["amount_paid"] == "0.00" and now["outstanding"] == "1200.00"
    unapplied = {p["payment_id"]: p["reason"] for p in now["unapplied_payments"]}
    assert unapplied["P-USD"] == "currency: USD does not match the loan's CNY"
    assert unapplied["P-BAD"].startswith("amount:")
    assert unapplied["P-FLOAT"].startswith("amount:")
    assert unapplied[""] == "(payload): must be a JSON object, got str"
    with session_factory() as db:
        rows = db.scalars(select(Payment).where(Payment.loan_id == "L-FX")).all()
        assert len(rows) == 4 and not any(r.applied for r in rows)


async def test_a_dispute_stops_all_contact_and_escalation_until_it_is_resolved(time_env, settings, seeded_borrower):
    async with running_worker(time_env.client, settings) as loans:
        handle = await loans.start(loan_input("L-DISP", await overdue_since(time_env, 1)))
        day_one = await status_once(time_env, handle, lambda s: len(s["contacts"]) == 3)  # the day-1 reminders
        sent_before = len(day_one["contacts"])
        await handle.signal("dispute", {"reason": "amount wrong"})
        await time_env.sleep(timedelta(days=20))
        during = await status(handle)
        assert len(during["contacts"]) == sent_before
        assert during["stage"] == "reminder" and during["disputed"] is True
        assert during["days_past_due"] >= 21
        await handle.signal("dispute_resolved", {"upheld": False})
        await time_env.sleep(timedelta(hours=1))
        after = await status(handle)
        assert after["stage"] == "negotiation" and after["disputed"] is False
        await handle.signal("dispute", {"reason": "again"})
        await handle.signal("dispute_resolved", {"upheld": True})
        result = await handle.result()
    assert result["outcome"] == "dispute_upheld"


async def test_after_an_sms_opt_out_no_sms_is_sent(time_env, settings, seeded_borrower, session_factory):
    async with running_worker(time_env.client, settings) as loans:
        handle = await loans.start(loan_input("L-OPT", await overdue_since(time_env, 1)))
        await status_once(time_env, handle, lambda s: len(s["contacts"]) == 3)  # the day-1 reminders
        await handle.signal("opt_out", {"channel": "sms"})
        await handle.signal("opt_out", {"channel": "fax"})
        await time_env.sleep(timedelta(days=40))
        now = await status(handle)
    after_opt_out = now["contacts"][3:]
    assert after_opt_out, "other channels go on"
    assert {c["result"] for c in after_opt_out if c["channel"] == "sms"} == {"skipped_opt_out"}
    assert any(c["channel"] == "email" and c["result"] == "sent" for c in after_opt_out)
    assert now["opted_out"] == ["sms"]
    assert now["rejected_signals"][0]["signal"] == "opt_out" and "channel" in now["rejected_signals"][0]["error"]
    with session_factory() as db:
        sms = db.scalars(select(Contact).where(Contact.loan_id == "L-OPT", Contact.channel == "sms")).all()
        assert len(sms) == 1  # the day-1 reminder, before the opt-out


async def test_pause_holds_everything_and_resume_picks_up_at_todays_stage(time_env, settings, seeded_borrower):
    async with running_worker(time_env.client, settings) as loans:
        handle = await loans.start(loan_input("L-HOLD", await overdue_since(time_env, 5)))
        await time_env.sleep(timedelta(minutes=1))
        await handle.signal("pause", {"reason": "customer in hospital"})
        before = await status(handle)
        await time_env.sleep(timedelta(days=10))
        held = await status(handle)
        assert held["paused"] is True and held["stage"] == "reminder"
        assert held["contacts"] == before["contacts"]
        await handle.signal("resume", {})
        await time_env.sleep(timedelta(hours=1))
        resumed = await status(handle)
    assert resumed["paused"] is False and resumed["stage"] == "call"


async def test_a_loan_placed_40_days_late_starts_in_credit_reporting(time_env, settings, seeded_borrower, session_factory):
    async with running_worker(time_env.client, settings) as loans:
        handle = await loans.start(loan_input("L-LATE", await overdue_since(time_env, 40)))
        await time_env.sleep(timedelta(minutes=1))
        now = await status(handle)
    assert now["stage"] == "credit_reporting" and now["days_past_due"] == 40
    assert all(c["stage"] == "credit_reporting" for c in now["contacts"])
    with session_factory() as db:
        assert db.scalars(select(Contact).where(Contact.loan_id == "L-LATE", Contact.stage == "reminder")).all() == []
        assert len(db.scalars(select(BureauRecord).where(BureauRecord.loan_id == "L-LATE")).all()) == 1


async def test_a_start_with_a_bad_field_fails_at_once_naming_it(time_env, settings, seeded_borrower, session_factory):
    async with running_worker(time_env.client, settings) as loans:
        bad = loan_input("L-BAD", await overdue_since(time_env, 3), amount="12.345")
        handle = await loans.start(bad)
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "InvalidInput"
    assert "amount_due: has 3 decimals" in cause.message
    with session_factory() as db:
        assert db.get(Loan, "L-BAD") is None


async def test_an_unknown_policy_fails_the_start_naming_the_policy(time_env, settings, seeded_borrower):
    async with running_worker(time_env.client, settings) as loans:
        handle = await loans.start(loan_input("L-POL", await overdue_since(time_env, 3), policy="gentle"))
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
    assert "no policy named 'gentle'" in failure.value.cause.message


async def test_the_history_of_a_finished_loan_holds_no_personal_data(time_env, settings, seeded_borrower):
    async with running_worker(time_env.client, settings) as loans:
        handle = await loans.start(loan_input("L-PII", await overdue_since(time_env, 30)))
        await time_env.sleep(timedelta(days=100))
        await handle.signal("repayment", {"payment_id": "P-1", "amount": "1200.00", "currency": "CNY"})
        await handle.result()
        history = (await handle.fetch_history()).to_json()
    assert "send_contact" in history  # the contacts are in there
    for personal in ("王小明", "+8613800138000", "8613800138000", "wang@example.com"):
        assert personal not in history
