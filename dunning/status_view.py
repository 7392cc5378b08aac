"""The `status` query's answer (docs/contract.md, "Query"), as a function of
the loan's state.

A query sees the workflow as of its last task: every figure describes the
instant `as_of` (the workflow's last wake, passed in: the core has no
clock), not the moment of asking.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from dunning import contract
from dunning import legal_status as legal_statuses
from dunning import limitation as limitations
from dunning.clock import LoanClock
from dunning.compliance import Profile
from dunning.planner import Action
from dunning.state import LoanState, Plan, Reversal, Settlement
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
        # The open settlement, else the last one (issue 18, item 4).
        "settlement": settlement_view(state, state.open_settlement or (state.settlements[-1] if state.settlements else None)),
        "bureau": {
            "records": state.bureau.records,
            "first_delinquency": state.bureau.first_delinquency.isoformat() if state.bureau.first_delinquency else None,
            "last_cycle": state.bureau.last_cycle or None,
        },
        "field_visits": [v.model_dump(mode="json") for v in state.visits],
        "legal_case": state.legal.model_dump(mode="json") if state.legal else None,
        # Legal statuses (issue 18, item 1): the one that restricts the most, those in force, every change.
        "legal_status": legal_status_view(state),
        # Time-barred debt (issue 18, item 2): whether, since (or from) when, and the limitation that applies.
        "time_barred": limitations.is_time_barred(state, loan_now.date()) if loan_now else bool(
            state.limitation and state.limitation.time_barred),
        "time_barred_on": limitations.time_barred_on(state.limitation).isoformat() if state.limitation else None,
        "limitation": limitation_view(state),
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
        # Payment reversals and a reopening (issue 18, item 3).
        "reversals": [reversal_view(state, r) for r in state.reversals],
        "reopened": {
            "payment_id": state.reopened.payment_id, "previous_outcome": state.reopened.closed_outcome,
            "closed_stage": state.reopened.closed_stage,
            "at": clock.real_time(state.reopened.at).isoformat() if clock and state.reopened.at else None,
        } if state.reopened is not None else None,
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


def legal_status_view(state: LoanState) -> dict:
    """`status.legal_status` (issue 18, item 1): `status` is the one that
    restricts the most (the `LegalStatus` search attribute), `none` without."""
    legal = state.legal_status
    return {
        "status": legal_statuses.headline(state),
        "in_force": [s.model_dump(mode="json", exclude={"task_pending"}) for s in legal.in_force] if legal else [],
        "changes": [c.model_dump(mode="json") for c in legal.changes] if legal else [],
        "estate_outcome": legal.estate_outcome if legal else None,
    }


def limitation_view(state: LoanState) -> dict | None:
    """`status.limitation` (issue 18, item 2): the rule that applies (numbers
    and keys, never the jurisdiction) and what moved it; null when none does."""
    limitation = state.limitation
    if limitation is None:
        return None
    return {
        "years": limitation.years,
        "runs_from": limitation.runs_from,
        "runs_since": limitation.runs_since.isoformat(),
        "payment_restarts": limitation.payment_restarts,
        "partial_payment_restarts": limitation.partial_payment_restarts,
        "restarts": [{"payment_id": r.payment_id, "on": r.on.isoformat()} for r in limitation.restarts],
        "disclosure": limitation.disclosure or None,
        "obsolete_on": limitation.obsolete_on.isoformat(),
    }


def settlement_view(state: LoanState, settlement: Settlement | None) -> dict | None:
    """A settlement as `propose_settlement` answers it and `status` shows it."""
    if settlement is None:
        return None
    day = lambda value: value.isoformat() if value else None  # noqa: E731
    return {
        "settlement_no": settlement.settlement_no,
        "status": settlement.status,
        "amount": money(state, settlement.amount),
        "discount": str(settlement.discount),
        "pay_by": settlement.pay_by.isoformat(),
        "outstanding": money(state, settlement.outstanding),
        "agent_limit": str(settlement.agent_limit),
        "agent_id": settlement.agent_id,
        "approver_id": settlement.approver_id or None,
        "proposed_on": settlement.proposed_on.isoformat(),
        "decided_on": day(settlement.decided_on),
        "ended_on": day(settlement.ended_on),
        # Paid towards it since it was proposed (while it is open; null once it ended unpaid).
        "paid": _settlement_paid(state, settlement),
        "waived": money(state, settlement.waived),
    }


def _settlement_paid(state: LoanState, settlement: Settlement) -> str | None:
    if settlement.status == "paid":
        return money(state, settlement.amount)
    if not settlement.open:
        return None
    return money(state, min(max(settlement.paid_under_settlement(state.amount_paid), Decimal("0")), settlement.amount))


def promise_view(state: LoanState) -> dict | None:
    """The open promise, else the last one."""
    promise = state.open_promise or (state.promises[-1] if state.promises else None)
    if promise is None:
        return None
    return {"promise_no": promise.promise_no, "amount": money(state, promise.amount), "by_date": promise.by_date.isoformat(),
            "status": promise.status, "source": promise.source}


def reversal_view(state: LoanState, reversal: Reversal) -> dict:
    """A payment reversed, as `status` shows it: what it undid of each part."""
    return {
        "payment_id": reversal.payment_id, "reason": reversal.reason, "reversed_at": reversal.reversed_at.isoformat(),
        "amount": money(state, reversal.amount), "fees": money(state, reversal.fees),
        "interest": money(state, reversal.interest), "principal": money(state, reversal.principal),
        "returned_payment_fee": money(state, reversal.returned_payment_fee), "reopened": reversal.reopened,
    }
