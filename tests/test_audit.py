"""The hash-chained audit log, decisions, complaints, the cross-loan call cap
and the evidence command, against a real (SQLite) database."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.exc import IntegrityError, OperationalError
from temporalio.testing import ActivityEnvironment

from activities.dunning_activities import DunningActivities
from activities.payloads import (
    ComplaintOpened,
    ComplaintResolved,
    ContactRequest,
    DecisionRecord,
    LoanClosing,
    PaymentRecord,
    PrepareLoanInput,
    StageEntry,
)
from activities.rendering import TemplateRenderer
from channels.local import LocalCaptureChannel
from compliance.evidence import format_evidence, loan_time_zone
from db import audit, audit_key
from db.evidence import evidence
from db.models import AuditEntry, Complaint, Contact
from runtime.worker_build import activity_settings
from tests.conftest import BORROWER
from tests.support.audit_tampering import lift_append_only_guard

# The records, the outbox, the audit chain and placing are about the database:
# every database test here runs on SQLite and on PostgreSQL (tests/conftest.py).
pytestmark = pytest.mark.both_databases

PROJECT = Path(__file__).resolve().parent.parent
WORKFLOW_ID = "dunning-L-1001"
SHANGHAI = "Asia/Shanghai"


class Clock:
    """The activities' clock, moved by the test."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class CountingChannel:
    def __init__(self, name: str) -> None:
        self.name = name
        self._inner = LocalCaptureChannel(name)
        self.calls = []
        self.errors: list[Exception] = []

    def send(self, message):
        self.calls.append(message)
        if self.errors:
            raise self.errors.pop(0)
        return self._inner.send(message)


@pytest.fixture
def clock():
    # 09:30 in Shanghai on 2026-11-05.
    return Clock(datetime(2026, 11, 5, 1, 30, tzinfo=timezone.utc))


@pytest.fixture
def channels():
    return {name: CountingChannel(name) for name in ("sms", "email", "voice", "push")}


@pytest.fixture
def acts(session_factory, channels, settings, clock):
    return DunningActivities(
        session_factory, channels, TemplateRenderer(settings.templates_dir), activity_settings(settings), clock=clock
    )


@pytest.fixture
def env():
    return ActivityEnvironment()


def contact(channel="sms", key=f"{WORKFLOW_ID}/reminder/0/sms", **overrides) -> ContactRequest:
    fields = dict(
        key=key, workflow_id=WORKFLOW_ID, loan_id="L-1001", borrower_id="B-77", stage="reminder",
        channel=channel, template="reminder_friendly", days_past_due=3, outstanding="1200.00",
        currency="CNY", due_date="2026-11-01",
    )
    fields.update(overrides)
    return ContactRequest(**fields)


def prepare(loan_id="L-1001", **overrides) -> PrepareLoanInput:
    fields = dict(
        workflow_id=f"dunning-{loan_id}", loan_id=loan_id, borrower_id="B-77", amount_due="1200.00",
        currency="CNY", due_date="2026-11-01", policy="default",
    )
    fields.update(overrides)
    return PrepareLoanInput(**fields)


def payment(payment_id="P-9", amount="300.00", applied=True) -> PaymentRecord:
    return PaymentRecord(
        key=f"{WORKFLOW_ID}/payment/{payment_id}", workflow_id=WORKFLOW_ID, loan_id="L-1001",
        payment_id=payment_id, amount=amount, currency="CNY", paid_at="2026-11-05T10:00:00+08:00",
        applied=applied, reason="" if applied else "currency: USD does not match the loan's CNY",
    )


def stage(name: str) -> StageEntry:
    return StageEntry(
        key=f"{WORKFLOW_ID}/{name}", workflow_id=WORKFLOW_ID, loan_id="L-1001", stage=name,
        days_past_due=31, outstanding="900.00", currency="CNY",
    )


def closing() -> LoanClosing:
    return LoanClosing(
        workflow_id=WORKFLOW_ID, loan_id="L-1001", outcome="repaid", amount_paid="1200.00",
        outstanding="0.00", final_stage="credit_reporting", closed_at="2026-11-20T02:00:00+00:00",
    )


