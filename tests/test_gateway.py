"""The gateway (gateway/app.py and its routers, gateway/routes/) on the time-skipping test server with a
running worker: placing loans, payments, Twilio and SendGrid webhooks, the
repayment page, and a property-based run against its own OpenAPI schema.

Requests go through httpx's ASGI transport, in the test's event loop, so the
gateway uses the test server's client directly.
"""

from __future__ import annotations

import json
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo
from urllib.parse import urlencode

import httpx
from werkzeug.wrappers import Response
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import delete

from tests.support.pay_links import mint_pay_link
from db.models import AgentTask, Contact, InboundMessage, PayToken
from loaders.config_files import load_policy
from gateway.app import ROUTERS, create_app
from gateway.payment_signature import sign_payment
from tests.conftest import BORROWER
from tests.support.gateway import PAYMENTS_SECRET, TWILIO_TOKEN, gateway_settings, keyed, loan_status_when, sendgrid_signed, twilio_signed
from tests.support.temporal import PLACELESS_PHONE, overdue_since, running_worker, time_env, zone_at_hour, zone_where_it_is  # noqa: F401 (fixture)


def record(loan_id: str, due_date, amount: str = "1200.00", zone: str = BORROWER["time_zone"]) -> dict:
    borrower = {k: v for k, v in BORROWER.items() if k != "borrower_id"} | {"time_zone": zone}
    if zone != BORROWER["time_zone"]:  # a zone picked by the clock: a number of no place of its own
        borrower["phone"] = PLACELESS_PHONE
    return {
        "loan_id": loan_id,
        "borrower_id": BORROWER["borrower_id"],
        "amount_due": amount,
        "currency": "CNY",
        "due_date": due_date.isoformat(),
        "policy": "default",
        "borrower": borrower,
    }


def payment_body(loan_id: str, payment_id: str, amount: str) -> bytes:
    return json.dumps(
        {"loan_id": loan_id, "payment_id": payment_id, "amount": amount, "currency": "CNY", "paid_at": "2026-11-05T10:00:00+08:00"}
    ).encode()


@pytest.fixture
async def gateway(time_env, settings, tmp_path):
    """(http client, loans on a running worker) with the gateway on that worker's task queue."""
    async with running_worker(time_env.client, settings) as loans:
        core = settings.model_copy(update={"task_queue": loans.task_queue})
        app = create_app(core, lambda: time_env.client, gateway_settings(tmp_path))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver", headers=keyed(app)) as http:
            yield http, loans
        # Let the work the last signals caused finish while the worker is up: a
        # task in flight when its workflow is terminated holds up the test
        # server's clock for the next test.
        await time_env.sleep(timedelta(seconds=1))


async def placement(time_env, loan_id: str, days: int = 2, hour: int = 12) -> dict:
    """A loan `days` past due for a borrower in whose zone it is now `hour`
    o'clock on the server's clock: noon unless a test says otherwise, so that
    the contact window is open whatever the hour of the run."""
    zone = await zone_where_it_is(time_env, hour)
    return record(loan_id, await overdue_since(time_env, days, zone), zone=zone)


async def place(http, loans, time_env, loan_id: str, days: int = 2, hour: int = 12, body: dict | None = None) -> dict:
    """Place it (`body`, or a fresh `placement`) and expect 201."""
    response = await http.post("/loans/overdue", json=body or await placement(time_env, loan_id, days, hour))
    assert response.status_code == 201, response.text
    loans.handles.append(loans.client.get_workflow_handle(response.json()["workflow_id"]))  # terminated at the end
    return response.json()


async def status_when(http, time_env, loan_id: str, condition, tries: int = 20) -> dict:
    return await loan_status_when(http, time_env, loan_id, condition, tries)


async def test_placing_a_loan_twice_starts_one_run_and_its_status_is_readable(gateway, time_env):
    http, loans = gateway
    # The same record twice (computed once: a second computation could cross
    # an hour and pick another zone, which is another borrower's details).
    body = await placement(time_env, "L-GW-1")
    first = await place(http, loans, time_env, "L-GW-1", body=body)
    again = await place(http, loans, time_env, "L-GW-1", body=body)

    assert first["workflow_id"] == "dunning-L-GW-1" and first["started"] is True
    assert again["started"] is False and again["run_id"] == first["run_id"]
    status = await status_when(http, time_env, "L-GW-1", lambda s: s.get("stage") == "reminder")
    assert status["loan_id"] == "L-GW-1" and status["outstanding"] == "1200.00"
    assert (await http.get("/loans/L-NO-SUCH")).status_code == 404


