"""The planner: given the policy, the loan's state and the loan-time now,
what is the next thing to do, and when?

It is a pure function, so the workflow replays it deterministically and tests
can run it over many cases. The workflow does what it answers, records the
result in the state, and asks again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from dunning.clock import LoanClock
from dunning.contract import STAGES
from dunning.policy import Policy
from dunning.state import LoanState

ActionKind = Literal["hold", "enter_stage", "write_off", "contact", "skip", "wait"]


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


def next_action(policy: Policy, state: LoanState, clock: LoanClock, now: datetime) -> Action:
    """`now` is loan time (see LoanClock)."""
    today = clock.days_past_due(now)
    if state.on_hold:
        why = "dispute under review" if state.disputed else f"paused by an operator ({state.pause_reason or 'no reason given'})"
        # Wake at the next local midnight anyway, only to keep days past due
        # current for operators (the status query and DaysPastDue).
        return Action("hold", f"no contact or escalation: {why}", at=clock.at(today + 1))
    if today >= policy.write_off_day:
        return Action("write_off", f"day {today} reached write_off_day {policy.write_off_day}", at=now)

    due_stage = policy.stage_for_day(today)
    if due_stage is not None and STAGES.index(due_stage) > state.stage_rank():
        start_day = policy.stage(due_stage).start_day
        return Action("enter_stage", f"day {today}: {due_stage} starts on day {start_day}", at=now, stage=due_stage)

    # Contacts of the current stage from today on; missed days are not replayed.
    upcoming = []
    if state.stage in STAGES:
        done = set(state.done_steps)
        upcoming = [o for o in occurrences(policy, clock, state.stage, today) if o.key not in done]
    if upcoming and upcoming[0].at <= now:
        occurrence = upcoming[0]
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
        return Action("contact", f"{state.stage} step due on day {occurrence.day}", at=now, occurrence=occurrence)

    # Nothing due now: wake at the earliest of the next contact, the next
    # stage's first day, or the write-off day.
    candidates: list[tuple[datetime, str]] = []
    if upcoming:
        o = upcoming[0]
        candidates.append((o.at, f"{o.channel} {o.template} on day {o.day}"))
    later = [s for s in STAGES if STAGES.index(s) > state.stage_rank()]
    if later:
        start_day = policy.stage(later[0]).start_day
        candidates.append((clock.at(start_day), f"{later[0]} stage on day {start_day}"))
    candidates.append((clock.at(policy.write_off_day), f"write-off on day {policy.write_off_day}"))
    at, what = min(candidates, key=lambda c: c[0])
    return Action("wait", f"waiting for {what}", at=at)
