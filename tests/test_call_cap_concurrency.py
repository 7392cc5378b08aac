"""Issue 15, item 8: the cn per-borrower daily call cap under concurrency.

Many loans of one borrower whose calls are claimed at the same instant (the
window opening, 08:00 in Shanghai) from several threads: exactly the cap's
number of calls go out that local day, the rest are deferred. A call
postponed from an earlier day and released today counts against today's cap
while it is in flight (its row was created on the earlier day). The clock is
fixed: no test here reads the wall clock's hour.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import select

from db import outbox
from db.models import Borrower, Contact
from loaders.config_files import load_profile
from tests.conftest import BORROWER

# The outbox is about the database: both of them (tests/conftest.py).
pytestmark = pytest.mark.both_databases

PROJECT = Path(__file__).resolve().parent.parent
CAP = load_profile("cn", PROJECT / "config" / "profiles").caps.voice_attempts_per_day_per_borrower
# 08:00 on 2026-11-05 in Asia/Shanghai: the window opens, postponed calls are released.
OPENING = datetime(2026, 11, 5, 0, 0, tzinfo=timezone.utc)
YESTERDAY = OPENING - timedelta(hours=10)  # 22:00 the day before, local
LOANS = 8
THREADS = 8
ROUNDS = 20


@dataclass(frozen=True)
class Call:
    """What the outbox needs of a contact (db/outbox.py, ContactToSend)."""

    key: str
    workflow_id: str
    loan_id: str
    borrower_id: str
    stage: str = "call"
    channel: str = "voice"
    template: str = "call_script"
    voice_daily_cap: int | None = CAP


def call(borrower_id: str, loan: int, step: int = 0) -> Call:
    loan_id = f"L-{borrower_id}-{loan}"
    return Call(key=f"dunning-{loan_id}/call/{step}", workflow_id=f"dunning-{loan_id}", loan_id=loan_id,
                borrower_id=borrower_id)


def claim(session_factory, contact: Call, at: datetime) -> outbox.Claim:
    def draft(db) -> Contact:
        row = outbox.new_row(contact, "zh_CN")
        row.recipient, row.body_text = BORROWER["phone"], "call script"
        return row

    return outbox.claim(session_factory, contact, at=at, resend_in_doubt=True, draft=draft)


def add_borrower(session_factory, borrower_id: str) -> None:
    with session_factory.begin() as db:
        db.add(Borrower(**{**BORROWER, "borrower_id": borrower_id}))


def postpone(session_factory, contact: Call) -> None:
    """The call, deferred on an earlier local day (the row is that day's)."""
    with session_factory.begin() as db:
        row = outbox.new_row(contact, "zh_CN")
        row.status, row.created_at, row.error = outbox.DEFERRED, YESTERDAY, "voice cap: 6 calls today"
        db.add(row)


def claim_all_at_once(session_factory, calls: list[Call], at: datetime) -> list[outbox.Claim]:
    barrier = threading.Barrier(len(calls))

    def one(contact: Call) -> outbox.Claim:
        barrier.wait()
        return claim(session_factory, contact, at)

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        return list(pool.map(one, calls))


def in_flight_or_sent(session_factory, borrower_id: str) -> int:
    with session_factory() as db:
        return len(db.scalars(select(Contact).where(
            Contact.borrower_id == borrower_id, Contact.status.in_((outbox.SENDING, outbox.SENT)),
        )).all())


def test_the_cn_cap_is_the_one_the_test_checks():
    assert CAP == 6 and LOANS > CAP


@pytest.mark.parametrize("postponed", [True, False], ids=["postponed_calls_released", "new_calls"])
def test_calls_of_many_loans_claimed_at_the_same_instant_keep_the_cap(session_factory, postponed):
    for round_no in range(ROUNDS):
        borrower_id = f"B-{round_no}-{'p' if postponed else 'n'}"
        add_borrower(session_factory, borrower_id)
        calls = [call(borrower_id, loan) for loan in range(LOANS)]
        if postponed:
            for contact in calls:
                postpone(session_factory, contact)

        claims = claim_all_at_once(session_factory, calls, OPENING)

        sent = [c for c in claims if c.send]
        deferred = [c for c in claims if not c.send]
        assert len(sent) == CAP, f"round {round_no}: {len(sent)} calls claimed, cap {CAP}"
        assert all(c.row.status == outbox.DEFERRED for c in deferred)
        assert all(c.not_before == datetime(2026, 11, 6, tzinfo=timezone(timedelta(hours=8))) for c in deferred)
        assert in_flight_or_sent(session_factory, borrower_id) == CAP

        # The calls go out (the provider took them) and a later claim that day is still refused.
        with session_factory.begin() as db:
            for c in sent:
                outbox.finish_sent(db, c.row.key, OPENING + timedelta(seconds=1), "local", f"m-{c.row.key}")
        again = claim(session_factory, call(borrower_id, 0, step=1), OPENING + timedelta(hours=2))
        assert not again.send


def test_a_call_postponed_from_an_earlier_day_and_released_today_counts_against_today(session_factory):
    add_borrower(session_factory, "B-1")
    released = call("B-1", 0)
    postpone(session_factory, released)

    first = claim(session_factory, released, OPENING)
    assert first.send  # in flight now (`sending`), its row created yesterday

    others = [claim(session_factory, call("B-1", 1, step), OPENING + timedelta(minutes=step)) for step in range(CAP)]
    assert [c.send for c in others] == [True] * (CAP - 1) + [False]
    assert others[-1].row.error == f"voice cap: {CAP} calls today across the borrower's loans"

    # Sent today (sent_at today), it still counts; tomorrow it does not.
    with session_factory.begin() as db:
        outbox.finish_sent(db, released.key, OPENING + timedelta(minutes=30), "local", "m-1")
    assert not claim(session_factory, call("B-1", 2), OPENING + timedelta(hours=1)).send
    assert claim(session_factory, call("B-1", 2), OPENING + timedelta(days=1)).send


# ------------------------------------------------- issue 15, item 9: spacing

SPACING = 30


def spaced_call(borrower_id: str, loan: int, step: int = 0) -> Call:
    plain = call(borrower_id, loan, step)
    return SpacedCall(**{**plain.__dict__, "voice_daily_cap": None})


@dataclass(frozen=True)
class SpacedCall(Call):
    min_minutes_between_calls: int | None = SPACING


def test_calls_of_many_loans_released_together_go_one_at_a_time(session_factory):
    """The window opens and eight loans' postponed calls are claimed at one
    instant: one rings; the others wait SPACING minutes, across loans."""
    add_borrower(session_factory, "B-SP")
    claims = claim_all_at_once(session_factory, [spaced_call("B-SP", n) for n in range(LOANS)], OPENING)
    sending = [c for c in claims if c.send]
    held = [c for c in claims if not c.send]
    assert len(sending) == 1
    assert held and all(c.rule == "call_spacing" and c.not_before == OPENING + timedelta(minutes=SPACING) for c in held)


def test_a_call_waits_the_interval_after_the_last_one_sent(session_factory):
    add_borrower(session_factory, "B-SQ")
    first = claim(session_factory, spaced_call("B-SQ", 1), OPENING)
    assert first.send
    with session_factory.begin() as db:
        outbox.finish_sent(db, first.row.key, OPENING, "local", "m-1")
    too_soon = claim(session_factory, spaced_call("B-SQ", 2), OPENING + timedelta(minutes=10))
    assert not too_soon.send and too_soon.not_before == OPENING + timedelta(minutes=SPACING)
    in_time = claim(session_factory, spaced_call("B-SQ", 2), OPENING + timedelta(minutes=SPACING))
    assert in_time.send
