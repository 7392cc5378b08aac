"""Recorded calls (issue 16, item 7): a profile that records calls has Twilio
record them (checked against Twilio's OpenAPI spec by FakeTwilio) and the
script says so first, in each language; an unrecorded call does neither; the
signed recording callback keeps the recording's reference on the contact
row, once; and the retention job deletes at Twilio exactly the recordings
past the retention of each loan's profile, marks and audits each, does
nothing more when run again, and deletes nothing in a dry run. Its
workflow runs on the time-skipping server, and its Schedule is defined once.

No wall clock: every "now" is passed in.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import subprocess
import sys
import uuid
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlparse

import httpx
import pytest
from sqlalchemy import select
from temporalio.client import ScheduleAlreadyRunningError
from temporalio.testing import ActivityEnvironment

from activities import retention as retention_job
from activities.dunning_activities import DunningActivities
from activities.payloads import ContactRequest
from activities.rendering import CONTEXT_KEYS, TemplateRenderer
from activities.retention import RecordsRetention, run_retention, run_retention_until_done
from channels.base import OutboundMessage
from channels.local import LocalCaptureChannel
from channels.twilio_sms import make_twilio_client
from channels.twilio_voice import TwilioRecordings, TwilioVoiceChannel
from db import recordings
from db.models import AuditEntry, Borrower, Contact, Loan
from gateway.app import create_app
from runtime.retention_schedule import SCHEDULE_ID, ensure_retention_schedule, retention_schedule
from runtime.worker_build import activity_settings, build_worker
from tests.conftest import BORROWER
from tests.support.gateway import RecordedSignals, gateway_settings, twilio_signed
from tests.support.providers import (
    ACCOUNT_SID, AUTH_TOKEN, FROM_NUMBER, PHONE, TWILIO_RECORDINGS_SPEC, FakeTwilio, call_script,
)
from tests.support.temporal import time_env  # noqa: F401 (fixture)
from workflows import retention as retention_workflow

PUBLIC = "https://gateway.example.com"
ROOT = Path(__file__).resolve().parent.parent

ANNOUNCEMENT = {"en": "This call is being recorded.", "zh_CN": "本次通话将被录音。", "zh_TW": "本次通話將被錄音。"}
# The first words about the debt in each script: the announcement comes before them.
DEBT = {"en": "We are calling about your loan", "zh_CN": "我们来电是关于您的借款", "zh_TW": "我們來電是關於您的借款"}
IDENTITY = {"en": "If you are not", "zh_CN": "本来电仅限", "zh_TW": "本來電僅限"}


@pytest.fixture
def twilio(httpserver):
    fake = FakeTwilio()
    httpserver.expect_request(re.compile(r"^/2010-04-01/.*")).respond_with_handler(fake.handle)
    fake.base_url = httpserver.url_for("").rstrip("/")
    yield fake
    httpserver.check_handler_errors()


def twilio_client(fake: FakeTwilio):
    return make_twilio_client(ACCOUNT_SID, AUTH_TOKEN, fake.base_url, timeout=5)


def voice_channel(fake: FakeTwilio) -> TwilioVoiceChannel:
    return TwilioVoiceChannel(twilio_client(fake), PUBLIC, FROM_NUMBER, call_script())


def call(record: bool, key: str = "dunning-L-1001/call/d8/0-voice") -> OutboundMessage:
    return OutboundMessage(key=key, channel="voice", recipient=PHONE, language="en", text="Hello. Script.", record=record)


# ------------------------------------------------------------------ the call


def test_a_recorded_call_asks_twilio_to_record_it_as_the_spec_says(twilio):
    receipt = voice_channel(twilio).send(call(record=True))

    assert twilio.problems == []
    [request] = twilio.requests
    form = request["form"]
    assert form["Record"] == ["true"]
    callback = urlparse(form["RecordingStatusCallback"][0])
    assert f"{callback.scheme}://{callback.netloc}{callback.path}" == f"{PUBLIC}/webhooks/twilio/recording"
    assert parse_qs(callback.query) == {"key": ["dunning-L-1001/call/d8/0-voice"]}
    assert form["RecordingStatusCallbackEvent"] == ["completed"] and form["RecordingStatusCallbackMethod"] == ["POST"]
    # What the call already asked for stays: machine detection and the status callback.
    assert form["MachineDetection"] == ["Enable"] and form["StatusCallback"][0].startswith(f"{PUBLIC}/webhooks/twilio/status?key=")
    assert re.fullmatch(r"RE[0-9a-f]{32}", twilio.recording_of(receipt.message_id))


def test_an_unrecorded_call_asks_for_no_recording(twilio):
    voice_channel(twilio).send(call(record=False))

    assert twilio.problems == []
    form = twilio.requests[0]["form"]
    assert not [name for name in form if name.startswith("Record")]
    assert twilio.recordings == {}


def test_the_spec_check_refuses_a_misspelt_recording_parameter(twilio):
    """Negative control: FakeTwilio checks the recording parameters by the
    spec's CreateCall schema (an unknown name is a typo)."""
    client = twilio_client(twilio)
    with pytest.raises(Exception):
        client.calls.create(to=PHONE, from_=FROM_NUMBER, twiml="<Response/>", record=True,
                            recording_status_callback_event="finished", recording_status_callback_method="PUT")
    assert any("RecordingStatusCallbackMethod" in problem for problem in twilio.problems)


