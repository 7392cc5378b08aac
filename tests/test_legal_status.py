"""Issue 18, item 1: the `legal_status` signal (dunning/legal_status.py,
dunning/transitions/legal_status.py). First the pure rules (the bureau's
Consumer Information Indicator and ECOA code, frozen charges, the planner's
hardship cadence and cease notice), then the "Done when" scenarios through
the contract on the time-skipping server, with the activities replaced by
name (tests/test_workflow_scenarios.py's fakes):

- a bankrupt loan: no contact and no charge for 60 days, then dismissed and
  resumed at the stage of that day;
- a deceased borrower never contacted again, written off by an operator;
- a cease request with exactly one final notice;
- a hardship with charges frozen to the cent and collection resumed on `until`;
- a bankruptcy discharged (outcome `discharged`, the bureau's discharged
  indicator and a zero balance), a status cleared, bad payloads.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from temporalio import activity
from temporalio.client import WorkflowUpdateFailedError

from activities import payloads as acts
from dunning import bureau, contract
from dunning.charges import post_charges, terms_for
from dunning.clock import LoanClock
from dunning.inputs import InputError, LegalStatusSignal, parse_signal
from dunning.state import LoanState
from dunning.transitions import legal_status as transitions
from dunning.transitions.holds import SignalRejected
from dunning.transitions.records import Moment
from loaders.config_files import load_policy, load_profile
from tests.support.planner import DUE, POLICIES, PROFILES, new_state, walk
from tests.support.polling import poll_until
from tests.support.temporal import loan_input, overdue_since, time_env  # noqa: F401 (fixture)
from tests.test_workflow_scenarios import CONFIG, FakeActivities, fake_worker, placed, status

ZONE = ZoneInfo("Asia/Shanghai")
TERMS = {"late_fee": "25.00", "penalty_rate_annual": "0.18"}


def local(day: int, hour: int = 0) -> datetime:
    return datetime.combine(DUE + timedelta(days=day), time(hour), tzinfo=ZONE)


def signal(**fields) -> LegalStatusSignal:
    return parse_signal(LegalStatusSignal, {k: v.isoformat() if isinstance(v, date) else v for k, v in fields.items()})


def moment_on(day: int, hour: int = 12, start_day: int = 1) -> Moment:
    clock = LoanClock(local(start_day, 1), "Asia/Shanghai", DUE, 86400)
    return Moment("dunning-L-1", "run-1", local(day, hour), clock)


def apply(state: LoanState, day: int, **fields):
    return transitions.change(state, signal(**fields), moment_on(day))


def fields(state: LoanState, day: int, outcome: str | None = None) -> dict:
    return bureau.record_fields(state, day, DUE + timedelta(days=day), outcome)


# ------------------------------------------------ the bureau: CII and ECOA


@pytest.mark.parametrize(("chapter", "petition", "discharged", "dismissed"),
                         [(7, "A", "E", "I"), (11, "B", "F", "J"), (12, "C", "G", "K"), (13, "D", "H", "L")])
def test_a_bankruptcy_carries_its_chapters_consumer_information_indicator(chapter, petition, discharged, dismissed):
    state = new_state(stage="credit_reporting", bureau_reported=True)
    apply(state, 40, status="bankruptcy_filed", reference="BK-1", effective_date=DUE + timedelta(days=40), chapter=chapter)
    assert state.bureau.correction_due, "a reported account is corrected at once"
    assert fields(state, 40)["consumer_information_indicator"] == petition
    # The account is reported as it stood on the petition's day: it does not age under the stay.
    assert (fields(state, 40)["account_status"], fields(state, 100)["account_status"]) == ("71", "71")

    dismissed_state = state.model_copy(deep=True)
    apply(dismissed_state, 100, status="bankruptcy_dismissed", reference="BK-1-D", effective_date=DUE + timedelta(days=100))
    record = fields(dismissed_state, 100)
    assert (record["consumer_information_indicator"], record["account_status"]) == (dismissed, "80"), "ages again"

    apply(state, 100, status="bankruptcy_discharged", reference="BK-1-X", effective_date=DUE + timedelta(days=100))
    final = fields(state, 100, contract.OUTCOME_DISCHARGED)
    assert final["consumer_information_indicator"] == discharged
    assert (final["balance"], final["amount_past_due"], final["account_status"]) == ("0", "0", "71")
    assert final["first_delinquency"] == (DUE + timedelta(days=30)).isoformat()


def test_a_status_cleared_after_it_was_reported_is_removed_with_q_once():
    state = new_state(stage="credit_reporting", bureau_reported=True)
    apply(state, 40, status="bankruptcy_filed", reference="BK-9", effective_date=DUE + timedelta(days=38), chapter=7)
    state.bureau.cii_on_file = "A"  # what the correction filed
    apply(state, 41, status="cleared", reference="BK-9", effective_date=DUE + timedelta(days=41))
    assert fields(state, 41)["consumer_information_indicator"] == bureau.CII_REMOVE
    state.bureau.cii_on_file = ""  # Q filed: the bureau has none on file
    assert fields(state, 45)["consumer_information_indicator"] == ""
    assert [c.status for c in state.legal_status.changes] == ["bankruptcy_filed", "cleared"]


def test_a_current_account_in_bankruptcy_carries_the_petitions_date_as_its_first_delinquency():
    """Field 25, rule 3: CII A-H with status 11 (a loan under 30 days past due)."""
    state = new_state(stage="reminder")
    apply(state, 10, status="bankruptcy_filed", reference="BK-2", effective_date=DUE + timedelta(days=9), chapter=13)
    record = fields(state, 10)
    assert (record["account_status"], record["consumer_information_indicator"]) == ("11", "D")
    assert record["first_delinquency"] == (DUE + timedelta(days=9)).isoformat()
    assert fields(new_state(stage="reminder"), 10)["first_delinquency"] == "", "without one: zero-filled"


def test_a_deceased_borrower_is_reported_once_with_ecoa_x_then_never_again():
    from dunning.legal_status import reports_to_bureau

    state = new_state(stage="credit_reporting", bureau_reported=True)
    assert fields(state, 40)["ecoa_code"] == "" and reports_to_bureau(state)
    apply(state, 40, status="deceased", reference="DC-1", effective_date=DUE + timedelta(days=39))
    assert fields(state, 40)["ecoa_code"] == bureau.ECOA_DECEASED and state.bureau.correction_due
    assert reports_to_bureau(state), "the correction carrying X goes"
    state.bureau.reported_deceased = True
    assert not reports_to_bureau(state), "CRRG FAQ 19: then the account is not reported again"
    never = new_state(stage="credit_reporting")
    apply(never, 40, status="deceased", reference="DC-2", effective_date=DUE + timedelta(days=40))
    assert not reports_to_bureau(never), "an account never reported is not reported for the first time"


def test_without_a_legal_status_the_records_fields_are_as_before():
    record = fields(new_state(stage="credit_reporting"), 40)
    assert (record["consumer_information_indicator"], record["ecoa_code"]) == ("", "")


def test_the_cycles_metro2_file_carries_the_indicator_and_the_ecoa_code(session_factory, tmp_path):
    from sqlalchemy import select

    from db.models import BureauRecord
    from tests.test_metro2 import CYCLE, _borrower, _loan, _record, _write

    with session_factory.begin() as db:
        for loan_id, cii, ecoa in (("L-1", "D", None), ("L-2", None, "X"), ("L-3", None, None)):
            _borrower(db, f"B-{loan_id}")
            _loan(db, loan_id, f"B-{loan_id}")
            _record(db, loan_id, CYCLE)
            row = db.scalar(select(BureauRecord).where(BureauRecord.loan_id == loan_id))
            row.consumer_information_indicator, row.ecoa_code = cii, ecoa
    _, _, read = _write(session_factory, tmp_path)
    base = {r.base["consumerAccountNumber"]: r.base for r in read.records}
    assert [(base[n]["consumerInformationIndicator"], base[n]["ecoaCode"]) for n in ("L-1", "L-2", "L-3")] == [
        ("D", "1"), ("", "X"), ("", "1")]


# ------------------------------------------------------------ the signal


@pytest.mark.parametrize(("payload", "error"), [
    ({"status": "bankruptcy_filed", "reference": "BK-1", "effective_date": "2026-11-20"}, "chapter: required"),
    ({"status": "bankruptcy_filed", "reference": "BK-1", "effective_date": "2026-11-20", "chapter": 9}, "chapter: must be"),
    ({"status": "hardship", "reference": "H-1", "effective_date": "2026-11-20"}, "until: required"),
    ({"status": "hardship", "reference": "H-1", "effective_date": "2026-11-20", "until": "2026-11-20"}, "until: must be after"),
    ({"status": "deceased", "reference": "Jane Doe", "effective_date": "2026-11-20"}, "reference:"),
    ({"status": "deceased", "reference": "123-45-6789", "effective_date": "2026-11-20"}, "reference: looks like a Social"),
    ({"status": "cease_communication", "reference": "CC-1", "effective_date": "2026-11-20", "chapter": 7}, "chapter: only"),
    ({"status": "paused", "reference": "X-1", "effective_date": "2026-11-20"}, "status:"),
    ({"status": "deceased", "reference": "DC-1"}, "effective_date:"),
])
def test_a_bad_payload_names_the_field(payload, error):
    with pytest.raises(InputError, match=error):
        parse_signal(LegalStatusSignal, payload)


def test_what_does_not_apply_is_rejected_naming_why():
    state = new_state(stage="call")
    with pytest.raises(SignalRejected, match="status: no bankruptcy is in force"):
        apply(state, 10, status="bankruptcy_dismissed", reference="BK-1", effective_date=DUE + timedelta(days=10))
    with pytest.raises(SignalRejected, match="effective_date: .* is after the loan's today"):
        apply(state, 10, status="deceased", reference="DC-1", effective_date=DUE + timedelta(days=11))
    with pytest.raises(SignalRejected, match="reference: no status in force has reference 'H-1'"):
        apply(state, 10, status="cleared", reference="H-1", effective_date=DUE + timedelta(days=10))
    apply(state, 10, status="deceased", reference="DC-1", effective_date=DUE + timedelta(days=9))
    with pytest.raises(SignalRejected, match="status: the borrower is deceased"):
        apply(state, 11, status="hardship", reference="H-1", effective_date=DUE + timedelta(days=11),
              until=DUE + timedelta(days=20))
    assert apply(state, 11, status="deceased", reference="DC-1", effective_date=DUE + timedelta(days=9)) is None, "twice: once"
    assert state.on_hold and state.legal_hold


# ----------------------------------------------------------------- charges


def test_a_hardship_freezes_fees_and_interest_to_the_cent_until_its_until():
    policy = load_policy("default", POLICIES)
    policy = policy.model_copy(update={"charges": policy.charges.model_copy(
        update={"late_fee": Decimal("25.00"), "penalty_rate_annual": Decimal("0.18")})})
    profile = load_profile("us", PROFILES)
    state = new_state(contract_late_fee=Decimal("25.00"), contract_penalty_rate=Decimal("0.18"))
    terms = terms_for(policy, profile, state)
    post_charges(terms, state, 20)
    before = state.outstanding
    apply(state, 20, status="hardship", reference="H-1", effective_date=DUE + timedelta(days=20), until=DUE + timedelta(days=50))
    for day in range(21, 50):
        post_charges(terms, state, day)
    assert state.outstanding == before, "nothing charged from the hardship's first day to the day before `until`"
    post_charges(terms, state, 52)
    assert state.interest_charged > 0 and state.outstanding > before, "charged again from `until` on"
    frozen = new_state(contract_late_fee=Decimal("25.00"), contract_penalty_rate=Decimal("0.18"))
    post_charges(terms, frozen, 20)
    post_charges(terms, frozen, 49)
    assert state.outstanding - before < frozen.outstanding - before, "the hardship's days are never charged later"


# ----------------------------------------------------------------- planner


def test_a_hardship_follows_the_gentler_cadence_stops_escalating_and_resumes_on_until():
    policy = load_policy("default", POLICIES)
    state = new_state()
    walk(policy, state, local(20, 1), until_day=21)
    apply(state, 21, status="hardship", reference="H-1", effective_date=DUE + timedelta(days=21), until=DUE + timedelta(days=60))
    events, _ = walk(policy, state, local(21, 12), until_day=62)
    during = [e for e in events if e[0] in ("contact", "stage") and (e[0] == "stage" or e[3] < 60)]
    assert during[:3] == [("contact", "sms", "reminder_friendly", 28, "09:00"), ("contact", "sms", "reminder_friendly", 42, "09:00"),
                          ("contact", "sms", "reminder_friendly", 56, "09:00")]
    assert ("stage", "credit_reporting", 60) in events, "on `until` the loan goes to the stage of that day"
    assert [c.status for c in state.legal_status.changes] == ["hardship", "hardship_ended"]


@pytest.mark.parametrize(("policy_name", "template", "last_stage"),
                         [("default", "cease_final_notice", "credit_reporting"), ("us", "cease_remedy_notice", "legal")])
def test_a_cease_request_sends_one_final_notice_and_escalates_only_as_far_as_the_profile_allows(
    policy_name, template, last_stage,
):
    policy = load_policy(policy_name, POLICIES)
    state = new_state()
    walk(policy, state, local(20, 1), until_day=21)
    apply(state, 21, status="cease_communication", reference="CC-1", effective_date=DUE + timedelta(days=21))
    events, action = walk(policy, state, local(21, 12), until_day=400)
    assert [e[:3] for e in events if e[0] == "contact"] == [("contact", "email", template)]
    assert [e[1] for e in events if e[0] == "stage"][-1] == last_stage
    assert action.kind == "write_off", "collection ends at the write-off day"


# ----------------------------------------- through the workflow (time-skipping)


class ChargingFakes(FakeActivities):
    """The repository's policy with a late fee and penalty interest (the
    loan's contract allows both), so that frozen charges show."""

    @activity.defn(name=acts.PREPARE_LOAN)
    async def prepare_loan(self, request: acts.PrepareLoanInput) -> acts.PreparedLoan:
        policy = load_policy(request.policy, CONFIG / "policies")
        charges = policy.charges.model_copy(update={"late_fee": Decimal("25.00"), "penalty_rate_annual": Decimal("0.18")})
        policy = policy.model_copy(update={"charges": charges})
        profile = load_profile(policy.profile, CONFIG / "profiles")
        return acts.PreparedLoan(
            policy=policy.model_dump(mode="json"), profile=profile.model_dump(mode="json"),
            time_zone="Asia/Shanghai", language="zh_CN", borrower_known=True,
        )


