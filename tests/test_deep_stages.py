"""What each stage does beyond reminding, through the real workflow on the
time-skipping server: plans kept and broken, promises kept and broken, fees
to the cent under their caps, bureau records across cycles, field visits,
legal outcomes and risk segments."""

from __future__ import annotations

import asyncio
import json
import shutil
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from temporalio.client import WorkflowUpdateFailedError

from activities.exports import bureau_cycle_path, bureau_refusals_path
from dunning import metro2
from db.models import BureauRecord, Contact, FieldVisitRecord, LegalCase, PlanInstallment, PlanRecord, PromiseRecord, StageEntry
from tests.support.polling import poll_until
from tests.support.temporal import loan_input, overdue_since, running_worker, time_env  # noqa: F401 (fixture)
from workflows.search_attributes import BORROWER_ID, DAYS_PAST_DUE, DUE_DATE, DUNNING_SEGMENT

CONFIG = Path(__file__).resolve().parent.parent / "config"
SHANGHAI = ZoneInfo("Asia/Shanghai")


async def status(handle) -> dict:
    return await handle.query("status")


def payment(payment_id: str, amount: str) -> dict:
    return {"payment_id": payment_id, "amount": amount, "currency": "CNY"}


async def rejection(handle, name: str, payload: dict) -> str:
    with pytest.raises(WorkflowUpdateFailedError) as failed:
        await handle.execute_update(name, payload)
    return str(failed.value.cause)


def with_policies(settings, tmp_path: Path, **policies: str):
    """Settings whose config/ has these extra policy files (name -> TOML)."""
    config = tmp_path / "config"
    shutil.copytree(CONFIG, config)
    for name, text in policies.items():
        (config / "policies" / f"{name}.toml").write_text(f'extends = "default"\nname = "{name}"\n{text}', encoding="utf-8")
    return settings.model_copy(update={"config_dir": config})


async def local_today(env, due: date, handle=None) -> date:
    """The borrower's date on the server's clock now. (The status query's
    days_past_due is as of the workflow's last wake, which may be days ago.)"""
    return (await env.get_current_time()).astimezone(SHANGHAI).date()


async def skip(env, **delta) -> None:
    """Move the server's clock on, a few days at a time: one long jump makes the
    server work through every timer in one request, which can outlast its
    timeout on a loaded machine."""
    left = timedelta(**delta)
    while left > timedelta(0):
        step = min(left, timedelta(days=5))
        await env.sleep(step)
        left -= step


async def until_applied(handle, amount_paid: str) -> dict:
    """Status once the workflow has applied payments up to `amount_paid`,
    polled in real time so the server's clock does not skip meanwhile."""
    return await poll_until(
        lambda: status(handle), lambda shown: shown["amount_paid"] == amount_paid, lambda: asyncio.sleep(0.05), 200,
        lambda shown: f"amount_paid never reached {amount_paid}: {shown['amount_paid']}",
    )


# ------------------------------------------------------------------- plans


