"""Issue 15, item 7: every channel tells the borrower how to stop it, and the
way it names works.

- Push: every push template carries the opt-out line in every language, and
  the template lint requires it (push is in the profiles'
  `opt_out_instruction_channels`): a push without it is a finding.
- E-mail: no "reply 'unsubscribe'" (nothing reads replies). Each e-mail sent
  through SendGrid carries `List-Unsubscribe` with a URL signed for that
  message's outbox key and `List-Unsubscribe-Post: List-Unsubscribe=One-Click`
  (RFC 8058), and the unsubscribe group when one is configured; its footer
  shows the same URL. A POST to it signals `opt_out` email to that loan's
  workflow exactly once; a forged signature, or another key's, is 403 and
  signals nothing.

The gateway runs on a fake Temporal client that records the signals.
"""

from __future__ import annotations

import html
import shutil
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from temporalio.testing import ActivityEnvironment

from activities.dunning_activities import DunningActivities
from activities.payloads import ContactRequest
from activities.rendering import TemplateRenderer
from channels.sendgrid_email import SendGridEmailChannel
from channels.unsubscribe import UNSUBSCRIBE_PATH, unsubscribe_signature, unsubscribe_signature_ok, unsubscribe_url
from compliance.template_lint import DEFAULT_PROFILES, DEFAULT_RULES, DEFAULT_TEMPLATES, lint_templates
from compliance.template_rules import load_rules, sample_contexts
from db.models import Contact
from dunning import contract
from gateway.app import create_app
from runtime.channels import build_channels
from runtime.settings import Settings
from runtime.worker_build import activity_settings
from tests.support.gateway import PUBLIC, RecordedSignals, gateway_settings
from tests.test_provider_channels import SENDGRID_KEY, FakeSendGrid

LANGUAGES = ("en", "zh_CN", "zh_TW")
PUSH_TEMPLATES = sorted(p.name for p in (DEFAULT_TEMPLATES / "en").glob("*.push.j2"))
WORKFLOW_ID = "dunning-L-OPT"
EMAIL_KEY = f"{WORKFLOW_ID}/reminder/0/email"


# ---------------------------------------------------------------------- push


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_push_template_carries_the_opt_out_line(language):
    rules = load_rules(DEFAULT_RULES)
    assert rules.opt_out_parts["push"] == "push_opt_out"
    line = rules.parts["push_opt_out"].by_language[language]
    renderer = TemplateRenderer(DEFAULT_TEMPLATES, auto_reload=False)
    assert PUSH_TEMPLATES
    for name in PUSH_TEMPLATES:
        template = name.removesuffix(".push.j2")
        for context in sample_contexts(rules, language):
            text = renderer.render_form(language, template, "push", context)
            assert line.casefold() in text.casefold(), (language, template)
            # A push stays short: a neutral first line (what a lock screen shows,
            # tests/test_message_privacy.py), then the details on one more.
            assert text.count("\n") <= 1 and len(text) <= 260, (language, template, len(text))


def test_both_profiles_want_the_opt_out_line_in_push():
    for profile in ("us", "cn"):
        text = (DEFAULT_PROFILES / f"{profile}.toml").read_text(encoding="utf-8")
        [line] = [x for x in text.splitlines() if x.startswith("opt_out_instruction_channels")]
        assert '"push"' in line, profile


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_push_template_without_the_opt_out_line_is_a_finding(tmp_path, language):
    templates = tmp_path / "templates"
    shutil.copytree(DEFAULT_TEMPLATES, templates)
    assert lint_templates(templates, DEFAULT_RULES) == []  # the control

    line = load_rules(DEFAULT_RULES).parts["push_opt_out"].by_language[language]
    push = templates / language / "reminder_friendly.push.j2"
    source = push.read_text(encoding="utf-8")
    start = source.casefold().find(line.casefold())
    assert start >= 0
    end = source.find("。", start) + 1 if language != "en" else source.find(".", start) + 1
    push.write_text(source[:start].rstrip() + source[end:], encoding="utf-8")

    findings = lint_templates(templates, DEFAULT_RULES)
    assert [(Path(f.file).relative_to(templates).as_posix(), f.rule) for f in findings] == [
        (f"{language}/reminder_friendly.push.j2", "missing-push-opt-out")
    ]


