"""Settlements with approval limits (issue 18, item 4).

The pure rules first (the policy's limits, the proposal's checks, the
approver, what a paid or missed settlement does to the loan, the bureau's
final record and the KPI's recovery), then the loan through the contract on
the time-skipping server with its activities replaced by name
(tests/test_workflow_scenarios.py's fakes): a settlement within the agent's
limit paid by pay_by ends `settled` with the rest written off; one above it
waits in pending_approval with a task until an approver accepts or refuses
it; a missed pay_by returns the loan to the stage of that day; a bad
proposal is rejected naming the field.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from temporalio import workflow
from temporalio.client import WorkflowUpdateFailedError
from temporalio.worker import Replayer, Worker

from activities import payloads as acts
from dunning import bureau, contract, keys
from dunning.arrangements import ArrangementRejected
from dunning.clock import LoanClock
from dunning.inputs import SettlementDecisionSignal
from dunning.planner import next_action
from dunning.policy import PolicyError, parse_policy
from dunning.settlements import discount_of, settlement_deadline, within_limit
from dunning.state import LoanState
from dunning.status_view import settlement_view
from dunning.transitions import plans, settlements, stages
from dunning.transitions.holds import SignalRejected
from dunning.transitions.records import Moment, Rules
from loaders.config_files import load_policy, load_profile
from reports.kpi import compute
from reports.loan_facts import LoanFacts
from tests.support.planner import DUE, POLICIES, PROFILES, new_state, walk
from runtime.worker_build import sandbox_runner
from tests.support.temporal import Loans, loan_input, overdue_since, time_env  # noqa: F401 (fixture)
from tests.test_workflow_scenarios import FakeActivities, fake_worker, payment
from tests.support.settlement_workflows import BeforeSettlements, UngatedSettlements
from workflows.dunning import DunningWorkflow

SHANGHAI = ZoneInfo("Asia/Shanghai")


def default_policy():
    return load_policy("default", POLICIES)


def clock_at(day: int, hour: int = 10) -> tuple[LoanClock, datetime]:
    """A loan clock (due on DUE, Shanghai) and the real instant of `day` at `hour`."""
    anchor = datetime(2026, 10, 1, tzinfo=timezone.utc)
    clock = LoanClock(anchor, "Asia/Shanghai", DUE)
    return clock, clock.at(day, datetime.min.time()).replace(hour=hour)


def moment_on(day: int, hour: int = 10) -> Moment:
    clock, at = clock_at(day, hour)
    return Moment("dunning-L-1", "run-1", at, clock)


def in_stage(stage: str, amount: str = "1200.00", **changes) -> LoanState:
    changes = {"segment": "standard", "task_sla_hours": {"settlement_approval": 24}, **changes}
    return new_state(amount, stage=stage, **changes)


def propose(state: LoanState, amount: str, pay_by: date, agent: str = "A-1", policy=None, day: int = 20):
    moment = moment_on(day)
    settlement = settlements.proposed_settlement(
        policy or default_policy(), state, {"amount": amount, "pay_by": pay_by.isoformat(), "agent_id": agent}, moment.today,
    )
    return settlement, settlements.propose(state, settlement, moment)


def rejected(state: LoanState, payload: dict, policy=None, day: int = 20) -> str:
    with pytest.raises(ArrangementRejected) as error:
        settlements.proposed_settlement(policy or default_policy(), state, payload, moment_on(day).today)
    return str(error.value)


# ------------------------------------------------------------- the rules


def test_the_discount_is_one_less_amount_over_outstanding_and_the_limit_is_checked_exactly():
    assert discount_of(Decimal("960.00"), Decimal("1200.00")) == Decimal("0.2000")
    assert discount_of(Decimal("1000.00"), Decimal("1200.00")) == Decimal("0.1667")
    assert within_limit(Decimal("960.00"), Decimal("1200.00"), Decimal("0.20"))
    # 959.99 is a discount of 0.2000083...: shown as 0.2000, over the limit all the same.
    assert discount_of(Decimal("959.99"), Decimal("1200.00")) == Decimal("0.2000")
    assert not within_limit(Decimal("959.99"), Decimal("1200.00"), Decimal("0.20"))


def test_the_agent_limit_is_per_stage_and_a_segment_replaces_it():
    rules = default_policy().settlements
    assert rules.agent_limit("negotiation", "standard") == Decimal("0.20")
    assert rules.agent_limit("legal", None) == Decimal("0.40")
    assert rules.agent_limit("call", "standard") == Decimal("0"), "a stage not named: every discount needs an approver"
    assert rules.agent_limit("negotiation", "small_balance") == Decimal("0.30")
    assert rules.limit_key("negotiation", "small_balance") == "settlements.segment_limits.small_balance.negotiation"
    # A policy without [settlements]: every settlement waits for an approver.
    bare = load_policy("default", POLICIES).model_copy(update={"settlements": type(rules)()})
    assert bare.settlements.agent_limit("legal", "standard") == Decimal("0")


def test_a_policy_naming_an_unknown_segment_or_a_whole_discount_is_refused():
    base = default_policy().model_dump(mode="json")
    with pytest.raises(PolicyError, match="settlements.segment_limits: 'vip' is not one of the policy's segments"):
        parse_policy({**base, "settlements": {"segment_limits": {"vip": {"legal": "0.5"}}}})
    with pytest.raises(PolicyError, match="settlements.agent_limits.legal"):
        parse_policy({**base, "settlements": {"agent_limits": {"legal": "1"}}})
    with pytest.raises(PolicyError, match="settlements.agent_limits.pre_due"):
        parse_policy({**base, "settlements": {"agent_limits": {"pre_due": "0.1"}}})


def test_within_the_limit_it_is_accepted_at_once_and_above_it_waits_for_an_approver_with_a_task():
    today = moment_on(20).today
    state = in_stage("negotiation")
    settlement, written = propose(state, "960.00", today + timedelta(days=10))
    assert (settlement.status, settlement.discount, settlement.decided_on) == ("accepted", Decimal("0.2000"), today)
    assert [(r.kind, r.fields["kind"]) for r in written] == [("arrangement", "settlement_accepted")]
    assert written[0].fields["key"] == "dunning-L-1/settlement/1/settlement_accepted"
    assert (written[0].fields["agent_id"], written[0].fields["discount"]) == ("A-1", "0.2000")

    state = in_stage("negotiation")
    settlement, written = propose(state, "840.00", today + timedelta(days=10))
    assert settlement.status == "pending_approval" and settlement.decided_on is None
    assert [(r.kind, r.fields.get("kind")) for r in written] == [("arrangement", "settlement_pending"), ("task", "settlement_approval")]
    task = written[1].fields
    assert (task["key"], task["subject"], task["due_in_hours"]) == ("dunning-L-1/task/settlement_approval/1", "1", 24)
    assert "proposed by A-1" in task["note"] and "0.3000" in task["note"]
    assert [t.kind for t in state.open_tasks] == ["settlement_approval"]


def test_a_loan_whose_policy_named_no_approval_sla_opens_its_task_with_24_hours():
    state = in_stage("negotiation", task_sla_hours={"dispute_verification": 72})
    _, written = propose(state, "600.00", moment_on(20).today + timedelta(days=5))
    assert written[1].fields["due_in_hours"] == 24


def test_a_bad_proposal_is_rejected_naming_the_field_and_nothing_changes():
    state = in_stage("negotiation")
    today = moment_on(20).today
    pay_by = (today + timedelta(days=7)).isoformat()
    assert rejected(state, {"amount": "0", "pay_by": pay_by, "agent_id": "A-1"}).startswith("amount: must be more than zero")
    assert rejected(state, {"amount": "1200.00", "pay_by": pay_by, "agent_id": "A-1"}).startswith(
        "amount: must be less than the 1200.00 outstanding")
    assert rejected(state, {"amount": "900.001", "pay_by": pay_by, "agent_id": "A-1"}) == "amount: has 3 decimals; CNY has 2"
    assert rejected(state, {"amount": 900, "pay_by": pay_by, "agent_id": "A-1"}).startswith("amount: ")
    assert rejected(state, {"amount": "900.00", "pay_by": (today - timedelta(days=1)).isoformat(), "agent_id": "A-1"}).startswith(
        "pay_by: ")
    assert rejected(state, {"amount": "900.00", "pay_by": (today + timedelta(days=31)).isoformat(), "agent_id": "A-1"}) == (
        "pay_by: at most 30 days from today (settlements.max_pay_by_days)")
    assert rejected(state, {"amount": "900.00", "pay_by": "2026-13-01", "agent_id": "A-1"}).startswith("pay_by: ")
    assert rejected(state, {"amount": "900.00", "pay_by": pay_by, "agent_id": "Agent Smith"}).startswith("agent_id: ")
    assert rejected(state, {"amount": "900.00", "pay_by": pay_by}).startswith("agent_id: ")
    assert rejected(in_stage("negotiation", paused=True), {"amount": "900.00", "pay_by": pay_by, "agent_id": "A-1"}).startswith(
        "stage: collection is on hold")
    assert rejected(in_stage("pending"), {"amount": "900.00", "pay_by": pay_by, "agent_id": "A-1"}).startswith("stage: ")
    off = default_policy().model_copy(update={"settlements": default_policy().settlements.model_copy(update={"enabled": False})})
    assert rejected(state, {"amount": "900.00", "pay_by": pay_by, "agent_id": "A-1"}, off) == (
        "settlement: this policy takes no settlements (settlements.enabled)")
    assert state.settlements == []

    # One at a time, and no plan or promise beside it.
    propose(state, "840.00", today + timedelta(days=7))
    assert rejected(state, {"amount": "900.00", "pay_by": pay_by, "agent_id": "A-2"}) == (
        "settlement: settlement 1 is pending approval; nothing else is arranged until it ends")
    with pytest.raises(ArrangementRejected, match="^settlement: settlement 1 is pending approval"):
        plans.proposed_plan(default_policy(), state, {"installments": 2, "first_due_date": pay_by}, today)


def decision(number, approved: bool, approver: str) -> SettlementDecisionSignal:
    return SettlementDecisionSignal.model_validate({"settlement_no": number, "approved": approved, "approver_id": approver})


def test_an_approver_who_is_not_the_proposing_agent_accepts_or_refuses_it_once():
    today = moment_on(20).today
    state = in_stage("negotiation")
    propose(state, "840.00", today + timedelta(days=10))
    with pytest.raises(SignalRejected, match="^approver_id: A-1 proposed settlement 1; an approver must be someone other"):
        settlements.decide(state, decision(1, True, "A-1"), moment_on(20, 11))
    with pytest.raises(SignalRejected, match="^settlement_no: the loan has no settlement 2"):
        settlements.decide(state, decision(2, True, "R-1"), moment_on(20, 11))
    written = settlements.decide(state, decision("1", True, "R-1"), moment_on(20, 11))  # a task's subject: digits
    assert [r.fields["kind"] for r in written] == ["settlement_approved"] and written[0].fields["approver_id"] == "R-1"
    assert state.accepted_settlement.approver_id == "R-1" and state.open_tasks == []
    assert settlements.decide(state, decision(1, True, "R-1"), moment_on(20, 12)) is None, "the same decision again"
    with pytest.raises(SignalRejected, match="^settlement_no: settlement 1 is accepted, not pending approval"):
        settlements.decide(state, decision(1, False, "R-2"), moment_on(20, 12))

    refused = in_stage("negotiation")
    propose(refused, "840.00", today + timedelta(days=10))
    written = settlements.decide(refused, decision(1, False, "R-1"), moment_on(21))
    assert [r.fields["kind"] for r in written] == ["settlement_refused"]
    assert (refused.settlements[0].status, refused.open_settlement) == ("refused", None)
    for bad in ({"settlement_no": True, "approved": True, "approver_id": "R-1"},
                {"settlement_no": 1, "approved": "yes", "approver_id": "R-1"}, {"settlement_no": 1, "approved": True}):
        with pytest.raises(Exception):
            SettlementDecisionSignal.model_validate(bad)


def test_paid_by_pay_by_the_rest_is_written_off_and_the_loan_ends_settled_with_13_and_au():
    policy, profile = default_policy(), load_profile("cn", PROFILES)
    today = moment_on(40).today
    state = in_stage("credit_reporting", interest_due=Decimal("30.00"), interest_charged=Decimal("30.00"))
    state.principal_due = Decimal("1200.00")
    settlement, _ = propose(state, "900.00", today + timedelta(days=10), day=40)
    assert (settlement.status, settlement.outstanding, settlement.discount) == ("accepted", Decimal("1230.00"), Decimal("0.2683"))
    state.amount_paid += Decimal("900.00")  # as the repayment signal applies it
    state.interest_due, state.principal_due = Decimal("0"), Decimal("330.00")
    rules = Rules(policy, profile, None)
    written = plans.bookkeep(state, rules, moment_on(42))
    assert [r.fields["kind"] for r in written] == ["settlement_paid"] and written[0].fields["waived"] == "330.00"
    assert (state.outstanding, state.waived, state.principal_waived) == (Decimal("0"), Decimal("330.00"), Decimal("330.00"))
    assert stages.ending(state) == contract.OUTCOME_SETTLED
    fields = bureau.record_fields(state, 42, today, contract.OUTCOME_SETTLED)
    assert (fields["account_status"], fields["special_comment"], fields["balance"]) == ("13", "AU", "0")
    # Settled after the loan was reported placed for collection (93): 62, still AU.
    state.bureau.reported_93 = True
    assert bureau.record_fields(state, 95, today, contract.OUTCOME_SETTLED)["account_status"] == "62"
    view = settlement_view(state, state.settlements[0])
    assert (view["status"], view["paid"], view["waived"], view["amount"]) == ("paid", "900.00", "330.00", "900.00")


def test_an_accepted_settlement_holds_escalation_sends_its_own_messages_and_a_missed_one_returns_the_loan_to_its_stage():
    policy = default_policy()
    state = new_state()
    events, _ = walk(policy, state, clock_at(28, 10)[1], until_day=28)  # negotiation from day 16
    assert state.stage == "negotiation"
    today = moment_on(28).today
    settlement, _ = propose(state, "1000.00", today + timedelta(days=5), day=28)  # day 33, past credit_reporting's day 31
    assert settlement.status == "accepted"

    events, _ = walk(policy, state, clock_at(28, 11)[1], until_day=34)
    assert not any(e[0] == "stage" for e in events), "no escalation while a settlement is accepted"
    messages = [(e[2], e[3]) for e in events if e[0] == "contact"]
    assert messages == [("settlement_confirmation", 28), ("settlement_reminder", 31)]
    assert settlement_deadline(policy, settlement) == today + timedelta(days=6)

    events, _ = walk(policy, state, clock_at(34, 0)[1].replace(minute=5), until_day=40)
    assert events[:2] == [("miss_settlement", 34), ("stage", "credit_reporting", 34)]
    assert state.settlements[0].status == "missed" and state.outstanding == Decimal("1200.00")


def test_an_accepted_settlement_waits_for_its_pay_by_before_the_write_off():
    policy, profile = default_policy(), load_profile("cn", PROFILES)
    state = in_stage("legal", legal=None)
    settlement, _ = propose(state, "720.00", moment_on(178).today + timedelta(days=5), day=178)  # 40 %: the limit
    assert settlement.status == "accepted"
    clock, at = clock_at(181)
    assert next_action(policy, profile, state, clock, clock.loan_time(at)).kind != "write_off"
    clock, at = clock_at(184, 1)
    assert next_action(policy, profile, state, clock, clock.loan_time(at)).kind == "miss_settlement"
    settlements.miss(state, moment_on(184, 1))
    assert next_action(policy, profile, state, clock, clock.loan_time(at)).kind == "write_off"


def test_the_kpi_counts_a_settled_loan_recovered_net_of_its_discount():
    settled = LoanFacts("L-1", "default", "standard", "CNY", Decimal("1200.00"), "settled", ("negotiation",),
                        recovered={"CNY": Decimal("900.00")}, waived=Decimal("300.00"))
    repaid = LoanFacts("L-2", "default", "standard", "CNY", Decimal("800.00"), "repaid", ("call",),
                       recovered={"CNY": Decimal("800.00")})
    kpis = compute([settled, repaid])
    cny = kpis.currencies["CNY"]
    assert (cny.placed, cny.recovered, cny.waived) == (Decimal("2000.00"), Decimal("1700.00"), Decimal("300.00"))
    assert cny.recovery_rate.value == Decimal("0.8500")


# ------------------------------------------------------------- the loan, through the contract


async def status(handle) -> dict:
    return await handle.query("status")


async def until(env, handle, condition, what: str, step: timedelta = timedelta(minutes=30), tries: int = 96) -> dict:
    """Let the server's time pass until the status meets `condition`."""
    for _ in range(tries):
        shown = await status(handle)
        if condition(shown):
            return shown
        await env.sleep(step)
    raise AssertionError(f"never {what}: {shown}")


