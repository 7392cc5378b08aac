"""Payment reversals (issue 18, item 3): what `POST /payments/reversals` and
`starter.py reverse` share.

A reversal names a loan and one of its payments. The database answers
first, so that a reversal that would change nothing says so and signals
nothing:

- no such loan, or no payment with that id applied to it: `unknown_loan`,
  `unknown_payment`;
- the payment reversed already: `duplicate` (the same reversal posted twice
  is counted once);
- a loan still open: the `payment_reversed` signal to its workflow
  (`signaled`; the workflow undoes the payment's allocation, and rejects a
  reversal it has seen, naming why, in `rejected_signals`);
- a loan closed `repaid`: a new run of `dunning-<loan_id>` started from the
  loan's records (`reopened`): signal-with-start, the reversal as its start
  signal, with the id reuse policy ALLOW_DUPLICATE (the closed run's id is
  used again) and the conflict policy USE_EXISTING (a run that is open by
  then, a concurrent reversal's, gets the signal instead of a second run);
- a loan closed any other way (written off, settled, dispute upheld): not
  reopened (`not_reopenable`); its payment stays as it is, for a person;
- a loan whose records say closed while its workflow still runs (it is
  closing, or a reopening has not written its first record yet): `busy`,
  try again in a few seconds.

A payment recorded before allocations were kept cannot be undone exactly and
is refused (`not_reversible`), except on a loan that was never charged fees
or interest, where every payment went to principal.

Placing never starts a loan id again (services/placing.py); this is the one
deliberate exception, and only for a loan its own records show as repaid.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client

from db import outbox
from db.models import AuditEntry, BureauRecord, Contact, LegalCase, Loan, Payment, PaymentReversal, StageEntry
from dunning import contract
from dunning import keys
from dunning.carry import REOPENED
from dunning.contract import STAGE_PENDING
from dunning.inputs import InputError, PaymentReversedSignal, ReopenedLoan, parse_signal
from dunning.money import format_amount

SIGNALED = "signaled"
REOPENED_LOAN = "reopened"
DUPLICATE = "duplicate"
UNKNOWN_LOAN = "unknown_loan"
UNKNOWN_PAYMENT = "unknown_payment"
NOT_REVERSIBLE = "not_reversible"
NOT_REOPENABLE = "not_reopenable"
BUSY = "busy"
NO_WORKFLOW = "no_workflow"


class BadReversal(ValueError):
    """A reversal's fields are malformed: the message names the field."""


@dataclass(frozen=True)
class ReversalAnswer:
    loan_id: str
    payment_id: str
    workflow_id: str
    result: str  # one of the constants above
    detail: str = ""
    run_id: str | None = None

    @property
    def changed(self) -> bool:
        """The reversal went to the loan (signalled, or the loan reopened)."""
        return self.result in (SIGNALED, REOPENED_LOAN)

    def as_dict(self) -> dict:
        return {
            "loan_id": self.loan_id, "payment_id": self.payment_id, "workflow_id": self.workflow_id,
            "result": self.result, "signaled": self.changed, "duplicate": self.result == DUPLICATE,
            "reopened": self.result == REOPENED_LOAN, "run_id": self.run_id, "detail": self.detail,
        }


@dataclass(frozen=True)
class Reversal:
    """A reversal as the payment service (or an operator) reports it."""

    loan_id: str
    payment_id: str
    reason: str
    reversed_at: str | None = None  # ISO 8601 instant with an offset, as given

    def signal_payload(self) -> dict:
        """The `payment_reversed` payload, checked as the workflow checks it (BadReversal naming the field)."""
        payload: dict[str, Any] = {"payment_id": self.payment_id, "reason": self.reason}
        if self.reversed_at is not None:
            payload["reversed_at"] = self.reversed_at
        try:
            parse_signal(PaymentReversedSignal, payload)
        except InputError as error:
            raise BadReversal(str(error)) from None
        return payload


@dataclass
class _Facts:
    """What the database says of the loan and the payment."""

    loan: Loan | None = None
    payment: Payment | None = None
    reopened: dict | None = None  # the start input's `reopened` block, for a loan closed repaid
    problem: str = ""  # why it cannot be reopened (allocation unknown)
    extra: dict = field(default_factory=dict)  # contract_terms, risk_score for the start input


