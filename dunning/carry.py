"""A run's start: the loan from the workflow input, or the state (with the
policy and profile) a previous run carried over on continue-as-new.

A carried state or policy that is not one this workflow wrote fails the
start, naming the key, rather than failing every workflow task for ever.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dunning.charges import terms_for
from dunning.compliance import Profile
from dunning.inputs import InputError, LoanInput, ReopenedLoan
from dunning.money import format_amount
from dunning.policy import Policy
from dunning.state import LoanState
from dunning.transitions import reversals
from dunning.transitions.records import Rules

# The carried state travels under this key of the input on continue-as-new,
# with the policy and profile the loan started with (so a new run never picks
# up an edited policy file).
CARRIED_STATE = "carried_state"
CARRIED_POLICY = "carried_policy"
# A loan closed `repaid` started again because a payment was reversed (issue
# 18, item 3): its records, read by services/reversals.py (dunning/inputs.py
# ReopenedLoan). Ids, codes and money only.
REOPENED = "reopened"


@dataclass(frozen=True)
class Start:
    state: LoanState | None = None
    carried_rules: Rules | None = None  # the policy and profile a continued run came with
    error: str | None = None  # what is wrong with the input (the run fails with it)


def read_start(loan: Any) -> Start:
    try:
        parsed = LoanInput.parse(loan)
    except InputError as error:
        return Start(error=str(error))
    carried = loan.get(CARRIED_STATE) if isinstance(loan, dict) else None
    if not carried:
        terms = parsed.contract_terms
        state = LoanState(
            **parsed.model_dump(exclude={"contract_terms"}),
            contract_late_fee=terms.late_fee if terms else None,
            contract_penalty_rate=terms.penalty_rate_annual if terms else None,
            contract_returned_payment_fee=terms.returned_payment_fee if terms else None,
        )
        if isinstance(loan, dict) and loan.get(REOPENED) is not None:
            try:
                reversals.reopen(state, ReopenedLoan.parse(loan[REOPENED]))
            except InputError as error:
                return Start(error=str(error))
        return Start(state)
    try:
        state = LoanState.model_validate(carried)
    except ValueError as error:  # pydantic's ValidationError
        return Start(error=f"{CARRIED_STATE}: not a loan state carried over by this workflow ({str(error)[:200]})")
    carried_policy = loan.get(CARRIED_POLICY)
    if not carried_policy:
        return Start(state)
    try:
        if not isinstance(carried_policy, dict):
            raise ValueError("must be an object with `policy` and `profile`")
        policy = Policy.model_validate(carried_policy.get("policy"))
        profile = Profile.model_validate(carried_policy.get("profile"))
    except ValueError as error:
        return Start(state, error=f"{CARRIED_POLICY}: not a policy carried over by this workflow ({str(error)[:200]})")
    return Start(state, Rules(policy, profile, terms_for(policy, profile, state)))


def carried_input(state: LoanState, rules: Rules | None) -> dict:
    """The next run's input: the loan's own keys, its state, and (where the
    run carries it) the policy and profile it started with."""
    carried = {
        "loan_id": state.loan_id,
        "borrower_id": state.borrower_id,
        "amount_due": format_amount(state.amount_due, state.currency),
        "currency": state.currency,
        "due_date": state.due_date.isoformat(),
        "policy": state.policy,
        CARRIED_STATE: state.model_dump(mode="json"),
    }
    if rules is not None:
        carried[CARRIED_POLICY] = {"policy": rules.policy.model_dump(mode="json"), "profile": rules.profile.model_dump(mode="json")}
    return carried
