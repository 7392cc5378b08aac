"""Contacts: one the planner asked for, sent, skipped or postponed by a
compliance rule; and what the borrower and the providers say about them
(opt-outs, a pay link asked for, a call's outcome)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from dunning import contract, keys
from dunning import limitation as limitations
from dunning.compliance import Profile
from dunning.policy import BorrowerContacts, Policy
from dunning.inputs import ContactOutcomeSignal, OptOutSignal, PayLinkRequest
from dunning.planner import (
    INSTALLMENT_REMINDER, PLAN_CONFIRMATION, SETTLEMENT_CONFIRMATION, SETTLEMENT_REMINDER, VALIDATION_NOTICE, Occurrence,
)
from dunning.state import ContactEntry, LoanState
from dunning.transitions.holds import SignalRejected
from dunning.transitions.records import CONTACT, Moment, Record, decision, money, operator_action


def contact_request(
    state: LoanState, profile: Profile, occurrence: Occurrence, moment: Moment, loan_now: datetime,
    policy: Policy | None = None,
) -> Record:
    """The message to send for a planned step (the send_contact activity's request)."""
    return Record(
        CONTACT,
        dict(
            # One message per loan, step and day, across retries, crashes and
            # continue-as-new (the first run id names this chain of runs).
            key=keys.contact_key(moment.workflow_id, moment.first_run_id, occurrence.key),
            workflow_id=moment.workflow_id, loan_id=state.loan_id, borrower_id=state.borrower_id,
            stage=occurrence.stage, channel=occurrence.channel, template=occurrence.template,
            days_past_due=moment.clock.days_past_due(loan_now), outstanding=money(state, state.outstanding),
            currency=state.currency, due_date=state.due_date.isoformat(),
            # Enforced by the activity, which alone sees the borrower's other loans.
            voice_daily_cap=profile.caps.voice_attempts_per_day_per_borrower,
            min_minutes_between_calls=profile.caps.min_minutes_between_calls,
            # Checked again by the activity in the zones the directory gives then.
            window_start=profile.window.start.isoformat(), window_end=profile.window.end.isoformat(),
            privacy_first_line=profile.privacy.first_line,
            debt_collector_disclosure=profile.collector.collects_as_debt_collector,
            # The profile records calls (rules.record_calls): the script says so first.
            record_call=occurrence.channel == "voice" and profile.rules.record_calls,
            loan_at=loan_now.isoformat(), time_zone=state.time_zone,
            **notice_terms(state, profile, occurrence),
            **limitation_terms(state, loan_now),
            **message_terms(state, occurrence),
            **borrower_terms(state, profile, policy, occurrence, loan_now),
        ),
        f"{occurrence.channel} {occurrence.template}, day {occurrence.day}",
    )


def limitation_terms(state: LoanState, loan_now: datetime) -> dict:
    """A time-barred debt's message (issue 18, item 2): rendered in its
    time-barred variant with the disclosure its jurisdiction requires (a key
    of config/compliance/limitation_disclosures.toml, the activity reads its
    text) and whether the account was reported to a bureau (the disclosure
    may say it "may continue to" be). Nothing for any other loan."""
    today = loan_now.date()
    if not limitations.is_time_barred(state, today):
        return {}
    return dict(
        time_barred=True, limitation_disclosure=limitations.disclosure_key(state.limitation, today),
        limitation_reported=state.bureau_reported,
    )


def notice_terms(state: LoanState, profile: Profile, occurrence: Occurrence) -> dict:
    """What the validation notice states besides the loan (Model Form B-1):
    who collects (the profile's [collector], a business's details) and what
    the workflow charged since placing. Other messages need none of it."""
    if occurrence.template != VALIDATION_NOTICE:
        return {}
    collector = profile.collector
    return dict(
        collector_name=collector.name, collector_mailing_address=tuple(collector.mailing_address),
        collector_phone=collector.phone, dispute_email=collector.dispute_email, dispute_url=collector.dispute_url,
        validation_period_days=profile.notices.validation_period_days,
        interest_charged=money(state, state.interest_charged), fees_charged=money(state, state.fees_charged),
    )


def borrower_terms(
    state: LoanState, profile: Profile, policy: Policy | None, occurrence: Occurrence, loan_now: datetime
) -> dict:
    """One voice per borrower (issue 17, item 1): the per-borrower daily cap
    on the step's channel (the smaller of the profile's and the policy's
    [borrower] daily_caps) and whether the step may be merged with the
    borrower's other loans' steps, with how long (real seconds) the first may
    wait for the others: the policy's gather_seconds, never past the contact
    window's end in any of the borrower's zones. Enforced by the activity,
    which alone sees the other loans. Nothing when neither applies (what a
    request meant before)."""
    if occurrence.channel == "voice":
        return {}  # calls keep the profile's voice caps
    rules = policy.borrower if policy is not None else BorrowerContacts()
    day_seconds = policy.day_seconds if policy is not None else 86400
    terms: dict = {}
    cap = profile.caps.borrower_daily_cap(occurrence.channel, rules.daily_caps.get(occurrence.channel))
    if cap is not None:
        terms["borrower_daily_cap"] = cap
    # A time-barred debt's message carries its own disclosure (issue 18, item 2): never merged.
    if rules.merges(occurrence.channel, occurrence.template) and not limitations.is_time_barred(state, loan_now.date()):
        left = _window_left_seconds(profile, state.zones, loan_now) * day_seconds / 86400
        terms["merge"] = True
        terms["gather_seconds"] = round(max(0.0, min(rules.gather_seconds, left)), 3)
    return terms


def _window_left_seconds(profile: Profile, zones: tuple[str, ...], loan_now: datetime) -> float:
    """Loan-time seconds from `loan_now` to the contact window's end, in the
    zone where it ends first."""
    left = []
    for name in zones:
        zone = ZoneInfo(name)
        local = loan_now.astimezone(zone)
        end = datetime.combine(local.date(), profile.window.end, tzinfo=zone)
        left.append((end - local).total_seconds())
    return min(left, default=0.0)


def message_terms(state: LoanState, occurrence: Occurrence) -> dict:
    """An installment reminder states the installment, not the balance; a
    settlement's messages its amount and pay_by date (issue 18, item 4)."""
    settlement = state.accepted_settlement
    if settlement is not None and occurrence.template in (SETTLEMENT_CONFIRMATION, SETTLEMENT_REMINDER):
        return {"message_amount": money(state, settlement.amount), "message_due_date": settlement.pay_by.isoformat()}
    plan = state.active_plan
    if plan is None or occurrence.template not in (INSTALLMENT_REMINDER, PLAN_CONFIRMATION):
        return {}
    number = keys.installment_of(occurrence.key) if occurrence.template == INSTALLMENT_REMINDER else 1
    installment = plan.installments[number - 1]
    return {"message_amount": money(state, installment.amount), "message_due_date": installment.due_date.isoformat()}


def contact_recorded(
    state: LoanState, occurrence: Occurrence, result: str, moment: Moment, loan_now: datetime, message_key: str = "",
) -> None:
    """A step done (sent, failed or skipped) at `moment`: it is not planned
    again. `message_key` is the outbox key of the message that carried it (its
    own, or a message merged across the borrower's loans)."""
    state.done_steps.append(occurrence.key)
    state.deferred.pop(occurrence.key, None)
    state.deferred_rules.pop(occurrence.key, None)
    state.contacts.append(
        ContactEntry(
            at=moment.now.astimezone(moment.clock.zone),
            loan_at=loan_now,
            step=occurrence.key,
            channel=occurrence.channel,
            stage=occurrence.stage,
            template=occurrence.template,
            day=occurrence.day,
            result=result,
            message_key=message_key,
        )
    )


def contact_skipped(state: LoanState, occurrence: Occurrence, result: str, reason: str, moment: Moment, loan_now: datetime) -> list[Record]:
    """A step not sent (an opted-out channel, one the segment skips), and why."""
    contact_recorded(state, occurrence, result, moment, loan_now)
    return [decision(state, moment, "decision", result, reason, occurrence.channel, occurrence.key)]


def contact_deferred(
    state: LoanState, step_key: str, until: datetime, rule: str, reason: str, channel: str, moment: Moment
) -> list[Record]:
    """A compliance rule said 'not now': the contact waits for `until` (loan time)."""
    state.deferred[step_key] = until
    state.deferred_rules[step_key] = rule
    return [decision(state, moment, "decision", rule, f"{reason}; postponed to {until.isoformat()}", channel, step_key)]


# ------------------------------------------------------------------ signals


def opt_out(state: LoanState, signal: OptOutSignal, moment: Moment) -> list[Record]:
    """That channel (or all) is never used again for this loan."""
    if signal.channel not in state.opted_out:
        state.opted_out.append(signal.channel)
    return [operator_action(state, moment, contract.SIGNAL_OPT_OUT, f"opted out of {signal.channel}", channel=signal.channel)]


def request_pay_link(state: LoanState, signal: PayLinkRequest, moment: Moment) -> list[Record]:
    """The borrower asked for the repayment link (keypad 1 on a call): the
    planner sends it as the next contact, under the same rules as any other."""
    state.pay_link_requests += 1
    return [operator_action(state, moment, contract.SIGNAL_SEND_PAY_LINK, "borrower asked for the repayment link by SMS", channel="sms")]


def contact_outcome(state: LoanState, signal: ContactOutcomeSignal, moment: Moment) -> list[Record]:
    """What a provider reported after a contact went out (call caps count it)."""
    entry = next((c for c in reversed(state.contacts) if c.step == signal.step), None)
    if entry is None or entry.result.startswith("skipped"):
        raise SignalRejected(f"step: no contact {signal.step!r} was sent")
    entry.result = signal.result
    return []