def request(language_key: str, record: bool) -> ContactRequest:
    return ContactRequest(
        key=f"dunning-L-1001/call/d8/{language_key}-voice", workflow_id="dunning-L-1001", loan_id="L-1001",
        borrower_id=BORROWER["borrower_id"], stage="call", channel="voice", template="call_script", days_past_due=8,
        outstanding="1200.00", currency="CNY", due_date="2026-11-01", record_call=record,
    )


@pytest.fixture
def voice_acts(twilio, session_factory, settings):
    channels = {name: LocalCaptureChannel(name) for name in ("sms", "email", "push", "letter")}
    channels["voice"] = voice_channel(twilio)
    return DunningActivities(session_factory, channels, TemplateRenderer(settings.templates_dir),
                             activity_settings(settings), clock=lambda: datetime(2026, 11, 9, 2, tzinfo=timezone.utc))


@pytest.mark.parametrize("record", [True, False])
def test_the_script_announces_the_recording_first_in_each_language(twilio, voice_acts, session_factory, seeded_borrower,
                                                                   record):
    env = ActivityEnvironment()
    for number, language in enumerate(("en", "zh_CN", "zh_TW")):
        with session_factory.begin() as db:
            db.get(Borrower, seeded_borrower).language = language
        outcome = env.run(voice_acts.send_contact, request(f"{number}-{language}", record))
        assert outcome.result == "sent"
        with session_factory() as db:
            row = db.scalar(select(Contact).where(Contact.key == outcome.key))
        form = twilio.requests[-1]["form"]
        says = form["Twiml"][0]
        if record:
            text = row.body_text
            assert text.index(ANNOUNCEMENT[language]) < text.index(IDENTITY[language]) < text.index(DEBT[language])
            assert text.index(ANNOUNCEMENT[language]) < text.index("L-1001")  # before anything about the debt
            assert ANNOUNCEMENT[language] in says and form["Record"] == ["true"]
        else:
            assert ANNOUNCEMENT[language] not in row.body_text and ANNOUNCEMENT[language] not in says
            assert "Record" not in form and "RecordingStatusCallback" not in form
    assert twilio.problems == []
    assert len(twilio.recordings) == (3 if record else 0)


