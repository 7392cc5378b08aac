"""Installment plans and promises to pay: accepted (the `propose_plan` and
`promise_to_pay` updates, a field visit's promise), kept as payments cover
them, broken when a deadline passes unpaid.

Whether the policy allows one is dunning/arrangements.py's question; this is
what it then does to the loan.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from dunning import keys
from dunning.arrangements import check_plan, check_promise, parse_update, plan_progress, promise_kept
from dunning.charges import post_charges, reinstate, waive
from dunning.inputs import PlanProposal, PromiseToPay
from dunning.planner import segment_name
from dunning.policy import Policy
from dunning.state import LoanState, Plan, Promise
from dunning.transitions import settlements
from dunning.transitions.records import Moment, Record, Rules, arrangement_event


def proposed_plan(policy: Policy, state: LoanState, payload: Any, today: date) -> Plan:
    """The plan a `propose_plan` payload asks for, or ArrangementRejected naming the key or rule."""
    return check_plan(policy, state, parse_update(PlanProposal, payload), today)


def proposed_promise(policy: Policy, state: LoanState, payload: Any, today: date, source: str = "borrower") -> Promise:
    """The promise a `promise_to_pay` payload makes, or ArrangementRejected naming the key or rule."""
    return check_promise(policy, state, parse_update(PromiseToPay, payload), today, source)


def accept_plan(state: LoanState, plan: Plan, moment: Moment) -> list[Record]:
    """A running plan: its waivers apply now, escalation stops, only its own
    messages go out (postponed stage contacts give way; a borrower's request
    still stands)."""
    state.plans.append(plan)
    waive(state, fees=plan.waived_fees > 0, interest=plan.waived_interest > 0)
    state.deferred = {key: at for key, at in state.deferred.items() if keys.is_request_step(key)}
    schedule = [{"number": i.number, "due_date": i.due_date.isoformat(), "amount": str(i.amount)} for i in plan.installments]
    return [
        arrangement_event(
            state, moment, "plan_accepted", plan.plan_no, amount=str(plan.total), schedule=schedule,
            waived_fees=str(plan.waived_fees), waived_interest=str(plan.waived_interest),
        )
    ]


def make_promise(state: LoanState, promise: Promise, moment: Moment) -> list[Record]:
    """An open promise: no contact until its date (plus the grace days)."""
    state.promises.append(promise)
    return [
        arrangement_event(
            state, moment, "promise_made", promise.promise_no, amount=str(promise.amount),
            due_date=promise.by_date.isoformat(), source=promise.source,
        )
    ]


def bookkeep(state: LoanState, rules: Rules, moment: Moment) -> list[Record]:
    """Charges up to today, and what payments did to a plan, a promise or a
    settlement (the loop asks on every wake, before it plans)."""
    today = moment.today
    if rules.terms is not None:
        post_charges(rules.terms, state, moment.days_past_due)
    records = []
    plan = state.active_plan
    if plan is not None:
        progress = plan_progress(rules.policy, plan, state.amount_paid, today)
        for installment in progress.newly_paid:
            installment.paid_on = today
            records.append(
                arrangement_event(
                    state, moment, "installment_paid", plan.plan_no, amount=str(installment.amount),
                    due_date=installment.due_date.isoformat(), installment=installment.number,
                )
            )
        if progress.complete:
            plan.status, plan.ended_on = "kept", today
            records.append(arrangement_event(state, moment, "plan_kept", plan.plan_no, amount=str(plan.total)))
    promise = state.open_promise
    if promise is not None and promise_kept(promise, state.amount_paid):
        records += end_promise(state, rules.policy, moment.loan_now, moment, kept=True)
    # An accepted settlement paid: the rest is written off (issue 18, item 4).
    records += settlements.bookkeep(state, moment)
    return records


def break_plan(state: LoanState, loan_now: datetime, moment: Moment) -> list[Record]:
    """An installment unpaid past its grace days (or the loan ended with the plan running)."""
    plan = state.active_plan
    plan.status, plan.ended_on = "broken", loan_now.date()
    # The waivers were the price of keeping the plan: they lapse.
    reinstate(state, plan.waived_fees, plan.waived_interest)
    # Charges start again from today; the plan's days stay uncharged.
    state.charges_through_day = max(state.charges_through_day, moment.clock.days_past_due(loan_now) - 1)
    return [arrangement_event(state, moment, "plan_broken", plan.plan_no, amount=str(plan.total))]


def end_promise(state: LoanState, policy: Policy, loan_now: datetime, moment: Moment, kept: bool) -> list[Record]:
    """The open promise paid, or not paid by its date (or open when the loan ended)."""
    promise = state.open_promise
    promise.status, promise.ended_on = ("kept" if kept else "broken"), loan_now.date()
    record = arrangement_event(
        state, moment, "promise_kept" if kept else "promise_broken", promise.promise_no, amount=str(promise.amount),
        due_date=promise.by_date.isoformat(), source=promise.source,
    )
    if not kept:
        # A broken promise counts in the segment.
        state.segment = segment_name(policy, state, moment.clock.days_past_due(loan_now))
    return [record]
