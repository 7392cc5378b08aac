"""Plans and field visits from outside the workflow, on the time-skipping test
server with a running worker: the repayment page's plan offers, keypad 2 on a
call, the field team's visit reports (notes in the database, never in
Temporal), and `starter.py update` / `starter.py visit`.

Requests go through httpx's ASGI transport in the test's event loop; the
command line runs as a real process against the same test server.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import sys
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
from sqlalchemy import select

import services.visits
from db.models import AgentTask, Contact, FieldVisitRecord, InboundMessage
from dunning.pay_options import loan_today, nothing_to_pay, offer_proposal, plan_offers, running_plan
from gateway.app import create_app
from loaders.config_files import load_policy
from tests.conftest import BORROWER
from tests.support.gateway import gateway_settings, keyed, loan_status_when, twilio_signed
from tests.support.pay_links import mint_pay_link, plan_form
from tests.support.temporal import PLACELESS_PHONE, running_worker, overdue_since, time_env, zone_where_it_is  # noqa: F401 (fixture)

ROOT = Path(__file__).resolve().parent.parent
FIELD_TOKEN = "field-team-test-token"
# Field visits from day 10 (so a loan placed at day 11 gets one at once).
VISITS_POLICY = """extends = "default"
name = "visits"
[field_visits]
enabled = true
from_day = 10
every_days = 30
"""
NOTES = "NOTE-7Q3Z: 借款人邻居说他下周回来, spoke at the gate"


@pytest.fixture
def core(settings, tmp_path, monkeypatch):
    """Settings with a config/ copy holding the `visits` policy, and the field token."""
    config = tmp_path / "config"
    shutil.copytree(ROOT / "config", config)
    (config / "policies" / "visits.toml").write_text(VISITS_POLICY, encoding="utf-8")
    monkeypatch.setenv("DUNNING_CONFIG_DIR", str(config))
    monkeypatch.setenv("DUNNING_FIELD_API_TOKEN", FIELD_TOKEN)
    return settings.model_copy(update={"config_dir": config, "field_api_token": FIELD_TOKEN})


@pytest.fixture
async def gateway(time_env, core, tmp_path):
    async with running_worker(time_env.client, core) as loans:
        app = create_app(core.model_copy(update={"task_queue": loans.task_queue}), lambda: time_env.client, gateway_settings(tmp_path))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver", headers=keyed(app)) as http:
            yield http, loans
        await time_env.sleep(timedelta(seconds=1))


def record(loan_id: str, due: date, policy: str = "default", zone: str = BORROWER["time_zone"]) -> dict:
    return {
        "loan_id": loan_id, "borrower_id": BORROWER["borrower_id"], "amount_due": "1200.00", "currency": "CNY",
        "due_date": due.isoformat(), "policy": policy,
        # A zone picked by the clock comes with a number of no place of its own.
        "borrower": {k: v for k, v in BORROWER.items() if k != "borrower_id"} | {"time_zone": zone}
        | ({"phone": PLACELESS_PHONE} if zone != BORROWER["time_zone"] else {}),
    }


async def place(http, loans, time_env, loan_id: str, days: int, policy: str = "default") -> date:
    # A borrower for whom it is noon now, whatever the hour of the run: the
    # plan confirmations these tests wait for go out at once.
    zone = await zone_where_it_is(time_env, 12)
    due = await overdue_since(time_env, days, zone)
    response = await http.post("/loans/overdue", json=record(loan_id, due, policy, zone))
    assert response.status_code == 201, response.text
    loans.handles.append(loans.client.get_workflow_handle(response.json()["workflow_id"]))  # terminated at the end
    return due


async def status_when(http, time_env, loan_id: str, condition, tries: int = 40) -> dict:
    return await loan_status_when(http, time_env, loan_id, condition, tries)


def today_of(status: dict) -> date:
    return date.fromisoformat(status["due_date"]) + timedelta(days=status["days_past_due"])


def expired_token(sessions, loan_id: str) -> str:
    return mint_pay_link(sessions, loan_id, key=f"{loan_id}/long-ago", age_days=40).rsplit("/", 1)[1]


async def post_plan(http, token: str, offer: str | None):
    """The plan form as the borrower's browser posts it (the page's CSRF field and cookie)."""
    data, cookies = plan_form(token, "" if offer is None else offer)
    if offer is None:
        del data["offer"]
    http.cookies.clear()
    for name, value in cookies.items():
        http.cookies.set(name, value, path="/pay/")
    return await http.post(f"/pay/{token}/plan", data=data)


def history_text(history) -> str:
    """The history as JSON, with every payload's bytes decoded too (payloads are
    base64 in the JSON form; decoded JSON is read back without ASCII escapes)."""
    raw = history.to_json()
    decoded = []

    def walk(node) -> None:
        if isinstance(node, dict):
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
        elif isinstance(node, str) and len(node) >= 4:
            try:
                text = base64.b64decode(node, validate=True).decode("utf-8")
            except ValueError:
                return
            decoded.append(text)
            try:
                decoded.append(json.dumps(json.loads(text), ensure_ascii=False))
            except ValueError:
                pass

    walk(json.loads(raw))
    return raw + "\n" + "\n".join(decoded)


# ------------------------------------------------------------------ the pay page


async def test_the_pay_page_offers_the_policys_plans_and_one_click_sets_one_up(gateway, time_env, session_factory):
    http, loans = gateway
    await place(http, loans, time_env, "L-PP-1", days=16)
    status = await status_when(http, time_env, "L-PP-1", lambda s: s.get("stage") == "negotiation")
    today = today_of(status)
    link = mint_pay_link(session_factory, "L-PP-1")
    token = link.rsplit("/", 1)[1]

    page = await http.get(link)
    assert page.status_code == 200
    assert page.text.count("Choose this plan") == 2
    assert f'action="{token}/plan"' in page.text and 'name="offer" value="0"' in page.text and 'name="offer" value="1"' in page.text
    first_due = today + timedelta(days=7)
    assert "3 instalments</strong>, every 30 days, 1200.00 CNY" in page.text
    assert "6 instalments</strong>, every 30 days, 1200.00 CNY" in page.text
    assert "late fees waived" not in page.text  # nothing to waive on this loan
    assert f"<td>{first_due.isoformat()}</td><td>400.00 CNY</td>" in page.text
    assert f"<td>{(first_due + timedelta(days=150)).isoformat()}</td><td>200.00 CNY</td>" in page.text
    assert BORROWER["name"] not in page.text and BORROWER["phone"] not in page.text

    # Unknown, altered or expired tokens choose nothing (410); a bad offer is a 422.
    assert (await post_plan(http, f"{token[:-2]}xx", "0")).status_code == 410
    assert (await post_plan(http, expired_token(session_factory, "L-PP-1"), "0")).status_code == 410
    for bad in ("7", "-1", "x", None):
        assert (await post_plan(http, token, bad)).status_code == 422, bad
    assert (await http.get("/loans/L-PP-1")).json()["plan"] is None

    chosen = await post_plan(http, token, "0")
    assert chosen.status_code == 200, chosen.text
    assert "Your instalment plan is set" in chosen.text and f"<td>{first_due.isoformat()}</td><td>400.00 CNY</td>" in chosen.text

    shown = (await http.get("/loans/L-PP-1")).json()["plan"]
    assert shown["status"] == "active" and shown["total"] == "1200.00"
    assert [(i["due_date"], i["amount"]) for i in shown["installments"]] == [
        (first_due.isoformat(), "400.00"),
        ((first_due + timedelta(days=30)).isoformat(), "400.00"),
        ((first_due + timedelta(days=60)).isoformat(), "400.00"),
    ]

    # A second click: the workflow's rejection, as a 409 page; the page now shows the plan.
    again = await post_plan(http, token, "1")
    assert again.status_code == 409 and "plan: plan 1 is already running" in again.text
    page = await http.get(link)
    assert "An instalment plan is in place" in page.text and "Choose this plan" not in page.text
    status = await status_when(http, time_env, "L-PP-1", lambda s: any(c["template"] == "plan_confirmation" for c in s["contacts"]))
    assert [c["channel"] for c in status["contacts"] if c["template"] == "plan_confirmation"] == ["sms"]


async def test_the_pay_pages_this_is_wrong_form_holds_the_loan_and_its_verification_task_opens(gateway, time_env, session_factory):
    """Issue 17: the form raises `dispute` with its reason category; the
    workflow holds the loan and opens one dispute_verification task; the
    note stays in the database, never in Temporal."""
    http, loans = gateway
    await place(http, loans, time_env, "L-PP-DISP", days=3)
    token = mint_pay_link(session_factory, "L-PP-DISP").rsplit("/", 1)[1]
    assert f'action="{token}/dispute"' in (await http.get(f"/pay/{token}")).text
    data, cookies = plan_form(token, "0")
    del data["offer"]
    http.cookies.clear()
    for name, value in cookies.items():
        http.cookies.set(name, value, path="/pay/")
    note = "NOTE-DSP-4411: 我已经在11月3日还了300元"
    for _ in range(2):  # a second click raises no second dispute (nor a second task)
        done = await http.post(f"/pay/{token}/dispute", data={**data, "reason": "already_paid", "note": note})
        assert done.status_code == 200, done.text

    status = await status_when(http, time_env, "L-PP-DISP", lambda s: s["disputed"] and s["open_tasks"])
    assert [t["kind"] for t in status["open_tasks"]] == ["dispute_verification"]
    with session_factory() as db:
        found = db.scalars(select(AgentTask).where(AgentTask.loan_id == "L-PP-DISP")).all()
        kept = db.scalars(select(InboundMessage).where(InboundMessage.channel == "pay_page")).all()
    assert [(t.kind, t.status) for t in found] == [("dispute_verification", "open")]
    assert [(m.category, m.body) for m in kept] == [("already_paid", note)] * 2
    history = history_text(await loans.client.get_workflow_handle("dunning-L-PP-DISP").fetch_history())
    assert "pay_page:already_paid" in history and "NOTE-DSP-4411" not in history and "11月3日" not in history
    signalled = [e.workflow_execution_signaled_event_attributes.signal_name
                 for e in (await loans.client.get_workflow_handle("dunning-L-PP-DISP").fetch_history()).events
                 if e.HasField("workflow_execution_signaled_event_attributes")]
    assert signalled == ["dispute"]


def test_the_pay_pages_offers_are_the_workflows_arithmetic_on_the_status():
    """dunning/pay_options.py, without a server: the balance less what an
    offer waives, the cents on the first installment, from the loan's today."""
    policy = load_policy("default", ROOT / "config" / "policies")
    status = {"loan_id": "L-PO", "stage": "negotiation", "outstanding": "1000.01", "fees": "30.00", "interest": "0.00",
              "currency": "CNY", "due_date": "2026-11-01", "days_past_due": 16, "plan": None}
    today = loan_today(status)
    assert today == date(2026, 11, 17)
    assert offer_proposal(policy.plans.offers[0], today) == {
        "installments": 3, "first_due_date": "2026-11-24", "interval_days": 30, "waive_fees": False, "waive_interest": False,
    }

    three, six = plan_offers(policy, status, today)
    assert (three.index, three.total, three.waive_fees) == (0, "1000.01", False)
    assert [(i.number, i.due_date, i.amount) for i in three.installments] == [
        (1, "2026-11-24", "333.35"), (2, "2026-12-24", "333.33"), (3, "2027-01-23", "333.33"),
    ]
    assert (six.index, six.total, six.waive_fees, six.waive_interest) == (1, "970.01", True, False)
    assert [i.amount for i in six.installments] == ["161.71"] + ["161.66"] * 5

    for change in ({"paused": True}, {"disputed": True}, {"open_complaints": 1}, {"plan": {"status": "active"}},
                   {"outstanding": "0.00"}, {"stage": "closed"}):
        assert plan_offers(policy, status | change, today) == [], change
    assert nothing_to_pay(status | {"stage": "closed"}) and nothing_to_pay(status | {"outstanding": "0.00"})
    assert running_plan(status | {"plan": {"status": "active"}}) == {"status": "active"} and running_plan(status) is None
    assert loan_today({"due_date": "soon"}) is None


