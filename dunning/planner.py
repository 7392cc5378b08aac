"""The planner: given the policy, the loan's state and the loan-time now,
what is the next thing to do, and when?

It is a pure function, so the workflow replays it deterministically and tests
can run it over many cases. The workflow does what it answers, records the
result in the state, and asks again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone
from typing import Literal

from dunning import keys, notice as notices
from dunning.clock import LoanClock
from dunning.compliance import CONVERSATION_RESULTS, PastContact, Profile, check_contact
from dunning.contract import STAGE_NAMES, STAGE_PENDING, STAGE_PRE_DUE, STAGES
from dunning.arrangements import plan_deadline, promise_deadline
from dunning.settlements import reminder_day, settlement_deadline, settlement_paid
from dunning.bureau import next_cycle_start
from dunning import legal_status as legal
from dunning import limitation as limitations
from dunning.policy import Policy, Segment, SegmentFacts
from dunning.state import LoanState

# The stage a time-barred loan goes no further than (12 CFR 1006.26(b): no legal action).
LAST_BEFORE_LEGAL = STAGES[STAGES.index("legal") - 1]

ActionKind = Literal[
    "hold", "enter_stage", "report_to_bureau", "write_off", "contact", "skip", "defer", "wait",
    "break_plan", "break_promise", "assign_visit", "escalate_task", "miss_settlement",
]
VALIDATION_NOTICE = notices.VALIDATION_NOTICE
PAY_LINK = "pay_link"
PLAN_CONFIRMATION = "plan_confirmation"
INSTALLMENT_REMINDER = "installment_reminder"
SETTLEMENT_CONFIRMATION = "settlement_confirmation"
SETTLEMENT_REMINDER = "settlement_reminder"


@dataclass(frozen=True)
class Occurrence:
    """One sending of one contact step: a stage's step on a given day."""

    key: str
    stage: str
    day: int
    channel: str
    template: str
    at: datetime  # loan time


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    reason: str
    at: datetime | None = None  # loan time it is due (for `wait`: when to wake)
    stage: str | None = None
    occurrence: Occurrence | None = None
    # For `skip`: how the skipped contact is shown (skipped_opt_out, ...).
    skip_result: str | None = None
    # For `defer`: the compliance rule that postponed the contact to `at`.
    rule: str | None = None
    # For `report_to_bureau`: first | regular | correction.
    bureau_kind: str | None = None
    # For `escalate_task`: the task's key.
    task_key: str | None = None


def occurrences(
    policy: Policy, clock: LoanClock, stage: str, from_day: int, segment: Segment | None = None, end_day: int | None = None,
) -> list[Occurrence]:
    """The stage's contacts on `from_day` or later, in the order they are due
    (until the stage's end, or `end_day`).

    The planner asks this on every call with the same arguments until the
    loan changes stage or segment, and listing a daily step's sendings over a
    stage (each placed on the clock in the borrower's zone) was most of its
    time: the answer is kept, by the policy and segment objects themselves
    (held, so their ids stay theirs) and the clock's and the stage's values.
    Pure, so the same for every workflow that asks (and on replay)."""
    key = (id(policy), id(segment), clock, stage, from_day, end_day)
    kept = _OCCURRENCES.get(key)
    if kept is None or kept[0] is not policy or kept[1] is not segment:
        if len(_OCCURRENCES) >= _OCCURRENCES_KEPT:
            _OCCURRENCES.clear()
        kept = _OCCURRENCES[key] = (policy, segment, tuple(_occurrences(policy, clock, stage, from_day, segment, end_day)))
    return list(kept[2])


_OCCURRENCES: dict[tuple, tuple[Policy, Segment | None, tuple[Occurrence, ...]]] = {}
_OCCURRENCES_KEPT = 4096


