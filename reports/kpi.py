"""Collections KPIs from the database, to evaluate a strategy regularly.

    with sessions() as db:
        report = build_report(db, Filters(since=date(2026, 1, 1)))
    print(format_text(report)); json.dumps(report_json(report))

Every KPI is computed for the whole portfolio ("all") and for each
(policy, segment) group, over the same set of loans: the `loans` rows placed in
the chosen window. Money is exact (Decimal) and is never added across
currencies: every money KPI is given per currency. The definitions, precisely:

Which loans
    The rows of `loans`, optionally only those with `placed_at` (UTC) on or after
    `since` 00:00 UTC and before (`until` + 1 day) 00:00 UTC, i.e. both dates
    inclusive, and only those on one `policy`. Records of loans that have no
    `loans` row (started without being placed) are not counted anywhere.

Group
    `loans.policy` and the loan's segment. The segment is, by default
    (`segment_basis="entry"`), the segment recorded on the loan's first
    `stage_entries` row that has one: the segment the loan was assigned when it
    entered collections, the "treatment" a strategy review compares. Without
    one (a loan repaid before its first stage, or started before segments were
    recorded) it is `loans.segment`. With `segment_basis="final"` it is always
    `loans.segment`, the last segment (loans move segment as they age or break
    promises, so that basis sorts loans by how they ended). No segment: `null`.

Loans placed, amount placed (per currency)
    The number of loans; the sum of `loans.amount_due` of the loans in that
    currency (`loans.currency`).

Amount recovered (per currency)
    The sum of `payments.amount` over the loans' payments with
    `payments.applied` true, by `payments.currency` (an applied payment is
    always in its loan's currency; one that is not is still counted under its
    own currency, and listed under warnings). Unapplied payments (wrong
    currency, bad amount) are not recovered money. This is cash collected: it
    is not capped at the amount placed, so fees and interest charged later can
    take a loan's recovery above 100 %.

Recovery rate (per currency)
    amount recovered / amount placed, in the same currency. `null` when nothing
    was placed in that currency.

Outcomes
    The number of loans by `loans.outcome`: `repaid`, `settled`, `written_off`,
    `dispute_upheld`, and `open` (no outcome yet: still in collections).

Final stage
    The `stage` of the loan's last `stage_entries` row (latest `entered_at`,
    then highest id); none if it never entered a stage. (`loans.stage` is
    `closed` once a loan closes, so the final stage is derived from the entries.)

Cure rate by stage S
    Of the loans that entered S (have a `stage_entries` row for S), the share
    that ended `repaid` or `settled` with final stage S: cured / entered. Each
    loan that entered S is exactly one of: `cured` (final stage S, repaid or
    settled), `rolled` (it entered a later stage), `open` (final stage S, no
    outcome yet) or `lost` (final stage S, written off or dispute upheld).
    Open loans count in `entered` and not in `cured`, so a young portfolio's
    cure rates rise as it matures. Loans repaid or settled before their first
    stage are counted apart, as `cured_before_first_stage`.

Days past due reached; roll rates between DPD buckets
    A loan's DPD reached is the larger of `loans.max_days_past_due` and the
    `days_past_due` of its last stage entry. The buckets are 1-30, 31-60, 61-90,
    91-180 and 180+ (181 days or more). A loan *reached* a bucket if its DPD
    reached is at or beyond the bucket's first day. The roll rate from bucket i
    to bucket i+1 is reached(i+1) / reached(i): the share of the loans that got
    to bucket i that went on to bucket i+1. `null` when none reached bucket i.
    Both counts include open loans, which may still roll, and loans placed
    late (at day 45, say) count as having reached every bucket before theirs.

Promise-kept rate
    kept / (kept + broken) over the loans' `promises` rows by `status`; open
    promises (not yet due) are counted separately and are not in the rate.
    Plans are counted the same way from `plans.status` (kept, broken, active),
    with plan-kept rate = kept / (kept + broken).

Contacts per unit recovered (per currency)
    The number of the loans' `contacts` rows with `status` `sent` (messages
    and calls that went out; failed, skipped, deferred and pending ones are not
    counted), for the loans in that currency, divided by the amount recovered
    in that currency: contacts per yuan (or dollar) recovered. `null` when
    nothing was recovered.

Rounding
    Rates are rounded half up to 4 decimal places (0.5640 = 56.40 %), contacts
    per unit recovered to 6; each comes with its exact numerator and
    denominator. Money is shown with its currency's decimals.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation, localcontext
from typing import Any, Literal

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from db.models import Contact, Loan, Payment, PlanRecord, PromiseRecord, StageEntry
from dunning.contract import STAGES
from dunning.money import format_amount, quantize

OUTCOMES = ("repaid", "settled", "written_off", "dispute_upheld")
OPEN = "open"
CURED_OUTCOMES = frozenset({"repaid", "settled"})
# (label, first day); the last bucket has no end.
BUCKETS: tuple[tuple[str, int], ...] = (("1-30", 1), ("31-60", 31), ("61-90", 61), ("91-180", 91), ("180+", 181))
RATE_PLACES = 4
PER_UNIT_PLACES = 6
ALL = "all"

SegmentBasis = Literal["entry", "final"]


# ------------------------------------------------------------------ values


@dataclass(frozen=True)
class Ratio:
    """numerator / denominator, rounded half up to `places`; None if the
    denominator is zero."""

    numerator: int | Decimal
    denominator: int | Decimal
    places: int = RATE_PLACES

    @property
    def value(self) -> Decimal | None:
        if not self.denominator:
            return None
        with localcontext() as context:  # the same answer whatever the caller's context
            context.prec = 28
            exact = Decimal(self.numerator) / Decimal(self.denominator)
            return exact.quantize(Decimal(1).scaleb(-self.places), rounding=ROUND_HALF_UP)

    def text(self, percent: bool = True) -> str:
        value = self.value
        if value is None:
            return "-"
        return f"{value * 100:.{max(self.places - 2, 0)}f}%" if percent else f"{value:f}"


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

    @property
    def final_stage(self) -> str | None:
        return self.stages[-1] if self.stages else None


@dataclass(frozen=True)
class CurrencyKpis:
    currency: str
    loans: int
    placed: Decimal
    recovered: Decimal
    contacts_sent: int

    @property
    def recovery_rate(self) -> Ratio:
        return Ratio(self.recovered, self.placed)

    @property
    def contacts_per_unit_recovered(self) -> Ratio:
        return Ratio(self.contacts_sent, self.recovered, PER_UNIT_PLACES)


@dataclass(frozen=True)
class StageCure:
    stage: str
    entered: int
    cured: int
    rolled: int
    open: int
    lost: int

    @property
    def cure_rate(self) -> Ratio:
        return Ratio(self.cured, self.entered)


@dataclass(frozen=True)
class Kept:
    """Promises (kept, broken, open) or plans (kept, broken, active)."""

    kept: int
    broken: int
    pending: int

    @property
    def kept_rate(self) -> Ratio:
        return Ratio(self.kept, self.kept + self.broken)


@dataclass(frozen=True)
class Kpis:
    loans: int
    outcomes: dict[str, int]
    currencies: dict[str, CurrencyKpis]
    cure_by_stage: tuple[StageCure, ...]
    cured_before_first_stage: int
    reached: dict[str, int]  # bucket label -> loans that reached it
    promises: Kept
    plans: Kept
    contacts_sent: int

    @property
    def roll_rates(self) -> tuple[tuple[str, str, Ratio], ...]:
        labels = [label for label, _ in BUCKETS]
        return tuple(
            (a, b, Ratio(self.reached[b], self.reached[a])) for a, b in zip(labels, labels[1:])
        )


@dataclass(frozen=True)
class Group:
    policy: str
    segment: str | None
    kpis: Kpis

    @property
    def label(self) -> str:
        return f"{self.policy}/{self.segment or '(none)'}"


@dataclass(frozen=True)
class Report:
    filters: Filters
    generated_at: datetime
    overall: Kpis
    groups: tuple[Group, ...]
    warnings: tuple[str, ...] = ()


# ------------------------------------------------------------------ reading


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
               Loan.max_days_past_due).where(*conditions).order_by(Loan.loan_id)
    )
    for loan_id, policy, segment, currency, amount_due, outcome, max_dpd in rows:
        loans[loan_id] = LoanFacts(
            loan_id=loan_id, policy=policy, segment=segment, currency=currency,
            amount_due=Decimal(amount_due), outcome=outcome, dpd_reached=max_dpd or 0,
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
        .where(Payment.loan_id.in_(ids), Payment.applied.is_(True))
        .order_by(Payment.id)
    ):
        facts = loans.get(loan_id)
        if facts is None:
            continue
        try:
            value = Decimal(amount.strip())
            if not value.is_finite():
                raise InvalidOperation
        except (InvalidOperation, AttributeError):
            warnings.append(f"payment {key}: applied but its amount {amount!r} is not a number; not counted")
            continue
        if currency != facts.currency:
            warnings.append(
                f"payment {key}: applied in {currency} to a {facts.currency} loan; counted under {currency}"
            )
        facts.recovered[currency] = facts.recovered.get(currency, Decimal("0")) + value

    for loan_id, count in db.execute(
        select(Contact.loan_id, func.count(Contact.id))
        .where(Contact.loan_id.in_(ids), Contact.status == "sent")
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


# ------------------------------------------------------------------ computing


def stage_names(loans: Iterable[LoanFacts]) -> tuple[str, ...]:
    """The contract's stages in order, then any other stage name seen."""
    seen = {stage for loan in loans for stage in loan.stages}
    return (*STAGES, *sorted(seen - set(STAGES)))


