"""The mailed letter channel (`letter`): Lob's SDK against a local Lob that
checks every request against Lob's published OpenAPI spec
(tests/specs/lob_letters_v1.json, see its `source`) and answers like
api.lob.com (tests/support/lob_server.py); the letter's recipient built from
the borrower's postal address; provider selection from settings; and Lob's
signed webhook on the gateway (returned to sender -> `undelivered`).

No test reads the wall clock: the webhook's window is checked against an
injected "now" (`gateway.routes.lob.clock`), and the fake answers fixed dates.
"""

from __future__ import annotations

import json
import re
import socket

import httpx
import pytest
from sqlalchemy import func, select

from activities.outbox import _recipient
from channels.base import OutboundMessage, PermanentSendError, ProviderConfigError, TransientSendError
from channels.local import LocalCaptureChannel
from channels.lob_letter import HTML_MAX_CHARS, LobLetterChannel, idempotency_key, postal_address
from db.models import Borrower, Contact, WebhookDelivery
from gateway.app import create_app
from gateway.routes import lob as lob_route
from runtime.channels import build_channels
from runtime.settings import Settings
from tests.support.gateway import RecordedSignals, gateway_settings
from tests.support.lob_server import (
    API_KEY, FROM_ADDRESS_ID, LOB_SPEC, REQUEST_SCHEMA, FakeLob, validator,
)

KEY = "dunning-L-2001/run-1/validation_notice/letter"
HTML = "<html><body style='padding-top: 3in'><h1>Validation notice</h1><p>Example Lender</p></body></html>"
ADDRESS = {"name": "Jane Q. Borrower", "address_line1": "185 Berry St", "address_line2": "Suite 6100",
           "city": "San Francisco", "region": "CA", "postal_code": "94107", "country": "US"}
PERSONAL = ("Jane", "Borrower", "185 Berry", "Suite 6100", "San Francisco", "94107")


def letter(key: str = KEY, address: dict | None = None, **fields) -> OutboundMessage:
    values = dict(text="Validation notice", subject=None, html=HTML)
    values.update(fields)
    recipient = json.dumps(ADDRESS if address is None else address)
    return OutboundMessage(key=key, channel="letter", recipient=recipient, language="en", **values)


# ------------------------------------------------------------- Lob's side


@pytest.fixture
def lob(httpserver):
    fake = FakeLob()
    httpserver.expect_request(re.compile(r"^/v1/.*")).respond_with_handler(fake.handle)
    fake.base_url = httpserver.url_for("").rstrip("/")
    yield fake
    httpserver.check_handler_errors()


def channel(fake: FakeLob, api_key: str = API_KEY) -> LobLetterChannel:
    return LobLetterChannel(api_key, FROM_ADDRESS_ID, fake.base_url, timeout=5)


def test_the_lob_subset_names_its_source():
    source = LOB_SPEC["source"]
    assert source["repository"] == "https://github.com/lob/lob-openapi"
    assert source["path"] == "dist/lob-api-bundled.yml" and re.fullmatch(r"[0-9a-f]{40}", source["commit"])
    assert source["licence"].startswith("MIT") and re.fullmatch(r"[0-9a-f]{64}", source["sha256"])
    assert {(path, method, op["operationId"]) for path, item in LOB_SPEC["paths"].items() for method, op in item.items()} \
        == {("/letters", "post", "letter_create")}
    assert LOB_SPEC["servers"][0]["url"] == "https://api.lob.com/v1"


def test_a_letter_is_created_as_the_spec_says(lob):
    receipt = channel(lob).send(letter())

    assert lob.problems == []
    [request] = lob.requests
    assert request["path"] == "/v1/letters" and request["content_type"] == "application/json"
    body = request["body"]
    assert body["to"] == {"name": "Jane Q. Borrower", "address_line1": "185 Berry St", "address_line2": "Suite 6100",
                          "address_city": "San Francisco", "address_state": "CA", "address_zip": "94107",
                          "address_country": "US"}
    assert body["from"] == FROM_ADDRESS_ID and body["file"] == HTML
    assert body["use_type"] == "operational" and body["color"] is False and body["mail_type"] == "usps_first_class"
    assert body["address_placement"] == "insert_blank_page"  # the notice never printed under the address window
    # The outbox key is the Idempotency-Key and the only metadata: ids only.
    assert request["idempotency_key"] == KEY
    assert body["metadata"] == {"dunning_key": KEY}
    assert not any(part in json.dumps(body["metadata"]) for part in PERSONAL)
    assert receipt.provider == "lob" and receipt.message_id == lob.letters[0]["id"]
    assert re.fullmatch(r"ltr_[0-9a-f]{16}", receipt.message_id)


