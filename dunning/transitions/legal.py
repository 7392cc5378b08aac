"""The legal case: opened when the legal stage starts, moved on by the
`legal_outcome` update. Filed or judged, the court process replaces the
cadence (no direct contact, no write-off); withdrawn, dunning resumes;
settled, the loan ends."""

from __future__ import annotations

from typing import Any

from dunning import keys
from dunning.arrangements import ArrangementRejected, parse_update
from dunning.inputs import LegalOutcome
from dunning.state import LoanState
from dunning.transitions.records import LEGAL_OUTCOME, Moment, Record

# What a case in each status may become.
NEXT_STATUSES = {
    "opened": ("filed", "settled", "withdrawn"),
    "filed": ("judgment", "settled", "withdrawn"),
    "judgment": ("settled",),
    # The debt became time-barred before the case was filed (issue 18, item
    # 2): it is never filed (12 CFR 1006.26(b)).
    "time_barred": (),
}


def checked_legal_outcome(state: LoanState, payload: Any) -> LegalOutcome:
    """The outcome, or ArrangementRejected: only in the legal stage, and only
    a step the case's status allows."""
    outcome = parse_update(LegalOutcome, payload)
    if state.legal is None:
        raise ArrangementRejected("outcome: the loan has no legal case (it is not in the legal stage)")
    allowed = NEXT_STATUSES.get(state.legal.status, ())
    if outcome.outcome not in allowed:
        raise ArrangementRejected(
            f"outcome: a case that is {state.legal.status} can be {', '.join(allowed) or 'nothing more'}, not {outcome.outcome}"
        )
    return outcome


def legal_outcome(state: LoanState, outcome: LegalOutcome, moment: Moment) -> list[Record]:
    state.legal.status = outcome.outcome
    if outcome.case_ref:
        state.legal.case_ref = outcome.case_ref
    return [
        Record(
            LEGAL_OUTCOME,
            dict(
                key=keys.legal_outcome_key(moment.workflow_id, outcome.outcome), workflow_id=moment.workflow_id,
                loan_id=state.loan_id, outcome=outcome.outcome, case_ref=state.legal.case_ref, at=moment.at,
            ),
            f"Legal case: {outcome.outcome}",
        )
    ]