def _occurrences(
    policy: Policy, clock: LoanClock, stage: str, from_day: int, segment: Segment | None, end_day: int | None,
) -> list[Occurrence]:
    base = policy.step_base_day(stage, segment)
    end = policy.stage_end_day(stage, segment) if end_day is None else end_day
    found = []
    for index, step in enumerate(policy.stage(stage).steps):
        day = base + step.day
        while day < end:
            if day >= from_day:
                found.append(
                    Occurrence(
                        key=keys.stage_step(stage, day, index, step.channel),
                        stage=stage,
                        day=day,
                        channel=step.channel,
                        template=step.template,
                        at=clock.at(day, step.at or policy.contact_time),
                    )
                )
            if not step.every_days:
                break
            day += step.every_days
    # Same instant: keep the policy's order (stable sort).
    return sorted(found, key=lambda o: o.at)


def _hold_reason(state: LoanState) -> str:
    if (reason := legal.hold_reason(state)) is not None:
        return reason
    if state.disputed:
        return "dispute under review"
    if state.awaiting_verification:
        return "a dispute in the validation period: no collection until verification is sent (12 CFR 1006.38(d)(2))"
    if state.open_complaints:
        return f"complaint {', '.join(state.open_complaints)} under internal review"
    return f"paused by an operator ({state.pause_reason or 'no reason given'})"


def _validation_notice(profile: Profile, state: LoanState, clock: LoanClock, now: datetime) -> tuple[Occurrence | None, notices.NoticeProgress]:
    """Where the profile asks for a validation notice (US Reg F 1006.34), it is
    the loan's first contact, by the profile's channels in order
    (dunning/notice.py): the occurrence to send now, if any, and whether the
    notice still holds back the other contacts."""
    if profile.notices.validation_notice_within_days is None or state.stage not in STAGES:
        return None, notices.NoticeProgress()
    progress = notices.progress(profile, state, now)
    if progress.channel is None:
        return None, progress
    occurrence = Occurrence(
        key=keys.validation_notice_step(progress.channel), stage=state.stage, day=clock.days_past_due(now),
        channel=progress.channel, template=VALIDATION_NOTICE, at=now,
    )
    return occurrence, progress


def _requested_pay_link(state: LoanState, clock: LoanClock, now: datetime) -> Occurrence | None:
    """A repayment link the borrower asked for and has not been sent yet."""
    if state.stage not in STAGE_NAMES:
        return None
    handled = sum(1 for c in state.contacts if c.template == PAY_LINK)
    if handled >= state.pay_link_requests:
        return None
    return Occurrence(
        key=keys.pay_link_request_step(handled + 1), stage=state.stage, day=clock.days_past_due(now),
        channel="sms", template=PAY_LINK, at=now,
    )


def _bureau_notice(
    policy: Policy, profile: Profile, state: LoanState, clock: LoanClock, now: datetime, segment: Segment | None,
) -> Occurrence | None:
    """《征信业管理条例》第十五条 (profiles with `bureau_report_after_notice`):
    a loan due for its first bureau record whose borrower was never told (its
    stage's own notice never fell due while the loan was ours, or it bounced)
    is told first, by the first channel not yet tried."""
    rules = profile.notices
    if not rules.bureau_report_after_notice or state.bureau_reported:
        return None
    if state.stage_rank() < STAGES.index("credit_reporting") or state.stage not in STAGES:
        return None
    template = rules.bureau_notice_template
    if any(c.template == template and c.went_out for c in state.contacts):
        return None
    today = clock.days_past_due(now)
    done = set(state.done_steps)
    own = [o for o in occurrences(policy, clock, state.stage, policy.start_day(state.stage, segment), segment)
           if o.template == template and o.key not in done and o.day >= today]
    if own:
        return None  # the stage's own notice is still to come today or later
    tried = {c.channel for c in state.contacts if c.step.startswith(keys.bureau_notice_step(""))}
    channel = notices.next_channel(rules.bureau_notice_channels, tried, state)
    if channel is None:
        return None
    return Occurrence(key=keys.bureau_notice_step(channel), stage=state.stage, day=today, channel=channel,
                      template=template, at=now)


def first_report_due(profile: Profile, state: LoanState) -> datetime | None:
    """When the first bureau report may be filed (loan time), or None if not yet known.

    Reg F 1006.30(a) (us): only after a contact and a wait; cn: at once."""
    if state.bureau_reported or state.stage_rank() < STAGES.index("credit_reporting"):
        return None
    due = _after_wait(profile, state)
    if due is None or not profile.notices.bureau_report_after_notice:
        return due
    # 《征信业管理条例》第十五条: told first. A notice that bounced or was
    # reported undelivered no longer counts (it did not go out).
    told = [c.loan_at for c in state.contacts if c.template == profile.notices.bureau_notice_template and c.went_out]
    return max(due, min(told)) if told else None