async def test_a_plan_kept_to_the_end_pauses_escalation_reminds_before_each_installment_and_repays_the_loan(
    time_env, settings, seeded_borrower, session_factory
):
    async with running_worker(time_env.client, settings) as loans:
        due = await overdue_since(time_env, 16)
        handle = await loans.start(loan_input("L-PLAN", due))
        await skip(time_env, hours=1)
        assert (await status(handle))["stage"] == "negotiation"
        today = await local_today(time_env, due, handle)

        accepted = await handle.execute_update(
            "propose_plan", {"installments": 3, "first_due_date": (today + timedelta(days=7)).isoformat(), "interval_days": 30}
        )
        assert [(i["number"], i["amount"]) for i in accepted["installments"]] == [(1, "400.00"), (2, "400.00"), (3, "400.00")]
        assert accepted["installments"][2]["due_date"] == (today + timedelta(days=67)).isoformat()
        assert (await status(handle))["plan"]["status"] == "active"

        # Each installment paid the day before it is due; escalation waits.
        for number, installment in enumerate(accepted["installments"], start=1):
            due_on = date.fromisoformat(installment["due_date"])
            await skip(time_env, days=(due_on - await local_today(time_env, due, handle)).days - 1)
            shown = await status(handle)
            assert shown["stage"] == "negotiation", "a running plan never escalates"
            await handle.signal("repayment", payment(f"P-{number}", "400.00"))
        result = await handle.result()

    assert result["outcome"] == "repaid" and result["final_stage"] == "negotiation"
    with session_factory() as db:
        plan = db.scalar(select(PlanRecord).where(PlanRecord.loan_id == "L-PLAN"))
        installments = db.scalars(select(PlanInstallment).where(PlanInstallment.plan_id == plan.id).order_by(PlanInstallment.number)).all()
        contacts = db.scalars(select(Contact).where(Contact.loan_id == "L-PLAN").order_by(Contact.id)).all()
        stages = db.scalars(select(StageEntry.stage).where(StageEntry.loan_id == "L-PLAN")).all()
    assert plan.status == "kept" and plan.total == Decimal("1200.00")
    assert [i.paid_at is not None for i in installments] == [True, True, True]
    plan_messages = [c.template for c in contacts if c.template in ("plan_confirmation", "installment_reminder")]
    assert plan_messages == ["plan_confirmation", "installment_reminder", "installment_reminder", "installment_reminder"]
    reminder = next(c for c in contacts if c.template == "installment_reminder")
    assert "400.00" in reminder.body_text or "400" in reminder.body_text  # the installment, not the balance
    assert stages == ["negotiation"]


async def test_a_plan_broken_at_installment_2_returns_the_loan_to_the_stage_its_days_call_for(
    time_env, settings, seeded_borrower, session_factory
):
    async with running_worker(time_env.client, settings) as loans:
        due = await overdue_since(time_env, 16)
        handle = await loans.start(loan_input("L-BROKEN", due))
        await skip(time_env, hours=1)
        today = await local_today(time_env, due, handle)
        first_due = today + timedelta(days=7)
        await handle.execute_update("propose_plan", {"installments": 3, "first_due_date": first_due.isoformat(), "interval_days": 30})
        await skip(time_env, days=6)
        await handle.signal("repayment", payment("P-1", "400.00"))
        await skip(time_env, days=2)
        assert (await status(handle))["plan"]["installments"][0]["paid_on"] is not None

        # Installment 2 (due first_due + 30) is never paid: 3 grace days, then broken.
        second_due = first_due + timedelta(days=30)
        await skip(time_env, days=(second_due - await local_today(time_env, due, handle)).days + 3)
        assert (await status(handle))["plan"]["status"] == "active", "still inside the grace days"
        await skip(time_env, days=1, hours=1)
        shown = await status(handle)
        days = shown["days_past_due"]
        await skip(time_env, days=3)  # the stage's next step, on day 59

    assert shown["plan"]["status"] == "broken"
    assert 31 <= days <= 90 and shown["stage"] == "credit_reporting"
    assert shown["outstanding"] == "800.00"
    with session_factory() as db:
        plan = db.scalar(select(PlanRecord).where(PlanRecord.loan_id == "L-BROKEN"))
        stages = db.scalars(select(StageEntry.stage).where(StageEntry.loan_id == "L-BROKEN").order_by(StageEntry.id)).all()
        after = db.scalars(select(Contact.template).where(Contact.loan_id == "L-BROKEN", Contact.stage == "credit_reporting")).all()
    assert plan.status == "broken"
    assert stages == ["negotiation", "credit_reporting"]  # straight to the stage of that day
    assert "reminder_followup" in after  # dunning resumed where the days are, without replaying day 31
    # Day 31's two notices are not replayed; the borrower, never told, is told
    # once before the first bureau record (《征信业管理条例》第十五条).
    assert after.count("bureau_notice") == 1


