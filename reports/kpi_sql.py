"""The KPIs' sums and counts computed by the database (issue 19, item 7): one
GROUP BY query per kind of row, by (policy, segment), so 100,000 loans come
back as a few hundred rows instead of being read loan by loan. The
definitions are reports/kpi.py's docstring; `tests/test_kpi_report.py`
checks that this gives exactly what computing them loan by loan in Python
(`reports.kpi.compute` over `reports.loan_facts.load_loans`) gives.

Per loan the database derives, into a temporary table: its group's segment
(the first stage entry's that has one, else `loans.segment`), its final
stage (the last entry by `entered_at`, then id) and its days past due
reached. Each query joins its rows to that table and groups them.

Money is summed exactly: SUM of NUMERIC in PostgreSQL; in SQLite, which has
no exact decimal type (the directory keeps money as text there, db/types.py),
by an aggregate registered on the connection that adds decimals. A payment's
amount is text as received: the database sums those that read as plain
decimal numbers; the few others (and payments applied in another currency)
come back one by one, in order, for the warnings, as they did before.
"""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal

from sqlalchemy import (Column, Integer, MetaData, Numeric, String, Table, and_, case, cast, distinct, func, literal, or_,
                        select, text)
from sqlalchemy.orm import Session

from db.models import Contact, Loan, Payment, PlanRecord, PromiseRecord, StageEntry
from db.types import Money
from db.outbox import SENT
from reports.loan_facts import Filters, _loan_filter, applied_amount

# A payment amount the database can sum as it stands.
PLAIN_DECIMAL = r"^-?[0-9]+(\.[0-9]+)?$"
CURED = ("repaid", "settled")

GroupKey = tuple[str, "str | None"]


@dataclass
class Tallies:
    """The sums and counts of one group (or of all loans)."""

    loans: int = 0
    outcomes: Counter = field(default_factory=Counter)
    # Outcomes in the order of their first loan (by loan id, in the database's
    # order): where an outcome the report does not know of is listed.
    outcome_order: list[str] = field(default_factory=list)
    by_currency: Counter = field(default_factory=Counter)  # loans per currency
    placed: dict[str, Decimal] = field(default_factory=lambda: defaultdict(lambda: Decimal("0")))
    waived: dict[str, Decimal] = field(default_factory=lambda: defaultdict(lambda: Decimal("0")))
    recovered: dict[str, Decimal] = field(default_factory=lambda: defaultdict(lambda: Decimal("0")))
    contacts: Counter = field(default_factory=Counter)  # sent contacts per loan currency
    reached: Counter = field(default_factory=Counter)  # bucket label -> loans
    cured_early: int = 0
    cure: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))  # stage -> entered, cured, ...
    promises: Counter = field(default_factory=Counter)
    plans: Counter = field(default_factory=Counter)

    def add(self, other: Tallies) -> None:
        self.loans += other.loans
        self.outcomes.update(other.outcomes)
        self.by_currency.update(other.by_currency)
        for mine, theirs in ((self.placed, other.placed), (self.waived, other.waived), (self.recovered, other.recovered)):
            for currency, amount in theirs.items():
                mine[currency] += amount
        self.contacts.update(other.contacts)
        self.reached.update(other.reached)
        self.cured_early += other.cured_early
        for stage, tally in other.cure.items():
            self.cure[stage].update(tally)
        self.promises.update(other.promises)
        self.plans.update(other.plans)


class _DecimalSum:
    """SQLite's exact money sum (the values are decimal text)."""

    def __init__(self) -> None:
        self.total = Decimal("0")

    def step(self, value) -> None:
        if value is not None:
            self.total += Decimal(str(value))

    def finalize(self) -> str:
        return str(self.total)


def _money_sum(db: Session, column):
    if db.get_bind().dialect.name == "sqlite":
        db.connection().connection.driver_connection.create_aggregate("decimal_sum", 1, _DecimalSum)
        return func.decimal_sum(column, type_=String())
    return func.sum(cast(column, Numeric()), type_=Numeric())


def _decimal(value) -> Decimal:
    return Decimal("0") if value is None else Decimal(str(value)) if not isinstance(value, Decimal) else value