def test_call_recorded_is_a_template_variable_and_only_calls_are_recorded(voice_acts, session_factory, seeded_borrower):
    assert "call_recorded" in CONTEXT_KEYS
    sms = ContactRequest(**{**request("sms", True).__dict__, "channel": "sms", "template": "reminder_friendly",
                            "key": "dunning-L-1001/reminder/0/sms"})
    outcome = ActivityEnvironment().run(voice_acts.send_contact, sms)
    assert outcome.result == "sent"  # an SMS ignores record_call: nothing to record, nothing announced
    with session_factory() as db:
        row = db.scalar(select(Contact).where(Contact.key == sms.key))
    assert all(words not in row.body_text for words in ANNOUNCEMENT.values())


# ------------------------------------------------------------------ the callback

RECORDING_SID = "RE" + "0123456789abcdef" * 2
KEY = "dunning-L-1001/call/d8/0-voice"


def contact_row(key: str = KEY, loan_id: str = "L-1001", sent_at: datetime | None = None, **fields) -> Contact:
    return Contact(key=key, workflow_id=f"dunning-{loan_id}", loan_id=loan_id, borrower_id=BORROWER["borrower_id"],
                   stage="call", channel="voice", template="call_script", language="en", status="sent",
                   provider="twilio", provider_message_id="CA" + "1" * 32, sent_at=sent_at, **fields)


def audit_entries(session_factory, rule: str) -> list[dict]:
    with session_factory() as db:
        entries = db.scalars(select(AuditEntry).where(AuditEntry.kind == "decision").order_by(AuditEntry.seq)).all()
    return [json.loads(entry.payload) for entry in entries if json.loads(entry.payload).get("rule") == rule]


@pytest.fixture
async def gateway_http(settings, session_factory, tmp_path):
    app = create_app(settings, lambda: RecordedSignals(), gateway_settings(tmp_path))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as http:
        yield http


