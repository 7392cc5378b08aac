"""The real Twilio and SendGrid SDKs against local servers that check every
request against the providers' published API specifications and answer like
the providers do, including their errors; the app push channel; provider
selection from settings; and the send_contact activity over a real Twilio
channel (a 503 is retried and sends once, a 400 is recorded as failed).

Specs (tests/specs/):
- twilio_api_v2010_subset.json: CreateMessage and CreateCall from Twilio's
  official OpenAPI spec (npm @twilio-alpha/mcp, see its `source`);
- sendgrid_mail_send_v3.json: a JSON Schema for POST /v3/mail/send written
  from SendGrid's documentation.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import xml.etree.ElementTree as ET
from urllib.parse import parse_qs, urlparse

import jsonschema
import pytest
from sqlalchemy import select
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment
from werkzeug import Request, Response

from activities.dunning_activities import DunningActivities
from activities.payloads import ContactRequest
from activities.rendering import TemplateRenderer
from channels.base import OutboundMessage, PermanentSendError, ProviderConfigError, TransientSendError
from channels.local import LocalCaptureChannel
from channels.push import AppPushChannel
from runtime.channels import build_channels
from channels.sendgrid_email import SendGridEmailChannel
from channels.unsubscribe import unsubscribe_url
from channels.twilio_sms import TwilioSmsChannel, make_twilio_client
from channels.twilio_voice import TwilioVoiceChannel, call_twiml
from db.models import Contact
from runtime.settings import Settings
from runtime.worker_build import activity_settings
from tests.conftest import BORROWER
from tests.support.providers import (
    ACCOUNT_SID, AUTH_TOKEN, FROM_NUMBER, PHONE, SPECS, TEMPLATES, TWILIO_ERRORS, TWILIO_SPEC, FakeTwilio, call_script,
)

SENDGRID_SCHEMA = json.loads((SPECS / "sendgrid_mail_send_v3.json").read_text())

SERVICE_SID = "MG" + "fedcba9876543210" * 2
SENDGRID_KEY = "SG.test-key.not-real"
PUSH_TOKEN = "push-token-for-tests"
PUBLIC = "https://gateway.example.com"
KEY = "dunning-L-1001/reminder/0/sms"


def message(channel: str = "sms", key: str = KEY, language: str = "zh_CN", **fields) -> OutboundMessage:
    recipient = BORROWER["email"] if channel == "email" else PHONE
    defaults = dict(text="您好，王小明：您的借款已逾期。", subject=None, html=None)
    defaults.update(fields)
    return OutboundMessage(key=key, channel=channel, recipient=recipient, language=language, **defaults)


# ------------------------------------------------------------ Twilio's side


@pytest.fixture
def twilio(httpserver):
    fake = FakeTwilio()
    httpserver.expect_request(re.compile(r"^/2010-04-01/.*"), method="POST").respond_with_handler(fake.handle)
    fake.base_url = httpserver.url_for("").rstrip("/")
    yield fake
    httpserver.check_handler_errors()


def twilio_client(fake: FakeTwilio):
    return make_twilio_client(ACCOUNT_SID, AUTH_TOKEN, fake.base_url, timeout=5)


def test_the_twilio_subset_names_its_source():
    assert TWILIO_SPEC["source"]["npm_package"] == "@twilio-alpha/mcp" and TWILIO_SPEC["source"]["version"]
    ids = {item["post"]["operationId"] for item in TWILIO_SPEC["paths"].values()}
    assert ids == {"CreateMessage", "CreateCall"}


def test_an_sms_is_created_as_the_spec_says(twilio):
    channel = TwilioSmsChannel(twilio_client(twilio), PUBLIC, from_number=FROM_NUMBER)

    receipt = channel.send(message())

    assert twilio.problems == []
    [request] = twilio.requests
    assert request["path"] == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    form = request["form"]
    assert form["To"] == [PHONE] and form["From"] == [FROM_NUMBER] and form["Body"] == [message().text]
    callback = urlparse(form["StatusCallback"][0])
    assert f"{callback.scheme}://{callback.netloc}{callback.path}" == f"{PUBLIC}/webhooks/twilio/status"
    assert parse_qs(callback.query) == {"key": [KEY]}
    assert receipt.provider == "twilio" and receipt.message_id == twilio.created[0]["sid"]
    assert re.fullmatch(r"SM[0-9a-f]{32}", receipt.message_id)


def test_an_sms_can_go_through_a_messaging_service(twilio):
    channel = TwilioSmsChannel(twilio_client(twilio), PUBLIC, messaging_service_sid=SERVICE_SID)

    channel.send(message())

    assert twilio.problems == []
    form = twilio.requests[0]["form"]
    assert form["MessagingServiceSid"] == [SERVICE_SID] and "From" not in form


def test_the_spec_check_catches_a_bad_request(twilio):
    """The checking server is not a yes-man: an account SID of the wrong shape
    fails the spec's path pattern, and a bad credential the basic auth."""
    client = make_twilio_client("ACnot-a-sid", "wrong", twilio.base_url, timeout=5)
    with pytest.raises(PermanentSendError):
        TwilioSmsChannel(client, PUBLIC, from_number=FROM_NUMBER).send(message())
    assert any("AccountSid" in problem for problem in twilio.problems)
    assert any("Authorization" in problem for problem in twilio.problems)


