"""What a run does differently by the workflow code its history began under.

Temporal replays a running loan's history against today's code, which must
then decide exactly as the code that recorded it did. Loans started before
the deep-stages change (risk segments assigned at each stage, charges, plans,
promises, monthly bureau records, field visits, legal cases; database writes
as local activities) replay with the workflow's DEEP_STAGES patch unset. Every
difference between the two lives here, in one `Version`: the workflow asks
`workflow.patched(DEEP_STAGES)` once, picks CURRENT or BEFORE_DEEP_STAGES,
and the rest of the core knows one behaviour, today's.

Loans from before deep stages never have a plan, a promise, a visit or a
legal case (their updates are refused), nor charges or a segment assigned
(so each wake's bookkeeping finds nothing to do and no DunningSegment is
published): what those would change cannot happen, so it needs no entry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dunning import keys
from dunning.charges import Terms
from dunning.clock import LoanClock
from dunning.compliance import Profile
from dunning.planner import Action, first_report_due, next_action
from dunning.legal_status import reports_to_bureau
from dunning.policy import Policy, SegmentFacts
from dunning.state import LoanState
from dunning.transitions.payments import Receipt, receive_payment, take_payment
from dunning.transitions.records import BUREAU, Moment, Record, Write, money
from dunning.transitions.stages import begin, bureau_record, enter_stage, stage_entry_record, start_stage


@dataclass(frozen=True)
class Version:
    name: str
    # The planner: (policy, profile, state, clock, loan-time now) -> Action.
    next_action: Callable[[Policy, Profile, LoanState, LoanClock, datetime], Action]
    # A fresh loan's start: the charges it bears (None: none) and its first segment.
    begin: Callable[[LoanState, Policy, Profile, LoanClock, datetime], Terms | None]
    # A repayment signal: (state, payload, moment, terms) -> Receipt.
    receive_payment: Callable[[LoanState, Any, Moment, Terms | None], Receipt]
    # Entering a stage: (state, stage, policy, clock, loan_now, moment) -> the write, then the change.
    enter_stage: Callable[[LoanState, str, Policy, LoanClock, datetime, Moment], Write]
    # A credit-bureau record of a kind (state, clock, loan_now, moment, kind, outcome), or None if the version files none.
    bureau_record: Callable[..., Write | None]
    # The segment the status query shows: (policy, state, clock, loan_now) -> name.
    shown_segment: Callable[[Policy | None, LoanState, LoanClock | None, datetime | None], str | None]
    # Whether the updates (plans, promises, visits, legal outcomes) are taken.
    takes_updates: bool
    # Database writes as local activities (one marker each), else as activities.
    records_locally: bool
    # Continue as new at this many history events too, not only when the server suggests it.
    history_limit: int | None
    # Whether a continued run carries the policy and profile (else it loads them again).
    carries_policy: bool


CURRENT = Version(
    name="deep stages",
    next_action=next_action,
    begin=begin,
    receive_payment=receive_payment,
    enter_stage=enter_stage,
    bureau_record=bureau_record,
    shown_segment=lambda policy, state, clock, loan_now: state.segment,
    takes_updates=True,
    records_locally=True,
    # No run's history grows past ~300 events however long the loan lives;
    # one loop turn adds at most a few dozen.
    history_limit=250,
    carries_policy=True,
)


# --------------------------------------------------- before the deep stages


def _next_action_before_deep_stages(policy: Policy, profile: Profile, state: LoanState, clock: LoanClock, now: datetime) -> Action:
    """The planner as it was: no segment moved a stage's days or sent a field
    visit, and the bureau had one record, the first, planned after holds,
    the write-off and stage changes rather than before them.

    Today's planner is asked with segments' stage days and field visits
    taken out of the policy, and with the first record shown as filed (so it
    plans no bureau record at all); the first record is then put where it
    used to be."""
    planned = next_action(_without_deep_stages(policy), profile, state.model_copy(update={"bureau_reported": True}), clock, now)
    if planned.kind in ("hold", "write_off", "enter_stage"):
        return planned
    report_at = first_report_due(profile, state)
    if report_at is None or not reports_to_bureau(state):  # a deceased borrower's (issue 18, item 1)
        return planned
    if report_at <= now:
        return Action("report_to_bureau", f"first credit-bureau report ({profile.name} profile)", at=now, bureau_kind="first")
    if planned.kind == "wait" and report_at <= planned.at:  # the earliest wake; on a tie, the report
        return Action("wait", "waiting for the first credit-bureau report", at=report_at)
    return planned


def _without_deep_stages(policy: Policy) -> Policy:
    return policy.model_copy(
        update={
            "segments": tuple(s.model_copy(update={"stage_start_days": {}}) for s in policy.segments),
            "field_visits": policy.field_visits.model_copy(update={"enabled": False}),
        }
    )


def _enter_stage_before_deep_stages(state: LoanState, stage: str, policy: Policy, clock: LoanClock, loan_now: datetime, moment: Moment) -> Write:
    """No segment decided again, no legal case opened."""
    return Write(stage_entry_record(state, stage, clock, loan_now, moment), lambda: start_stage(state, stage))


def _first_bureau_record(state: LoanState, clock: LoanClock, loan_now: datetime, moment: Moment, kind: str, outcome: str | None = None) -> Write | None:
    """The first record only, without Metro 2 fields; nothing after it."""
    if kind != "first":
        return None
    day = clock.days_past_due(loan_now)
    record = Record(
        BUREAU,
        dict(
            key=keys.first_bureau_key(moment.workflow_id), workflow_id=moment.workflow_id, loan_id=state.loan_id,
            days_past_due=day, outstanding=money(state, state.outstanding), currency=state.currency,
        ),
        f"First credit-bureau report on day {day}",
    )

    def filed() -> None:
        state.bureau_reported = True

    return Write(record, filed)


def _segment_matched_now(policy: Policy | None, state: LoanState, clock: LoanClock | None, loan_now: datetime | None) -> str | None:
    """No segment was assigned: the one the days and balance match now."""
    if policy is None or clock is None:
        return None
    found = policy.segment_for(SegmentFacts(days_past_due=clock.days_past_due(loan_now), outstanding=state.outstanding))
    return found.name if found else None


BEFORE_DEEP_STAGES = Version(
    name="before deep stages",
    next_action=_next_action_before_deep_stages,
    begin=lambda state, policy, profile, clock, loan_now: None,  # no charges, no segment assigned
    receive_payment=take_payment,  # partial payments and bureau corrections were not counted
    enter_stage=_enter_stage_before_deep_stages,
    bureau_record=_first_bureau_record,
    shown_segment=_segment_matched_now,
    # No updates, database writes as regular activities, continue-as-new
    # only when the server suggests it, and with the state alone.
    takes_updates=False, records_locally=False, history_limit=None, carries_policy=False,
)