async def applied(handle, amount_paid: str) -> dict:
    """The status once the workflow has applied payments up to `amount_paid`,
    polled in real time (the server's clock does not skip meanwhile)."""
    for _ in range(200):
        shown = await status(handle)
        if shown["amount_paid"] == amount_paid or shown["stage"] == "closed":
            return shown
        await asyncio.sleep(0.05)
    raise AssertionError(f"amount_paid never reached {amount_paid}")


async def local_today(env) -> date:
    return (await env.get_current_time()).astimezone(SHANGHAI).date()


async def rejection(handle, payload: dict, name: str = "propose_settlement") -> str:
    with pytest.raises(WorkflowUpdateFailedError) as failed:
        await handle.execute_update(name, payload)
    return failed.value.cause.message


def settlement_events(fake: FakeActivities) -> list[str]:
    return [e["kind"] for e in fake.written[acts.RECORD_ARRANGEMENT] if e["kind"].startswith("settlement")]


async def test_a_settlement_within_the_limit_paid_by_pay_by_ends_the_loan_settled_with_13_au_and_the_rest_written_off(time_env):
    fake = FakeActivities()
    async with fake_worker(time_env, fake) as loans:
        handle = await loans.start(loan_input("L-SET-OK", await overdue_since(time_env, 45)))
        # credit_reporting (agents: up to 30 %): the borrower is told, then the first bureau record is filed.
        await until(time_env, handle, lambda s: s["bureau"]["records"] >= 1, "reported to the bureau")
        today = await local_today(time_env)
        answer = await handle.execute_update(
            "propose_settlement", {"amount": "900.00", "pay_by": (today + timedelta(days=10)).isoformat(), "agent_id": "A-7"},
        )
        await time_env.sleep(timedelta(days=2))
        during = await status(handle)
        await handle.signal("repayment", payment("P-1", "900.00"))
        result = await handle.result()

    assert {k: answer[k] for k in ("settlement_no", "status", "amount", "discount", "pay_by")} == {
        "settlement_no": 1, "status": "accepted", "amount": "900.00", "discount": "0.2500",
        "pay_by": (today + timedelta(days=10)).isoformat()}
    assert during["settlement"]["status"] == "accepted" and during["stage"] == "credit_reporting"
    assert result == {"loan_id": "L-SET-OK", "outcome": "settled", "amount_paid": "900.00", "final_stage": "credit_reporting"}
    [closing] = fake.written[acts.CLOSE_LOAN]
    assert (closing["outcome"], closing["waived"], closing["outstanding"]) == ("settled", "300.00", "0.00")
    final = fake.written[acts.REPORT_TO_BUREAU][-1]
    assert (final["kind"], final["account_status"], final["special_comment"], final["outstanding"]) == ("final", "13", "AU", "0")
    assert settlement_events(fake) == ["settlement_accepted", "settlement_paid"]
    paid = fake.written[acts.RECORD_ARRANGEMENT][-1]
    assert (paid["waived"], paid["agent_id"], paid["key"]) == ("300.00", "A-7", "dunning-L-SET-OK/settlement/1/settlement_paid")
    confirmation = [c for c in fake.sent if c.template == "settlement_confirmation"]
    assert [(c.channel, c.message_amount, c.message_due_date) for c in confirmation] == [
        ("sms", "900.00", (today + timedelta(days=10)).isoformat())]