def test_the_same_key_mails_one_letter(lob):
    """Lob's Idempotency-Key: a send repeated (a retry after a crash) gets
    the first letter back, so the channel is idempotent by key."""
    assert LobLetterChannel.idempotent_by_key is True
    first = channel(lob).send(letter())
    again = channel(lob).send(letter())
    other = channel(lob).send(letter(key=KEY + "-2"))

    assert first == again and other.message_id != first.message_id
    assert len(lob.requests) == 3 and len(lob.letters) == 2 and lob.problems == []


def test_a_key_longer_than_lob_takes_is_hashed_the_same_way_every_time():
    long_key = "dunning-L-1/" + "x" * 300
    assert idempotency_key(long_key) == idempotency_key(long_key) and len(idempotency_key(long_key)) <= 256
    assert idempotency_key(KEY) == KEY


def test_the_spec_check_catches_a_bad_key_and_a_bad_address(lob):
    """The checking server is not a yes-man: a wrong API key fails the basic
    auth (401), an address the spec refuses its schema (422): both permanent."""
    with pytest.raises(PermanentSendError, match="HTTP 401"):
        channel(lob, api_key="test_wrong").send(letter())
    assert any("Authorization" in problem for problem in lob.problems)

    lob.problems.clear()
    with pytest.raises(PermanentSendError, match="HTTP 422") as raised:
        channel(lob).send(letter(address={**ADDRESS, "postal_code": "941"}))
    assert any(problem.startswith("to/address_zip: ") for problem in lob.problems) and lob.letters == []
    assert "to/address_zip" in str(raised.value) and "'941'" not in str(raised.value)  # Lob's text, the address masked


def test_the_request_schema_refuses_a_bad_body():
    check = validator(REQUEST_SCHEMA)
    good = {"to": {"name": "A", "address_line1": "1 Main St", "address_city": "X", "address_state": "CA",
                   "address_zip": "94107"}, "from": FROM_ADDRESS_ID, "file": "<html>x</html>", "color": False,
            "use_type": "operational", "metadata": {"dunning_key": "k"}}
    assert list(check.iter_errors(good)) == []
    for bad in (
        {k: v for k, v in good.items() if k != "file"},
        {k: v for k, v in good.items() if k != "use_type"},
        {**good, "use_type": "transactional"},
        {**good, "color": "no"},
        {**good, "from": "not-an-address-id"},
        {**good, "file": "<" + "x" * HTML_MAX_CHARS},
        {**good, "metadata": {"n": 1}},
        {**good, "to": {**good["to"], "address_state": "California"}},
        {**good, "to": {k: v for k, v in good["to"].items() if k != "name"}},
        {**good, "mail_type": "usps_priority"},
    ):
        assert list(check.iter_errors(bad)), bad


def test_a_422_refusal_is_permanent_with_lobs_code_and_no_address(lob):
    lob.errors.append((422, "invalid", "address_line1 '185 Berry St' for Jane Q. Borrower is not deliverable"))
    with pytest.raises(PermanentSendError) as raised:
        channel(lob).send(letter())
    text = str(raised.value)
    assert "HTTP 422" in text and "invalid" in text and "not deliverable" in text
    assert not any(part in text for part in ("185 Berry St", "Jane Q. Borrower")), text
    assert lob.problems == [] and lob.letters == []


@pytest.mark.parametrize("status", [429, 500])
def test_lob_rate_limits_and_outages_are_transient(lob, status):
    lob.errors.append(status)
    with pytest.raises(TransientSendError) as raised:
        channel(lob).send(letter())
    assert f"HTTP {status}" in str(raised.value) and lob.problems == []
    # The retry (same key) mails it, once.
    assert channel(lob).send(letter()).message_id == lob.letters[0]["id"] and len(lob.letters) == 1