def _after_wait(profile: Profile, state: LoanState) -> datetime | None:
    wait = profile.notices.bureau_report_wait_days
    if wait is None:
        return datetime.min.replace(tzinfo=timezone.utc)
    sent = [c.loan_at for c in state.contacts if _starts_bureau_wait(profile, c)]
    return min(sent) + timedelta(days=wait) if sent else None


# 1006.30(a)(1)(ii): a letter or an electronic message to the consumer
# (push to an app is neither: it may reach a bare user id on any device).
_MESSAGE_CHANNELS = frozenset({"letter", "email", "sms"})


def _starts_bureau_wait(profile: Profile, contact) -> bool:
    """1006.30(a)(1): before furnishing, the collector (i) speaks to the
    consumer, or (ii) places a letter in the mail or sends an electronic
    message and waits a reasonable time (14 days) for a notice of
    undeliverability. Under `conversation_or_message`, a call counts only if
    it was a conversation, and a message only while no notice of
    undeliverability came back (a bounce sets its result)."""
    if profile.notices.bureau_report_wait_starts == "any_contact":
        return contact.went_out
    if contact.channel == "voice":
        return contact.result in CONVERSATION_RESULTS
    return contact.channel in _MESSAGE_CHANNELS and contact.went_out


def _next_bureau_record(policy: Policy, profile: Profile, state: LoanState, clock: LoanClock) -> tuple[datetime, str] | None:
    """When the next credit-bureau record is due (loan time) and which kind."""
    if not legal.reports_to_bureau(state):  # a deceased borrower's account (issue 18, item 1)
        return None
    if not state.bureau_reported:
        first = first_report_due(profile, state)
        return (first, "first") if first is not None else None
    if state.bureau.correction_due:
        return (datetime.min.replace(tzinfo=timezone.utc), "correction")
    if not state.bureau.last_cycle:
        return None
    day = next_cycle_start(state, policy.bureau.report_day_of_month)
    return (datetime.combine(day, time(0, 0), tzinfo=clock.zone), "regular")


def _local_day_start(clock: LoanClock, day) -> datetime:
    return datetime.combine(day, time(0, 0), tzinfo=clock.zone)


def _plan_contacts(policy: Policy, state: LoanState, clock: LoanClock) -> list[Occurrence]:
    """A running plan's confirmation and each unpaid installment's reminder."""
    plan = state.active_plan
    channel = policy.plans.reminder_channel
    found = []
    done = set(state.done_steps)
    confirmation = keys.plan_confirmation_step(plan.plan_no)
    if confirmation not in done:
        accepted = _local_day_start(clock, plan.accepted_on)
        found.append(Occurrence(confirmation, state.stage, clock.days_past_due(accepted), channel, PLAN_CONFIRMATION, accepted))
    covered = plan.paid_under_plan(state.amount_paid)
    running = 0
    for installment in plan.installments:
        running += installment.amount
        key = keys.installment_reminder_step(plan.plan_no, installment.number)
        if covered >= running or key in done:
            continue
        day = installment.due_date - timedelta(days=policy.plans.reminder_days_before)
        at = datetime.combine(max(day, plan.accepted_on), policy.contact_time, tzinfo=clock.zone)
        found.append(Occurrence(key, state.stage, clock.days_past_due(at), channel, INSTALLMENT_REMINDER, at))
    return found


