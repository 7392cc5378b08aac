"""The facts the KPIs are computed from, read from the database: for each
loan the filters select, its terms, stages, payments, contacts, promises and
plans (reports/kpi.py's docstring defines what counts)."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Literal

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from db.models import Contact, Loan, Payment, PlanRecord, PromiseRecord, StageEntry
from db.outbox import SENT

SegmentBasis = Literal["entry", "final"]


@dataclass(frozen=True)
class Filters:
    since: date | None = None  # placed on or after (UTC date)
    until: date | None = None  # placed on or before (UTC date)
    policy: str | None = None
    segment_basis: SegmentBasis = "entry"

    def __post_init__(self) -> None:
        if self.since and self.until and self.since > self.until:
            raise ValueError(f"since {self.since} is after until {self.until}")
        if self.segment_basis not in ("entry", "final"):
            raise ValueError(f"segment_basis: must be entry or final, got {self.segment_basis!r}")


@dataclass
class LoanFacts:
    """What the KPIs need of one loan, read from its rows."""

    loan_id: str
    policy: str
    segment: str | None
    currency: str
    amount_due: Decimal
    outcome: str | None
    stages: tuple[str, ...] = ()  # entered, in order
    dpd_reached: int = 0
    recovered: dict[str, Decimal] = field(default_factory=dict)  # by payment currency
    contacts_sent: int = 0
    promises: Counter = field(default_factory=Counter)  # status -> n
    plans: Counter = field(default_factory=Counter)
    # What a settlement (or a plan's waivers) wrote off, in the loan's
    # currency (`loans.waived`, set when it closed): never recovered money.
    waived: Decimal = Decimal("0")

    @property
    def final_stage(self) -> str | None:
        return self.stages[-1] if self.stages else None


def applied_amount(key: str, amount: str, currency: str, loan_currency: str, warnings: list[str]) -> Decimal | None:
    """An applied payment's amount as recovered money, or None (with a
    warning) when it is not a number; a payment in another currency than its
    loan's is counted under its own, with a warning."""
    try:
        value = Decimal(amount.strip())
        if not value.is_finite():
            raise InvalidOperation
    except (InvalidOperation, AttributeError):
        warnings.append(f"payment {key}: applied but its amount {amount!r} is not a number; not counted")
        return None
    if currency != loan_currency:
        warnings.append(f"payment {key}: applied in {currency} to a {loan_currency} loan; counted under {currency}")
    return value


def _loan_filter(filters: Filters) -> list:
    conditions = []
    if filters.since is not None:
        conditions.append(Loan.placed_at >= datetime.combine(filters.since, time(), timezone.utc))
    if filters.until is not None:
        conditions.append(Loan.placed_at < datetime.combine(filters.until + timedelta(days=1), time(), timezone.utc))
    if filters.policy is not None:
        conditions.append(Loan.policy == filters.policy)
    return conditions


def load_loans(db: Session, filters: Filters = Filters()) -> tuple[list[LoanFacts], list[str]]:
    """The facts of every loan the filters select, and warnings about rows
    that could not be counted as they stand."""
    conditions = _loan_filter(filters)
    ids: Select = select(Loan.loan_id).where(*conditions)
    warnings: list[str] = []

    loans: dict[str, LoanFacts] = {}
    rows = db.execute(
        select(Loan.loan_id, Loan.policy, Loan.segment, Loan.currency, Loan.amount_due, Loan.outcome,
               Loan.max_days_past_due, Loan.waived).where(*conditions).order_by(Loan.loan_id)
    )
    for loan_id, policy, segment, currency, amount_due, outcome, max_dpd, waived in rows:
        loans[loan_id] = LoanFacts(
            loan_id=loan_id, policy=policy, segment=segment, currency=currency,
            amount_due=Decimal(amount_due), outcome=outcome, dpd_reached=max_dpd or 0,
            waived=Decimal(waived or 0),
        )

    entries: dict[str, list[tuple[str, int, str | None]]] = defaultdict(list)
    for loan_id, stage, dpd, segment in db.execute(
        select(StageEntry.loan_id, StageEntry.stage, StageEntry.days_past_due, StageEntry.segment)
        .where(StageEntry.loan_id.in_(ids))
        .order_by(StageEntry.loan_id, StageEntry.entered_at, StageEntry.id)
    ):
        entries[loan_id].append((stage, dpd, segment))
    for loan_id, rows_ in entries.items():
        facts = loans.get(loan_id)
        if facts is None:  # placed after the loans were read: in the next report
            continue
        facts.stages = tuple(stage for stage, _, _ in rows_)
        facts.dpd_reached = max(facts.dpd_reached, rows_[-1][1] or 0)
        if filters.segment_basis == "entry":
            first = next((segment for _, _, segment in rows_ if segment), None)
            facts.segment = first or facts.segment

    for loan_id, key, amount, currency in db.execute(
        select(Payment.loan_id, Payment.key, Payment.amount, Payment.currency)
        # A payment reversed since (issue 18, item 3) recovered nothing.
        .where(Payment.loan_id.in_(ids), Payment.applied.is_(True), Payment.reversed_at.is_(None))
        .order_by(Payment.id)
    ):
        facts = loans.get(loan_id)
        if facts is None:
            continue
        value = applied_amount(key, amount, currency, facts.currency, warnings)
        if value is None:
            continue
        facts.recovered[currency] = facts.recovered.get(currency, Decimal("0")) + value

    for loan_id, count in db.execute(
        select(Contact.loan_id, func.count(Contact.id))
        .where(Contact.loan_id.in_(ids), Contact.status == SENT)
        .group_by(Contact.loan_id)
    ):
        if loan_id in loans:
            loans[loan_id].contacts_sent = int(count)

    for model, attribute in ((PromiseRecord, "promises"), (PlanRecord, "plans")):
        for loan_id, status, count in db.execute(
            select(model.loan_id, model.status, func.count(model.id))
            .where(model.loan_id.in_(ids))
            .group_by(model.loan_id, model.status)
        ):
            if loan_id in loans:
                getattr(loans[loan_id], attribute)[status] += int(count)

    return list(loans.values()), warnings
