"""The worker process from worker.py against a real `temporal server start-dev`,
driven the way other teams and operators drive it: the `temporal` CLI with
plain JSON, and starter.py."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from db.models import Borrower, Loan
from dunning.contract import SEARCH_ATTRIBUTES
from runtime.dev_server import free_port
from tests.conftest import BORROWER
from tests.support.devserver import ROOT, DevServer, due_days_ago, run_ids
from tests.support.polling import eventually
from tests.support.temporal import PLACELESS_PHONE, zone_at_hour

pytestmark = pytest.mark.devserver


@pytest.fixture(scope="session")
def dev(tmp_path_factory):
    server = DevServer(tmp_path_factory.mktemp("devserver"))
    try:
        yield server
    finally:
        server.stop()


def test_the_temporal_cli_starts_queries_lists_and_repays_a_loan_with_plain_json(dev):
    with dev.sessions.begin() as db:
        db.add(Borrower(**{**BORROWER, "borrower_id": "B-CLI"}))
    loan = {"loan_id": "L-CLI-1", "borrower_id": "B-CLI", "amount_due": "1200.00", "currency": "CNY", "due_date": due_days_ago(2)}
    dev.temporal(
        "workflow", "start", "--type", "DunningWorkflow", "--task-queue", dev.task_queue,
        "--workflow-id", "dunning-L-CLI-1", "--input", json.dumps(loan),
    )
    status = eventually(
        lambda: (s := json.loads(dev.temporal("workflow", "query", "--workflow-id", "dunning-L-CLI-1", "--name", "status", "-o", "json").stdout))
        and s["queryResult"][0]["stage"] == "reminder" and s["queryResult"][0]
    )
    assert status["days_past_due"] == 2 and status["outstanding"] == "1200.00"

    listed = eventually(
        lambda: "dunning-L-CLI-1" in (out := dev.temporal("workflow", "list", "--query", 'DunningStage="reminder"').stdout) and out
    )
    assert "DunningWorkflow" in listed

    # DueDate, the due date's start in the borrower's zone, finds the loans
    # overdue since a date at any moment, without waking them.
    due_start = datetime.combine(datetime.fromisoformat(loan["due_date"]).date(), datetime.min.time(), ZoneInfo("Asia/Shanghai"))

    def due_before(instant: datetime) -> str:
        stamp = instant.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        return dev.temporal("workflow", "list", "--query", f'WorkflowId="dunning-L-CLI-1" AND DueDate < "{stamp}"').stdout

    assert "dunning-L-CLI-1" in due_before(due_start + timedelta(seconds=1))
    assert "dunning-L-CLI-1" not in due_before(due_start)

    # BorrowerId (issue 17): an operator lists a borrower's loans.
    by_borrower = eventually(lambda: "dunning-L-CLI-1" in (out := dev.temporal(
        "workflow", "list", "--query", f'BorrowerId="{loan["borrower_id"]}"').stdout) and out)
    assert "dunning-L-CLI-1" in by_borrower
    assert "dunning-L-CLI-1" not in dev.temporal("workflow", "list", "--query", 'BorrowerId="B-NOBODY"').stdout
    # LegalStatus (issue 18, item 1): `none` until a legal_status signal sets one.
    eventually(lambda: "dunning-L-CLI-1" in dev.temporal(
        "workflow", "list", "--query", 'WorkflowId="dunning-L-CLI-1" AND LegalStatus="none"').stdout)
    assert "dunning-L-CLI-1" not in dev.temporal(
        "workflow", "list", "--query", 'WorkflowId="dunning-L-CLI-1" AND LegalStatus="deceased"').stdout

    payment = {"payment_id": "P-1", "amount": "1200.00", "currency": "CNY", "paid_at": "2026-11-05T10:00:00+08:00"}
    dev.temporal("workflow", "signal", "--workflow-id", "dunning-L-CLI-1", "--name", "repayment", "--input", json.dumps(payment))
    result = json.loads(dev.temporal("workflow", "result", "--workflow-id", "dunning-L-CLI-1", "-o", "json").stdout)
    assert result["status"] == "COMPLETED"
    assert result["result"] == {"loan_id": "L-CLI-1", "outcome": "repaid", "amount_paid": "1200.00", "final_stage": "reminder"}


def test_starter_places_loans_once_and_operators_read_list_and_repay_them(dev, tmp_path):
    records = [
        {"loan_id": f"L-ST-{n}", "borrower_id": f"B-ST-{n}", "amount_due": "500.00", "currency": "CNY",
         "due_date": due_days_ago(days), "borrower": {"name": f"借款人{n}", "phone": f"+861380013800{n}", "language": "zh_CN"}}
        for n, days in ((1, 3), (2, 12))
    ]
    path = tmp_path / "loans.json"
    path.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")

    first = dev.starter("start", str(path))
    assert first.returncode == 0, first.stderr
    again = dev.starter("start", str(path))
    assert again.returncode == 0, again.stderr
    started, rerun = run_ids(first.stdout), run_ids(again.stdout)
    assert {state for state, _ in started.values()} == {"started"}
    assert {state for state, _ in rerun.values()} == {"already running"}
    assert {k: run for k, (_, run) in started.items()} == {k: run for k, (_, run) in rerun.items()}
    assert "loans 0 new, 2 unchanged, 0 conflicts" in again.stdout
    runs = dev.temporal("workflow", "list", "--query", 'WorkflowId="dunning-L-ST-1"', "-o", "json").stdout
    assert len(json.loads(runs)) == 1
    with dev.sessions() as db:
        assert db.scalar(select(func.count()).select_from(Borrower).where(Borrower.borrower_id.like("B-ST-%"))) == 2
        assert db.get(Borrower, "B-ST-2").phone == "+8613800138002"

    status = eventually(lambda: (s := json.loads(dev.starter("status", "L-ST-2").stdout)) and s["stage"] == "call" and s)
    assert status["policy"] == "default"
    listed = eventually(lambda: "dunning-L-ST-1" in (out := dev.starter("list", "--stage", "reminder").stdout) and out)
    assert "dunning-L-ST-2" not in listed

    repaid = dev.starter("repay", "L-ST-1", "500.00", "--currency", "CNY", "--payment-id", "P-ST-1")
    assert repaid.returncode == 0, repaid.stderr
    eventually(lambda: json.loads(dev.starter("status", "L-ST-1").stdout)["stage"] == "closed")
    with dev.sessions() as db:
        assert db.get(Loan, "L-ST-1").outcome == "repaid"
        assert db.get(Borrower, "B-ST-1").name == "借款人1"


def test_starter_refuses_a_file_with_a_bad_record_and_places_nothing(dev, tmp_path):
    good = {"loan_id": "L-BAD-1", "borrower_id": "B-BAD-1", "amount_due": "10.00", "currency": "CNY", "due_date": due_days_ago(1),
            "borrower": {"name": "好", "phone": "+8613800138000"}}
    bad = {**good, "loan_id": "L-BAD-2", "due_date": "yesterday"}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([good, bad], ensure_ascii=False), encoding="utf-8")
    placed = dev.starter("start", str(path))
    assert placed.returncode == 2
    assert "record 2 (loan_id L-BAD-2): due_date:" in placed.stderr
    with dev.sessions() as db:
        assert db.scalar(select(func.count()).select_from(Loan).where(Loan.loan_id.like("L-BAD-%"))) == 0
    described = dev.temporal("workflow", "describe", "--workflow-id", "dunning-L-BAD-1", check=False)
    assert described.returncode != 0


def test_a_repaid_loan_placed_again_is_not_dunned_again(dev, tmp_path):
    record = {"loan_id": "L-AGAIN-1", "borrower_id": "B-AGAIN-1", "amount_due": "80.00", "currency": "CNY",
              "due_date": due_days_ago(2), "borrower": {"name": "再一次", "email": "again@example.com"}}
    path = tmp_path / "again.json"
    path.write_text(json.dumps([record], ensure_ascii=False), encoding="utf-8")
    assert dev.starter("start", str(path)).returncode == 0
    assert dev.starter("repay", "L-AGAIN-1", "80.00").returncode == 0
    dev.temporal("workflow", "result", "--workflow-id", "dunning-L-AGAIN-1")
    again = dev.starter("start", str(path))
    assert again.returncode == 0, again.stderr
    assert "dunning-L-AGAIN-1\tclosed" in again.stdout
    runs = dev.temporal("workflow", "list", "--query", 'WorkflowId="dunning-L-AGAIN-1"', "-o", "json").stdout
    assert len(json.loads(runs)) == 1


def test_operator_mistakes_and_an_unreachable_server_are_one_clear_line(dev):
    bad_signal = dev.starter("signal", "L-ST-2", "cancel")
    assert bad_signal.returncode == 2 and "name: must be one of dispute" in bad_signal.stderr
    bad_payload = dev.starter("signal", "L-ST-2", "opt_out", '{"channel": "fax"}')
    assert bad_payload.returncode == 2 and "channel:" in bad_payload.stderr
    bad_amount = dev.starter("repay", "L-ST-2", "12.345")
    assert bad_amount.returncode == 2 and "amount:" in bad_amount.stderr
    missing = dev.starter("status", "L-NO-SUCH-LOAN")
    assert missing.returncode == 1 and "no such workflow" in missing.stderr

    closed_port = free_port()
    unreachable = subprocess.run(
        [sys.executable, "starter.py", "status", "L-ST-2"], cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**dev.env, "TEMPORAL_ADDRESS": f"127.0.0.1:{closed_port}"},
    )
    assert unreachable.returncode == 1
    assert unreachable.stderr.startswith(f"error: cannot reach Temporal at 127.0.0.1:{closed_port}")
    assert len(unreachable.stderr.strip().splitlines()) == 1
    assert dev.worker.poll() is None, "the worker died during the tests"


def test_the_worker_exports_the_sdks_and_the_services_metrics_for_prometheus(dev, tmp_path):
    """Its own loan, whatever ran before: placed for a borrower in whose zone
    it is noon now, so that its day-1 reminders go out at once at any hour of
    the run; it enters a stage, is contacted and is repaid."""
    import urllib.request

    def scrape() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{dev.metrics_port}/metrics", timeout=5) as response:
            return response.read().decode()

    zone = zone_at_hour(12, datetime.now(timezone.utc))
    due = (datetime.now(ZoneInfo(zone)).date() - timedelta(days=1)).isoformat()
    record = {"loan_id": "L-METRICS-1", "borrower_id": "B-METRICS-1", "amount_due": "90.00", "currency": "CNY", "due_date": due,
              "borrower": {"name": "指标", "phone": PLACELESS_PHONE, "time_zone": zone}}
    path = tmp_path / "metrics-loan.json"
    path.write_text(json.dumps([record], ensure_ascii=False), encoding="utf-8")
    assert dev.starter("start", str(path)).returncode == 0
    eventually(lambda: json.loads(dev.starter("status", "L-METRICS-1").stdout)["contacts"])
    assert dev.starter("repay", "L-METRICS-1", "90.00", "--payment-id", "P-METRICS-1").returncode == 0

    text = eventually(lambda: (t := scrape()) and "dunning_payments_applied" in t and t)
    assert "temporal_workflow_task_schedule_to_start_latency" in text or "temporal_request" in text  # the SDK's own
    assert "dunning_contacts{" in text
    assert 'dunning_stage_transitions{' in text and 'stage="reminder"' in text


def test_the_worker_refuses_a_namespace_without_the_contracts_search_attributes(tmp_path):
    """A namespace set up before DueDate existed, with DaysPastDue made a
    Keyword by hand: the worker stops at once naming both and the commands
    that fix them, instead of polling and failing every workflow task."""
    half_set_up = {name: kind for name, kind in SEARCH_ATTRIBUTES.items() if name != "DueDate"} | {"DaysPastDue": "Keyword"}
    server = DevServer(tmp_path, start_worker=False, search_attributes=half_set_up)
    try:
        worker = subprocess.run([sys.executable, "worker.py"], cwd=ROOT, env=server.env, capture_output=True, text=True, timeout=60)
    finally:
        server.stop()
    assert worker.returncode == 3, worker.stderr
    assert "search attribute DueDate (Datetime) is missing" in worker.stderr
    assert "temporal operator search-attribute create --namespace default --name DueDate --type Datetime" in worker.stderr
    assert "search attribute DaysPastDue is Keyword, the contract needs Int" in worker.stderr
    assert "--name DaysPastDue --type Int" in worker.stderr
    assert "DunningStage" not in worker.stderr, "only what is wrong is named"