def decision(n: int = 1, kind="decision", rule="window", reason="outside 08:00-22:00 local; postponed to 08:00",
             channel="sms", step_key="reminder/d1/0-sms", at="2026-11-04T15:00:00+00:00") -> DecisionRecord:
    return DecisionRecord(
        key=f"{WORKFLOW_ID}/run-1/decision/{n}", workflow_id=WORKFLOW_ID, loan_id="L-1001", kind=kind,
        rule=rule, reason=reason, channel=channel, step_key=step_key, at=at,
    )


def entries(session_factory) -> list[AuditEntry]:
    with session_factory() as db:
        return db.scalars(select(AuditEntry).order_by(AuditEntry.seq)).all()


def verified(session_factory) -> audit.VerifyResult:
    with session_factory() as db:
        return audit.verify(db)


def a_lifecycle(env, acts, clock) -> None:
    """Contact, payment, stage, closing: one entry each."""
    env.run(acts.prepare_loan, prepare())
    env.run(acts.send_contact, contact())
    clock.now += timedelta(hours=1)
    env.run(acts.record_payment, payment())
    clock.now += timedelta(hours=1)
    env.run(acts.enter_stage, stage("legal"))
    env.run(acts.close_loan, closing())


# ------------------------------------------------------------------- chain


def test_records_append_linked_entries_and_verify_passes(env, acts, clock, session_factory, seeded_borrower):
    a_lifecycle(env, acts, clock)

    log = entries(session_factory)
    assert [entry.kind for entry in log] == ["contact", "payment", "stage", "closing"]
    assert [entry.seq for entry in log] == [1, 2, 3, 4]
    # The loan's own chain: its entries 1 to 4, each linked to the one before.
    assert [entry.loan_seq for entry in log] == [1, 2, 3, 4]
    assert log[0].prev_hash == audit.GENESIS_HASH
    for before, after in zip(log, log[1:]):
        assert after.prev_hash == before.hash
    for entry in log:
        payload = json.loads(entry.payload)
        assert entry.payload == audit.canonical(payload)
        assert entry.scheme == audit.KEYED
        assert entry.hash == audit.loan_entry_hash(
            audit_key.current(), entry.prev_hash, entry.seq, entry.loan_seq, entry.at, entry.loan_id,
            entry.workflow_id, entry.kind, payload,
        )
    with session_factory() as db:
        assert audit.head(db, "L-1001") == (4, log[-1].hash)
        assert entry.loan_id == "L-1001" and entry.workflow_id == WORKFLOW_ID

    sent = json.loads(log[0].payload)
    assert sent["status"] == "sent" and sent["channel"] == "sms" and sent["template"] == "reminder_friendly"
    with session_factory() as db:
        row = db.scalar(select(Contact))
    assert sent["message_sha256"] == audit.message_digest(row.subject, row.body_text, row.body_html)
    assert log[0].at == row.sent_at == datetime(2026, 11, 5, 1, 30, tzinfo=timezone.utc)
    # Ids, codes and money: nothing personal.
    everything = " ".join(entry.payload for entry in log)
    for personal in (BORROWER["name"], BORROWER["phone"], BORROWER["email"], row.body_text):
        assert personal not in everything
    assert json.loads(log[1].payload)["amount"] == "300.00"
    assert json.loads(log[2].payload)["record"] == "legal_case"
    assert json.loads(log[3].payload)["outcome"] == "repaid"

    result = verified(session_factory)
    assert result.ok and result.entries_checked == 4 and result.first_bad_seq is None
    assert result.loans_checked == 1 and result.global_entries == 0


def test_an_empty_log_verifies(session_factory):
    result = verified(session_factory)
    assert result.ok and result.entries_checked == 0