async def reverse_payment(
    client: Client | Callable[[], Awaitable[Client]], sessions: sessionmaker[Session], task_queue: str,
    reversal: Reversal,
) -> ReversalAnswer:
    """Send one reversal where it belongs (see the module doc). `client`: a
    Temporal client, or a coroutine function that makes one (asked only when
    the reversal goes to Temporal)."""
    payload = reversal.signal_payload()
    workflow_id = contract.workflow_id_for(reversal.loan_id)

    def answer(result: str, detail: str = "", run_id: str | None = None) -> ReversalAnswer:
        return ReversalAnswer(reversal.loan_id, reversal.payment_id, workflow_id, result, detail, run_id)

    with sessions() as db:
        facts = _read(db, reversal)
    if facts.loan is None:
        return answer(UNKNOWN_LOAN, f"no loan {reversal.loan_id}")
    if facts.payment is None:
        return answer(UNKNOWN_PAYMENT, f"no payment {reversal.payment_id} was applied to loan {reversal.loan_id}: nothing changed")
    if facts.payment.reversed_at is not None:
        return answer(DUPLICATE, f"payment {reversal.payment_id} was reversed already "
                                 f"({facts.payment.reversed_at.isoformat()}): nothing changed")
    loan = facts.loan
    if loan.outcome is not None and loan.outcome != contract.OUTCOME_REPAID:
        return answer(NOT_REOPENABLE, f"loan {reversal.loan_id} closed {loan.outcome}: only a loan closed "
                                      f"{contract.OUTCOME_REPAID} reopens; nothing changed")
    if loan.outcome is not None and facts.problem:
        return answer(NOT_REVERSIBLE, facts.problem)

    temporal = client if isinstance(client, Client) else await client()
    handle = temporal.get_workflow_handle(workflow_id)
    if loan.outcome is None:
        from temporalio.service import RPCError, RPCStatusCode

        try:
            await handle.signal(contract.SIGNAL_PAYMENT_REVERSED, payload)
        except RPCError as error:
            if error.status == RPCStatusCode.NOT_FOUND:
                return answer(NO_WORKFLOW, f"no open workflow {workflow_id}")
            raise
        return answer(SIGNALED, "the workflow undoes the payment's allocation; a reversal it cannot apply is in "
                                "its status's rejected_signals")
    return await _reopen(temporal, task_queue, loan, facts, payload, answer)


async def _reopen(temporal: Client, task_queue: str, loan: Loan, facts: _Facts, payload: dict, answer) -> ReversalAnswer:
    from temporalio.client import WorkflowExecutionStatus
    from temporalio.common import (
        SearchAttributePair,
        TypedSearchAttributes,
        WorkflowIDConflictPolicy,
        WorkflowIDReusePolicy,
    )
    from temporalio.service import RPCError, RPCStatusCode

    from workflows.search_attributes import DUNNING_POLICY, LOAN_ID

    workflow_id = contract.workflow_id_for(loan.loan_id)
    try:
        described = await temporal.get_workflow_handle(workflow_id).describe()
    except RPCError as error:
        if error.status != RPCStatusCode.NOT_FOUND:
            raise
        described = None  # past the namespace's retention: started anew all the same
    if described is not None and described.status == WorkflowExecutionStatus.RUNNING:
        return answer(BUSY, f"loan {loan.loan_id} is closing or reopening: try again in a few seconds")
    start_input = {
        "loan_id": loan.loan_id, "borrower_id": loan.borrower_id,
        "amount_due": format_amount(loan.amount_due, loan.currency), "currency": loan.currency,
        "due_date": loan.due_date.isoformat(), "policy": loan.policy, **facts.extra, REOPENED: facts.reopened,
    }
    handle = await temporal.start_workflow(
        contract.WORKFLOW_TYPE,
        start_input,
        id=workflow_id,
        task_queue=task_queue,
        # The closed run's id again; a run open by now gets the signal instead.
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        start_signal=contract.SIGNAL_PAYMENT_REVERSED,
        start_signal_args=[payload],
        static_summary=f"Loan {loan.loan_id} reopened: payment {payload['payment_id']} reversed",
        search_attributes=TypedSearchAttributes([
            SearchAttributePair(LOAN_ID, loan.loan_id), SearchAttributePair(DUNNING_POLICY, loan.policy),
        ]),
    )
    run_id = handle.first_execution_run_id or handle.result_run_id
    # A server that does not say whether it started the run: a run other than the closed one is the new one.
    started = handle.first_execution_run_id is not None or described is None or run_id != described.run_id
    if not started:
        return answer(SIGNALED, "a run of the loan was open by then: it got the reversal", run_id)
    return answer(REOPENED_LOAN, f"loan {loan.loan_id} closed {loan.outcome} reopened from its records", run_id)


