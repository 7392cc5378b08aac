"""Message privacy (issue 15): what the first line of an SMS or push may say
under each profile's [privacy] first_line, checked by the template lint and
again at send time; and the 12 CFR 1006.18(e) debt-collector disclosure.
Rules: config/compliance/message_privacy.toml (activities/message_privacy.py)."""

from __future__ import annotations

import shutil
import typing
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select
from temporalio.testing import ActivityEnvironment

from activities.dunning_activities import DunningActivities
from activities.message_privacy import (
    DEFAULT_RULES,
    PrivacyRulesError,
    blocked_reason,
    first_line,
    first_line_violation,
    load_privacy_rules,
    violations,
)
from activities.payloads import ContactRequest
from activities.rendering import CONTEXT_KEYS, TemplateRenderer
from compliance.template_lint import DEFAULT_PROFILES, DEFAULT_RULES as TEMPLATE_RULES, lint_templates
from compliance.template_rules import load_rules
from db.models import Contact
from dunning.compliance import Privacy
from loaders.config_files import load_profile
from runtime.worker_build import activity_settings
from tests.conftest import BORROWER

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = ROOT / "config" / "templates"
LANGUAGES = ("en", "zh_CN", "zh_TW")
MODES = typing.get_args(Privacy.model_fields["first_line"].annotation)
CHECKED = ("limited_content", "no_amount_before_identity")
RULES = load_privacy_rules()
# Templates that must not ask for payment (config/compliance/template_rules.toml).
NO_PAY_LINK = frozenset(load_rules(TEMPLATE_RULES).no_pay_link_templates)
DISCLOSURE = {"en": "This is a communication from a debt collector.", "zh_CN": "本信息来自债务催收方。", "zh_TW": "本訊息來自債務催收方。"}
# A realistic borrower, in each language, with an amount that is easy to find.
NAMES = {"en": ("Acme Lending", "Jane Doe", "USD"), "zh_CN": ("安心小贷", "王小明", "CNY"), "zh_TW": ("安心小貸", "王小明", "TWD")}
AMOUNT = Decimal("2345.67")


def context(language: str, **overrides) -> dict:
    lender, borrower, currency = NAMES[language]
    values = {key: None for key in CONTEXT_KEYS}  # keys of other templates (the validation notice's) stay None
    values.update(
        lender_name=lender, borrower_name=borrower, amount=AMOUNT, currency=currency, due_date=date(2026, 11, 1),
        days_past_due=12, pay_link="https://pay.example.com/p/abcDEF123", loan_id="L-2001", stage="reminder",
        unsubscribe_url="https://gw.example.com/u?key=k&sig=s", debt_collector=False,
        # A merged message's loans (borrower_summary); the other templates ignore it.
        summary={"loans": [{"loan_id": "L-2001", "amount": AMOUNT, "currency": currency, "due_date": date(2026, 11, 1),
                            "days_past_due": 12, "pay_link": "https://pay.example.com/p/abcDEF123"}],
                 "totals": [{"amount": AMOUNT, "currency": currency}]},
    )
    values.update(overrides)
    return values


@pytest.fixture(scope="module")
def renderer() -> TemplateRenderer:
    return TemplateRenderer(TEMPLATES)


def sent_forms(renderer: TemplateRenderer, forms: tuple[str, ...]) -> list[tuple[str, str, str]]:
    """(language, template, form) of every template in `forms`, the validation notice aside (its owner's)."""
    found = sorted((l, t, f) for l, t, f in renderer.names() if f in forms and t != "validation_notice")
    assert found
    return found


# ------------------------------------------------------------------ the rules are data


def test_every_profile_mode_has_rules_and_the_profiles_set_theirs():
    assert set(RULES.modes) == set(MODES)
    assert RULES.modes["full"].forbid == ()
    assert set(RULES.modes["limited_content"].forbid) == {"amount", "overdue", "debt"}
    assert set(RULES.modes["no_amount_before_identity"].forbid) == {"amount", "overdue"}
    assert load_profile("us", DEFAULT_PROFILES).privacy.first_line == "limited_content"
    assert load_profile("cn", DEFAULT_PROFILES).privacy.first_line == "no_amount_before_identity"
    assert set(RULES.disclosure.by_language) == set(LANGUAGES) and "validation_notice" in RULES.disclosure.exempt_templates
    source = DEFAULT_RULES.read_text(encoding="utf-8")
    assert "1006.2(j)" in source and "(j)(1)" in source and "(j)(2)" in source and "1006.18(e)" in source