def test_editing_one_payload_is_detected_naming_its_seq(env, acts, clock, session_factory, seeded_borrower):
    a_lifecycle(env, acts, clock)

    with session_factory.begin() as db:
        lift_append_only_guard(db)
        db.execute(text("UPDATE audit_log SET payload = replace(payload, '300.00', '3000.00') WHERE seq = 2"))

    result = verified(session_factory)
    assert not result.ok
    assert result.first_bad_seq == 2 and result.entries_checked == 1 and result.loan_id == "L-1001"
    assert "loan L-1001: entry 2 was altered" in result.problem


def test_editing_a_row_and_rehashing_it_without_the_key_is_caught_at_that_entry(env, acts, clock, session_factory, seeded_borrower):
    a_lifecycle(env, acts, clock)
    with session_factory.begin() as db:
        lift_append_only_guard(db)
        entry = db.get(AuditEntry, 2)
        payload = json.loads(entry.payload) | {"amount": "3000.00"}
        # SHA-256 over what the keyed hash covers: all one can compute without the key.
        forged = hashlib.sha256(audit._loan_hashed_text(
            entry.prev_hash, 2, entry.loan_seq, entry.at, entry.loan_id, entry.workflow_id, entry.kind, payload
        )).hexdigest()
        db.execute(
            update(AuditEntry).where(AuditEntry.seq == 2).values(payload=audit.canonical(payload), hash=forged)
        )

    # Re-hashed without the audit key: the entry's own keyed hash no longer holds.
    result = verified(session_factory)
    assert not result.ok and result.first_bad_seq == 2 and "entry 2 was altered" in result.problem


def test_deleting_a_middle_row_is_detected_naming_it(env, acts, clock, session_factory, seeded_borrower):
    a_lifecycle(env, acts, clock)

    with session_factory.begin() as db:
        lift_append_only_guard(db)
        db.execute(text("DELETE FROM audit_log WHERE seq = 2"))

    result = verified(session_factory)
    assert not result.ok
    # Named by the entry that follows the gap (the removed one has no row left).
    assert result.first_bad_seq == 3 and result.entries_checked == 1
    assert "loan L-1001: entry 2 is missing (removed, or moved): entry 3 follows entry 1" in result.problem


def test_renumbering_after_a_deletion_is_detected(env, acts, clock, session_factory, seeded_borrower):
    a_lifecycle(env, acts, clock)
    with session_factory.begin() as db:
        lift_append_only_guard(db)
        db.execute(text("DELETE FROM audit_log WHERE seq = 2"))
        db.execute(text("UPDATE audit_log SET seq = seq - 1, loan_seq = loan_seq - 1 WHERE seq > 2"))
        db.execute(text("UPDATE audit_loan_heads SET seq = 3"))

    result = verified(session_factory)
    assert not result.ok and result.first_bad_seq == 2 and "does not follow" in result.problem


def test_cutting_entries_off_the_end_is_detected(env, acts, clock, session_factory, seeded_borrower):
    a_lifecycle(env, acts, clock)
    with session_factory.begin() as db:
        lift_append_only_guard(db)
        db.execute(delete(AuditEntry).where(AuditEntry.seq >= 3))

    result = verified(session_factory)
    assert not result.ok and result.loan_id == "L-1001"
    assert "loan L-1001: entries 3 to 4 were removed from the end of its chain" in result.problem


def test_reordering_two_entries_is_detected(env, acts, clock, session_factory, seeded_borrower):
    a_lifecycle(env, acts, clock)
    with session_factory.begin() as db:
        lift_append_only_guard(db)
        db.execute(text("UPDATE audit_log SET seq = 100 WHERE seq = 2"))
        db.execute(text("UPDATE audit_log SET seq = 2 WHERE seq = 3"))
        db.execute(text("UPDATE audit_log SET seq = 3 WHERE seq = 100"))

    result = verified(session_factory)
    assert not result.ok and result.first_bad_seq == 2


