"""A payment reversed (issue 18, item 3): returned unpaid, charged back.

The `payment_reversed` signal undoes exactly what the payment paid of fees,
interest and principal (kept with each payment since: `payment_allocations`),
charges the contract's returned-payment fee within the caps, and records it.
The loan then goes on from the stage of that day: a running loan's planner
escalates it if the day calls for a later stage, a plan whose installments
the payment covered falls behind, and missed days are never replayed.

A loan whose workflow closed `repaid` is reopened by services/reversals.py:
a new run started from the loan's records (`reopen` below builds its state
from the start input's `reopened` block), with the reversal as its start
signal.

An unknown payment, a payment reversed already, or one applied before
allocations were kept changes nothing: the signal is rejected, naming why.
"""

from __future__ import annotations

from decimal import Decimal

from dunning import bureau, contract, keys
from dunning.charges import Terms, charge_returned_payment_fee, post_charges, unapply_payment
from dunning.inputs import PaymentReversedSignal, ReopenedLoan
from dunning.state import (
    BureauState,
    ContactEntry,
    LegalCase,
    LegalStatuses,
    LegalStatusInForce,
    LoanState,
    PaymentAllocation,
    Reopening,
    Reversal,
)
from dunning.transitions import limitation
from dunning.transitions.holds import SignalRejected
from dunning.transitions.records import PAYMENT_REVERSAL, REOPENING, Moment, Record, money


def allocation_of(state: LoanState, payment_id: str) -> PaymentAllocation | None:
    return next((a for a in state.payment_allocations if a.payment_id == payment_id), None)


def reversal_of(state: LoanState, payment_id: str) -> Reversal | None:
    return next((r for r in state.reversals if r.payment_id == payment_id), None)


def reverse_payment(state: LoanState, signal: PaymentReversedSignal, moment: Moment, terms: Terms | None) -> list[Record]:
    """Undo one payment's allocation; the records to write. SignalRejected
    (nothing changed) for a payment unknown, reversed already, or whose
    allocation is not known."""
    payment_id = signal.payment_id
    if state.stage == contract.STAGE_CLOSED:
        raise SignalRejected("loan: closed; post the reversal again to reopen it (POST /payments/reversals, starter.py reverse)")
    done = reversal_of(state, payment_id)
    if done is not None:
        raise SignalRejected(f"payment_id: {payment_id} was reversed already ({done.reversed_at.isoformat()}): nothing changed")
    allocation = allocation_of(state, payment_id)
    if allocation is None:
        if payment_id in state.applied_payment_ids:
            raise SignalRejected(
                f"payment_id: {payment_id} was applied before allocations were kept: it cannot be undone exactly "
                "(nothing changed; an operator corrects it by hand)"
            )
        raise SignalRejected(f"payment_id: no payment {payment_id} was applied to this loan: nothing changed")
    fee = Decimal("0")
    if terms is not None and moment.clock is not None:
        # The charges of the days begun come first, as for a payment.
        post_charges(terms, state, moment.days_past_due)
    unapply_payment(state, allocation.amount, allocation.fees, allocation.interest, allocation.principal)
    if terms is not None and moment.clock is not None:
        fee = charge_returned_payment_fee(terms, state, moment.days_past_due)
    reopening = state.reopened is not None and state.reopened.payment_id == payment_id
    reversal = Reversal(
        payment_id=payment_id, reason=signal.reason, reversed_at=signal.reversed_at or moment.now,
        amount=allocation.amount, fees=allocation.fees, interest=allocation.interest, principal=allocation.principal,
        returned_payment_fee=fee, received_at=moment.now, reopened=reopening,
    )
    state.reversals.append(reversal)
    if state.bureau_reported:
        # The bureau's balance is out of date: a correction is filed at once.
        state.bureau.correction_due = True
    # A payment that restarted the statute of limitations no longer does (issue 18, item 2).
    undone = limitation.payment_reversed(state, payment_id, moment)
    return [reversal_record(state, reversal, moment, allocation.overpaid), *undone]


def reversal_record(state: LoanState, reversal: Reversal, moment: Moment, overpaid: Decimal) -> Record:
    return Record(
        PAYMENT_REVERSAL,
        dict(
            key=keys.reversal_key(moment.workflow_id, reversal.payment_id), workflow_id=moment.workflow_id,
            loan_id=state.loan_id, payment_id=reversal.payment_id, amount=money(state, reversal.amount),
            currency=state.currency, fees=money(state, reversal.fees), interest=money(state, reversal.interest),
            principal=money(state, reversal.principal), overpaid=money(state, overpaid),
            returned_payment_fee=money(state, reversal.returned_payment_fee), reason=reversal.reason,
            reversed_at=reversal.reversed_at.isoformat(), at=moment.at, reopened=reversal.reopened,
            outstanding=money(state, state.outstanding), amount_paid=money(state, state.amount_paid),
        ),
        f"Reverse payment {reversal.payment_id} ({money(state, reversal.amount)} {state.currency})",
    )