def loan_facts_select(filters: Filters):
    """One row per selected loan: loan_id, policy, currency, amount_due,
    waived, outcome, final_stage, dpd (reached), segment (the group's)."""
    loans = Loan.__table__
    entries = StageEntry.__table__
    from_last = func.row_number().over(partition_by=entries.c.loan_id,
                                       order_by=(entries.c.entered_at.desc(), entries.c.id.desc()))
    ranked = select(entries.c.loan_id, entries.c.stage, entries.c.days_past_due, from_last.label("n")).subquery()
    last = select(ranked.c.loan_id, ranked.c.stage, ranked.c.days_past_due).where(ranked.c.n == 1).subquery()
    max_dpd = func.coalesce(loans.c.max_days_past_due, 0)
    last_dpd = func.coalesce(last.c.days_past_due, 0)
    columns = [loans.c.loan_id, loans.c.policy, loans.c.currency, loans.c.amount_due, loans.c.waived, loans.c.outcome,
               last.c.stage.label("final_stage"), case((last_dpd > max_dpd, last_dpd), else_=max_dpd).label("dpd")]
    joined = loans.outerjoin(last, last.c.loan_id == loans.c.loan_id)
    if filters.segment_basis == "entry":
        first = func.row_number().over(partition_by=entries.c.loan_id, order_by=(entries.c.entered_at, entries.c.id))
        with_segment = (select(entries.c.loan_id, entries.c.segment, first.label("n"))
                        .where(entries.c.segment.is_not(None), entries.c.segment != "").subquery())
        entry_segment = select(with_segment.c.loan_id, with_segment.c.segment).where(with_segment.c.n == 1).subquery()
        joined = joined.outerjoin(entry_segment, entry_segment.c.loan_id == loans.c.loan_id)
        columns.append(func.coalesce(entry_segment.c.segment, loans.c.segment).label("segment"))
    else:
        columns.append(loans.c.segment.label("segment"))
    return select(*columns).select_from(joined).where(*_loan_filter(filters))


@contextmanager
def loan_facts_table(db: Session, filters: Filters) -> Iterator[Table]:
    """The selected loans' facts in a temporary table, for the report's
    queries to join and group: the window functions over the stage entries
    run once, not once per query, and PostgreSQL plans the joins with the
    table's statistics (without them, right after a bulk load, it looped over
    a common table expression for minutes). Dropped when done."""
    table = Table(
        f"kpi_loan_facts_{uuid.uuid4().hex[:12]}", MetaData(),
        Column("loan_id", String(64), primary_key=True), Column("policy", String(64)), Column("currency", String(3)),
        Column("amount_due", Money()), Column("waived", Money()), Column("outcome", String(32)),
        Column("final_stage", String(32)), Column("dpd", Integer), Column("segment", String(64)),
        prefixes=["TEMPORARY"],
    )
    connection = db.connection()
    table.create(connection)
    connection.execute(table.insert().from_select([c.name for c in table.columns], loan_facts_select(filters)))
    if connection.dialect.name == "postgresql":
        connection.execute(text(f"ANALYZE {table.name}"))
    yield table
    # Not after an error: the transaction's rollback (PostgreSQL) or the
    # connection's end (SQLite) removes it, and a DROP would hide the error.
    table.drop(connection)


def tallies(db: Session, filters: Filters, buckets: Iterable[tuple[str, int]]) -> tuple[
        dict[GroupKey, Tallies], list[str], tuple[str, ...], list[str]]:
    """Each group's tallies, the outcomes of all the loans in the order of
    their first loan, the stage names the loans entered, and the warnings
    about payments that could not be counted as they stand."""
    with loan_facts_table(db, filters) as facts:
        return _tallies(db, facts, buckets)