async def test_a_plan_outside_the_policy_is_rejected_naming_the_rule_and_nothing_changes(time_env, settings, seeded_borrower):
    async with running_worker(time_env.client, settings) as loans:
        due = await overdue_since(time_env, 16)
        handle = await loans.start(loan_input("L-NOPLAN", due))
        await skip(time_env, hours=1)
        today = await local_today(time_env, due, handle)
        first = (today + timedelta(days=7)).isoformat()
        assert "installments: at most 6" in await rejection(handle, "propose_plan", {"installments": 12, "first_due_date": first})
        assert "first_due_date" in await rejection(
            handle, "propose_plan", {"installments": 3, "first_due_date": (today + timedelta(days=60)).isoformat()}
        )
        assert "interval_days" in await rejection(handle, "propose_plan", {"installments": 3, "first_due_date": first, "interval_days": 90})
        assert "installments" in await rejection(handle, "propose_plan", {"first_due_date": first})
        shown = await status(handle)
    assert shown["plan"] is None and shown["stage"] == "negotiation"


# ---------------------------------------------------------------- promises


async def test_a_kept_promise_pauses_calls_until_paid_and_a_broken_one_counts_in_the_segment(
    time_env, settings, seeded_borrower, session_factory
):
    async with running_worker(time_env.client, settings) as loans:
        due = await overdue_since(time_env, 9)
        kept = await loans.start(loan_input("L-KEPT", due))
        broken = await loans.start(loan_input("L-BROKE", due))
        await skip(time_env, hours=1)
        today = await local_today(time_env, due, kept)

        assert "amount: more than" in await rejection(kept, "promise_to_pay", {"amount": "5000.00", "by_date": today.isoformat()})
        assert "by_date: at most 14 days" in await rejection(
            kept, "promise_to_pay", {"amount": "500.00", "by_date": (today + timedelta(days=30)).isoformat()}
        )
        answer = await kept.execute_update("promise_to_pay", {"amount": "500.00", "by_date": (today + timedelta(days=5)).isoformat()})
        assert answer == {"accepted": True, "promise_no": 1, "amount": "500.00", "by_date": (today + timedelta(days=5)).isoformat()}
        assert "promise 1 is still open" in await rejection(kept, "promise_to_pay", {"amount": "500.00", "by_date": today.isoformat()})
        await broken.execute_update("promise_to_pay", {"amount": "300.00", "by_date": (today + timedelta(days=2)).isoformat()})
        calls_before = len((await status(kept))["contacts"])

        await skip(time_env, days=4)
        assert len((await status(kept))["contacts"]) == calls_before, "no contact while the promise is open"
        await kept.signal("repayment", payment("P-500", "500.00"))
        await skip(time_env, hours=1)
        kept_status = await status(kept)
        await skip(time_env, days=3)
        resumed = await status(kept)
        broken_status = await status(broken)

    assert kept_status["promise"]["status"] == "kept" and kept_status["outstanding"] == "700.00"
    assert len(resumed["contacts"]) > calls_before, "contact resumes after a kept promise, the balance is still owed"
    assert broken_status["promise"]["status"] == "broken" and broken_status["promises_broken"] == 1
    assert len(broken_status["contacts"]) > calls_before
    with session_factory() as db:
        rows = {r.loan_id: r for r in db.scalars(select(PromiseRecord))}
    assert rows["L-KEPT"].status == "kept" and rows["L-BROKE"].status == "broken"
    assert rows["L-BROKE"].amount == Decimal("300.00")


# -------------------------------------------------------------------- fees


FEES_POLICY = """
[charges]
late_fee = "100.00"
late_fee_day = 1
penalty_rate_annual = "0.24"
interest_from_day = 1
rounding = "ROUND_HALF_UP"
"""