def _settlement_contacts(policy: Policy, state: LoanState, clock: LoanClock) -> list[Occurrence]:
    """An accepted settlement's confirmation and its reminder before pay_by
    (issue 18, item 4), on the policy's settlements.reminder_channel."""
    settlement = state.accepted_settlement
    channel = policy.settlements.reminder_channel
    done = set(state.done_steps)
    found = []
    confirmation = keys.settlement_confirmation_step(settlement.settlement_no)
    if confirmation not in done:
        accepted = _local_day_start(clock, settlement.decided_on)
        found.append(Occurrence(confirmation, state.stage, clock.days_past_due(accepted), channel, SETTLEMENT_CONFIRMATION, accepted))
    reminder, day = keys.settlement_reminder_step(settlement.settlement_no), reminder_day(policy, settlement)
    if day is not None and reminder not in done:
        at = datetime.combine(day, policy.contact_time, tzinfo=clock.zone)
        found.append(Occurrence(reminder, state.stage, clock.days_past_due(at), channel, SETTLEMENT_REMINDER, at))
    return found


def _visit_due(policy: Policy, profile: Profile, state: LoanState, clock: LoanClock, segment: Segment | None) -> datetime | None:
    """When the next field visit should be assigned (loan time), if ever."""
    rules = policy.field_visits
    if not rules.enabled or (segment is not None and not segment.field_visits) or state.open_visit is not None:
        return None
    if state.outstanding < rules.min_outstanding or state.stage not in STAGES:
        return None
    day = rules.from_day
    if state.visits:
        last = state.visits[-1].assigned_on
        day = max(day, clock.days_past_due(_local_day_start(clock, last)) + rules.every_days)
    return clock.at(day, policy.contact_time)


def _superseded(profile: Profile, upcoming: list[tuple[datetime, Occurrence]], now: datetime) -> Occurrence | None:
    """With `collapse_missed_steps`: of several steps of one channel due now
    (missed during a hold, a closed window, a cap), every one but the latest
    is superseded (issue 15, item 9: no burst of released calls). Notices and
    the borrower's own requests are never superseded."""
    if not profile.caps.collapse_missed_steps:
        return None
    due = [o for at, o in upcoming if at <= now and not keys.carried_across_stages(o.key)]
    for occurrence in due:
        if any(other.channel == occurrence.channel and other.at > occurrence.at for other in due):
            return occurrence
    return None


def _missed_from(state: LoanState, clock: LoanClock) -> datetime:
    """From when a step not done counts as missed: the loan's start (its
    clock's anchor), or a reopened run's reopening (issue 18, item 3: the
    loan stood closed before it, so nothing was missed then)."""
    reopened = state.reopened.at if state.reopened is not None else None
    return clock.anchor if reopened is None else max(clock.anchor, reopened)


def segment_facts(state: LoanState, days_past_due: int) -> SegmentFacts:
    return SegmentFacts(
        days_past_due=days_past_due, outstanding=state.outstanding, risk_score=state.risk_score,
        partial_payments=state.partial_payments, broken_promises=state.broken_promises,
    )


def segment_name(policy: Policy, state: LoanState, days_past_due: int) -> str:
    """The loan's segment now ("" when it matches none)."""
    segment = policy.segment_for(segment_facts(state, days_past_due))
    return segment.name if segment else ""


def _cadence(
    policy: Policy, clock: LoanClock, state: LoanState, segment: Segment | None, limits: legal.Limits | None,
    barred: bool = False,
) -> list[Occurrence]:
    """The contacts the loan's cadence plans: its stage's, or while a
    hardship lasts the policy's hardship cadence (issue 18, item 1); none
    after a request to cease communication (its final notice is apart). A
    time-barred loan held in the stage before legal (issue 18, item 2) keeps
    that stage's cadence until the write-off day."""
    if limits is None or limits.contacts == "all":
        end = policy.write_off_day if barred and state.stage == LAST_BEFORE_LEGAL else None
        return occurrences(policy, clock, state.stage, policy.start_day(state.stage, segment), segment, end)
    if limits.contacts != "hardship":
        return []
    hardship = limits.hardship
    base = (max(hardship.effective_date, hardship.since) - state.due_date).days
    end = (hardship.until - state.due_date).days
    found = []
    for index, step in enumerate(policy.legal_status.hardship.steps):
        day = base + step.day
        while day < end:
            found.append(Occurrence(
                key=keys.hardship_step(day, index, step.channel), stage=state.stage, day=day, channel=step.channel,
                template=step.template, at=clock.at(day, step.at or policy.contact_time),
            ))
            if not step.every_days:
                break
            day += step.every_days
    return sorted(found, key=lambda o: o.at)


