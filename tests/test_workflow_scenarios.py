"""DunningWorkflow on the time-skipping test server with its activities
replaced by name (the samples-python way): no database, no provider, no
template. Each fake records what the workflow asked of it, so a scenario
reads as what happened to the loan and what the workflow had written.

The real activities are tested in tests/test_workflow_lifecycle.py and
tests/test_deep_stages.py; these check the workflow's own behaviour, fast.
"""

from __future__ import annotations

import uuid
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import WorkflowExecutionStatus
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

from activities import payloads as acts
from loaders.config_files import load_policy, load_profile
from runtime.worker_build import sandbox_runner
from tests.support.temporal import Loans, loan_input, overdue_since, time_env  # noqa: F401 (fixture)
from workflows.dunning import DunningWorkflow

pytestmark = pytest.mark.asyncio

CONFIG = Path(__file__).resolve().parent.parent / "config"
RECORD_WRITERS = (
    acts.ENTER_STAGE, acts.RECORD_PAYMENT, acts.CLOSE_LOAN, acts.REPORT_TO_BUREAU, acts.RECORD_DECISION,
    acts.OPEN_COMPLAINT, acts.RESOLVE_COMPLAINT, acts.RECORD_ARRANGEMENT, acts.ASSIGN_FIELD_VISIT,
    acts.RECORD_VISIT, acts.RECORD_LEGAL_OUTCOME, acts.OPEN_TASK,
)


class FakeActivities:
    """Every activity the workflow calls, by name. The loan runs on the
    repository's policy in Shanghai; a contact is sent unless its channel's
    provider `refuses`; a record is kept in `written`, by activity name."""

    def __init__(self, refuses: tuple[str, ...] = (), database_down_for: int = 0) -> None:
        self.refuses = refuses
        self.database_down_for = database_down_for  # send attempts that find the database down
        self.attempts = 0
        self.sent: list[acts.ContactRequest] = []
        self.written: dict[str, list[dict]] = {name: [] for name in RECORD_WRITERS}
        self.escalated: list[acts.TaskEscalation] = []

    @activity.defn(name=acts.PREPARE_LOAN)
    async def prepare_loan(self, request: acts.PrepareLoanInput) -> acts.PreparedLoan:
        policy = load_policy(request.policy, CONFIG / "policies")
        profile = load_profile(policy.profile, CONFIG / "profiles")
        return acts.PreparedLoan(
            policy=policy.model_dump(mode="json"), profile=profile.model_dump(mode="json"),
            time_zone="Asia/Shanghai", language="zh_CN", borrower_known=True,
        )

    @activity.defn(name=acts.SEND_CONTACT)
    async def send_contact(self, request: acts.ContactRequest) -> acts.ContactOutcome:
        self.attempts += 1
        if self.attempts <= self.database_down_for:
            raise ApplicationError("database unavailable (OperationalError)", type=acts.DATABASE_UNAVAILABLE)
        if request.channel in self.refuses:
            raise ApplicationError(f"{request.channel} provider refused", type="PermanentSendError", non_retryable=True)
        self.sent.append(request)
        return acts.ContactOutcome(key=request.key, channel=request.channel, result="sent", provider="fake")

    @activity.defn(name=acts.SEND_CONTACTS)
    async def send_contacts(self, batch: acts.ContactBatch) -> acts.ContactOutcomes:
        """Each contact as send_contact takes it, with the real activity's
        rules for a failure in a batch (activities/outbox.py send_each)."""
        outcomes = []
        for request in batch.requests:
            try:
                outcomes.append(await self.send_contact(request))
            except ApplicationError as error:
                if error.type == acts.DATABASE_UNAVAILABLE or not error.non_retryable:
                    raise
                outcomes.append(acts.ContactOutcome(key=request.key, channel=request.channel, result="failed",
                                                    detail=f"not sent: {error.type}"))
        return acts.ContactOutcomes(outcomes)

    def _writer(self, name: str):
        @activity.defn(name=name)
        async def write(record: dict) -> None:
            self.written[name].append(record)

        return write

    @activity.defn(name=acts.ESCALATE_TASK)
    async def escalate_task(self, escalation: acts.TaskEscalation) -> str:
        self.escalated.append(escalation)
        return "open"

    def registered(self) -> list:
        return [self.prepare_loan, self.send_contact, self.send_contacts, self.escalate_task, *(self._writer(name) for name in RECORD_WRITERS)]


