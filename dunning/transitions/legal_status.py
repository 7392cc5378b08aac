"""Legal statuses (issue 18, item 1): the `legal_status` signal sets, ends or
clears one, audited; the loop's bookkeeping opens each status's agent task
and ends a hardship on its `until`; the `estate_outcome` update ends a
deceased borrower's loan. What a status lets the planner do is
dunning/legal_status.py's.

Each change is one audit entry (a decision record, kind `operator`, rule
`legal_status`), with the status, its reference and effective date.
"""

from __future__ import annotations

from typing import Any

from dunning import contract, legal_status as rules
from dunning.arrangements import ArrangementRejected, parse_update
from dunning.inputs import EstateOutcome, LegalStatusSignal
from dunning.state import LegalStatusChange, LegalStatuses, LegalStatusInForce, LoanState
from dunning.transitions import tasks
from dunning.transitions.holds import SignalRejected
from dunning.transitions.records import Moment, Record, decision, operator_action

FILED = contract.LEGAL_STATUS_BANKRUPTCY_FILED
DISMISSED = contract.LEGAL_STATUS_BANKRUPTCY_DISMISSED
DISCHARGED = contract.LEGAL_STATUS_BANKRUPTCY_DISCHARGED
DECEASED = contract.LEGAL_STATUS_DECEASED
CEASE = contract.LEGAL_STATUS_CEASE_COMMUNICATION
HARDSHIP = contract.LEGAL_STATUS_HARDSHIP
CLEARED = contract.LEGAL_STATUS_CLEARED


def change(state: LoanState, signal: LegalStatusSignal, moment: Moment) -> list[Record] | None:
    """A status set, ended (a bankruptcy dismissed or discharged) or cleared;
    SignalRejected naming what does not apply; None for the same signal again."""
    legal = state.legal_status or LegalStatuses()
    if moment.clock is not None and signal.effective_date > moment.today:
        raise SignalRejected(f"effective_date: {signal.effective_date} is after the loan's today ({moment.today})")
    if legal.discharged_chapter is not None or legal.estate_outcome is not None:
        raise SignalRejected("status: the loan is ending (a bankruptcy discharged, or an estate_outcome)")
    deceased = legal.find(DECEASED)
    if deceased is not None and signal.status not in (CLEARED, DECEASED):
        raise SignalRejected(
            f"status: the borrower is deceased ({deceased.reference}); only `cleared` (a status set by mistake) "
            "or the estate_outcome update apply"
        )
    handler = _HANDLERS[signal.status]
    reason = handler(state, legal, signal, moment)
    if reason is None:
        return None  # the same signal again: nothing changed
    legal.changes.append(LegalStatusChange(
        status=signal.status, reference=signal.reference, effective_date=signal.effective_date, at=moment.now,
    ))
    state.legal_status = legal
    return [operator_action(
        state, moment, contract.SIGNAL_LEGAL_STATUS,
        f"{signal.status} ({signal.reference}, effective {signal.effective_date.isoformat()}): {reason}",
    )]


def _set(legal: LegalStatuses, signal: LegalStatusSignal, moment: Moment, task: str = "") -> LegalStatusInForce:
    status = LegalStatusInForce(
        status=signal.status, reference=signal.reference, effective_date=signal.effective_date, until=signal.until,
        chapter=signal.chapter, since=moment.today if moment.clock is not None else signal.effective_date,
        task_pending=task,
    )
    legal.in_force.append(status)
    return status