async def start_charging(env, loans, loan_id: str, days_overdue: int):
    handle = await loans.start(loan_input(loan_id, await overdue_since(env, days_overdue), contract_terms=TERMS))
    await env.sleep(timedelta(minutes=1))
    return handle


def today_of(shown: dict) -> date:
    return date.fromisoformat(shown["due_date"]) + timedelta(days=shown["days_past_due"])


def status_payload(status_name: str, reference: str, effective: date, **extra) -> dict:
    return {"status": status_name, "reference": reference, "effective_date": effective.isoformat(),
            **{k: v.isoformat() if isinstance(v, date) else v for k, v in extra.items()}}


async def until(env, handle, condition, what: str, step=timedelta(hours=6), tries=200) -> dict:
    return await poll_until(lambda: status(handle), condition, lambda: env.sleep(step), tries,
                            lambda shown: f"{what} never happened: {shown and shown['next_action']}")


@pytest.mark.asyncio
async def test_a_bankrupt_loan_gets_no_contact_and_no_charge_for_60_days_then_is_dismissed_and_resumes(time_env):
    fake = ChargingFakes()
    async with fake_worker(time_env, fake) as loans:
        handle = await start_charging(time_env, loans, "L-LS-BK", days_overdue=10)
        before = await status(handle)
        await handle.signal("legal_status", status_payload("bankruptcy_filed", "BK-2026-77", today_of(before), chapter=7))
        await time_env.sleep(timedelta(minutes=1))
        stayed = await status(handle)
        sent_at_filing = len(fake.sent)
        await time_env.sleep(timedelta(days=60))
        during = await status(handle)
        sent_during = fake.sent[sent_at_filing:]
        await handle.signal("legal_status", status_payload("bankruptcy_dismissed", "BK-2026-77-D", today_of(during)))
        resumed = await until(time_env, handle, lambda s: s["stage"] == "credit_reporting", "the stage of the day")
        after = await until(time_env, handle, lambda s: len(s["contacts"]) > len(during["contacts"]), "a contact")

    assert during["days_past_due"] >= 70
    assert sent_during == [], "no contact under the stay"
    assert during["contacts"] == stayed["contacts"]
    assert (during["outstanding"], during["fees"], during["interest"]) == (
        stayed["outstanding"], stayed["fees"], stayed["interest"]), "no new charges, to the cent"
    assert during["stage"] == before["stage"] == "call", "no stage entered under the stay"
    assert during["legal_status"]["status"] == "bankruptcy_filed"
    assert during["next_action"].startswith("no contact or escalation: bankruptcy under chapter 7")
    assert [t["kind"] for t in fake.written[acts.OPEN_TASK]] == ["bankruptcy_review"]
    assert fake.written[acts.OPEN_TASK][0]["key"] == "dunning-L-LS-BK/task/bankruptcy_review/BK-2026-77"
    # Dismissed: straight to the stage of that day, the missed stages' contacts not replayed.
    assert [e["stage"] for e in fake.written[acts.ENTER_STAGE]] == ["call", "credit_reporting"]
    assert {c["stage"] for c in after["contacts"][len(during["contacts"]):]} == {"credit_reporting"}
    assert resumed["legal_status"]["status"] == "none"
    legal = [d for d in fake.written[acts.RECORD_DECISION] if d["rule"] == "legal_status"]
    assert [d["reason"].split(" ")[0] for d in legal] == ["bankruptcy_filed", "bankruptcy_dismissed"]