def compute(loans: Sequence[LoanFacts], stages: Sequence[str] = STAGES) -> Kpis:
    """The KPIs of a set of loans (see the module docstring)."""
    outcomes = Counter({name: 0 for name in (*OUTCOMES, OPEN)})
    placed: dict[str, Decimal] = defaultdict(lambda: Decimal("0"))
    recovered: dict[str, Decimal] = defaultdict(lambda: Decimal("0"))
    counts: Counter = Counter()
    contacts: Counter = Counter()
    reached = {label: 0 for label, _ in BUCKETS}
    cure = {stage: Counter() for stage in stages}
    cured_early = 0
    promises: Counter = Counter()
    plans: Counter = Counter()

    for loan in loans:
        outcomes[loan.outcome or OPEN] += 1
        counts[loan.currency] += 1
        placed[loan.currency] += loan.amount_due
        contacts[loan.currency] += loan.contacts_sent
        for currency, amount in loan.recovered.items():
            recovered[currency] += amount
        for label, first_day in BUCKETS:
            if loan.dpd_reached >= first_day:
                reached[label] += 1
        final = loan.final_stage
        if final is None and loan.outcome in CURED_OUTCOMES:
            cured_early += 1
        for stage in dict.fromkeys(loan.stages):
            tally = cure.setdefault(stage, Counter())
            tally["entered"] += 1
            if stage != final:
                tally["rolled"] += 1
            elif loan.outcome in CURED_OUTCOMES:
                tally["cured"] += 1
            elif loan.outcome is None:
                tally["open"] += 1
            else:
                tally["lost"] += 1
        promises.update(loan.promises)
        plans.update(loan.plans)

    currencies = {
        currency: CurrencyKpis(
            # At the currency's decimals: exact (amounts never have more), and
            # the same whatever scale the database reads back (1000.0000 or 1000.00).
            currency=currency, loans=counts[currency], placed=quantize(placed[currency], currency),
            recovered=quantize(recovered[currency], currency), contacts_sent=contacts[currency],
        )
        for currency in sorted(set(counts) | set(recovered))
    }
    return Kpis(
        loans=len(loans),
        outcomes=dict(outcomes),
        currencies=currencies,
        cure_by_stage=tuple(
            StageCure(stage, t["entered"], t["cured"], t["rolled"], t["open"], t["lost"]) for stage, t in cure.items()
        ),
        cured_before_first_stage=cured_early,
        reached=reached,
        promises=Kept(promises["kept"], promises["broken"], promises["open"]),
        plans=Kept(plans["kept"], plans["broken"], plans["active"]),
        contacts_sent=sum(contacts.values()),
    )