def _filed(state: LoanState, legal: LegalStatuses, signal: LegalStatusSignal, moment: Moment) -> str | None:
    existing = legal.find(FILED)
    if existing is not None and (existing.reference, existing.chapter) == (signal.reference, signal.chapter):
        return None
    if existing is not None:
        # A case converted to another chapter (11 U.S.C. 706, 1112, 1307) or refiled: the stay goes on.
        was = existing.chapter
        existing.chapter, existing.reference = signal.chapter, signal.reference
        _correct_bureau(state)
        return f"the bankruptcy under chapter {was} is now under chapter {signal.chapter}; the stay goes on"
    _set(legal, signal, moment, rules.TASKS[FILED])
    legal.petition_date = signal.effective_date
    legal.petition_day = (signal.effective_date - state.due_date).days
    legal.dismissed_chapter = None
    _correct_bureau(state)
    return (f"chapter {signal.chapter} petition: the automatic stay (11 U.S.C. 362(a)): no contact, no escalation, "
            "no new charges; a bankruptcy_review task for the legal team")


def _bankruptcy_in_force(legal: LegalStatuses, signal: LegalStatusSignal) -> LegalStatusInForce:
    existing = legal.find(FILED)
    if existing is None:
        raise SignalRejected("status: no bankruptcy is in force (bankruptcy_filed first)")
    if signal.chapter is not None and signal.chapter != existing.chapter:
        raise SignalRejected(f"chapter: the bankruptcy in force is under chapter {existing.chapter}, not {signal.chapter}")
    return existing


def _dismissed(state: LoanState, legal: LegalStatuses, signal: LegalStatusSignal, moment: Moment) -> str:
    existing = _bankruptcy_in_force(legal, signal)
    legal.in_force.remove(existing)
    legal.dismissed_chapter = existing.chapter
    _charges_resume(state, moment)
    _correct_bureau(state)
    return "the stay is lifted (11 U.S.C. 362(c)(2)(B)): collection resumes at the stage of the day, missed steps not replayed"


def _discharged(state: LoanState, legal: LegalStatuses, signal: LegalStatusSignal, moment: Moment) -> str:
    existing = _bankruptcy_in_force(legal, signal)
    legal.in_force.remove(existing)
    legal.discharged_chapter = existing.chapter
    return "the debt is discharged (11 U.S.C. 524(a)): the loan ends `discharged`, reported with a zero balance"


def _deceased(state: LoanState, legal: LegalStatuses, signal: LegalStatusSignal, moment: Moment) -> str | None:
    if legal.find(DECEASED) is not None:
        return None
    _set(legal, signal, moment, rules.TASKS[DECEASED])
    _never_contacted(state)
    _correct_bureau(state)
    return "no contact with the borrower, ever; no new charges; an estate_handling task; the loan waits for an estate_outcome"


def _cease(state: LoanState, legal: LegalStatuses, signal: LegalStatusSignal, moment: Moment) -> str | None:
    if legal.find(CEASE) is not None:
        return None  # the request stands; a second letter changes nothing
    _set(legal, signal, moment)
    _never_contacted(state)
    return ("no further communication (12 CFR 1006.6(c)) but one final notice, where the policy names one; "
            "escalation to legal only where the profile allows it")


def _hardship(state: LoanState, legal: LegalStatuses, signal: LegalStatusSignal, moment: Moment) -> str | None:
    if moment.clock is not None and signal.until <= moment.today:
        raise SignalRejected(f"until: {signal.until} is not after the loan's today ({moment.today})")
    existing = legal.find(HARDSHIP)
    if existing is not None and (existing.reference, existing.effective_date, existing.until) == (
        signal.reference, signal.effective_date, signal.until,
    ):
        return None
    if existing is not None:
        legal.in_force.remove(existing)  # replaced: a hardship extended or shortened
    _set(legal, signal, moment)
    return (f"fees and interest frozen and escalation stopped until {signal.until.isoformat()}; contact follows the "
            "policy's hardship cadence")


def _cleared(state: LoanState, legal: LegalStatuses, signal: LegalStatusSignal, moment: Moment) -> str:
    target = next((s for s in legal.in_force if s.reference == signal.reference), None)
    if target is None:
        known = ", ".join(f"{s.status} {s.reference}" for s in legal.in_force) or "none"
        raise SignalRejected(f"reference: no status in force has reference {signal.reference!r} (in force: {known})")
    legal.in_force.remove(target)
    if target.status != CEASE:
        _charges_resume(state, moment)
    if target.status in (FILED, DECEASED):
        _correct_bureau(state)  # Q removes the bankruptcy indicator; ECOA 1 replaces X
    return f"{target.status} {target.reference} removed (set by mistake): the loan goes on as if it had not been set"


