"""Time-barred debt (issue 18, item 2): the loan's statute of limitations
set when it starts, restarted by a payment where its rule says so (and no
longer by one reversed), and the day it runs out recorded by the loop's
bookkeeping. What being time-barred lets the planner do is
dunning/limitation.py's and the planner's.

Each step is one audit entry (a decision): `time_barred` when the debt
becomes time-barred (at the start, for a loan placed so), and
`limitation_restarted` / `limitation_restart_undone` when a payment moves
the day. A legal case opened and not yet filed on that day stops (status
`time_barred`, a legal outcome record): it is never filed. One filed before
stands (the action was brought in time); it is the court's.
"""

from __future__ import annotations

from datetime import date

from dunning import keys
from dunning import limitation as rules
from dunning.limitation import LimitationRule
from dunning.state import LoanState
from dunning.transitions.records import LEGAL_OUTCOME, Moment, Record, decision

TIME_BARRED = "time_barred"


def begin(state: LoanState, rule: LimitationRule, moment: Moment) -> list[Record]:
    """The limitation a loan starts with; a loan placed already time-barred
    is recorded so at once (its first contact is the time-barred variant)."""
    state.limitation = rules.start(rule, state.due_date)
    return bookkeep(state, moment)


def bookkeep(state: LoanState, moment: Moment) -> list[Record]:
    """On every wake: the debt becoming time-barred today (or before, for a
    loan placed so) is recorded, once. Nothing for a loan without a
    limitation or already time-barred."""
    limitation = state.limitation
    if limitation is None or limitation.time_barred or moment.clock is None:
        return []
    on = rules.time_barred_on(limitation)
    if moment.today < on:
        return []
    limitation.time_barred_since = on
    since = "the last payment" if limitation.restarts or limitation.runs_from == "last_payment" else "the first delinquency"
    written = [decision(
        state, moment, "decision", TIME_BARRED,
        f"time-barred since {on.isoformat()} ({limitation.years} years from {since}, {limitation.runs_since.isoformat()}): "
        "no legal action and no threat of one (12 CFR 1006.26(b)); every message in its time-barred variant"
        + (f" with disclosure {limitation.disclosure}" if limitation.disclosure else ""),
    )]
    case = state.legal
    if case is not None and case.status == "opened":
        case.status = TIME_BARRED
        written.append(Record(
            LEGAL_OUTCOME,
            dict(
                key=keys.legal_outcome_key(moment.workflow_id, TIME_BARRED), workflow_id=moment.workflow_id,
                loan_id=state.loan_id, outcome=TIME_BARRED, case_ref=case.case_ref, at=moment.at,
            ),
            "Legal case: time_barred (never filed)",
        ))
    return written


def payment_received(state: LoanState, payment_id: str, day: date, moment: Moment) -> list[Record]:
    """A payment just applied, counted from `day`: the period starts again
    from it where the rule says so."""
    limitation = state.limitation
    if limitation is None:
        return []
    before = rules.time_barred_on(limitation)
    made = rules.restart(limitation, payment_id, day, rules.pays_what_is_due(state, day))
    if made is None:
        return []
    limitation.restarts.append(made)
    return [decision(
        state, moment, "decision", "limitation_restarted",
        f"payment {payment_id} on {day.isoformat()} restarts the statute of limitations: time-barred on "
        f"{rules.time_barred_on(limitation).isoformat()} instead of {before.isoformat()}",
    )]


def payment_reversed(state: LoanState, payment_id: str, moment: Moment) -> list[Record]:
    """A payment that restarted the period came back before the debt was
    time-barred: it no longer restarts it."""
    limitation = state.limitation
    if limitation is None or limitation.time_barred or not any(r.payment_id == payment_id for r in limitation.restarts):
        return []
    before = rules.time_barred_on(limitation)
    limitation.restarts = [r for r in limitation.restarts if r.payment_id != payment_id]
    return [decision(
        state, moment, "decision", "limitation_restart_undone",
        f"payment {payment_id} was reversed: it no longer restarts the statute of limitations; time-barred on "
        f"{rules.time_barred_on(limitation).isoformat()} instead of {before.isoformat()}",
    )]