async def test_a_settlement_above_the_limit_waits_for_another_agent_s_approval_with_a_task_then_is_paid(time_env):
    fake = FakeActivities()
    async with fake_worker(time_env, fake) as loans:
        handle = await loans.start(loan_input("L-SET-APPROVE", await overdue_since(time_env, 17)))
        await until(time_env, handle, lambda s: s["stage"] == "negotiation", "in negotiation")
        today = await local_today(time_env)
        pay_by = (today + timedelta(days=14)).isoformat()
        answer = await handle.execute_update("propose_settlement", {"amount": "840.00", "pay_by": pay_by, "agent_id": "A-1"})
        await time_env.sleep(timedelta(hours=1))
        pending = await status(handle)
        await handle.signal("settlement_decision", {"settlement_no": 1, "approved": True, "approver_id": "A-1"})
        await handle.signal("settlement_decision", {"settlement_no": "1", "approved": True, "approver_id": "R-9"})
        approved = await until(time_env, handle, lambda s: s["settlement"]["status"] == "accepted", "approved", timedelta(minutes=1))
        await handle.signal("repayment", payment("P-1", "400.00"))
        await time_env.sleep(timedelta(days=3))
        partly = await status(handle)
        await handle.signal("repayment", payment("P-2", "440.00"))
        result = await handle.result()
        history = await handle.fetch_history()

    assert (answer["status"], answer["discount"], answer["agent_limit"]) == ("pending_approval", "0.3000", "0.20")
    assert pending["settlement"]["status"] == "pending_approval"
    assert [t["kind"] for t in pending["open_tasks"]] == ["settlement_approval"]
    [task] = fake.written[acts.OPEN_TASK]
    assert (task["kind"], task["subject"], task["key"]) == (
        "settlement_approval", "1", "dunning-L-SET-APPROVE/task/settlement_approval/1")
    assert [(r["signal"], r["error"].split(":")[0]) for r in approved["rejected_signals"]] == [("settlement_decision", "approver_id")]
    assert (approved["settlement"]["approver_id"], approved["open_tasks"]) == ("R-9", [])
    assert partly["settlement"]["paid"] == "400.00" and partly["stage"] == "negotiation"
    assert result["outcome"] == "settled" and result["amount_paid"] == "840.00"
    assert fake.written[acts.CLOSE_LOAN][0]["waived"] == "360.00"
    assert settlement_events(fake) == ["settlement_pending", "settlement_approved", "settlement_paid"]
    # The decision took the new path behind its patch (README, "Changing
    # workflow code"): its own marker, or the lean lifecycle's, which stands
    # for every patch before it.
    patches = [
        payload.data for e in history.events if e.HasField("marker_recorded_event_attributes")
        for payload in e.marker_recorded_event_attributes.details["patch-data"].payloads
    ]
    assert any(b"settlements-2026-12" in data or b"lean-lifecycle-2026-12" in data for data in patches), patches