async def test_a_bad_placement_is_a_422_naming_the_field(gateway):
    http, _ = gateway
    bad = record("L-GW-BAD", date(2026, 1, 1), amount="12.345")
    response = await http.post("/loans/overdue", json=bad)
    assert response.status_code == 422
    assert ["body", "amount_due"] in [e["loc"] for e in response.json()["detail"]]
    del bad["borrower"]["phone"], bad["borrower"]["email"]
    bad["amount_due"] = "12.34"
    response = await http.post("/loans/overdue", json=bad)
    assert response.status_code == 422 and response.json()["detail"][0]["loc"][:2] == ["body", "borrower"]


async def test_a_signed_payment_ends_the_loan_repaid_and_a_redelivery_does_not_signal_again(gateway, time_env):
    http, loans = gateway
    await place(http, loans, time_env, "L-GW-PAY")
    body = payment_body("L-GW-PAY", "P-GW-1", "1200.00")
    headers = {"X-Dunning-Signature": sign_payment(PAYMENTS_SECRET, body), "Content-Type": "application/json"}

    first = await http.post("/payments", content=body, headers=headers)
    second = await http.post("/payments", content=body, headers=headers)

    assert first.status_code == 202 and first.json()["signaled"] is True
    assert second.status_code == 202 and second.json()["signaled"] is False
    result = await loans.client.get_workflow_handle("dunning-L-GW-PAY").result()
    assert result["outcome"] == "repaid" and result["amount_paid"] == "1200.00"


async def test_unsigned_forged_or_stale_payments_are_refused_and_never_signaled(gateway, time_env):
    http, loans = gateway
    await place(http, loans, time_env, "L-GW-FORGE")
    body = payment_body("L-GW-FORGE", "P-GW-2", "100.00")
    forged = sign_payment("not-the-secret", body)
    stale = sign_payment(PAYMENTS_SECRET, body, timestamp=int(time.time()) - 600)
    tampered = sign_payment(PAYMENTS_SECRET, body).replace("v1=", "v1=0")

    for headers in ({}, {"X-Dunning-Signature": forged}, {"X-Dunning-Signature": stale},
                    {"X-Dunning-Signature": tampered}, {"X-Dunning-Signature": "garbage"}):
        response = await http.post("/payments", content=body, headers=headers)
        assert response.status_code == 401, headers
    other_body = payment_body("L-GW-FORGE", "P-GW-2", "1200.00")  # signed body swapped for another
    response = await http.post("/payments", content=other_body, headers={"X-Dunning-Signature": sign_payment(PAYMENTS_SECRET, body)})
    assert response.status_code == 401

    await time_env.sleep(timedelta(seconds=30))
    status = (await http.get("/loans/L-GW-FORGE")).json()
    assert status["amount_paid"] == "0.00" and status["unapplied_payments"] == []


async def test_a_malformed_payment_is_a_422_naming_the_field(gateway):
    http, _ = gateway
    for payload, field in (
        ({"loan_id": "L-1", "payment_id": "P-1", "amount": "1.234", "currency": "CNY"}, "amount"),
        ({"loan_id": "L-1", "payment_id": "P-1", "amount": "1.00", "currency": "cny"}, "currency"),
        ({"loan_id": "L-1", "amount": "1.00", "currency": "CNY"}, "payment_id"),
        ({"loan_id": "L-1", "payment_id": "P-1", "amount": "1.00", "currency": "CNY", "paid_at": "yesterday"}, "paid_at"),
    ):
        body = json.dumps(payload).encode()
        response = await http.post("/payments", content=body, headers={"X-Dunning-Signature": sign_payment(PAYMENTS_SECRET, body)})
        assert response.status_code == 422, response.text
        assert ["body", field] in [e["loc"] for e in response.json()["detail"]], response.text