@pytest.mark.both_databases
async def test_the_recording_callback_keeps_the_reference_once(gateway_http, session_factory):
    with session_factory.begin() as db:
        db.add(contact_row(sent_at=datetime(2026, 11, 9, 2, tzinfo=timezone.utc)))
    path = "/webhooks/twilio/recording?" + urlencode({"key": KEY})
    params = {"AccountSid": ACCOUNT_SID, "CallSid": "CA" + "1" * 32, "RecordingSid": RECORDING_SID,
              "RecordingStatus": "completed", "RecordingDuration": "47", "RecordingChannels": "1",
              "RecordingUrl": f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/{RECORDING_SID}"}

    forged = await gateway_http.post(path, data=params, headers=twilio_signed(path, params, token="wrong-token"))
    unsigned = await gateway_http.post(path, data=params)
    assert forged.status_code == unsigned.status_code == 403
    with session_factory() as db:
        assert db.scalar(select(Contact.recording_ref).where(Contact.key == KEY)) is None

    for _ in range(2):  # Twilio's retry, or a replay: the same once
        response = await gateway_http.post(path, data=params, headers=twilio_signed(path, params))
        assert response.status_code == 204
    with session_factory() as db:
        row = db.scalar(select(Contact).where(Contact.key == KEY))
    assert (row.recording_ref, row.recording_seconds, row.recording_deleted_at) == (RECORDING_SID, 47, None)
    assert row.status == "sent"  # the status is the outbox's: untouched
    [entry] = audit_entries(session_factory, recordings.RULE_RECORD)
    assert entry["recording_ref"] == RECORDING_SID and entry["step_key"] == KEY

    # Another recording for the same call is not put in its place.
    other = {**params, "RecordingSid": "RE" + "f" * 32}
    assert (await gateway_http.post(path, data=other, headers=twilio_signed(path, other))).status_code == 204
    # A recording that is absent or failed, or a sid of the wrong shape, stores nothing.
    for bad in ({**params, "RecordingStatus": "absent"}, {**params, "RecordingSid": "RE-not-a-sid"}):
        assert (await gateway_http.post(path, data=bad, headers=twilio_signed(path, bad))).status_code == 204
    with session_factory() as db:
        assert db.scalar(select(Contact.recording_ref).where(Contact.key == KEY)) == RECORDING_SID
    assert len(audit_entries(session_factory, recordings.RULE_RECORD)) == 1


async def test_a_recording_for_an_unknown_key_is_answered_and_stores_nothing(gateway_http, session_factory):
    path = "/webhooks/twilio/recording?" + urlencode({"key": "dunning-L-NONE/call/d0/0-voice"})
    params = {"RecordingSid": RECORDING_SID, "RecordingStatus": "completed", "RecordingDuration": "3"}
    assert (await gateway_http.post(path, data=params, headers=twilio_signed(path, params))).status_code == 204
    assert audit_entries(session_factory, recordings.RULE_RECORD) == []


# ------------------------------------------------------------------ retention

NOW = datetime(2031, 6, 1, 0, 0, tzinfo=timezone.utc)


def sid(n: int) -> str:
    return f"RE{n:032x}"


def place_loan(db, loan_id: str, policy: str, closed_at: datetime | None = None) -> None:
    db.add(Loan(loan_id=loan_id, borrower_id=BORROWER["borrower_id"], amount_due=Decimal("1200.00"), currency="CNY",
                due_date=date(2026, 1, 1), policy=policy, workflow_id=f"dunning-{loan_id}", closed_at=closed_at))


@pytest.fixture
def recorded(session_factory, seeded_borrower, twilio):
    """Calls with recordings on a cn loan (policy default: 5 years) and a us
    loan (policy us: 3 years); which ones are past retention at NOW."""
    calls = {
        # cn, 5 years: before 2026-06-01 is past
        "cn-old": ("L-CN", datetime(2026, 5, 31, 23, 59, tzinfo=timezone.utc), True),
        "cn-boundary": ("L-CN", datetime(2026, 6, 1, 0, 0, tzinfo=timezone.utc), False),
        "cn-young": ("L-CN", datetime(2029, 1, 1, tzinfo=timezone.utc), False),
        # us, 3 years: before 2028-06-01 is past
        "us-old": ("L-US", datetime(2027, 1, 1, tzinfo=timezone.utc), True),
        "us-older": ("L-US", datetime(2026, 12, 1, tzinfo=timezone.utc), True),
        "us-young": ("L-US", datetime(2028, 7, 1, tzinfo=timezone.utc), False),
    }
    refs = {}
    with session_factory.begin() as db:
        place_loan(db, "L-CN", "default")
        place_loan(db, "L-US", "us", closed_at=datetime(2027, 3, 1, tzinfo=timezone.utc))
        for n, (name, (loan_id, sent_at, _)) in enumerate(calls.items(), start=1):
            refs[name] = sid(n)
            db.add(contact_row(key=f"dunning-{loan_id}/call/{name}", loan_id=loan_id, sent_at=sent_at,
                               recording_ref=refs[name], recording_seconds=30))
            twilio.recordings[refs[name]] = "CA" + f"{n:032x}"
        # A call without a recording, long past: nothing to delete.
        db.add(contact_row(key="dunning-L-CN/call/unrecorded", loan_id="L-CN", sent_at=datetime(2020, 1, 1, tzinfo=timezone.utc)))
    return {name: ref for name, ref in refs.items()}, {name for name, (_, _, past) in calls.items() if past}


def retention_rows(session_factory) -> dict[str, tuple[str | None, datetime | None]]:
    with session_factory() as db:
        rows = db.scalars(select(Contact)).all()
    return {row.key.rsplit("/", 1)[1]: (row.recording_ref, row.recording_deleted_at) for row in rows}


@pytest.mark.both_databases
def test_the_retention_job_deletes_exactly_the_recordings_past_retention(twilio, recorded, session_factory, settings):
    refs, past = recorded
    store = TwilioRecordings(twilio_client(twilio))

    report = run_retention_until_done(session_factory, store, settings.policies_dir, settings.profiles_dir, NOW)

    assert twilio.problems == []
    assert sorted(twilio.deleted) == sorted(refs[name] for name in past)
    assert all(request["method"] == "DELETE" for request in twilio.requests)
    assert {item.key.rsplit("/", 1)[1] for item in report.items} == past
    assert report.count(retention_job.DELETED) == 3 and report.count(retention_job.FAILED) == 0
    rows = retention_rows(session_factory)
    for name, ref in refs.items():
        assert rows[name][0] == ref  # the reference stays: the audit trail names what was deleted
        assert (rows[name][1] == NOW) is (name in past)
    assert rows["unrecorded"] == (None, None)
    entries = audit_entries(session_factory, recordings.RULE_RETENTION)
    assert sorted(entry["recording_ref"] for entry in entries) == sorted(refs[name] for name in past)
    assert {entry["profile"]: entry["retention_years"] for entry in entries} == {"cn": 5, "us": 3}
    # The us loan closed in 2027: its other records are past retention too, counted and kept.
    assert report.closed_loans_past_retention == {"us": 1}

    # Again: nothing more is due, nothing is asked of Twilio, nothing is audited.
    requests = len(twilio.requests)
    again = run_retention_until_done(session_factory, store, settings.policies_dir, settings.profiles_dir, NOW)
    assert again.items == [] and len(twilio.requests) == requests
    assert len(audit_entries(session_factory, recordings.RULE_RETENTION)) == 3


def test_a_dry_run_deletes_and_writes_nothing(twilio, recorded, session_factory, settings):
    refs, past = recorded
    before = retention_rows(session_factory)

    report = run_retention_until_done(session_factory, TwilioRecordings(twilio_client(twilio)), settings.policies_dir,
                                      settings.profiles_dir, NOW, dry_run=True)

    assert {item.key.rsplit("/", 1)[1] for item in report.items} == past
    assert {item.result for item in report.items} == {retention_job.WOULD_DELETE}
    assert twilio.requests == [] and twilio.deleted == []
    assert retention_rows(session_factory) == before
    assert audit_entries(session_factory, recordings.RULE_RETENTION) == []


def test_a_recording_twilio_no_longer_has_is_marked_and_an_outage_waits(twilio, recorded, session_factory, settings):
    refs, past = recorded
    del twilio.recordings[refs["us-older"]]  # deleted in Twilio's console, or by a run that stopped before marking
    twilio.errors.append(503)  # the first deletion meets an outage
    store = TwilioRecordings(twilio_client(twilio))

    first = run_retention(session_factory, store, settings.policies_dir, settings.profiles_dir, NOW)
    results = {item.key.rsplit("/", 1)[1]: item.result for item in first.items}
    assert results == {"cn-old": retention_job.FAILED, "us-older": retention_job.ALREADY_GONE,
                       "us-old": retention_job.DELETED}
    assert retention_rows(session_factory)["cn-old"] == (refs["cn-old"], None)  # kept for the next run

    second = run_retention(session_factory, store, settings.policies_dir, settings.profiles_dir, NOW)
    assert [(item.key.rsplit("/", 1)[1], item.result) for item in second.items] == [("cn-old", retention_job.DELETED)]
    assert twilio.problems == []
    assert all(retention_rows(session_factory)[name][1] == NOW for name in past)
    assert len(audit_entries(session_factory, recordings.RULE_RETENTION)) == 3


def test_without_twilio_credentials_nothing_is_marked(recorded, session_factory, settings):
    report = run_retention(session_factory, None, settings.policies_dir, settings.profiles_dir, NOW)
    assert report.count(retention_job.FAILED) == 3 and "no twilio credentials" in report.items[0].detail
    assert all(deleted is None for _, deleted in retention_rows(session_factory).values())


def test_the_retention_boundary_is_calendar_years():
    assert recordings.years_before(datetime(2031, 6, 1, tzinfo=timezone.utc), 5) == datetime(2026, 6, 1, tzinfo=timezone.utc)
    assert recordings.years_before(datetime(2028, 2, 29, 12, tzinfo=timezone.utc), 3) == datetime(2025, 2, 28, 12, tzinfo=timezone.utc)


def test_the_delete_recording_spec_names_its_source():
    source = TWILIO_RECORDINGS_SPEC["source"]
    assert source["repository"] == "github.com/twilio/twilio-oai" and re.fullmatch(r"[0-9a-f]{40}", source["commit"])
    [item] = TWILIO_RECORDINGS_SPEC["paths"].values()
    assert item["delete"]["operationId"] == "DeleteRecording"


def test_the_retention_command_dry_run_changes_nothing(recorded, session_factory, settings, twilio):
    refs, past = recorded
    before = retention_rows(session_factory)
    env = {**os.environ, "DUNNING_DATABASE_URL": settings.database_url, "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
           "TWILIO_AUTH_TOKEN": AUTH_TOKEN, "TWILIO_API_BASE_URL": twilio.base_url}
    run = subprocess.run([sys.executable, "starter.py", "retention", "run", "--dry-run", "--now", NOW.isoformat()],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "3 recordings would be deleted; nothing was deleted or written" in run.stdout
    assert all(refs[name] in run.stdout for name in past)
    assert twilio.requests == [] and retention_rows(session_factory) == before


# ------------------------------------------------------------------ Temporal


def test_the_workflow_and_the_activity_agree_on_the_activity_name():
    assert retention_workflow.APPLY_RECORDS_RETENTION == retention_job.APPLY_RECORDS_RETENTION


async def test_the_retention_workflow_deletes_in_batches(time_env, twilio, recorded, session_factory, settings):
    refs, past = recorded
    task_queue = f"retention-test-{uuid.uuid4().hex[:8]}"
    job = RecordsRetention(session_factory, TwilioRecordings(twilio_client(twilio)), settings.policies_dir,
                           settings.profiles_dir)
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as executor:
        worker_settings = settings.model_copy(update={"task_queue": task_queue})
        async with build_worker(time_env.client, worker_settings, executor, retention=job):
            totals = await time_env.client.execute_workflow(
                retention_workflow.RECORDS_RETENTION_WORKFLOW, NOW.isoformat(), id=f"retention-{uuid.uuid4().hex[:8]}",
                task_queue=task_queue, result_type=dict,
            )
    assert totals["deleted"] == 3 and totals["failed"] == 0 and totals["now"] == NOW.isoformat()
    assert sorted(twilio.deleted) == sorted(refs[name] for name in past)


class FakeSchedules:
    """A client's schedule calls, recorded: the first create succeeds, later ones find it."""

    def __init__(self) -> None:
        self.created: dict[str, object] = {}
        self.updated: list[object] = []

    async def create_schedule(self, schedule_id, schedule):
        if schedule_id in self.created:
            raise ScheduleAlreadyRunningError()
        self.created[schedule_id] = schedule

    def get_schedule_handle(self, schedule_id):
        schedules = self

        class Handle:
            async def update(self, updater):
                from types import SimpleNamespace

                from temporalio.client import ScheduleState

                paused = SimpleNamespace(description=SimpleNamespace(schedule=SimpleNamespace(
                    state=ScheduleState(paused=True, note="paused by an operator"))))
                schedules.updated.append(updater(paused).schedule)

        return Handle()


async def test_the_schedule_is_created_once_then_updated_keeping_its_pause():
    client = FakeSchedules()
    assert await ensure_retention_schedule(client, "dunning") == "created"
    assert await ensure_retention_schedule(client, "dunning") == "updated"
    [created] = client.created.values()
    assert list(client.created) == [SCHEDULE_ID] == ["dunning-records-retention"]
    assert created.action.workflow == retention_workflow.RECORDS_RETENTION_WORKFLOW
    assert created.action.task_queue == "dunning" and created.spec.time_zone_name == "UTC"
    [updated] = client.updated
    assert updated.state.paused and updated.spec == retention_schedule("dunning").spec
