"""The US validation notice (12 CFR 1006.34, Model Form B-1), read back by an
independent reader.

A realistic US loan is placed with its itemization and the borrower's postal
address; the notice is drafted as the send activity drafts it (the outbox's
`_draft`, reading the directory) in every language it is sent in, as an
e-mail (HTML and plain text) and as a mailed letter, and read back with
BeautifulSoup and plain regular expressions, not with the renderer's own
helpers: dates and money are parsed from the text as a reader sees them.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timezone
from decimal import Decimal

import pytest
from bs4 import BeautifulSoup

from activities.context import ActivityContext
from activities.outbox import ContactSending, validation_notice
from activities.payloads import ContactRequest
from activities.rendering import CONTEXT_KEYS, TemplateRenderer
from db.directory import upsert_placements
from db.models import Borrower, LoanItemization
from dunning.validation_period import period_end
from runtime.worker_build import activity_settings
from services.placement import validate_placements

pytestmark = pytest.mark.both_databases

LANGUAGES = ("en", "zh_CN", "zh_TW")
COLLECTOR = "Dunning Recovery Services"
COLLECTOR_ADDRESS = ("PO Box 1000", "Wilmington, DE 19801")
DISPUTE_EMAIL = "disputes@dunning.example"
DISPUTE_URL = "https://pay.dunning.example/dispute"
CURRENT_CREDITOR = "Acme Consumer Finance LLC"
CREDITOR_THEN = "Acme Bank, N.A."
ACCOUNT = "4417-1234-5678-9113"
CONSUMER_ADDRESS = ["221 Baker Street", "Apt 2B", "Albany, NY 12207"]
NAMES = {"en": "Maria Garcia", "zh_CN": "王小明", "zh_TW": "陳美玲"}
# Provided on Tuesday 3 November 2026 (the loan's date at the decided moment).
LOAN_AT = "2026-11-03T10:00:00-05:00"
PROVIDED_ON = date(2026, 11, 3)

# What each language calls the parts a reader looks for.
DISCLOSURE = {"en": "is a debt collector", "zh_CN": "是一家债务催收机构", "zh_TW": "是一家債務催收機構"}
DISPUTE_HEADING = {"en": "How can you dispute the debt?", "zh_CN": "您如何对债务提出异议？", "zh_TW": "您如何對債務提出異議？"}
RESPOND_HEADING = {"en": "How do you want to respond?", "zh_CN": "您希望如何回复？", "zh_TW": "您希望如何回覆？"}
PROMPTS = {
    "en": ("This is not my debt.", "The amount is wrong.", "Other (please describe",
           "I want you to send me the name and address of the original creditor."),
    "zh_CN": ("这不是我的债务。", "金额有误。", "其他（", "我要求你们向我提供原始债权人的名称和地址。"),
    "zh_TW": ("這不是我的債務。", "金額有誤。", "其他（", "我要求你們提供原始債權人的名稱和地址給我。"),
}
ORIGINAL_CREDITOR = {"en": "name and address of the original creditor", "zh_CN": "原始债权人的名称和地址",
                     "zh_TW": "原始債權人的名稱和地址"}
CFPB = "www.cfpb.gov/debt-collection"
MONEY = re.compile(r"(?:US)?\$\s?([\d,]+\.\d{2})")


def written_date(day: date, language: str) -> str:
    """A date as the reader of that language expects it, written out here."""
    if language == "en":
        return f"{day:%B} {day.day}, {day.year}"
    return f"{day.year}年{day.month}月{day.day}日"


def money(text: str) -> Decimal:
    [found] = MONEY.findall(text)
    return Decimal(found.replace(",", ""))


def record(language: str) -> dict:
    # 1250.00 + 58.20 + 39.00 - 15.00 - 4.75 = 1327.45
    return {
        "loan_id": f"L-US-{language}", "borrower_id": f"B-US-{language}", "amount_due": "1327.45", "currency": "USD",
        "due_date": "2026-10-15", "policy": "us",
        "borrower": {
            "name": NAMES[language], "email": f"{language.lower()}@example.com", "phone": "+15185550123",
            "language": language, "address_line1": "221 Baker Street", "address_line2": "Apt 2B", "city": "Albany",
            "region": "NY", "postal_code": "12207", "country": "US",
        },
        "itemization": {
            "itemization_date": "2026-08-31", "amount_on_itemization_date": "1250.00", "interest_since": "58.20",
            "fees_since": "39.00", "payments_since": "15.00", "credits_since": "4.75",
            "current_creditor": CURRENT_CREDITOR, "creditor_on_itemization_date": CREDITOR_THEN,
            "account_number": ACCOUNT, "debt_type": "consumer_financial_product",
        },
    }


def request(language: str, channel: str = "email", debt_collector: bool = True, **overrides) -> ContactRequest:
    fields = dict(
        key=f"dunning-L-US-{language}/notice/{channel}", workflow_id=f"dunning-L-US-{language}",
        loan_id=f"L-US-{language}", borrower_id=f"B-US-{language}", stage="early", channel=channel,
        template="validation_notice", days_past_due=19,
        # 27.45 repaid since the loan was placed: the notice counts it as paid.
        outstanding="1300.00", currency="USD", due_date="2026-10-15", loan_at=LOAN_AT,
        debt_collector_disclosure=debt_collector, collector_name=COLLECTOR, collector_mailing_address=COLLECTOR_ADDRESS,
        collector_phone="+1 302 555 0100", dispute_email=DISPUTE_EMAIL, dispute_url=DISPUTE_URL,
        validation_period_days=30,
    )
    fields.update(overrides)
    return ContactRequest(**fields)


@pytest.fixture
def placed(session_factory):
    upsert_placements(session_factory, validate_placements([record(language) for language in LANGUAGES]))
    return session_factory


@pytest.fixture
def sending(placed, settings):
    context = ActivityContext(placed, activity_settings(settings), lambda: datetime(2026, 11, 3, 15, tzinfo=timezone.utc))
    return ContactSending(context, {}, TemplateRenderer(settings.templates_dir))


PAGE_BREAK = '<div style="page-break-before:always"></div>'
TEXT_BREAK = "\n\n" + "-" * 40 + "\n\n"


def drafted_email(sending, session_factory, language: str, debt_collector: bool = True, part: str = "own"):
    """The notice e-mail as the outbox drafts it. A translated notice comes
    after the English one in the same message (12 CFR 1006.34(e)): `part`
    "own" is the borrower's language's notice, "english" the English one."""
    with session_factory.begin() as db:
        row = sending._draft(db, request(language, debt_collector=debt_collector), datetime(2026, 11, 3, 15, tzinfo=timezone.utc))
        subject, text, html = row.subject, row.body_text, row.body_html
    if language == "en":
        return subject, text, html
    english_html, translated_inner = html.split(PAGE_BREAK)
    english_text, translated_text = text.split(TEXT_BREAK)
    english_subject, translated_subject = subject.split(" / ")
    if part == "english":
        return english_subject, english_text, english_html + "</body></html>"
    return translated_subject, translated_text, f"<html><body>{translated_inner}"


def drafted_letter(session_factory, settings, language: str, debt_collector: bool = True) -> str:
    """The letter, from the same notice the outbox builds (the letter's
    provider and recipient are the letter channel's, not this test's)."""
    at = datetime(2026, 11, 3, 15, tzinfo=timezone.utc)
    with session_factory() as db:
        borrower = db.get(Borrower, f"B-US-{language}")
        notice = validation_notice(db, request(language, "letter", debt_collector), borrower, "Acme Lending", at)
    context = {
        "lender_name": "Acme Lending", "borrower_name": borrower.name, "amount": Decimal("1300.00"), "currency": "USD",
        "due_date": date(2026, 10, 15), "days_past_due": 19, "pay_link": "https://pay.example/p/T",
        "loan_id": f"L-US-{language}", "stage": "early", "unsubscribe_url": "https://gw.example/u",
        "notice": notice, "debt_collector": debt_collector, "call_recorded": False, "summary": None,
        "time_barred": False, "limitation_disclosure": "",
    }
    assert set(context) == CONTEXT_KEYS
    message = TemplateRenderer(settings.templates_dir).render("validation_notice", "letter", language, context)
    assert message.html == message.text and message.subject is None
    return message.html


def read_html(html: str, language: str, *, letter: bool, borrower_language: str | None = None) -> None:
    """Everything Model Form B-1 asks for, read from the HTML as a reader would."""
    soup = BeautifulSoup(html, "html.parser")
    text = soup.get_text(" ", strip=True)
    ends = period_end(PROVIDED_ON, 30)
    assert ends == date(2026, 12, 10)  # 5 business days to Nov 10 (Veterans Day comes after), then 30 days

    # Who is writing, and to whom (1006.34(c)(2)(i)-(ii)).
    assert soup.find(class_="collector-name").get_text(strip=True) == COLLECTOR
    assert [s.get_text(strip=True) for s in soup.find_all(class_="collector-address-line")][:2] == list(COLLECTOR_ADDRESS)
    assert soup.find(class_="consumer-name").get_text(strip=True) == NAMES[borrower_language or language]
    assert [s.get_text(strip=True) for s in soup.find_all(class_="consumer-address-line")][:3] == CONSUMER_ADDRESS
    assert written_date(PROVIDED_ON, language) in soup.find(class_="notice-date").get_text()

    # The creditors and the account number, truncated to its last four (1006.34(c)(2)(iii)-(v)).
    assert {s.get_text(strip=True) for s in soup.find_all(class_="current-creditor")} == {CURRENT_CREDITOR}
    assert soup.find(class_="creditor-on-itemization-date").get_text(strip=True) == CREDITOR_THEN
    assert soup.find(class_="account-last4").get_text(strip=True) == "9113"
    assert ACCOUNT not in html and "4417" not in text and "1234-5678" not in text

    # The itemization (1006.34(c)(2)(vi)-(ix)): it adds up to the amount now, as shown.
    def row(row_id: str) -> Decimal:
        return money(soup.find(id=row_id).get_text(" ", strip=True))

    assert written_date(date(2026, 8, 31), language) in soup.find(id="amount-on-itemization-date").get_text()
    then, interest, fees = row("amount-on-itemization-date"), row("interest-since"), row("fees-since")
    paid, now = row("paid-or-credited-since"), row("current-amount")
    assert (then, interest, fees, paid, now) == (
        Decimal("1250.00"), Decimal("58.20"), Decimal("39.00"), Decimal("47.20"), Decimal("1300.00"))
    assert then + interest - paid + fees == now
    assert "−" in soup.find(id="paid-or-credited-since").get_text() and "+" in soup.find(id="fees-since").get_text()

    # The end of the validation period, as a date, in every right (1006.34(c)(3)(i)-(iii), (b)(5)).
    shown = {s.get_text(strip=True) for s in soup.find_all(class_="validation-period-ends")}
    assert shown == {written_date(ends, language)}
    assert len(soup.find_all(class_="validation-period-ends")) == 3
    assert "30 days" not in text and "30天" not in text
    assert DISPUTE_HEADING[language] in text and ORIGINAL_CREDITOR[language] in text
    assert CFPB in text  # 1006.34(c)(3)(iv)

    # The electronic way to dispute (1006.34(c)(3), a notice sent electronically).
    assert soup.find(class_="dispute-email").get_text(strip=True) == DISPUTE_EMAIL
    assert soup.find(class_="dispute-url").get_text(strip=True) == DISPUTE_URL

    # The consumer-response information, under its heading (1006.34(c)(4)).
    if letter:
        form = soup.find(id="response-form")
        assert form is not None and RESPOND_HEADING[language] in form.get_text(" ", strip=True)
        boxes = form.find_all(attrs={"role": "checkbox"})
        assert [box["data-option"] for box in boxes] == [
            "not-my-debt", "amount-wrong", "other", "original-creditor", "enclosed"]
        assert all(box["aria-checked"] == "false" for box in boxes)
        for prompt in PROMPTS[language]:
            assert prompt in form.get_text(" ", strip=True)
        assert COLLECTOR in form.get_text() and NAMES[borrower_language or language] in form.get_text()
        assert not soup.find_all(["img", "link", "script"]) and "http" not in str(soup.find("style"))
        assert "8.5in 11in" in soup.find("style").get_text()
    else:
        section = soup.find(id="response")
        assert RESPOND_HEADING[language] in section.get_text(" ", strip=True)
        for prompt in PROMPTS[language]:
            assert prompt in section.get_text(" ", strip=True)
        assert soup.find("a", href=f"mailto:{DISPUTE_EMAIL}") is not None
        assert soup.find("a", href=DISPUTE_URL) is not None


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_email_is_model_form_b1(sending, placed, language):
    subject, text, html = drafted_email(sending, placed, language)
    read_html(html, language, letter=False)
    ends = written_date(period_end(PROVIDED_ON, 30), language)
    assert ends in subject and "\n" not in subject
    # The plain-text part says the same.
    assert BeautifulSoup(html, "html.parser").find(class_="disclosure") is not None
    assert DISCLOSURE[language] in text and CFPB in text and text.count(ends) >= 3
    lines = {line.split(":")[0].split("：")[0].strip(" -+"): money(line)
             for line in text.splitlines() if MONEY.search(line) and "http" not in line}
    assert sorted(lines.values()) == sorted(
        [Decimal("1250.00"), Decimal("58.20"), Decimal("39.00"), Decimal("47.20"), Decimal("1300.00")])
    for prompt in PROMPTS[language]:
        assert prompt in text
    assert DISPUTE_EMAIL in text and DISPUTE_URL in text and "9113" in text and ACCOUNT not in text
    assert NAMES[language] in text and all(line in text for line in CONSUMER_ADDRESS)


@pytest.mark.parametrize("language", [lang for lang in LANGUAGES if lang != "en"])
def test_a_translated_notice_goes_only_with_the_english_one_first_in_the_same_message(sending, placed, language):
    """12 CFR 1006.34(e): a translation may be provided only if the English
    notice is provided too, in the same or an earlier communication."""
    subject, text, html = drafted_email(sending, placed, language, part="english")
    read_html(html, "en", letter=False, borrower_language=language)
    assert DISCLOSURE["en"] in text and CFPB in text
    assert written_date(period_end(PROVIDED_ON, 30), "en") in subject


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_letter_is_model_form_b1_with_its_tear_off_form(placed, settings, language):
    read_html(drafted_letter(placed, settings, language), language, letter=True)


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_debt_collector_disclosure_is_there_exactly_when_the_collector_is_one(sending, placed, settings, language):
    for debt_collector in (True, False):
        _, text, html = drafted_email(sending, placed, language, debt_collector)
        letter = drafted_letter(placed, settings, language, debt_collector)
        for body in (text, BeautifulSoup(html, "html.parser").get_text(), BeautifulSoup(letter, "html.parser").get_text()):
            assert (DISCLOSURE[language] in body) is debt_collector


def test_the_itemization_is_stored_with_the_loan_and_read_from_the_directory(placed):
    with placed() as db:
        row = db.get(LoanItemization, "L-US-en")
        assert (row.itemization_date, row.amount_on_itemization_date, row.account_number) == (
            date(2026, 8, 31), Decimal("1250.00"), ACCOUNT)


def test_a_loan_without_an_itemization_is_itemized_from_its_terms(placed, sending, session_factory, settings):
    plain = record("en") | {"loan_id": "L-US-plain"}
    del plain["itemization"]
    upsert_placements(session_factory, validate_placements([plain]))
    with session_factory.begin() as db:
        row = sending._draft(db, request("en", loan_id="L-US-plain", key="dunning-L-US-plain/notice", outstanding="1327.45",
                                         collector_name="", collector_mailing_address=(), dispute_email="",
                                         dispute_url=""),
                             datetime(2026, 11, 3, 15, tzinfo=timezone.utc))
    soup = BeautifulSoup(row.body_html, "html.parser")
    # The lender stands in for an unset collector; the due date is the itemization date.
    assert soup.find(class_="collector-name").get_text(strip=True) == settings.lender_name
    assert soup.find(class_="collector-address-line") is None
    assert written_date(date(2026, 10, 15), "en") in soup.find(id="amount-on-itemization-date").get_text()
    assert money(soup.find(id="amount-on-itemization-date").get_text()) == Decimal("1327.45")
    assert money(soup.find(id="current-amount").get_text()) == Decimal("1327.45")
    assert money(soup.find(id="paid-or-credited-since").get_text()) == Decimal("0.00")
    assert soup.find(class_="account-last4") is None and soup.find(class_="dispute-email") is None
