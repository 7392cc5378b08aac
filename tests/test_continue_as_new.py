"""A long-lived loan continues as new when the server suggests it, and loses
nothing: the dev server is told to suggest it after a few dozen events."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from db.models import Contact, PlanInstallment, PlanRecord
from tests.support.devserver import DevServer
from tests.support.polling import eventually

pytestmark = pytest.mark.devserver


@pytest.fixture(scope="module")
def short_history_dev(tmp_path_factory):
    server = DevServer(
        tmp_path_factory.mktemp("can"),
        server_flags=("--dynamic-config-value", "limit.historyCount.suggestContinueAsNew=40"),
    )
    try:
        yield server
    finally:
        server.stop()


def test_a_loan_continues_as_new_and_keeps_its_payments_contacts_and_opt_outs(short_history_dev, tmp_path):
    dev = short_history_dev
    due = (datetime.now(ZoneInfo("Asia/Shanghai")).date() - timedelta(days=1)).isoformat()
    record = {"loan_id": "L-CAN", "borrower_id": "B-CAN", "amount_due": "900.00", "currency": "CNY", "due_date": due,
              "policy": "demo", "borrower": {"name": "长寿", "phone": "+8613800138001", "email": "can@example.com"}}
    path = tmp_path / "can.json"
    path.write_text(json.dumps([record], ensure_ascii=False), encoding="utf-8")
    assert dev.starter("start", str(path)).returncode == 0
    assert dev.starter("repay", "L-CAN", "100.00", "--payment-id", "P-BEFORE").returncode == 0
    assert dev.starter("signal", "L-CAN", "opt_out", '{"channel": "push"}').returncode == 0

    def runs() -> list[dict]:
        listed = dev.temporal("workflow", "list", "--query", 'WorkflowId="dunning-L-CAN"', "-o", "json").stdout
        return json.loads(listed) if listed.strip() else []

    eventually(lambda: len(runs()) >= 2, timeout=90)
    statuses = [run.get("status") for run in runs()]
    assert "WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW" in statuses

    status = eventually(lambda: (s := json.loads(dev.starter("status", "L-CAN").stdout)) and s["stage"] != "pending" and s)
    assert status["amount_paid"] == "100.00" and status["outstanding"] == "800.00"
    assert status["opted_out"] == ["push"]
    sent = [c for c in status["contacts"] if c["result"] == "sent"]
    assert sent and sent[0]["day"] == 1 and sent[0]["template"] == "reminder_friendly"
    with dev.sessions() as db:
        rows = db.scalars(select(Contact).where(Contact.loan_id == "L-CAN", Contact.status == "sent")).all()
    assert len({row.key for row in rows}) == len(rows)  # nothing sent twice across the runs
    assert len(rows) >= len(sent)

    # The same payment again, to the new run: still counted once.
    assert dev.starter("repay", "L-CAN", "100.00", "--payment-id", "P-BEFORE").returncode == 0
    assert dev.starter("repay", "L-CAN", "800.00", "--payment-id", "P-AFTER").returncode == 0
    result = json.loads(dev.temporal("workflow", "result", "--workflow-id", "dunning-L-CAN", "-o", "json").stdout)
    assert result["result"]["outcome"] == "repaid" and result["result"]["amount_paid"] == "900.00"


@pytest.mark.slow  # 39 s measured (--durations=0)
def test_a_loan_continues_as_new_in_the_middle_of_a_plan_and_the_plan_goes_on(short_history_dev, tmp_path):
    dev = short_history_dev
    due = datetime.now(ZoneInfo("Asia/Shanghai")).date() - timedelta(days=16)
    record = {"loan_id": "L-CANPLAN", "borrower_id": "B-CANPLAN", "amount_due": "900.00", "currency": "CNY",
              "due_date": due.isoformat(), "policy": "demo",
              "borrower": {"name": "分期", "phone": "+8613800138002", "email": "plan@example.com"}}
    path = tmp_path / "plan.json"
    path.write_text(json.dumps([record], ensure_ascii=False), encoding="utf-8")
    assert dev.starter("start", str(path)).returncode == 0
    status = eventually(lambda: (s := json.loads(dev.starter("status", "L-CANPLAN").stdout)) and s["stage"] == "negotiation" and s)

    # The plan through the temporal CLI, as an operator would, in plain JSON.
    first_due = due + timedelta(days=status["days_past_due"] + 4)
    proposal = {"installments": 3, "first_due_date": first_due.isoformat(), "interval_days": 7}
    answer = json.loads(dev.temporal(
        "workflow", "update", "execute", "--workflow-id", "dunning-L-CANPLAN", "--name", "propose_plan",
        "--input", json.dumps(proposal), "-o", "json",
    ).stdout)
    assert [i["amount"] for i in answer["result"]["installments"]] == ["300.00", "300.00", "300.00"]
    assert dev.starter("repay", "L-CANPLAN", "300.00", "--payment-id", "P-I1").returncode == 0

    def runs() -> list[dict]:
        listed = dev.temporal("workflow", "list", "--query", 'WorkflowId="dunning-L-CANPLAN"', "-o", "json").stdout
        return json.loads(listed) if listed.strip() else []

    eventually(lambda: len(runs()) >= 2, timeout=90)
    assert "WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW" in [run.get("status") for run in runs()]
    carried = eventually(lambda: (s := json.loads(dev.starter("status", "L-CANPLAN").stdout)) and s["plan"] and s)
    assert carried["plan"]["status"] == "active" and carried["stage"] == "negotiation", "the plan and the paused escalation carry over"
    assert carried["plan"]["installments"][0]["paid_on"] is not None and carried["outstanding"] == "600.00"

    # The same first payment again reaches the new run: counted once.
    for payment_id in ("P-I1", "P-I2", "P-I3"):
        assert dev.starter("repay", "L-CANPLAN", "300.00", "--payment-id", payment_id).returncode == 0
    result = json.loads(dev.temporal("workflow", "result", "--workflow-id", "dunning-L-CANPLAN", "-o", "json").stdout)
    assert result["result"]["outcome"] == "repaid" and result["result"]["amount_paid"] == "900.00"
    with dev.sessions() as db:
        plans = db.scalars(select(PlanRecord).where(PlanRecord.loan_id == "L-CANPLAN")).all()
        paid = db.scalars(select(PlanInstallment.paid_at).join(PlanRecord, PlanInstallment.plan_id == PlanRecord.id)
                          .where(PlanRecord.loan_id == "L-CANPLAN")).all()
        contacts = db.scalars(select(Contact).where(Contact.loan_id == "L-CANPLAN", Contact.status == "sent")).all()
    assert [p.status for p in plans] == ["kept"] and len(paid) == 3 and all(paid)
    assert len({c.key for c in contacts}) == len(contacts)
    assert [c.template for c in contacts].count("plan_confirmation") == 1, "nothing sent twice across the runs"