@asynccontextmanager
async def fake_worker(env, fake: FakeActivities):
    """A worker running DunningWorkflow with the fakes; yields Loans to start loans on it."""
    task_queue = f"scenario-{uuid.uuid4().hex[:8]}"
    loans = Loans(env.client, task_queue)
    async with Worker(env.client, task_queue=task_queue, workflows=[DunningWorkflow], activities=fake.registered(),
                      workflow_runner=sandbox_runner()):
        try:
            yield loans
        finally:
            await loans.terminate_open()


async def status(handle) -> dict:
    return await handle.query("status")


async def after_the_days_first_contacts(env, handle, count: int) -> dict:
    """Let time pass until `count` contacts are listed (the server's clock may
    stand at any hour, so the day's 09:00 contacts may be hours away)."""
    for _ in range(48):
        shown = await status(handle)
        if len(shown["contacts"]) >= count:
            return shown
        await env.sleep(timedelta(minutes=30))
    raise AssertionError(f"fewer than {count} contacts after a day: {shown['contacts']}")


async def placed(env, loans: Loans, loan_id: str, days_overdue: int):
    """A loan placed `days_overdue` days past due, a minute after its start."""
    handle = await loans.start(loan_input(loan_id, await overdue_since(env, days_overdue)))
    await env.sleep(timedelta(minutes=1))
    return handle


def payment(payment_id: str, amount: str, currency: str = "CNY") -> dict:
    return {"payment_id": payment_id, "amount": amount, "currency": currency}


async def test_a_repayment_in_full_closes_the_loan_as_repaid(time_env):
    fake = FakeActivities()
    async with fake_worker(time_env, fake) as loans:
        handle = await placed(time_env, loans, "L-SC-FULL", days_overdue=3)
        await handle.signal("repayment", payment("P-1", "1200.00"))
        result = await handle.result()

    assert result == {"loan_id": "L-SC-FULL", "outcome": "repaid", "amount_paid": "1200.00", "final_stage": "reminder"}
    [closing] = fake.written[acts.CLOSE_LOAN]
    assert (closing["outcome"], closing["amount_paid"], closing["outstanding"]) == ("repaid", "1200.00", "0.00")
    # The payment that closed it is written with the close, in one local
    # activity and one transaction (issue 19, item 2): no record_payment first.
    [recorded] = closing["payments"]
    assert (recorded["key"], recorded["applied"]) == ("dunning-L-SC-FULL/payment/P-1", True)
    assert fake.written[acts.RECORD_PAYMENT] == []


async def test_a_partial_payment_keeps_the_loan_open_with_the_rest_outstanding(time_env):
    fake = FakeActivities()
    async with fake_worker(time_env, fake) as loans:
        handle = await placed(time_env, loans, "L-SC-PART", days_overdue=3)
        await handle.signal("repayment", payment("P-1", "300.00"))
        await handle.signal("repayment", payment("P-1", "300.00"))  # the payment service retried
        await handle.signal("repayment", payment("P-USD", "50.00", "USD"))
        await time_env.sleep(timedelta(minutes=1))
        shown = await status(handle)
        running = (await handle.describe()).status

    assert running == WorkflowExecutionStatus.RUNNING
    assert (shown["amount_paid"], shown["outstanding"], shown["stage"]) == ("300.00", "900.00", "reminder")
    assert [(p["payment_id"], p["reason"]) for p in shown["unapplied_payments"]] == [
        ("P-USD", "currency: USD does not match the loan's CNY"),
    ]
    assert [(p["payment_id"], p["applied"]) for p in fake.written[acts.RECORD_PAYMENT]] == [("P-1", True), ("P-USD", False)]
    assert fake.written[acts.CLOSE_LOAN] == []


