"""The borrower's own requests become actions (issue 17, item 3), through
the contract: a signed `POST /webhooks/twilio/inbound` with each keyword of
config/inbound_keywords.toml in each language (en, zh_CN, zh_TW), anything
else, a number nobody has, a repeated MessageSid; and the pay page's "this
is wrong" form (`POST /pay/{token}/dispute`).

The gateway runs in the test's process with a stand-in Temporal client that
records every signal and answers the status query, so "no signal" means
nothing reached a workflow; the tasks and the stored messages are read back
from the database. The last test runs the real workflow on the time-skipping
server: an SMS dispute holds the loan and the workflow opens its own
dispute_verification task (no second one from the gateway).
"""

from __future__ import annotations

import html
import json
import re
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from temporalio.service import RPCError, RPCStatusCode

import gateway.deps
import gateway.routes.pay_page
import gateway.routes.twilio
import services.inbound
from db.models import AgentTask, Borrower, InboundMessage, Loan
from gateway import pay_csrf
from gateway.app import create_app
from gateway.routes.pay_page import DISPUTE_LABELS
from services.inbound import DISPUTE_CATEGORIES
from services.inbound_keywords import InboundConfigError, keywords_path, load_keywords
from tests.support.gateway import gateway_settings, keyed, twilio_signed
from tests.support.pay_links import mint_pay_link, plan_form, token_of
from tests.support.temporal import loan_input, overdue_since, running_worker, time_env  # noqa: F401 (fixture)

pytestmark = pytest.mark.both_databases

ROOT = Path(__file__).resolve().parent.parent
INBOUND = "/webhooks/twilio/inbound"
LENDER = "Example Lender"  # DUNNING_LENDER_NAME in the tests' settings
CONTACT = "400-820-0000"

# One borrower per language, each with its own number.
PHONES = {"en": "+15551230001", "zh_CN": "+8613800138001", "zh_TW": "+886912345001"}
UNKNOWN_PHONE = "+15559990000"
WORDS = {
    "stop": {"en": "STOP", "zh_CN": "退订", "zh_TW": "退訂"},
    "help": {"en": "help", "zh_CN": "帮助", "zh_TW": "幫助"},
    "pay": {"en": "Pay", "zh_CN": "还款", "zh_TW": "還款"},
    "dispute": {"en": "DISPUTE", "zh_CN": "异议", "zh_TW": "異議"},
    "agent": {"en": "agent", "zh_CN": "人工", "zh_TW": "人工"},
}
# Words each reply has, so a reply in another language fails the test.
IN_LANGUAGE = {"en": "STOP to opt out", "zh_CN": "回复TD退订", "zh_TW": "回覆TD退訂"}
LANGUAGES = ("en", "zh_CN", "zh_TW")


def borrower_of(language: str) -> str:
    return f"B-{language.replace('_', '')}"


def loan_of(language: str, n: int) -> str:
    return f"L-{language.replace('_', '')}-{n}"