async def test_fees_and_penalty_interest_accrue_to_the_cent_within_the_contract_and_the_cn_cost_cap(
    time_env, settings, seeded_borrower, tmp_path
):
    settings = with_policies(settings, tmp_path, fees=FEES_POLICY)
    async with running_worker(time_env.client, settings) as loans:
        due = await overdue_since(time_env, 10)
        terms = {"late_fee": "50.00", "penalty_rate_annual": "0.18"}
        charged = await loans.start(loan_input("L-FEES", due, policy="fees", contract_terms=terms))
        no_terms = await loans.start(loan_input("L-NOFEES", due, policy="fees"))
        await skip(time_env, hours=1)
        day10 = await status(charged)
        free = await status(no_terms)
        # Payments a day apart: each wakes the workflow, which first posts the
        # charges of the days begun, then applies the payment.
        await skip(time_env, days=1)
        await charged.signal("repayment", payment("P-100", "100.00"))
        day11 = await until_applied(charged, "100.00")
        await skip(time_env, days=1)
        await charged.signal("repayment", payment("P-10", "10.00"))
        day12 = await until_applied(charged, "110.00")

    # The contract allows 50.00 and 18 %; the policy wants more, so the
    # contract wins. The cn cap (24 % a year of the principal owed each day,
    # rules.cost_cap_basis = "owed") allows 1200 x 0.24 / 365 = 0.789 on
    # day 1, so the late fee is cut to 0.78 and 0.009 of day 1's interest fits.
    # Interest accrues exactly (rules.exact_interest_accrual): 1200 x 0.18 /
    # 365 = 0.5918 a day, charged in whole fen (rounded down), the rest carried.
    room_day1 = Decimal("1200.00") * Decimal("0.24") / 365 - Decimal("0.78")
    per_day = Decimal("1200.00") * Decimal("0.18") / 365

    def cents(amount: Decimal) -> Decimal:
        return amount.quantize(Decimal("0.01"), rounding="ROUND_DOWN")

    assert day10["days_past_due"] == 10
    assert (day10["fees"], day10["interest"], day10["principal"]) == ("0.78", "5.33", "1200.00")
    assert day10["outstanding"] == "1206.11"
    # The next payment arrives on day D (11, unless the server's clock ran
    # on): the interest accrued since day 10, then 100.00 pays the fee
    # (0.78), the interest, and the principal with the rest.
    d = day11["days_past_due"]
    accrued_to_d = room_day1 + per_day * (d - 1)
    interest_to_d = cents(accrued_to_d)
    principal = Decimal("1200.00") - (Decimal("100.00") - Decimal("0.78") - interest_to_d)
    assert (day11["fees"], day11["interest"], day11["principal"]) == ("0.00", "0.00", str(principal))
    # Day E: the interest is now on the lower principal (for 1106.68: 1106.68
    # x 0.18 / 365 = 0.5458 a day) with the fraction carried from day D, paid
    # first from the 10.00.
    e = day12["days_past_due"]
    since_d = cents(accrued_to_d - interest_to_d + principal * Decimal("0.18") / 365 * (e - d))
    assert (day12["interest"], day12["principal"]) == ("0.00", str(principal - (Decimal("10.00") - since_d)))
    assert day12["fees_charged"] == "0.78" and day12["interest_charged"] == str(interest_to_d + since_d)
    assert e > d > 10
    # No contract terms under cn (no fees beyond the contract): nothing at all.
    assert (free["fees"], free["interest"], free["outstanding"]) == ("0.00", "0.00", "1200.00")


# ------------------------------------------------------------------ bureau