async def test_a_refused_settlement_leaves_collection_as_it_was(time_env):
    fake = FakeActivities()
    async with fake_worker(time_env, fake) as loans:
        due = await overdue_since(time_env, 17)
        handle = await loans.start(loan_input("L-SET-REFUSE", due))
        await until(time_env, handle, lambda s: s["stage"] == "negotiation", "in negotiation")
        today = await local_today(time_env)
        await handle.execute_update(
            "propose_settlement", {"amount": "600.00", "pay_by": (today + timedelta(days=7)).isoformat(), "agent_id": "A-1"})
        await handle.signal("settlement_decision", {"settlement_no": 1, "approved": False, "approver_id": "R-2"})
        refused = await until(time_env, handle, lambda s: s["settlement"]["status"] == "refused", "refused", timedelta(minutes=1))
        later = await until(time_env, handle, lambda s: s["stage"] == "credit_reporting", "in credit_reporting", timedelta(hours=12), 40)

    assert (refused["settlement"]["approver_id"], refused["outstanding"], refused["waived"]) == ("R-2", "1200.00", "0.00")
    assert later["settlement"]["status"] == "refused"
    assert settlement_events(fake) == ["settlement_pending", "settlement_refused"]
    assert fake.written[acts.CLOSE_LOAN] == []


