"""A loan's course: it starts (its charges' terms and first risk segment),
enters each stage, is reported to the credit bureau, and ends."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from dunning import bureau, contract, keys, legal_status
from dunning.charges import Terms, terms_for
from dunning.clock import LoanClock
from dunning.compliance import Profile
from dunning.planner import segment_name
from dunning.policy import Policy

from dunning.state import ContactEntry, LegalCase, LoanState
from dunning.transitions.records import BUREAU, CLOSING, STAGE_ENTRY, Moment, Record, Write, money


def begin(state: LoanState, policy: Policy, profile: Profile, clock: LoanClock, loan_now: datetime) -> Terms:
    """A loan starting (or continuing from a run that knew no segments): the
    charges it may bear, and its first risk segment."""
    if state.segment is None:
        state.segment = segment_name(policy, state, clock.days_past_due(loan_now))
    return terms_for(policy, profile, state)


def stage_entry_record(state: LoanState, stage: str, clock: LoanClock, loan_now: datetime, moment: Moment) -> Record:
    day = clock.days_past_due(loan_now)
    return Record(
        STAGE_ENTRY,
        dict(
            key=keys.stage_entry_key(moment.workflow_id, stage), workflow_id=moment.workflow_id,
            loan_id=state.loan_id, stage=stage, days_past_due=day, outstanding=money(state, state.outstanding),
            currency=state.currency, segment=state.segment or "",
        ),
        f"Enter {stage} on day {day}",
    )


def start_stage(state: LoanState, stage: str) -> None:
    """The loan in `stage`, with none of its steps done yet. Postponed contacts
    of the old stage give way to the new stage's own; a notice still owed and
    a borrower's request still stand."""
    state.stage, state.done_steps = stage, []
    state.deferred = {key: at for key, at in state.deferred.items() if keys.carried_across_stages(key)}


def _record_postponed_left_behind(state: LoanState, policy: Policy, loan_now: datetime, moment: Moment) -> None:
    """A step a rule postponed past its stage's end is never sent: it shows
    in `contacts` as skipped, with the rule, rather than vanishing (issue
    15, item 10: calls the 7-in-7 limit refused appeared nowhere)."""
    for key in state.deferred:
        parsed = keys.parse_stage_step(key)
        if parsed is None or keys.carried_across_stages(key):
            continue
        stage, day, index, channel = parsed
        rules = policy.stage(stage) if stage in contract.STAGE_NAMES else None
        steps = rules.steps if rules is not None else ()
        state.contacts.append(ContactEntry(
            at=moment.now.astimezone(moment.clock.zone), loan_at=loan_now, step=key, channel=channel, stage=stage,
            template=steps[index].template if index < len(steps) else "", day=day, result="skipped_stage_ended",
            rule=state.deferred_rules.get(key, ""),
        ))
    state.deferred_rules = {key: rule for key, rule in state.deferred_rules.items() if keys.carried_across_stages(key)}


def enter_stage(state: LoanState, stage: str, policy: Policy, clock: LoanClock, loan_now: datetime, moment: Moment) -> Write:
    """The stage entered once its record is written: the segment is decided
    again, and the legal stage opens the loan's case."""

    def entered() -> None:
        _record_postponed_left_behind(state, policy, loan_now, moment)
        start_stage(state, stage)
        state.segment = segment_name(policy, state, clock.days_past_due(loan_now))
        if stage == "legal" and state.legal is None:
            state.legal = LegalCase(opened_on=loan_now.date())

    return Write(stage_entry_record(state, stage, clock, loan_now, moment), entered)