def _tallies(db: Session, facts: Table, buckets: Iterable[tuple[str, int]]) -> tuple[
        dict[GroupKey, Tallies], list[str], tuple[str, ...], list[str]]:
    group = (facts.c.policy, facts.c.segment)
    groups: dict[GroupKey, Tallies] = defaultdict(Tallies)
    opened = or_(facts.c.outcome.is_(None), facts.c.outcome == "")

    # Loans, money placed and waived, by currency.
    for policy, segment, currency, count, placed, waived in db.execute(
        select(*group, facts.c.currency, func.count(), _money_sum(db, facts.c.amount_due), _money_sum(db, facts.c.waived))
        .group_by(*group, facts.c.currency)
    ):
        tally = groups[(policy, segment)]
        tally.loans += count
        tally.by_currency[currency] += count
        tally.placed[currency] += _decimal(placed)
        tally.waived[currency] += _decimal(waived)

    # Outcomes, in the order of their first loan (where an unknown one is listed).
    outcome = case((opened, literal("open")), else_=facts.c.outcome)
    for policy, segment, name, count in db.execute(
        select(*group, outcome, func.count()).group_by(*group, outcome).order_by(func.min(facts.c.loan_id))
    ):
        tally = groups[(policy, segment)]
        tally.outcomes[name] += count
        tally.outcome_order.append(name)
    overall_order = list(db.scalars(select(outcome).group_by(outcome).order_by(func.min(facts.c.loan_id))))

    # DPD buckets reached; loans cured before any stage.
    buckets = tuple(buckets)
    reached = [func.sum(case((facts.c.dpd >= first_day, 1), else_=0)) for _, first_day in buckets]
    cured_early = func.sum(case((and_(facts.c.final_stage.is_(None), facts.c.outcome.in_(CURED)), 1), else_=0))
    for policy, segment, early, *counts in db.execute(select(*group, cured_early, *reached).group_by(*group)):
        tally = groups[(policy, segment)]
        tally.cured_early += int(early or 0)
        for (label, _), count in zip(buckets, counts):
            tally.reached[label] += int(count or 0)

    # Cure by stage: each stage a loan entered counts once, however many
    # entries it has (distinct loan ids, not a DISTINCT subquery: without
    # statistics PostgreSQL guesses 200 rows for one and loops over it).
    entries = StageEntry.__table__
    final = entries.c.stage == facts.c.final_stage
    kinds = {
        "rolled": entries.c.stage != facts.c.final_stage,
        "cured": and_(final, facts.c.outcome.in_(CURED)),
        "open": and_(final, facts.c.outcome.is_(None)),
        "lost": and_(final, facts.c.outcome.is_not(None), facts.c.outcome.not_in(CURED)),
    }
    stages_seen: set[str] = set()
    for policy, segment, stage, count, *split in db.execute(
        select(*group, entries.c.stage, func.count(distinct(entries.c.loan_id)),
               *(func.count(distinct(case((condition, entries.c.loan_id)))) for condition in kinds.values()))
        .select_from(entries.join(facts, facts.c.loan_id == entries.c.loan_id))
        .group_by(*group, entries.c.stage)
    ):
        stages_seen.add(stage)
        cure = groups[(policy, segment)].cure[stage]
        cure["entered"] += count
        for kind, value in zip(kinds, split):
            cure[kind] += int(value or 0)

    # Contacts that went out, by the loan's currency.
    contacts = Contact.__table__
    for policy, segment, currency, count in db.execute(
        select(*group, facts.c.currency, func.count())
        .select_from(contacts.join(facts, facts.c.loan_id == contacts.c.loan_id))
        .where(contacts.c.status == SENT)
        .group_by(*group, facts.c.currency)
    ):
        groups[(policy, segment)].contacts[currency] += count

    # Promises and plans by status.
    for model, attribute in ((PromiseRecord, "promises"), (PlanRecord, "plans")):
        table = model.__table__
        for policy, segment, status, count in db.execute(
            select(*group, table.c.status, func.count())
            .select_from(table.join(facts, facts.c.loan_id == table.c.loan_id))
            .group_by(*group, table.c.status)
        ):
            getattr(groups[(policy, segment)], attribute)[status] += count

    warnings = _recovered(db, facts, groups)
    return dict(groups), overall_order, tuple(sorted(stages_seen)), warnings


def _recovered(db: Session, facts: Table, groups: dict[GroupKey, Tallies]) -> list[str]:
    """Money recovered: the applied payments not reversed since (issue 18),
    by payment currency. Summed by the database when the amount is a plain
    decimal; the others, and payments in another currency than their loan's,
    are read in order for the warnings (and counted when they are numbers)."""
    payments = Payment.__table__
    joined = payments.join(facts, facts.c.loan_id == payments.c.loan_id)
    counted = and_(payments.c.applied.is_(True), payments.c.reversed_at.is_(None))
    plain = payments.c.amount.regexp_match(PLAIN_DECIMAL)
    for policy, segment, currency, amount in db.execute(
        select(facts.c.policy, facts.c.segment, payments.c.currency, _money_sum(db, payments.c.amount))
        .select_from(joined).where(counted, plain)
        .group_by(facts.c.policy, facts.c.segment, payments.c.currency)
    ):
        groups[(policy, segment)].recovered[currency] += _decimal(amount)

    warnings: list[str] = []
    odd = or_(payments.c.amount.is_(None), ~plain, payments.c.currency != facts.c.currency)
    for policy, segment, key, amount, currency, loan_currency, was_summed in db.execute(
        select(facts.c.policy, facts.c.segment, payments.c.key, payments.c.amount, payments.c.currency,
               facts.c.currency, case((plain, True), else_=False))
        .select_from(joined).where(counted, odd).order_by(payments.c.id)
    ):
        value = applied_amount(key, amount, currency, loan_currency, warnings)
        if value is None:
            continue
        if not was_summed:
            groups[(policy, segment)].recovered[currency] += value
    return warnings