async def test_a_missed_pay_by_returns_the_loan_to_the_stage_of_that_day_and_is_recorded(time_env):
    fake = FakeActivities()
    async with fake_worker(time_env, fake) as loans:
        due = await overdue_since(time_env, 28)
        handle = await loans.start(loan_input("L-SET-MISS", due))
        await until(time_env, handle, lambda s: s["stage"] == "negotiation", "in negotiation")
        today = await local_today(time_env)
        pay_by = today + timedelta(days=5)  # past day 31, when credit_reporting starts
        await handle.execute_update("propose_settlement", {"amount": "1000.00", "pay_by": pay_by.isoformat(), "agent_id": "A-1"})
        await handle.signal("repayment", payment("P-1", "200.00"))
        await time_env.sleep(timedelta(days=5))  # pay_by's day: still in negotiation
        held, held_day = await status(handle), (await local_today(time_env) - due).days
        missed = await until(time_env, handle, lambda s: s["settlement"]["status"] == "missed", "missed")

    assert held["stage"] == "negotiation" and held_day >= 32, "no escalation while it is accepted"
    assert held["settlement"]["paid"] == "200.00"
    assert missed["stage"] == "credit_reporting", "back to the stage its days call for"
    assert missed["settlement"]["ended_on"] == (pay_by + timedelta(days=1)).isoformat()
    assert missed["outstanding"] == "1000.00" and missed["waived"] == "0.00"
    assert settlement_events(fake) == ["settlement_accepted", "settlement_missed"]
    assert [e["stage"] for e in fake.written[acts.ENTER_STAGE]][-1] == "credit_reporting"