async def test_an_inbound_stop_opts_the_borrowers_loans_out_of_sms_and_other_replies_are_kept(gateway, time_env, session_factory):
    http, loans = gateway
    await place(http, loans, time_env, "L-GW-STOP")  # a borrower in a zone picked by the clock: PLACELESS_PHONE
    params = {"MessageSid": "SM-1", "From": PLACELESS_PHONE, "Body": " stop "}

    response = await http.post("/webhooks/twilio/inbound", data=params, headers=twilio_signed("/webhooks/twilio/inbound", params))
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/xml")
    status = await status_when(http, time_env, "L-GW-STOP", lambda s: s.get("opted_out"))
    assert status["opted_out"] == ["sms"]

    reply = {"MessageSid": "SM-2", "From": PLACELESS_PHONE, "Body": "I will pay on Friday"}
    response = await http.post("/webhooks/twilio/inbound", data=reply, headers=twilio_signed("/webhooks/twilio/inbound", reply))
    assert response.status_code == 200
    # Kept in the database for an agent, with a task pointing at it (issue 17).
    with session_factory() as db:
        kept = db.query(InboundMessage).filter_by(message_key="SM-2").one()
        task = db.query(AgentTask).filter_by(kind="inbound_request").one()
    assert kept.body == "I will pay on Friday" and json.loads(kept.loan_ids) == ["L-GW-STOP"]
    assert (task.subject, task.loan_id) == (f"inbound:{kept.id}", "L-GW-STOP")


async def test_forged_or_missing_twilio_signatures_are_403(gateway):
    http, _ = gateway
    params = {"MessageSid": "SM-3", "From": BORROWER["phone"], "Body": "STOP"}
    for headers in ({}, twilio_signed("/webhooks/twilio/inbound", params, token="wrong-token"),
                    twilio_signed("/webhooks/twilio/elsewhere", params)):  # signed for another URL
        for path in ("/webhooks/twilio/inbound", "/webhooks/twilio/status", "/webhooks/twilio/gather"):
            assert (await http.post(path, data=params, headers=headers)).status_code == 403


@pytest.mark.both_databases  # writes outbox rows without starting loans
async def test_twilio_status_callbacks_update_the_outbox_row_and_the_keypad_answers_twiml(gateway, session_factory):
    http, _ = gateway
    with session_factory.begin() as db:
        for key, channel in (("k-sms", "sms"), ("k-call", "voice")):
            db.add(Contact(key=key, workflow_id="dunning-L-X", loan_id="L-X", borrower_id="B-77", stage="reminder",
                           channel=channel, template="t", language="en", status="sent", provider="twilio"))
    path = "/webhooks/twilio/status?" + urlencode({"key": "k-sms"})
    params = {"MessageSid": "SM-9", "MessageStatus": "undelivered", "ErrorCode": "30003"}
    assert (await http.post(path, data=params, headers=twilio_signed(path, params))).status_code == 204
    path = "/webhooks/twilio/status?" + urlencode({"key": "k-call"})
    params = {"CallSid": "CA-9", "CallStatus": "no-answer"}
    assert (await http.post(path, data=params, headers=twilio_signed(path, params))).status_code == 204
    with session_factory() as db:
        sms = db.query(Contact).filter_by(key="k-sms").one()
        call = db.query(Contact).filter_by(key="k-call").one()
    # A sent row never moves back: the late undelivered report is kept as its error.
    assert (sms.status, sms.error, sms.provider_message_id) == ("sent", "twilio sms undelivered (error 30003)", "SM-9")
    assert (call.status, call.error) == ("sent", "twilio call no-answer")  # an attempt: still counts towards call caps

    for digits, words in (("1", "text message"), ("2", "promise to pay"), ("3", "dispute")):
        params = {"CallSid": "CA-9", "Digits": digits}
        response = await http.post("/webhooks/twilio/gather", data=params, headers=twilio_signed("/webhooks/twilio/gather", params))
        assert response.status_code == 200 and response.headers["content-type"].startswith("application/xml")
        assert response.text.startswith("<?xml") and "<Say" in response.text and words in response.text


