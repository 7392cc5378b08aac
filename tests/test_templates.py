"""Message templates (config/templates), their renderer and the one-click pay link."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import jinja2
import pytest
from jinja2 import meta
from jinja2.sandbox import SecurityError

from activities.pay_link import PayLinkInvalid, pay_link_url, pay_token
from activities.rendering import (
    CHANNEL_FORMS,
    CHANNELS,
    CONTEXT_KEYS,
    FILTERS,
    LOCALES,
    RenderedMessage,
    TemplateMissing,
    TemplateRenderer,
    babel_locale,
    format_day,
    format_money,
)
from channels.unsubscribe import unsubscribe_url
from loaders.config_files import load_policy

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = ROOT / "config" / "templates"
POLICIES = ROOT / "config" / "policies"

LANGUAGES = ("en", "zh_CN", "zh_TW")
REQUIRED_TEMPLATES = (
    "reminder_friendly",
    "reminder_followup",
    "call_script",
    "plan_offer",
    "bureau_notice",
    "legal_notice",
    "validation_notice",  # the planner's first contact under the us profile (Reg F 1006.34)
)
SECRET = "test-pay-link-secret"
BASE_URL = "https://pay.example.com/p/"
LOAN_ID = "L-1001"
PAY_LINK = pay_link_url(BASE_URL, pay_token(SECRET, f"dunning-{LOAN_ID}/test"))
UNSUBSCRIBE_URL = unsubscribe_url("https://gw.example.com", SECRET, f"dunning-{LOAN_ID}/test")

BORROWERS = {"en": "Wang Xiaoming", "zh_CN": "王小明", "zh_TW": "王小明"}
LENDERS = {"en": "Acme Lending", "zh_CN": "安心小贷", "zh_TW": "安心小貸"}

# Where a reader learns how to stop each kind of message.
SMS_OPT_OUT = {"en": "Reply STOP to opt out.", "zh_CN": "回复TD退订", "zh_TW": "回覆TD退訂"}
EMAIL_OPT_OUT = {"en": "unsubscribe", "zh_CN": "退订", "zh_TW": "退訂"}
PUSH_OPT_OUT = {"en": "To stop, turn off notifications in the app.", "zh_CN": "退订请在App内关闭通知", "zh_TW": "退訂請在App內關閉通知"}

# Words a consumer collections message must never use (matched as substrings,
# case-insensitively, over every file, layouts included).
BANNED_WORDS = (
    # en
    "threat", "arrest", "police", "jail", "prison", "blacklist", "black list", "criminal",
    "warrant", "family", "relative", "employer", "workplace", "colleague", "coworker",
    "neighbo", "shame", "expose", "seize",
    # zh_CN
    "威胁", "恐吓", "逮捕", "警察", "公安", "坐牢", "监狱", "拘留", "刑事", "犯罪", "黑名单",
    "家人", "家属", "亲属", "亲友", "父母", "配偶", "通讯录", "单位", "同事", "领导", "曝光",
    # zh_TW
    "威脅", "恐嚇", "監獄", "黑名單", "家屬", "親屬", "親友", "通訊錄", "單位", "主管", "傳票",
)


# The channels every template is sent on; a letter is the validation notice's alone.
MESSAGE_CHANNELS = tuple(channel for channel in CHANNELS if channel != "letter")
LETTER_TEMPLATES = ("validation_notice",)


def sample_notice(language: str = "en") -> dict:
    return {
        "collector_name": "Acme Recovery", "collector_address": ["PO Box 1000", "Wilmington, DE 19801"],
        "collector_phone": None, "dispute_email": "disputes@acme.example", "dispute_url": None,
        "consumer_name": BORROWERS.get(language, "Wang Xiaoming"), "consumer_address": ["1 Main St", "Albany, NY 12207"],
        "current_creditor": LENDERS.get(language, "Acme Lending"), "creditor_on_itemization_date": "Acme Bank",
        "account_last4": "6789", "itemization_date": date(2026, 11, 1), "amount_on_itemization_date": Decimal("1200.00"),
        "interest_since": Decimal("0.00"), "fees_since": Decimal("0.00"), "paid_or_credited_since": Decimal("0.00"),
        "current_amount": Decimal("1200.00"), "itemized": False, "provided_on": date(2026, 11, 5),
        "validation_period_ends": date(2026, 12, 12), "debt_collector": False,
    }


def context(language: str = "en", **overrides) -> dict:
    values = {
        "lender_name": LENDERS.get(language, "Acme Lending"),
        "borrower_name": BORROWERS.get(language, "Wang Xiaoming"),
        "amount": Decimal("1200.00"),
        "currency": "CNY",
        "due_date": date(2026, 11, 1),
        "days_past_due": 12,
        "pay_link": PAY_LINK,
        "loan_id": LOAN_ID,
        "stage": "call",
        "unsubscribe_url": UNSUBSCRIBE_URL,
        "debt_collector": False,  # 12 CFR 1006.18(e); tests/test_message_privacy.py renders both ways
        "call_recorded": False,  # a recorded call says so first: tests/test_call_recording.py
        "summary": None,  # a merged message's loans (borrower_summary): tests/test_borrower_coordination.py
        "time_barred": False,  # a time-barred debt's variant: tests/test_time_barred.py renders both ways
        "limitation_disclosure": "",
        # The validation notice's information (tests/test_validation_notice.py reads it back in full).
        "notice": sample_notice(language),
    }
    values.update(overrides)
    assert set(values) == CONTEXT_KEYS
    return values


def policy_steps() -> list[tuple[str, str]]:
    """(channel, template) of every step of every stage of every policy."""
    steps = set()
    for path in sorted(POLICIES.glob("*.toml")):
        policy = load_policy(path.stem, POLICIES)
        for stage_name in type(policy.stages).model_fields:
            for step in policy.stage(stage_name).steps:
                steps.add((step.channel, step.template))
    assert steps, "no policy under config/policies names a template"
    return sorted(steps)


@pytest.fixture(scope="module")
def renderer() -> TemplateRenderer:
    return TemplateRenderer(TEMPLATES)


def check_message(channel: str, language: str, message: RenderedMessage, ctx: dict) -> None:
    assert isinstance(message, RenderedMessage)
    assert message.text.strip()
    assert "{{" not in message.text and "{%" not in message.text
    if channel == "letter":
        # One printable HTML document, as text and as html; no links to follow on paper.
        assert message.subject is None and message.html == message.text
        assert message.html.startswith("<!DOCTYPE html>") and ctx["pay_link"] not in message.html
        return
    if channel == "email":
        assert message.subject and message.html
        assert "\n" not in message.subject
        assert ctx["pay_link"] in message.text
        assert f'href="{ctx["pay_link"]}"' in message.html
        assert EMAIL_OPT_OUT[language] in message.text.lower()
        assert EMAIL_OPT_OUT[language] in message.html.lower()
        # The one-click unsubscribe link, not "reply 'unsubscribe'" (nothing reads replies).
        assert ctx["unsubscribe_url"] in message.text
        assert f'href="{ctx["unsubscribe_url"].replace("&", "&amp;")}"' in message.html
        assert "reply with" not in message.text.lower() and "回复“退订”" not in message.text and "回覆「退訂」" not in message.text
    else:
        assert message.subject is None and message.html is None
        assert message.text == message.text.strip()
    if channel == "sms":
        assert ctx["pay_link"] in message.text
        assert SMS_OPT_OUT[language] in message.text
    if channel == "voice":
        assert ctx["pay_link"] not in message.text
        assert "http" not in message.text.lower()
        assert "1" in message.text  # "press 1" / "请按1" for the link by SMS
    if channel == "push":
        assert PUSH_OPT_OUT[language] in message.text
    if channel == "voice":
        assert "\n" not in message.text
    if channel == "push":
        # A neutral first line (what the lock screen shows), then the details
        # (tests/test_message_privacy.py).
        assert message.text.count("\n") <= 1


# ------------------------------------------------------------------ inventory


def test_every_required_template_exists_in_every_language(renderer):
    names = renderer.names()
    missing = [
        f"{lang}/{template}.{form}.j2"
        for lang in LANGUAGES
        for template in REQUIRED_TEMPLATES
        for channel, forms in CHANNEL_FORMS.items()
        for form in forms
        if (lang, template, form) not in names and (channel != "letter" or template in LETTER_TEMPLATES)
    ]
    assert not missing
    assert set(LANGUAGES) <= set(renderer.languages())
    # Layouts are not templates of their own.
    assert not any(template.startswith("_") for _, template, _ in names)


@pytest.mark.parametrize("channel,template", policy_steps())
@pytest.mark.parametrize("language", LANGUAGES)
def test_every_policy_template_renders(renderer, language, channel, template):
    ctx = context(language)
    message = renderer.render(template, channel, language, ctx)
    check_message(channel, language, message, ctx)
    if channel != "push":  # a push lands on the borrower's own device; the others name who they are for
        assert ctx["borrower_name"] in message.text


@pytest.mark.parametrize("template", REQUIRED_TEMPLATES)
@pytest.mark.parametrize("channel", MESSAGE_CHANNELS)
@pytest.mark.parametrize("language", LANGUAGES)
def test_every_form_renders(renderer, language, channel, template):
    ctx = context(language, days_past_due=1)
    check_message(channel, language, renderer.render(template, channel, language, ctx), ctx)


def test_templates_use_only_the_context_variables():
    env = jinja2.Environment()
    env.filters.update(FILTERS)  # an unknown filter fails to parse
    for path in sorted(TEMPLATES.rglob("*.j2")):
        used = meta.find_undeclared_variables(env.parse(path.read_text(encoding="utf-8")))
        assert used <= CONTEXT_KEYS, f"{path.relative_to(TEMPLATES)} uses {sorted(used - CONTEXT_KEYS)}"


def test_no_template_uses_a_banned_word():
    found = []
    for path in sorted(TEMPLATES.rglob("*")):
        if path.is_file():
            # CSS is not read by anyone ("font-family" is not about a family).
            text = re.sub(r'style="[^"]*"', "", path.read_text(encoding="utf-8")).lower()
            found += [f"{path.relative_to(TEMPLATES)}: {word}" for word in BANNED_WORDS if word in text]
    assert not found


@pytest.mark.parametrize("language", LANGUAGES)
def test_sms_fits_in_two_segments_with_a_real_link(renderer, language):
    # One segment is 160 GSM-7 characters (70 for Chinese): the link alone takes
    # most of that, so the aim is at most two concatenated segments.
    limit = {"en": 306, "zh_CN": 134, "zh_TW": 134}[language]
    for template in REQUIRED_TEMPLATES:
        text = renderer.render(template, "sms", language, context(language)).text
        assert len(text) <= limit, f"{language} {template}: {len(text)} characters"


def test_wording_follows_the_numbers(renderer):
    en = renderer.render("reminder_followup", "sms", "en", context("en", days_past_due=1)).text
    assert "1 day overdue" in en
    en = renderer.render("reminder_followup", "sms", "en", context("en", days_past_due=5)).text
    assert "5 days overdue" in en

    # Money and dates come from Babel, in the locale of the message's language.
    zh = renderer.render("reminder_friendly", "email", "zh_CN", context("zh_CN"))
    assert "2026年11月1日" in zh.text and "¥1,200.00" in zh.text and "CN¥" not in zh.text
    assert "¥1,200.00" in zh.html and "¥1,200.00" in zh.subject + zh.text
    usd = renderer.render("reminder_followup", "sms", "zh_CN", context("zh_CN", currency="USD")).text
    assert "US$1,200.00" in usd and "元" not in usd
    en = renderer.render("reminder_friendly", "sms", "en", context("en")).text
    assert "November 1, 2026" in en and "CN¥1,200.00" in en
    assert "$1,200.00" in renderer.render("reminder_followup", "sms", "en", context("en", currency="USD")).text
    tw = renderer.render("reminder_friendly", "sms", "zh_TW", context("zh_TW", currency="TWD")).text
    assert "NT$1,200.00" in tw and "2026年11月1日" in tw
    jpy = renderer.render("plan_offer", "sms", "zh_CN", context("zh_CN", amount=Decimal("123456"), currency="JPY"))
    assert "JP¥123,456" in jpy.text and "123,456.00" not in jpy.text
    # A decimal string is money too; the amount keeps its precision.
    odd = renderer.render("plan_offer", "push", "en", context("en", amount="1200.5", currency="USD")).text
    assert "$1,200.50" in odd


def test_notices_say_what_they_are_about(renderer):
    for language, bureau, legal in (
        ("en", "credit bureau", "legal recovery"),
        ("zh_CN", "征信", "法律途径"),
        ("zh_TW", "徵信", "法律途徑"),
    ):
        for channel in MESSAGE_CHANNELS:
            assert bureau in renderer.render("bureau_notice", channel, language, context(language)).text
            legal_text = renderer.render("legal_notice", channel, language, context(language)).text
            assert legal in legal_text
    email = renderer.render("legal_notice", "email", "en", context("en")).text
    assert "dispute" in email and "instalment plan" in email


@pytest.mark.parametrize("language,dispute", [("en", "dispute"), ("zh_CN", "异议"), ("zh_TW", "異議")])
def test_validation_notice_says_what_regulation_f_asks(renderer, language, dispute):
    # Who the lender is, what is owed, the 30-day right to dispute, that
    # collection stops while a dispute is reviewed, and how to dispute.
    ctx = context(language, currency="USD")
    ends = format_day(ctx["notice"]["validation_period_ends"], babel_locale(language))
    for channel in CHANNELS:
        text = renderer.render("validation_notice", channel, language, ctx).text
        # The e-mail and the letter are Model Form B-1: the period's end is a
        # date (tests/test_validation_notice.py reads them in full).
        assert dispute in text and (ends if channel in ("email", "letter") else "30") in text, channel
        assert ctx["lender_name"] in text, channel
        if channel != "push":
            assert "US$1,200.00" in text or "$1,200.00" in text, channel
    email = renderer.render("validation_notice", "email", language, ctx)
    pause = {"en": "stop collection", "zh_CN": "停止催收", "zh_TW": "停止催收"}[language]
    how = {"en": "write to us", "zh_CN": "写信给我们", "zh_TW": "寫信給我們"}[language]
    for body in (email.text, email.html):
        assert pause in body and how in body and ctx["pay_link"] in body and ctx["loan_id"] in body


# ------------------------------------------------------------------ keypad answers

# What a call says after a key is pressed, word for word as the gateway has
# always said it (gateway/ivr.py renders the keypad_*.ivr.j2 templates).
KEYPAD_WORDS = {
    "en": ("en-US", {
        "keypad_pay_link": "Thank you. We are sending the repayment link to your phone by text message.",
        "keypad_plan": "Thank you. A repayment plan has been set up for you. You will receive its schedule by text message.",
        "keypad_plan_failed": "Sorry, we could not set up a repayment plan now. An agent will call you back to agree on a plan or a promise to pay.",
        "keypad_agent": "Thank you. An agent will call you back about your question or dispute within one working day.",
        "keypad_other": "Sorry, that is not an option. Goodbye.",
    }),
    "zh_CN": ("zh-CN", {
        "keypad_pay_link": "谢谢。我们将通过短信把还款链接发送到您的手机。",
        "keypad_plan": "谢谢。我们已为您设立分期还款计划，还款安排将通过短信发送给您。",
        "keypad_plan_failed": "抱歉，目前无法为您设立分期还款计划。客服将回电与您商定还款计划或还款承诺。",
        "keypad_agent": "谢谢。客服将在一个工作日内就您的问题或异议给您回电。",
        "keypad_other": "抱歉，没有这个选项。再见。",
    }),
    "zh_TW": ("zh-TW", {
        "keypad_pay_link": "謝謝。我們將透過簡訊把還款連結傳送到您的手機。",
        "keypad_plan": "謝謝。我們已為您設立分期還款計畫，還款安排將透過簡訊傳送給您。",
        "keypad_plan_failed": "抱歉，目前無法為您設立分期還款計畫。客服將回電與您商定還款計畫或還款承諾。",
        "keypad_agent": "謝謝。客服將在一個工作日內就您的問題或異議給您回電。",
        "keypad_other": "抱歉，沒有這個選項。再見。",
    }),
}


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_keypad_answers_are_templates_in_every_language(renderer, language):
    from gateway import ivr

    say_language, words = KEYPAD_WORDS[language]
    assert set(words) == {*ivr.KEYPAD.values(), ivr.PLAN_NOT_SET_UP, ivr.NOT_AN_OPTION}
    for template, said in words.items():
        assert ivr.keypad_answer(renderer, language, template) == (said, say_language)
        assert (language, template, "ivr") in renderer.names()


@pytest.mark.parametrize("language", ["", "xx", "zh-CN", "zh_HK", "../en"])
def test_a_keypad_answer_in_a_language_calls_are_not_made_in_is_english(renderer, language):
    from gateway import ivr

    assert ivr.keypad_answer(renderer, language, ivr.NOT_AN_OPTION) == ("Sorry, that is not an option. Goodbye.", "en-US")


# What a call says around its voice script (the keypad menu, and the goodbye
# when no key is pressed), word for word as the call has always said it
# (runtime/channels.py renders call_menu.ivr.j2 and call_goodbye.ivr.j2 for
# the Twilio voice channel).
CALL_WORDS = {
    "en": (
        "To receive the repayment link by text message, press 1. To set up a repayment plan in instalments, press 2. "
        "To speak to an agent or to dispute this debt, press 3.",
        "We did not receive a choice. Thank you for your time. Goodbye.",
    ),
    "zh_CN": (
        "如需通过短信接收还款链接，请按1。如需分期还款，请按2。转接人工客服或提出异议，请按3。",
        "我们没有收到您的选择。感谢接听，再见。",
    ),
    "zh_TW": (
        "如需透過簡訊接收還款連結，請按1。如需分期還款，請按2。轉接專人客服或提出異議，請按3。",
        "我們沒有收到您的選擇。感謝接聽，再見。",
    ),
}


def test_the_calls_menu_and_goodbye_are_templates_in_every_language(renderer):
    from channels.twilio_voice import CallWords
    from runtime.channels import CALL_GOODBYE, CALL_MENU, call_script

    assert call_script(renderer) == {
        language: CallWords(menu=menu, goodbye=goodbye) for language, (menu, goodbye) in CALL_WORDS.items()
    }
    for language in LANGUAGES:
        assert {(language, CALL_MENU, "ivr"), (language, CALL_GOODBYE, "ivr")} <= renderer.names()


# ------------------------------------------------------------------ renderer


def test_html_is_escaped_and_text_is_not(renderer):
    ctx = context("en", borrower_name="<script>alert(1)</script>", lender_name="Tom & Jerry's")
    message = renderer.render("reminder_friendly", "email", "en", ctx)
    assert "<script>" not in message.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in message.html
    assert "Tom &amp; Jerry&#39;s" in message.html
    # Plain text and the subject are not HTML: they carry the name as it is.
    assert "<script>alert(1)</script>" in message.text
    assert "Tom & Jerry's" in message.subject


def test_subject_and_voice_are_one_line(renderer):
    ctx = context("en", lender_name="Acme\r\nBcc: someone@example.com")
    message = renderer.render("reminder_friendly", "email", "en", ctx)
    assert "\n" not in message.subject and "\r" not in message.subject
    voice = renderer.render("call_script", "voice", "en", ctx).text
    assert "\n" not in voice and "\r" not in voice


def test_missing_variable_raises(tmp_path):
    (tmp_path / "en").mkdir()
    (tmp_path / "en" / "hello.sms.j2").write_text("Hi {{ borrower_name }}, {{ not_in_context }}\n")
    renderer = TemplateRenderer(tmp_path)
    with pytest.raises(jinja2.UndefinedError, match="not_in_context"):
        renderer.render("hello", "sms", "en", context("en"))
    # A variable the caller forgot is just as fatal.
    ctx = context("en")
    del ctx["borrower_name"]
    with pytest.raises(jinja2.UndefinedError, match="borrower_name"):
        renderer.render("hello", "sms", "en", ctx | {"not_in_context": "x"})


def test_sandbox_refuses_unsafe_attributes(tmp_path):
    (tmp_path / "en").mkdir()
    (tmp_path / "en" / "evil.sms.j2").write_text("{{ loan_id.__class__.__mro__ }}")
    with pytest.raises(SecurityError):
        TemplateRenderer(tmp_path).render("evil", "sms", "en", context("en"))


@pytest.mark.parametrize("language", ["fr", "zh_HK", "zh", "", "../en", "en/../zh_CN"])
def test_unknown_language_falls_back_to_english(renderer, language):
    for channel in MESSAGE_CHANNELS:
        assert renderer.render("reminder_friendly", channel, language, context("en")) == renderer.render(
            "reminder_friendly", channel, "en", context("en")
        )
    # English text, English numbers and dates.
    text = renderer.render("reminder_friendly", "sms", language, context("en")).text
    assert "CN¥1,200.00" in text and "November 1, 2026" in text


def test_zh_tw_is_its_own_language(renderer):
    ctx = context("zh_TW", currency="TWD")
    for channel in MESSAGE_CHANNELS:
        tw = renderer.render("reminder_followup", channel, "zh_TW", ctx)
        cn = renderer.render("reminder_followup", channel, "zh_CN", ctx)
        assert tw != cn
    sms = renderer.render("reminder_followup", "sms", "zh-TW", ctx).text
    assert "還款" in sms and "逾期" in sms and "NT$1,200.00" in sms and "回覆TD退訂" in sms
    assert "还款" not in sms  # Traditional characters, not Simplified


# ------------------------------------------------------------------ money and dates


def test_locales():
    assert LOCALES == {"en": "en", "zh_CN": "zh_Hans_CN", "zh_TW": "zh_Hant_TW"}
    assert str(babel_locale("zh_CN")) == "zh_Hans_CN" and str(babel_locale("zh-TW")) == "zh_Hant_TW"
    assert str(babel_locale("en")) == "en" and str(babel_locale("xx_YY")) == "en" and str(babel_locale("")) == "en"


@pytest.mark.parametrize(
    "amount,currency,language,expected",
    [
        (Decimal("1200"), "CNY", "zh_CN", "¥1,200.00"),
        (Decimal("1200"), "CNY", "en", "CN¥1,200.00"),
        (Decimal("1200"), "USD", "en", "$1,200.00"),
        (Decimal("1200"), "TWD", "zh_TW", "NT$1,200.00"),
        (Decimal("1200"), "TWD", "en", "NT$1,200.00"),
        (Decimal("1200"), "USD", "zh_TW", "US$1,200.00"),
        ("123456", "JPY", "en", "¥123,456"),
        ("0.5", "usd", "en", "$0.50"),
        (7, "CNY", "zh_CN", "¥7.00"),
    ],
)
def test_money(amount, currency, language, expected):
    assert format_money(amount, currency, language) == expected


def test_money_refuses_floats_and_bad_input():
    with pytest.raises(TypeError, match="float"):
        format_money(1200.0, "CNY", "zh_CN")
    with pytest.raises(ValueError, match="decimal"):
        format_money("12,00", "CNY", "zh_CN")
    with pytest.raises(ValueError, match="currency"):
        format_money(Decimal("1"), "yuan", "zh_CN")
    with pytest.raises(ValueError, match="finite"):
        format_money(Decimal("NaN"), "CNY", "zh_CN")


def test_day():
    assert format_day(date(2026, 11, 1), "en") == "November 1, 2026"
    assert format_day(date(2026, 11, 1), "zh_CN") == "2026年11月1日"
    assert format_day("2026-11-01", "zh_TW") == "2026年11月1日"
    assert format_day(datetime(2026, 11, 1, 23, 0), "en") == "November 1, 2026"
    with pytest.raises(TypeError):
        format_day(20261101, "en")


def test_filters_use_the_locale_of_the_template_language(tmp_path):
    for lang in ("en", "zh_CN", "zh_TW"):
        (tmp_path / lang).mkdir()
        (tmp_path / lang / "m.sms.j2").write_text("{{ amount|money(currency) }} {{ due_date|day }}")
    renderer = TemplateRenderer(tmp_path)
    ctx = context("en", amount=Decimal("1200"), currency="TWD")
    assert renderer.render("m", "sms", "en", ctx).text == "NT$1,200.00 November 1, 2026"
    assert renderer.render("m", "sms", "zh_CN", ctx).text == "NT$1,200.00 2026年11月1日"
    assert renderer.render("m", "sms", "zh_TW", ctx).text == "NT$1,200.00 2026年11月1日"
    assert renderer.render("m", "sms", "zh_TW", ctx | {"currency": "USD"}).text == "US$1,200.00 2026年11月1日"
    # A float never becomes money, even from a caller's mistake.
    with pytest.raises(TypeError):
        renderer.render("m", "sms", "en", ctx | {"amount": 1200.0})


def test_render_form_reads_exactly_one_language(renderer, tmp_path):
    ctx = context("zh_TW", currency="TWD")
    assert renderer.render_form("zh_TW", "reminder_followup", "sms", ctx) == renderer.render(
        "reminder_followup", "sms", "zh_TW", ctx
    ).text
    assert renderer.render_form("en", "plan_offer", "email.txt", context("en")).endswith("\n")
    (tmp_path / "en").mkdir()
    (tmp_path / "zh_CN").mkdir()
    (tmp_path / "en" / "n.sms.j2").write_text("hi")
    with pytest.raises(TemplateMissing):  # no fallback to en
        TemplateRenderer(tmp_path).render_form("zh_CN", "n", "sms", context("zh_CN"))
    with pytest.raises(ValueError, match="form"):
        renderer.render_form("en", "plan_offer", "fax", context("en"))


def test_language_tag_with_a_hyphen(renderer):
    ctx = context("zh_CN")
    assert renderer.render("plan_offer", "sms", "zh-CN", ctx) == renderer.render("plan_offer", "sms", "zh_CN", ctx)


def test_missing_template_raises(renderer):
    with pytest.raises(TemplateMissing, match=r"no_such_template\.sms\.j2"):
        renderer.render("no_such_template", "sms", "zh_CN", context("zh_CN"))
    assert issubclass(TemplateMissing, LookupError)


def test_missing_form_falls_back_as_a_whole_then_raises(tmp_path):
    for lang in ("en", "zh_CN"):
        (tmp_path / lang).mkdir()
        (tmp_path / lang / "note.email.subject.j2").write_text(f"{lang} subject")
        (tmp_path / lang / "note.email.txt.j2").write_text(f"{lang} text")
    (tmp_path / "en" / "note.email.html.j2").write_text("<p>en {{ borrower_name }}</p>")
    renderer = TemplateRenderer(tmp_path)
    # zh_CN lacks the HTML form: the whole e-mail comes from en, never mixed.
    message = renderer.render("note", "email", "zh_CN", context("zh_CN", borrower_name="<b>"))
    assert message == RenderedMessage(subject="en subject", text="en text\n", html="<p>en &lt;b&gt;</p>\n")
    with pytest.raises(TemplateMissing, match=r"note\.sms\.j2"):
        renderer.render("note", "sms", "zh_CN", context("zh_CN"))
    assert renderer.names() == {
        (lang, "note", form) for lang in ("en", "zh_CN") for form in ("email.subject", "email.txt")
    } | {("en", "note", "email.html")}


def test_missing_layout_raises_template_missing(tmp_path):
    (tmp_path / "en").mkdir()
    (tmp_path / "en" / "x.sms.j2").write_text('{% extends "en/_gone.sms.j2" %}')
    with pytest.raises(TemplateMissing, match="_gone"):
        TemplateRenderer(tmp_path).render("x", "sms", "en", context("en"))


def test_bad_arguments(renderer, tmp_path):
    with pytest.raises(ValueError, match="channel"):
        renderer.render("reminder_friendly", "fax", "en", context("en"))
    with pytest.raises(ValueError, match="template"):
        renderer.render("../en/reminder_friendly", "sms", "en", context("en"))
    with pytest.raises(FileNotFoundError):
        TemplateRenderer(tmp_path / "nowhere")
    assert set(CHANNEL_FORMS) == set(CHANNELS)


def test_templates_are_compiled_once(renderer):
    ctx = context("en")
    renderer.render("plan_offer", "email", "en", ctx)
    env = renderer._env
    first = env.get_template("en/plan_offer.email.html.j2")
    renderer.render("plan_offer", "email", "en", ctx)
    assert env.get_template("en/plan_offer.email.html.j2") is first


def test_rendering_is_thread_safe():
    renderer = TemplateRenderer(TEMPLATES)  # a cold cache, so threads also race to compile
    jobs = [
        (template, channel, language, context(language, days_past_due=days))
        for template in REQUIRED_TEMPLATES
        for channel in CHANNELS
        if channel != "letter" or template in LETTER_TEMPLATES
        for language in LANGUAGES
        for days in (1, 40)
    ] * 4
    with ThreadPoolExecutor(max_workers=16) as pool:
        parallel = list(pool.map(lambda job: renderer.render(*job), jobs))
    serial = [TemplateRenderer(TEMPLATES).render(*job) for job in jobs]
    assert parallel == serial


# ------------------------------------------------------------------ pay link


def token_of(link: str) -> str:
    assert link.startswith("https://pay.example.com/p/")
    token = link.removeprefix("https://pay.example.com/p/")
    assert token and "/" not in token
    return token


def test_pay_link_round_trip():
    link = pay_link_url("https://pay.example.com/p", pay_token(SECRET, "dunning-L-1001/k"))
    assert pay_link_url("https://pay.example.com/p/", pay_token(SECRET, "dunning-L-1001/k")) == link
    # URL-safe: nothing that needs quoting in a path segment.
    assert all(c.isalnum() or c in "-_" for c in token_of(link))
    # The same message, the same token; another message or secret, another.
    assert pay_token(SECRET, "dunning-L-1001/k") == token_of(link)
    assert pay_token(SECRET, "dunning-L-1001/j") != token_of(link) != pay_token("another-secret", "dunning-L-1001/k")


def test_token_carries_nothing_readable():
    # Opaque: no loan id, no personal data (tests/test_attacks_pay.py decodes it every way).
    token = token_of(PAY_LINK)
    for personal in ("L-1001", "王小明", "Wang", "+8613800138000", "wang@example.com", "1200"):
        assert personal not in token
    assert PAY_LINK.startswith("https://pay.example.com/p/")


def test_pay_link_refuses_empty_inputs():
    with pytest.raises(ValueError, match="secret"):
        pay_token("", "dunning-L-1001/k")
    with pytest.raises(ValueError, match="contact_key"):
        pay_token(SECRET, "")
    with pytest.raises(ValueError, match="base_url"):
        pay_link_url("", "abc")
    assert issubclass(PayLinkInvalid, ValueError)