def build_report(db: Session, filters: Filters = Filters(), now: datetime | None = None) -> Report:
    """The KPIs of the selected loans: overall and by (policy, segment)."""
    loans, warnings = load_loans(db, filters)
    stages = stage_names(loans)
    by_group: dict[tuple[str, str | None], list[LoanFacts]] = defaultdict(list)
    for loan in loans:
        by_group[(loan.policy, loan.segment)].append(loan)
    groups = tuple(
        Group(policy, segment, compute(members, stages))
        for (policy, segment), members in sorted(by_group.items(), key=lambda item: (item[0][0], item[0][1] or ""))
    )
    return Report(
        filters=filters,
        generated_at=now or datetime.now(timezone.utc),
        overall=compute(loans, stages),
        groups=groups,
        warnings=tuple(warnings),
    )


# ------------------------------------------------------------------ output


def _money(amount: Decimal, currency: str) -> str:
    return format_amount(amount, currency)


def _ratio_json(ratio: Ratio) -> dict[str, Any]:
    def number(value: int | Decimal) -> int | str:
        return value if isinstance(value, int) else f"{value:f}"

    value = ratio.value
    return {"numerator": number(ratio.numerator), "denominator": number(ratio.denominator),
            "value": None if value is None else f"{value:f}"}


def kpis_json(kpis: Kpis) -> dict[str, Any]:
    """One KPI set as JSON: money and rates as decimal strings."""
    return {
        "loans": kpis.loans,
        "outcomes": kpis.outcomes,
        "by_currency": {
            c.currency: {
                "loans": c.loans,
                "amount_placed": _money(c.placed, c.currency),
                "amount_recovered": _money(c.recovered, c.currency),
                "recovery_rate": _ratio_json(c.recovery_rate),
                "contacts_sent": c.contacts_sent,
                "contacts_per_unit_recovered": _ratio_json(c.contacts_per_unit_recovered),
            }
            for c in kpis.currencies.values()
        },
        "cure_rate_by_stage": {
            s.stage: {"entered": s.entered, "cured": s.cured, "rolled": s.rolled, "open": s.open, "lost": s.lost,
                      "cure_rate": _ratio_json(s.cure_rate)}
            for s in kpis.cure_by_stage
        },
        "cured_before_first_stage": kpis.cured_before_first_stage,
        "dpd_buckets_reached": kpis.reached,
        "roll_rates": {f"{a}->{b}": _ratio_json(ratio) for a, b, ratio in kpis.roll_rates},
        "promises": {"kept": kpis.promises.kept, "broken": kpis.promises.broken, "open": kpis.promises.pending,
                     "kept_rate": _ratio_json(kpis.promises.kept_rate)},
        "plans": {"kept": kpis.plans.kept, "broken": kpis.plans.broken, "active": kpis.plans.pending,
                  "kept_rate": _ratio_json(kpis.plans.kept_rate)},
        "contacts_sent": kpis.contacts_sent,
    }


