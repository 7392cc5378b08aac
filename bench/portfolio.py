"""A random collections portfolio in the database, from a seed: what the KPI
report reads (loans, stage entries, payments, contacts, promises, plans).

`seed_history` gives loans already placed (bench/placement.py's 100,000) the
history a few months of collections would have left; `seed_portfolio` also
writes the loans and their borrowers, with the odd rows a real database
collects (payments applied in another currency or with an amount that is not
a number, reversed payments, rows of loans never placed), for the report's
equivalence test (tests/test_kpi_report.py). The same seed writes the same rows.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

from sqlalchemy import bindparam, create_engine, insert, select, update
from sqlalchemy.engine import Engine

from db.models import Borrower, Contact, Loan, Payment, PlanRecord, PromiseRecord, StageEntry

STAGE_PATH = (("pre_due", -3), ("reminder", 1), ("call", 8), ("negotiation", 16), ("credit_reporting", 31),
              ("legal", 91))
SEGMENTS = ("standard", "high_balance", "small_balance", "high_risk", "broken_promises")
OUTCOMES = (None, None, None, "repaid", "repaid", "settled", "written_off", "dispute_upheld", "discharged")
CONTACT_STATUSES = ("sent", "sent", "sent", "failed", "skipped", "deferred", "pending")
CHUNK = 5000


def _history(rng: random.Random, loan: dict, oddities: bool) -> dict[str, list[dict]]:
    """One loan's rows, by table."""
    loan_id, wf, currency = loan["loan_id"], loan["workflow_id"], loan["currency"]
    placed: datetime = loan["placed_at"]
    amount = Decimal(loan["amount_due"])
    rows: dict[str, list[dict]] = {"stage_entries": [], "payments": [], "contacts": [], "promises": [], "plans": []}
    start = 0 if rng.random() < 0.1 else 1
    reached = rng.choice((0, 1, 1, 2, 2, 3, 3, 4, 5, 6))
    for n, (stage, day) in enumerate(STAGE_PATH[start:start + reached]):
        # Sometimes two entries at one instant: the id decides which is last.
        entered = placed + timedelta(days=max(day, 0)) if not (oddities and rng.random() < 0.05) else placed
        segment = rng.choice((None, *SEGMENTS)) if n == 0 else rng.choice((None, None, *SEGMENTS))
        if oddities and rng.random() < 0.03:
            segment = ""
        rows["stage_entries"].append({
            "key": f"{wf}/stage/{stage}", "loan_id": loan_id, "stage": stage, "days_past_due": max(day, 0) + rng.randint(0, 3),
            "segment": segment, "outstanding": amount, "entered_at": entered,
        })
    for n in range(rng.choice((0, 0, 1, 1, 2, 3))):
        value = f"{rng.randint(1, int(amount)) if amount >= 1 else 1}.{rng.randint(0, 99):02d}"
        pay_currency = currency
        if oddities:
            roll = rng.random()
            if roll < 0.04:
                value = rng.choice(("abc", " 12.50 ", "1e2", "NaN", "-5.00", "7.125", "", "Infinity"))
            elif roll < 0.08:
                pay_currency = "USD" if currency != "USD" else "CNY"
        rows["payments"].append({
            "key": f"{wf}/payment/{n}", "loan_id": loan_id, "workflow_id": wf, "payment_id": f"P-{loan_id}-{n}",
            "amount": value, "currency": pay_currency, "paid_at": placed.isoformat(), "applied": rng.random() < 0.85,
            "reversed_at": placed + timedelta(days=20) if rng.random() < 0.05 else None,
        })
    for n in range(rng.randint(0, 8)):
        rows["contacts"].append({
            "key": f"{wf}/contact/{n}", "workflow_id": wf, "loan_id": loan_id, "borrower_id": loan["borrower_id"],
            "stage": "reminder", "channel": "sms", "template": "reminder_friendly", "language": "zh_CN",
            "status": rng.choice(CONTACT_STATUSES),
        })
    for n in range(rng.choice((0, 0, 0, 1, 1, 2, 3))):
        rows["promises"].append({
            "key": f"{wf}/promise/{n}", "loan_id": loan_id, "workflow_id": wf, "promise_no": n + 1,
            "amount": Decimal("100.00"), "currency": currency, "by_date": placed.date() + timedelta(days=20),
            "status": rng.choice(("open", "kept", "broken")), "made_at": placed + timedelta(days=10),
        })
    for n in range(rng.choice((0, 0, 0, 0, 1, 2))):
        rows["plans"].append({
            "key": f"{wf}/plan/{n}", "loan_id": loan_id, "workflow_id": wf, "plan_no": n + 1,
            "status": rng.choice(("active", "kept", "broken")), "total": amount, "currency": currency,
            "accepted_at": placed + timedelta(days=16),
        })
    return rows