# --------------------------------------------------------------- the records


def _read(db: Session, reversal: Reversal) -> _Facts:
    facts = _Facts(loan=db.get(Loan, reversal.loan_id))
    if facts.loan is None:
        return facts
    facts.payment = db.scalar(select(Payment).where(
        Payment.loan_id == reversal.loan_id, Payment.payment_id == reversal.payment_id, Payment.applied.is_(True),
    ).order_by(Payment.id))
    if facts.payment is None or facts.loan.outcome != contract.OUTCOME_REPAID:
        return facts
    try:
        facts.reopened, facts.extra = reopened_block(db, facts.loan, reversal)
    except _Unallocated as error:
        facts.problem = str(error)
    return facts


class _Unallocated(ValueError):
    pass


def reopened_block(db: Session, loan: Loan, reversal: Reversal) -> tuple[dict, dict]:
    """The start input's `reopened` block (dunning/inputs.py ReopenedLoan)
    from the loan's rows, and the start input's contract_terms and
    risk_score from what its closing kept (`loans.reopen_basis`)."""
    basis = json.loads(loan.reopen_basis) if loan.reopen_basis else {}
    money = lambda value: format_amount(Decimal(value), loan.currency)  # noqa: E731
    rows = db.scalars(select(Payment).where(Payment.loan_id == loan.loan_id, Payment.applied.is_(True))
                      .order_by(Payment.id)).all()
    reversed_rows = db.scalars(select(PaymentReversal).where(PaymentReversal.loan_id == loan.loan_id)
                               .order_by(PaymentReversal.id)).all()
    # A loan never charged fees or interest put every payment to principal:
    # the allocation of a payment recorded before allocations were kept is known then.
    uncharged = not (loan.fees_charged or 0) and not (loan.interest_charged or 0) and not reversed_rows
    principal_left = Decimal(loan.amount_due)
    payments, unallocated = [], []
    for row in rows:
        if row.reversed_at is not None:
            continue
        amount = Decimal(row.amount)
        if row.principal_paid is not None:
            parts = (row.fees_paid or Decimal(0), row.interest_paid or Decimal(0), row.principal_paid, row.overpaid or Decimal(0))
        elif uncharged:
            principal = min(amount, max(principal_left, Decimal(0)))
            parts = (Decimal(0), Decimal(0), principal, amount - principal)
        else:
            unallocated.append(row.payment_id)
            continue
        principal_left -= parts[2]
        payments.append({
            "payment_id": row.payment_id, "amount": money(amount), "fees": money(parts[0]),
            "interest": money(parts[1]), "principal": money(parts[2]), "overpaid": money(parts[3]),
        })
    if reversal.payment_id in unallocated:
        raise _Unallocated(
            f"payment {reversal.payment_id} was recorded before allocations were kept and the loan bore charges: "
            "it cannot be undone exactly; nothing changed (an operator corrects it by hand)"
        )
    bureau_rows = db.scalars(select(BureauRecord).where(BureauRecord.loan_id == loan.loan_id)
                             .order_by(BureauRecord.id)).all()
    case = db.scalar(select(LegalCase).where(LegalCase.loan_id == loan.loan_id).order_by(LegalCase.id.desc()))
    stage = db.scalar(select(StageEntry.stage).where(StageEntry.loan_id == loan.loan_id)
                      .order_by(StageEntry.id.desc()).limit(1))
    block = {
        "payment_id": reversal.payment_id, "reason": reversal.reason, "closed_outcome": loan.outcome,
        "stage": stage or STAGE_PENDING, "clock_anchor": basis.get("clock_anchor") or loan.placed_at.isoformat(),
        "amount_paid": money(sum((Decimal(p["amount"]) for p in payments), Decimal(0))
                             + sum((Decimal(r.amount) for r in rows if r.payment_id in unallocated), Decimal(0))),
        "fees_charged": money(loan.fees_charged or 0), "interest_charged": money(loan.interest_charged or 0),
        "charges_through_day": basis.get("charges_through_day"), "late_fee_charged": basis.get("late_fee_charged"),
        "cost_cap_allowance": basis.get("cost_cap_allowance"),
        "payments": payments, "unallocated_payment_ids": unallocated,
        "reversals": [{
            "payment_id": r.payment_id, "amount": money(r.amount), "fees": money(r.fees), "interest": money(r.interest),
            "principal": money(r.principal), "returned_payment_fee": money(r.returned_payment_fee),
            "reason": r.reason, "reversed_at": r.reversed_at.isoformat(),
        } for r in reversed_rows],
        "bureau": _bureau(bureau_rows),
        "opted_out": _opted_out(db, loan.loan_id),
        "legal_status": basis.get("legal_status"),
        "notices": _notices(db, loan.loan_id),
        "legal": {"status": case.status, "opened_on": case.opened_at.date().isoformat(), "case_ref": case.case_ref or ""}
        if case is not None else None,
    }
    try:
        ReopenedLoan.parse(block)  # what the workflow will read: a bad row fails here, not in a new run
    except InputError as error:
        raise _Unallocated(f"the loan's records cannot reopen it ({error}); nothing changed") from None
    extra = {}
    terms = {k: v for k, v in (basis.get("contract_terms") or {}).items() if v is not None}
    if terms:
        extra["contract_terms"] = terms
    if basis.get("risk_score") is not None:
        extra["risk_score"] = basis["risk_score"]
    return block, extra


