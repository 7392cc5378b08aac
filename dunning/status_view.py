"""The `status` query's answer (docs/contract.md, "Query"), as a function of
the loan's state.

A query sees the workflow as of its last task: every figure describes the
instant `as_of` (the workflow's last wake, passed in: the core has no
clock), not the moment of asking.
"""

from __future__ import annotations

from datetime import datetime

from dunning import contract
from dunning.clock import LoanClock
from dunning.compliance import Profile
from dunning.planner import Action
from dunning.state import LoanState, Plan
from dunning.transitions.records import money


def status_view(
    state: LoanState,
    profile: Profile | None,
    clock: LoanClock | None,
    next_action: Action | None,
    as_of: datetime,
    segment: str | None,
) -> dict:
    """`clock`, `profile` and `next_action` are None while the loan is starting;
    `segment` is the segment to show (dunning/versions.py)."""
    loan_now = clock.loan_time(as_of) if clock else None
    next_at = None
    if next_action is not None and next_action.kind == "wait" and clock and state.stage != contract.STAGE_CLOSED:
        next_at = clock.real_time(next_action.at).isoformat()
    return {
        "loan_id": state.loan_id,
        "stage": state.stage,
        "days_past_due": clock.days_past_due(loan_now) if clock else None,
        "amount_due": money(state, state.amount_due),
        "amount_paid": money(state, state.amount_paid),
        "outstanding": money(state, state.outstanding),
        "currency": state.currency,
        "paused": state.paused,
        "plan": plan_view(state, state.active_plan or (state.plans[-1] if state.plans else None)),
        "next_action_at": next_at,
        "contacts": [
            {
                "at": c.at.isoformat(),
                "channel": c.channel,
                "stage": c.stage,
                "result": c.result,
                "template": c.template,
                "day": c.day,
                "step": c.step,
                **({"rule": c.rule} if c.rule else {}),
                # The message that carried it: its own outbox key, or one
                # merged across the borrower's loans (issue 17, item 1).
                "message_key": c.message_key,
            }
            for c in state.contacts
        ],
        # Extensions (docs/contract.md).
        "as_of": as_of.isoformat(),
        "borrower_id": state.borrower_id,
        "due_date": state.due_date.isoformat(),
        "policy": state.policy,
        "time_zone": state.time_zone,
        # Every zone the borrower may be in: a contact goes out only at an
        # hour inside the window in all of them (12 CFR 1006.6(b)(1)(i)).
        "time_zones": list(state.zones),
        "validation_notice": state.validation.model_dump(mode="json") if state.validation else None,
        # Agent tasks the loan opened and still watches for their SLA (issue 17).
        "open_tasks": [
            {"key": t.key, "kind": t.kind, "due": clock.real_time(t.due).isoformat()} for t in state.open_tasks
        ] if clock else [],
        "segment": segment or None,
        "principal": money(state, state.principal_due),
        "fees": money(state, state.fees_due),
        "interest": money(state, state.interest_due),
        "fees_charged": money(state, state.fees_charged),
        "interest_charged": money(state, state.interest_charged),
        "waived": money(state, state.waived),
        "promise": promise_view(state),
        "promises_broken": state.broken_promises,
        "bureau": {
            "records": state.bureau.records,
            "first_delinquency": state.bureau.first_delinquency.isoformat() if state.bureau.first_delinquency else None,
            "last_cycle": state.bureau.last_cycle or None,
        },
        "field_visits": [v.model_dump(mode="json") for v in state.visits],
        "legal_case": state.legal.model_dump(mode="json") if state.legal else None,
        "disputed": state.disputed,
        "pause_reason": state.pause_reason,
        "opted_out": list(state.opted_out),
        "profile": profile.name if profile else None,
        "open_complaints": list(state.open_complaints),
        "bureau_reported": state.bureau_reported,
        "postponed_contacts": [
            {"step": key, "until": clock.real_time(until).isoformat(), "rule": state.deferred_rules.get(key, "")}
            for key, until in state.deferred.items()
        ] if clock else [],
        "next_action": next_action.reason if next_action else None,
        "unapplied_payments": [p.model_dump(mode="json") for p in state.unapplied_payments],
        "rejected_signals": [r.model_dump(mode="json") for r in state.rejected_signals],
    }


def progress_note(state: LoanState, action: Action, days_past_due: int, wake: datetime) -> str:
    """The workflow's current details in the Temporal UI while it waits."""
    if action.kind == "hold":
        return f"On hold: {action.reason}. Waiting for the hold to be lifted."
    where = "Not yet overdue enough for the first stage" if state.stage == contract.STAGE_PENDING else f"Stage {state.stage}"
    return (
        f"{where}, day {days_past_due}, {money(state, state.outstanding)} {state.currency} outstanding: "
        f"{action.reason} (at {wake.isoformat(timespec='seconds')})."
    )


def plan_view(state: LoanState, plan: Plan | None) -> dict | None:
    """A plan as `propose_plan` answers it and `status` shows it."""
    if plan is None:
        return None
    return {
        "plan_no": plan.plan_no,
        "status": plan.status,
        "accepted_on": plan.accepted_on.isoformat(),
        "total": money(state, plan.total),
        "paid": money(state, min(plan.paid_under_plan(state.amount_paid), plan.total)),
        "waived_fees": money(state, plan.waived_fees),
        "waived_interest": money(state, plan.waived_interest),
        "installments": [
            {"number": i.number, "due_date": i.due_date.isoformat(), "amount": money(state, i.amount),
             "paid_on": i.paid_on.isoformat() if i.paid_on else None}
            for i in plan.installments
        ],
    }


def promise_view(state: LoanState) -> dict | None:
    """The open promise, else the last one."""
    promise = state.open_promise or (state.promises[-1] if state.promises else None)
    if promise is None:
        return None
    return {"promise_no": promise.promise_no, "amount": money(state, promise.amount), "by_date": promise.by_date.isoformat(),
            "status": promise.status, "source": promise.source}