def test_reordering_two_entries_within_their_loan_chain_is_detected(env, acts, clock, session_factory, seeded_borrower):
    a_lifecycle(env, acts, clock)
    with session_factory.begin() as db:  # the entries' places in the loan's chain swapped, their ids kept
        lift_append_only_guard(db)
        db.execute(text("UPDATE audit_log SET loan_seq = 100 WHERE seq = 2"))
        db.execute(text("UPDATE audit_log SET loan_seq = 2 WHERE seq = 3"))
        db.execute(text("UPDATE audit_log SET loan_seq = 3 WHERE loan_seq = 100"))

    result = verified(session_factory)
    assert not result.ok and result.first_bad_seq == 2 and "entry 3 follows entry 1" in result.problem


def test_appends_from_many_threads_form_one_chain_per_loan(session_factory):
    def worker(n: int) -> None:
        for i in range(10):
            for _ in range(20):
                try:
                    with session_factory.begin() as db:
                        audit.append(db, "decision", f"L-{n}", f"dunning-L-{n}", {"i": i}, key=f"t{n}/{i}")
                    break
                except (IntegrityError, OperationalError):
                    continue

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    log = entries(session_factory)
    assert len({entry.seq for entry in log}) == 60
    for n in range(6):
        assert [entry.loan_seq for entry in log if entry.loan_id == f"L-{n}"] == list(range(1, 11))
    result = verified(session_factory)
    assert result.ok and result.entries_checked == 60 and result.loans_checked == 6


# ------------------------------------------------------------- idempotency


def test_retried_activities_do_not_append_twice(env, acts, clock, channels, session_factory, seeded_borrower):
    env.run(acts.prepare_loan, prepare())
    for _ in range(2):
        env.run(acts.send_contact, contact())
        env.run(acts.send_contact, contact("email", key="k-no-email", borrower_id="B-404"))  # skipped
        env.run(acts.record_payment, payment())
        env.run(acts.record_payment, payment("P-10", "50", applied=False))
        env.run(acts.enter_stage, stage("call"))
        env.run(acts.close_loan, closing())

    kinds = [entry.kind for entry in entries(session_factory)]
    assert kinds == ["contact", "contact", "payment", "payment", "stage", "closing"]
    assert len(channels["sms"].calls) == 1
    assert verified(session_factory).ok


def test_a_stage_without_a_loan_row_is_audited_once(env, acts, session_factory):
    env.run(acts.enter_stage, stage("reminder"))
    env.run(acts.enter_stage, stage("reminder"))

    assert [entry.kind for entry in entries(session_factory)] == ["stage"]


def test_a_failed_contact_is_audited_once_with_the_recipient_masked(
    env, session_factory, settings, clock, seeded_borrower
):
    from channels.base import PermanentSendError

    class Refusing(CountingChannel):
        def send(self, message):
            raise PermanentSendError(f"{message.recipient} is not a mobile number")

    acts = DunningActivities(
        session_factory, {"sms": Refusing("sms")}, TemplateRenderer(settings.templates_dir), activity_settings(settings),
        clock=clock,
    )
    env.run(acts.send_contact, contact())
    env.run(acts.send_contact, contact())

    [entry] = entries(session_factory)
    payload = json.loads(entry.payload)
    assert payload["status"] == "failed" and "not a mobile number" in payload["detail"]
    assert BORROWER["phone"] not in entry.payload


def test_record_decision_is_idempotent_by_key(env, acts, session_factory):
    env.run(acts.record_decision, decision(1))
    env.run(acts.record_decision, decision(1))
    env.run(acts.record_decision, decision(2, kind="operator", rule="pause", reason="hardship review", channel="",
                                           step_key=""))

    first, second = entries(session_factory)
    assert first.kind == "decision" and second.kind == "operator"
    assert first.at == datetime(2026, 11, 4, 15, 0, tzinfo=timezone.utc)
    assert json.loads(first.payload) == {
        "key": f"{WORKFLOW_ID}/run-1/decision/1", "rule": "window",
        "reason": "outside 08:00-22:00 local; postponed to 08:00", "channel": "sms", "step_key": "reminder/d1/0-sms",
    }
    assert first.key == f"{WORKFLOW_ID}/run-1/decision/1"
    assert verified(session_factory).ok


