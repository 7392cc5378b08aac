"""The planner driven as the workflow drives it, without Temporal: the
repository's policies and compliance profiles (`POLICIES`, `PROFILES`), a loan
state due on `DUE` (`new_state`), and `walk`, which does whatever the planner
says with every activity succeeding at once."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

from dunning.clock import LoanClock
from loaders.config_files import load_profile
from dunning.planner import next_action, segment_name
from dunning.state import ContactEntry, LoanState

POLICIES = Path(__file__).resolve().parent.parent.parent / "config" / "policies"
PROFILES = POLICIES.parent / "profiles"
DUE = date(2026, 11, 1)


def new_state(amount="1200.00", **changes) -> LoanState:
    return LoanState(
        loan_id="L-1", borrower_id="B-1", amount_due=Decimal(amount), currency="CNY", due_date=DUE,
        policy="default", time_zone="Asia/Shanghai", **changes,
    )


def walk(policy, state, start: datetime, until_day: int | None = None, call_result: str = "sent"):
    """Do what the planner says, as the workflow does, with every activity
    succeeding at once. Returns (events, final action)."""
    profile = load_profile(policy.profile, PROFILES)
    clock = LoanClock(start, state.time_zone, state.due_date, policy.day_seconds)
    now, events = start, []
    for _ in range(10_000):
        loan_now = clock.loan_time(now)
        action = next_action(policy, profile, state, clock, loan_now)
        if action.kind == "wait":
            if until_day is not None and clock.days_past_due(action.at) >= until_day:
                return events, action
            assert action.at > loan_now, "a wait must move time forward"
            now = clock.real_time(action.at)
        elif action.kind == "enter_stage":
            state.stage, state.done_steps = action.stage, []
            state.segment = segment_name(policy, state, clock.days_past_due(loan_now))  # as the workflow does
            events.append(("stage", action.stage, clock.days_past_due(loan_now)))
        elif action.kind == "report_to_bureau":
            state.bureau_reported = True
            events.append(("bureau", clock.days_past_due(loan_now)))
        elif action.kind == "defer":
            state.deferred[action.occurrence.key] = action.at
            events.append(("defer", action.occurrence.channel, action.rule, action.at.strftime("%d %H:%M")))
        elif action.kind in ("contact", "skip"):
            o = action.occurrence
            state.done_steps.append(o.key)
            state.deferred.pop(o.key, None)
            result = action.skip_result or (call_result if o.channel == "voice" else "sent")
            state.contacts.append(ContactEntry(at=now, loan_at=loan_now, channel=o.channel, stage=o.stage, template=o.template, day=o.day, result=result))
            events.append((action.kind, o.channel, o.template, o.day, loan_now.strftime("%H:%M")))
        else:
            events.append((action.kind, clock.days_past_due(loan_now)))
            return events, action
    raise AssertionError("the planner did not finish")