class Loans:
    """A Temporal client standing in for the loans' workflows: records each
    signal, answers `status` (a dispute signalled shows as `disputed`), and
    can be down (every call UNAVAILABLE)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, dict]] = []
        self.statuses: dict[str, dict] = {}
        self.down = False

    def open(self, loan_id: str, borrower_id: str) -> None:
        self.statuses[f"dunning-{loan_id}"] = {
            "loan_id": loan_id, "borrower_id": borrower_id, "stage": "reminder", "outstanding": "1200.00",
            "currency": "CNY", "due_date": "2026-11-01", "days_past_due": 5, "plan": None, "disputed": False,
            "policy": "default",
        }

    def get_workflow_handle(self, workflow_id: str):
        loans = self

        def check() -> dict:
            if loans.down:
                raise RPCError("Temporal is down", RPCStatusCode.UNAVAILABLE, b"")
            if workflow_id not in loans.statuses:
                raise RPCError("workflow not found", RPCStatusCode.NOT_FOUND, b"")
            return loans.statuses[workflow_id]

        class Handle:
            async def signal(self, name: str, payload: dict) -> None:
                status = check()
                loans.sent.append((workflow_id, name, payload))
                if name == "dispute":
                    status["disputed"] = True

            async def query(self, name: str) -> dict:
                return dict(check())

        return Handle()


@pytest.fixture
def loans():
    return Loans()


def edge(tmp_path, contact: str = CONTACT):
    return gateway_settings(tmp_path).model_copy(update={"lender_contact": contact})


@pytest.fixture
def app(settings, tmp_path, loans):
    return create_app(settings, lambda: loans, edge(tmp_path))


@pytest.fixture
def client(app):
    with TestClient(app, base_url="http://testserver") as client:
        yield client


def seed(session_factory, loans: Loans, language: str, open_loans: int = 2) -> str:
    """The language's borrower with `open_loans` open loans and one closed (repaid)."""
    borrower_id = borrower_of(language)
    with session_factory.begin() as db:
        db.add(Borrower(borrower_id=borrower_id, name="Test Borrower", phone=PHONES[language], language=language,
                        time_zone="Asia/Shanghai"))
        for n in range(open_loans + 1):
            loan_id = loan_of(language, n)
            db.add(Loan(loan_id=loan_id, borrower_id=borrower_id, amount_due=Decimal("1200.00"), currency="CNY",
                        due_date=date(2026, 11, 1), policy="default", workflow_id=f"dunning-{loan_id}",
                        outcome="repaid" if n == 0 else None))
            if n:
                loans.open(loan_id, borrower_id)
    return borrower_id


def sms(client, body: str, sender: str, sid: str) -> str | None:
    """Post a signed inbound SMS; the reply's text (TwiML <Message>), or None."""
    params = {"MessageSid": sid, "From": sender, "Body": body}
    response = client.post(INBOUND, data=params, headers=twilio_signed(INBOUND, params))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/xml")
    found = re.findall(r"<Message>(.*?)</Message>", response.text, re.S)
    assert len(found) <= 1, response.text
    return html.unescape(found[0]) if found else None


def stored(session_factory) -> list[InboundMessage]:
    with session_factory() as db:
        return list(db.scalars(select(InboundMessage).order_by(InboundMessage.id)))


def tasks(session_factory) -> list[AgentTask]:
    with session_factory() as db:
        return list(db.scalars(select(AgentTask).order_by(AgentTask.id)))


# ------------------------------------------------------------------ each keyword in each language


@pytest.mark.parametrize("language", LANGUAGES)
def test_stop_opts_every_open_loan_of_the_borrower_out_of_sms(client, session_factory, loans, language):
    seed(session_factory, loans, language)
    assert sms(client, WORDS["stop"][language], PHONES[language], f"SM-stop-{language}") is None
    assert loans.sent == [(f"dunning-{loan_of(language, n)}", "opt_out", {"channel": "sms"}) for n in (1, 2)]
    [row] = stored(session_factory)
    assert (row.action, row.language, row.status) == ("stop", language, "done")
    assert row.result == f"opt_out sms: {loan_of(language, 1)}, {loan_of(language, 2)}"
    assert tasks(session_factory) == []


@pytest.mark.parametrize("body, language", [
    ("unsubscribe", "en"), ("Stop.", "en"), ("STOP please", "en"), ("ＳＴＯＰ", "en"), ("quit", "en"),
    ("TD", "zh_CN"), ("td", "zh_CN"), ("退订！", "zh_CN"), ("TD", "zh_TW"),
])
def test_every_opt_out_word_of_a_language_in_any_case_or_punctuation_opts_out(client, session_factory, loans, body, language):
    seed(session_factory, loans, language)
    sms(client, body, PHONES[language], "SM-stop-variant")
    assert [name for _, name, _ in loans.sent] == ["opt_out", "opt_out"], body
    # TD is in zh_CN and zh_TW: the borrower's own language decides which.
    assert stored(session_factory)[0].language == language


@pytest.mark.parametrize("language", LANGUAGES)
def test_help_replies_with_the_lenders_name_and_contact(client, session_factory, loans, language):
    seed(session_factory, loans, language)
    reply = sms(client, WORDS["help"][language], PHONES[language], f"SM-help-{language}")
    assert reply is not None and LENDER in reply and CONTACT in reply and IN_LANGUAGE[language] in reply, reply
    assert loans.sent == [] and tasks(session_factory) == []
    assert stored(session_factory)[0].result == "help reply"