# ------------------------------------------------------------------ keypad 2


async def test_keypad_2_on_a_call_sets_up_the_first_plan_offer_and_says_so_in_the_borrowers_language(gateway, time_env, session_factory):
    http, loans = gateway
    await place(http, loans, time_env, "L-IVR-2", days=9)
    status = await status_when(http, time_env, "L-IVR-2", lambda s: s.get("days_past_due") is not None)
    today = today_of(status)
    with session_factory.begin() as db:  # the call's outbox row, as send_contact writes it
        db.add(Contact(key="dunning-L-IVR-2/run/call/d8/0-voice", workflow_id="dunning-L-IVR-2", loan_id="L-IVR-2",
                       borrower_id="B-77", stage="call", channel="voice", template="call_script", language="zh_CN",
                       status="sent", provider="twilio"))
    path = "/webhooks/twilio/gather?" + urlencode({"key": "dunning-L-IVR-2/run/call/d8/0-voice"})
    params = {"CallSid": "CA-IVR", "Digits": "2"}

    response = await http.post(path, data=params, headers=twilio_signed(path, params))
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/xml")
    assert "已为您设立分期还款计划" in response.text and "短信" in response.text and 'language="zh-CN"' in response.text
    plan = (await http.get("/loans/L-IVR-2")).json()["plan"]
    assert plan["status"] == "active" and len(plan["installments"]) == 3
    assert plan["installments"][0]["due_date"] == (today + timedelta(days=7)).isoformat()

    # Pressed again: no second plan; an agent calls back.
    response = await http.post(path, data=params, headers=twilio_signed(path, params))
    assert response.status_code == 200 and "无法为您设立" in response.text and "客服将回电" in response.text
    status = await status_when(http, time_env, "L-IVR-2", lambda s: any(c["template"] == "plan_confirmation" for c in s["contacts"]))
    with session_factory() as db:
        sms = db.scalar(select(Contact).where(Contact.loan_id == "L-IVR-2", Contact.template == "plan_confirmation"))
    assert sms.channel == "sms" and "400" in sms.body_text

    # A call the gateway cannot tie to a loan: no plan, an agent calls back (English).
    path = "/webhooks/twilio/gather?" + urlencode({"language": "en"})
    response = await http.post(path, data=params, headers=twilio_signed(path, params))
    assert response.status_code == 200 and "could not set up a repayment plan" in response.text


