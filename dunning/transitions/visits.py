"""Field visits: assigned by the planner when the policy and segment call for
one, reported by the field team (the `record_visit` update)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from dunning import keys
from dunning.arrangements import ArrangementRejected, check_promise, parse_update
from dunning.inputs import VisitReport
from dunning.state import FieldVisit, LoanState
from dunning.transitions.records import VISIT_ASSIGNED, VISIT_OUTCOME, Moment, Record, Rules, Write, money


def visit_assignment(state: LoanState, rules: Rules, loan_now: datetime, moment: Moment) -> Write:
    """The next visit, to as many staff as the profile requires; the loan
    knows of it once the assignment is written."""
    visit = FieldVisit(visit_id=keys.visit_id(state.loan_id, len(state.visits) + 1), assigned_on=loan_now.date())
    record = Record(
        VISIT_ASSIGNED,
        dict(
            key=keys.visit_key(moment.workflow_id, visit.visit_id), workflow_id=moment.workflow_id,
            loan_id=state.loan_id, visit_id=visit.visit_id, staff_required=rules.profile.rules.field_visit_min_staff or 1,
            days_past_due=moment.clock.days_past_due(loan_now), outstanding=money(state, state.outstanding),
            currency=state.currency, at=moment.at,
        ),
        f"Assign field visit {visit.visit_id}",
    )
    return Write(record, lambda: state.visits.append(visit))


def checked_visit_report(rules: Rules, state: LoanState, payload: Any, today: date) -> tuple[VisitReport, FieldVisit]:
    """The report and the visit it is about, or ArrangementRejected naming the
    key: the visit must be assigned to this loan and not reported yet, by
    enough different staff, and a promise must be one the policy accepts."""
    report = parse_update(VisitReport, payload)
    visit = next((v for v in state.visits if v.visit_id == report.visit_id), None)
    if visit is None:
        raise ArrangementRejected(f"visit_id: no field visit {report.visit_id!r} was assigned to this loan")
    if visit.status != "assigned":
        raise ArrangementRejected(f"visit_id: visit {report.visit_id!r} was already reported ({visit.outcome})")
    needed = rules.profile.rules.field_visit_min_staff or 1
    if len(set(report.staff_ids)) < needed:
        raise ArrangementRejected(f"staff_ids: a field visit needs {needed} different staff ({rules.profile.name} profile)")
    if report.outcome == "promise":
        if report.promise is None:
            raise ArrangementRejected("promise: an outcome 'promise' needs the promise's amount and by_date")
        try:
            check_promise(rules.policy, state, report.promise, today, "field_visit")
        except ArrangementRejected as error:
            # The visit happened; report it with another outcome, or fix the promise.
            raise ArrangementRejected(f"promise: not accepted ({error})") from None
    elif report.promise is not None:
        raise ArrangementRejected(f"promise: only with outcome 'promise', not {report.outcome!r}")
    return report, visit


def visit_reported(state: LoanState, report: VisitReport, visit: FieldVisit, moment: Moment) -> list[Record]:
    """The visit done, with its outcome (the notes are in the database already)."""
    visit.status, visit.outcome = "done", report.outcome
    return [
        Record(
            VISIT_OUTCOME,
            dict(
                key=keys.visit_outcome_key(moment.workflow_id, visit.visit_id), workflow_id=moment.workflow_id,
                loan_id=state.loan_id, visit_id=visit.visit_id, outcome=report.outcome,
                staff_ids=list(report.staff_ids), at=moment.at,
            ),
            f"Field visit {visit.visit_id}: {report.outcome}",
        )
    ]