async def test_an_sms_opt_out_stops_sms_and_the_other_channels_go_on(time_env):
    fake = FakeActivities()
    async with fake_worker(time_env, fake) as loans:
        handle = await loans.start(loan_input("L-SC-OPT", await overdue_since(time_env, 1)))
        await after_the_days_first_contacts(time_env, handle, 3)  # sms, push and e-mail on day 1
        sent_before = len(fake.sent)
        await handle.signal("opt_out", {"channel": "sms"})
        await time_env.sleep(timedelta(days=10))
        shown = await status(handle)

    after = fake.sent[sent_before:]
    assert after and "sms" not in {c.channel for c in after}, "nothing goes out by SMS after the opt-out"
    assert {c["result"] for c in shown["contacts"][3:] if c["channel"] == "sms"} == {"skipped_opt_out"}
    assert shown["opted_out"] == ["sms"]
    [opt_out] = [d for d in fake.written[acts.RECORD_DECISION] if d["rule"] == "opt_out"]
    assert (opt_out["kind"], opt_out["channel"]) == ("operator", "sms")


async def test_a_plan_accepted_then_an_installment_paid_holds_escalation_and_the_last_one_repays_the_loan(time_env):
    fake = FakeActivities()
    async with fake_worker(time_env, fake) as loans:
        due = await overdue_since(time_env, 16)
        handle = await loans.start(loan_input("L-SC-PLAN", due))
        await time_env.sleep(timedelta(hours=1))
        today = due + timedelta(days=(await status(handle))["days_past_due"])
        plan = await handle.execute_update(
            "propose_plan", {"installments": 2, "first_due_date": (today + timedelta(days=7)).isoformat(), "interval_days": 14}
        )
        await time_env.sleep(timedelta(days=5))
        await handle.signal("repayment", payment("P-1", "600.00"))
        await time_env.sleep(timedelta(hours=1))
        after_first = await status(handle)
        await time_env.sleep(timedelta(days=14))  # past the second installment's reminder, before its due date
        await handle.signal("repayment", payment("P-2", "600.00"))
        result = await handle.result()

    assert [i["amount"] for i in plan["installments"]] == ["600.00", "600.00"]
    assert after_first["plan"]["status"] == "active" and after_first["outstanding"] == "600.00"
    assert [i["paid_on"] is not None for i in after_first["plan"]["installments"]] == [True, False]
    assert after_first["stage"] == "negotiation", "a running plan never escalates"
    assert result["outcome"] == "repaid" and result["final_stage"] == "negotiation"
    events = [(e["kind"], e["installment"]) for e in fake.written[acts.RECORD_ARRANGEMENT]]
    assert events == [("plan_accepted", 0), ("installment_paid", 1), ("installment_paid", 2), ("plan_kept", 0)]
    assert [c.template for c in fake.sent if c.template in ("plan_confirmation", "installment_reminder")] == [
        "plan_confirmation", "installment_reminder", "installment_reminder",
    ]
    assert {c.message_amount for c in fake.sent if c.template == "installment_reminder"} == {"600.00"}


async def test_a_dispute_pauses_contact_and_escalation_until_it_is_resolved(time_env):
    fake = FakeActivities()
    async with fake_worker(time_env, fake) as loans:
        handle = await placed(time_env, loans, "L-SC-DISP", days_overdue=6)
        before = await status(handle)
        await handle.signal("dispute", {"reason": "amount wrong"})
        await time_env.sleep(timedelta(days=5))
        during = await status(handle)
        await handle.signal("dispute_resolved", {"upheld": False})
        await time_env.sleep(timedelta(hours=1))
        after = await status(handle)
        await handle.signal("dispute", {"reason": "again"})
        await handle.signal("dispute_resolved", {"upheld": True})
        result = await handle.result()

    assert during["disputed"] and during["stage"] == "reminder" and during["days_past_due"] >= 11
    assert during["contacts"] == before["contacts"], "no contact while the dispute is open"
    assert [e["stage"] for e in fake.written[acts.ENTER_STAGE]][:2] == ["reminder", "call"], "escalates only after"
    assert not after["disputed"] and after["stage"] == "call" and after["days_past_due"] >= 11
    assert result["outcome"] == "dispute_upheld"
    assert [d["rule"] for d in fake.written[acts.RECORD_DECISION] if d["kind"] == "operator"] == [
        "dispute", "dispute_resolved", "dispute", "dispute_resolved",
    ]
    # Issue 17: each dispute opens a task to verify it, for a person, once.
    opened = fake.written[acts.OPEN_TASK]
    assert [(t["kind"], t["key"]) for t in opened] == [
        ("dispute_verification", "dunning-L-SC-DISP/task/dispute_verification/1"),
        ("dispute_verification", "dunning-L-SC-DISP/task/dispute_verification/2"),
    ]
    # The first one's SLA (72 hours) ran out during the 5 days: escalated once.
    assert [e.key for e in fake.escalated] == ["dunning-L-SC-DISP/task/dispute_verification/1"]


