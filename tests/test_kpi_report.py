"""The KPI report (reports/kpi.py, reports/chart.py, `starter.py report`) on a
seeded portfolio whose every number is worked out by hand below.

The portfolio: 11 loans on two policies (default, us), two segments
(standard, high_balance), two currencies. L11 was placed in December 2025 and
the report is for loans placed from 2026-01-01, so it is left out; a payment
of a loan with no `loans` row (L-GHOST) is never counted.

loan policy  segment*     cur  amount   stages entered (dpd)        final        outcome         dpd**  applied payments          sent***  promises       plans
L1   default standard     CNY  1000.00  reminder(1)                 reminder     repaid           5     1000.00                   3        -              -
L2   default standard     CNY  2000.00  reminder(1) call(8)         call         repaid          12     500.00 + 1500.00          5        kept           -
L3   default standard     CNY  3000.00  r(1) c(8) negotiation(16)   negotiation  settled         25     2400.00                   6        broken         kept
L4   default high_balance CNY  5000.00  r c n credit_rep(31) legal(91) legal     written_off    180     100.00                   10        broken,broken  broken
L5   default high_balance CNY  6000.00  r c n credit_reporting(31)  credit_rep.  open            31     600.00                    8        open           active
L6   default high_balance CNY  8000.00  r c n cr legal(91)          legal        repaid         100     8000.00                  12        -              -
L7   us      standard     USD   500.00  reminder(1)                 reminder     repaid           3     500.00                    2        -              -
L8   us      standard     USD  1200.00  r c n cr legal(91)          legal        open            95     200.00                    7        broken,kept    -
L9   us      high_balance USD  7000.00  r(1) c(4)                   call         dispute_upheld  10     -                         3        -              -
L10  default standard     USD   400.00  (none: repaid on day 0)     -            repaid           0     400.00                    0        -              -
L11  default standard     CNY   700.00  reminder(1)  placed 2025-12-15, open, 1 sent contact: outside the window

*   the segment on the loan's first stage entry; L4's `loans.segment` is
    `broken_promises` (it moved there after two broken promises), which only
    the "final" basis uses. L10 never entered a stage: its `loans.segment`.
**  DPD reached = max(loans.max_days_past_due, last stage entry's dpd). L5's
    `loans.max_days_past_due` is 0 (a row from before the column), its last
    entry says 31.
*** contacts with status `sent`; L1 also has a failed and a skipped one, L2 an
    unapplied 300.00 USD payment, L8 a deferred contact: none of them counts.

Overall (L1-L10)
  outcomes: repaid 5 (L1 L2 L6 L7 L10), settled 1, written_off 1, dispute_upheld 1, open 2 (L5 L8)
  CNY: 6 loans, placed 1000+2000+3000+5000+6000+8000 = 25000.00,
       recovered 1000+2000+2400+100+600+8000 = 14100.00, rate 14100/25000 = 0.5640;
       sent 3+5+6+10+8+12 = 44, per unit 44/14100 = 0.0031206 -> 0.003121
  USD: 4 loans, placed 500+1200+7000+400 = 9100.00, recovered 500+200+0+400 = 1100.00,
       rate 1100/9100 = 0.120879 -> 0.1209; sent 2+7+3+0 = 12, per unit 12/1100 = 0.0109091 -> 0.010909
  cure: reminder entered L1-L9 = 9, cured L1 L7 = 2 (rolled 7)            2/9 = 0.2222
        call entered L2-L6 L8 L9 = 7, cured L2, lost L9 (rolled 5)         1/7 = 0.1429
        negotiation entered L3-L6 L8 = 5, cured L3 (rolled 4)             1/5 = 0.2000
        credit_reporting entered L4 L5 L6 L8 = 4, open L5 (rolled 3)      0/4 = 0.0000
        legal entered L4 L6 L8 = 3, cured L6, open L8, lost L4            1/3 = 0.3333
        cured before the first stage: L10
  reached: 1-30: L1-L9 = 9; 31-60: L4 L5 L6 L8 = 4; 61-90: L4 L6 L8 = 3; 91-180: 3; 180+: 0
  rolls: 4/9 = 0.4444, 3/4 = 0.7500, 3/3 = 1.0000, 0/3 = 0.0000
  promises: kept 2, broken 4, open 1: 2/6 = 0.3333; plans kept 1, broken 1, active 1: 1/2 = 0.5000
  contacts sent 44 + 12 = 56

Groups (sorted by policy, segment)
  default/high_balance (L4 L5 L6): CNY placed 19000.00, recovered 8700.00, 8700/19000 = 0.45789 -> 0.4579;
       sent 30, 30/8700 = 0.0034483 -> 0.003448; cure reminder 0/3, call 0/3, negotiation 0/3,
       credit_reporting 0/3 (L5 open), legal 1/2 = 0.5000; reached 3, 3, 2, 2, 0:
       rolls 3/3 = 1.0000, 2/3 = 0.6667, 2/2 = 1.0000, 0/2 = 0.0000; promises 0 kept, 2 broken, 1 open: 0/2;
       plans broken 1, active 1: 0/1
  default/standard (L1 L2 L3 L10): CNY placed 6000.00, recovered 5400.00, 0.9000, sent 14, 14/5400 = 0.0025926 -> 0.002593;
       USD (L10) placed 400.00, recovered 400.00, 1.0000, sent 0, 0/400 = 0.000000;
       cure reminder 1/3 = 0.3333, call 1/2 = 0.5000, negotiation 1/1 = 1.0000, credit_reporting and legal 0/0;
       reached 3, 0, 0, 0, 0: rolls 0/3, then none; promises 1/2 = 0.5000; plans 1/1 = 1.0000
  us/high_balance (L9): USD placed 7000.00, recovered 0.00, 0.0000, sent 3, per unit: none (nothing recovered)
  us/standard (L7 L8): USD placed 1700.00, recovered 700.00, 700/1700 = 0.41176 -> 0.4118, sent 9, 9/700 = 0.0128571 -> 0.012857;
       cure reminder 1/2, call 0/1, negotiation 0/1, credit_reporting 0/1, legal 0/1 (L8 open);
       reached 2, 1, 1, 1, 0: rolls 1/2 = 0.5000, 1/1, 1/1, 0/1
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from db.models import Contact, Loan, Payment, PlanRecord, PromiseRecord, StageEntry
from reports.chart import write_report_files
from reports.kpi import build_report
from reports.kpi_render import format_text, kpis_json, report_json
from reports.loan_facts import Filters

pytestmark = pytest.mark.both_databases

PROJECT = Path(__file__).resolve().parent.parent
SINCE = date(2026, 1, 1)
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)


def _loan(db, borrower, loan_id, policy, amount, currency, *, placed, segment, stages=(), dpd=0, outcome=None,
          payments=(), sent=0, other_contacts=(), promises=(), plans=()):
    """One loan and its rows. `stages` is ((stage, dpd, segment), ...)."""
    wf = f"dunning-{loan_id}"
    db.add(Loan(
        loan_id=loan_id, borrower_id=borrower, amount_due=Decimal(amount), currency=currency,
        due_date=placed.date(), policy=policy, workflow_id=wf, placed_at=placed,
        stage="closed" if outcome else (stages[-1][0] if stages else "pending"), outcome=outcome,
        closed_at=placed + timedelta(days=dpd + 1) if outcome else None, max_days_past_due=dpd, segment=segment,
    ))
    for stage, day, stage_segment in stages:
        db.add(StageEntry(
            key=f"{wf}/{stage}", loan_id=loan_id, stage=stage, days_past_due=day, segment=stage_segment,
            outstanding=Decimal(amount), entered_at=placed + timedelta(days=day),
        ))
    for n, (value, pay_currency, applied) in enumerate(payments):
        db.add(Payment(
            key=f"{wf}/payment/P{n}", loan_id=loan_id, workflow_id=wf, payment_id=f"P{n}", amount=value,
            currency=pay_currency, paid_at=placed.isoformat(), applied=applied,
            reason=None if applied else "currency: does not match",
        ))
    statuses = ["sent"] * sent + list(other_contacts)
    for n, status in enumerate(statuses):
        db.add(Contact(
            key=f"{wf}/c{n}", workflow_id=wf, loan_id=loan_id, borrower_id=borrower, stage="reminder",
            channel="sms", template="reminder_friendly", language="zh_CN", status=status,
        ))
    for n, status in enumerate(promises):
        db.add(PromiseRecord(
            key=f"{wf}/promise/{n}", loan_id=loan_id, workflow_id=wf, promise_no=n + 1, amount=Decimal("100.00"),
            currency=currency, by_date=placed.date() + timedelta(days=20), status=status, policy=policy,
            segment=segment, made_at=placed + timedelta(days=10),
        ))
    for n, status in enumerate(plans):
        db.add(PlanRecord(
            key=f"{wf}/plan/{n}", loan_id=loan_id, workflow_id=wf, plan_no=n + 1, status=status,
            total=Decimal(amount), currency=currency, policy=policy, segment=segment,
            accepted_at=placed + timedelta(days=16),
        ))


def _day(month, day, year=2026):
    return datetime(year, month, day, 8, 0, tzinfo=timezone.utc)


def _path(*stages):
    return tuple(stages)


R, C, N, CR, LG = "reminder", "call", "negotiation", "credit_reporting", "legal"


@pytest.fixture
def portfolio(session_factory, seeded_borrower):
    b = seeded_borrower
    std, high = "standard", "high_balance"
    with session_factory.begin() as db:
        _loan(db, b, "L1", "default", "1000.00", "CNY", placed=_day(1, 5), segment=std, dpd=5, outcome="repaid",
              stages=[(R, 1, std)], payments=[("1000.00", "CNY", True)], sent=3,
              other_contacts=["failed", "skipped_no_address"])
        _loan(db, b, "L2", "default", "2000.00", "CNY", placed=_day(1, 10), segment=std, dpd=12, outcome="repaid",
              stages=[(R, 1, std), (C, 8, std)],
              payments=[("500.00", "CNY", True), ("300.00", "USD", False), ("1500.00", "CNY", True)], sent=5,
              promises=["kept"])
        _loan(db, b, "L3", "default", "3000.00", "CNY", placed=_day(1, 20), segment=std, dpd=25, outcome="settled",
              stages=[(R, 1, std), (C, 8, std), (N, 16, std)], payments=[("2400.00", "CNY", True)], sent=6,
              promises=["broken"], plans=["kept"])
        _loan(db, b, "L4", "default", "5000.00", "CNY", placed=_day(1, 25), segment="broken_promises", dpd=180,
              outcome="written_off",
              stages=[(R, 1, high), (C, 4, high), (N, 16, high), (CR, 31, high), (LG, 91, "broken_promises")],
              payments=[("100.00", "CNY", True)], sent=10, promises=["broken", "broken"], plans=["broken"])
        _loan(db, b, "L5", "default", "6000.00", "CNY", placed=_day(2, 1), segment=high, dpd=0,
              stages=[(R, 1, high), (C, 4, high), (N, 16, high), (CR, 31, high)],
              payments=[("600.00", "CNY", True)], sent=8, promises=["open"], plans=["active"])
        _loan(db, b, "L6", "default", "8000.00", "CNY", placed=_day(2, 3), segment=high, dpd=100, outcome="repaid",
              stages=[(R, 1, high), (C, 4, high), (N, 16, high), (CR, 31, high), (LG, 91, high)],
              payments=[("8000.00", "CNY", True)], sent=12)
        _loan(db, b, "L7", "us", "500.00", "USD", placed=_day(2, 5), segment=std, dpd=3, outcome="repaid",
              stages=[(R, 1, std)], payments=[("500.00", "USD", True)], sent=2)
        _loan(db, b, "L8", "us", "1200.00", "USD", placed=_day(2, 10), segment=std, dpd=95,
              stages=[(R, 1, std), (C, 8, std), (N, 16, std), (CR, 31, std), (LG, 91, std)],
              payments=[("200.00", "USD", True)], sent=7, other_contacts=["deferred"], promises=["broken", "kept"])
        _loan(db, b, "L9", "us", "7000.00", "USD", placed=_day(2, 15), segment=high, dpd=10, outcome="dispute_upheld",
              stages=[(R, 1, high), (C, 4, high)], sent=3)
        _loan(db, b, "L10", "default", "400.00", "USD", placed=_day(2, 20), segment=std, dpd=0, outcome="repaid",
              payments=[("400.00", "USD", True)])
        _loan(db, b, "L11", "default", "700.00", "CNY", placed=_day(12, 15, 2025), segment=std, dpd=2,
              stages=[(R, 1, std)], sent=1)
        # A payment of a loan with no loans row: not in any KPI.
        db.add(Payment(key="dunning-L-GHOST/payment/P1", loan_id="L-GHOST", workflow_id="dunning-L-GHOST",
                       payment_id="P1", amount="999.00", currency="CNY", paid_at="2026-02-01", applied=True))


def ratio(numerator, denominator, value):
    return {"numerator": numerator, "denominator": denominator, "value": value}


def cure(entered, cured, rolled, open_, lost, value):
    return {"entered": entered, "cured": cured, "rolled": rolled, "open": open_, "lost": lost,
            "cure_rate": ratio(cured, entered, value)}


def currency(loans, placed, recovered, rate, sent, per_unit, waived="0.00"):
    return {"loans": loans, "amount_placed": placed, "amount_recovered": recovered,
            "recovery_rate": ratio(recovered, placed, rate), "amount_waived": waived, "contacts_sent": sent,
            "contacts_per_unit_recovered": ratio(sent, recovered, per_unit)}


def rolls(reached, *values):
    labels = ["1-30", "31-60", "61-90", "91-180", "180+"]
    return {
        "dpd_buckets_reached": dict(zip(labels, reached)),
        "roll_rates": {
            f"{a}->{b}": ratio(reached[i + 1], reached[i], values[i]) for i, (a, b) in enumerate(zip(labels, labels[1:]))
        },
    }


def kept(kept_, broken, pending, value, pending_name):
    return {"kept": kept_, "broken": broken, pending_name: pending, "kept_rate": ratio(kept_, kept_ + broken, value)}


def outcomes(repaid=0, settled=0, written_off=0, dispute_upheld=0, discharged=0, open_=0):
    return {"repaid": repaid, "settled": settled, "written_off": written_off, "dispute_upheld": dispute_upheld,
            "discharged": discharged,
            "open": open_}


EXPECTED_OVERALL = {
    "loans": 10,
    "outcomes": outcomes(repaid=5, settled=1, written_off=1, dispute_upheld=1, open_=2),
    "by_currency": {
        "CNY": currency(6, "25000.00", "14100.00", "0.5640", 44, "0.003121"),
        "USD": currency(4, "9100.00", "1100.00", "0.1209", 12, "0.010909"),
    },
    "cure_rate_by_stage": {
        "reminder": cure(9, 2, 7, 0, 0, "0.2222"),
        "call": cure(7, 1, 5, 0, 1, "0.1429"),
        "negotiation": cure(5, 1, 4, 0, 0, "0.2000"),
        "credit_reporting": cure(4, 0, 3, 1, 0, "0.0000"),
        "legal": cure(3, 1, 0, 1, 1, "0.3333"),
    },
    "cured_before_first_stage": 1,
    **rolls([9, 4, 3, 3, 0], "0.4444", "0.7500", "1.0000", "0.0000"),
    "promises": kept(2, 4, 1, "0.3333", "open"),
    "plans": kept(1, 1, 1, "0.5000", "active"),
    "contacts_sent": 56,
}

EXPECTED_GROUPS = [
    {
        "policy": "default", "segment": "high_balance",
        "loans": 3,
        "outcomes": outcomes(repaid=1, written_off=1, open_=1),
        "by_currency": {"CNY": currency(3, "19000.00", "8700.00", "0.4579", 30, "0.003448")},
        "cure_rate_by_stage": {
            "reminder": cure(3, 0, 3, 0, 0, "0.0000"),
            "call": cure(3, 0, 3, 0, 0, "0.0000"),
            "negotiation": cure(3, 0, 3, 0, 0, "0.0000"),
            "credit_reporting": cure(3, 0, 2, 1, 0, "0.0000"),
            "legal": cure(2, 1, 0, 0, 1, "0.5000"),
        },
        "cured_before_first_stage": 0,
        **rolls([3, 3, 2, 2, 0], "1.0000", "0.6667", "1.0000", "0.0000"),
        "promises": kept(0, 2, 1, "0.0000", "open"),
        "plans": kept(0, 1, 1, "0.0000", "active"),
        "contacts_sent": 30,
    },
    {
        "policy": "default", "segment": "standard",
        "loans": 4,
        "outcomes": outcomes(repaid=3, settled=1),
        "by_currency": {
            "CNY": currency(3, "6000.00", "5400.00", "0.9000", 14, "0.002593"),
            "USD": currency(1, "400.00", "400.00", "1.0000", 0, "0.000000"),
        },
        "cure_rate_by_stage": {
            "reminder": cure(3, 1, 2, 0, 0, "0.3333"),
            "call": cure(2, 1, 1, 0, 0, "0.5000"),
            "negotiation": cure(1, 1, 0, 0, 0, "1.0000"),
            "credit_reporting": cure(0, 0, 0, 0, 0, None),
            "legal": cure(0, 0, 0, 0, 0, None),
        },
        "cured_before_first_stage": 1,
        **rolls([3, 0, 0, 0, 0], "0.0000", None, None, None),
        "promises": kept(1, 1, 0, "0.5000", "open"),
        "plans": kept(1, 0, 0, "1.0000", "active"),
        "contacts_sent": 14,
    },
    {
        "policy": "us", "segment": "high_balance",
        "loans": 1,
        "outcomes": outcomes(dispute_upheld=1),
        "by_currency": {"USD": currency(1, "7000.00", "0.00", "0.0000", 3, None)},
        "cure_rate_by_stage": {
            "reminder": cure(1, 0, 1, 0, 0, "0.0000"),
            "call": cure(1, 0, 0, 0, 1, "0.0000"),
            "negotiation": cure(0, 0, 0, 0, 0, None),
            "credit_reporting": cure(0, 0, 0, 0, 0, None),
            "legal": cure(0, 0, 0, 0, 0, None),
        },
        "cured_before_first_stage": 0,
        **rolls([1, 0, 0, 0, 0], "0.0000", None, None, None),
        "promises": kept(0, 0, 0, None, "open"),
        "plans": kept(0, 0, 0, None, "active"),
        "contacts_sent": 3,
    },
    {
        "policy": "us", "segment": "standard",
        "loans": 2,
        "outcomes": outcomes(repaid=1, open_=1),
        "by_currency": {"USD": currency(2, "1700.00", "700.00", "0.4118", 9, "0.012857")},
        "cure_rate_by_stage": {
            "reminder": cure(2, 1, 1, 0, 0, "0.5000"),
            "call": cure(1, 0, 1, 0, 0, "0.0000"),
            "negotiation": cure(1, 0, 1, 0, 0, "0.0000"),
            "credit_reporting": cure(1, 0, 1, 0, 0, "0.0000"),
            "legal": cure(1, 0, 0, 1, 0, "0.0000"),
        },
        "cured_before_first_stage": 0,
        **rolls([2, 1, 1, 1, 0], "0.5000", "1.0000", "1.0000", "0.0000"),
        "promises": kept(1, 1, 0, "0.5000", "open"),
        "plans": kept(0, 0, 0, None, "active"),
        "contacts_sent": 9,
    },
]


def test_every_kpi_of_the_seeded_portfolio(session_factory, portfolio):
    with session_factory() as db:
        report = build_report(db, Filters(since=SINCE), now=NOW)

    assert kpis_json(report.overall) == EXPECTED_OVERALL
    assert report_json(report)["groups"] == EXPECTED_GROUPS
    assert report.warnings == ()

    # The same numbers as Decimals, exactly, and never one sum across currencies.
    cny, usd = report.overall.currencies["CNY"], report.overall.currencies["USD"]
    assert (cny.placed, cny.recovered, cny.recovery_rate.value) == (Decimal("25000"), Decimal("14100"), Decimal("0.5640"))
    assert (usd.placed, usd.recovered, usd.recovery_rate.value) == (Decimal("9100"), Decimal("1100"), Decimal("0.1209"))
    assert cny.contacts_per_unit_recovered.value == Decimal("0.003121")
    assert all(isinstance(c.placed, Decimal) and isinstance(c.recovered, Decimal) for c in report.overall.currencies.values())
    # Each group's loans add up to the whole.
    assert sum(g.kpis.loans for g in report.groups) == report.overall.loans
    for code in ("CNY", "USD"):
        assert sum(
            (g.kpis.currencies[code].recovered for g in report.groups if code in g.kpis.currencies), Decimal(0)
        ) == report.overall.currencies[code].recovered


def test_filters_and_segment_basis(session_factory, portfolio):
    with session_factory() as db:
        everything = build_report(db, Filters())
        december = build_report(db, Filters(until=date(2025, 12, 31)))
        one_day = build_report(db, Filters(since=date(2026, 1, 5), until=date(2026, 1, 5)))
        us = build_report(db, Filters(since=SINCE, policy="us"))
        final = build_report(db, Filters(since=SINCE, segment_basis="final"))

    # L11 (placed 2025-12-15, 700.00 CNY, one contact) is in without a window.
    assert everything.overall.loans == 11
    assert everything.overall.currencies["CNY"].placed == Decimal("25700.00")
    assert everything.overall.outcomes["open"] == 3
    assert december.overall.loans == 1 and december.overall.currencies["CNY"].contacts_sent == 1
    assert one_day.overall.loans == 1  # L1, placed 2026-01-05 08:00 UTC: both dates inclusive
    assert us.overall.loans == 3 and set(us.overall.currencies) == {"USD"}
    assert [g.label for g in us.groups] == ["us/high_balance", "us/standard"]
    assert us.overall.currencies["USD"].recovered == Decimal("700.00")

    # On the final basis L4 is in its last segment, broken_promises.
    assert [(g.label, g.kpis.loans) for g in final.groups] == [
        ("default/broken_promises", 1), ("default/high_balance", 2), ("default/standard", 4),
        ("us/high_balance", 1), ("us/standard", 2),
    ]
    with pytest.raises(ValueError):
        Filters(since=date(2026, 2, 1), until=date(2026, 1, 1))


def test_payments_that_cannot_be_counted_as_they_stand_are_named(session_factory, portfolio):
    with session_factory.begin() as db:
        for key, amount, code in (("bad", "12,00", "CNY"), ("usd", "50.00", "USD")):
            db.add(Payment(key=f"dunning-L5/payment/{key}", loan_id="L5", workflow_id="dunning-L5", payment_id=key,
                           amount=amount, currency=code, paid_at="2026-03-01", applied=True))
    with session_factory() as db:
        report = build_report(db, Filters(since=SINCE))
    assert report.warnings == (
        "payment dunning-L5/payment/bad: applied but its amount '12,00' is not a number; not counted",
        "payment dunning-L5/payment/usd: applied in USD to a CNY loan; counted under USD",
    )
    assert report.overall.currencies["CNY"].recovered == Decimal("14100.00")
    assert report.overall.currencies["USD"].recovered == Decimal("1150.00")
    assert report.overall.currencies["USD"].loans == 4  # the loan stays a CNY loan
    assert "Warnings" in format_text(report)


def _has_row(text: str, *cells: str) -> bool:
    """A line of a printed table holding exactly these cells (any spacing)."""
    return any(line.split() == list(cells) for line in text.splitlines())


@pytest.mark.sqlite_only  # the drawing does not depend on the database
def test_text_chart_and_html(session_factory, portfolio, tmp_path):
    with session_factory() as db:
        report = build_report(db, Filters(since=SINCE), now=NOW)
    text = format_text(report)
    assert _has_row(text, "all", "CNY", "6", "25000.00", "14100.00", "56.40%", "0.00", "44", "0.003121")
    assert _has_row(text, "default/standard", "USD", "1", "400.00", "400.00", "100.00%", "0.00", "0", "0.000000")
    assert _has_row(text, "us/high_balance", "USD", "1", "7000.00", "0.00", "0.00%", "0.00", "3", "-")
    assert _has_row(text, "all", "22.22%", "(2/9)", "14.29%", "(1/7)", "20.00%", "(1/5)", "0.00%", "(0/4)", "33.33%", "(1/3)")
    assert _has_row(text, "all", "44.44%", "(4/9)", "75.00%", "(3/4)", "100.00%", "(3/3)", "0.00%", "(0/3)")

    png, html = write_report_files(report, tmp_path / "out")
    assert png == tmp_path / "out" / "kpi.png" and html == tmp_path / "out" / "kpi.html"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    page = html.read_text(encoding="utf-8")
    assert '<img alt="KPI chart" src="data:image/png;base64,iVBORw0KGgo' in page
    assert page.count('<table class="kpi">') == 5
    assert "<td>default/high_balance</td><td>CNY</td><td>3</td><td>19000.00</td><td>8700.00</td><td>45.79%</td>" in page


@pytest.mark.sqlite_only  # a process of its own costs seconds; the numbers are checked on both above
def test_report_command(database_url, portfolio, tmp_path):
    """`starter.py report --json` on the database DUNNING_DATABASE_URL names."""
    out = tmp_path / "reports"
    env = {**os.environ, "DUNNING_DATABASE_URL": database_url}
    done = subprocess.run(
        [sys.executable, "starter.py", "report", "--json", "--since", "2026-01-01", "--out", str(out)],
        cwd=PROJECT, env=env, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["overall"] == EXPECTED_OVERALL
    assert answer["groups"] == EXPECTED_GROUPS
    assert answer["filters"] == {"since": "2026-01-01", "until": None, "policy": None, "segment_basis": "entry"}
    assert answer["files"] == {"png": str(out / "kpi.png"), "html": str(out / "kpi.html")}
    assert (out / "kpi.png").read_bytes()[:4] == b"\x89PNG"
    assert "Cure rate by stage" in (out / "kpi.html").read_text(encoding="utf-8")

    # A window that ends before it starts: exit 2, nothing read.
    done = subprocess.run(
        [sys.executable, "starter.py", "report", "--since", "2026-02-01", "--until", "2026-01-01"],
        cwd=PROJECT, env=env, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 2 and "--since" in done.stderr


@pytest.mark.parametrize("filters", [
    Filters(),
    Filters(since=date(2026, 3, 1), until=date(2026, 8, 31)),
    Filters(policy="us"),
    Filters(segment_basis="final"),
], ids=["everything", "a-window", "one-policy", "final-segment"])
def test_the_database_computes_what_the_loan_by_loan_python_computed(session_factory, filters):
    """Issue 19: the report is GROUP BY queries now (reports/kpi_sql.py). On a
    random portfolio from a fixed seed (bench/portfolio.py: 400 loans on three
    policies and two currencies, stage entries at one instant, an empty
    segment, an outcome the report does not know, payments reversed, applied
    in the other currency or with amounts such as 'abc', ' 12.50 ', '1e2' and
    'NaN', rows of loans never placed), it answers exactly what the loan by
    loan computation it replaced answers (tests/support/kpi_oracle.py)."""
    from bench.portfolio import seed_portfolio
    from tests.support.kpi_oracle import build_report_in_python

    seed_portfolio(session_factory.kw["bind"], loans=400, seed=19)
    with session_factory() as db:
        in_sql = build_report(db, filters, now=NOW)
        in_python = build_report_in_python(db, filters, now=NOW)

    assert in_python.overall.loans > 50 and in_python.warnings  # the portfolio has what the test is about
    assert report_json(in_sql) == report_json(in_python)
    assert in_sql == in_python
    assert format_text(in_sql) == format_text(in_python)
