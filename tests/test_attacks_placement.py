"""Issue 14, findings 1 and 2 (the placement half), replayed: placement never
silently changes what exists.

- Finding 1, the takeover: a loan placed for B-VICTIM, then a second loan
  posted for B-VICTIM with the attacker's phone and e-mail. The borrowers row
  was overwritten and the victim's next messages (with the pay token) went to
  the attacker. Now: 409 naming `phone` and `email`, never a value; the row
  unchanged; the victim's next message goes to the victim.
- Finding 2: a loan an operator had terminated, posted again with 99999.00
  due, was restarted with the new terms. Now: other terms are a 409 and the
  loan row is unchanged; the same terms leave the loan closed, no new run.
- Contact details change only through `PUT /borrowers/{id}/contact`
  (`borrowers:write`) and `starter.py borrower-contact`, audited with who and
  masked before/after values; the open loans' next message uses them.

The gateway runs in the test's process. Where no workflow needs to run, a
stand-in Temporal client fails the test if anything is started; the
terminated-loan and end-to-end takeover tests run on the time-skipping server.
"""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import ActivityEnvironment

from activities.dunning_activities import DunningActivities
from activities.payloads import ContactRequest
from activities.rendering import TemplateRenderer
from channels.local import LocalCaptureChannel
from db.audit import verify
from db.directory import PlacementConflict, upsert_placements
from db.models import AuditEntry, Borrower, Contact, Loan
from gateway.app import create_app
from runtime.worker_build import activity_settings
from services.contacts import ContactError, change_contact
from services.placement import validate_placements
from services.placing import CLOSED, Placing
from tests.support.gateway import api_key, bearer, gateway_settings, keyed
from tests.support.temporal import OTHER_PLACELESS_PHONE, PLACELESS_PHONE, overdue_since, running_worker, time_env, zone_where_it_is  # noqa: F401 (fixture)

pytestmark = pytest.mark.both_databases

PROJECT = Path(__file__).resolve().parent.parent
VICTIM = {"name": "王小明", "phone": "+8613800138000", "email": "victim@example.com", "language": "zh_CN",
          "time_zone": "Asia/Shanghai"}
ATTACKER = {"name": "王小明", "phone": "+8613999999999", "email": "attacker@evil.example", "language": "zh_CN",
            "time_zone": "Asia/Shanghai"}
NEW = {"phone": "+8613700137000", "email": "wang.new@example.com"}


def record(loan_id: str, borrower: dict, borrower_id: str = "B-VICTIM", amount: str = "1200.00",
           due_date: str = "2026-11-01", policy: str = "default") -> dict:
    return {"loan_id": loan_id, "borrower_id": borrower_id, "amount_due": amount, "currency": "CNY",
            "due_date": due_date, "policy": policy, "borrower": dict(borrower)}


def place(session_factory, *records: dict):
    return upsert_placements(session_factory, validate_placements(list(records)))


def borrower_row(session_factory, borrower_id: str = "B-VICTIM") -> dict:
    with session_factory() as db:
        row = db.get(Borrower, borrower_id)
        return {name: getattr(row, name) for name in VICTIM} if row else {}


def loan_row(session_factory, loan_id: str) -> tuple | None:
    with session_factory() as db:
        loan = db.get(Loan, loan_id)
        return loan and (loan.borrower_id, str(loan.amount_due), loan.currency, loan.due_date.isoformat(), loan.policy,
                         loan.stage, loan.outcome)


def count(session_factory, model) -> int:
    with session_factory() as db:
        return db.scalar(select(func.count()).select_from(model))


def audit_rows(session_factory) -> list[AuditEntry]:
    with session_factory() as db:
        return list(db.scalars(select(AuditEntry).order_by(AuditEntry.seq)))


def sent_to(session_factory, loan_id: str) -> list[str]:
    """The recipients of the loan's outbox rows that have one."""
    with session_factory() as db:
        return list(db.scalars(select(Contact.recipient).where(Contact.loan_id == loan_id, Contact.recipient.is_not(None))))