async def test_a_provider_that_refuses_leaves_its_contact_failed_and_the_loan_goes_on(time_env):
    fake = FakeActivities(refuses=("email",))
    async with fake_worker(time_env, fake) as loans:
        handle = await loans.start(loan_input("L-SC-FAIL", await overdue_since(time_env, 1)))
        shown = await after_the_days_first_contacts(time_env, handle, 3)

    assert [(c["channel"], c["result"]) for c in shown["contacts"][:3]] == [("sms", "sent"), ("push", "sent"), ("email", "failed")]
    assert shown["next_action"].startswith("waiting for"), "the loan goes on to its next step"


async def test_a_contact_that_finds_the_database_down_waits_and_goes_out_once_when_it_is_back(time_env):
    # The five tries of the day's first send (the SMS, the push and the
    # e-mail due together, in one activity) find the database down.
    fake = FakeActivities(database_down_for=5)
    async with fake_worker(time_env, fake) as loans:
        handle = await loans.start(loan_input("L-SC-DBDOWN", await overdue_since(time_env, 1)))
        shown = await after_the_days_first_contacts(time_env, handle, 3)

    # All three waited; then each went, once.
    assert sorted((c["channel"], c["result"]) for c in shown["contacts"][:3]) == [
        ("email", "sent"), ("push", "sent"), ("sms", "sent")]
    assert sorted(r.channel for r in fake.sent[:3]) == ["email", "push", "sms"], "each went out once, none was lost"
    assert len(fake.sent) == len({r.key for r in fake.sent}), "none twice"
    decisions = [d for d in fake.written[acts.RECORD_DECISION] if d.get("rule") == "database_unavailable"]
    assert sorted(d["channel"] for d in decisions) == ["email", "push", "sms"], decisions


async def test_a_complaint_holds_the_loan_until_a_reviewer_resolves_it(time_env):
    fake = FakeActivities()
    async with fake_worker(time_env, fake) as loans:
        handle = await placed(time_env, loans, "L-SC-COMPL", days_overdue=6)
        await handle.signal("complaint", {"complaint_id": "C-1", "category": "harassment"})
        await handle.signal("complaint", {"complaint_id": "C-1", "category": "harassment"})  # sent twice
        await handle.signal("complaint_resolved", {"complaint_id": "C-9", "upheld": False, "reviewer_id": "R-1"})
        await time_env.sleep(timedelta(days=4))
        held = await status(handle)
        await handle.signal("complaint_resolved", {"complaint_id": "C-1", "upheld": True, "reviewer_id": "R-1"})
        await time_env.sleep(timedelta(hours=1))
        resumed = await status(handle)

    assert held["open_complaints"] == ["C-1"] and held["stage"] == "reminder"
    assert held["next_action"].startswith("no contact or escalation: complaint C-1")
    assert [r["signal"] for r in held["rejected_signals"]] == ["complaint_resolved"]
    assert [c["complaint_id"] for c in fake.written[acts.OPEN_COMPLAINT]] == ["C-1"]
    assert [(c["complaint_id"], c["upheld"]) for c in fake.written[acts.RESOLVE_COMPLAINT]] == [("C-1", True)]
    assert resumed["open_complaints"] == [] and resumed["stage"] == "call"