async def test_keypad_3_on_a_call_opens_one_callback_task_and_says_when(gateway, session_factory):
    """Issue 17: "an agent will call you back" is work for a person, not words
    dropped: one callback task per call, however often Twilio retries."""
    http, _ = gateway
    with session_factory.begin() as db:
        db.add(Contact(key="k-call-3", workflow_id="dunning-L-K3", loan_id="L-K3", borrower_id="B-77", stage="call",
                       channel="voice", template="call_script", language="en", status="sent", provider="twilio"))
    path = "/webhooks/twilio/gather?" + urlencode({"key": "k-call-3"})
    params = {"CallSid": "CA-K3", "Digits": "3"}
    for _ in range(2):  # Twilio retries the same request
        response = await http.post(path, data=params, headers=twilio_signed(path, params))
        assert response.status_code == 200 and "within one working day" in response.text
    with session_factory() as db:
        tasks = db.query(AgentTask).filter_by(loan_id="L-K3").all()
    assert [(t.kind, t.status, t.borrower_id, t.workflow_id) for t in tasks] == [("callback", "open", "B-77", "dunning-L-K3")]
    assert tasks[0].key == "dunning-L-K3/task/callback/CA-K3"


async def test_a_sendgrid_unsubscribe_opts_the_loan_out_of_email_and_a_forged_event_is_403(gateway, time_env, session_factory):
    http, loans = gateway
    await place(http, loans, time_env, "L-GW-MAIL")
    with session_factory.begin() as db:
        db.add(Contact(key="dunning-L-GW-MAIL/test-email", workflow_id="dunning-L-GW-MAIL", loan_id="L-GW-MAIL",
                       borrower_id="B-77", stage="reminder", channel="email", template="t", language="zh_CN", status="sent"))
    events = json.dumps([
        {"event": "unsubscribe", "dunning_key": "dunning-L-GW-MAIL/test-email", "sg_event_id": "e-1", "timestamp": 1},
        {"event": "open", "dunning_key": "unknown-key"},
    ])
    forger = ec.generate_private_key(ec.SECP256R1())

    assert (await http.post("/webhooks/sendgrid/events", content=events, headers=sendgrid_signed(events, key=forger))).status_code == 403
    assert (await http.post("/webhooks/sendgrid/events", content=events, headers={"Content-Type": "application/json"})).status_code == 403
    tampered = sendgrid_signed(events)
    assert (await http.post("/webhooks/sendgrid/events", content=events.replace("e-1", "e-2"), headers=tampered)).status_code == 403
    assert (await http.get("/loans/L-GW-MAIL")).json()["opted_out"] == []

    response = await http.post("/webhooks/sendgrid/events", content=events, headers=sendgrid_signed(events))
    assert response.status_code == 200 and response.json() == {"processed": 1, "opted_out": 1}
    status = await status_when(http, time_env, "L-GW-MAIL", lambda s: s.get("opted_out"))
    assert status["opted_out"] == ["email"]


async def test_the_pay_page_shows_the_amount_and_refuses_forged_or_expired_links(gateway, time_env, session_factory):
    http, loans = gateway
    await place(http, loans, time_env, "L-GW-LINK", days=5)
    link = mint_pay_link(session_factory, "L-GW-LINK")

    await status_when(http, time_env, "L-GW-LINK", lambda s: s.get("days_past_due") is not None)
    page = await http.get(link)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "1200.00" in page.text and "CNY" in page.text and "5 days past due" in page.text
    assert 'href="https://lender.example/pay?handoff=' in page.text and "loan=L-GW-LINK" not in page.text
    # The "this is wrong" form is the page's own (issue 17), not a link out.
    assert "instalment plan" in page.text and "This is wrong" in page.text and "/dispute" in page.text
    assert BORROWER["name"] not in page.text and BORROWER["phone"] not in page.text

    token = link.rsplit("/", 1)[1]
    # Unknown (made with another secret, or altered) and expired links: all 410, alike.
    forged = mint_pay_link(session_factory, "L-GW-LINK", key="forged", secret="another-secret").rsplit("/", 1)[1]
    with session_factory.begin() as db:
        db.execute(delete(PayToken).where(PayToken.contact_key == "forged"))
    assert (await http.get(f"/pay/{forged}")).status_code == 410
    assert (await http.get(f"/pay/{token[:-2]}xx")).status_code == 410

    expired = mint_pay_link(session_factory, "L-GW-LINK", key="long-ago", age_days=40).rsplit("/", 1)[1]
    response = await http.get(f"/pay/{expired}")
    assert response.status_code == 410 and "expired" in response.text