def test_rules_that_cannot_be_used_are_refused(tmp_path):
    text = DEFAULT_RULES.read_text(encoding="utf-8")
    bad = tmp_path / "rules.toml"
    bad.write_text(text.replace('forbid = ["amount", "overdue"]', 'forbid = ["amount", "overdew"]'), encoding="utf-8")
    with pytest.raises(PrivacyRulesError, match="overdew"):
        load_privacy_rules(bad)
    bad.write_text(text.replace('zh_TW = "本訊息來自債務催收方。"', ""), encoding="utf-8")
    with pytest.raises(PrivacyRulesError, match="disclosure.zh_TW"):
        load_privacy_rules(bad)


# What each mode must flag on a first line, and what it must let through
# (recall and precision of the word lists and the amount patterns).
FLAGGED = {
    "both": [
        "Acme Lending: Jane, $2,345.67 is 12 days overdue.",
        "Acme: your account is past due.",
        "Acme: you owe us money.",
        "Acme: a message about your debt.",
        "Acme Collections: a message for Jane Doe.",
        "Acme: 2,345.67 left to settle.",
        "Acme: USD 80 left.",
        "【安心小贷】王小明您好，您的¥2,345.67欠款已逾期12天",
        "【安心小贷】王小明，您的账户已逾期。",
        "【安心小贷】催收通知",
        "【安心小贷】您有一笔欠费",
        "【安心小額信貸】王小明，您的債務已逾期",
        "【安心小貸】NT$2,345.67",
        "【安心小贷】请尽快处理800元",
    ],
    "limited_content": [
        "Acme: your payment is due today.",
        "Acme: Hi Jane, pay in one click.",
        "Acme: your loan statement is ready.",
        "Acme: your balance has changed.",
        "【安心小贷】王小明您好，您的还款日到了。",
        "【安心小贷】您的借款账单已出。",
        "【安心小貸】王小明，您的還款日到了。",
    ],
}
NEUTRAL = [
    "Acme Lending: a message for Jane Doe. Please reply.",
    "Acme Lending: you have a new message.",
    "Hi Jane, this is Acme Lending. Please reply or call us on weekdays.",
    "【安心小贷】王小明，您有新消息。",
    "安心小贷：您有一条新消息。",
    "【安心小貸】王小明，您有新訊息。",
]


@pytest.mark.parametrize("line", FLAGGED["both"])
@pytest.mark.parametrize("mode", CHECKED)
def test_each_mode_flags_an_amount_or_an_overdue_word(mode, line):
    assert violations(line, mode, RULES, amount=AMOUNT, currency="USD"), f"{mode} missed {line!r}"


@pytest.mark.parametrize("line", FLAGGED["limited_content"])
def test_limited_content_flags_any_word_that_names_a_debt_and_cn_lets_them_through(line):
    assert violations(line, "limited_content", RULES)
    assert not violations(line, "no_amount_before_identity", RULES)


@pytest.mark.parametrize("line", NEUTRAL)
@pytest.mark.parametrize("mode", MODES)
def test_a_neutral_first_line_passes_every_mode(mode, line):
    assert violations(line, mode, RULES, amount=AMOUNT, currency="USD") == []


def test_only_the_first_line_counts_and_full_allows_anything():
    text = "Acme Lending: a message for Jane Doe. Please reply.\n$2,345.67 is 12 days overdue."
    assert first_line(text) == "Acme Lending: a message for Jane Doe. Please reply."
    for mode in CHECKED:
        assert first_line_violation(text, mode, RULES, amount=AMOUNT, currency="USD") is None
    flipped = "\n".join(reversed(text.split("\n")))
    assert first_line_violation(flipped, "full", RULES) is None
    why = first_line_violation(flipped, "no_amount_before_identity", RULES, amount=AMOUNT, currency="USD")
    # The reason names the rule and the listed word, never the text (it goes to workflow history).
    assert why and "amount" in why and '"overdue"' in why and "2,345" not in why


# ------------------------------------------------------------------ the shipped templates