async def test_a_bad_proposal_is_rejected_through_the_contract_naming_the_field(time_env):
    fake = FakeActivities()
    async with fake_worker(time_env, fake) as loans:
        handle = await loans.start(loan_input("L-SET-BAD", await overdue_since(time_env, 17)))
        await until(time_env, handle, lambda s: s["stage"] == "negotiation", "in negotiation")
        today = await local_today(time_env)
        pay_by = (today + timedelta(days=7)).isoformat()
        errors = [
            await rejection(handle, {"amount": "-5", "pay_by": pay_by, "agent_id": "A-1"}),
            await rejection(handle, {"amount": "1500.00", "pay_by": pay_by, "agent_id": "A-1"}),
            await rejection(handle, {"amount": "800.123", "pay_by": pay_by, "agent_id": "A-1"}),
            await rejection(handle, {"amount": "800.00", "pay_by": (today + timedelta(days=45)).isoformat(), "agent_id": "A-1"}),
            await rejection(handle, {"amount": "800.00", "pay_by": "tomorrow", "agent_id": "A-1"}),
            await rejection(handle, {"amount": "800.00", "pay_by": pay_by, "agent_id": "agent one"}),
            await rejection(handle, {"amount": "800.00", "pay_by": pay_by}),
        ]
        await handle.execute_update("propose_settlement", {"amount": "1000.00", "pay_by": pay_by, "agent_id": "A-1"})
        errors.append(await rejection(handle, {"amount": "1000.00", "pay_by": pay_by, "agent_id": "A-2"}))
        errors.append(await rejection(handle, {"installments": 2, "first_due_date": pay_by}, "propose_plan"))
        shown = await status(handle)

    assert [e.split(":")[0] for e in errors] == [
        "amount", "amount", "amount", "pay_by", "pay_by", "agent_id", "agent_id", "settlement", "settlement"]
    assert "settlements.max_pay_by_days" in errors[3]
    assert shown["settlement"]["settlement_no"] == 1 and settlement_events(fake) == ["settlement_accepted"]