async def test_bureau_records_across_four_cycles_with_a_correction_a_dispute_and_an_export_file_per_cycle(
    time_env, settings, seeded_borrower, session_factory
):
    async with running_worker(time_env.client, settings) as loans:
        due = await overdue_since(time_env, 29)
        handle = await loans.start(loan_input("L-BUREAU", due))
        await skip(time_env, days=2, hours=1)  # day 31: credit_reporting; the borrower is told, then the first record
        for _ in range(24):  # 《征信业管理条例》第十五条: the record waits for the notice (09:00 local)
            if (await status(handle))["bureau"]["records"]:
                break
            await skip(time_env, hours=1)
        await handle.signal("repayment", payment("P-200", "200.00"))  # after reporting: a correction
        await skip(time_env, days=32)  # the next cycle's record
        await handle.signal("dispute", {"reason": "amount"})
        await skip(time_env, days=31)  # reported while disputed: XB
        await handle.signal("dispute_resolved", {"upheld": False})
        await skip(time_env, days=31)  # resolved: XH
        shown = await status(handle)

    with session_factory() as db:
        records = db.scalars(select(BureauRecord).where(BureauRecord.loan_id == "L-BUREAU").order_by(BureauRecord.id)).all()
    kinds = [r.kind for r in records]
    assert kinds[:2] == ["first", "correction"] and kinds.count("regular") >= 3
    first, correction = records[0], records[1]
    assert first.days_past_due == 31 and first.account_status == "71" and first.balance == Decimal("1200.00")
    assert correction.balance == Decimal("1000.00") and correction.cycle == first.cycle
    regular = [r for r in records if r.kind == "regular"]
    assert len({r.cycle for r in [first, *regular]}) == len(regular) + 1 >= 4, "one record per cycle"
    assert "XB" in [r.compliance_code for r in regular], "reported as disputed while the dispute was open"
    assert regular[-1].compliance_code == "XH", "a resolved dispute is reported as such"
    assert {r.first_delinquency for r in records} == {due + timedelta(days=30)}, "the date of first delinquency never moves"
    assert shown["bureau"]["records"] == len(records)
    # Each cycle has its Metro 2 file. This borrower (a cn borrower with a
    # Chinese name, no SSN, no date of birth, no address) cannot be furnished
    # in Metro 2: the account is refused by name, never written half-filled
    # (tests/test_metro2.py and tests/test_metro2_scenario.py furnish US ones).
    for cycle in {r.cycle for r in records}:
        furnished = metro2.read(bureau_cycle_path(settings.export_dir, cycle).read_text(encoding="utf-8"))
        assert furnished.records == [] and furnished.trailer["totalBaseRecords"] == 0
        refused = json.loads(bureau_refusals_path(settings.export_dir, cycle).read_text(encoding="utf-8"))
        assert [r["loan_id"] for r in refused] == ["L-BUREAU"]


# ------------------------------------------------------- visits and legal


VISITS_POLICY = """
[field_visits]
enabled = true
from_day = 61
every_days = 30
"""


async def test_a_field_visit_is_assigned_to_two_staff_and_its_outcome_becomes_a_promise(
    time_env, settings, seeded_borrower, session_factory, tmp_path
):
    settings = with_policies(settings, tmp_path, visits=VISITS_POLICY)
    async with running_worker(time_env.client, settings) as loans:
        due = await overdue_since(time_env, 60)
        handle = await loans.start(loan_input("L-VISIT", due, policy="visits"))
        await skip(time_env, days=1, hours=12)
        [visit] = (await status(handle))["field_visits"]
        today = await local_today(time_env, due, handle)
        one_person = {"visit_id": visit["visit_id"], "outcome": "met", "staff_ids": ["S-1"]}
        assert "staff_ids: a field visit needs 2 different staff" in await rejection(handle, "record_visit", one_person)
        assert "visit_id" in await rejection(handle, "record_visit", {**one_person, "visit_id": "V-NONE", "staff_ids": ["S-1", "S-2"]})
        answer = await handle.execute_update("record_visit", {
            "visit_id": visit["visit_id"], "outcome": "promise", "staff_ids": ["S-1", "S-2"],
            "promise": {"amount": "600.00", "by_date": (today + timedelta(days=7)).isoformat()},
        })
        await skip(time_env, hours=1)
        shown = await status(handle)

    assert answer == {"visit_id": visit["visit_id"], "outcome": "promise", "promise_no": 1}
    assert shown["field_visits"][0]["status"] == "done" and shown["promise"]["source"] == "field_visit"
    with session_factory() as db:
        row = db.scalar(select(FieldVisitRecord).where(FieldVisitRecord.loan_id == "L-VISIT"))
    assert (row.staff_required, row.status, row.outcome, json.loads(row.staff_ids)) == (2, "done", "promise", ["S-1", "S-2"])


