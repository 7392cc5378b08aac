"""Settlements (issue 18, item 4): proposed by an agent (the
`propose_settlement` update), accepted at once within the agent's limit or
pending an approver's `settlement_decision`, paid when payments reach its
amount (the rest of the balance is written off and the loan ends
`settled`), missed when its `pay_by` day passes unpaid (the loan returns to
the stage of that day), lapsed when the loan ends otherwise.

Whether the policy allows one is dunning/settlements.py's question; this is
what it then does to the loan. Every event is an arrangement record (the
audit log's `arrangement` entries, key `<workflow id>/settlement/<n>/<kind>`):
the database needs no table of its own for it.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from dunning import keys
from dunning.arrangements import parse_update
from dunning.inputs import SettlementDecisionSignal, SettlementProposal
from dunning.policy import Policy
from dunning.settlements import check_settlement, settlement_paid
from dunning.state import LoanState, Settlement
from dunning.transitions import tasks
from dunning.transitions.holds import SignalRejected
from dunning.transitions.records import Moment, Record, arrangement_event, money

APPROVAL_TASK = "settlement_approval"
# The approval task's SLA for a loan whose policy named none when it started.
DEFAULT_APPROVAL_SLA_HOURS = 24


def proposed_settlement(policy: Policy, state: LoanState, payload: Any, today: date) -> Settlement:
    """The settlement a `propose_settlement` payload asks for, or ArrangementRejected naming the key or rule."""
    return check_settlement(policy, state, parse_update(SettlementProposal, payload), today)


def _event(state: LoanState, moment: Moment, kind: str, settlement: Settlement, **fields: Any) -> Record:
    return arrangement_event(
        state, moment, kind, settlement.settlement_no, amount=money(state, settlement.amount),
        due_date=settlement.pay_by.isoformat(), agent_id=settlement.agent_id, discount=str(settlement.discount),
        **fields,
    )


def _takes_effect(state: LoanState) -> None:
    """Accepted: escalation stops and only its own messages go out
    (postponed stage contacts give way; a borrower's request still stands)."""
    state.deferred = {key: at for key, at in state.deferred.items() if keys.is_request_step(key)}


def propose(state: LoanState, settlement: Settlement, moment: Moment) -> list[Record]:
    """Taken: accepted at once within the agent's limit; above it, pending
    with a `settlement_approval` task for an approver."""
    state.settlements.append(settlement)
    if settlement.status == "accepted":
        _takes_effect(state)
        return [_event(state, moment, "settlement_accepted", settlement)]
    note = (
        f"settlement {settlement.settlement_no}: {money(state, settlement.amount)} {state.currency} of "
        f"{money(state, settlement.outstanding)}, discount {settlement.discount} over the agent limit "
        f"{settlement.agent_limit}; proposed by {settlement.agent_id}, who may not approve it"
    )
    return [
        _event(state, moment, "settlement_pending", settlement),
        *tasks.open_task(state, moment, APPROVAL_TASK, str(settlement.settlement_no), DEFAULT_APPROVAL_SLA_HOURS, note),
    ]


def _approval_task_done(state: LoanState, moment: Moment, settlement: Settlement) -> None:
    """Its approval task is no longer watched for its SLA."""
    tasks.task_escalated(state, keys.task_key(moment.workflow_id, APPROVAL_TASK, str(settlement.settlement_no)))


def decide(state: LoanState, signal: SettlementDecisionSignal, moment: Moment) -> list[Record] | None:
    """An approver's decision on a settlement pending approval: accepted
    (it takes effect as if the agent could have granted it) or refused
    (collection goes on as before). The proposing agent is no approver; a
    decision already taken, sent again, changes nothing."""
    settlement = next((s for s in state.settlements if s.settlement_no == signal.settlement_no), None)
    if settlement is None:
        raise SignalRejected(f"settlement_no: the loan has no settlement {signal.settlement_no}")
    if settlement.approver_id and settlement.approver_id == signal.approver_id and (
        (settlement.status != "refused") == signal.approved
    ):
        return None  # the same decision again (a task completed twice)
    if settlement.status != "pending_approval":
        raise SignalRejected(
            f"settlement_no: settlement {settlement.settlement_no} is {settlement.status.replace('_', ' ')}, not pending approval"
        )
    if signal.approver_id == settlement.agent_id:
        raise SignalRejected(
            f"approver_id: {signal.approver_id} proposed settlement {settlement.settlement_no}; "
            "an approver must be someone other than the proposing agent"
        )
    settlement.approver_id, settlement.decided_on = signal.approver_id, moment.today
    _approval_task_done(state, moment, settlement)
    if signal.approved:
        settlement.status = "accepted"
        _takes_effect(state)
        return [_event(state, moment, "settlement_approved", settlement, approver_id=signal.approver_id)]
    settlement.status, settlement.ended_on = "refused", moment.today
    return [_event(state, moment, "settlement_refused", settlement, approver_id=signal.approver_id)]


def bookkeep(state: LoanState, moment: Moment) -> list[Record]:
    """Payments since an accepted settlement was proposed reach its amount:
    it is paid, and what is left of the balance is written off (waived), so
    the loan ends `settled` (or `repaid` when nothing was left)."""
    settlement = state.accepted_settlement
    if settlement is None or not settlement_paid(settlement, state.amount_paid):
        return []
    waived = state.outstanding
    state.fees_waived += state.fees_due
    state.interest_waived += state.interest_due
    state.principal_waived += state.principal_due
    state.fees_due = state.interest_due = state.principal_due = Decimal("0")
    state.charge_days.clear()  # a later payment never undoes the write-off's charges
    settlement.status, settlement.ended_on, settlement.waived = "paid", moment.today, waived
    return [_event(state, moment, "settlement_paid", settlement, waived=money(state, waived))]


def miss(state: LoanState, moment: Moment) -> list[Record]:
    """Its pay_by day passed unpaid: it ends missed, and the loan returns to
    the stage its days call for (the planner's next answer)."""
    settlement = state.open_settlement
    settlement.status, settlement.ended_on = "missed", moment.today
    _approval_task_done(state, moment, settlement)
    return [_event(state, moment, "settlement_missed", settlement)]


def lapse(state: LoanState, moment: Moment) -> list[Record]:
    """The loan ended otherwise (written off, a dispute upheld) with the
    settlement still open."""
    settlement = state.open_settlement
    settlement.status, settlement.ended_on = "lapsed", moment.today
    _approval_task_done(state, moment, settlement)
    return [_event(state, moment, "settlement_lapsed", settlement)]