@pytest.mark.asyncio
async def test_a_deceased_borrower_is_never_contacted_again_and_an_operator_writes_the_loan_off(time_env):
    fake = FakeActivities()
    async with fake_worker(time_env, fake) as loans:
        handle = await placed(time_env, loans, "L-LS-DEAD", days_overdue=5)
        shown = await status(handle)
        await handle.signal("legal_status", status_payload("deceased", "DC-88", today_of(shown) - timedelta(days=2)))
        await time_env.sleep(timedelta(minutes=1))
        sent = len(fake.sent)
        await handle.signal("legal_status", status_payload("cease_communication", "CC-1", today_of(shown)))
        await time_env.sleep(timedelta(days=200))  # past the write-off day: it waits for an operator
        waiting = await status(handle)
        with pytest.raises(WorkflowUpdateFailedError):
            await handle.execute_update("estate_outcome", {"outcome": "forgiven", "reference": "EST-1"})
        answer = await handle.execute_update("estate_outcome", {"outcome": "written_off", "reference": "EST-1"})
        result = await handle.result()

    assert len(fake.sent) == sent, "no contact to the borrower, ever again"
    assert waiting["stage"] == "reminder" and waiting["days_past_due"] > 180
    assert waiting["legal_status"]["status"] == "deceased"
    assert [r["error"].split(";")[0] for r in waiting["rejected_signals"]] == [
        "status: the borrower is deceased (DC-88)"]
    assert [t["kind"] for t in fake.written[acts.OPEN_TASK]] == ["estate_handling"]
    assert answer == {"outcome": "written_off", "reference": "EST-1", "ends_loan": True}
    assert result["outcome"] == "written_off"