# ------------------------------------------------------------------ field visits


async def visit_of(http, time_env, loan_id: str) -> dict:
    status = await status_when(http, time_env, loan_id, lambda s: s.get("field_visits"))
    return status["field_visits"][0]


def report(visit_id: str, body, token: str | None = FIELD_TOKEN, http=None):
    # token=None: no credentials at all (an empty header overrides the client's default key).
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {"Authorization": ""}
    return http.post(f"/visits/{visit_id}/report", json=body, headers=headers)


def stored_notes(session_factory, visit_id: str) -> str | None:
    with session_factory() as db:
        return db.scalar(select(FieldVisitRecord.notes).where(FieldVisitRecord.visit_id == visit_id))


async def test_a_field_visit_report_records_ids_in_the_workflow_and_the_notes_only_in_the_database(
    gateway, time_env, session_factory
):
    http, loans = gateway
    await place(http, loans, time_env, "L-FV-1", days=11, policy="visits")
    visit = await visit_of(http, time_env, "L-FV-1")
    visit_id = visit["visit_id"]
    good = {"outcome": "met", "staff_ids": ["S-1", "S-2"], "notes": NOTES}

    # Not the field team: refused before anything is read.
    assert (await report(visit_id, good, token=None, http=http)).status_code == 401
    assert (await report(visit_id, good, token="guess", http=http)).status_code == 401
    # One staff member where the cn profile needs two: rejected, nothing stored.
    alone = await report(visit_id, {**good, "staff_ids": ["S-1", "S-1"]}, http=http)
    assert alone.status_code == 409 and "staff_ids: a field visit needs 2 different staff" in alone.json()["detail"]
    assert stored_notes(session_factory, visit_id) is None
    # Unknown visit, bad fields.
    assert (await report("L-FV-1-V9", good, http=http)).status_code == 404
    for body, field in (({**good, "outcome": "gone"}, "outcome"), ({**good, "staff_ids": []}, "staff_ids"),
                        ({**good, "staff_ids": ["bad id!"]}, "staff_ids"),
                        ({**good, "promise": {"amount": "10.00"}}, "promise")):
        response = await report(visit_id, body, http=http)
        assert response.status_code == 422, body
        assert response.json()["detail"][0]["loc"][:2] == ["body", field], response.text

    accepted = await report(visit_id, good, http=http)
    assert accepted.status_code == 200 and accepted.json() == {"visit_id": visit_id, "outcome": "met"}
    assert stored_notes(session_factory, visit_id) == NOTES
    # The same report again (a retry whose answer was lost): the same answer, nothing twice.
    again = await report(visit_id, good, http=http)
    assert again.status_code == 200 and again.json() == {"visit_id": visit_id, "outcome": "met", "duplicate": True}
    # A different report for the done visit is rejected and the notes stay as they were.
    other = await report(visit_id, {**good, "outcome": "refused", "notes": "other"}, http=http)
    assert other.status_code == 409 and "already reported" in other.json()["detail"]
    assert stored_notes(session_factory, visit_id) == NOTES

    status = await status_when(http, time_env, "L-FV-1", lambda s: s["field_visits"][0]["status"] == "done")
    assert status["field_visits"][0]["outcome"] == "met"
    with session_factory() as db:
        row = db.scalar(select(FieldVisitRecord).where(FieldVisitRecord.visit_id == visit_id))
    assert (row.status, row.outcome, json.loads(row.staff_ids)) == ("done", "met", ["S-1", "S-2"])
    history = history_text(await loans.client.get_workflow_handle("dunning-L-FV-1").fetch_history())
    # The update is there with its ids (payloads decoded: "S-2" is only inside them) ...
    assert "record_visit" in history and visit_id in history and '"staff_ids": ["S-1", "S-2"]' in history
    # ... and the notes are not, in any form.
    for secret in ("NOTE-7Q3Z", "借款人邻居", "spoke at the gate"):
        assert secret not in history