@pytest.mark.both_databases  # writes outbox rows without starting loans
def test_no_input_from_the_openapi_schema_makes_a_500(settings, tmp_path):
    """Schemathesis against the gateway's own schema, Temporal unreachable (503
    there): every other answer is a 2xx or a 4xx, never a 500."""
    import schemathesis
    from hypothesis import HealthCheck, given
    from hypothesis import settings as hypothesis_settings

    def no_temporal():
        raise ConnectionError("no Temporal in this test")

    app = create_app(settings, no_temporal, gateway_settings(tmp_path, docs=True))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    served = [(method, route.path) for router in ROUTERS for route in router.routes if route.include_in_schema
              for method in route.methods]
    assert sorted((operation.method.upper(), operation.path) for operation in operations) == sorted(served)

    for operation in operations:

        @given(case=operation.as_strategy())
        @hypothesis_settings(max_examples=30, deadline=None, database=None,
                             suppress_health_check=list(HealthCheck))
        def check(case) -> None:
            response = case.call()
            if response.status_code == 500 or (response.status_code >= 500 and response.status_code != 503):
                failures.append(f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:200]}")

        check()
    assert failures == []


async def test_a_calls_outcome_reaches_the_workflow_so_caps_count_real_conversations(gateway, time_env, session_factory):
    http, loans = gateway
    await place(http, loans, time_env, "L-GW-CALL", days=8)
    status = await status_when(
        http, time_env, "L-GW-CALL", lambda s: any(c["channel"] == "voice" for c in s.get("contacts", [])), tries=100
    )
    with session_factory() as db:
        key = db.query(Contact).filter_by(loan_id="L-GW-CALL", channel="voice").one().key
    path = "/webhooks/twilio/status?" + urlencode({"key": key})
    params = {"CallSid": "CA-77", "CallStatus": "completed", "AnsweredBy": "human"}
    assert (await http.post(path, data=params, headers=twilio_signed(path, params))).status_code == 204

    status = await status_when(
        http, time_env, "L-GW-CALL", lambda s: any(c["result"] == "answered" for c in s["contacts"])
    )
    [call] = [c for c in status["contacts"] if c["channel"] == "voice"]
    assert call["result"] == "answered" and key.endswith(call["step"])

    await loans.handles[-1].signal("contact_outcome", {"step": "call/d99/0-voice", "result": "busy"})
    status = await status_when(http, time_env, "L-GW-CALL", lambda s: s["rejected_signals"])
    assert "no contact 'call/d99/0-voice' was sent" in status["rejected_signals"][0]["error"]


@pytest.mark.parametrize("local_hour", [3, 12], ids=["at-03h-local", "at-12h-local"])
async def test_a_loan_placed_at_night_is_called_in_the_morning_and_one_placed_at_noon_at_once(
    gateway, time_env, session_factory, local_hour
):
    """The same placement at two local hours of the borrower: at 03:00 the
    day's call waits for its time in the morning, at noon it goes at once;
    either way the call is inside the contact window and its outcome counts."""
    http, loans = gateway
    loan_id = f"L-GW-AT{local_hour:02d}"
    call_step = load_policy("default", Path(__file__).parent.parent / "config" / "policies").stages.call.steps[0]
    await place(http, loans, time_env, loan_id, days=8, hour=local_hour)  # the call stage's first day
    placed = await status_when(http, time_env, loan_id, lambda s: s.get("stage") == "call")
    zone = ZoneInfo(placed["time_zone"])
    placed_at = (await time_env.get_current_time()).astimezone(zone)
    assert placed_at.hour == local_hour

    if local_hour < call_step.at.hour:
        assert not [c for c in placed["contacts"] if c["channel"] == "voice"], "no call in the night"
        wake = datetime.fromisoformat(placed["next_action_at"]).astimezone(zone)
        assert (wake.date(), wake.time()) == (placed_at.date(), call_step.at)
        await time_env.sleep(wake - await time_env.get_current_time())
    status = await status_when(http, time_env, loan_id, lambda s: any(c["channel"] == "voice" for c in s["contacts"]))
    [call] = [c for c in status["contacts"] if c["channel"] == "voice"]
    called_at = datetime.fromisoformat(call["at"]).astimezone(zone)
    assert called_at.date() == placed_at.date()
    assert called_at.hour == max(local_hour, call_step.at.hour)

    with session_factory() as db:
        key = db.query(Contact).filter_by(loan_id=loan_id, channel="voice").one().key
    path = "/webhooks/twilio/status?" + urlencode({"key": key})
    params = {"CallSid": f"CA-AT{local_hour}", "CallStatus": "completed", "AnsweredBy": "human"}
    assert (await http.post(path, data=params, headers=twilio_signed(path, params))).status_code == 204
    await status_when(http, time_env, loan_id, lambda s: any(c["result"] == "answered" for c in s["contacts"]))