def test_no_answer_from_lob_is_transient():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once it is closed
    with pytest.raises(TransientSendError, match="not reached"):
        LobLetterChannel(API_KEY, FROM_ADDRESS_ID, f"http://127.0.0.1:{port}", timeout=2).send(letter())


@pytest.mark.parametrize(("message", "reason"), [
    (letter(html=None), "HTML"),
    (letter(html="<p>" + "x" * HTML_MAX_CHARS), "10000"),
    (letter(address={**ADDRESS, "address_line1": ""}), "address_line1"),
    (OutboundMessage(key=KEY, channel="letter", recipient="+14155550100", language="en", text="x", html=HTML), "JSON"),
])
def test_a_letter_that_cannot_be_mailed_is_permanent_and_never_sent(lob, message, reason):
    with pytest.raises(PermanentSendError, match=reason):
        channel(lob).send(message)
    assert lob.requests == []


def test_a_long_name_is_cut_to_what_lob_prints(lob):
    channel(lob).send(letter(address={**ADDRESS, "name": "Maximiliana Alexandrina Featherstonehaugh-Worthington"}))
    assert lob.problems == [] and len(lob.requests[0]["body"]["to"]["name"]) == 40


# ------------------------------------------------- the borrower's address


def borrower(**fields) -> Borrower:
    values = dict(borrower_id="B-US-1", name="Jane Q. Borrower", phone="+14155550123", email="jane@example.com",
                  language="en", time_zone="America/Los_Angeles", address_line1="185 Berry St",
                  address_line2="Suite 6100", city="San Francisco", region="CA", postal_code="94107", country="US")
    values.update(fields)
    return Borrower(**values)


def test_the_letter_recipient_is_the_borrowers_postal_address_as_json(lob):
    recipient = _recipient(borrower(), "letter")
    assert json.loads(recipient) == ADDRESS
    assert postal_address(recipient) == ADDRESS

    # What the outbox stores is what the channel mails to.
    message = OutboundMessage(key=KEY, channel="letter", recipient=recipient, language="en", text="x", html=HTML)
    channel(lob).send(message)
    assert lob.problems == [] and lob.requests[0]["body"]["to"]["address_line1"] == "185 Berry St"


def test_a_borrower_without_a_first_address_line_has_no_letter_recipient():
    assert _recipient(borrower(address_line1=None), "letter") is None
    assert _recipient(borrower(address_line1="   "), "letter") is None
    assert _recipient(borrower(address_line2=None), "letter") is not None
    assert json.loads(_recipient(borrower(address_line2=None), "letter"))["address_line2"] is None
    # The other channels are as they were.
    assert _recipient(borrower(), "email") == "jane@example.com" and _recipient(borrower(), "sms") == "+14155550123"


# -------------------------------------------------------- provider selection


def test_the_letter_channel_captures_locally_unless_lob_is_chosen(settings, monkeypatch):
    assert isinstance(build_channels(settings)["letter"], LocalCaptureChannel)
    for name, value in {"DUNNING_LETTER_PROVIDER": "lob", "LOB_API_KEY": API_KEY,
                        "LOB_FROM_ADDRESS_ID": FROM_ADDRESS_ID, "LOB_API_BASE_URL": "http://127.0.0.1:9"}.items():
        monkeypatch.setenv(name, value)
    chosen = Settings()
    assert isinstance(build_channels(chosen)["letter"], LobLetterChannel)
    assert API_KEY not in repr(chosen)  # a secret


def test_lob_without_its_settings_is_a_start_up_error_naming_them(settings, monkeypatch):
    monkeypatch.setenv("DUNNING_LETTER_PROVIDER", "lob")
    with pytest.raises(ProviderConfigError) as raised:
        build_channels(Settings())
    for text in ("DUNNING_LETTER_PROVIDER=lob", "LOB_API_KEY", "LOB_FROM_ADDRESS_ID"):
        assert text in str(raised.value)
    monkeypatch.setenv("DUNNING_LETTER_PROVIDER", "lobb")
    with pytest.raises(ValueError, match="DUNNING_LETTER_PROVIDER"):
        Settings()