# ------------------------------------------------------------ a loan reopened


def reopen(state: LoanState, reopened: ReopenedLoan) -> None:
    """A new run's state for a loan that closed `repaid`, from its records:
    nothing owed (the reversal, its start signal, makes it owed again), what
    was paid and charged, each payment's allocation and earlier reversals,
    what the bureau was told, the channels opted out of, the legal case, the
    legal statuses in force and the notices sent, and the stage it closed in
    (the planner moves it on to the stage of the day)."""
    state.stage = reopened.stage if reopened.stage in contract.STAGE_NAMES else contract.STAGE_PENDING
    state.clock_anchor = reopened.clock_anchor
    state.amount_paid = reopened.amount_paid
    state.principal_due, state.fees_due, state.interest_due = Decimal("0"), Decimal("0"), Decimal("0")
    state.fees_charged, state.interest_charged = reopened.fees_charged, reopened.interest_charged
    state.charges_through_day = reopened.charges_through_day or 0
    state.late_fee_charged = (
        reopened.late_fee_charged if reopened.late_fee_charged is not None else reopened.fees_charged > 0
    )
    state.cost_cap_allowance = reopened.cost_cap_allowance or Decimal("0")
    state.payment_allocations = [
        PaymentAllocation(payment_id=p.payment_id, amount=p.amount, fees=p.fees, interest=p.interest,
                          principal=p.principal, overpaid=p.overpaid)
        for p in reopened.payments
    ]
    state.reversals = [
        Reversal(payment_id=r.payment_id, reason=r.reason, reversed_at=r.reversed_at, amount=r.amount, fees=r.fees,
                 interest=r.interest, principal=r.principal, returned_payment_fee=r.returned_payment_fee)
        for r in reopened.reversals
    ]
    applied = [p.payment_id for p in reopened.payments] + list(reopened.unallocated_payment_ids)
    state.applied_payment_ids = list(dict.fromkeys(applied + [r.payment_id for r in reopened.reversals]))
    # Payments that left a balance count in the risk segment: all but the one that closed it.
    state.partial_payments = max(len(applied) - 1, 0)
    records = reopened.bureau
    state.bureau = BureauState(
        first_reported_on=records.first_reported_on,
        first_delinquency=bureau.first_delinquency(state.due_date) if records.records else None,
        last_cycle=records.last_cycle, records=records.records, reported_disputed=records.reported_disputed,
        reported_93=records.reported_93, reported_97=records.reported_97,
    )
    state.bureau_reported = records.records > 0
    state.opted_out = list(dict.fromkeys(reopened.opted_out))
    case = reopened.legal
    if case is not None and case.status != "settled":  # a settled case would end the loan `settled`
        state.legal = LegalCase(status=case.status, opened_on=case.opened_on, case_ref=case.case_ref)
    if reopened.legal_status is not None:
        # The statuses in force when it closed hold on (a stay, a death, a
        # cease request, a hardship); their tasks were opened by the closed run.
        kept = reopened.legal_status
        state.legal_status = LegalStatuses(
            in_force=[LegalStatusInForce(**status.model_dump()) for status in kept.in_force],
            petition_day=kept.petition_day, petition_date=kept.petition_date,
            dismissed_chapter=kept.dismissed_chapter,
        )
    # The notices it was sent count as sent (their loan time is set once the
    # run has its clock: reopening_started).
    state.contacts = [
        ContactEntry(at=n.at, loan_at=n.at, channel=n.channel, stage=n.stage, template=n.template, day=0,
                     step=n.step, result=n.result)
        for n in reopened.notices
    ]
    state.reopened = Reopening(
        payment_id=reopened.payment_id, reason=reopened.reason, closed_outcome=reopened.closed_outcome,
        closed_stage=reopened.stage,
    )


def reopening_started(state: LoanState, moment: Moment, charged_through: int) -> list[Record]:
    """The reopened run has its clock: charges resume after today (none for
    the days the loan stood closed), steps planned before now are not shown
    as missed, and the reopening is recorded (the loan's row open again,
    audited)."""
    state.reopened.at = moment.loan_now
    # Until now the run's contacts are only the notices carried from its
    # records (reopen): put them on the loan's clock.
    for contact in state.contacts:
        contact.loan_at = moment.clock.loan_time(contact.at)
        contact.day = moment.clock.days_past_due(contact.loan_at)
    state.charges_through_day = max(state.charges_through_day, charged_through)
    return [
        Record(
            REOPENING,
            dict(
                key=keys.reopening_key(moment.workflow_id, moment.first_run_id), workflow_id=moment.workflow_id,
                loan_id=state.loan_id, payment_id=state.reopened.payment_id, reason=state.reopened.reason,
                previous_outcome=state.reopened.closed_outcome, stage=state.stage, at=moment.at,
                days_past_due=moment.days_past_due,
            ),
            f"Reopen loan {state.loan_id}: payment {state.reopened.payment_id} reversed",
        )
    ]