async def test_notes_whose_storing_failed_after_the_update_was_accepted_are_stored_by_the_retry(
    gateway, time_env, session_factory, monkeypatch
):
    http, loans = gateway
    await place(http, loans, time_env, "L-FV-2", days=11, policy="visits")
    visit_id = (await visit_of(http, time_env, "L-FV-2"))["visit_id"]
    good = {"outcome": "not_home", "staff_ids": ["S-3", "S-4"], "notes": NOTES}

    real_store = services.visits.store_notes

    def database_down(*args, **kwargs):
        raise ConnectionError("database is down")

    monkeypatch.setattr(services.visits, "store_notes", database_down)
    failed = await report(visit_id, good, http=http)
    assert failed.status_code == 503 and "send the report again" in failed.json()["detail"]
    assert stored_notes(session_factory, visit_id) is None
    assert (await http.get("/loans/L-FV-2")).json()["field_visits"][0]["status"] == "done"  # the workflow took it

    monkeypatch.setattr(services.visits, "store_notes", real_store)
    # Someone else's report for the visit does not get to attach its notes.
    wrong = await report(visit_id, {**good, "outcome": "met", "notes": "not these"}, http=http)
    assert wrong.status_code == 409 and stored_notes(session_factory, visit_id) is None
    retried = await report(visit_id, good, http=http)
    assert retried.status_code == 200 and retried.json()["duplicate"] is True
    assert stored_notes(session_factory, visit_id) == NOTES