@pytest.mark.asyncio
async def test_a_cease_request_gets_exactly_one_final_notice(time_env):
    fake = FakeActivities()
    async with fake_worker(time_env, fake) as loans:
        handle = await placed(time_env, loans, "L-LS-CEASE", days_overdue=3)
        shown = await status(handle)
        sent = len(fake.sent)
        await handle.signal("legal_status", status_payload("cease_communication", "CC-2026-5", today_of(shown)))
        await until(time_env, handle, lambda s: any(c["template"] == "cease_final_notice" for c in s["contacts"]),
                    "the final notice", step=timedelta(hours=1))
        await handle.signal("legal_status", status_payload("cease_communication", "CC-2026-5", today_of(shown)))
        await time_env.sleep(timedelta(days=100))
        later = await status(handle)

    after = [c.template for c in fake.sent[sent:]]
    assert after == ["cease_final_notice"], after
    assert [c.channel for c in fake.sent[sent:]] == ["email"]
    assert [c["template"] for c in later["contacts"]].count("cease_final_notice") == 1
    # The cn profile does not take a loan that asked to cease to legal (day 91): it
    # sleeps in credit_reporting until the write-off ends it on day 180.
    assert later["stage"] == "credit_reporting" and later["next_action"] == "waiting for write-off on day 180"
    assert len([d for d in fake.written[acts.RECORD_DECISION] if d["rule"] == "legal_status"]) == 1, "twice: once"