# ---------------------------------------------------------------- e-mail: the send


@pytest.fixture
def sendgrid(httpserver):
    fake = FakeSendGrid()
    httpserver.expect_request("/v3/mail/send", method="POST").respond_with_handler(fake.handle)
    fake.host = httpserver.url_for("").rstrip("/")
    yield fake
    httpserver.check_handler_errors()


@pytest.fixture
def core(settings, sendgrid, monkeypatch) -> Settings:
    """The worker's and the gateway's settings: SendGrid, with an unsubscribe group."""
    for name, value in {
        "DUNNING_EMAIL_PROVIDER": "sendgrid", "SENDGRID_API_KEY": SENDGRID_KEY,
        "SENDGRID_FROM_EMAIL": "collections@lender.example", "SENDGRID_API_HOST": sendgrid.host,
        "SENDGRID_UNSUBSCRIBE_GROUP_ID": "31337", "DUNNING_PUBLIC_BASE_URL": PUBLIC,
    }.items():
        monkeypatch.setenv(name, value)
    return Settings()


def email_request(key: str = EMAIL_KEY) -> ContactRequest:
    return ContactRequest(
        key=key, workflow_id=WORKFLOW_ID, loan_id="L-OPT", borrower_id="B-77", stage="reminder", channel="email",
        template="reminder_friendly", days_past_due=3, outstanding="1200.00", currency="USD", due_date="2026-11-01",
    )


def send_email(core: Settings, session_factory, key: str = EMAIL_KEY) -> None:
    channels = build_channels(core)
    assert isinstance(channels["email"], SendGridEmailChannel)
    acts = DunningActivities(session_factory, channels, TemplateRenderer(core.templates_dir), activity_settings(core))
    assert ActivityEnvironment().run(acts.send_contact, email_request(key)).result == "sent"


def test_an_email_carries_a_one_click_unsubscribe_signed_for_its_key(core, sendgrid, session_factory, seeded_borrower):
    send_email(core, session_factory)

    assert sendgrid.problems == []  # the headers and the group pass the Mail Send spec
    [body] = sendgrid.bodies
    headers = body["headers"]
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = headers["List-Unsubscribe"].removeprefix("<").removesuffix(">")
    assert url == unsubscribe_url(PUBLIC, core.signing_secret(), EMAIL_KEY)
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == PUBLIC and parts.path == UNSUBSCRIBE_PATH
    query = parse_qs(parts.query)
    assert query["key"] == [EMAIL_KEY]
    assert unsubscribe_signature_ok(core.signing_secret(), EMAIL_KEY, query["sig"][0])
    assert not unsubscribe_signature_ok(core.signing_secret(), f"{WORKFLOW_ID}/other/0/email", query["sig"][0])
    assert body["asm"] == {"group_id": 31337}
    # The footer: the same one-click link, in the text and the HTML; no "reply 'unsubscribe'".
    text, page = (next(c["value"] for c in body["content"] if c["type"] == t) for t in ("text/plain", "text/html"))
    assert url in text and f'href="{html.escape(url)}"' in page
    assert "reply with" not in text.lower()


def test_without_a_group_setting_no_group_is_sent(core, sendgrid, session_factory, seeded_borrower, monkeypatch):
    monkeypatch.delenv("SENDGRID_UNSUBSCRIBE_GROUP_ID")
    send_email(Settings(), session_factory)
    assert sendgrid.problems == [] and "asm" not in sendgrid.bodies[0]
    assert "List-Unsubscribe" in sendgrid.bodies[0]["headers"]


# ---------------------------------------------------------- e-mail: the click


@pytest.fixture
def signals() -> RecordedSignals:
    return RecordedSignals()