def test_without_a_configured_contact_help_offers_the_callback(settings, tmp_path, loans, session_factory):
    seed(session_factory, loans, "en")
    with TestClient(create_app(settings, lambda: loans, edge(tmp_path, contact=""))) as client:
        reply = sms(client, "HELP", PHONES["en"], "SM-help-bare")
    assert reply == f"{LENDER}: reply AGENT and we will call you back within one working day. Reply PAY for your payment link, STOP to opt out."


@pytest.mark.parametrize("language", LANGUAGES)
def test_pay_sends_the_repayment_link_to_each_open_loan(client, session_factory, loans, language):
    seed(session_factory, loans, language)
    reply = sms(client, WORDS["pay"][language], PHONES[language], f"SM-pay-{language}")
    assert loans.sent == [(f"dunning-{loan_of(language, n)}", "send_pay_link", {}) for n in (1, 2)]
    assert reply is not None and LENDER in reply and IN_LANGUAGE[language] in reply
    assert "http" not in reply  # the link itself goes through the workflow, under its contact rules
    assert tasks(session_factory) == []


@pytest.mark.parametrize("language", LANGUAGES)
def test_dispute_with_one_open_loan_signals_it_once(client, session_factory, loans, language):
    seed(session_factory, loans, language, open_loans=1)
    reply = sms(client, WORDS["dispute"][language], PHONES[language], f"SM-disp-{language}")
    loan = f"dunning-{loan_of(language, 1)}"
    assert loans.sent == [(loan, "dispute", {"reason": "sms_dispute"})]
    assert reply is not None and IN_LANGUAGE[language] in reply
    # The workflow opens its dispute_verification task itself: none from the gateway.
    assert tasks(session_factory) == []
    # Sent again (another message): the dispute is open, so no second one
    # (it would open a second verification task).
    sms(client, WORDS["dispute"][language], PHONES[language], f"SM-disp-{language}-again")
    assert len(loans.sent) == 1
    assert [row.result for row in stored(session_factory)] == [f"dispute sent: {loan_of(language, 1)}",
                                                                f"dispute already_open: {loan_of(language, 1)}"]


@pytest.mark.parametrize("language", LANGUAGES)
def test_dispute_with_several_open_loans_opens_a_task_asking_which(client, session_factory, loans, language):
    borrower_id = seed(session_factory, loans, language, open_loans=2)
    reply = sms(client, WORDS["dispute"][language], PHONES[language], f"SM-which-{language}")
    assert loans.sent == []
    [row] = stored(session_factory)
    [task] = tasks(session_factory)
    assert (task.kind, task.status, task.borrower_id, task.loan_id, task.workflow_id) == (
        "inbound_request", "open", borrower_id, "none", "none")
    assert (task.subject, task.note) == (f"inbound:{row.id}", "sms:dispute:which_loan")
    assert row.task_id == task.id and json.loads(row.loan_ids) == [loan_of(language, 1), loan_of(language, 2)]
    assert reply is not None and IN_LANGUAGE[language] in reply


@pytest.mark.parametrize("language", LANGUAGES)
def test_agent_opens_a_callback_task(client, session_factory, loans, language):
    borrower_id = seed(session_factory, loans, language, open_loans=1)
    reply = sms(client, WORDS["agent"][language], PHONES[language], f"SM-agent-{language}")
    [task] = tasks(session_factory)
    assert (task.kind, task.loan_id, task.borrower_id, task.workflow_id, task.note) == (
        "callback", loan_of(language, 1), borrower_id, f"dunning-{loan_of(language, 1)}", "sms:agent")
    assert task.due_at - task.created_at == timedelta(hours=24)
    # 人工 is zh_CN and zh_TW alike: the reply is in the borrower's own.
    assert reply is not None and IN_LANGUAGE[language] in reply, reply
    assert loans.sent == []