@pytest.mark.parametrize("mode", CHECKED)
@pytest.mark.parametrize("debt_collector", [False, True])
def test_every_sms_and_push_first_line_obeys_each_mode(renderer, mode, debt_collector):
    broken = []
    for language, template, form in sent_forms(renderer, RULES.forms):
        for days in (1, 12):
            ctx = context(language, debt_collector=debt_collector, days_past_due=days)
            text = renderer.render_form(language, template, form, ctx)
            assert "\n" in text, f"{language}/{template}.{form}: the details follow on a second line"
            why = first_line_violation(text, mode, RULES, amount=AMOUNT, currency=ctx["currency"])
            if why:
                broken.append(f"{language}/{template}.{form}: {why}")
            # What the lock screen hides is still in the message (the notice
            # after a cease request asks for no payment: issue 18, item 1).
            assert ctx["pay_link"] in text or form == "push" or template in NO_PAY_LINK
    assert not broken


@pytest.mark.parametrize("debt_collector", [False, True])
def test_the_disclosure_appears_exactly_when_the_flag_is_set(renderer, debt_collector):
    wrong = []
    for language, template, form in sent_forms(renderer, RULES.disclosure.forms):
        text = renderer.render_form(language, template, form, context(language, debt_collector=debt_collector))
        if (DISCLOSURE[language] in text) != debt_collector:
            wrong.append(f"{language}/{template}.{form}")
        if form in RULES.forms:
            assert DISCLOSURE[language] not in first_line(text)
        if form == "voice" and debt_collector:
            hang_up = {"en": "please hang up", "zh_CN": "请直接挂断", "zh_TW": "請直接掛斷"}[language]
            assert text.index(hang_up) < text.index(DISCLOSURE[language]), f"{language}/{template}: after the identity check"
    assert not wrong


# ------------------------------------------------------------------ the lint


@pytest.fixture
def templates(tmp_path) -> Path:
    copy = tmp_path / "templates"
    shutil.copytree(TEMPLATES, copy)
    return copy


def lint(templates_dir: Path, **kwargs):
    return lint_templates(templates_dir, TEMPLATE_RULES, **kwargs)


def own(findings, prefix: str = ""):
    """Findings of this module's rules (another rule's finding is another test's business)."""
    rules = ("first-line-privacy", "missing-debt-collector-disclosure", "unconditional-debt-collector-disclosure",
             "misplaced-debt-collector-disclosure", "privacy-mode-missing")
    return [f for f in findings if f.rule in rules and f.rule.startswith(prefix)]


def test_the_shipped_templates_pass_the_privacy_checks():
    assert own(lint(TEMPLATES)) == []


@pytest.mark.parametrize(
    "language,form,line,profiles",
    [
        ("en", "sms", "{{ lender_name }}: {{ amount|money(currency) }} is overdue.", {"us", "cn"}),
        ("en", "push", "{{ lender_name }}: your payment is due.", {"us"}),
        ("zh_CN", "sms", "【{{ lender_name }}】您的{{ amount|money(currency) }}已逾期", {"us", "cn"}),
        ("zh_CN", "push", "{{ lender_name }}：您的还款日到了。", {"us"}),
        ("zh_TW", "sms", "【{{ lender_name }}】您的欠款已逾期", {"us", "cn"}),
        ("zh_TW", "push", "{{ lender_name }}：{{ amount|money(currency) }}", {"us", "cn"}),
    ],
)
def test_a_planted_first_line_is_found_under_the_profiles_it_breaks(templates, language, form, line, profiles):
    planted = templates / language / f"reminder_followup.{form}.j2"
    rest = planted.read_text(encoding="utf-8").split("\n", 1)[1]
    planted.write_text(line + "\n" + rest, encoding="utf-8")

    findings = own(lint(templates))
    assert findings and {f.file for f in findings} == {str(planted)}
    assert {f.rule for f in findings} == {"first-line-privacy"}
    assert {p for p in ("us", "cn") if any(f"profile {p} " in f.message for f in findings)} == profiles


