"""Agent tasks (issue 17, item 4): the table and its one owner (db/tasks.py),
the `open_task` and `escalate_task` activities, the outcomes' configuration
(config/tasks.toml), the service the gateway and the command line share
(services/tasks.py), the endpoints and their scopes, and a dispute
verification completed `verified` resuming a disputed loan on the
time-skipping server."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.payloads import TaskEscalation, TaskRequest
from db import audit
from db import tasks as store
from db.api_keys import SCOPES
from db.models import AgentTask, AuditEntry
from gateway.app import create_app
from runtime.worker_build import build_agent_tasks
from services.tasks import (
    LoanUnreachable,
    TaskConfigError,
    TaskConflict,
    TaskError,
    UnknownOutcome,
    claim_task,
    complete_task,
    list_tasks,
    load_task_rules,
    rules_path,
)
from tests.support.gateway import api_key, bearer, gateway_settings, keyed
from tests.support.temporal import loan_input, overdue_since, running_worker, time_env  # noqa: F401 (fixture)

pytestmark = pytest.mark.both_databases

ROOT = Path(__file__).resolve().parent.parent
AT = datetime(2026, 11, 5, 2, 0, tzinfo=timezone.utc)


def request(key: str = "dunning-L-T1/task/dispute_verification/1", kind: str = "dispute_verification",
            loan_id: str = "L-T1", **fields) -> TaskRequest:
    return TaskRequest(**{
        "key": key, "workflow_id": f"dunning-{loan_id}", "loan_id": loan_id, "borrower_id": "B-77", "kind": kind,
        "due_in_hours": 24, "sla_hours": 48, "at": AT.isoformat(), **fields,
    })


@pytest.fixture
def rules():
    return load_task_rules(ROOT / "config" / "tasks.toml")


@pytest.fixture
def agent_tasks(settings):
    return build_agent_tasks(settings)


def open_task(agent_tasks, req: TaskRequest):
    return ActivityEnvironment().run(agent_tasks.open_task, req)


def task_entries(session_factory, key: str) -> list[dict]:
    with session_factory() as db:
        entries = db.scalars(select(AuditEntry).where(AuditEntry.key.like(f"task/{key}/%")).order_by(AuditEntry.seq)).all()
        return [{"kind": e.kind, **audit.payload_of(e)} for e in entries]


class FakeLoans:
    """A Temporal client that records signals and answers the status query."""

    def __init__(self, status: dict | None = None, missing: bool = False) -> None:
        self.sent: list[tuple[str, str, dict]] = []
        self.status, self.missing = status or {}, missing

    def get_workflow_handle(self, workflow_id: str):
        loans = self

        class Handle:
            async def signal(self, name: str, payload: dict) -> None:
                if loans.missing:
                    from temporalio.service import RPCError, RPCStatusCode

                    raise RPCError("workflow not found", RPCStatusCode.NOT_FOUND, b"")
                loans.sent.append((workflow_id, name, payload))

            async def query(self, name: str) -> dict:
                return loans.status

        return Handle()


# ------------------------------------------------------------------ creating, by key


def test_the_same_key_twice_is_one_task_with_one_audit_entry(agent_tasks, session_factory):
    first = open_task(agent_tasks, request())
    again = open_task(agent_tasks, request(due_in_hours=1, priority=9))  # a retry: the first one's fields stand
    assert first == again and first.status == "open" and first.task_id > 0
    assert first.due_at == (AT + timedelta(hours=24)).isoformat()
    with session_factory() as db:
        assert db.scalar(select(func.count()).select_from(AgentTask)) == 1
        row = db.scalar(select(AgentTask))
        assert (row.kind, row.sla_hours, row.priority, row.status, row.workflow_id) == (
            "dispute_verification", 48, 0, "open", "dunning-L-T1")
    entries = task_entries(session_factory, request().key)
    assert [(e["kind"], e["action"]) for e in entries] == [("decision", "opened")]
    with session_factory() as db:
        assert audit.verify(db).ok


def test_a_bad_task_fails_at_once_naming_the_field(agent_tasks, session_factory):
    for bad, field in ((request(kind="chat"), "kind"), (request(borrower_id="not an id!"), "borrower_id"),
                       (request(note="call wang@example.com"), "note"), (request(due_in_hours=-1), "due_in_hours"),
                       (request(kind="complaint_review"), "subject"), (request(workflow_id="dunning-L-OTHER"), "workflow id")):
        with pytest.raises(ApplicationError) as failed:
            open_task(agent_tasks, bad)
        assert failed.value.non_retryable and failed.value.type == "InvalidTask"
        assert failed.value.message.startswith(field), (field, failed.value.message)
    with session_factory() as db:
        assert db.scalar(select(func.count()).select_from(AgentTask)) == 0
        assert audit.count(db) == 0


# ------------------------------------------------------------------ claiming and completing


def test_claim_then_complete_and_every_move_back_is_refused(agent_tasks, session_factory, rules):
    import asyncio

    opened = open_task(agent_tasks, request(key="dunning-L-T1/task/callback/1", kind="callback"))
    task_id = opened.task_id
    claimed = claim_task(session_factory, task_id, "A-1")
    assert claimed["status"] == "claimed" and claimed["assignee"] == "A-1" and claimed["claimed_at"]
    assert claim_task(session_factory, task_id, "A-1") == claimed  # the same agent again: the same answer
    with pytest.raises(TaskConflict) as other:
        claim_task(session_factory, task_id, "A-2")
    assert "claimed by A-1" in other.value.message
    with pytest.raises(TaskConflict):
        asyncio.run(complete_task(None, session_factory, rules, task_id, "A-2", "called"))
    with pytest.raises(UnknownOutcome) as unknown:
        asyncio.run(complete_task(None, session_factory, rules, task_id, "A-1", "verified"))
    assert unknown.value.field == "outcome" and unknown.value.allowed == ("called", "no_answer", "cancelled")
    assert "one of called, no_answer, cancelled" in str(unknown.value)
    with pytest.raises(TaskError) as bad:
        claim_task(session_factory, task_id, "Wang Xiaoming")
    assert bad.value.field == "assignee"

    done = asyncio.run(complete_task(None, session_factory, rules, task_id, "A-1", "called", note="CB-OK"))
    assert done.sent == [] and not done.duplicate
    assert (done.task["status"], done.task["outcome"], done.task["note"]) == ("done", "called", "CB-OK")
    again = asyncio.run(complete_task(None, session_factory, rules, task_id, "A-1", "called"))
    assert again.duplicate and again.task == done.task
    for move in (lambda: claim_task(session_factory, task_id, "A-1"),
                 lambda: asyncio.run(complete_task(None, session_factory, rules, task_id, "A-1", "no_answer"))):
        with pytest.raises(TaskConflict) as refused:
            move()
        assert refused.value.status == "done"
    with session_factory.begin() as db:  # the owner's table itself: nothing moves back
        row = db.get(AgentTask, task_id)
        assert not store.may_follow("done", "open") and not store.may_follow("claimed", "open")
        with pytest.raises(TaskConflict):
            store._move(row, "claimed")
    entries = task_entries(session_factory, "dunning-L-T1/task/callback/1")
    assert [(e["kind"], e["action"], e.get("assignee"), e.get("outcome")) for e in entries] == [
        ("decision", "opened", None, None), ("operator", "claimed", "A-1", None), ("operator", "done", "A-1", "called")]


def test_an_open_task_completed_unclaimed_is_claimed_by_the_agent_then_done(agent_tasks, session_factory, rules):
    import asyncio

    opened = open_task(agent_tasks, request(key="dunning-L-T1/task/other/1", kind="other"))
    done = asyncio.run(complete_task(None, session_factory, rules, opened.task_id, "A-3", "done"))
    assert (done.task["status"], done.task["assignee"]) == ("done", "A-3") and done.task["claimed_at"]
    actions = [e["action"] for e in task_entries(session_factory, "dunning-L-T1/task/other/1")]
    assert actions == ["opened", "claimed", "done"]


def test_listing_filters_and_puts_the_most_urgent_first(agent_tasks, session_factory):
    open_task(agent_tasks, request(key="k-late", kind="callback", due_in_hours=48))
    open_task(agent_tasks, request(key="k-soon", kind="callback", due_in_hours=2))
    open_task(agent_tasks, request(key="k-urgent", kind="other", due_in_hours=72, priority=5))
    open_task(agent_tasks, request(key="k-other-loan", kind="callback", loan_id="L-T2", borrower_id="B-9"))
    assert [t["key"] for t in list_tasks(session_factory)] == ["k-urgent", "k-soon", "k-other-loan", "k-late"]
    assert [t["key"] for t in list_tasks(session_factory, kind="callback", loan_id="L-T1")] == ["k-soon", "k-late"]
    assert [t["key"] for t in list_tasks(session_factory, borrower_id="B-9")] == ["k-other-loan"]
    claim_task(session_factory, list_tasks(session_factory, kind="other")[0]["id"], "A-1")
    assert [t["key"] for t in list_tasks(session_factory, status="claimed", assignee="A-1")] == ["k-urgent"]
    with pytest.raises(TaskError) as bad:
        list_tasks(session_factory, status="closed")
    assert bad.value.field == "status"


def test_escalation_raises_the_priority_once_and_is_audited(agent_tasks, session_factory):
    opened = open_task(agent_tasks, request(priority=3))
    env = ActivityEnvironment()
    late = (AT + timedelta(hours=49)).isoformat()
    assert env.run(agent_tasks.escalate_task, TaskEscalation(opened.key, late)) == "open"
    assert env.run(agent_tasks.escalate_task, TaskEscalation(opened.key, late)) == "open"  # a retry: once
    assert env.run(agent_tasks.escalate_task, TaskEscalation("no-such-task")) == "unknown"
    with session_factory() as db:
        row = db.get(AgentTask, opened.task_id)
        assert row.priority == 3 + store.ESCALATION_STEP and row.escalated_at == AT + timedelta(hours=49)
    entries = task_entries(session_factory, opened.key)
    assert [(e["kind"], e["action"]) for e in entries] == [("decision", "opened"), ("decision", "escalated")]
    assert entries[1]["priority"] == 13 and entries[1]["rule"] == "task_escalated"
    with session_factory() as db:
        assert audit.verify(db).ok


def test_a_done_task_is_not_escalated(agent_tasks, session_factory, rules):
    import asyncio

    opened = open_task(agent_tasks, request(key="k-done", kind="callback"))
    asyncio.run(complete_task(None, session_factory, rules, opened.task_id, "A-1", "called"))
    assert ActivityEnvironment().run(agent_tasks.escalate_task, TaskEscalation("k-done")) == "done"
    with session_factory() as db:
        assert db.get(AgentTask, opened.task_id).escalated_at is None


# ------------------------------------------------------------------ what an outcome sends


@pytest.mark.sqlite_only
async def test_verified_sends_verification_when_awaited_then_dispute_resolved(agent_tasks, session_factory, rules):
    opened = open_task(agent_tasks, request(key="VER-T1"))
    awaiting = FakeLoans({"validation_notice": {"verification_required": True, "verification_sent_on": None}})
    done = await complete_task(awaiting, session_factory, rules, opened.task_id, "A-1", "verified")
    assert awaiting.sent == [("dunning-L-T1", "verification_sent", {"reference": "VER-T1"}),
                             ("dunning-L-T1", "dispute_resolved", {"upheld": False})]
    assert done.sent == [{"signal": "verification_sent"}, {"signal": "dispute_resolved"}]
    # No verification awaited (a cn loan): only the resolution; a key that is no id is referred to as task-<id>.
    other = open_task(agent_tasks, request(key="dunning-L-T1/task/dispute_verification/2"))
    quiet = FakeLoans({"validation_notice": None})
    await complete_task(quiet, session_factory, rules, other.task_id, "A-1", "upheld")
    assert quiet.sent == [("dunning-L-T1", "dispute_resolved", {"upheld": True})]


@pytest.mark.sqlite_only
async def test_a_complaint_review_sends_its_complaint_id_and_reviewer(agent_tasks, session_factory, rules):
    opened = open_task(agent_tasks, request(key="k-cr", kind="complaint_review", subject="C-3"))
    loans = FakeLoans()
    await complete_task(loans, session_factory, rules, opened.task_id, "R-12", "rejected")
    assert loans.sent == [("dunning-L-T1", "complaint_resolved", {"complaint_id": "C-3", "upheld": False, "reviewer_id": "R-12"})]


@pytest.mark.sqlite_only
async def test_if_the_signal_fails_the_task_is_not_done(agent_tasks, session_factory, rules):
    opened = open_task(agent_tasks, request())
    with pytest.raises(LoanUnreachable) as failed:
        await complete_task(FakeLoans(missing=True), session_factory, rules, opened.task_id, "A-1", "upheld")
    assert "no open workflow dunning-L-T1" in failed.value.message and "cancelled" in failed.value.message
    with session_factory() as db:
        row = db.get(AgentTask, opened.task_id)
        assert (row.status, row.assignee, row.outcome, row.done_at) == ("claimed", "A-1", None, None)
    # A loan that closed: the task is completed `cancelled`, which sends nothing.
    done = await complete_task(FakeLoans(missing=True), session_factory, rules, opened.task_id, "A-1", "cancelled")
    assert done.task["status"] == "done" and done.sent == []


def test_the_configuration_names_every_kind_and_known_signals_only(rules, tmp_path):
    assert set(rules.outcomes) == set(store.KINDS)
    assert all("cancelled" in rules.allowed(kind) for kind in store.KINDS)
    assert [s.name for s in rules.sends("dispute_verification", "verified")] == ["verification_sent", "dispute_resolved"]
    assert rules.needs_subject("complaint_review") and not rules.needs_subject("callback")
    text = (ROOT / "config" / "tasks.toml").read_text(encoding="utf-8")
    for broken, where in ((text.replace('signal = "dispute_resolved", payload = { upheld = true }',
                                        'signal = "dispute_resolve", payload = { upheld = true }'),
                           "kinds.dispute_verification.outcomes.upheld[0].signal"),
                          (text.replace("[kinds.other.outcomes]\ndone = []\ncancelled = []\n", ""), "kinds.other"),
                          (text.replace('upheld = true, reviewer_id = "$assignee"', 'upheld = true, reviewer_id = "$name"'), "kinds.complaint_review.outcomes.upheld[0].payload.reviewer_id")):
        path = tmp_path / "tasks.toml"
        path.write_text(broken, encoding="utf-8")
        with pytest.raises(TaskConfigError) as failed:
            load_task_rules(path)
        assert where in str(failed.value), str(failed.value)
    assert rules_path(ROOT / "config") == ROOT / "config" / "tasks.toml"


# ------------------------------------------------------------------ the endpoints and their scopes


def no_temporal():
    raise ConnectionError("no Temporal in this test")


@pytest.fixture
def app(settings, tmp_path):
    return create_app(settings, no_temporal, gateway_settings(tmp_path))


@pytest.fixture
def client(app):
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def test_the_task_endpoints_want_their_scopes(app, client, agent_tasks, session_factory):
    task_id = open_task(agent_tasks, request(key="k-api", kind="callback")).task_id
    calls = (("GET", "/tasks", None), ("POST", f"/tasks/{task_id}/claim", {"assignee": "A-1"}),
             ("POST", f"/tasks/{task_id}/complete", {"assignee": "A-1", "outcome": "called"}))
    for method, path, body in calls:
        response = client.request(method, path, json=body)
        assert (response.status_code, response.json()) == (401, {"detail": "unauthorized"}), path
    reader, other = bearer(api_key(app, {"tasks:read"})), bearer(api_key(app, SCOPES - {"tasks:read", "tasks:write"}))
    for method, path, body in calls:
        assert client.request(method, path, json=body, headers=other).status_code == 403, path
    assert client.get("/tasks", headers=reader).status_code == 200
    for method, path, body in calls[1:]:
        assert client.request(method, path, json=body, headers=reader).status_code == 403, path
    with session_factory() as db:  # nothing was claimed or completed
        assert db.get(AgentTask, task_id).status == "open"
    assert {"tasks:read", "tasks:write"} <= SCOPES


def test_the_endpoints_claim_complete_and_answer_each_refusal_naming_the_field(app, client, agent_tasks, session_factory):
    writer = bearer(api_key(app, {"tasks:read", "tasks:write"}))
    task_id = open_task(agent_tasks, request(key="k-api", kind="callback")).task_id
    listed = client.get("/tasks", params={"status": "open", "kind": "callback"}, headers=writer).json()
    assert listed["count"] == 1 and listed["tasks"][0]["id"] == task_id
    assert client.get("/tasks", params={"status": "closed"}, headers=writer).json()["detail"][0]["loc"] == ["query", "status"]
    claimed = client.post(f"/tasks/{task_id}/claim", json={"assignee": "A-1"}, headers=writer)
    assert claimed.status_code == 200 and claimed.json()["status"] == "claimed"
    taken = client.post(f"/tasks/{task_id}/claim", json={"assignee": "A-2"}, headers=writer)
    assert taken.status_code == 409 and taken.json()["detail"]["assignee"] == "A-1"
    unknown = client.post(f"/tasks/{task_id}/complete", json={"assignee": "A-1", "outcome": "verified"}, headers=writer)
    assert unknown.status_code == 422
    (problem,) = unknown.json()["detail"]
    assert problem["loc"] == ["body", "outcome"] and problem["ctx"]["allowed"] == ["called", "no_answer", "cancelled"]
    assert "called, no_answer, cancelled" in problem["msg"]
    named = client.post(f"/tasks/{task_id}/complete", json={"assignee": "Wang Xiaoming", "outcome": "called"}, headers=writer)
    assert named.status_code == 422 and named.json()["detail"][0]["loc"] == ["body", "assignee"]
    assert client.post("/tasks/999999/claim", json={"assignee": "A-1"}, headers=writer).status_code == 404
    assert client.post("/tasks/0/claim", json={"assignee": "A-1"}, headers=writer).status_code == 422
    # `called` sends nothing: it completes without Temporal.
    done = client.post(f"/tasks/{task_id}/complete", json={"assignee": "A-1", "outcome": "called", "note": "CB-1"},
                       headers=writer)
    assert done.status_code == 200, done.text
    assert done.json()["task"]["status"] == "done" and done.json()["sent"] == []
    again = client.post(f"/tasks/{task_id}/complete", json={"assignee": "A-2", "outcome": "called"}, headers=writer)
    assert again.status_code == 409
    # An outcome that signals, Temporal unreachable: 503 and the task not done.
    dispute = open_task(agent_tasks, request(key="k-api-dispute")).task_id
    down = client.post(f"/tasks/{dispute}/complete", json={"assignee": "A-1", "outcome": "upheld"}, headers=writer)
    assert down.status_code == 503
    with session_factory() as db:
        assert db.get(AgentTask, dispute).status == "claimed"


# ------------------------------------------------------------------ the workflow, on the time-skipping server


async def loan_status(handle) -> dict:
    return await handle.query("status")


@pytest.mark.sqlite_only
async def test_a_verified_dispute_resumes_collection(time_env, settings, seeded_borrower, tmp_path):
    async with running_worker(time_env.client, settings) as loans:
        handle = await loans.start(loan_input("L-TASK-DISP", await overdue_since(time_env, 1)))
        for _ in range(96):  # the day-1 reminders (the window opens whenever the server's clock says)
            before = await loan_status(handle)
            if before["contacts"]:
                break
            await time_env.sleep(timedelta(minutes=30))
        assert before["contacts"], before
        await handle.signal("dispute", {"reason": "amount wrong"})
        await time_env.sleep(timedelta(days=3))
        during = await loan_status(handle)
        assert during["disputed"] is True and len(during["contacts"]) == len(before["contacts"])

        # The workflow (the lead's part) opens the task through the activity; here the test does.
        tasks = build_agent_tasks(settings)
        task_id = ActivityEnvironment().run(tasks.open_task, TaskRequest(
            key="dunning-L-TASK-DISP/task/dispute_verification/1", workflow_id="dunning-L-TASK-DISP",
            loan_id="L-TASK-DISP", borrower_id="B-77", kind="dispute_verification", due_in_hours=48)).task_id

        core = settings.model_copy(update={"task_queue": loans.task_queue})
        app = create_app(core, lambda: time_env.client, gateway_settings(tmp_path))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver",
                                     headers=keyed(app)) as http:
            assert (await http.post(f"/tasks/{task_id}/claim", json={"assignee": "A-7"})).status_code == 200
            done = await http.post(f"/tasks/{task_id}/complete", json={"assignee": "A-7", "outcome": "verified"})
            assert done.status_code == 200, done.text
            # A cn loan awaits no verification (no validation notice): only the resolution is sent.
            assert done.json()["sent"] == [{"signal": "dispute_resolved"}]
            assert done.json()["task"]["status"] == "done"
            listed = (await http.get("/tasks", params={"loan_id": "L-TASK-DISP"})).json()
            assert [(t["status"], t["outcome"]) for t in listed["tasks"]] == [("done", "verified")]

        await time_env.sleep(timedelta(hours=1))
        resumed = await loan_status(handle)
        assert resumed["disputed"] is False and resumed["rejected_signals"] == []
        await time_env.sleep(timedelta(days=10))
        later = await loan_status(handle)
        assert len(later["contacts"]) > len(during["contacts"]), later  # collection continues
        assert later["stage"] != "closed"
        await time_env.sleep(timedelta(seconds=1))