def test_record_decision_refuses_an_unknown_kind(env, acts):
    from temporalio.exceptions import ApplicationError

    with pytest.raises(ApplicationError) as raised:
        env.run(acts.record_decision, decision(kind="payment"))
    assert raised.value.non_retryable and "kind" in str(raised.value)


def test_complaints_open_and_resolve_once(env, acts, session_factory):
    opened = ComplaintOpened(
        key=f"{WORKFLOW_ID}/complaint/C-3", workflow_id=WORKFLOW_ID, loan_id="L-1001", complaint_id="C-3",
        category="harassment", at="2026-11-06T03:00:00+00:00",
    )
    resolved = ComplaintResolved(
        workflow_id=WORKFLOW_ID, loan_id="L-1001", complaint_id="C-3", upheld=True, reviewer_id="R-12",
        at="2026-11-08T03:00:00+00:00",
    )
    env.run(acts.open_complaint, opened)
    env.run(acts.open_complaint, opened)
    with session_factory() as db:
        [row] = db.scalars(select(Complaint)).all()
        assert row.status == "open" and row.category == "harassment" and row.resolution is None

    env.run(acts.resolve_complaint, resolved)
    env.run(acts.resolve_complaint, resolved)
    env.run(acts.open_complaint, opened)  # a late duplicate does not reopen it

    with session_factory() as db:
        [row] = db.scalars(select(Complaint)).all()
    assert row.status == "resolved" and row.resolution == "upheld" and row.reviewer_id == "R-12"
    assert row.opened_at == datetime(2026, 11, 6, 3, tzinfo=timezone.utc)
    assert row.resolved_at == datetime(2026, 11, 8, 3, tzinfo=timezone.utc)
    log = entries(session_factory)
    assert [(entry.kind, json.loads(entry.payload)["action"]) for entry in log] == [
        ("complaint", "opened"), ("complaint", "resolved")
    ]
    assert json.loads(log[1].payload)["resolution"] == "upheld"

    # The same complaint id on another loan is another complaint.
    env.run(acts.open_complaint, ComplaintOpened(
        key="dunning-L-2002/complaint/C-3", workflow_id="dunning-L-2002", loan_id="L-2002", complaint_id="C-3",
        category="other", at="2026-11-09T03:00:00+00:00",
    ))
    with session_factory() as db:
        assert db.scalar(select(func.count()).select_from(Complaint)) == 2


# --------------------------------------------------------- cross-loan cap


def call(loan_id: str, n: int, cap: int | None = 6) -> ContactRequest:
    return contact(
        "voice", key=f"dunning-{loan_id}/call/{n}", workflow_id=f"dunning-{loan_id}", loan_id=loan_id,
        stage="call", template="call_script", voice_daily_cap=cap,
    )


