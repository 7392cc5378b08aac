"""What one simulation run leaves: its KPIs (reports/kpi.py's, on the run's
database), how each borrower behaviour fared, and the throughput."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from sqlalchemy import select

from db.models import Loan
from dunning.money import format_amount
from reports.kpi import CURED_OUTCOMES, OPEN, OUTCOMES, Kpis, Ratio, Report
from reports.kpi_render import report_json
from reports.loan_facts import load_loans
from reports.text_table import text_table
from simulation.behaviour import Borrower
from simulation.portfolio import BEHAVIOURS, Portfolio


@dataclass
class Throughput:
    loans: int
    days: int  # simulated days (the last look's day)
    wall_seconds: float  # the whole run: server, placing, simulation, KPIs
    simulate_seconds: float  # from the first start to the last loan closed or terminated
    server_start_seconds: float
    steps: int  # clock moves
    statuses: int  # status queries
    signals: int
    updates: int
    contacts_sent: int
    payments: int
    terminated: int
    # Workflow tasks that failed or timed out, over every loan's history: a
    # workflow bug, or a machine too loaded for the 10 s workflow task timeout.
    task_failures: int = 0
    task_timeouts: int = 0

    @property
    def loan_days_per_second(self) -> float:
        return self.loans * self.days / self.simulate_seconds if self.simulate_seconds else 0.0

    def as_dict(self) -> dict:
        return {
            "loans": self.loans, "days": self.days, "wall_seconds": round(self.wall_seconds, 1),
            "simulate_seconds": round(self.simulate_seconds, 1), "server_start_seconds": round(self.server_start_seconds, 1),
            "steps": self.steps, "status_queries": self.statuses, "signals": self.signals, "updates": self.updates,
            "contacts_sent": self.contacts_sent, "payments": self.payments, "terminated": self.terminated,
            "workflow_task_failures": self.task_failures, "workflow_task_timeouts": self.task_timeouts,
            "loan_days_per_second": round(self.loan_days_per_second, 1),
        }

    def line(self) -> str:
        return (
            f"{self.loans} loans x {self.days} days in {self.simulate_seconds:.1f} s "
            f"({self.loan_days_per_second:.0f} loan-days/s; {self.wall_seconds:.1f} s in all, "
            f"{self.server_start_seconds:.1f} s of it starting the server); {self.contacts_sent} contacts sent, "
            f"{self.payments} payments, {self.statuses} status queries, {self.signals} signals, {self.updates} updates"
            + (f", {self.terminated} terminated open" if self.terminated else "")
            + f"; workflow tasks failed {self.task_failures}, timed out {self.task_timeouts}"
        )


@dataclass
class BehaviourKpis:
    """The simulation's own view: how each behaviour fared (not a reports/kpi.py KPI)."""

    behaviour: str
    loans: int
    outcomes: Counter
    final_stages: Counter
    placed: dict[str, Decimal]
    recovered: dict[str, Decimal]
    repaid_days: list[int]  # days past due at which each repaid loan closed

    @property
    def mean_days_to_repay(self) -> float | None:
        return statistics.fmean(self.repaid_days) if self.repaid_days else None


@dataclass
class RunResult:
    label: str
    policy: str
    out_dir: Path
    database_url: str
    report: Report
    files: tuple[Path, Path]
    throughput: Throughput
    behaviours: dict[str, BehaviourKpis]
    borrowers: dict[str, Borrower]
    rejections: list[str] = field(default_factory=list)

    @property
    def kpis(self) -> Kpis:
        return self.report.overall

    def mean_days_to_repay(self) -> float | None:
        days = [d for b in self.behaviours.values() for d in b.repaid_days]
        return statistics.fmean(days) if days else None

    def as_json(self) -> dict:
        return {
            "label": self.label,
            "policy": self.policy,
            "database_url": self.database_url,
            "kpis": {**report_json(self.report), "files": {"png": str(self.files[0]), "html": str(self.files[1])}},
            "behaviours": {name: _behaviour_json(b) for name, b in self.behaviours.items()},
            "mean_days_past_due_at_repayment": rounded(self.mean_days_to_repay()),
            "throughput": self.throughput.as_dict(),
            "rejections": self.rejections,
        }


def behaviour_kpis(db, portfolio: Portfolio) -> dict[str, BehaviourKpis]:
    """Outcomes, final stages and recovery of each behaviour's loans, from the
    same facts reports/kpi.py reads."""
    facts, _ = load_loans(db)
    kind_of = {loan.loan_id: loan.behaviour.kind for loan in portfolio.loans}
    closed_days = dict(db.execute(select(Loan.loan_id, Loan.max_days_past_due)).all())
    out: dict[str, BehaviourKpis] = {}
    for kind in [k for k in BEHAVIOURS if k in set(kind_of.values())]:
        out[kind] = BehaviourKpis(kind, 0, Counter(), Counter(), defaultdict(Decimal), defaultdict(Decimal), [])
    for loan in facts:
        kind = kind_of.get(loan.loan_id)
        if kind is None:
            continue
        b = out[kind]
        b.loans += 1
        b.outcomes[loan.outcome or OPEN] += 1
        b.final_stages[loan.final_stage or "(none)"] += 1
        b.placed[loan.currency] += loan.amount_due
        for currency, amount in loan.recovered.items():
            b.recovered[currency] += amount
        if loan.outcome in CURED_OUTCOMES:
            b.repaid_days.append(closed_days.get(loan.loan_id) or 0)
    return out


def rounded(value: float | None, places: int = 1) -> float | None:
    return None if value is None else round(value, places)


def _behaviour_json(b: BehaviourKpis) -> dict:
    return {
        "loans": b.loans,
        "outcomes": dict(b.outcomes),
        "final_stages": dict(b.final_stages),
        "recovery": {
            c: {"placed": format_amount(b.placed[c], c), "recovered": format_amount(b.recovered.get(c, Decimal(0)), c),
                "rate": _ratio_value(Ratio(b.recovered.get(c, Decimal(0)), b.placed[c]))}
            for c in sorted(b.placed)
        },
        "mean_days_past_due_at_repayment": rounded(b.mean_days_to_repay),
    }


def _ratio_value(ratio: Ratio) -> str | None:
    value = ratio.value
    return None if value is None else f"{value:f}"


def format_behaviours(result: RunResult) -> str:
    """One line per behaviour: outcomes, where they ended, recovery, days to repay."""
    header = ("BEHAVIOUR", "LOANS", "REPAID", "SETTLED", "WRITTEN OFF", "DISPUTE UPHELD", "OPEN",
              "FINAL STAGES", "RECOVERY", "MEAN DPD AT REPAYMENT")
    rows = []
    for b in result.behaviours.values():
        stages = ", ".join(f"{stage} {n}" for stage, n in sorted(b.final_stages.items(), key=lambda kv: -kv[1]))
        recovery = "; ".join(f"{Ratio(b.recovered.get(c, Decimal(0)), b.placed[c]).text()} {c}" for c in sorted(b.placed))
        mean = b.mean_days_to_repay
        rows.append((
            b.behaviour, str(b.loans), *(str(b.outcomes.get(o, 0)) for o in (*OUTCOMES, OPEN)), stages, recovery,
            "-" if mean is None else f"{mean:.1f}",
        ))
    return "\n".join([f"By behaviour (simulation; {result.policy})", text_table(header, rows)])
