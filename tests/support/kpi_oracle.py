"""The KPI report as it was computed before issue 19: every loan's facts read
into Python (reports/loan_facts.load_loans) and the KPIs computed loan by loan
(reports.kpi.compute). Kept as the oracle the SQL aggregation
(reports/kpi_sql.py, `build_report`) is checked against."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timezone

from sqlalchemy.orm import Session

from reports.kpi import Group, Report, compute, stage_names
from reports.loan_facts import Filters, LoanFacts, load_loans


def build_report_in_python(db: Session, filters: Filters = Filters(), now: datetime | None = None) -> Report:
    loans, warnings = load_loans(db, filters)
    stages = stage_names(loans)
    by_group: dict[tuple[str, str | None], list[LoanFacts]] = defaultdict(list)
    for loan in loans:
        by_group[(loan.policy, loan.segment)].append(loan)
    groups = tuple(
        Group(policy, segment, compute(members, stages))
        for (policy, segment), members in sorted(by_group.items(), key=lambda item: (item[0][0], item[0][1] or ""))
    )
    return Report(filters=filters, generated_at=now or datetime.now(timezone.utc), overall=compute(loans, stages),
                  groups=groups, warnings=tuple(warnings))