_HANDLERS = {
    FILED: _filed, DISMISSED: _dismissed, DISCHARGED: _discharged, DECEASED: _deceased, CEASE: _cease,
    HARDSHIP: _hardship, CLEARED: _cleared,
}


def _charges_resume(state: LoanState, moment: Moment) -> None:
    """A status that froze charges is lifted: charges start again from
    today; the frozen days stay uncharged (as a plan's do)."""
    if moment.clock is not None:
        state.charges_through_day = max(state.charges_through_day, moment.days_past_due - 1)


def _never_contacted(state: LoanState) -> None:
    """Contacts a compliance rule postponed will not go (a death, a cease
    request): they leave `postponed_contacts`."""
    state.deferred, state.deferred_rules = {}, {}


def _correct_bureau(state: LoanState) -> None:
    """A reported account whose indicator or ECOA code changes is corrected
    at once, not at the next cycle."""
    if state.bureau_reported:
        state.bureau.correction_due = True


# -------------------------------------------------------------- the loop


def bookkeep(state: LoanState, moment: Moment) -> list[Record]:
    """On every wake (after charges are posted): each new status's agent task
    (a bankruptcy_review, an estate_handling), and a hardship that reached
    its `until` ended. Nothing for a loan without legal statuses."""
    legal = state.legal_status
    if legal is None or moment.clock is None:
        return []
    written: list[Record] = []
    for status in legal.in_force:
        if status.task_pending:
            kind, status.task_pending = status.task_pending, ""
            written += tasks.open_task(
                state, moment, kind, status.reference, default_hours=rules.DEFAULT_TASK_SLA_HOURS[kind],
            )
    hardship = legal.find(HARDSHIP)
    if hardship is not None and hardship.until <= moment.today:
        legal.in_force.remove(hardship)
        legal.changes.append(LegalStatusChange(
            status="hardship_ended", reference=hardship.reference, effective_date=hardship.until, at=moment.now,
        ))
        written.append(decision(
            state, moment, "decision", "hardship_ended",
            f"hardship {hardship.reference} reached its until ({hardship.until.isoformat()}): charges and the "
            "stage's cadence resume at the stage of the day",
        ))
    return written


# ---------------------------------------------------------- estate_outcome


def checked_estate_outcome(state: LoanState, payload: Any) -> EstateOutcome:
    """The outcome, or ArrangementRejected: only for a deceased borrower's loan, once."""
    outcome = parse_update(EstateOutcome, payload)
    legal = state.legal_status
    if legal is None or legal.find(DECEASED) is None:
        raise ArrangementRejected("outcome: the borrower is not recorded as deceased (legal_status `deceased`)")
    if legal.estate_outcome is not None:
        raise ArrangementRejected(f"outcome: already {legal.estate_outcome}")
    return outcome


def estate_outcome(state: LoanState, outcome: EstateOutcome, moment: Moment) -> list[Record]:
    """The loan ends `written_off` or `settled` (what the estate paid came as
    repayments; the rest is not collected). The bureau is not told again
    once the account was reported deceased (dunning/bureau.py)."""
    legal = state.legal_status
    legal.estate_outcome = outcome.outcome
    legal.changes.append(LegalStatusChange(
        status=f"estate_{outcome.outcome}", reference=outcome.reference,
        effective_date=moment.today, at=moment.now,
    ))
    return [operator_action(
        state, moment, contract.UPDATE_ESTATE_OUTCOME,
        f"estate outcome {outcome.outcome} ({outcome.reference}): the loan ends {outcome.outcome}",
    )]