def test_the_validation_notice_is_checked_on_the_channels_a_profile_sends_it_by(tmp_path, templates):
    notice = templates / "en" / "validation_notice.sms.j2"
    notice.write_text("{{ lender_name }}: you owe {{ amount|money(currency) }}.\n" + notice.read_text(encoding="utf-8"),
                      encoding="utf-8")
    # us sends it by e-mail and letter: its SMS form is never sent under us, nor under cn (no notice).
    assert [f for f in own(lint(templates)) if f.file == str(notice)] == []
    profiles = tmp_path / "profiles"
    shutil.copytree(DEFAULT_PROFILES, profiles)
    us = profiles / "us.toml"
    text = us.read_text(encoding="utf-8")
    assert 'validation_notice_channels = ["email", "letter"]' in text
    us.write_text(text.replace('validation_notice_channels = ["email", "letter"]',
                               'validation_notice_channels = ["email", "sms"]'), encoding="utf-8")
    found = [f for f in own(lint(templates, profiles_dir=profiles)) if f.file == str(notice)]
    assert found and all(f.rule == "first-line-privacy" and "profile us " in f.message for f in found)


def test_a_profile_with_full_first_lines_checks_nothing(tmp_path, templates):
    planted = templates / "en" / "plan_offer.sms.j2"
    planted.write_text("{{ lender_name }}: {{ amount|money(currency) }} overdue\n" + planted.read_text(encoding="utf-8"),
                       encoding="utf-8")
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    cn = (DEFAULT_PROFILES / "cn.toml").read_text(encoding="utf-8")
    (profiles / "cn.toml").write_text(cn.replace('first_line = "no_amount_before_identity"', 'first_line = "full"'),
                                      encoding="utf-8")
    assert own(lint(templates, profiles_dir=profiles), "first-line") == []
    assert own(lint(templates), "first-line")


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("form", ["sms", "push", "email.txt", "email.html", "voice"])
def test_a_form_without_the_disclosure_fails_the_lint(templates, language, form):
    path = templates / language / f"plan_offer.{form}.j2"
    source = path.read_text(encoding="utf-8")
    start, end = source.index("{% if debt_collector %}"), source.index("{% endif %}") + len("{% endif %}")
    path.write_text(source[:start] + source[end:], encoding="utf-8")

    findings = own(lint(templates))
    assert [(f.file, f.rule) for f in findings] == [(str(path), "missing-debt-collector-disclosure")]


def test_a_disclosure_outside_the_condition_or_in_the_wrong_place_fails_the_lint(templates):
    unconditional = templates / "en" / "legal_notice.email.txt.j2"
    source = unconditional.read_text(encoding="utf-8")
    # The disclosure's own condition taken away (the time-barred variant's stays).
    start = source.index("{% if debt_collector %}")
    end = source.index("{% endif %}", start)
    unconditional.write_text(source[:start] + source[start + len("{% if debt_collector %}"):end]
                             + source[end + len("{% endif %}"):], encoding="utf-8")
    early = templates / "en" / "reminder_friendly.voice.j2"
    source = early.read_text(encoding="utf-8")
    block = "{% if debt_collector %}This is a communication from a debt collector. {% endif %}"
    early.write_text(block + source.replace(block, ""), encoding="utf-8")

    found = {(Path(f.file).name, f.rule) for f in own(lint(templates))}
    assert found == {
        ("legal_notice.email.txt.j2", "unconditional-debt-collector-disclosure"),
        ("reminder_friendly.voice.j2", "misplaced-debt-collector-disclosure"),
    }


# ------------------------------------------------------------------ at send time


@pytest.fixture
def env():
    return ActivityEnvironment()


def activities_on(templates_dir: Path, session_factory, settings, sent: list) -> DunningActivities:
    class Recording:
        name = "recording"

        def send(self, message):
            from channels.local import LocalCaptureChannel

            sent.append(message)
            return LocalCaptureChannel(message.channel).send(message)

    channels = {name: Recording() for name in ("sms", "email", "voice", "push")}
    return DunningActivities(session_factory, channels, TemplateRenderer(templates_dir), activity_settings(settings))


def request(channel: str = "sms", key: str = "dunning-L-1001/reminder/0/sms", **overrides) -> ContactRequest:
    fields = dict(
        key=key, workflow_id="dunning-L-1001", loan_id="L-1001", borrower_id=BORROWER["borrower_id"], stage="reminder",
        channel=channel, template="reminder_followup", days_past_due=12, outstanding="2345.67", currency="CNY",
        due_date="2026-11-01",
    )
    fields.update(overrides)
    return ContactRequest(**fields)