def assert_no_values(text: str, *contacts: dict) -> None:
    for contact in contacts:
        assert contact["phone"].lstrip("+")[-8:] not in text, "a phone number leaked"
        assert contact["email"] not in text and contact["email"].split("@")[0] not in text, "an e-mail address leaked"


# --------------------------------------------------------- a stand-in Temporal


class NoTemporal:
    """A Temporal client that must never be asked to start anything."""

    def __init__(self, described=None) -> None:
        self.described = described  # what describe() answers; None: no such workflow
        self.started: list[str] = []

    def get_workflow_handle(self, workflow_id):
        outer = self

        class Handle:
            async def describe(self):
                if outer.described is None:
                    raise RPCError("workflow not found", RPCStatusCode.NOT_FOUND, b"")
                return outer.described

        return Handle()

    async def start_workflow(self, *args, id, **kwargs):
        self.started.append(id)
        raise AssertionError(f"{id} must not be started")


@pytest.fixture
def http(settings, tmp_path):
    temporal = NoTemporal()
    app = create_app(settings, lambda: temporal, gateway_settings(tmp_path))
    with TestClient(app, base_url="http://testserver") as client:
        client.app_ref, client.temporal = app, temporal
        yield client


# --------------------------------------------------------- the send activity


class Capture:
    """Local capture, remembering every message it was given."""

    def __init__(self, name: str) -> None:
        self.name, self._inner, self.sent = name, LocalCaptureChannel(name), []

    def send(self, message):
        self.sent.append(message)
        return self._inner.send(message)


@pytest.fixture
def send(session_factory, settings):
    """send(loan_id, channel, key) -> the recipient the send activity used."""
    channels = {name: Capture(name) for name in ("sms", "email", "voice", "push")}
    acts = DunningActivities(session_factory, channels, TemplateRenderer(settings.templates_dir), activity_settings(settings))
    env = ActivityEnvironment()

    def run(loan_id: str, channel: str, key: str, borrower_id: str = "B-VICTIM") -> str:
        request = ContactRequest(
            key=f"dunning-{loan_id}/{key}", workflow_id=f"dunning-{loan_id}", loan_id=loan_id, borrower_id=borrower_id,
            stage="reminder", channel=channel, template="reminder_friendly", days_past_due=3, outstanding="1200.00",
            currency="CNY", due_date="2026-11-01",
        )
        assert env.run(acts.send_contact, request).result == "sent"
        [message] = channels[channel].sent[-1:]
        with session_factory() as db:
            row = db.scalar(select(Contact).where(Contact.key == request.key))
            assert row.recipient == message.recipient
        return message.recipient

    return run


# ===================================================== finding 1: the takeover


def test_the_takeover_record_is_refused_naming_phone_and_email_and_nothing_is_written(session_factory, send):
    place(session_factory, record("L-VICTIM", VICTIM))
    assert send("L-VICTIM", "sms", "reminder/0/sms") == VICTIM["phone"]
    before = (borrower_row(session_factory), count(session_factory, Loan), count(session_factory, AuditEntry))

    with pytest.raises(PlacementConflict) as refused:
        place(session_factory, record("L-ATTACK", ATTACKER))

    [conflict] = refused.value.conflicts
    assert (conflict.loan_id, conflict.borrower_id, conflict.subject, conflict.fields) == (
        "L-ATTACK", "B-VICTIM", "borrower", ("phone", "email"))
    assert_no_values(str(refused.value) + json.dumps(refused.value.detail()), VICTIM, ATTACKER)
    assert (borrower_row(session_factory), count(session_factory, Loan), count(session_factory, AuditEntry)) == before
    assert loan_row(session_factory, "L-ATTACK") is None
    # The victim's next messages still go to the victim.
    assert send("L-VICTIM", "sms", "reminder/1/sms") == VICTIM["phone"]
    assert send("L-VICTIM", "email", "reminder/1/email") == VICTIM["email"]


