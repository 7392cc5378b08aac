"""Holds: a dispute, an operator's pause, a complaint under review. While one
is open the planner neither contacts nor escalates (LoanState.on_hold).

Each function takes the signal's parsed payload and returns the records to
write, raises SignalRejected naming what is wrong (the signal is kept in
`rejected_signals`), or returns None for a signal that changes nothing (the
same complaint sent twice).
"""

from __future__ import annotations

from dunning import contract, keys
from dunning.inputs import (
    ComplaintResolvedSignal, ComplaintSignal, DisputeResolvedSignal, DisputeSignal, HoldSignal, VerificationSentSignal,
)
from dunning.state import LoanState
from dunning.transitions import tasks
from dunning.transitions.records import COMPLAINT_OPENED, COMPLAINT_RESOLVED, Moment, Record, operator_action


class SignalRejected(ValueError):
    """A well-formed signal that does not apply to the loan as it is."""


def open_dispute(state: LoanState, signal: DisputeSignal, moment: Moment) -> list[Record]:
    state.disputed = True
    reason = "dispute opened: contact and escalation stop"
    validation = state.validation
    if validation is not None and validation.verification_sent_on is None and (
        validation.period_ends is None or moment.loan_now.astimezone(moment.clock.zone).date() <= validation.period_ends
    ):
        # 12 CFR 1006.38(d)(2): a dispute within the validation period stops
        # collection until verification is sent, whatever the review says.
        # One before the notice was provided is held the same way.
        validation.verification_required = True
        reason += "; in the validation period: collection waits for verification_sent"
    state.disputes_opened += 1
    return [operator_action(state, moment, contract.SIGNAL_DISPUTE, reason),
            *tasks.open_task(state, moment, "dispute_verification", str(state.disputes_opened))]


def verification_sent(state: LoanState, signal: VerificationSentSignal, moment: Moment) -> list[Record]:
    """Verification mailed to the consumer: the validation-period hold lifts
    (an open dispute still holds until it is resolved)."""
    validation = state.validation
    if validation is None or not validation.verification_required:
        raise SignalRejected("no dispute in the validation period awaits verification")
    if validation.verification_sent_on is not None:
        return None
    validation.verification_sent_on = moment.loan_now.astimezone(moment.clock.zone).date()
    validation.verification_reference = signal.reference
    return [operator_action(state, moment, contract.SIGNAL_VERIFICATION_SENT, f"verification sent ({signal.reference})")]


def resolve_dispute(state: LoanState, signal: DisputeResolvedSignal, moment: Moment) -> list[Record]:
    """Upheld, the loan ends (outcome dispute_upheld); rejected, collection resumes."""
    if not state.disputed:
        raise SignalRejected("no dispute is open")
    state.disputed = False
    state.dispute_upheld = signal.upheld
    reason = "dispute upheld" if signal.upheld else "dispute rejected: collection resumes"
    return [operator_action(state, moment, contract.SIGNAL_DISPUTE_RESOLVED, reason)]


def pause(state: LoanState, signal: HoldSignal, moment: Moment) -> list[Record]:
    state.paused, state.pause_reason = True, signal.reason
    return [operator_action(state, moment, contract.SIGNAL_PAUSE, "paused by an operator")]


def resume(state: LoanState, signal: HoldSignal, moment: Moment) -> list[Record]:
    state.paused, state.pause_reason = False, ""
    return [operator_action(state, moment, contract.SIGNAL_RESUME, "resumed by an operator")]


def open_complaint(state: LoanState, signal: ComplaintSignal, moment: Moment) -> list[Record] | None:
    """Stops all contact and opens a complaint record for internal review."""
    if signal.complaint_id in state.open_complaints or signal.complaint_id in state.resolved_complaints:
        return None  # the same complaint sent twice
    state.open_complaints.append(signal.complaint_id)
    return [
        Record(
            COMPLAINT_OPENED,
            dict(
                key=keys.complaint_key(moment.workflow_id, signal.complaint_id), workflow_id=moment.workflow_id,
                loan_id=state.loan_id, complaint_id=signal.complaint_id, category=signal.category, at=moment.at,
            ),
            f"Open complaint {signal.complaint_id} ({signal.category}) for review",
        ),
        *tasks.open_task(state, moment, "complaint_review", signal.complaint_id),
    ]


def resolve_complaint(state: LoanState, signal: ComplaintResolvedSignal, moment: Moment) -> list[Record]:
    """A reviewer's decision, recorded; collection resumes once no complaint
    is open (an upheld complaint is remediated, the debt itself stands)."""
    if signal.complaint_id not in state.open_complaints:
        raise SignalRejected(f"complaint_id: no open complaint {signal.complaint_id!r}")
    state.open_complaints.remove(signal.complaint_id)
    state.resolved_complaints.append(signal.complaint_id)
    return [
        Record(
            COMPLAINT_RESOLVED,
            dict(
                workflow_id=moment.workflow_id, loan_id=state.loan_id, complaint_id=signal.complaint_id,
                upheld=signal.upheld, reviewer_id=signal.reviewer_id, at=moment.at,
            ),
            f"Resolve complaint {signal.complaint_id}: {'upheld' if signal.upheld else 'not upheld'}",
        )
    ]