def test_the_zone_trick_puts_the_servers_now_at_any_local_hour():
    for utc_hour in range(24):
        now = datetime(2026, 12, 3, utc_hour, 41, tzinfo=ZoneInfo("UTC"))
        for hour in range(24):
            local = now.astimezone(ZoneInfo(zone_at_hour(hour, now)))
            assert (local.hour, local.minute) == (hour, 41)


def test_twilio_call_statuses_map_to_the_contracts_outcomes():
    from gateway.routes.twilio import call_outcome

    assert call_outcome("completed", "human") == "answered"
    assert call_outcome("completed", "machine_end_beep") == "voicemail"
    assert call_outcome("completed", "fax") == "voicemail"
    assert (call_outcome("no-answer", ""), call_outcome("busy", ""), call_outcome("canceled", "")) == ("no_answer", "busy", "failed")
    assert call_outcome("in-progress", "") is None


async def test_a_call_answered_by_a_machine_is_ended_and_counts_as_voicemail(time_env, settings, tmp_path, session_factory, httpserver):
    hangups = []
    httpserver.expect_request("/2010-04-01/Accounts/AC" + "1" * 32 + "/Calls/CA-M1.json", method="POST").respond_with_handler(
        lambda request: (hangups.append(request.form.to_dict()), Response('{"sid": "CA-M1", "status": "completed"}', content_type="application/json"))[1]
    )
    async with running_worker(time_env.client, settings) as loans:
        core = settings.model_copy(update={
            "task_queue": loans.task_queue, "twilio_account_sid": "AC" + "1" * 32, "twilio_auth_token": TWILIO_TOKEN,
            "twilio_api_base_url": httpserver.url_for("").rstrip("/"),
        })
        app = create_app(core, lambda: time_env.client, gateway_settings(tmp_path))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver", headers=keyed(app)) as http:
            await place(http, loans, time_env, "L-GW-AMD", days=8)
            await status_when(http, time_env, "L-GW-AMD", lambda s: any(c["channel"] == "voice" for c in s.get("contacts", [])), tries=100)
            with session_factory() as db:
                key = db.query(Contact).filter_by(loan_id="L-GW-AMD", channel="voice").one().key
            path = "/webhooks/twilio/amd?" + urlencode({"key": key})
            params = {"CallSid": "CA-M1", "AnsweredBy": "machine_end_beep"}
            assert (await http.post(path, data=params, headers=twilio_signed(path, params))).status_code == 204
            status = await status_when(http, time_env, "L-GW-AMD", lambda s: any(c["result"] == "voicemail" for c in s["contacts"]))
        await time_env.sleep(timedelta(seconds=1))
    assert hangups == [{"Status": "completed"}]
    assert [c["result"] for c in status["contacts"] if c["channel"] == "voice"] == ["voicemail"]


async def test_pressing_1_on_a_call_sends_the_repayment_link_by_sms_through_the_workflow(gateway, time_env, session_factory):
    http, loans = gateway
    await place(http, loans, time_env, "L-GW-KEY1", days=8)
    await status_when(http, time_env, "L-GW-KEY1", lambda s: any(c["channel"] == "voice" for c in s.get("contacts", [])), tries=100)
    with session_factory() as db:
        key = db.query(Contact).filter_by(loan_id="L-GW-KEY1", channel="voice").one().key
    path = "/webhooks/twilio/gather?" + urlencode({"key": key, "language": "zh_CN"})
    params = {"CallSid": "CA-K1", "Digits": "1"}
    assert (await http.post(path, data=params, headers=twilio_signed(path, params))).status_code == 200

    status = await status_when(http, time_env, "L-GW-KEY1", lambda s: any(c["template"] == "pay_link" for c in s["contacts"]), tries=100)
    [sms] = [c for c in status["contacts"] if c["template"] == "pay_link"]
    assert sms["channel"] == "sms" and sms["result"] == "sent"
    with session_factory() as db:
        row = db.query(Contact).filter_by(loan_id="L-GW-KEY1", template="pay_link").one()
    assert "/pay/" in row.body_text and "回复TD退订" in row.body_text