def test_the_takeover_through_the_gateway_is_a_409_naming_ids_and_fields_never_values(http, session_factory, send):
    place(session_factory, record("L-VICTIM", VICTIM))
    before = (borrower_row(session_factory), count(session_factory, Loan), count(session_factory, Borrower))

    response = http.post("/loans/overdue", json=record("L-ATTACK", ATTACKER), headers=keyed(http.app_ref))

    assert response.status_code == 409, response.text
    detail = response.json()["detail"]
    assert detail["conflicts"] == [
        {"loan_id": "L-ATTACK", "borrower_id": "B-VICTIM", "subject": "borrower", "fields": ["phone", "email"]}]
    assert_no_values(response.text, VICTIM, ATTACKER)
    assert (borrower_row(session_factory), count(session_factory, Loan), count(session_factory, Borrower)) == before
    assert http.temporal.started == []
    assert send("L-VICTIM", "sms", "reminder/0/sms") == VICTIM["phone"]


def test_a_key_that_places_but_does_not_read_learns_nothing_from_a_conflict(http, session_factory):
    """Probing with a known loan id, a wrong amount and a guessed phone: the
    409 must not say whether the guess was right (review of issue 14)."""
    place(session_factory, record("L-VICTIM", VICTIM))
    place_only = keyed(http.app_ref, scopes=("loans:place",))
    answers = []
    for guess in ({"phone": "+8613800138001"}, {"phone": VICTIM["phone"]}):
        probe = record("L-VICTIM", VICTIM | guess, amount="1.00")
        response = http.post("/loans/overdue", json=probe, headers=place_only)
        assert response.status_code == 409, response.text
        answers.append(response.json())
    assert answers[0] == answers[1] and "conflicts" not in answers[0]["detail"]
    assert_no_values(json.dumps(answers), VICTIM)


@pytest.mark.parametrize("field, value", [
    ("name", "Mallory"), ("push_token", "attacker-device"), ("language", "en"), ("time_zone", "Europe/London"),
])
def test_any_other_contact_field_differing_is_a_conflict_naming_only_it(session_factory, field, value):
    place(session_factory, record("L-VICTIM", VICTIM))
    before = borrower_row(session_factory)
    with pytest.raises(PlacementConflict) as refused:
        place(session_factory, record("L-2", {**VICTIM, field: value}))
    assert [c.fields for c in refused.value.conflicts] == [(field,)]
    assert value not in str(refused.value)
    assert borrower_row(session_factory) == before


def test_a_batch_with_conflicts_is_refused_whole_and_reports_every_conflict(session_factory):
    place(session_factory, record("L-VICTIM", VICTIM), record("L-OTHER", VICTIM | {"phone": "+8613600136000"}, "B-OTHER"))
    before = (borrower_row(session_factory), count(session_factory, Loan), count(session_factory, Borrower))

    with pytest.raises(PlacementConflict) as refused:
        place(
            session_factory,
            record("L-NEW", {"name": "Good", "phone": "+8613500135000"}, "B-NEW"),  # fine on its own
            record("L-ATTACK", ATTACKER),  # the victim's contact details
            record("L-OTHER", VICTIM | {"phone": "+8613600136000"}, "B-OTHER", amount="99999.00"),  # the loan's terms
        )

    assert [(c.loan_id, c.subject, c.fields) for c in refused.value.conflicts] == [
        ("L-ATTACK", "borrower", ("phone", "email")), ("L-OTHER", "loan", ("amount_due",))]
    assert (borrower_row(session_factory), count(session_factory, Loan), count(session_factory, Borrower)) == before
    assert loan_row(session_factory, "L-NEW") is None


