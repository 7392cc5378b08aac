"""A KPI report (reports/kpi.py) as JSON, as titled tables of text cells (for
the terminal and the HTML page) and as the terminal's text."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from dunning.money import format_amount
from reports.kpi import OPEN, OUTCOMES, Kpis, Ratio, Report
from reports.text_table import text_table

# The whole portfolio's label, beside the groups' "policy/segment".
ALL = "all"


def labelled_kpis(report: Report) -> list[tuple[str, Kpis]]:
    """The whole portfolio's KPIs first, then each group's, with their labels."""
    return [(ALL, report.overall), *((g.label, g.kpis) for g in report.groups)]


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
                # Written off by settlements and plans' waivers: not in the recovery (issue 18, item 4).
                "amount_waived": _money(c.waived, c.currency),
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
    rows_of = labelled_kpis(report)
    stages = [s.stage for s in report.overall.cure_by_stage]
    transitions = [f"{a}→{b}" for a, b, _ in report.overall.roll_rates]
    return (
        Table(
            "Recovery, by currency",
            ("GROUP", "CURRENCY", "LOANS", "PLACED", "RECOVERED", "RECOVERY RATE", "WAIVED", "CONTACTS SENT",
             "CONTACTS / UNIT RECOVERED"),
            tuple(
                (label, c.currency, str(c.loans), _money(c.placed, c.currency), _money(c.recovered, c.currency),
                 c.recovery_rate.text(), _money(c.waived, c.currency), str(c.contacts_sent),
                 c.contacts_per_unit_recovered.text(percent=False))
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
    return "\n".join([table.title, text_table(table.header, table.rows)])


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