def _bureau(rows: list[BureauRecord]) -> dict:
    """What was reported, from the bureau_records rows."""
    numbers = [int(r.key.rsplit("/", 1)[-1].split("-", 1)[0]) for r in rows if r.key.rsplit("/", 1)[-1][:1].isdigit()]
    regular = [r.cycle for r in rows if r.kind in ("first", "regular") and r.cycle]
    reported = [r.reported_on for r in rows if r.reported_on]
    return {
        "records": max([len(rows), *numbers]) if rows else 0,
        "first_reported_on": min(reported).isoformat() if reported else None,
        "last_cycle": max(regular) if regular else "",
        "reported_93": any(r.account_status == "93" for r in rows),
        "reported_97": any(r.account_status == "97" for r in rows),
        "reported_disputed": any(r.compliance_code == "XB" for r in rows),
    }


def _opted_out(db: Session, loan_id: str) -> list[str]:
    """The channels the borrower opted out of for this loan (the audit log's `opt_out` entries)."""
    channels: list[str] = []
    for text in db.scalars(select(AuditEntry.payload).where(AuditEntry.loan_id == loan_id, AuditEntry.kind == "operator")):
        try:
            entry = json.loads(text)
        except ValueError:
            continue
        channel = entry.get("channel") if isinstance(entry, dict) and entry.get("rule") == contract.SIGNAL_OPT_OUT else None
        if channel in ("sms", "email", "voice", "push", "letter", "all") and channel not in channels:
            channels.append(channel)
    return channels


# How an outbox row ended, as the loan's contacts show it (ContactEntry.result).
_NOTICE_RESULTS = {outbox.SENT: "sent", outbox.UNCONFIRMED: "sent", outbox.FAILED: "failed",
                   outbox.SKIPPED: "skipped_no_address"}


def _notices(db: Session, loan_id: str) -> list[dict]:
    """The notices the loan was sent (its contacts rows whose step is a
    notice, in a final status): the validation notice, the bureau notice, a
    cease request's final notice. The reopened run counts them as sent: a
    new run's outbox keys differ, and a notice is owed once per debt."""
    rows = db.scalars(select(Contact).where(Contact.loan_id == loan_id).order_by(Contact.id)).all()
    found: dict[str, dict] = {}
    for row in rows:
        step = keys.step_of_contact_key(row.key)
        result = _NOTICE_RESULTS.get(row.status)
        if step is None or not step.startswith(keys.NOTICE_PREFIX) or result is None:
            continue
        if found.get(step, {}).get("result") == "sent":
            continue  # sent once is what counts
        found[step] = {"step": step, "channel": row.channel, "template": row.template, "stage": row.stage,
                       "at": (row.sent_at or row.created_at).isoformat(), "result": result}
    return list(found.values())