def report_json(report: Report) -> dict[str, Any]:
    f = report.filters
    return {
        "generated_at": report.generated_at.isoformat(timespec="seconds"),
        "filters": {
            "since": f.since.isoformat() if f.since else None,
            "until": f.until.isoformat() if f.until else None,
            "policy": f.policy,
            "segment_basis": f.segment_basis,
        },
        "definitions": "docs/kpis.md",
        "overall": kpis_json(report.overall),
        "groups": [
            {"policy": g.policy, "segment": g.segment, **kpis_json(g.kpis)} for g in report.groups
        ],
        "warnings": list(report.warnings),
    }


@dataclass(frozen=True)
class Table:
    title: str
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


def tables(report: Report) -> tuple[Table, ...]:
    """The report as titled tables of text cells (for the terminal and HTML)."""
    rows_of = [(ALL, report.overall), *((g.label, g.kpis) for g in report.groups)]
    stages = [s.stage for s in report.overall.cure_by_stage]
    transitions = [f"{a}→{b}" for a, b, _ in report.overall.roll_rates]
    return (
        Table(
            "Recovery, by currency",
            ("GROUP", "CURRENCY", "LOANS", "PLACED", "RECOVERED", "RECOVERY RATE", "CONTACTS SENT",
             "CONTACTS / UNIT RECOVERED"),
            tuple(
                (label, c.currency, str(c.loans), _money(c.placed, c.currency), _money(c.recovered, c.currency),
                 c.recovery_rate.text(), str(c.contacts_sent), c.contacts_per_unit_recovered.text(percent=False))
                for label, kpis in rows_of for c in kpis.currencies.values()
            ),
        ),
        Table(
            "Outcomes",
            ("GROUP", "LOANS", *(name.upper() for name in (*OUTCOMES, OPEN)), "CURED BEFORE FIRST STAGE"),
            tuple(
                (label, str(kpis.loans), *(str(kpis.outcomes.get(name, 0)) for name in (*OUTCOMES, OPEN)),
                 str(kpis.cured_before_first_stage))
                for label, kpis in rows_of
            ),
        ),
        Table(
            "Cure rate by stage (cured / entered)",
            ("GROUP", *(s.upper() for s in stages)),
            tuple(
                (label, *(f"{s.cure_rate.text()} ({s.cured}/{s.entered})" for s in kpis.cure_by_stage))
                for label, kpis in rows_of
            ),
        ),
        Table(
            "Roll rates between DPD buckets (reached next / reached)",
            ("GROUP", *transitions),
            tuple(
                (label, *(f"{ratio.text()} ({ratio.numerator}/{ratio.denominator})" for _, _, ratio in kpis.roll_rates))
                for label, kpis in rows_of
            ),
        ),
        Table(
            "Promises and plans (kept rate = kept / (kept + broken))",
            ("GROUP", "PROMISES KEPT", "BROKEN", "OPEN", "PROMISE-KEPT RATE",
             "PLANS KEPT", "BROKEN", "ACTIVE", "PLAN-KEPT RATE"),
            tuple(
                (label, str(k.promises.kept), str(k.promises.broken), str(k.promises.pending),
                 k.promises.kept_rate.text(),
                 str(k.plans.kept), str(k.plans.broken), str(k.plans.pending), k.plans.kept_rate.text())
                for label, k in rows_of
            ),
        ),
    )


def describe_filters(report: Report) -> str:
    f = report.filters
    window = f"placed {f.since or 'any time'} to {f.until or 'now'} (UTC dates, inclusive)"
    return f"{window}; policy {f.policy or 'all'}; segment at {f.segment_basis}"


def format_table(table: Table) -> str:
    cells = [table.header, *table.rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(table.header))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join([table.title, *lines])


def format_text(report: Report) -> str:
    parts = [
        f"KPI report, {report.overall.loans} loans {describe_filters(report)}; "
        f"generated {report.generated_at.isoformat(timespec='seconds')}",
        *(format_table(table) for table in tables(report)),
    ]
    if report.warnings:
        parts.append("Warnings\n" + "\n".join(f"- {w}" for w in report.warnings))
    parts.append("Definitions: docs/kpis.md")
    return "\n\n".join(parts)