# ------------------------------------------------------------- the approval task's completion


class _Handle:
    def __init__(self, status: dict) -> None:
        self._status = status

    async def query(self, name: str) -> dict:
        return self._status


class _Client:
    def __init__(self, status: dict) -> None:
        self._status = status

    def get_workflow_handle(self, workflow_id: str) -> _Handle:
        return _Handle(self._status)


async def test_the_proposing_agent_cannot_complete_the_approval_task():
    from services.tasks import TaskError, _check_approver

    task = {"workflow_id": "dunning-L-1", "subject": "1", "loan_id": "L-1"}
    shown = {"settlement": {"settlement_no": 1, "agent_id": "A-1", "status": "pending_approval"}}
    with pytest.raises(TaskError, match="^assignee: A-1 proposed settlement 1: an approver must be another agent"):
        await _check_approver(_Client(shown), task, "A-1")
    await _check_approver(_Client(shown), task, "R-1")  # anyone else may


def test_the_approval_task_s_outcomes_send_the_decision_with_the_settlement_number_and_the_approver():
    from pathlib import Path

    from services.tasks import _payload, load_task_rules

    rules = load_task_rules(Path(POLICIES).parent / "tasks.toml")
    assert rules.allowed("settlement_approval") == ("approved", "refused", "declined", "cancelled")
    task = {"key": "dunning-L-1/task/settlement_approval/1", "id": 7, "subject": "1", "loan_id": "L-1"}
    [approve] = rules.sends("settlement_approval", "approved")
    [refuse] = rules.sends("settlement_approval", "refused")
    assert (approve.name, _payload(approve, task, "R-1")) == (
        contract.SIGNAL_SETTLEMENT_DECISION, {"settlement_no": "1", "approved": True, "approver_id": "R-1"})
    assert _payload(refuse, task, "R-1")["approved"] is False
    assert rules.sends("settlement_approval", "declined") == rules.sends("settlement_approval", "refused")
    assert keys.task_key("dunning-L-1", "settlement_approval", "1") == task["key"]


# ------------------------------------------------------------- with the real activities (SQLite)