def _cease_final_notice(policy: Policy, state: LoanState, clock: LoanClock, now: datetime) -> Occurrence | None:
    """12 CFR 1006.6(c)(1): after a request to cease communication, the one
    final notice the policy names (none when it names none), until it is
    recorded (sent, failed or skipped: it is never tried twice)."""
    rules = policy.legal_status
    if not rules.cease_final_notice_template:
        return None
    key = keys.cease_final_notice_step(rules.cease_final_notice_channel)
    if any(c.step == key for c in state.contacts):
        return None
    return Occurrence(
        key=key, stage=state.stage, day=clock.days_past_due(now), channel=rules.cease_final_notice_channel,
        template=rules.cease_final_notice_template, at=now,
    )


def next_action(policy: Policy, profile: Profile, state: LoanState, clock: LoanClock, now: datetime) -> Action:
    """The loan's next action and when, `now` being loan time (see LoanClock).

    A loan with no segment assigned (one that has not started yet, or a run
    from before segments: dunning/versions.py) is planned in the segment its
    facts match now."""
    today = clock.days_past_due(now)
    if state.segment is not None:
        segment = policy.segment(state.segment)  # as assigned at start and at each stage change
    else:
        segment = policy.segment_for(segment_facts(state, today))
    local_today = now.astimezone(clock.zone).date()

    # Bureau records go on during a hold: a dispute is reported as one (XB).
    # None for a time-barred debt past the FCRA obsolescence date (issue 18, item 2).
    reports = limitations.reports_to_bureau(state, local_today)
    bureau = _next_bureau_record(policy, profile, state, clock) if reports else None
    if bureau is not None and bureau[0] <= now:
        return Action("report_to_bureau", f"{bureau[1]} credit-bureau record ({profile.name} profile)", at=now, bureau_kind=bureau[1])
    # Under a bankruptcy's stay or after a death nothing moves (issue 18, item 1).
    if (plan := state.active_plan) is not None and not state.legal_hold:
        deadline = plan_deadline(policy, plan, state.amount_paid)
        if deadline is not None and deadline <= local_today:
            return Action("break_plan", f"an installment of plan {plan.plan_no} is unpaid past its grace days", at=now)
    promise = None if state.legal_hold else state.open_promise
    if promise is not None and promise_deadline(policy, promise) <= local_today:
        return Action("break_promise", f"promise {promise.promise_no} was not kept by {promise.by_date}", at=now)
    # A settlement's pay_by does not run out during a bankruptcy stay or
    # while a deceased borrower's estate is handled (as plans and promises).
    settlement = None if state.legal_hold else state.open_settlement
    if settlement is not None and settlement_deadline(policy, settlement) <= local_today and not settlement_paid(settlement, state.amount_paid):
        return Action("miss_settlement", f"settlement {settlement.settlement_no} was not paid by {settlement.pay_by}", at=now)

    # An agent task past its SLA is escalated, on hold too (a dispute's task
    # is the one that matters then).
    task = min(state.open_tasks, key=lambda t: t.due, default=None)
    if task is not None and task.due <= now:
        return Action("escalate_task", f"{task.kind} task past its SLA", at=now, task_key=task.key)

    if state.on_hold:
        # Wake at the next local midnight anyway, only to keep days past due
        # current for operators (the status query and DaysPastDue).
        at = clock.at(today + 1)
        if bureau is not None:
            at = min(at, bureau[0])
        if task is not None:
            at = min(at, task.due)
        return Action("hold", f"no contact or escalation: {_hold_reason(state)}", at=at)
    settled = state.accepted_settlement  # an accepted settlement waits for its pay_by, not for the write-off
    # A cease request or a hardship (issue 18, item 1): what they still allow.
    limits = legal.limits(profile, state)
    # A time-barred debt (issue 18, item 2): never the legal stage.
    barred = limitations.is_time_barred(state, local_today)

    def allowed(stage: str) -> bool:
        return (limits is None or limits.allows_stage(stage)) and not (barred and stage == "legal")
    if today >= policy.write_off_day and not state.in_court and settled is None and (limits is None or limits.write_off):
        return Action("write_off", f"day {today} reached write_off_day {policy.write_off_day}", at=now)

    plan = state.active_plan
    promise = state.open_promise
    candidates: list[tuple[datetime, str]] = []
    upcoming: list[tuple[datetime, Occurrence]] = []
    if plan is None and settled is None:
        if state.stage == STAGE_PENDING and today <= 0 and state.pre_due and policy.pre_due_for(segment) and limits is None:
            return Action("enter_stage", f"day {today}: placed before its due date, reminders first", at=now, stage=STAGE_PRE_DUE)
        due_stage = policy.stage_for_day(today, segment)
        if barred and due_stage == "legal":
            due_stage = LAST_BEFORE_LEGAL  # placed (or woken) time-barred in the legal stage's days
        if due_stage is not None and STAGES.index(due_stage) > state.stage_rank() and allowed(due_stage):
            start_day = policy.start_day(due_stage, segment)
            return Action("enter_stage", f"day {today}: {due_stage} starts on day {start_day}", at=now, stage=due_stage)
        visits = promise is None and not state.in_court and (limits is None or limits.visits)
        visit_at = _visit_due(policy, profile, state, clock, segment) if visits else None
        if visit_at is not None and visit_at <= now:
            return Action("assign_visit", f"field visit from day {policy.field_visits.from_day} ({policy.name} policy)", at=now)
        if visit_at is not None:
            candidates.append((visit_at, "a field visit assignment"))

        # Contacts of the current stage from today on (missed days are not
        # replayed), and those postponed by a compliance rule from earlier
        # days. None while a promise is open or a court case runs.
        notice, progress = _validation_notice(profile, state, clock, now)
        notice = notice or _requested_pay_link(state, clock, now) or (
            _bureau_notice(policy, profile, state, clock, now, segment) if reports else None)
        if progress.wake is not None:
            candidates.append((progress.wake, "the validation notice's delivery report"))
        if notice is not None:
            upcoming.append((state.deferred.get(notice.key, now), notice))
        elif progress.blocks_collection:
            pass  # the notice goes first and alone, and must be provided before collection
        elif state.stage in STAGE_NAMES and promise is None and not state.in_court:
            done = set(state.done_steps)
            for o in _cadence(policy, clock, state, segment, limits, barred):
                if o.key not in done and (o.day >= today or o.key in state.deferred):
                    upcoming.append((max(o.at, state.deferred.get(o.key, o.at)), o))
                elif o.key not in done and profile.caps.collapse_missed_steps and _missed_from(state, clock) <= o.at:
                    # A whole day of it passed while the loan could not be
                    # contacted (a hold, a promise, the notice not provided
                    # yet): not replayed, but shown (issue 15, items 9, 10).
                    return Action(
                        "skip", f"day {o.day} passed while the loan could not be contacted: not replayed",
                        at=now, occurrence=o, skip_result="skipped_missed",
                    )
        later = [s for s in STAGES if STAGES.index(s) > state.stage_rank() and allowed(s)]
        if later:
            start_day = policy.start_day(later[0], segment)
            candidates.append((clock.at(start_day), f"{later[0]} stage on day {start_day}"))
        if promise is not None:
            candidates.append((_local_day_start(clock, promise_deadline(policy, promise)), f"promise {promise.promise_no} due by {promise.by_date}"))
    elif plan is not None:
        # A running plan: no escalation, only its own messages.
        notice = _requested_pay_link(state, clock, now)
        if notice is not None:
            upcoming.append((state.deferred.get(notice.key, now), notice))
        for o in _plan_contacts(policy, state, clock):
            upcoming.append((max(o.at, state.deferred.get(o.key, o.at)), o))
        deadline = plan_deadline(policy, plan, state.amount_paid)
        if deadline is not None:
            candidates.append((_local_day_start(clock, deadline), f"the grace days of plan {plan.plan_no}'s next installment to end"))
    else:
        # An accepted settlement (issue 18, item 4): no escalation, only its own messages.
        if settlement_paid(settled, state.amount_paid):  # paid since the loop's bookkeeping: it ends the loan
            return Action("wait", f"settlement {settled.settlement_no} is paid", at=now)
        notice = _requested_pay_link(state, clock, now)
        if notice is not None:
            upcoming.append((state.deferred.get(notice.key, now), notice))
        for o in _settlement_contacts(policy, state, clock):
            upcoming.append((max(o.at, state.deferred.get(o.key, o.at)), o))
    if settlement is not None and not settlement_paid(settlement, state.amount_paid):
        # Pending approval or accepted: missed when its pay_by day has passed.
        candidates.append((_local_day_start(clock, settlement_deadline(policy, settlement)),
                           f"settlement {settlement.settlement_no} due by {settlement.pay_by}"))
    if limits is not None and limits.contacts == "final_notice":
        # A request to cease communication: its one final notice, nothing else.
        final = _cease_final_notice(policy, state, clock, now)
        upcoming = [(state.deferred.get(final.key, now), final)] if final is not None else []
    if limits is not None and limits.hardship is not None:
        until = limits.hardship.until
        candidates.append((_local_day_start(clock, until), f"the hardship's end on {until} (collection resumes)"))
    if state.limitation is not None and not barred:
        # The day the debt becomes time-barred (issue 18, item 2): woken then,
        # on the right local day, whatever else it waits for.
        on = limitations.time_barred_on(state.limitation)
        candidates.append((_local_day_start(clock, on), f"the debt becoming time-barred on {on}"))
    upcoming.sort(key=lambda pair: pair[0])

    if upcoming and upcoming[0][0] <= now:
        occurrence = upcoming[0][1]
        superseded = _superseded(profile, upcoming, now)
        if superseded is not None:
            return Action(
                "skip", f"a later {superseded.channel} step is due too: missed steps are collapsed, not replayed",
                at=now, occurrence=superseded, skip_result="skipped_superseded",
            )
        if state.channel_opted_out(occurrence.channel):
            return Action(
                "skip", f"borrower opted out of {occurrence.channel}", at=now, occurrence=occurrence,
                skip_result="skipped_opt_out",
            )
        if segment is not None and occurrence.channel in segment.skip_channels:
            return Action(
                "skip", f"segment {segment.name} skips {occurrence.channel}", at=now, occurrence=occurrence,
                skip_result="skipped_segment",
            )
        held_until = notices.held_for_validation_period(profile, state, occurrence.template, local_today)
        if held_until is not None:
            return Action(
                "defer", f"the validation period runs until {state.validation.period_ends}: a {occurrence.template} would "
                "overshadow the consumer's rights (12 CFR 1006.38(b))",
                at=_local_day_start(clock, held_until), occurrence=occurrence, rule="validation_period",
            )
        history = [PastContact(c.loan_at, c.channel, c.result) for c in state.contacts]
        permit = check_contact(profile, occurrence.channel, now, history, state.zones if state.contact_zones else ())
        if not permit.allowed and permit.not_before is None:
            return Action("skip", permit.reason, at=now, occurrence=occurrence, skip_result=f"skipped_{permit.rule}")
        if not permit.allowed:
            return Action("defer", permit.reason, at=permit.not_before, occurrence=occurrence, rule=permit.rule)
        return Action("contact", f"{state.stage} step due on day {occurrence.day}", at=now, occurrence=occurrence)

    # Nothing due now: wake at the earliest of the next contact, the next
    # bureau record, the next stage's first day, a plan's or promise's
    # deadline, or the write-off day.
    if upcoming:
        at, o = upcoming[0]
        postponed = " (postponed by a compliance rule)" if o.key in state.deferred else ""
        candidates.append((at, f"{o.channel} {o.template} on day {o.day}{postponed}"))
    if bureau is not None:
        candidates.append((bureau[0], f"the {bureau[1]} credit-bureau record"))
    if task is not None:
        candidates.append((task.due, f"the SLA of a {task.kind} task"))
    if not state.in_court and settled is None and (limits is None or limits.write_off):
        candidates.append((clock.at(policy.write_off_day), f"write-off on day {policy.write_off_day}"))
    if not candidates:
        return Action("wait", "waiting for the court's outcome (legal_outcome)", at=clock.at(today + 30))
    at, what = min(candidates, key=lambda c: c[0])
    return Action("wait", f"waiting for {what}", at=at)