def test_one_file_giving_a_new_borrower_two_sets_of_details_is_refused(session_factory):
    with pytest.raises(PlacementConflict) as refused:
        place(session_factory, record("L-1", VICTIM, "B-NEW"), record("L-2", ATTACKER, "B-NEW"))
    assert [(c.loan_id, c.fields) for c in refused.value.conflicts] == [("L-2", ("phone", "email"))]
    assert count(session_factory, Borrower) == 0 and count(session_factory, Loan) == 0


def test_the_same_record_placed_again_changes_nothing_and_succeeds(http, session_factory):
    place(session_factory, record("L-VICTIM", VICTIM))
    again = place(session_factory, record("L-VICTIM", VICTIM), record("L-SECOND", VICTIM))
    assert (again.borrowers_created, again.borrowers_unchanged, again.loans_created, again.loans_unchanged) == (0, 1, 1, 1)
    assert borrower_row(session_factory) == VICTIM


# ============================== finding 2: a loan re-posted, a terminated loan


def test_a_loan_posted_again_with_other_terms_is_a_409_and_the_loan_row_is_unchanged(http, session_factory):
    place(session_factory, record("L-TERMS", VICTIM, amount="1.00"))
    before = loan_row(session_factory, "L-TERMS")
    for changed, fields in (
        ({"amount": "99999.00"}, ["amount_due"]),
        ({"due_date": "2026-12-01", "policy": "demo"}, ["due_date", "policy"]),
        ({"borrower_id": "B-OTHER"}, ["borrower_id"]),
    ):
        response = http.post("/loans/overdue", json=record("L-TERMS", VICTIM, **{"amount": "1.00", **changed}),
                             headers=keyed(http.app_ref))
        assert response.status_code == 409, response.text
        [conflict] = response.json()["detail"]["conflicts"]
        assert (conflict["loan_id"], conflict["subject"], conflict["fields"]) == ("L-TERMS", "loan", fields)
        assert "99999" not in response.text
        assert loan_row(session_factory, "L-TERMS") == before
    assert count(session_factory, Borrower) == 1 and http.temporal.started == []


async def test_a_loan_whose_workflow_ran_but_is_gone_from_temporal_is_not_started_again(session_factory):
    """Past the namespace's retention Temporal forgets an ended run: the
    directory's stage still says the loan ran, so it is not started afresh."""
    [placement] = validate_placements([record("L-OLD", VICTIM)])
    placing = Placing.write(session_factory, [placement])
    with session_factory.begin() as db:
        db.get(Loan, "L-OLD").stage = "credit_reporting"
    placing = Placing.write(session_factory, [placement])
    temporal = NoTemporal(described=None)
    [result] = [r async for r in placing.start_each(temporal, "q")]
    assert (result.state, result.started, temporal.started) == (CLOSED, False, [])
    assert "not started again" in result.line()


@asynccontextmanager
async def gateway_on_a_worker(time_env, settings, tmp_path):
    """A worker on the time-skipping server, and a client of a gateway that
    starts its loans there, carrying a key with every scope."""
    async with running_worker(time_env.client, settings) as loans:
        core = settings.model_copy(update={"task_queue": loans.task_queue})
        app = create_app(core, lambda: time_env.client, gateway_settings(tmp_path))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver",
                                     headers=keyed(app)) as http:
            yield loans, http


