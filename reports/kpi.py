"""Collections KPIs from the database, to evaluate a strategy regularly.

    with sessions() as db:
        report = build_report(db, Filters(since=date(2026, 1, 1)))
    print(format_text(report)); json.dumps(report_json(report))

The database computes the sums and counts, grouped (reports/kpi_sql.py: SQL
aggregation, so 100,000 loans cost a few queries, not 100,000 Python
objects); this module turns them into the KPIs; reports/kpi_render.py writes
them as JSON, tables and text. `compute` gives the same KPIs from loans' facts
read one by one (reports/loan_facts.py), for a simulation's few loans and as
the definitions' executable reference the SQL is tested against.

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
    was placed in that currency. A settled loan (issue 18, item 4) recovered
    what was paid, net of the discount: the balance a settlement wrote off is
    never recovered money.

Amount waived (per currency)
    The sum of `loans.waived` (what settlements and plans' waivers wrote off,
    set when the loan closed) of the loans in that currency: shown beside the
    recovery, never added to it.

Outcomes
    The number of loans by `loans.outcome`: `repaid`, `settled`, `written_off`,
    `dispute_upheld`, `discharged` (in bankruptcy: issue 18), and `open` (no
    outcome yet: still in collections).

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
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import ROUND_HALF_UP, Decimal, localcontext

from sqlalchemy.orm import Session

from dunning.contract import STAGE_NAMES, STAGE_PRE_DUE, STAGES
from dunning.money import quantize
from reports.kpi_sql import Tallies, tallies
from reports.loan_facts import Filters, LoanFacts

OUTCOMES = ("repaid", "settled", "written_off", "dispute_upheld", "discharged")
OPEN = "open"
CURED_OUTCOMES = frozenset({"repaid", "settled"})
# (label, first day); the last bucket has no end.
BUCKETS: tuple[tuple[str, int], ...] = (("1-30", 1), ("31-60", 31), ("61-90", 61), ("91-180", 91), ("180+", 181))
RATE_PLACES = 4
PER_UNIT_PLACES = 6


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
class CurrencyKpis:
    """The loans in one currency: money placed and recovered, contacts sent."""

    currency: str
    loans: int
    placed: Decimal
    recovered: Decimal
    contacts_sent: int
    waived: Decimal = Decimal("0")  # written off by settlements and plans' waivers: not recovered

    @property
    def recovery_rate(self) -> Ratio:
        return Ratio(self.recovered, self.placed)

    @property
    def contacts_per_unit_recovered(self) -> Ratio:
        return Ratio(self.contacts_sent, self.recovered, PER_UNIT_PLACES)


@dataclass(frozen=True)
class StageCure:
    """The loans that entered a stage, each exactly one of cured, rolled,
    open or lost there (see "Cure rate by stage S" above)."""

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


# ------------------------------------------------------------------ computing


def stage_names(loans: Iterable[LoanFacts]) -> tuple[str, ...]:
    """The contract's stages in order (pre_due first, when a loan had it),
    then any other stage name seen."""
    seen = {stage for loan in loans for stage in loan.stages}
    known = STAGE_NAMES if STAGE_PRE_DUE in seen else STAGES
    return (*known, *sorted(seen - set(known)))


def compute(loans: Sequence[LoanFacts], stages: Sequence[str] = STAGES) -> Kpis:
    """The KPIs of a set of loans (see the module docstring)."""
    outcomes = Counter({name: 0 for name in (*OUTCOMES, OPEN)})
    placed: dict[str, Decimal] = defaultdict(lambda: Decimal("0"))
    recovered: dict[str, Decimal] = defaultdict(lambda: Decimal("0"))
    waived: dict[str, Decimal] = defaultdict(lambda: Decimal("0"))
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
        waived[loan.currency] += loan.waived
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
            waived=quantize(waived[currency], currency),
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


def _names(seen: Iterable[str]) -> tuple[str, ...]:
    """stage_names, from the stage names alone."""
    seen = set(seen)
    known = STAGE_NAMES if STAGE_PRE_DUE in seen else STAGES
    return (*known, *sorted(seen - set(known)))


def _kpis(tally: Tallies, stages: Sequence[str], outcome_order: Iterable[str]) -> Kpis:
    """A group's KPIs from its tallies: what `compute` gives for its loans."""
    outcomes = {name: 0 for name in (*OUTCOMES, OPEN)}
    for name in outcome_order:  # an outcome the report does not know of, after the known ones
        outcomes.setdefault(name, 0)
    outcomes.update(tally.outcomes)
    currencies = {
        currency: CurrencyKpis(
            currency=currency, loans=tally.by_currency[currency],
            placed=quantize(tally.placed.get(currency, Decimal("0")), currency),
            recovered=quantize(tally.recovered.get(currency, Decimal("0")), currency),
            contacts_sent=tally.contacts[currency], waived=quantize(tally.waived.get(currency, Decimal("0")), currency),
        )
        for currency in sorted(set(tally.by_currency) | set(tally.recovered))
    }
    return Kpis(
        loans=tally.loans,
        outcomes=outcomes,
        currencies=currencies,
        cure_by_stage=tuple(
            StageCure(stage, *(tally.cure.get(stage, Counter())[kind] for kind in ("entered", "cured", "rolled", "open", "lost")))
            for stage in stages
        ),
        cured_before_first_stage=tally.cured_early,
        reached={label: tally.reached[label] for label, _ in BUCKETS},
        promises=Kept(tally.promises["kept"], tally.promises["broken"], tally.promises["open"]),
        plans=Kept(tally.plans["kept"], tally.plans["broken"], tally.plans["active"]),
        contacts_sent=sum(tally.contacts.values()),
    )


def build_report(db: Session, filters: Filters = Filters(), now: datetime | None = None) -> Report:
    """The KPIs of the selected loans: overall and by (policy, segment), from
    the database's GROUP BY queries (reports/kpi_sql.py)."""
    by_group, outcome_order, seen, warnings = tallies(db, filters, BUCKETS)
    stages = _names(seen)
    overall = Tallies()
    for tally in by_group.values():
        overall.add(tally)
    groups = tuple(
        Group(policy, segment, _kpis(tally, stages, tally.outcome_order))
        for (policy, segment), tally in sorted(by_group.items(), key=lambda item: (item[0][0], item[0][1] or ""))
    )
    return Report(
        filters=filters,
        generated_at=now or datetime.now(timezone.utc),
        overall=_kpis(overall, stages, outcome_order),
        groups=groups,
        warnings=tuple(warnings),
    )