# ------------------------------------------------------------ the webhook


SECRET = "lob-webhook-test-secret"
NOW = 1_800_000_000  # the injected "now" (2027-01-15): no test depends on the wall clock
ROW_KEY = "dunning-L-LOB/run-1/validation_notice/letter"


@pytest.fixture
def signals() -> RecordedSignals:
    return RecordedSignals()


@pytest.fixture
async def http(settings, tmp_path, signals, monkeypatch):
    monkeypatch.setattr(lob_route, "clock", lambda: float(NOW))
    core = settings.model_copy(update={"lob_webhook_secret": SECRET})
    app = create_app(core, lambda: signals, gateway_settings(tmp_path))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
        yield client


def event(kind: str, key: str = ROW_KEY, event_id: str = "evt_0001", letter_id: str = "ltr_4868c3b754655f90") -> str:
    """A Lob webhook event, shaped as Lob's spec has it (resources/events/models/events.yml)."""
    return json.dumps({
        "id": event_id, "reference_id": letter_id, "object": "event", "date_created": "2027-01-15T08:00:00.000Z",
        "event_type": {"id": kind, "enabled_for_test": True, "resource": "letters", "object": "event_type"},
        "body": {"id": letter_id, "object": "letter", "metadata": {"dunning_key": key}},
    })


def signed(body: str, at: int = NOW, secret: str = SECRET) -> dict:
    timestamp = str(at)
    return {"Lob-Signature": lob_route.signature_for(secret, timestamp, body.encode()),
            "Lob-Signature-Timestamp": timestamp, "Content-Type": "application/json"}


def add_letter_row(session_factory, status: str = "sent", key: str = ROW_KEY) -> None:
    with session_factory.begin() as db:
        db.add(Contact(key=key, workflow_id="dunning-L-LOB", loan_id="L-LOB", borrower_id="B-US-1",
                       stage="reminder", channel="letter", template="validation_notice", language="en",
                       status=status, provider="lob" if status == "sent" else None))


def row(session_factory, key: str = ROW_KEY) -> tuple:
    with session_factory() as db:
        found = db.scalar(select(Contact).where(Contact.key == key))
        return found.status, found.error, found.provider_message_id


def deliveries(session_factory) -> int:
    with session_factory() as db:
        return db.scalar(select(func.count()).select_from(WebhookDelivery))


async def test_a_returned_letter_is_fed_back_as_undelivered(http, signals, session_factory):
    add_letter_row(session_factory)
    body = event("letter.returned_to_sender")

    response = await http.post("/webhooks/lob/events", content=body, headers=signed(body))

    assert response.status_code == 200 and response.json() == {"processed": 1}
    # A sent row never moves back (db/outbox.py NEXT): the return is its error, as a SendGrid bounce is.
    assert row(session_factory) == ("sent", "lob letter.returned_to_sender", "ltr_4868c3b754655f90")
    assert signals.sent == [("dunning-L-LOB", "contact_outcome",
                             {"step": "validation_notice/letter", "result": "undelivered"})]


async def test_a_letter_in_the_mail_is_not_delivered_but_confirms_lob_has_it(http, signals, session_factory):
    add_letter_row(session_factory, status="unconfirmed")
    for number, kind in enumerate(("letter.mailed", "letter.in_transit", "letter.processed_for_delivery")):
        body = event(kind, event_id=f"evt_mail{number}")
        assert (await http.post("/webhooks/lob/events", content=body, headers=signed(body))).json() == {"processed": 1}
    assert row(session_factory) == ("sent", None, "ltr_4868c3b754655f90")  # the doubt settled
    assert signals.sent == []  # no outcome: a scan on the way is not a delivery

    body = event("letter.delivered", event_id="evt_deliv")
    assert (await http.post("/webhooks/lob/events", content=body, headers=signed(body))).json() == {"processed": 1}
    assert [payload["result"] for _, _, payload in signals.sent] == ["delivered"]