@pytest.mark.asyncio
async def test_a_hardship_freezes_charges_to_the_cent_and_the_loan_resumes_on_until(time_env):
    fake = ChargingFakes()
    seen: list[dict] = []
    async with fake_worker(time_env, fake) as loans:
        handle = await start_charging(time_env, loans, "L-LS-HARD", days_overdue=20)
        before = await status(handle)
        start = today_of(before)
        resume_on = start + timedelta(days=30)
        await handle.signal("legal_status", status_payload("hardship", "HS-1", start, until=resume_on))
        await time_env.sleep(timedelta(minutes=1))

        async def watched() -> dict:
            seen.append(await status(handle))
            return seen[-1]

        resumed = await poll_until(watched, lambda s: s["legal_status"]["status"] == "none",
                                   lambda: time_env.sleep(timedelta(hours=6)), 200, lambda s: f"still {s['next_action']}")
        charged = await until(time_env, handle, lambda s: today_of(s) >= resume_on + timedelta(days=3), "three days more")

    during = [s for s in seen if s["legal_status"]["status"] == "hardship"]
    assert len({s["as_of"] for s in during}) >= 3, "the loan woke during the hardship (its cadence)"
    for shown in during:
        assert (shown["outstanding"], shown["fees"], shown["interest"]) == (
            before["outstanding"], before["fees"], before["interest"]), f"frozen to the cent, day {shown['days_past_due']}"
        assert shown["stage"] == "negotiation", "no escalation while it lasts"
    sent = [(c["channel"], c["template"], c["day"]) for c in during[-1]["contacts"][len(before["contacts"]):]]
    assert sent and {(channel, template) for channel, template, _ in sent} == {("sms", "reminder_friendly")}
    assert sent[0][2] == before["days_past_due"] + 7, "the hardship cadence: a week in, then every two weeks"
    # From `until` on, charged again: day by day, 1200.00 x 18 % / 365 (0.5918) accrued exactly.
    days = (today_of(charged) - resume_on).days + 1
    grown = Decimal(charged["interest"]) - Decimal(before["interest"])
    assert Decimal("0.59") * days <= grown <= Decimal("0.60") * days, (days, grown)
    assert today_of(resumed) >= resume_on and resumed["stage"] == "credit_reporting", "the stage of that day"
    assert resumed["legal_status"]["changes"][-1]["status"] == "hardship_ended"