async def test_field_reports_are_closed_when_no_token_is_configured(time_env, settings, tmp_path):
    app = create_app(settings.model_copy(update={"field_api_token": ""}), lambda: time_env.client, gateway_settings(tmp_path))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as http:
        response = await http.post("/visits/V-1/report", json={"outcome": "met", "staff_ids": ["S-1", "S-2"]},
                                   headers={"Authorization": "Bearer "})
    # Closed, and saying nothing about why (no "not configured"): a generic 401.
    assert response.status_code == 401 and response.json()["detail"] == "unauthorized"


# ------------------------------------------------------------------ the command line


async def starter(time_env, *args: str) -> tuple[int, str, str]:
    """`python starter.py ...` as a process, against the test server (the
    worker keeps running in this event loop meanwhile)."""
    env = {
        **os.environ,
        "TEMPORAL_ADDRESS": time_env.client.service_client.config.target_host,
        "TEMPORAL_NAMESPACE": time_env.client.namespace,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "starter.py", *args, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=90)
    return process.returncode, out.decode(), err.decode()


async def test_starter_update_prints_the_answer_or_the_rejection(gateway, time_env):
    http, loans = gateway
    await place(http, loans, time_env, "L-CLI-U", days=5)
    today = today_of(await status_when(http, time_env, "L-CLI-U", lambda s: s.get("days_past_due") is not None))
    promise = {"amount": "300.00", "by_date": (today + timedelta(days=5)).isoformat()}

    code, out, err = await starter(time_env, "update", "L-CLI-U", "promise_to_pay", json.dumps(promise))
    assert code == 0, err
    assert json.loads(out) == {"accepted": True, "promise_no": 1, "amount": "300.00", "by_date": promise["by_date"]}

    code, out, err = await starter(time_env, "update", "L-CLI-U", "propose_plan", json.dumps({"installments": 12, "first_due_date": promise["by_date"]}))
    assert code == 1 and out == "" and "propose_plan rejected: installments: at most 6 (plans.max_installments)" in err
    code, _, err = await starter(time_env, "update", "L-CLI-U", "record_visit", '{"visit_id": "V-1", "notes": "x"}')
    assert code == 2 and "notes: personal data never goes to Temporal" in err
    code, _, err = await starter(time_env, "update", "L-CLI-U", "no_such_update")
    assert code == 2 and "name: must be one of propose_plan" in err
    assert (await http.get("/loans/L-CLI-U")).json()["promise"]["status"] == "open"