def bureau_record(
    state: LoanState, clock: LoanClock, loan_now: datetime, moment: Moment, kind: str, outcome: str | None = None,
) -> Write | None:
    """A Metro 2-like record (dunning/bureau.py) of `kind` (first, regular,
    correction, final with the loan's outcome), and what the loan remembers
    of it once it is filed; None for an account no longer reported (a
    deceased borrower's, once reported with ECOA X: CRRG FAQ 19)."""
    if not legal_status.reports_to_bureau(state):
        return None
    day = clock.days_past_due(loan_now)
    today = loan_now.date()
    if state.bureau.first_delinquency is None:
        state.bureau.first_delinquency = bureau.first_delinquency(state.due_date)
        state.bureau.first_reported_on = today
    elif state.bureau.first_delinquency != bureau.first_delinquency(state.due_date):
        # Carried over from a run before issue 16 (the due date + 1): the
        # record reports the CRRG's date (dunning/bureau.py), and so does the state.
        state.bureau.first_delinquency = bureau.first_delinquency(state.due_date)
    # A regular record belongs to this month's cycle; a correction or the
    # final record to the cycle of the day it is filed.
    cycle = bureau.cycle_of(today)
    fields = bureau.record_fields(state, day, today, outcome)
    number = state.bureau.records + 1
    record = Record(
        BUREAU,
        dict(
            key=keys.bureau_record_key(moment.workflow_id, number, kind), workflow_id=moment.workflow_id,
            loan_id=state.loan_id, days_past_due=day, outstanding=fields["balance"], currency=state.currency,
            kind=kind, cycle=cycle, account_status=fields["account_status"], special_comment=fields["special_comment"],
            compliance_code=fields["compliance_code"], first_delinquency=fields["first_delinquency"],
            amount_past_due=fields["amount_past_due"], original_amount=fields["original_amount"],
            reported_on=today.isoformat(), payment_rating=fields["payment_rating"],
            # Issue 18, item 1: only when a legal status sets them (blank: the export's default).
            **{name: fields[name] for name in ("consumer_information_indicator", "ecoa_code") if fields[name]},
        ),
        f"Credit-bureau record {number} ({kind}): status {fields['account_status']} {fields['compliance_code']}".rstrip(),
    )

    def filed() -> None:
        state.bureau_reported = True
        state.bureau.records = number
        if kind in ("first", "regular"):
            state.bureau.last_cycle = cycle
        state.bureau.correction_due = False
        state.bureau.reported_disputed = state.bureau.reported_disputed or fields["compliance_code"] == "XB"
        state.bureau.reported_93 = state.bureau.reported_93 or fields["account_status"] == bureau.STATUS_COLLECTION
        state.bureau.reported_97 = state.bureau.reported_97 or fields["account_status"] == bureau.STATUS_CHARGE_OFF
        if fields["consumer_information_indicator"]:
            cii = fields["consumer_information_indicator"]
            state.bureau.cii_on_file = "" if cii == bureau.CII_REMOVE else cii
        state.bureau.reported_deceased = fields["ecoa_code"] == bureau.ECOA_DECEASED

    return Write(record, filed)


def ending(state: LoanState) -> str | None:
    """The outcome the loan ends with now, if it ends."""
    if state.outstanding <= 0:
        # Paid in full, or for less under a plan's waivers.
        return contract.OUTCOME_SETTLED if state.waived > 0 else contract.OUTCOME_REPAID
    if state.dispute_upheld:
        return contract.OUTCOME_DISPUTE_UPHELD
    if state.legal is not None and state.legal.status == "settled":
        return contract.OUTCOME_SETTLED
    # A bankruptcy discharged; a deceased borrower's loan written off or
    # settled by the estate (issue 18, item 1).
    return legal_status.ending(state)


def closing_record(state: LoanState, outcome: str, loan_now: datetime, moment: Moment, payments: list[Record] = ()) -> Record:
    """The close; with the payments that closed the loan, written with it in
    one transaction (issue 19, item 2)."""
    extra = {"payments": [p.fields for p in payments]} if payments else {}
    return Record(
        CLOSING,
        dict(
            workflow_id=moment.workflow_id, loan_id=state.loan_id, outcome=outcome,
            amount_paid=money(state, state.amount_paid), outstanding=money(state, state.outstanding),
            final_stage=state.stage, closed_at=moment.at, days_past_due=moment.clock.days_past_due(loan_now),
            segment=state.segment or "", waived=money(state, state.waived),
            fees_charged=money(state, state.fees_charged), interest_charged=money(state, state.interest_charged),
            reopen_basis=reopen_basis(state), **extra,
        ),
        f"Close loan: {outcome}",
    )


def reopen_basis(state: LoanState) -> dict:
    """What a reopening after a reversal (issue 18, item 3) needs that the
    loan's rows do not hold: kept in `loans.reopen_basis`. Ids and money."""

    def amount(value: Decimal | None) -> str | None:
        return None if value is None else f"{value:f}"

    basis = {
        "clock_anchor": state.clock_anchor.isoformat() if state.clock_anchor else None,
        "charges_through_day": state.charges_through_day,
        "late_fee_charged": state.late_fee_charged,
        "cost_cap_allowance": amount(state.cost_cap_allowance),
        "risk_score": state.risk_score,
        "contract_terms": {
            "late_fee": amount(state.contract_late_fee),
            "penalty_rate_annual": amount(state.contract_penalty_rate),
            "returned_payment_fee": amount(state.contract_returned_payment_fee),
        },
    }
    legal = state.legal_status
    if legal is not None and (legal.in_force or legal.petition_date is not None or legal.dismissed_chapter is not None):
        # A loan paid in full under a stay, a cease request or a hardship must
        # not be collected like any other once a reversal reopens it. Only when
        # there is one: every other closing's payload stays as it was.
        basis["legal_status"] = {
            "in_force": [s.model_dump(mode="json", exclude={"task_pending"}) for s in legal.in_force],
            "petition_day": legal.petition_day,
            "petition_date": legal.petition_date.isoformat() if legal.petition_date else None,
            "dismissed_chapter": legal.dismissed_chapter,
        }
    return basis

