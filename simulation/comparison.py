"""Champion/challenger: the KPIs of two runs of the same portfolio side by
side, with the challenger's difference (challenger - champion)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from dunning.money import format_amount
from reports.kpi import OPEN, OUTCOMES, Ratio
from reports.text_table import text_table
from simulation.results import RunResult, rounded


@dataclass(frozen=True)
class Difference:
    kpi: str
    champion: str
    challenger: str
    difference: str
    # The numbers behind it, for --json (None where there is no number).
    champion_value: str | None = None
    challenger_value: str | None = None


def _points(a: Decimal | None, b: Decimal | None) -> str:
    if a is None or b is None:
        return "-"
    return f"{(b - a) * 100:+.2f} pp"


def _plain(a, b, places: int | None = None) -> str:
    if a is None or b is None:
        return "-"
    delta = b - a
    return f"{delta:+.{places}f}" if places is not None else f"{delta:+}"


def _rate_row(name: str, a: Ratio, b: Ratio, counts: bool = True) -> Difference:
    def cell(r: Ratio) -> str:
        return r.text() + (f" ({r.numerator}/{r.denominator})" if counts else "")

    return Difference(name, cell(a), cell(b), _points(a.value, b.value), _str(a.value), _str(b.value))


def _str(value) -> str | None:
    return None if value is None else f"{value:f}" if isinstance(value, Decimal) else str(value)


def compare(champion: RunResult, challenger: RunResult) -> list[Difference]:
    """The KPIs of two runs side by side, with the challenger's difference."""
    a, b = champion.kpis, challenger.kpis
    rows: list[Difference] = [Difference("loans placed", str(a.loans), str(b.loans), _plain(a.loans, b.loans), str(a.loans), str(b.loans))]
    for currency in sorted(set(a.currencies) | set(b.currencies)):
        ca, cb = a.currencies.get(currency), b.currencies.get(currency)
        if ca is None or cb is None:
            continue
        rows.append(_rate_row(f"recovery rate ({currency})", ca.recovery_rate, cb.recovery_rate, counts=False))
        rows.append(Difference(
            f"amount recovered ({currency})", format_amount(ca.recovered, currency), format_amount(cb.recovered, currency),
            f"{cb.recovered - ca.recovered:+,.2f}", _str(ca.recovered), _str(cb.recovered),
        ))
        rows.append(Difference(f"contacts sent ({currency} loans)", str(ca.contacts_sent), str(cb.contacts_sent),
                               _plain(ca.contacts_sent, cb.contacts_sent), str(ca.contacts_sent), str(cb.contacts_sent)))
        pa, pb = ca.contacts_per_unit_recovered, cb.contacts_per_unit_recovered
        rows.append(Difference(
            f"contacts per unit recovered ({currency})", pa.text(percent=False), pb.text(percent=False),
            _plain(pa.value, pb.value, 6), _str(pa.value), _str(pb.value),
        ))
    for outcome in (*OUTCOMES, OPEN):
        x, y = a.outcomes.get(outcome, 0), b.outcomes.get(outcome, 0)
        rows.append(Difference(f"outcome {outcome}", str(x), str(y), _plain(x, y), str(x), str(y)))
    rows.append(Difference("cured before first stage", str(a.cured_before_first_stage), str(b.cured_before_first_stage),
                           _plain(a.cured_before_first_stage, b.cured_before_first_stage)))
    cures_b = {s.stage: s for s in b.cure_by_stage}
    for stage in a.cure_by_stage:
        other = cures_b.get(stage.stage)
        if other is not None:
            rows.append(_rate_row(f"cure rate {stage.stage}", stage.cure_rate, other.cure_rate))
    for (x, y, ra), (_, _, rb) in zip(a.roll_rates, b.roll_rates):
        rows.append(_rate_row(f"roll rate {x}→{y}", ra, rb))
    rows.append(_rate_row("promise-kept rate", a.promises.kept_rate, b.promises.kept_rate))
    rows.append(Difference("promises broken", str(a.promises.broken), str(b.promises.broken),
                           _plain(a.promises.broken, b.promises.broken)))
    rows.append(_rate_row("plan-kept rate", a.plans.kept_rate, b.plans.kept_rate))
    da, db_ = champion.mean_days_to_repay(), challenger.mean_days_to_repay()
    rows.append(Difference(
        "mean days past due at repayment (simulation)", "-" if da is None else f"{da:.1f}",
        "-" if db_ is None else f"{db_:.1f}", _plain(da, db_, 1), _str(rounded(da)), _str(rounded(db_)),
    ))
    return rows


def format_comparison(champion: RunResult, challenger: RunResult, rows: list[Difference]) -> str:
    header = ("KPI", f"CHAMPION ({champion.policy})", f"CHALLENGER ({challenger.policy})", "DIFFERENCE")
    return "\n".join([
        f"Champion/challenger on the same {champion.kpis.loans} loans: {champion.policy} vs {challenger.policy} "
        "(difference = challenger - champion; pp = percentage points)",
        text_table(header, ((r.kpi, r.champion, r.challenger, r.difference) for r in rows)),
    ])


def comparison_json(rows: list[Difference]) -> list[dict]:
    return [
        {"kpi": r.kpi, "champion": r.champion, "challenger": r.challenger, "difference": r.difference,
         "champion_value": r.champion_value, "challenger_value": r.challenger_value}
        for r in rows
    ]