# Its fixed loan ids live on the session's one time-skipping server: one run only.
@pytest.mark.sqlite_only
async def test_a_terminated_loan_posted_again_is_not_restarted(time_env, settings, tmp_path, session_factory):
    async with gateway_on_a_worker(time_env, settings, tmp_path) as (loans, http):
        zone = await zone_where_it_is(time_env, 12)
        body = record("L-TERM", VICTIM | {"time_zone": zone, "phone": PLACELESS_PHONE}, amount="1.00",
                      due_date=(await overdue_since(time_env, 2, zone)).isoformat())
        first = await http.post("/loans/overdue", json=body)
        assert first.status_code == 201, first.text
        handle = time_env.client.get_workflow_handle("dunning-L-TERM")
        loans.handles.append(handle)
        await time_env.sleep(timedelta(seconds=5))
        await handle.terminate("operator: stop dunning this loan")
        before = loan_row(session_factory, "L-TERM")

        same = await http.post("/loans/overdue", json=body)
        other = await http.post("/loans/overdue", json={**body, "amount_due": "99999.00"})

        assert same.status_code == 201, same.text
        assert (same.json()["started"], same.json()["state"], same.json()["run_id"]) == (
            False, "closed", first.json()["run_id"])
        assert other.status_code == 409 and other.json()["detail"]["conflicts"][0]["fields"] == ["amount_due"]
        # The latest run of the id is still the terminated first one: no new run.
        described = await handle.describe()
        assert (described.run_id, described.status) == (first.json()["run_id"], WorkflowExecutionStatus.TERMINATED)
        assert loan_row(session_factory, "L-TERM") == before and before[1] == "1.00"


# Its fixed loan ids live on the session's one time-skipping server: one run only.
@pytest.mark.sqlite_only
async def test_the_takeover_end_to_end_the_victims_messages_go_to_the_victim(time_env, settings, tmp_path, session_factory):
    async with gateway_on_a_worker(time_env, settings, tmp_path) as (loans, http):
        zone = await zone_where_it_is(time_env, 12)
        # Numbers of no place of their own: the zone picked by the clock decides the window.
        victim_details = VICTIM | {"time_zone": zone, "phone": PLACELESS_PHONE}
        attacker_details = ATTACKER | {"time_zone": zone, "phone": OTHER_PLACELESS_PHONE}
        due = (await overdue_since(time_env, 2, zone)).isoformat()
        victim = await http.post("/loans/overdue", json=record("L-VIC", victim_details, due_date=due))
        assert victim.status_code == 201, victim.text
        loans.handles.append(time_env.client.get_workflow_handle("dunning-L-VIC"))
        attack = await http.post("/loans/overdue",
                                 json=record("L-ATK", attacker_details, due_date=due))
        assert attack.status_code == 409 and attack.json()["detail"]["conflicts"][0]["fields"] == ["phone", "email"]
        assert_no_values(attack.text, victim_details, attacker_details)
        sent_before = len(sent_to(session_factory, "L-VIC"))
        await time_env.sleep(timedelta(days=3))  # the victim's loan keeps sending
        await time_env.sleep(timedelta(seconds=1))
    recipients = sent_to(session_factory, "L-VIC")
    assert len(recipients) > sent_before, "no message was sent after the attack"
    assert set(recipients) <= {victim_details["phone"], VICTIM["email"], "B-VICTIM"}
    assert loan_row(session_factory, "L-ATK") is None
    assert borrower_row(session_factory)["phone"] == victim_details["phone"]


# ============================== the one way contact details change: the API


