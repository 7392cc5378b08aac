"""The planner driven as the workflow drives it, without Temporal: the
repository's policies and compliance profiles (`POLICIES`, `PROFILES`), a loan
state due on `DUE` (`new_state`), and `walk`, which does whatever the planner
says through the workflow's own transitions (dunning/transitions/), with
every activity succeeding at once."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

from dunning import notice
from dunning.clock import LoanClock
from dunning.planner import Action, next_action
from dunning.state import LoanState
from dunning.transitions import contacts, legal_status, limitation, plans, settlements, stages, visits
from dunning.transitions.records import Moment, Rules
from loaders.config_files import load_profile

POLICIES = Path(__file__).resolve().parent.parent.parent / "config" / "policies"
PROFILES = POLICIES.parent / "profiles"
DUE = date(2026, 11, 1)


def new_state(amount="1200.00", **changes) -> LoanState:
    return LoanState(
        loan_id="L-1", borrower_id="B-1", amount_due=Decimal(amount), currency="CNY", due_date=DUE,
        policy="default", time_zone="Asia/Shanghai", **changes,
    )


def walk(policy, state, start: datetime, until_day: int | None = None, call_result: str = "sent",
         email_result: str = "delivered") -> tuple[list, Action]:
    """Do what the planner says, as the workflow does, until it waits past
    `until_day` or writes the loan off. Returns (events, final action).

    Contacts go out at once; a call's provider reports `call_result`, an
    e-mail provider `email_result` (at once: "delivered"; "sent" is an
    e-mail whose report never comes)."""
    profile = load_profile(policy.profile, PROFILES)
    clock = LoanClock(start, state.time_zone, state.due_date, policy.day_seconds)
    rules = Rules(policy, profile, stages.begin(state, policy, profile, clock, clock.loan_time(start)))
    now, events = start, []
    for _ in range(10_000):
        moment = Moment(f"dunning-{state.loan_id}", "run-1", now, clock)
        loan_now, day = moment.loan_now, moment.days_past_due
        plans.bookkeep(state, rules, moment)
        legal_status.bookkeep(state, moment)  # a legal status's task, a hardship's end (issue 18, item 1)
        limitation.bookkeep(state, moment)  # the debt turning time-barred (issue 18, item 2)
        notice.bookkeep(profile, state, clock.zone)
        action = next_action(policy, profile, state, clock, loan_now)
        o = action.occurrence
        if action.kind == "wait":
            if until_day is not None and clock.days_past_due(action.at) >= until_day:
                return events, action
            assert action.at > loan_now, "a wait must move time forward"
            now = clock.real_time(action.at)
        elif action.kind == "enter_stage":
            stages.enter_stage(state, action.stage, policy, clock, loan_now, moment).then()
            events.append(("stage", action.stage, day))
        elif action.kind == "report_to_bureau":
            stages.bureau_record(state, clock, loan_now, moment, action.bureau_kind).then()
            events.append(("bureau", day))
        elif action.kind == "defer":
            contacts.contact_deferred(state, o.key, action.at, action.rule, action.reason, o.channel, moment)
            events.append(("defer", o.channel, action.rule, action.at.strftime("%d %H:%M")))
        elif action.kind == "skip":
            contacts.contact_skipped(state, o, action.skip_result, action.reason, moment, loan_now)
            events.append(("skip", o.channel, o.template, o.day, loan_now.strftime("%H:%M")))
        elif action.kind == "contact":
            result = {"voice": call_result, "email": email_result}.get(o.channel, "sent")
            contacts.contact_recorded(state, o, result, moment, loan_now)
            events.append(("contact", o.channel, o.template, o.day, loan_now.strftime("%H:%M")))
        elif action.kind == "assign_visit":
            visits.visit_assignment(state, rules, loan_now, moment).then()
            events.append(("visit", day))
        elif action.kind == "break_plan":
            plans.break_plan(state, loan_now, moment)
            events.append(("break_plan", day))
        elif action.kind == "break_promise":
            plans.end_promise(state, policy, loan_now, moment, kept=False)
            events.append(("break_promise", day))
        elif action.kind == "miss_settlement":
            settlements.miss(state, moment)
            events.append(("miss_settlement", day))
        else:  # hold, write_off: the walk ends
            events.append((action.kind, day))
            return events, action
    raise AssertionError("the planner did not finish")