@pytest.mark.parametrize("status", [429, 503])
def test_twilio_rate_limits_and_outages_are_transient(twilio, status):
    twilio.errors.append(status)
    channel = TwilioSmsChannel(twilio_client(twilio), PUBLIC, from_number=FROM_NUMBER)

    with pytest.raises(TransientSendError) as raised:
        channel.send(message())

    assert f"HTTP {status}" in str(raised.value) and str(TWILIO_ERRORS[status]["code"]) in str(raised.value)
    assert twilio.problems == []


@pytest.mark.parametrize("status", [400, 404])
def test_twilio_refusals_are_permanent_with_the_code_and_no_number(twilio, status):
    twilio.errors.append(status)
    channel = TwilioSmsChannel(twilio_client(twilio), PUBLIC, from_number=FROM_NUMBER)

    with pytest.raises(PermanentSendError) as raised:
        channel.send(message())

    text = str(raised.value)
    assert f"error {TWILIO_ERRORS[status]['code']}" in text
    assert PHONE not in text
    if status == 400:  # Twilio quoted the number; the error keeps it masked
        assert "+86***00" in text


def test_twilio_unreachable_is_transient():
    client = make_twilio_client(ACCOUNT_SID, AUTH_TOKEN, "http://127.0.0.1:9", timeout=2)
    with pytest.raises(TransientSendError):
        TwilioSmsChannel(client, PUBLIC, from_number=FROM_NUMBER).send(message())


@pytest.mark.parametrize(
    ("language", "say_language"), [("zh_CN", "zh-CN"), ("zh_TW", "zh-TW"), ("en", "en-US")]
)
def test_a_call_speaks_the_script_offers_the_menu_and_detects_machines(twilio, language, say_language):
    script_words = call_script()
    channel = TwilioVoiceChannel(twilio_client(twilio), PUBLIC, FROM_NUMBER, script_words)
    script = message("voice", key="dunning-L-1001/call/d8/0-voice", language=language, text="Hello. Script.")

    receipt = channel.send(script)

    assert twilio.problems == []
    [request] = twilio.requests
    assert request["path"] == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json"
    form = request["form"]
    assert form["To"] == [PHONE] and form["From"] == [FROM_NUMBER]
    assert form["MachineDetection"] == ["Enable"] and form["AsyncAmd"] == ["true"]
    assert form["AsyncAmdStatusCallback"][0].startswith(f"{PUBLIC}/webhooks/twilio/amd?key=")
    assert form["StatusCallback"][0].startswith(f"{PUBLIC}/webhooks/twilio/status?key=")
    assert set(form["StatusCallbackEvent"]) == {"initiated", "ringing", "answered", "completed"}
    twiml = ET.fromstring(form["Twiml"][0])
    assert twiml.tag == "Response"
    gather = twiml.find("Gather")
    assert gather.get("numDigits") == "1"
    action = urlparse(gather.get("action"))
    assert action.path == "/webhooks/twilio/gather" and parse_qs(action.query) == {"key": [script.key]}
    says = gather.findall("Say")
    assert says[0].text == "Hello. Script." and all(say.get("language") == say_language for say in says)
    assert "1" in says[1].text and "2" in says[1].text and "3" in says[1].text
    assert says[1].text == script_words[language].menu
    [goodbye] = twiml.findall("Say")
    assert goodbye.text == script_words[language].goodbye and goodbye.get("language") == say_language
    assert twiml.find("Hangup") is not None
    assert receipt == receipt.__class__("twilio", twilio.created[0]["sid"])
    assert receipt.message_id.startswith("CA")