async def test_starter_visit_reports_a_visit_with_its_notes_in_the_database_only(gateway, time_env, session_factory):
    http, loans = gateway
    await place(http, loans, time_env, "L-CLI-V", days=11, policy="visits")
    visit_id = (await visit_of(http, time_env, "L-CLI-V"))["visit_id"]

    code, _, err = await starter(time_env, "visit", visit_id, "met", "--staff", "S-1", "--notes", NOTES)
    assert code == 1 and "record_visit rejected: staff_ids: a field visit needs 2 different staff" in err
    assert stored_notes(session_factory, visit_id) is None
    code, _, err = await starter(time_env, "visit", visit_id, "promise", "--staff", "S-1", "--staff", "S-2", "--promise-amount", "600.00")
    assert code == 2 and "--promise-amount and --promise-by" in err

    code, out, err = await starter(time_env, "visit", visit_id, "met", "--staff", "S-1", "--staff", "S-2", "--notes", NOTES)
    assert code == 0, err
    assert json.loads(out) == {"visit_id": visit_id, "outcome": "met"}
    assert stored_notes(session_factory, visit_id) == NOTES
    code, _, err = await starter(time_env, "visit", "L-CLI-V-V9", "met", "--staff", "S-1", "--staff", "S-2")
    assert code == 1 and "no field visit 'L-CLI-V-V9'" in err
    history = history_text(await loans.client.get_workflow_handle("dunning-L-CLI-V").fetch_history())
    assert "NOTE-7Q3Z" not in history and "借款人邻居" not in history