@pytest.mark.asyncio
async def test_a_discharged_bankruptcy_ends_the_loan_with_the_discharged_indicator_and_a_zero_balance(time_env):
    fake = FakeActivities()
    async with fake_worker(time_env, fake) as loans:
        handle = await placed(time_env, loans, "L-LS-DIS", days_overdue=40)
        reported = await until(time_env, handle, lambda s: s["bureau"]["records"] >= 1, "the first bureau record",
                               step=timedelta(hours=1))
        await handle.signal("legal_status", status_payload("bankruptcy_filed", "BK-13-1", today_of(reported), chapter=13))
        corrected = await until(time_env, handle, lambda s: s["bureau"]["records"] >= 2, "the correction",
                                step=timedelta(minutes=30))
        await handle.signal("legal_status", status_payload("bankruptcy_discharged", "BK-13-1-X", today_of(corrected)))
        result = await handle.result()
        final = await status(handle)

    records = fake.written[acts.REPORT_TO_BUREAU]
    assert [r["kind"] for r in records] == ["first", "correction", "final"]
    assert records[0].get("consumer_information_indicator", "") == ""
    assert records[1]["consumer_information_indicator"] == "D"
    assert (records[2]["consumer_information_indicator"], records[2]["outstanding"], records[2]["amount_past_due"]) == (
        "H", "0", "0")
    assert result["outcome"] == contract.OUTCOME_DISCHARGED == "discharged"
    assert final["legal_status"]["status"] == "bankruptcy_discharged"
    [closing] = fake.written[acts.CLOSE_LOAN]
    assert closing["outcome"] == "discharged"