def test_the_voice_cap_defers_the_seventh_call_of_the_day_across_loans(
    env, acts, clock, channels, session_factory, seeded_borrower
):
    env.run(acts.prepare_loan, prepare("L-1001"))
    env.run(acts.prepare_loan, prepare("L-2002"))
    # Yesterday evening's calls (local) do not count towards today.
    clock.now = datetime(2026, 11, 4, 15, 30, tzinfo=timezone.utc)  # 23:30 in Shanghai
    assert env.run(acts.send_contact, call("L-1001", 0)).result == "sent"

    clock.now = datetime(2026, 11, 5, 1, 0, tzinfo=timezone.utc)  # 09:00 in Shanghai
    for n in range(1, 4):
        for loan_id in ("L-1001", "L-2002"):
            clock.now += timedelta(minutes=10)
            assert env.run(acts.send_contact, call(loan_id, n)).result == "sent"
    assert len(channels["voice"].calls) == 7

    seventh = env.run(acts.send_contact, call("L-2002", 4))
    assert seventh.result == "deferred"
    assert seventh.detail == "voice cap: 6 calls today across the borrower's loans"
    assert seventh.not_before == "2026-11-06T00:00:00+08:00"
    assert len(channels["voice"].calls) == 7
    with session_factory() as db:
        row = db.scalar(select(Contact).where(Contact.key == "dunning-L-2002/call/4"))
        assert row.status == "deferred" and row.recipient is None and row.body_text == ""

    # Later the same day: still deferred, still not called, no second row.
    clock.now += timedelta(hours=6)
    assert env.run(acts.send_contact, call("L-2002", 4)).result == "deferred"
    # Other channels are not capped.
    assert env.run(acts.send_contact, contact("sms", key="k-sms-today")).result == "sent"
    assert len(channels["voice"].calls) == 7

    # The next local day it goes, rendered then, and only once.
    clock.now = datetime(2026, 11, 6, 0, 5, tzinfo=timezone.utc)  # 08:05 in Shanghai
    later = env.run(acts.send_contact, call("L-2002", 4))
    again = env.run(acts.send_contact, call("L-2002", 4))
    assert later.result == again.result == "sent" and not later.not_before
    assert len(channels["voice"].calls) == 8
    with session_factory() as db:
        row = db.scalar(select(Contact).where(Contact.key == "dunning-L-2002/call/4"))
        assert row.status == "sent" and row.recipient == BORROWER["phone"] and row.body_text
        assert row.sent_at == clock.now and row.error is None
        assert db.scalar(select(func.count()).select_from(Contact).where(Contact.channel == "voice")) == 8

    # The deferral itself is the workflow's decision to record; the log has one
    # entry per call actually made, and it verifies.
    log = entries(session_factory)
    assert sum(1 for entry in log if json.loads(entry.payload).get("channel") == "voice") == 8
    assert verified(session_factory).ok


def test_a_call_in_flight_counts_towards_the_cap(env, acts, clock, channels, session_factory, seeded_borrower):
    from channels.base import TransientSendError
    from temporalio.exceptions import ApplicationError

    env.run(acts.send_contact, call("L-1001", 0, cap=2))
    channels["voice"].errors.append(TransientSendError("provider busy"))
    with pytest.raises(ApplicationError):
        env.run(acts.send_contact, call("L-2002", 0, cap=2))  # pending, Temporal will retry it

    assert env.run(acts.send_contact, call("L-1001", 1, cap=2)).result == "deferred"
    # The retry of the call in flight is not held back by the cap it counts in.
    assert env.run(acts.send_contact, call("L-2002", 0, cap=2)).result == "sent"
    with session_factory() as db:
        deferred = db.scalar(select(Contact).where(Contact.key == "dunning-L-1001/call/1"))
    assert deferred.created_at == clock.now


def test_without_a_cap_voice_calls_are_not_counted(env, acts, channels, seeded_borrower):
    for n in range(8):
        assert env.run(acts.send_contact, call("L-1001", n, cap=None)).result == "sent"
    assert len(channels["voice"].calls) == 8


def test_a_deferred_row_is_sent_by_a_caller_without_the_cap(env, acts, clock, channels, session_factory, seeded_borrower):
    for n in range(2):
        env.run(acts.send_contact, call("L-1001", n, cap=2))
    assert env.run(acts.send_contact, call("L-1001", 2, cap=2)).result == "deferred"

    assert env.run(acts.send_contact, call("L-1001", 2, cap=None)).result == "sent"
    assert len(channels["voice"].calls) == 3


# ---------------------------------------------------------------- evidence


