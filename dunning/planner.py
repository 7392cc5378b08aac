"""The planner: given the policy, the loan's state and the loan-time now,
what is the next thing to do, and when?

It is a pure function, so the workflow replays it deterministically and tests
can run it over many cases. The workflow does what it answers, records the
result in the state, and asks again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Literal

from dunning.clock import LoanClock
from dunning.compliance import PastContact, Profile, check_contact
from dunning.contract import STAGES
from dunning.policy import Policy
from dunning.state import LoanState

ActionKind = Literal["hold", "enter_stage", "report_to_bureau", "write_off", "contact", "skip", "defer", "wait"]
VALIDATION_NOTICE = "validation_notice"
PAY_LINK = "pay_link"


@dataclass(frozen=True)
class Occurrence:
    """One sending of one contact step: a stage's step on a given day."""

    key: str
    stage: str
    day: int
    channel: str
    template: str
    at: datetime  # loan time


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    reason: str
    at: datetime | None = None  # loan time it is due (for `wait`: when to wake)
    stage: str | None = None
    occurrence: Occurrence | None = None
    # For `skip`: how the skipped contact is shown (skipped_opt_out, ...).
    skip_result: str | None = None
    # For `defer`: the compliance rule that postponed the contact to `at`.
    rule: str | None = None


def occurrences(policy: Policy, clock: LoanClock, stage: str, from_day: int) -> list[Occurrence]:
    """The stage's contacts on `from_day` or later, in the order they are due."""
    start, end = policy.stage(stage).start_day, policy.stage_end_day(stage)
    found = []
    for index, step in enumerate(policy.stage(stage).steps):
        day = start + step.day
        while day < end:
            if day >= from_day:
                found.append(
                    Occurrence(
                        key=f"{stage}/d{day}/{index}-{step.channel}",
                        stage=stage,
                        day=day,
                        channel=step.channel,
                        template=step.template,
                        at=clock.at(day, step.at or policy.contact_time),
                    )
                )
            if not step.every_days:
                break
            day += step.every_days
    # Same instant: keep the policy's order (stable sort).
    return sorted(found, key=lambda o: o.at)


def _hold_reason(state: LoanState) -> str:
    if state.disputed:
        return "dispute under review"
    if state.open_complaints:
        return f"complaint {', '.join(state.open_complaints)} under internal review"
    return f"paused by an operator ({state.pause_reason or 'no reason given'})"


def _validation_notice(profile: Profile, state: LoanState, clock: LoanClock, now: datetime) -> Occurrence | None:
    """Where the profile asks for a validation notice (US Reg F 1006.34), it is
    the loan's first contact: by e-mail, or by SMS when the e-mail could not go."""
    if profile.notices.validation_notice_within_days is None or state.stage not in STAGES:
        return None
    tried = {c.channel: c for c in state.contacts if c.template == VALIDATION_NOTICE}
    if any(c.went_out for c in tried.values()):
        return None
    for channel in ("email", "sms"):
        if channel not in tried and not state.channel_opted_out(channel):
            return Occurrence(
                key=f"notice/validation/{channel}", stage=state.stage, day=clock.days_past_due(now),
                channel=channel, template=VALIDATION_NOTICE, at=now,
            )
    return None


def _requested_pay_link(state: LoanState, clock: LoanClock, now: datetime) -> Occurrence | None:
    """A repayment link the borrower asked for and has not been sent yet."""
    if state.stage not in STAGES:
        return None
    handled = sum(1 for c in state.contacts if c.template == PAY_LINK)
    if handled >= state.pay_link_requests:
        return None
    return Occurrence(
        key=f"request/pay_link/{handled + 1}", stage=state.stage, day=clock.days_past_due(now),
        channel="sms", template=PAY_LINK, at=now,
    )