@pytest.mark.asyncio
async def test_a_status_set_by_mistake_is_cleared_and_audited_and_bad_payloads_are_rejected_naming_the_field(time_env):
    fake = FakeActivities()
    async with fake_worker(time_env, fake) as loans:
        handle = await placed(time_env, loans, "L-LS-CLR", days_overdue=6)
        shown = await status(handle)
        today = today_of(shown)
        await handle.signal("legal_status", status_payload("hardship", "HS-9", today, until=today + timedelta(days=60)))
        await handle.signal("legal_status", status_payload("cleared", "HS-404", today))
        await handle.signal("legal_status", status_payload("cleared", "HS-9", today))
        await handle.signal("legal_status", status_payload("bankruptcy_filed", "BK-1", today))
        await handle.signal("legal_status", status_payload("hardship", "HS-2", today))
        await handle.signal("legal_status", status_payload("deceased", "John Smith", today))
        await handle.signal("legal_status", "deceased")
        await handle.signal("legal_status", status_payload("bankruptcy_dismissed", "BK-1", today))
        cleared = await until(time_env, handle, lambda s: s["stage"] == "call", "the call stage", step=timedelta(hours=4))

    assert cleared["legal_status"]["status"] == "none"
    assert [c["status"] for c in cleared["legal_status"]["changes"]] == ["hardship", "cleared"]
    errors = [r["error"] for r in cleared["rejected_signals"] if r["signal"] == "legal_status"]
    assert errors[0].startswith("reference: no status in force has reference 'HS-404'")
    assert errors[1].startswith("chapter: required with bankruptcy_filed")
    assert errors[2].startswith("until: required with hardship")
    assert errors[3].startswith("reference: String should match pattern")
    assert errors[4].startswith("(payload): must be a JSON object")
    assert errors[5].startswith("status: no bankruptcy is in force")
    audited = [d["reason"] for d in fake.written[acts.RECORD_DECISION] if d["rule"] == "legal_status"]
    assert len(audited) == 2 and audited[1].startswith("cleared (HS-9") and "removed (set by mistake)" in audited[1]