TABLES = {"stage_entries": StageEntry, "payments": Payment, "contacts": Contact, "promises": PromiseRecord,
          "plans": PlanRecord}


def _write(engine: Engine, loans: Iterator[dict], rng: random.Random, oddities: bool) -> dict[str, int]:
    """Each loan's history, written CHUNK loans at a time; rows by table."""
    counts = dict.fromkeys(TABLES, 0)
    pending: dict[str, list[dict]] = {name: [] for name in TABLES}

    def flush() -> None:
        with engine.begin() as connection:
            for name, model in TABLES.items():
                if pending[name]:
                    connection.execute(insert(model), pending[name])
                    counts[name] += len(pending[name])
                    pending[name].clear()

    for n, loan in enumerate(loans, start=1):
        for name, rows in _history(rng, loan, oddities).items():
            pending[name].extend(rows)
        if n % CHUNK == 0:
            flush()
    flush()
    return counts


def seed_history(database_url: str, seed: int) -> dict[str, int]:
    """A history for every loan of the database (none has one yet), and an
    outcome, a segment and days past due reached to go with it."""
    rng = random.Random(seed)
    engine = create_engine(database_url)
    with engine.connect() as connection:
        loans = [dict(row._mapping) for row in connection.execute(
            select(Loan.loan_id, Loan.workflow_id, Loan.currency, Loan.amount_due, Loan.borrower_id, Loan.placed_at)
            .order_by(Loan.loan_id))]
    counts = _write(engine, iter(loans), rng, oddities=False)
    table = Loan.__table__
    change = (update(table).where(table.c.loan_id == bindparam("b_loan_id"))
              .values(outcome=bindparam("b_outcome"), segment=bindparam("b_segment"),
                      max_days_past_due=bindparam("b_dpd")))
    with engine.begin() as connection:
        for chunk in range(0, len(loans), CHUNK):
            connection.execute(change, [
                {"b_loan_id": loan["loan_id"], "b_outcome": rng.choice(OUTCOMES), "b_segment": rng.choice(SEGMENTS),
                 "b_dpd": rng.randint(0, 200)} for loan in loans[chunk:chunk + CHUNK]])
    engine.dispose()
    return counts


def seed_portfolio(engine: Engine, loans: int, seed: int) -> dict[str, int]:
    """`loans` loans on three policies and two currencies, placed over 2025-12
    to 2026-11, with their borrowers and histories, and a few rows of loans
    never placed."""
    rng = random.Random(seed)
    borrowers = [{"borrower_id": f"B-P-{n:05d}", "name": f"Borrower {n}", "language": "zh_CN"}
                 for n in range(max(loans // 2, 1))]
    rows = []
    for n in range(loans):
        placed = datetime(2025, 12, 1, tzinfo=timezone.utc) + timedelta(days=rng.randint(0, 360), hours=rng.randint(0, 23))
        currency = rng.choice(("CNY", "CNY", "USD"))
        reached = rng.randint(0, 200)
        rows.append({
            "loan_id": f"L-P-{n:05d}", "borrower_id": rng.choice(borrowers)["borrower_id"],
            "amount_due": Decimal(f"{rng.randint(50, 20000)}.{rng.choice(('00', '50', '99'))}"), "currency": currency,
            "due_date": date(2026, 1, 1), "policy": rng.choice(("default", "us", "challenger_early_calls")),
            "workflow_id": f"dunning-L-P-{n:05d}", "placed_at": placed, "outcome": rng.choice(OUTCOMES + ("cancelled",)),
            "segment": rng.choice((None, *SEGMENTS)), "max_days_past_due": reached,
            "waived": rng.choice((Decimal("0"), Decimal("0"), Decimal("12.50"), Decimal("100.00"))),
        })
    with engine.begin() as connection:
        connection.execute(insert(Borrower), borrowers)
        for chunk in range(0, len(rows), CHUNK):
            connection.execute(insert(Loan), rows[chunk:chunk + CHUNK])
    ghosts = [{"loan_id": f"L-GHOST-{n}", "workflow_id": f"dunning-L-GHOST-{n}", "currency": "CNY",
               "amount_due": Decimal("10.00"), "borrower_id": "B-GHOST", "placed_at": rows[0]["placed_at"]}
              for n in range(3)]
    return _write(engine, iter(rows + ghosts), rng, oddities=True)