async def test_the_legal_stage_opens_a_case_file_and_its_outcomes_stop_write_off_or_settle_the_loan(
    time_env, settings, seeded_borrower, session_factory
):
    async with running_worker(time_env.client, settings) as loans:
        due = await overdue_since(time_env, 85)
        handle = await loans.start(loan_input("L-LEGAL", due))
        await skip(time_env, days=6, hours=12)  # a reminder on day 87, legal on day 91
        assert (await status(handle))["legal_case"]["status"] == "opened"
        assert "can be filed, settled, withdrawn, not judgment" in await rejection(handle, "legal_outcome", {"outcome": "judgment"})
        await handle.execute_update("legal_outcome", {"outcome": "filed", "case_ref": "SH-2027-123"})
        contacts_when_filed = len((await status(handle))["contacts"])
        await skip(time_env, days=100)  # past write_off_day 180: the court decides now
        in_court, in_court_listed = await status(handle), (await handle.describe()).typed_search_attributes
        asked_at = await time_env.get_current_time()
        await handle.execute_update("legal_outcome", {"outcome": "settled"})
        result = await handle.result()

    # While the case is in court the workflow sleeps for weeks: days_past_due
    # and DaysPastDue are as of its last wake, and `as_of` says when that was.
    # DueDate is right at any moment: more than 180 days before the asking.
    as_of = datetime.fromisoformat(in_court["as_of"])
    assert as_of <= asked_at
    assert in_court["days_past_due"] == (as_of.astimezone(SHANGHAI).date() - due).days == in_court_listed.get(DAYS_PAST_DUE)
    assert in_court_listed.get(DUE_DATE) == datetime.combine(due, time(0), tzinfo=SHANGHAI)
    assert in_court_listed.get(BORROWER_ID) == "B-77"  # issue 17: a borrower's loans listed together
    assert asked_at - in_court_listed.get(DUE_DATE) > timedelta(days=180)
    assert in_court["stage"] == "legal"
    assert len(in_court["contacts"]) == contacts_when_filed, "no direct contact while the case is in court"
    assert result["outcome"] == "settled"
    with session_factory() as db:
        case = db.scalar(select(LegalCase).where(LegalCase.loan_id == "L-LEGAL"))
    assert case.status == "settled" and case.case_ref == "SH-2027-123"
    documents = {d["name"]: Path(d["path"]) for d in json.loads(case.documents)}
    assert set(documents) == {"contract", "statement_of_account", "contact_evidence"}
    evidence = json.loads(documents["contact_evidence"].read_text(encoding="utf-8"))
    assert any(row["kind"] == "contact" for row in evidence)


# ---------------------------------------------------------------- segments


async def test_a_high_risk_score_puts_the_loan_in_a_segment_that_calls_sooner(time_env, settings, seeded_borrower):
    async with running_worker(time_env.client, settings) as loans:
        due = await overdue_since(time_env, 3)
        risky = await loans.start(loan_input("L-RISKY", due, risk_score=800))
        plain = await loans.start(loan_input("L-PLAIN", due))
        await skip(time_env, days=1, hours=12)
        risky_status, plain_status = await status(risky), await status(plain)
        described = await risky.describe()

    assert risky_status["segment"] == "high_risk" and plain_status["segment"] == "standard"
    assert risky_status["stage"] == "call" and plain_status["stage"] == "reminder"
    assert any(c["channel"] == "voice" and c["day"] == 4 for c in risky_status["contacts"])
    assert described.typed_search_attributes.get(DUNNING_SEGMENT) == "high_risk"