@pytest.mark.parametrize("language, body", [("en", "I will pay on Friday"), ("zh_CN", "我下周一还"), ("zh_TW", "我下週一還")])
def test_anything_unrecognised_is_kept_and_becomes_a_task_for_an_agent(client, session_factory, loans, language, body):
    borrower_id = seed(session_factory, loans, language)
    assert sms(client, body, PHONES[language], f"SM-text-{language}") is None
    [row] = stored(session_factory)
    assert (row.body, row.sender, row.borrower_id, row.action, row.status) == (body, PHONES[language], borrower_id,
                                                                                "unrecognised", "done")
    [task] = tasks(session_factory)
    assert (task.kind, task.subject, task.note, task.borrower_id) == ("inbound_request", f"inbound:{row.id}",
                                                                      "sms:unrecognised", borrower_id)
    assert loans.sent == []


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_message_from_an_unknown_number_is_never_dropped(client, session_factory, loans, language):
    seed(session_factory, loans, language)
    for n, action in enumerate(("stop", "pay", "dispute", "agent")):
        assert sms(client, WORDS[action][language], UNKNOWN_PHONE, f"SM-unknown-{language}-{n}") is None
    # HELP is answered (it names no debt), and kept like the others.
    assert LENDER in (sms(client, WORDS["help"][language], UNKNOWN_PHONE, f"SM-unknown-{language}-help") or "")
    assert loans.sent == []
    rows, found = stored(session_factory), tasks(session_factory)
    assert [row.action for row in rows] == ["stop", "pay", "dispute", "agent", "help"]
    assert all(row.borrower_id is None and row.loan_ids == "[]" for row in rows)
    assert [(t.kind, t.borrower_id, t.loan_id, t.subject) for t in found] == [
        ("inbound_request", "none", "none", f"inbound:{row.id}") for row in rows]
    assert [t.note for t in found] == [f"sms:{row.action}:unknown_sender" for row in rows]


# ------------------------------------------------------------------ once, and never lost


def test_a_repeated_message_sid_acts_once_even_on_another_gateway_process(client, settings, tmp_path, session_factory, loans):
    seed(session_factory, loans, "en")
    sms(client, "STOP", PHONES["en"], "SM-REPEAT")
    assert sms(client, "STOP", PHONES["en"], "SM-REPEAT") is None
    reply = sms(client, "AGENT", PHONES["en"], "SM-REPEAT-AGENT")
    assert sms(client, "AGENT", PHONES["en"], "SM-REPEAT-AGENT") is None  # the reply once too
    with TestClient(create_app(settings, lambda: loans, edge(tmp_path))) as other:  # same database
        sms(other, "STOP", PHONES["en"], "SM-REPEAT")
        sms(other, "AGENT", PHONES["en"], "SM-REPEAT-AGENT")
    assert reply is not None
    assert [name for _, name, _ in loans.sent] == ["opt_out", "opt_out"]
    assert [row.message_key for row in stored(session_factory)] == ["SM-REPEAT", "SM-REPEAT-AGENT"]
    assert [task.kind for task in tasks(session_factory)] == ["callback"]


def test_an_action_that_fails_goes_to_an_agent_and_a_retry_does_not_repeat_it(client, session_factory, loans):
    seed(session_factory, loans, "zh_CN")
    loans.down = True
    assert sms(client, "退订", PHONES["zh_CN"], "SM-DOWN") is None
    [row] = stored(session_factory)
    [task] = tasks(session_factory)
    assert row.status == "failed" and row.result.startswith("stop failed") and row.task_id == task.id
    assert (task.kind, task.note, task.subject) == ("inbound_request", "sms:stop:failed", f"inbound:{row.id}")
    loans.down = False
    sms(client, "退订", PHONES["zh_CN"], "SM-DOWN")  # Twilio's retry: the agent has it already
    assert loans.sent == [] and len(tasks(session_factory)) == 1


