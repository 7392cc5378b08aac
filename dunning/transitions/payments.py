"""A repayment signal: applied (charges of the days begun first, then fees,
interest and principal), ignored when the same payment id came before, or
kept unapplied for a person when it is malformed.

Never dropped and never a crash: a bad payment is kept in
`unapplied_payments` with the error naming the key, and recorded like a
good one.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from dunning import keys
from dunning.charges import Allocation, Terms, apply_payment, charge_and_apply, paid_day
from dunning.inputs import InputError, RepaymentSignal, parse_signal
from dunning.money import parse_amount
from dunning.state import LoanState, PaymentAllocation, UnappliedPayment
from dunning.transitions import limitation
from dunning.transitions.records import PAYMENT, Moment, Record, money


@dataclass(frozen=True)
class Receipt:
    """What one repayment signal did."""

    payment_id: str
    records: list[Record] = field(default_factory=list)
    applied: Decimal | None = None  # the amount applied
    unapplied_reason: str = ""  # why it was kept unapplied
    duplicate: bool = False  # the same payment id again: nothing changed
    # The loan's local day it counts from (its paid_at's, within the
    # profile's tolerance; else the day it came); None without a clock.
    counted_on: date | None = None


def receive_payment(state: LoanState, payload: Any, moment: Moment, terms: Terms | None) -> Receipt:
    """A repayment, with what it tells about the loan: a payment that leaves a
    balance counts in the risk segment, and one after a bureau record makes
    the bureau's balance out of date (a correction is filed at once)."""
    receipt = take_payment(state, payload, moment, terms)
    if receipt.applied is not None:
        if state.outstanding > 0:
            state.partial_payments += 1
        if state.bureau_reported:
            state.bureau.correction_due = True
        if state.limitation is not None and receipt.counted_on is not None:
            # The statute of limitations starts again where its rule says so (issue 18, item 2).
            restarted = limitation.payment_received(state, receipt.payment_id, receipt.counted_on, moment)
            if restarted:
                receipt = replace(receipt, records=[*receipt.records, *restarted])
    return receipt


def take_payment(state: LoanState, payload: Any, moment: Moment, terms: Terms | None) -> Receipt:
    """The payment itself. With `terms` (and the loan's clock known), the
    charges of the days begun before it are posted first, so it never pays
    interest of a day that had not begun; where the profile allows, "before
    it" is when it was made (`paid_at`), not when it was reported."""
    raw = payload if isinstance(payload, dict) else {}
    payment_id = str(raw.get("payment_id", ""))[:128]
    try:
        payment = parse_signal(RepaymentSignal, payload)
        if payment.currency != state.currency:
            raise InputError(f"currency: {payment.currency} does not match the loan's {state.currency}")
        try:
            amount = parse_amount(payment.amount, state.currency)
        except ValueError as error:
            raise InputError(f"amount: {error}") from None
    except InputError as error:
        state.unapplied_payments.append(
            UnappliedPayment(
                payment_id=payment_id,
                amount=str(raw.get("amount", ""))[:64],
                currency=str(raw.get("currency", ""))[:16],
                reason=str(error),
                received_at=moment.now,
            )
        )
        record = payment_record(state, moment, payment_id, raw, applied=False, reason=str(error))
        return Receipt(payment_id, [record], unapplied_reason=str(error))
    if payment.payment_id in state.applied_payment_ids:
        return Receipt(payment.payment_id, duplicate=True)
    state.applied_payment_ids.append(payment.payment_id)
    paid = None
    if terms is not None and moment.clock is not None:
        # Under a profile's payment_time_tolerance_hours, a payment counts
        # from its paid_at for charges (none for the days after it).
        paid = paid_day(terms, moment.clock, payment.paid_at, moment.loan_now)
        allocation = charge_and_apply(terms, state, amount, moment.days_past_due, paid)
    else:
        allocation = apply_payment(state, amount)
    counted_on = None
    if moment.clock is not None:
        counted_on = state.due_date + timedelta(days=paid) if paid is not None else moment.today
    # Kept so that a reversal undoes exactly this (issue 18, item 3).
    state.payment_allocations.append(PaymentAllocation(
        payment_id=payment.payment_id, amount=amount, fees=allocation.fees, interest=allocation.interest,
        principal=allocation.principal, overpaid=allocation.overpaid,
    ))
    record = payment_record(state, moment, payment.payment_id, raw, applied=True, allocation=allocation)
    return Receipt(payment.payment_id, [record], applied=amount, counted_on=counted_on)


def payment_record(
    state: LoanState, moment: Moment, payment_id: str, raw: dict, applied: bool, reason: str = "",
    allocation: Allocation | None = None,
) -> Record:
    # A payment id is the key; a payload without one gets a key from its
    # place among this loan's signals, so it is still recorded exactly once.
    key = (
        keys.payment_key(moment.workflow_id, payment_id)
        if applied
        else keys.unapplied_payment_key(moment.workflow_id, state.signals_received, payment_id)
    )
    return Record(
        PAYMENT,
        dict(
            key=key, workflow_id=moment.workflow_id, loan_id=state.loan_id, payment_id=payment_id,
            amount=str(raw.get("amount", ""))[:64], currency=str(raw.get("currency", ""))[:16],
            paid_at=str(raw.get("paid_at", "") or moment.at)[:64], applied=applied, reason=reason,
            **(_allocated(state, allocation) if allocation is not None else {}),
        ),
        f"Record payment {payment_id or '(no id)'}" + ("" if applied else " (unapplied)"),
    )


def _allocated(state: LoanState, allocation: Allocation) -> dict:
    """The payment row's allocation columns (payments.fees_paid, ...)."""
    return dict(
        fees_paid=money(state, allocation.fees), interest_paid=money(state, allocation.interest),
        principal_paid=money(state, allocation.principal), overpaid=money(state, allocation.overpaid),
    )