def test_a_refused_call_is_permanent(twilio):
    twilio.errors.append(400)
    with pytest.raises(PermanentSendError) as raised:
        TwilioVoiceChannel(twilio_client(twilio), PUBLIC, FROM_NUMBER, call_script()).send(message("voice"))
    assert "21211" in str(raised.value) and PHONE not in str(raised.value)


def test_the_calls_menu_and_goodbye_are_read_from_the_templates(twilio, tmp_path):
    """Editing call_menu.ivr.j2 / call_goodbye.ivr.j2 changes what the call says."""
    templates = tmp_path / "templates"
    shutil.copytree(TEMPLATES, templates)
    (templates / "en" / "call_menu.ivr.j2").write_text("Press 1 for the link.\nPress 3 for an agent.\n")
    (templates / "en" / "call_goodbye.ivr.j2").write_text("No key was pressed. Goodbye.\n")
    channel = TwilioVoiceChannel(twilio_client(twilio), PUBLIC, FROM_NUMBER, call_script(templates))

    channel.send(message("voice", language="en", text="Hello. Script."))

    twiml = ET.fromstring(twilio.requests[0]["form"]["Twiml"][0])
    assert [say.text for say in twiml.find("Gather").findall("Say")] == [
        "Hello. Script.", "Press 1 for the link. Press 3 for an agent."]
    assert [say.text for say in twiml.findall("Say")] == ["No key was pressed. Goodbye."]
    # The other languages still say their own words.
    channel.send(message("voice", language="zh_TW", text="您好。"))
    twiml = ET.fromstring(twilio.requests[1]["form"]["Twiml"][0])
    assert twiml.find("Gather").findall("Say")[1].text == call_script()["zh_TW"].menu


@pytest.mark.parametrize(
    ("language", "spoken_in"),
    [("zh-CN", "zh_CN"), ("zh-TW", "zh_TW"), ("zh_HK", "zh_CN"), ("zh", "zh_CN"), ("fr", "en"), ("en-GB", "en"),
     ("", "en")],
)
def test_a_call_in_another_language_falls_back_as_before(language, spoken_in):
    words = call_script()
    twiml = ET.fromstring(call_twiml(message("voice", language=language, text="Script."), PUBLIC, words))
    says = [*twiml.find("Gather").findall("Say"), *twiml.findall("Say")]
    assert [say.text for say in says[1:]] == [words[spoken_in].menu, words[spoken_in].goodbye]


def test_a_voice_channel_needs_the_calls_words_in_every_language(twilio):
    words = call_script()
    del words["zh_TW"]
    with pytest.raises(ValueError, match="zh_TW"):
        TwilioVoiceChannel(twilio_client(twilio), PUBLIC, FROM_NUMBER, words)


# ---------------------------------------------------------- SendGrid's side