def test_an_unreadable_keyword_file_still_keeps_every_message_for_an_agent(settings, tmp_path, loans, session_factory):
    config = tmp_path / "config"
    config.mkdir()
    (config / "inbound_keywords.toml").write_text("[keywords.en]\nstop = 'STOP'\n", encoding="utf-8")
    seed(session_factory, loans, "en")
    core = settings.model_copy(update={"config_dir": config})
    with TestClient(create_app(core, lambda: loans, edge(tmp_path))) as client:
        assert sms(client, "STOP", PHONES["en"], "SM-NOCONFIG") is None
    assert loans.sent == [] and [t.note for t in tasks(session_factory)] == ["sms:unrecognised"]


class Recorded:
    """A logger that keeps every event and its fields."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __getattr__(self, level: str):
        return lambda event, **fields: self.lines.append(json.dumps({"event": event, **fields}, ensure_ascii=False, default=str))


def test_the_number_and_the_text_stay_in_the_database_never_in_a_signal_a_task_or_a_log(
    client, session_factory, loans, monkeypatch, capfd,
):
    recorded = Recorded()
    for module in (services.inbound, gateway.routes.twilio, gateway.deps, gateway.routes.pay_page):
        monkeypatch.setattr(module, "log", recorded)
    seed(session_factory, loans, "zh_CN", open_loans=1)
    text = "退订 我的电话是+8613911112222"
    sms(client, text, PHONES["zh_CN"], "SM-PRIVATE-1")
    sms(client, "我的邮箱 wang@example.com，请回电", PHONES["zh_CN"], "SM-PRIVATE-2")
    sms(client, "异议", PHONES["zh_CN"], "SM-PRIVATE-3")

    rows = stored(session_factory)
    assert [row.body for row in rows][:1] == [text] and all(row.sender == PHONES["zh_CN"] for row in rows)
    outside = json.dumps([loans.sent, [(t.key, t.subject, t.note, t.loan_id, t.borrower_id) for t in tasks(session_factory)]],
                         ensure_ascii=False)
    captured = capfd.readouterr()
    logs = "\n".join(recorded.lines) + captured.out + captured.err
    assert any('"inbound_sms"' in line for line in recorded.lines)
    for secret in (PHONES["zh_CN"], "13911112222", "wang@example.com", "请回电", "我的电话"):
        assert secret not in outside and secret not in logs, secret
    assert "+86***01" in logs  # the masked number: enough to tell two apart


# ------------------------------------------------------------------ the configuration


def test_the_shipped_keywords_name_every_action_in_every_template_language():
    keywords = load_keywords(keywords_path(ROOT / "config"))
    for action, by_language in WORDS.items():
        for language, word in by_language.items():
            assert keywords.match(word, language).action == action
    assert set(keywords.replies) == set(LANGUAGES)
    assert keywords.match("I will pay") is None and keywords.match("") is None


@pytest.mark.parametrize("text, named", [
    ("[keywords.en]\nstop = ['STOP']\n", "keywords.en.help: a list of at least one word is required"),
    ("[keywords.en]\nstop = ['STOP']\nhelp = ['HELP']\npay = ['PAY']\ndispute = ['DISPUTE']\nagent = ['STOP']\n",
     "keywords.en.agent[0]: 'STOP' already names stop"),
    ("[keywords.en]\nstop = ['STOP']\nhelp = ['HELP']\npay = ['PAY']\ndispute = ['X']\nagent = ['A']\nrefund = ['R']\n",
     "keywords.en.refund: not an action"),
    ("[keywords.english]\n", "keywords.english: not a language code"),
    ("[keywords.en]\nstop = ['STOP', '']\n", "keywords.en.stop[1]: a word is 1 to 32 characters"),
    ("keywords = 1\n", "keywords: a table per language is required"),
    ("[keyword.en]\n", "keyword: not a table of this file"),
    ("not toml = = 1", "not valid TOML"),
])
def test_a_bad_keyword_file_is_refused_naming_the_key(tmp_path, text, named):
    path = tmp_path / "inbound_keywords.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InboundConfigError) as error:
        load_keywords(path)
    assert str(error.value).startswith(f"{path}: ") and named in str(error.value), str(error.value)


@pytest.mark.parametrize("reply, named", [
    (None, "replies.en.help: a text of 1 to 670 characters is required"),
    ("{lender_name} {borrower_name}", "replies.en.help: {borrower_name} is not one of {lender_contact}, {lender_name}"),
    ("{lender_name.__class__}", "replies.en.help: {lender_name.__class__} is not one of"),
    ("{lender_name", "replies.en.help: "),
])
def test_a_bad_reply_is_refused_naming_it(tmp_path, reply, named):
    text = (ROOT / "config" / "inbound_keywords.toml").read_text(encoding="utf-8")
    original = next(line for line in text.splitlines() if line.startswith("help = ") and "{lender_contact}" in line)
    text = text.replace(original, "" if reply is None else f"help = {json.dumps(reply)}", 1)
    path = tmp_path / "inbound_keywords.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InboundConfigError, match=re.escape(named)):
        load_keywords(path)


# ------------------------------------------------------------------ the pay page's "this is wrong" form


LOAN = "L-PAY-FORM"


def dispute_form(token: str, reason: str | None, note: str | None = None) -> tuple[dict, dict]:
    data, cookies = plan_form(token, "0")
    del data["offer"]
    data.update({k: v for k, v in (("reason", reason), ("note", note)) if v is not None})
    return data, cookies


def post_dispute(client, token: str, reason: str | None, note: str | None = None, **kwargs):
    data, cookies = dispute_form(token, reason, note)
    client.cookies.clear()
    for name, value in cookies.items():
        client.cookies.set(name, value, path="/pay/")
    return client.post(f"/pay/{token}/dispute", data=data, **kwargs)


def test_the_pay_page_has_the_form_not_a_link_out(client, session_factory, loans):
    loans.open(LOAN, "B-77")
    token = token_of(mint_pay_link(session_factory, LOAN))
    page = client.get(f"/pay/{token}")
    assert page.status_code == 200
    assert f'action="{token}/dispute"' in page.text and page.text.count('name="reason"') == len(DISPUTE_CATEGORIES)
    assert 'name="note"' in page.text and f'name="{pay_csrf.FIELD}"' in page.text
    assert tuple(DISPUTE_LABELS) == DISPUTE_CATEGORIES
    # The lender's page is reached to pay or to ask for a plan; a dispute stays here.
    assert len(re.findall(r'href="https://lender\.example/pay', page.text)) == 2


def test_the_form_raises_a_dispute_with_its_category_and_keeps_the_note_in_the_database(client, session_factory, loans):
    loans.open(LOAN, "B-77")
    token = token_of(mint_pay_link(session_factory, LOAN))
    note = "I paid 300 on 3 Nov, receipt R-77; call me on +8613800138000"
    done = post_dispute(client, token, "already_paid", note)
    assert done.status_code == 200, done.text
    assert "we are looking into it" in done.text and "paused collection" in done.text
    assert loans.sent == [(f"dunning-{LOAN}", "dispute", {"reason": "pay_page:already_paid"})]
    [row] = stored(session_factory)
    assert (row.channel, row.action, row.category, row.body, row.borrower_id, row.status, row.sender) == (
        "pay_page", "dispute", "already_paid", note, "B-77", "done", None)
    assert json.loads(row.loan_ids) == [LOAN]
    # The workflow opens the dispute_verification task: the gateway opens none (no double).
    assert tasks(session_factory) == []

    # Sent again: the dispute is open, nothing is signalled twice; the page
    # now says it is under review instead of showing the form.
    again = post_dispute(client, token, "amount_wrong")
    assert again.status_code == 200 and "already looking into it" in again.text
    assert len(loans.sent) == 1 and stored(session_factory)[1].result == f"dispute already_open: {LOAN} (pay_page:amount_wrong)"
    page = client.get(f"/pay/{token}")
    assert "paused collection" in page.text and f'action="{token}/dispute"' not in page.text


def test_a_bad_reason_or_note_is_a_422_and_changes_nothing(client, session_factory, loans):
    loans.open(LOAN, "B-77")
    token = token_of(mint_pay_link(session_factory, LOAN))
    for reason, note in ((None, None), ("wrong", None), ("other", "x" * 501), ("other", "a\x00b")):
        answer = post_dispute(client, token, reason, note)
        assert answer.status_code == 422, (reason, answer.text)
        assert "Please" in answer.text
    assert loans.sent == [] and stored(session_factory) == []


def test_another_sites_post_or_a_form_without_the_pages_proof_raises_nothing(client, session_factory, loans):
    loans.open(LOAN, "B-77")
    token = token_of(mint_pay_link(session_factory, LOAN))
    client.cookies.clear()
    assert client.post(f"/pay/{token}/dispute", data={"reason": "other"}).status_code == 403
    assert post_dispute(client, token, "other", headers={"Origin": "https://evil.example"}).status_code == 403
    assert post_dispute(client, token, "other", headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
    other = token_of(mint_pay_link(session_factory, LOAN, key="another"))
    data, cookies = dispute_form(other, "other")  # a proof made for another pay token
    client.cookies.clear()
    client.cookies.set(pay_csrf.COOKIE, cookies[pay_csrf.COOKIE], path="/pay/")
    assert client.post(f"/pay/{token}/dispute", data=data).status_code == 403
    assert post_dispute(client, f"{token[:-2]}xx", "other").status_code == 410
    assert loans.sent == [] and stored(session_factory) == []


def test_when_temporal_fails_after_the_form_was_stored_an_agent_gets_it(client, session_factory, loans, monkeypatch):
    loans.open(LOAN, "B-77")
    token = token_of(mint_pay_link(session_factory, LOAN))

    async def unreachable(self, workflow_id, name, payload):
        raise RPCError("Temporal is down", RPCStatusCode.UNAVAILABLE, b"")

    monkeypatch.setattr(gateway.deps.Gateway, "signal", unreachable)
    answer = post_dispute(client, token, "not_my_loan", "never borrowed")
    assert answer.status_code == 200 and "An agent will contact you" in answer.text
    [row] = stored(session_factory)
    [task] = tasks(session_factory)
    assert (row.status, row.task_id, row.body) == ("failed", task.id, "never borrowed")
    assert (task.kind, task.loan_id, task.note, task.subject) == ("inbound_request", LOAN, "pay_page:dispute:failed",
                                                                  f"inbound:{row.id}")


# ------------------------------------------------------------------ the real workflow


async def wait_for(handle, time_env, condition, tries: int = 60) -> dict:
    for _ in range(tries):
        status = await handle.query("status")
        if condition(status):
            return status
        await time_env.sleep(timedelta(minutes=30))
    raise AssertionError(f"never: {status}")


@pytest.mark.sqlite_only
async def test_an_sms_dispute_holds_the_loan_and_the_workflow_opens_one_verification_task(
    time_env, settings, seeded_borrower, session_factory, tmp_path,
):
    async with running_worker(time_env.client, settings) as started:
        handle = await started.start(loan_input("L-SMS-DISP", await overdue_since(time_env, 1)))
        # The loan's directory row (its first activity writes it): the number finds the loan through it.
        for _ in range(60):
            with session_factory() as db:
                if db.get(Loan, "L-SMS-DISP") is not None:
                    break
            await time_env.sleep(timedelta(seconds=5))
        core = settings.model_copy(update={"task_queue": started.task_queue})
        app = create_app(core, lambda: time_env.client, edge(tmp_path))
        params = {"MessageSid": "SM-REAL-DISP", "From": "+8613800138000", "Body": "异议"}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver",
                                     headers=keyed(app)) as http:
            for _ in range(2):  # and Twilio's retry
                answer = await http.post(INBOUND, data=params, headers=twilio_signed(INBOUND, params))
                assert answer.status_code == 200
            status = await wait_for(handle, time_env, lambda s: s["disputed"] and s["open_tasks"])
            assert [t["kind"] for t in status["open_tasks"]] == ["dispute_verification"]
            listed = (await http.get("/tasks", params={"loan_id": "L-SMS-DISP"})).json()["tasks"]
        assert [t["kind"] for t in listed] == ["dispute_verification"]
        history = await handle.fetch_history()
        signals = [e.workflow_execution_signaled_event_attributes.signal_name for e in history.events
                   if e.HasField("workflow_execution_signaled_event_attributes")]
        assert signals == ["dispute"]
        await time_env.sleep(timedelta(seconds=1))