def test_the_contact_endpoint_changes_the_details_audits_who_and_masked_values_and_the_next_message_uses_them(
    http, session_factory, send
):
    place(session_factory, record("L-1", VICTIM), record("L-2", VICTIM))
    assert send("L-1", "sms", "reminder/0/sms") == VICTIM["phone"]
    key = api_key(http.app_ref, ("borrowers:write",), name="crm-sync")

    response = http.put("/borrowers/B-VICTIM/contact", json=NEW, headers=bearer(key))

    assert response.status_code == 200, response.text
    assert response.json() == {"borrower_id": "B-VICTIM", "changed": ["phone", "email"], "open_loans": ["L-1", "L-2"]}
    assert borrower_row(session_factory) == VICTIM | NEW
    entries = [e for e in audit_rows(session_factory) if '"contact_changed"' in e.payload]
    assert [e.loan_id for e in entries] == ["L-1", "L-2"]
    payload = json.loads(entries[0].payload)
    key_id = key.split("_")[1]
    assert payload["by"] == f"api_key:{key_id} (crm-sync)" and payload["borrower_id"] == "B-VICTIM"
    assert set(payload["fields"]) == {"phone", "email"}
    assert payload["fields"]["email"] == {"before": "v***@example.com", "after": "w***@example.com"}
    assert payload["fields"]["phone"]["before"].startswith("+86***")
    assert_no_values(" ".join(e.payload for e in audit_rows(session_factory)), VICTIM, NEW | {"name": ""})
    with session_factory() as db:
        assert verify(db).ok
    # The open loans' next contact goes to the new number, by SMS and e-mail.
    assert send("L-1", "sms", "reminder/1/sms") == NEW["phone"]
    assert send("L-2", "email", "reminder/0/email") == NEW["email"]

    again = http.put("/borrowers/B-VICTIM/contact", json=NEW, headers=bearer(key))
    assert again.status_code == 200 and again.json()["changed"] == []
    assert len([e for e in audit_rows(session_factory) if '"contact_changed"' in e.payload]) == 2


def test_the_contact_endpoint_refuses_callers_without_the_scope(http, session_factory):
    place(session_factory, record("L-1", VICTIM))
    before = (borrower_row(session_factory), count(session_factory, AuditEntry))
    no_scope = bearer(api_key(http.app_ref, ("loans:place", "loans:read", "loans:operate", "visits:report")))
    for headers, status in (({}, 401), (bearer("dk_0123456789abcdef_" + "x" * 43), 401), (no_scope, 403)):
        response = http.put("/borrowers/B-VICTIM/contact", json=ATTACKER, headers=headers)
        assert response.status_code == status, response.text
        assert_no_values(response.text, VICTIM, ATTACKER)
    assert (borrower_row(session_factory), count(session_factory, AuditEntry)) == before


@pytest.mark.parametrize("body, field", [
    ({"phone": "call me"}, "phone"),
    ({"email": "not-an-address"}, "email"),
    ({"time_zone": "Mars/Olympus"}, "time_zone"),
    ({"language": "fr"}, "language"),
    ({"name": "   "}, "name"),
    ({"phone": None, "email": None}, "phone"),
    ({"phone": 8613800138000}, "phone"),
    ({"fax": "+8613800138000"}, "fax"),
    ({}, "(payload)"),
])
def test_bad_contact_input_is_a_422_naming_the_field_and_changes_nothing(http, session_factory, body, field):
    place(session_factory, record("L-1", VICTIM))
    before = (borrower_row(session_factory), count(session_factory, AuditEntry))
    response = http.put("/borrowers/B-VICTIM/contact", json=body, headers=keyed(http.app_ref))
    assert response.status_code == 422, response.text
    assert ["body", field] in [e["loc"] for e in response.json()["detail"]], response.text
    assert (borrower_row(session_factory), count(session_factory, AuditEntry)) == before


def test_an_unknown_borrower_is_a_404_and_nothing_is_written(http, session_factory):
    response = http.put("/borrowers/B-NOBODY/contact", json=NEW, headers=keyed(http.app_ref))
    assert response.status_code == 404
    assert count(session_factory, Borrower) == 0 and count(session_factory, AuditEntry) == 0


def test_a_change_for_a_borrower_without_open_loans_is_audited_once_without_a_loan(session_factory):
    place(session_factory, record("L-1", VICTIM))
    with session_factory.begin() as db:
        db.get(Loan, "L-1").outcome = "repaid"
    change = change_contact(session_factory, "B-VICTIM", {"name": "王晓明"}, by="operator:test")
    assert (change.changed, change.open_loans) == (("name",), ())
    [entry] = [e for e in audit_rows(session_factory) if '"contact_changed"' in e.payload]
    assert (entry.loan_id, entry.workflow_id) == ("", "")
    assert json.loads(entry.payload)["fields"] == {"name": {"before": "***", "after": "***"}}
    with session_factory() as db:
        assert verify(db).ok