def test_evidence_shows_contacts_in_local_time_with_decisions_and_masked_recipients(
    env, acts, clock, session_factory, seeded_borrower
):
    env.run(acts.prepare_loan, prepare())
    env.run(acts.record_decision, decision(1))  # 23:00 local on the 4th
    env.run(acts.send_contact, contact())  # 09:30 local on the 5th
    clock.now += timedelta(minutes=5)
    env.run(acts.send_contact, contact("email", key="k-mail"))
    env.run(acts.record_decision, decision(
        2, kind="operator", rule="opt_out", reason="borrower asked", channel="sms", step_key="",
        at="2026-11-05T02:00:00+00:00",
    ))
    env.run(acts.record_payment, payment())
    env.run(acts.open_complaint, ComplaintOpened(
        key=f"{WORKFLOW_ID}/complaint/C-3", workflow_id=WORKFLOW_ID, loan_id="L-1001", complaint_id="C-3",
        category="harassment", at="2026-11-05T03:00:00+00:00",
    ))

    with session_factory() as db:
        rows = evidence(db, "L-1001")
        zone = loan_time_zone(db, "L-1001")
    assert zone == SHANGHAI
    assert [row["kind"] for row in rows] == ["decision", "contact", "contact", "payment", "operator", "complaint"]
    assert rows[1]["at"] == datetime(2026, 11, 5, 1, 30, tzinfo=timezone.utc)
    assert rows[1]["message_intact"] is True and rows[1]["audit_seq"] is not None

    shown = format_evidence(rows, zone)
    assert "2026-11-05 09:30:00 +08:00" in shown and "2026-11-04 23:00:00 +08:00" in shown
    assert "reminder_friendly" in shown and "sent" in shown
    assert "window" in shown and "postponed to 08:00" in shown
    assert "opt_out" in shown and "harassment" in shown and "300.00 CNY" in shown
    assert "+86***00" in shown and "w***@example.com" in shown
    for personal in (BORROWER["name"], BORROWER["phone"], BORROWER["email"]):
        assert personal not in shown
    lines = shown.splitlines()
    assert lines.index(next(line for line in lines if "window" in line)) < lines.index(
        next(line for line in lines if "reminder_friendly" in line and "sms" in line)
    )


def test_evidence_notices_a_message_changed_after_it_was_sent(env, acts, session_factory, seeded_borrower):
    env.run(acts.send_contact, contact())
    with session_factory.begin() as db:
        db.execute(update(Contact).values(body_text="something else"))

    with session_factory() as db:
        [row] = evidence(db, "L-1001")
    assert row["message_intact"] is False
    assert "MESSAGE CHANGED" in format_evidence([row], SHANGHAI)


# --------------------------------------------------------------------- CLI


def run_cli(settings, *args: str) -> subprocess.CompletedProcess:
    # The test's own checkpoint file (one per test database), not the checkout's.
    checkpoints = Path(tempfile.gettempdir()) / f"audit-checkpoints-{hashlib.sha256(settings.database_url.encode()).hexdigest()[:16]}"
    return subprocess.run(
        [sys.executable, "-m", "compliance.audit_cli", *args],
        cwd=PROJECT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "DUNNING_DATABASE_URL": settings.database_url, "DUNNING_AUDIT_CHECKPOINT_FILE": str(checkpoints)},
    )


def test_the_cli_verifies_and_prints_evidence(env, acts, clock, settings, session_factory, seeded_borrower):
    a_lifecycle(env, acts, clock)

    ok = run_cli(settings, "verify")
    assert ok.returncode == 0, ok.stderr
    assert "verified: 4 entries" in ok.stdout

    shown = run_cli(settings, "evidence", "L-1001")
    assert shown.returncode == 0, shown.stderr
    assert "2026-11-05 09:30:00 +08:00" in shown.stdout and "+86***00" in shown.stdout
    assert BORROWER["phone"] not in shown.stdout and "audit log: intact" in shown.stdout
    as_json = run_cli(settings, "evidence", "L-1001", "--json")
    assert json.loads(as_json.stdout)["rows"][0]["kind"] == "contact"
    assert run_cli(settings, "evidence", "L-404").returncode == 1

    with session_factory.begin() as db:
        lift_append_only_guard(db)
        db.execute(text("UPDATE audit_log SET payload = replace(payload, 'repaid', 'settled') WHERE seq = 4"))
    broken = run_cli(settings, "verify")
    assert broken.returncode == 1
    assert "loan L-1001: entry 4 was altered" in broken.stdout and "first bad entry: #4" in broken.stdout
