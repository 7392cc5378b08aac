"""The activities against a real (SQLite) database, through Temporal's
ActivityEnvironment: idempotent outbox, records and payments, and migrations
that match the models."""

from __future__ import annotations

import subprocess
import sys
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, inspect, select
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.dunning_activities import DunningActivities
from activities.pay_link import resolve_pay_token
from activities.payloads import (
    BureauReport,
    ContactRequest,
    LoanClosing,
    PaymentRecord,
    PrepareLoanInput,
    StageEntry,
)
from activities.rendering import TemplateRenderer
from channels.base import OutboundMessage, PermanentSendError, TransientSendError
from channels.local import LocalCaptureChannel
from runtime.channels import build_channels
from db import outbox
from db.migrate import upgrade_to_head
from db.models import Base, Borrower, BureauRecord, Contact, LegalCase, Loan, Payment
from db.session import make_engine
from runtime.worker_build import activity_settings
from tests.conftest import BORROWER

# The records, the outbox, the audit chain and placing are about the database:
# every database test here runs on SQLite and on PostgreSQL (tests/conftest.py).
pytestmark = pytest.mark.both_databases

PROJECT = Path(__file__).resolve().parent.parent
WORKFLOW_ID = "dunning-L-1001"


class CountingChannel:
    """A provider double around local capture: counts calls, and raises the
    queued errors first."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._inner = LocalCaptureChannel(name)
        self.calls: list[OutboundMessage] = []
        self.delivered: list[OutboundMessage] = []
        self.errors: list[Exception] = []

    def send(self, message: OutboundMessage):
        self.calls.append(message)
        if self.errors:
            raise self.errors.pop(0)
        self.delivered.append(message)
        return self._inner.send(message)


@pytest.fixture
def channels():
    return {name: CountingChannel(name) for name in ("sms", "email", "voice", "push")}


@pytest.fixture
def acts(session_factory, channels, settings):
    return DunningActivities(
        session_factory, channels, TemplateRenderer(settings.templates_dir), activity_settings(settings)
    )


@pytest.fixture
def env():
    return ActivityEnvironment()


def contact(channel: str = "sms", key: str = f"{WORKFLOW_ID}/reminder/0/sms", **overrides) -> ContactRequest:
    fields = dict(
        key=key,
        workflow_id=WORKFLOW_ID,
        loan_id="L-1001",
        borrower_id="B-77",
        stage="reminder",
        channel=channel,
        template="reminder_friendly",
        days_past_due=3,
        outstanding="1200.00",
        currency="CNY",
        due_date="2026-11-01",
    )
    fields.update(overrides)
    return ContactRequest(**fields)


def prepare_input(**overrides) -> PrepareLoanInput:
    fields = dict(
        workflow_id=WORKFLOW_ID,
        loan_id="L-1001",
        borrower_id="B-77",
        amount_due="1200.00",
        currency="CNY",
        due_date="2026-11-01",
        policy="default",
    )
    fields.update(overrides)
    return PrepareLoanInput(**fields)


def rows(session_factory, model):
    with session_factory() as db:
        return db.scalars(select(model)).all()


# ------------------------------------------------------------------ outbox


def test_the_same_key_twice_sends_one_message(env, acts, channels, session_factory, seeded_borrower):
    first = env.run(acts.send_contact, contact())
    second = env.run(acts.send_contact, contact())

    assert first.result == second.result == "sent"
    assert first == second
    assert first.provider == "local" and first.provider_message_id == f"local-{WORKFLOW_ID}/reminder/0/sms"
    assert len(channels["sms"].calls) == 1
    [row] = rows(session_factory, Contact)
    assert row.status == "sent" and row.attempts == 1 and row.sent_at is not None


def test_a_transient_error_leaves_the_row_pending_and_the_retry_sends_it_once(
    env, acts, channels, session_factory, seeded_borrower
):
    channels["sms"].errors.append(TransientSendError("rate limited, try again"))

    with pytest.raises(ApplicationError) as raised:
        env.run(acts.send_contact, contact())
    assert raised.value.type == "TransientSendError" and not raised.value.non_retryable
    [row] = rows(session_factory, Contact)
    assert row.status == "pending" and row.attempts == 1

    outcome = env.run(acts.send_contact, contact())  # Temporal's retry
    assert outcome.result == "sent"
    env.run(acts.send_contact, contact())  # and a late duplicate
    assert len(channels["sms"].calls) == 2
    assert len(channels["sms"].delivered) == 1
    # The retry sent the stored message, not a new rendering.
    assert channels["sms"].calls[0] == channels["sms"].calls[1]
    [row] = rows(session_factory, Contact)
    assert row.status == "sent" and row.attempts == 2


def test_a_permanent_error_fails_the_contact_for_good(env, acts, channels, session_factory, seeded_borrower):
    channels["sms"].errors.append(PermanentSendError(f"'To' number {BORROWER['phone']} is not a mobile number"))

    outcome = env.run(acts.send_contact, contact())
    again = env.run(acts.send_contact, contact())

    assert outcome.result == again.result == "failed"
    assert "not a mobile number" in outcome.detail
    assert BORROWER["phone"] not in outcome.detail  # the provider quoted it; the outcome does not
    assert len(channels["sms"].calls) == 1
    [row] = rows(session_factory, Contact)
    assert row.status == "failed" and row.attempts == 1


def test_the_outbox_never_moves_a_final_status_back_and_never_sends_a_failed_message():
    for final in outbox.FINAL_STATUSES:
        assert not outbox.NEXT[final] & {outbox.PENDING, outbox.SENDING, outbox.DEFERRED}, final
    assert not outbox.may_follow(outbox.FAILED, outbox.SENT)
    assert not outbox.may_follow(outbox.SKIPPED, outbox.SENT)
    assert not outbox.may_follow(outbox.SENT, outbox.FAILED)  # a late undelivered report is kept as the error


def test_a_receipt_after_the_provider_s_failure_callback_leaves_the_row_failed(
    env, acts, channels, session_factory, seeded_borrower
):
    """The provider's callback (the gateway) reports the message undelivered
    while the attempt still waits for the provider's answer: the receipt
    that follows does not turn it into `sent`."""
    sms = channels["sms"]

    def send_then_fail(message):
        receipt = CountingChannel.send(sms, message)
        with session_factory.begin() as db:
            assert outbox.record_provider_failure(outbox.find(db, message.key), "twilio undelivered")
        return receipt

    sms.send = send_then_fail
    outcome = env.run(acts.send_contact, contact())

    assert outcome.result == "failed"
    [row] = rows(session_factory, Contact)
    assert row.status == "failed" and row.error == "twilio undelivered"
    assert env.run(acts.send_contact, contact()).result == "failed" and len(sms.calls) == 1


def test_an_unknown_borrower_is_skipped_without_calling_the_provider(env, acts, channels, session_factory):
    outcome = env.run(acts.send_contact, contact(borrower_id="B-404"))

    assert outcome.result == "skipped_no_address"
    assert not channels["sms"].calls
    [row] = rows(session_factory, Contact)
    assert row.status == "skipped_no_address" and row.recipient is None


def test_a_borrower_without_email_is_skipped_on_email_but_reached_by_sms(env, acts, channels, session_factory):
    with session_factory.begin() as db:
        db.add(Borrower(**{**BORROWER, "borrower_id": "B-78", "email": None}))

    email = env.run(acts.send_contact, contact("email", key="k-email", borrower_id="B-78"))
    sms = env.run(acts.send_contact, contact("sms", key="k-sms", borrower_id="B-78"))

    assert email.result == "skipped_no_address"
    assert sms.result == "sent"
    assert not channels["email"].calls and len(channels["sms"].calls) == 1


def test_push_without_a_token_addresses_the_borrower_id(env, acts, channels, seeded_borrower):
    outcome = env.run(acts.send_contact, contact("push", key="k-push"))

    assert outcome.result == "sent"
    assert channels["push"].calls[0].recipient == "B-77"


def test_the_message_is_rendered_into_the_row_and_never_into_the_outcome(
    env, acts, channels, session_factory, settings, seeded_borrower
):
    outcome = env.run(acts.send_contact, contact("email", key="k-mail"))

    [row] = rows(session_factory, Contact)
    assert row.recipient == BORROWER["email"] and row.language == "zh_CN"
    assert BORROWER["name"] in row.body_text and BORROWER["name"] in row.body_html
    assert row.subject
    assert "1,200.00" in row.body_text
    link_prefix = settings.pay_link_base_url.rstrip("/") + "/"
    assert link_prefix in row.body_text
    token = row.body_text.split(link_prefix, 1)[1].split()[0]
    with session_factory() as db:  # an opaque token; the database knows it only by its hash
        assert resolve_pay_token(db, token, datetime.now(timezone.utc)).loan_id == "L-1001"
    assert "L-1001" not in token
    assert channels["email"].calls[0].text == row.body_text

    shown = repr(outcome)
    for personal in (BORROWER["name"], BORROWER["email"], BORROWER["phone"], "wang"):
        assert personal not in shown


def test_amounts_use_the_currency_decimals(env, acts, session_factory, seeded_borrower):
    env.run(acts.send_contact, contact(key="k-jpy", outstanding="123456", currency="JPY"))

    [row] = rows(session_factory, Contact)
    assert "123,456" in row.body_text and "123,456.00" not in row.body_text


def test_a_missing_template_is_not_retried(env, acts, channels, session_factory, seeded_borrower):
    with pytest.raises(ApplicationError) as raised:
        env.run(acts.send_contact, contact(template="no_such_template"))

    assert raised.value.type == "TemplateMissing" and raised.value.non_retryable
    assert not channels["sms"].calls
    assert rows(session_factory, Contact) == []


def test_an_unknown_channel_is_not_retried(env, acts, seeded_borrower):
    with pytest.raises(ApplicationError) as raised:
        env.run(acts.send_contact, contact("fax"))

    assert raised.value.type == "UnknownChannel" and raised.value.non_retryable


def test_local_capture_logs_a_masked_recipient(settings, seeded_borrower, session_factory, env):
    from structlog.testing import capture_logs

    acts = DunningActivities(
        session_factory, build_channels(settings), TemplateRenderer(settings.templates_dir), activity_settings(settings)
    )
    with capture_logs() as logs:
        env.run(acts.send_contact, contact())

    [captured] = [entry for entry in logs if entry["event"] == "message_captured"]
    assert captured["key"] == f"{WORKFLOW_ID}/reminder/0/sms" and captured["channel"] == "sms"
    assert captured["length"] > 0
    assert BORROWER["phone"] not in repr(logs) and BORROWER["name"] not in repr(logs)
    [sent] = [entry for entry in logs if entry["event"] == "contact_sent"]
    assert sent["loan_id"] == "L-1001" and sent["activity"] and sent["workflow_id"] and "run_id" in sent


# ------------------------------------------------------------- prepare_loan


def test_prepare_loan_writes_the_loan_once_and_reads_the_borrowers_preferences(
    env, acts, session_factory, seeded_borrower
):
    first = env.run(acts.prepare_loan, prepare_input())
    second = env.run(acts.prepare_loan, prepare_input())

    assert first == second
    assert first.borrower_known and first.time_zone == "Asia/Shanghai" and first.language == "zh_CN"
    assert first.policy["name"] == "default"
    [loan] = rows(session_factory, Loan)
    assert loan.workflow_id == WORKFLOW_ID and loan.amount_due == Decimal("1200.00")
    assert loan.due_date == date(2026, 11, 1) and loan.stage == "pending" and loan.amount_paid == 0


def test_prepare_loan_for_an_unknown_borrower_uses_the_policy_defaults(env, acts, session_factory):
    prepared = env.run(acts.prepare_loan, prepare_input(borrower_id="B-404"))

    assert not prepared.borrower_known
    assert prepared.time_zone == prepared.policy["default_time_zone"]
    assert prepared.language == prepared.policy["default_language"]
    assert rows(session_factory, Loan) == []


def test_an_unknown_policy_fails_without_retries_naming_it(env, acts, seeded_borrower):
    with pytest.raises(ApplicationError) as raised:
        env.run(acts.prepare_loan, prepare_input(policy="no-such-policy"))

    assert raised.value.type == "PolicyError" and raised.value.non_retryable
    assert "no-such-policy" in str(raised.value)


# ------------------------------------------------------- stages and payments


def stage(name: str, key: str | None = None) -> StageEntry:
    return StageEntry(
        key=key or f"{WORKFLOW_ID}/stage/{name}",
        workflow_id=WORKFLOW_ID,
        loan_id="L-1001",
        stage=name,
        days_past_due=60,
        outstanding="900.00",
        currency="CNY",
    )


def bureau_report(key: str = f"{WORKFLOW_ID}/bureau/first") -> BureauReport:
    return BureauReport(key=key, workflow_id=WORKFLOW_ID, loan_id="L-1001", days_past_due=60, outstanding="900.00", currency="CNY")


def test_entering_a_stage_twice_and_reporting_twice_makes_one_bureau_record_and_one_legal_case(
    env, acts, session_factory, seeded_borrower
):
    env.run(acts.prepare_loan, prepare_input())
    env.run(acts.enter_stage, stage("reminder"))
    assert rows(session_factory, Loan)[0].stage == "reminder"

    env.run(acts.enter_stage, stage("credit_reporting"))
    assert rows(session_factory, BureauRecord) == []  # filed when the profile allows, not at entry
    env.run(acts.report_to_bureau, bureau_report())
    env.run(acts.report_to_bureau, bureau_report())
    [record] = rows(session_factory, BureauRecord)
    assert record.balance == Decimal("900.00") and record.days_past_due == 60
    assert rows(session_factory, Loan)[0].stage == "credit_reporting"

    env.run(acts.enter_stage, stage("legal"))
    env.run(acts.enter_stage, stage("legal"))
    assert len(rows(session_factory, LegalCase)) == 1
    assert len(rows(session_factory, BureauRecord)) == 1


def test_entering_a_stage_without_a_loan_row_still_keeps_the_record(env, acts, session_factory):
    env.run(acts.enter_stage, stage("legal"))

    assert len(rows(session_factory, LegalCase)) == 1


def payment(payment_id: str, amount: str, applied: bool = True, **overrides) -> PaymentRecord:
    fields = dict(
        key=f"L-1001/{payment_id}",
        workflow_id=WORKFLOW_ID,
        loan_id="L-1001",
        payment_id=payment_id,
        amount=amount,
        currency="CNY",
        paid_at="2026-11-05T10:00:00+08:00",
        applied=applied,
        reason="" if applied else "currency USD is not the loan's CNY",
    )
    fields.update(overrides)
    return PaymentRecord(**fields)


def test_a_payment_recorded_twice_counts_once(env, acts, session_factory, seeded_borrower):
    env.run(acts.prepare_loan, prepare_input())

    env.run(acts.record_payment, payment("P-9", "300.00"))
    env.run(acts.record_payment, payment("P-9", "300.00"))
    assert len(rows(session_factory, Payment)) == 1
    assert rows(session_factory, Loan)[0].amount_paid == Decimal("300.00")

    env.run(acts.record_payment, payment("P-10", "0.10"))
    env.run(acts.record_payment, payment("P-11", "50", applied=False, currency="USD"))
    assert len(rows(session_factory, Payment)) == 3
    assert rows(session_factory, Loan)[0].amount_paid == Decimal("300.10")


def test_closing_a_loan_is_idempotent(env, acts, session_factory, seeded_borrower):
    env.run(acts.prepare_loan, prepare_input())
    closing = LoanClosing(
        workflow_id=WORKFLOW_ID,
        loan_id="L-1001",
        outcome="repaid",
        amount_paid="1200.00",
        outstanding="0.00",
        final_stage="call",
        closed_at="2026-11-20T02:00:00+00:00",
    )
    env.run(acts.close_loan, closing)
    env.run(acts.close_loan, closing)
    env.run(acts.enter_stage, stage("legal", key="late"))  # a late stage entry does not reopen it

    [loan] = rows(session_factory, Loan)
    assert loan.stage == "closed" and loan.outcome == "repaid" and loan.amount_paid == Decimal("1200.00")
    assert loan.closed_at.isoformat() == "2026-11-20T02:00:00+00:00"


# ------------------------------------------------------------------ schema


def test_the_migrations_build_exactly_the_models_schema(database_url):
    with make_engine(database_url).connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        tables = set(inspect(connection).get_table_names())

    assert differences == []
    assert set(Base.metadata.tables) <= tables and "alembic_version" in tables


def test_migrating_again_changes_nothing(database_url, session_factory, seeded_borrower):
    upgrade_to_head(database_url)

    with session_factory() as db:
        assert db.scalar(select(func.count()).select_from(Borrower)) == 1


def test_two_processes_can_migrate_the_same_new_file_at_once(tmp_path):
    url = f"sqlite:///{tmp_path / 'shared' / 'dunning.db'}"
    code = "import sys; from db.migrate import upgrade_to_head; upgrade_to_head(sys.argv[1])"
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", code, url], cwd=PROJECT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    results = [(p.wait(timeout=120), *p.communicate()) for p in processes]

    for returncode, stdout, stderr in results:
        assert returncode == 0, stderr
        assert stdout == ""  # quiet
    with make_engine(url).connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []


# ------------------------------------- the details read at each contact (15.3)


def _moved_to(session_factory, zone: str, phone: str) -> None:
    with session_factory.begin() as db:
        borrower = db.get(Borrower, "B-77")
        borrower.time_zone, borrower.phone = zone, phone


def test_a_borrower_who_moved_west_is_not_texted_at_0600_their_time(env, acts, channels, session_factory, seeded_borrower):
    """Issue 15, item 3: the loan started in New York; the directory now says
    Los Angeles. 09:00 in New York is 06:00 there: the SMS is held, with the
    zones read now, and nothing is written to the outbox."""
    _moved_to(session_factory, "America/Los_Angeles", "+14155550123")
    nine_new_york = datetime(2026, 11, 4, 14, 0, tzinfo=timezone.utc)  # 09:00 EST, 06:00 PST
    request = contact(window_start="08:00:00", window_end="21:00:00", loan_at=nine_new_york.isoformat(),
                      time_zone="America/New_York")
    outcome = env.run(acts.send_contact, request)
    assert outcome.result == "deferred" and outcome.rule == "window"
    assert outcome.time_zones == ("America/Los_Angeles",)
    assert datetime.fromisoformat(outcome.not_before) == datetime(2026, 11, 4, 16, 0, tzinfo=timezone.utc)  # 08:00 PST
    assert channels["sms"].calls == [] and rows(session_factory, Contact) == []
    # At 08:00 in Los Angeles it goes, and the outcome carries the zones.
    later = env.run(acts.send_contact, contact(window_start="08:00:00", window_end="21:00:00",
                                               loan_at="2026-11-04T16:00:00+00:00", time_zone="America/New_York"))
    assert later.result == "sent" and later.time_zones == ("America/Los_Angeles",)


def test_a_number_spanning_two_zones_holds_a_contact_until_it_is_inside_the_window_in_both(
    env, acts, channels, session_factory, seeded_borrower,
):
    _moved_to(session_factory, "America/Boise", "+12085550123")
    eight_boise = datetime(2026, 11, 4, 15, 0, tzinfo=timezone.utc)  # 08:00 MST, 07:00 PST
    outcome = env.run(acts.send_contact, contact(window_start="08:00:00", window_end="21:00:00",
                                                 loan_at=eight_boise.isoformat(), time_zone="America/Boise"))
    assert outcome.result == "deferred" and set(outcome.time_zones) == {"America/Boise", "America/Los_Angeles"}
    assert datetime.fromisoformat(outcome.not_before) == eight_boise + timedelta(hours=1)


def test_a_request_from_an_older_workflow_is_not_checked_again(env, acts, channels, session_factory, seeded_borrower):
    _moved_to(session_factory, "America/Los_Angeles", "+14155550123")
    outcome = env.run(acts.send_contact, contact())  # no window fields: as an older run asks
    assert outcome.result == "sent" and outcome.time_zones == ()