def contacts(session_factory) -> list[Contact]:
    with session_factory() as db:
        return list(db.scalars(select(Contact).order_by(Contact.key)))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("channel", ["sms", "push"])
def test_the_shipped_messages_are_sent_under_every_mode(env, session_factory, settings, seeded_borrower, mode, channel):
    sent: list = []
    acts = activities_on(TEMPLATES, session_factory, settings, sent)
    outcome = env.run(acts.send_contact, request(channel, key=f"k-{channel}", privacy_first_line=mode))
    assert outcome.result == "sent" and len(sent) == 1
    assert "2,345.67" in sent[0].text and "2,345.67" not in first_line(sent[0].text)


@pytest.mark.parametrize("mode", CHECKED)
@pytest.mark.parametrize("channel", ["sms", "push"])
def test_a_message_whose_first_line_breaks_the_mode_is_not_sent(env, session_factory, settings, seeded_borrower,
                                                                 templates, mode, channel):
    planted = templates / "zh_CN" / f"reminder_followup.{channel}.j2"
    planted.write_text("{{ borrower_name }}，您的{{ amount|money(currency) }}已逾期\n" + planted.read_text(encoding="utf-8"),
                       encoding="utf-8")
    sent: list = []
    acts = activities_on(templates, session_factory, settings, sent)

    outcome = env.run(acts.send_contact, request(channel, key=f"k-{channel}", privacy_first_line=mode))
    again = env.run(acts.send_contact, request(channel, key=f"k-{channel}", privacy_first_line=mode))

    assert not sent
    assert outcome.result == again.result == "skipped_no_address"  # final: never sent for this key
    assert "message privacy" in outcome.detail and mode in outcome.detail and "amount" in outcome.detail
    assert BORROWER["name"] not in outcome.detail and "2,345" not in outcome.detail
    [row] = contacts(session_factory)
    assert row.recipient is None and row.error.startswith("not sent: message privacy")
    assert row.body_text.startswith(BORROWER["name"])  # kept for review, never handed to a provider


def test_full_sends_the_same_message_and_other_channels_are_not_checked(env, session_factory, settings, seeded_borrower,
                                                                          templates):
    for name in ("reminder_followup.sms.j2", "reminder_followup.voice.j2"):
        planted = templates / "zh_CN" / name
        planted.write_text("您的{{ amount|money(currency) }}已逾期\n" + planted.read_text(encoding="utf-8"), encoding="utf-8")
    sent: list = []
    acts = activities_on(templates, session_factory, settings, sent)
    assert env.run(acts.send_contact, request("sms", key="k-full", privacy_first_line="full")).result == "sent"
    # A voice script has no lock screen; its identity check comes first (the template lint).
    voice = env.run(acts.send_contact, request("voice", key="k-voice", privacy_first_line="limited_content"))
    assert voice.result == "sent" and len(sent) == 2


@pytest.mark.parametrize("flag", [False, True])
@pytest.mark.parametrize("channel", ["sms", "push", "email", "voice"])
def test_the_sent_message_carries_the_disclosure_iff_the_request_says_so(env, session_factory, settings,
                                                                         seeded_borrower, channel, flag):
    sent: list = []
    acts = activities_on(TEMPLATES, session_factory, settings, sent)
    outcome = env.run(acts.send_contact, request(channel, key=f"k-{channel}", debt_collector_disclosure=flag,
                                                 privacy_first_line="limited_content"))
    assert outcome.result == "sent"
    disclosure = DISCLOSURE[BORROWER["language"]]
    assert (disclosure in sent[0].text) is flag
    if channel == "email":
        assert (disclosure in sent[0].html) is flag


def test_the_send_time_check_is_the_lint_s_rule(tmp_path):
    # The same function and data: a deployment's own rules under its config
    # directory take precedence, the project's otherwise.
    line = "Acme: a reminder about your loan.\nmore"
    assert blocked_reason("sms", "limited_content", line) is not None
    assert blocked_reason("sms", "no_amount_before_identity", line) is None
    assert blocked_reason("email", "limited_content", line) is None
    (tmp_path / "compliance").mkdir()
    (tmp_path / "compliance" / DEFAULT_RULES.name).write_text(
        DEFAULT_RULES.read_text(encoding="utf-8").replace('"loan*", ', ""), encoding="utf-8")
    assert blocked_reason("sms", "limited_content", line, config_dir=tmp_path) is None