@pytest.mark.sqlite_only  # a fixed loan id on the session's one time-skipping server
async def test_a_settled_loan_with_the_real_activities_is_audited_reported_13_au_and_recovered_net_of_its_discount(
    time_env, settings, seeded_borrower, session_factory
):
    import json

    from sqlalchemy import select

    from db.models import AuditEntry, BureauRecord, Contact, Loan
    from reports.kpi import build_report
    from reports.loan_facts import Filters
    from tests.support.temporal import running_worker

    due = await overdue_since(time_env, 45)
    with session_factory.begin() as db:  # placed, as starter.py start would
        db.add(Loan(loan_id="L-SET-DB", borrower_id=seeded_borrower, amount_due=Decimal("1200.00"), currency="CNY",
                    due_date=due, policy="default", workflow_id="dunning-L-SET-DB", stage="pending"))
    async with running_worker(time_env.client, settings) as loans:
        handle = await loans.start(loan_input("L-SET-DB", due))
        await until(time_env, handle, lambda s: s["bureau"]["records"] >= 1, "reported to the bureau")
        today = await local_today(time_env)
        await handle.execute_update(
            "propose_settlement", {"amount": "900.00", "pay_by": (today + timedelta(days=10)).isoformat(), "agent_id": "A-7"})
        await until(time_env, handle, lambda s: any(c["template"] == "settlement_confirmation" for c in s["contacts"]),
                    "confirmed to the borrower")
        await handle.signal("repayment", payment("P-1", "900.00"))
        result = await handle.result()

    assert result["outcome"] == "settled"
    with session_factory() as db:
        loan = db.get(Loan, "L-SET-DB")
        final = db.scalars(select(BureauRecord).where(BureauRecord.loan_id == "L-SET-DB").order_by(BureauRecord.id)).all()[-1]
        entries = [json.loads(e.payload) for e in db.scalars(
            select(AuditEntry).where(AuditEntry.loan_id == "L-SET-DB", AuditEntry.kind == "arrangement").order_by(AuditEntry.seq))]
        confirmation = db.scalar(select(Contact).where(Contact.loan_id == "L-SET-DB", Contact.template == "settlement_confirmation"))
        report = build_report(db, Filters())
    assert (loan.outcome, loan.waived, loan.amount_paid) == ("settled", Decimal("300.00"), Decimal("900.00"))
    assert (final.kind, final.account_status, final.special_comment) == ("final", "13", "AU")
    assert [(e["kind"], e["agent_id"], e["discount"], e["waived"]) for e in entries] == [
        ("settlement_accepted", "A-7", "0.2500", ""), ("settlement_paid", "A-7", "0.2500", "300.00")]
    assert "900" in confirmation.body_text
    cny = report.overall.currencies["CNY"]
    assert (cny.placed, cny.recovered, cny.waived) == (Decimal("1200.00"), Decimal("900.00"), Decimal("300.00"))
    assert cny.recovery_rate.value == Decimal("0.7500"), "recovered net of the discount"


# ------------------------------------------------------------- the patch


async def test_a_settlement_decision_sent_before_settlements_existed_replays_unread(time_env):
    fake = FakeActivities()
    task_queue = f"before-settlements-{uuid.uuid4().hex[:8]}"
    loans = Loans(time_env.client, task_queue)
    async with Worker(time_env.client, task_queue=task_queue, workflows=[BeforeSettlements], activities=fake.registered(),
                      workflow_runner=sandbox_runner()):
        try:
            handle = await loans.start(loan_input("L-SET-PATCH", await overdue_since(time_env, 3)))
            await time_env.sleep(timedelta(hours=1))
            await handle.signal("settlement_decision", {"settlement_no": 1, "approved": True, "approver_id": "R-1"})
            await time_env.sleep(timedelta(days=2))
            await handle.signal("repayment", payment("P-1", "1200.00"))
            assert (await handle.result())["outcome"] == "repaid"
        finally:
            await loans.terminate_open()
    history = await handle.fetch_history()

    await Replayer(workflows=[DunningWorkflow], workflow_runner=sandbox_runner()).replay_workflow(history)
    # Without the gate the signal wakes the loop, which cancels a timer the history then fires.
    with pytest.raises((workflow.NondeterminismError, RuntimeError), match="TMPRL1100|Nondeterminism|Fatal error in workflow machines"):
        await Replayer(workflows=[UngatedSettlements], workflow_runner=sandbox_runner()).replay_workflow(history)