async def test_a_replayed_webhook_never_signals_twice_even_to_another_gateway_process(gateway, time_env, settings, tmp_path):
    http, loans = gateway
    await place(http, loans, time_env, "L-GW-REPLAY")
    params = {"MessageSid": "SM-REPLAY", "From": PLACELESS_PHONE, "Body": "STOP"}
    headers = twilio_signed("/webhooks/twilio/inbound", params)
    assert (await http.post("/webhooks/twilio/inbound", data=params, headers=headers)).status_code == 200

    # A second gateway process (same database), as after a restart or behind a load balancer.
    core = settings.model_copy(update={"task_queue": loans.task_queue})
    other = create_app(core, lambda: time_env.client, gateway_settings(tmp_path))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=other), base_url="http://testserver") as http2:
        assert (await http2.post("/webhooks/twilio/inbound", data=params, headers=headers)).status_code == 200
    await status_when(http, time_env, "L-GW-REPLAY", lambda s: s.get("opted_out"))

    history = await loans.client.get_workflow_handle("dunning-L-GW-REPLAY").fetch_history()
    signals = [e for e in history.events if e.HasField("workflow_execution_signaled_event_attributes")]
    assert [e.workflow_execution_signaled_event_attributes.signal_name for e in signals] == ["opt_out"]


async def test_delivery_and_engagement_reports_show_on_the_loans_contacts(gateway, time_env, session_factory):
    http, loans = gateway
    await place(http, loans, time_env, "L-GW-OPEN", days=1)
    await status_when(http, time_env, "L-GW-OPEN", lambda s: len(s.get("contacts", [])) >= 3, tries=100)
    with session_factory() as db:
        email_key = db.query(Contact).filter_by(loan_id="L-GW-OPEN", channel="email").one().key
        sms_key = db.query(Contact).filter_by(loan_id="L-GW-OPEN", channel="sms").one().key
    events = json.dumps([{"event": "open", "dunning_key": email_key, "sg_event_id": "open-1", "timestamp": 1}])
    assert (await http.post("/webhooks/sendgrid/events", content=events, headers=sendgrid_signed(events))).status_code == 200
    path = "/webhooks/twilio/status?" + urlencode({"key": sms_key})
    params = {"MessageSid": "SM-OPEN", "MessageStatus": "delivered"}
    assert (await http.post(path, data=params, headers=twilio_signed(path, params))).status_code == 204

    status = await status_when(
        http, time_env, "L-GW-OPEN",
        lambda s: {c["channel"]: c["result"] for c in s["contacts"]}.get("email") == "opened"
        and {c["channel"]: c["result"] for c in s["contacts"]}.get("sms") == "delivered",
    )
    assert {c["channel"]: c["result"] for c in status["contacts"]}["push"] == "sent"


@pytest.mark.both_databases  # writes outbox rows without starting loans
async def test_a_callback_reconciles_a_message_whose_worker_died_before_recording_it(gateway, session_factory):
    http, _ = gateway
    with session_factory.begin() as db:
        for key, channel in (("dunning-L-Z/run/reminder/d1/0-sms", "sms"), ("dunning-L-Z/run/call/d8/0-voice", "voice")):
            db.add(Contact(key=key, workflow_id="dunning-L-Z", loan_id="L-Z", borrower_id="B-77", stage="reminder",
                           channel=channel, template="t", language="en", status="pending"))
    for key, params in (
        ("dunning-L-Z/run/reminder/d1/0-sms", {"MessageSid": "SM-LOST", "MessageStatus": "queued"}),
        ("dunning-L-Z/run/call/d8/0-voice", {"CallSid": "CA-LOST", "CallStatus": "ringing"}),
    ):
        path = "/webhooks/twilio/status?" + urlencode({"key": key})
        assert (await http.post(path, data=params, headers=twilio_signed(path, params))).status_code == 204
    with session_factory() as db:
        rows = {row.channel: row for row in db.query(Contact).filter_by(loan_id="L-Z")}
    # The retried send_contact finds these rows final and sends nothing again.
    assert (rows["sms"].status, rows["sms"].provider_message_id, rows["sms"].error) == ("sent", "SM-LOST", None)
    assert (rows["voice"].status, rows["voice"].provider_message_id, rows["voice"].error) == ("sent", "CA-LOST", None)