@pytest.fixture
async def http(core, tmp_path, signals):
    app = create_app(core, lambda: signals, gateway_settings(tmp_path), face="public")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=PUBLIC) as client:
        yield client


def one_click(url: str) -> dict:
    """What a mail client's one-click unsubscribe sends (RFC 8058)."""
    return {"url": url, "content": "List-Unsubscribe=One-Click",
            "headers": {"Content-Type": "application/x-www-form-urlencoded"}}


async def test_the_one_click_post_opts_the_loan_out_of_email_once(
    http, signals, core, sendgrid, session_factory, seeded_borrower
):
    send_email(core, session_factory)
    url = sendgrid.bodies[0]["headers"]["List-Unsubscribe"].strip("<>")

    first = await http.post(**one_click(url))
    again = await http.post(**one_click(url))  # replayed: the mail client's retry, or an attacker
    third = await http.post(**one_click(url))

    assert first.status_code == again.status_code == third.status_code == 200
    assert first.json() == {"opted_out": True, "duplicate": False}
    assert again.json()["duplicate"] is third.json()["duplicate"] is True
    assert signals.sent == [(WORKFLOW_ID, contract.SIGNAL_OPT_OUT, {"channel": "email"})]


async def test_the_footer_link_shows_a_button_and_changes_nothing(http, signals, core):
    url = unsubscribe_url(PUBLIC, core.signing_secret(), EMAIL_KEY)
    page = await http.get(url)
    assert page.status_code == 200 and 'method="post"' in page.text
    assert page.headers["referrer-policy"] == "no-referrer" and page.headers["cache-control"] == "no-store"
    assert signals.sent == []
    forged = await http.get(url.replace("sig=", "sig=x"))
    assert forged.status_code == 403 and signals.sent == []


async def test_a_forged_or_borrowed_signature_is_refused_and_signals_nothing(
    http, signals, core, sendgrid, session_factory, seeded_borrower
):
    send_email(core, session_factory)
    other_key = f"{WORKFLOW_ID}/reminder/1/email"
    send_email(core, session_factory, other_key)
    secret = core.signing_secret()
    base = f"{PUBLIC}{UNSUBSCRIBE_PATH}"
    refused = [
        f"{base}?key={EMAIL_KEY}&sig=" + "A" * 43,  # forged
        f"{base}?key={EMAIL_KEY}&sig=" + unsubscribe_signature(secret, other_key),  # another key's signature
        f"{base}?key={EMAIL_KEY}&sig=" + unsubscribe_signature("not-the-secret", EMAIL_KEY),  # another secret's
        f"{base}?key={EMAIL_KEY}",  # none
        f"{base}?sig=" + unsubscribe_signature(secret, EMAIL_KEY),  # no key
        f"{base}?key={EMAIL_KEY}%00&sig=" + unsubscribe_signature(secret, EMAIL_KEY),
    ]
    for url in refused:
        response = await http.post(**one_click(url))
        assert response.status_code == 403, url
    assert signals.sent == []

    # The control: the real link of the other message is acted on.
    good = unsubscribe_url(PUBLIC, secret, other_key)
    assert (await http.post(**one_click(good))).status_code == 200
    assert signals.sent == [(WORKFLOW_ID, contract.SIGNAL_OPT_OUT, {"channel": "email"})]


async def test_a_signed_key_that_is_no_email_is_404_and_signals_nothing(http, signals, core, session_factory):
    with session_factory.begin() as db:
        db.add(Contact(key=f"{WORKFLOW_ID}/reminder/0/sms", workflow_id=WORKFLOW_ID, loan_id="L-OPT", borrower_id="B-77",
                       stage="reminder", channel="sms", template="t", language="en", status="sent", provider="twilio"))
    secret = core.signing_secret()
    for key in (f"{WORKFLOW_ID}/reminder/0/sms", f"{WORKFLOW_ID}/nothing/0/email"):
        response = await http.post(**one_click(unsubscribe_url(PUBLIC, secret, key)))
        assert response.status_code == 404
    assert signals.sent == []