def test_a_stored_value_is_never_quoted_back_in_an_error(session_factory):
    place(session_factory, record("L-1", VICTIM))
    with session_factory.begin() as db:  # a row written before today's rules
        db.get(Borrower, "B-VICTIM").phone = "12345"
    with pytest.raises(ContactError) as refused:
        change_contact(session_factory, "B-VICTIM", {"email": "x@example.com"}, by="operator:test")
    assert refused.value.problems[0][0] == "phone" and "12345" not in str(refused.value)


# ============================== ... and the command line


def starter(settings, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DUNNING_DATABASE_URL": settings.database_url, "DUNNING_LOG_LEVEL": "WARNING"}
    return subprocess.run([sys.executable, str(PROJECT / "starter.py"), *args], cwd=PROJECT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_the_cli_changes_contact_details_recording_the_operator(settings, session_factory, send):
    place(session_factory, record("L-1", VICTIM))
    bad = starter(settings, "borrower-contact", "B-VICTIM", "--phone", "call me", "--by", "alice")
    assert bad.returncode == 2 and "--phone:" in bad.stderr
    assert borrower_row(session_factory) == VICTIM

    done = starter(settings, "borrower-contact", "B-VICTIM", "--phone", NEW["phone"], "--by", "alice")

    assert done.returncode == 0, done.stderr
    assert "changed phone" in done.stdout and NEW["phone"] not in done.stdout
    assert borrower_row(session_factory)["phone"] == NEW["phone"]
    [entry] = [json.loads(e.payload) for e in audit_rows(session_factory) if '"contact_changed"' in e.payload]
    assert entry["by"] == "operator:alice" and set(entry["fields"]) == {"phone"}
    assert send("L-1", "sms", "reminder/0/sms") == NEW["phone"]


# Its fixed loan ids live on the session's one time-skipping server: one run only.
@pytest.mark.sqlite_only
async def test_the_cli_start_refuses_a_takeover_file_and_exits_non_zero(time_env, settings, tmp_path, session_factory):
    place(session_factory, record("L-VICTIM", VICTIM))
    path = tmp_path / "attack.json"
    path.write_text(json.dumps([record("L-ATTACK", ATTACKER)], ensure_ascii=False), encoding="utf-8")
    address = time_env.client.service_client.config.target_host
    env = {**os.environ, "DUNNING_DATABASE_URL": settings.database_url, "TEMPORAL_ADDRESS": address,
           "DUNNING_LOG_LEVEL": "WARNING"}
    result = subprocess.run([sys.executable, str(PROJECT / "starter.py"), "start", str(path)], cwd=PROJECT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 3, (result.stdout, result.stderr)
    assert "L-ATTACK" in result.stderr and "B-VICTIM" in result.stderr and "phone, email" in result.stderr
    assert_no_values(result.stdout + result.stderr, VICTIM, ATTACKER)
    assert borrower_row(session_factory) == VICTIM and loan_row(session_factory, "L-ATTACK") is None


@pytest.mark.parametrize("name", ["Pay at evil.example/now", "visit https://evil.example", "www.evil.example",
                                  "王小明\n请立即转账到 6222 0000", "Wang\u2028Xiaoming"])
def test_a_name_that_would_write_its_own_message_is_refused_naming_the_field(http, session_factory, name):
    """Finding 2: the free-text name goes verbatim into SMS, voice and e-mail
    under the lender's name; a web address or a line break in it is refused."""
    before = (count(session_factory, Loan), count(session_factory, Borrower))
    response = http.post("/loans/overdue", json=record("L-NAME", VICTIM | {"name": name}), headers=keyed(http.app_ref))
    assert response.status_code == 422, response.text
    assert ["body", "borrower", "name"] in [e["loc"] for e in response.json()["detail"]]
    assert (count(session_factory, Loan), count(session_factory, Borrower)) == before