def _bureau_report_due(profile: Profile, state: LoanState) -> datetime | None:
    """When the first bureau report may be filed (loan time), or None if not yet known.

    Reg F 1006.30(a) (us): only after a contact and a wait; cn: at once."""
    if state.bureau_reported or state.stage_rank() < STAGES.index("credit_reporting"):
        return None
    wait = profile.notices.bureau_report_wait_days
    if wait is None:
        return datetime.min.replace(tzinfo=timezone.utc)
    sent = [c.loan_at for c in state.contacts if c.went_out]
    return min(sent) + timedelta(days=wait) if sent else None


def next_action(policy: Policy, profile: Profile, state: LoanState, clock: LoanClock, now: datetime) -> Action:
    """`now` is loan time (see LoanClock)."""
    today = clock.days_past_due(now)
    if state.on_hold:
        # Wake at the next local midnight anyway, only to keep days past due
        # current for operators (the status query and DaysPastDue).
        return Action("hold", f"no contact or escalation: {_hold_reason(state)}", at=clock.at(today + 1))
    if today >= policy.write_off_day:
        return Action("write_off", f"day {today} reached write_off_day {policy.write_off_day}", at=now)

    due_stage = policy.stage_for_day(today)
    if due_stage is not None and STAGES.index(due_stage) > state.stage_rank():
        start_day = policy.stage(due_stage).start_day
        return Action("enter_stage", f"day {today}: {due_stage} starts on day {start_day}", at=now, stage=due_stage)

    report_at = _bureau_report_due(profile, state)
    if report_at is not None and report_at <= now:
        return Action("report_to_bureau", f"first credit-bureau report ({profile.name} profile)", at=now)

    # Contacts of the current stage from today on (missed days are not
    # replayed), and those postponed by a compliance rule from earlier days.
    upcoming: list[tuple[datetime, Occurrence]] = []
    notice = _validation_notice(profile, state, clock, now) or _requested_pay_link(state, clock, now)
    if notice is not None:
        upcoming.append((state.deferred.get(notice.key, now), notice))
    elif state.stage in STAGES:
        done = set(state.done_steps)
        for o in occurrences(policy, clock, state.stage, policy.stage(state.stage).start_day):
            if o.key not in done and (o.day >= today or o.key in state.deferred):
                upcoming.append((max(o.at, state.deferred.get(o.key, o.at)), o))
        upcoming.sort(key=lambda pair: pair[0])

    if upcoming and upcoming[0][0] <= now:
        occurrence = upcoming[0][1]
        segment = policy.segment_for(today, state.outstanding)
        if state.channel_opted_out(occurrence.channel):
            return Action(
                "skip", f"borrower opted out of {occurrence.channel}", at=now, occurrence=occurrence,
                skip_result="skipped_opt_out",
            )
        if segment is not None and occurrence.channel in segment.skip_channels:
            return Action(
                "skip", f"segment {segment.name} skips {occurrence.channel}", at=now, occurrence=occurrence,
                skip_result="skipped_segment",
            )
        history = [PastContact(c.loan_at, c.channel, c.result) for c in state.contacts]
        permit = check_contact(profile, occurrence.channel, now, history)
        if not permit.allowed:
            return Action("defer", permit.reason, at=permit.not_before, occurrence=occurrence, rule=permit.rule)
        return Action("contact", f"{state.stage} step due on day {occurrence.day}", at=now, occurrence=occurrence)

    # Nothing due now: wake at the earliest of the next contact, the first
    # bureau report, the next stage's first day, or the write-off day.
    candidates: list[tuple[datetime, str]] = []
    if upcoming:
        at, o = upcoming[0]
        postponed = " (postponed by a compliance rule)" if o.key in state.deferred else ""
        candidates.append((at, f"{o.channel} {o.template} on day {o.day}{postponed}"))
    if report_at is not None:
        candidates.append((report_at, "the first credit-bureau report"))
    later = [s for s in STAGES if STAGES.index(s) > state.stage_rank()]
    if later:
        start_day = policy.stage(later[0]).start_day
        candidates.append((clock.at(start_day), f"{later[0]} stage on day {start_day}"))
    candidates.append((clock.at(policy.write_off_day), f"write-off on day {policy.write_off_day}"))
    at, what = min(candidates, key=lambda c: c[0])
    return Action("wait", f"waiting for {what}", at=at)