@pytest.mark.parametrize("headers", [
    pytest.param(lambda body: signed(body, secret="not-the-secret"), id="forged"),
    pytest.param(lambda body: signed(body.replace("returned", "deliver")), id="tampered"),
    pytest.param(lambda body: {"Content-Type": "application/json"}, id="unsigned"),
    pytest.param(lambda body: {**signed(body), "Lob-Signature-Timestamp": "yesterday"}, id="bad-timestamp"),
    pytest.param(lambda body: signed(body, at=NOW - 301), id="stale"),
    pytest.param(lambda body: signed(body, at=NOW + 301), id="from-the-future"),
    pytest.param(lambda body: signed(body, at=(NOW - 301) * 1000), id="stale-in-milliseconds"),
])
async def test_a_bad_or_stale_signature_is_refused_and_changes_nothing(http, signals, session_factory, headers):
    add_letter_row(session_factory)
    body = event("letter.returned_to_sender")
    response = await http.post("/webhooks/lob/events", content=body, headers=headers(body))
    assert response.status_code == 403
    assert signals.sent == [] and deliveries(session_factory) == 0
    assert row(session_factory) == ("sent", None, None)


async def test_a_signature_in_the_window_is_accepted_in_seconds_or_milliseconds(http, signals, session_factory):
    add_letter_row(session_factory)
    one, two = event("letter.mailed", event_id="evt_s"), event("letter.mailed", event_id="evt_ms")
    assert (await http.post("/webhooks/lob/events", content=one, headers=signed(one, at=NOW - 299))).status_code == 200
    assert (await http.post("/webhooks/lob/events", content=two, headers=signed(two, at=NOW * 1000 + 299_000))).status_code == 200
    assert deliveries(session_factory) == 2


async def test_without_a_secret_every_lob_webhook_is_refused(settings, tmp_path, signals, monkeypatch):
    monkeypatch.setattr(lob_route, "clock", lambda: float(NOW))
    app = create_app(settings, lambda: signals, gateway_settings(tmp_path))  # LOB_WEBHOOK_SECRET unset
    body = event("letter.returned_to_sender")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
        for secret in ("", SECRET):
            assert (await client.post("/webhooks/lob/events", content=body, headers=signed(body, secret=secret))).status_code == 403
    assert signals.sent == []


async def test_an_unknown_key_a_replay_and_other_mail_are_harmless(http, signals, session_factory):
    add_letter_row(session_factory)
    unknown = event("letter.returned_to_sender", key="dunning-L-NONE/run-1/validation_notice/letter", event_id="evt_u")
    postcard = event("postcard.returned_to_sender", event_id="evt_p")
    no_key = json.dumps({"id": "evt_n", "event_type": {"id": "letter.returned_to_sender"}, "body": {"id": "ltr_1"}})
    for body in (unknown, postcard, no_key):
        response = await http.post("/webhooks/lob/events", content=body, headers=signed(body))
        assert response.status_code == 200 and response.json() == {"processed": 0}
    assert signals.sent == [] and row(session_factory) == ("sent", None, None)

    body = event("letter.returned_to_sender", event_id="evt_once")
    answers = [(await http.post("/webhooks/lob/events", content=body, headers=signed(body, at=NOW - i))).json()
               for i in range(3)]  # re-signed each time: Lob's retry, or a replay with fresh signatures
    assert answers == [{"processed": 1}, {"processed": 0}, {"processed": 0}]
    assert len(signals.sent) == 1

    not_json = "{not json"
    assert (await http.post("/webhooks/lob/events", content=not_json, headers=signed(not_json))).status_code == 422


async def test_an_event_for_another_channels_row_changes_nothing(http, signals, session_factory):
    with session_factory.begin() as db:
        db.add(Contact(key="dunning-L-LOB/run-1/reminder/email", workflow_id="dunning-L-LOB", loan_id="L-LOB",
                       borrower_id="B-US-1", stage="reminder", channel="email", template="t", language="en", status="sent"))
    body = event("letter.returned_to_sender", key="dunning-L-LOB/run-1/reminder/email")
    assert (await http.post("/webhooks/lob/events", content=body, headers=signed(body))).json() == {"processed": 0}
    assert signals.sent == [] and row(session_factory, "dunning-L-LOB/run-1/reminder/email") == ("sent", None, None)