class FakeSendGrid:
    """Answers like api.sendgrid.com's POST /v3/mail/send: 202 and an
    X-Message-Id for a body that validates, 400 with SendGrid's error shape for
    one that does not, queued error statuses first."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.problems: list[str] = []
        self.errors: list[int] = []
        self.ids: list[str] = []
        self.validator = jsonschema.Draft202012Validator(SENDGRID_SCHEMA, format_checker=jsonschema.FormatChecker())

    def handle(self, request: Request) -> Response:
        problems = []
        if request.headers.get("Authorization") != f"Bearer {SENDGRID_KEY}":
            problems.append("Authorization is not Bearer <api key>")
        if request.mimetype != "application/json":
            problems.append(f"Content-Type {request.mimetype!r}")
        try:
            body = json.loads(request.get_data())
        except ValueError:
            body = None
            problems.append("body is not JSON")
        if body is not None:
            problems += [f"{'/'.join(map(str, e.path)) or 'body'}: {e.message}" for e in self.validator.iter_errors(body)]
            types = [part["type"] for part in body.get("content", [])]
            if "text/html" in types and types[: types.index("text/html")] not in ([], ["text/plain"]):
                problems.append("content: text/html must follow text/plain, first")
            self.bodies.append(body)
        self.problems += problems
        if problems:
            return self._error(400, [{"message": p, "field": None, "help": None} for p in problems])
        if self.errors:
            status = self.errors.pop(0)
            message = {429: "too many requests", 503: "service unavailable"}.get(status, "bad request")
            return self._error(status, [{"message": message, "field": None, "help": None}])
        message_id = secrets.token_urlsafe(16)
        self.ids.append(message_id)
        return Response(b"", status=202, headers={"X-Message-Id": message_id})

    @staticmethod
    def _error(status: int, errors: list[dict]) -> Response:
        return Response(json.dumps({"errors": errors}), status=status, content_type="application/json")


@pytest.fixture
def sendgrid(httpserver):
    fake = FakeSendGrid()
    httpserver.expect_request("/v3/mail/send", method="POST").respond_with_handler(fake.handle)
    fake.host = httpserver.url_for("").rstrip("/")
    yield fake
    httpserver.check_handler_errors()


def email_message(**fields) -> OutboundMessage:
    values = dict(subject="您的借款已逾期", text="您好，王小明。\n还款链接：https://pay.example/x",
                  html="<p>您好，王小明。</p>", key="dunning-L-1001/reminder/0/email")
    values.update(fields)
    return message("email", **values)


UNSUBSCRIBE_SECRET = "unsubscribe-test-secret"


def sendgrid_channel(fake: FakeSendGrid, key: str = SENDGRID_KEY, group_id: int | None = None) -> SendGridEmailChannel:
    # Every message carries the one-click unsubscribe headers, so every test here checks them against the spec.
    return SendGridEmailChannel(key, "collections@lender.example", "Example Lender", fake.host, timeout=5,
                                public_base_url=PUBLIC, unsubscribe_secret=UNSUBSCRIBE_SECRET, unsubscribe_group_id=group_id)


def test_an_email_is_accepted_with_its_message_id(sendgrid):
    receipt = sendgrid_channel(sendgrid).send(email_message())

    assert sendgrid.problems == []
    assert receipt.provider == "sendgrid" and receipt.message_id == sendgrid.ids[0]
    [body] = sendgrid.bodies
    assert body["personalizations"][0]["to"] == [{"email": BORROWER["email"]}]
    assert body["from"] == {"email": "collections@lender.example", "name": "Example Lender"}
    assert [part["type"] for part in body["content"]] == ["text/plain", "text/html"]
    assert body["custom_args"] == {"dunning_key": "dunning-L-1001/reminder/0/email"}
    assert sorted(body["categories"]) == ["dunning", "reminder"]
    # the custom args and categories carry no personal data
    assert BORROWER["email"] not in json.dumps(body["custom_args"]) + json.dumps(body["categories"])


def test_an_email_carries_the_one_click_unsubscribe_and_its_group(sendgrid):
    sendgrid_channel(sendgrid, group_id=4242).send(email_message())

    assert sendgrid.problems == []
    [body] = sendgrid.bodies
    url = unsubscribe_url(PUBLIC, UNSUBSCRIBE_SECRET, "dunning-L-1001/reminder/0/email")
    assert body["headers"] == {"List-Unsubscribe": f"<{url}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}
    # SendGrid's unsubscribe group: an integer id (Suppressions -> Unsubscribe Groups).
    assert body["asm"] == {"group_id": 4242} and type(body["asm"]["group_id"]) is int
    assert BORROWER["email"] not in json.dumps(body["headers"])


def test_without_a_group_no_asm_is_sent(sendgrid):
    sendgrid_channel(sendgrid).send(email_message())
    assert sendgrid.problems == [] and "asm" not in sendgrid.bodies[0] and "List-Unsubscribe" in sendgrid.bodies[0]["headers"]


def test_an_email_category_can_be_given(sendgrid):
    sendgrid_channel(sendgrid).send(email_message(category="negotiation"))
    assert sorted(sendgrid.bodies[0]["categories"]) == ["dunning", "negotiation"]


def test_a_text_only_email_is_valid(sendgrid):
    sendgrid_channel(sendgrid).send(email_message(html=None))
    assert sendgrid.problems == [] and [p["type"] for p in sendgrid.bodies[0]["content"]] == ["text/plain"]


def test_the_sendgrid_schema_refuses_a_bad_body():
    validator = jsonschema.Draft202012Validator(SENDGRID_SCHEMA, format_checker=jsonschema.FormatChecker())
    good = {"personalizations": [{"to": [{"email": "a@b.example"}]}], "from": {"email": "c@d.example"},
            "subject": "s", "content": [{"type": "text/plain", "value": "x"}]}
    assert list(validator.iter_errors(good)) == []
    for bad in (
        {**good, "personalizations": []},
        {**good, "subject": ""},
        {k: v for k, v in good.items() if k != "subject"},
        {**good, "custom_args": {"n": 1}},
        {**good, "categories": [str(i) for i in range(11)]},
        {**good, "content": [{"type": "text/html", "value": "<p>"}, {"type": "text/plain", "value": "x"}]},
        {**good, "form": {"email": "c@d.example"}},
    ):
        assert list(validator.iter_errors(bad)), bad


@pytest.mark.parametrize("status", [429, 500, 503])
def test_sendgrid_rate_limits_and_outages_are_transient(sendgrid, status):
    sendgrid.errors.append(status)
    with pytest.raises(TransientSendError) as raised:
        sendgrid_channel(sendgrid).send(email_message())
    assert f"HTTP {status}" in str(raised.value)


def test_a_bad_request_to_sendgrid_is_permanent(sendgrid):
    sendgrid.errors.append(400)
    with pytest.raises(PermanentSendError) as raised:
        sendgrid_channel(sendgrid).send(email_message())
    assert "HTTP 400" in str(raised.value) and BORROWER["email"] not in str(raised.value)


def test_a_wrong_api_key_is_permanent(sendgrid):
    with pytest.raises(PermanentSendError):
        sendgrid_channel(sendgrid, key="SG.wrong").send(email_message())


# ---------------------------------------------------------------- app push


class FakePush:
    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.errors: list[int] = []

    def handle(self, request: Request) -> Response:
        self.requests.append({"auth": request.headers.get("Authorization"), "body": json.loads(request.get_data()),
                              "idempotency": request.headers.get("Idempotency-Key")})
        if self.errors:
            return Response(json.dumps({"error": "no"}), status=self.errors.pop(0), content_type="application/json")
        return Response(json.dumps({"id": "push-123"}), status=201, content_type="application/json")


@pytest.fixture
def push(httpserver):
    fake = FakePush()
    httpserver.expect_request("/push", method="POST").respond_with_handler(fake.handle)
    fake.url = httpserver.url_for("/push")
    yield fake
    httpserver.check_handler_errors()


def test_a_push_is_posted_with_the_bearer_token(push):
    channel = AppPushChannel(push.url, PUSH_TOKEN, "Example Lender", timeout=5)
    receipt = channel.send(message("push", key="dunning-L-1001/reminder/0/push"))

    assert receipt.provider == "push" and receipt.message_id == "push-123"
    [request] = push.requests
    assert request["auth"] == f"Bearer {PUSH_TOKEN}" and request["idempotency"] == "dunning-L-1001/reminder/0/push"
    assert request["body"] == {"target": PHONE, "title": "Example Lender", "body": message().text,
                               "key": "dunning-L-1001/reminder/0/push"}


@pytest.mark.parametrize(("status", "error"), [(429, TransientSendError), (502, TransientSendError),
                                               (400, PermanentSendError), (410, PermanentSendError)])
def test_push_errors_are_mapped(push, status, error):
    push.errors.append(status)
    with pytest.raises(error):
        AppPushChannel(push.url, PUSH_TOKEN, "Example Lender", timeout=5).send(message("push"))


# -------------------------------------------------------- provider selection


def test_without_settings_every_channel_captures_locally(settings):
    channels = build_channels(settings)
    assert all(isinstance(channel, LocalCaptureChannel) for channel in channels.values())
    assert set(channels) == {"sms", "email", "voice", "push", "letter"}


def test_each_channel_takes_its_configured_provider(settings, monkeypatch):
    for name, value in {
        "DUNNING_SMS_PROVIDER": "twilio", "DUNNING_VOICE_PROVIDER": "twilio", "DUNNING_EMAIL_PROVIDER": "sendgrid",
        "DUNNING_PUSH_PROVIDER": "push", "TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_FROM_NUMBER": FROM_NUMBER, "SENDGRID_API_KEY": SENDGRID_KEY,
        "SENDGRID_FROM_EMAIL": "collections@lender.example", "DUNNING_PUSH_URL": "https://app.example/push",
        "DUNNING_PUSH_TOKEN": PUSH_TOKEN,
    }.items():
        monkeypatch.setenv(name, value)
    channels = build_channels(Settings())
    assert isinstance(channels["sms"], TwilioSmsChannel) and isinstance(channels["voice"], TwilioVoiceChannel)
    assert isinstance(channels["email"], SendGridEmailChannel) and isinstance(channels["push"], AppPushChannel)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"DUNNING_SMS_PROVIDER": "twilio"},
         ["DUNNING_SMS_PROVIDER=twilio", "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN",
          "TWILIO_FROM_NUMBER or TWILIO_MESSAGING_SERVICE_SID"]),
        ({"DUNNING_VOICE_PROVIDER": "twilio", "TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
          "TWILIO_MESSAGING_SERVICE_SID": SERVICE_SID},
         ["DUNNING_VOICE_PROVIDER=twilio", "TWILIO_FROM_NUMBER"]),
        ({"DUNNING_EMAIL_PROVIDER": "sendgrid", "SENDGRID_API_KEY": SENDGRID_KEY},
         ["DUNNING_EMAIL_PROVIDER=sendgrid", "SENDGRID_FROM_EMAIL"]),
        ({"DUNNING_PUSH_PROVIDER": "push", "DUNNING_PUSH_URL": "https://app.example/push"},
         ["DUNNING_PUSH_PROVIDER=push", "DUNNING_PUSH_TOKEN"]),
    ],
)
def test_a_missing_credential_is_a_start_up_error_naming_it(settings, monkeypatch, env, named):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ProviderConfigError) as raised:
        build_channels(Settings())
    for text in named:
        assert text in str(raised.value)


def test_an_unknown_provider_name_is_refused(settings, monkeypatch):
    monkeypatch.setenv("DUNNING_SMS_PROVIDER", "twillio")
    with pytest.raises(ValueError, match="DUNNING_SMS_PROVIDER"):
        Settings()


# ------------------------------------------------- through send_contact


def sms_request() -> ContactRequest:
    return ContactRequest(
        key="dunning-L-1001/reminder/0/sms", workflow_id="dunning-L-1001", loan_id="L-1001", borrower_id="B-77",
        stage="reminder", channel="sms", template="reminder_friendly", days_past_due=3, outstanding="1200.00",
        currency="CNY", due_date="2026-11-01",
    )


@pytest.fixture
def twilio_acts(twilio, session_factory, settings):
    channels = {name: LocalCaptureChannel(name) for name in ("email", "voice", "push")}
    channels["sms"] = TwilioSmsChannel(twilio_client(twilio), PUBLIC, from_number=FROM_NUMBER)
    return DunningActivities(
        session_factory, channels, TemplateRenderer(settings.templates_dir), activity_settings(settings)
    )


def contact_rows(session_factory) -> list[Contact]:
    with session_factory() as db:
        return db.scalars(select(Contact)).all()


def test_a_twilio_outage_is_retried_and_the_message_goes_once(twilio, twilio_acts, session_factory, seeded_borrower):
    env = ActivityEnvironment()
    twilio.errors.append(503)

    with pytest.raises(ApplicationError) as raised:
        env.run(twilio_acts.send_contact, sms_request())
    assert raised.value.type == "TransientSendError" and not raised.value.non_retryable
    assert PHONE not in str(raised.value)
    [row] = contact_rows(session_factory)
    assert row.status == "pending" and row.attempts == 1

    outcome = env.run(twilio_acts.send_contact, sms_request())  # Temporal's retry
    again = env.run(twilio_acts.send_contact, sms_request())  # a late duplicate

    assert outcome.result == again.result == "sent"
    assert len(twilio.requests) == 2 and len(twilio.created) == 1  # one message created
    assert twilio.problems == []
    assert twilio.requests[0]["form"] == twilio.requests[1]["form"]  # the stored message, sent again
    [row] = contact_rows(session_factory)
    assert row.status == "sent" and row.provider == "twilio"
    assert row.provider_message_id == twilio.created[0]["sid"] == outcome.provider_message_id


def test_a_twilio_refusal_is_recorded_failed_and_not_retried(twilio, twilio_acts, session_factory, seeded_borrower):
    env = ActivityEnvironment()
    twilio.errors.append(400)

    outcome = env.run(twilio_acts.send_contact, sms_request())
    again = env.run(twilio_acts.send_contact, sms_request())

    assert outcome.result == again.result == "failed"
    assert "21211" in outcome.detail and PHONE not in outcome.detail
    assert len(twilio.requests) == 1
    [row] = contact_rows(session_factory)
    assert row.status == "failed" and row.attempts == 1
