"""One borrower's loans driven together, as their workflows and the send
activity would drive them, without Temporal or a database.

`walk_borrower` is `tests/support/planner.py`'s `walk` for several loans of one
borrower at once: each loan asks the pure planner (`dunning.planner.next_action`)
for its next action and does it through the workflow's own transitions
(dunning/transitions/), in time order across the loans (whichever loan's next
action is earliest goes first). Signals (holds, opt-outs, providers' reports)
are applied at their moments through the same transitions the workflow's
signal handlers call, and the loan they reach plans again at once, as the
workflow wakes on a signal.

What the send activity adds at send time is modelled here, in `SendModel`:

- the per-borrower call checks of db/outbox.py (`claim` -> `_write`): first
  `next_call_allowed` (a call at least `min_minutes_between_calls` after the
  borrower's last call sent, across their loans; a provider call is
  instantaneous here, so there is never one "in flight"), then
  `voice_calls_today` (at most `voice_attempts_per_day_per_borrower` calls
  sent on the borrower's local day, in the directory's zone, across their
  loans). A refusal turns the planned contact into a deferral exactly as
  the workflow does with the activity's `deferred` outcome
  (workflows/dunning.py `_contact`: `contact_deferred` until the outcome's
  `not_before`, with its rule). The database code itself is tested on real
  SQLite and PostgreSQL in tests/test_call_cap_concurrency.py;
- the activity's own window check in the zones read at the contact
  (activities/outbox.py `_outside_window`): the directory does not change
  here, so it must never hold what the planner decided; a hold it would make
  is recorded in `Walk.activity_window_holds` (a planner bug) and done as the
  activity does;
- recipients: a borrower without an e-mail address (or a mailing address)
  gets `skipped_no_address`, as the outbox records it; a provider may refuse
  a message (`failed`).

Everything is deterministic: times come from the lifecycle, never from a
wall clock, and the loans' clocks run on real time (day_seconds 86400), so
loan time and real time are the same instant.
"""

from __future__ import annotations

import heapq
import itertools
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from dunning import notice
from dunning.clock import LoanClock
from dunning.compliance import Profile, next_opening_in_all
from dunning.inputs import (
    ComplaintResolvedSignal, ComplaintSignal, ContactOutcomeSignal, DisputeResolvedSignal, DisputeSignal, HoldSignal,
    OptOutSignal, VerificationSentSignal,
)
from dunning.planner import Occurrence, next_action
from dunning.policy import Policy
from dunning.state import LoanState
from dunning.transitions import contacts, holds, plans, stages, visits
from dunning.transitions.records import Moment, Rules

# --------------------------------------------------------------------- events

SIGNALS = {
    "pause": (HoldSignal, holds.pause),
    "resume": (HoldSignal, holds.resume),
    "dispute": (DisputeSignal, holds.open_dispute),
    "dispute_resolved": (DisputeResolvedSignal, holds.resolve_dispute),
    "verification_sent": (VerificationSentSignal, holds.verification_sent),
    "complaint": (ComplaintSignal, holds.open_complaint),
    "complaint_resolved": (ComplaintResolvedSignal, holds.resolve_complaint),
    "opt_out": (OptOutSignal, contacts.opt_out),
    "contact_outcome": (ContactOutcomeSignal, contacts.contact_outcome),
}


@dataclass(frozen=True)
class Event:
    """A signal to loans `loans` (indexes) at `at` (an aware instant)."""

    at: datetime
    kind: str  # a key of SIGNALS
    loans: tuple[int, ...]
    payload: dict = field(default_factory=dict)

    def describe(self) -> str:
        return f"{self.at.isoformat()} {self.kind} {dict(self.payload)} -> loans {list(self.loans)}"


# ----------------------------------------------------------------- the loans


@dataclass
class LoanSpec:
    """One loan of the borrower as placed: its policy, due date, amount and
    the moment its workflow starts."""

    policy: Policy
    due: object  # date
    amount: str
    start: datetime
    risk_score: int | None = None


@dataclass
class Borrower:
    """What the directory holds of the borrower: zones (primary first) and
    which addresses exist (phone and app always)."""

    zones: tuple[str, ...]
    has_email: bool = True
    has_address: bool = True
    borrower_id: str = "B-1"

    @property
    def primary(self) -> str:
        return self.zones[0]


@dataclass
class Sent:
    """A message handed to a provider (what the invariants are checked on)."""

    loan: int
    at: datetime
    channel: str
    template: str
    step: str


@dataclass
class LoanRun:
    index: int
    spec: LoanSpec
    state: LoanState
    profile: Profile
    clock: LoanClock
    rules: Rules
    wake: datetime
    ended_at: datetime | None = None
    outcome: str = ""
    # Every step key the planner proposed (contact, skip or defer).
    proposed: set[str] = field(default_factory=set)
    # (stage, entered at, segment after entering)
    entries: list[tuple[str, datetime, str | None]] = field(default_factory=list)
    # (at, channel) for each opt-out this loan received.
    opt_outs: list[tuple[datetime, str]] = field(default_factory=list)
    # (at, on hold after the signal): an independent model of the holds.
    hold_changes: list[tuple[datetime, bool]] = field(default_factory=list)
    # When the validation notice was first provided (a letter mailed, an
    # e-mail reported delivered), by the driver's own reckoning.
    notice_provided_at: datetime | None = None
    rejected: list[str] = field(default_factory=list)
    # The independent hold model.
    _paused: bool = False
    _disputed: bool = False
    _complaints: set = field(default_factory=set)
    _awaiting_verification: bool = False

    @property
    def policy(self) -> Policy:
        return self.spec.policy

    def moment(self, now: datetime) -> Moment:
        return Moment(f"dunning-{self.state.loan_id}", "run-1", now, self.clock)

    def on_hold_model(self) -> bool:
        return self._paused or self._disputed or bool(self._complaints) or self._awaiting_verification


class SendModel:
    """The send activity's per-borrower checks (db/outbox.py) and recipients."""

    def __init__(self, borrower: Borrower, profile: Profile, refuse) -> None:
        self.borrower = borrower
        self.zone = ZoneInfo(borrower.primary)
        self.cap = profile.caps.voice_attempts_per_day_per_borrower
        self.spacing = profile.caps.min_minutes_between_calls
        self.calls: list[datetime] = []  # calls sent (outbox status `sent`), across the loans
        self.refuse = refuse  # (channel) -> bool: the provider refuses this message

    def call_deferral(self, at: datetime) -> tuple[datetime, str, str] | None:
        """db/outbox.py `_write`: spacing (`next_call_allowed`), then the daily
        cap (`voice_calls_today`); (not_before, rule, detail) or None."""
        if not (self.cap or self.spacing):
            return None
        if self.spacing:
            gap = timedelta(minutes=self.spacing)
            recent = [c for c in self.calls if c > at - gap]
            if recent:
                return max(recent) + gap, "call_spacing", f"call spacing: another call to the borrower within {self.spacing} minutes"
        if self.cap:
            today = at.astimezone(self.zone).date()
            calls = sum(1 for c in self.calls if c.astimezone(self.zone).date() == today)
            if calls >= self.cap:
                midnight = datetime.combine(today + timedelta(days=1), time(0), tzinfo=self.zone)
                return midnight, "voice_daily_cap", f"voice cap: {calls} calls today across the borrower's loans"
        return None

    def result(self, channel: str) -> str:
        """The outbox's status for a message that was not deferred."""
        if channel == "email" and not self.borrower.has_email:
            return "skipped_no_address"
        if channel == "letter" and not self.borrower.has_address:
            return "skipped_no_address"
        if self.refuse(channel):
            return "failed"
        return "sent"


@dataclass
class Walk:
    """What happened to one borrower's loans."""

    borrower: Borrower
    profile: Profile
    loans: list[LoanRun]
    sent: list[Sent]
    events: list[Event]  # every signal applied, in order (the lifecycle's and the providers')
    horizon: datetime
    activity_window_holds: list[str] = field(default_factory=list)
    actions: int = 0
    # Deferrals by rule (the planner's, and the send model's call_spacing /
    # voice_daily_cap), to show which rules the lifecycle made act.
    deferrals: Counter = field(default_factory=Counter)


# ------------------------------------------------------------------ the walk


def walk_borrower(
    borrower: Borrower,
    profile: Profile,
    specs: list[LoanSpec],
    script: list[Event],
    horizon: datetime,
    report,
    refuse=lambda channel: False,
    max_actions: int = 200_000,
) -> Walk:
    """Drive the loans of `specs` until `horizon` (an aware instant), applying
    the `script`'s signals at their moments.

    `report(sent: Sent) -> list[tuple[timedelta, str]]`: what the provider
    reports later about a message that went out (a call's outcome, an
    e-mail's delivery), as (delay, result) pairs; each becomes a
    `contact_outcome` signal to that loan after the delay."""
    sender = SendModel(borrower, profile, refuse)
    loans = []
    for index, spec in enumerate(specs):
        state = LoanState(
            loan_id=f"L-{index + 1}", borrower_id=borrower.borrower_id, amount_due=spec.amount, currency="USD",
            due_date=spec.due, policy=spec.policy.name, time_zone=borrower.primary, contact_zones=list(borrower.zones),
            risk_score=spec.risk_score,
        )
        state.clock_anchor = spec.start
        clock = LoanClock(spec.start, state.time_zone, state.due_date, spec.policy.day_seconds)
        terms = stages.begin(state, spec.policy, profile, clock, clock.loan_time(spec.start))
        loan = LoanRun(index, spec, state, profile, clock, Rules(spec.policy, profile, terms), wake=spec.start)
        loan.hold_changes.append((spec.start, False))
        loans.append(loan)

    walk = Walk(borrower, profile, loans, [], [], horizon)
    counter = itertools.count()
    pending: list[tuple[datetime, int, Event]] = [(e.at, next(counter), e) for e in script]
    heapq.heapify(pending)

    def schedule(event: Event) -> None:
        heapq.heappush(pending, (event.at, next(counter), event))

    while True:
        live = [loan for loan in loans if loan.ended_at is None and loan.wake < horizon]
        next_event = pending[0][0] if pending else None
        loan = min(live, key=lambda l: (l.wake, l.index)) if live else None
        if next_event is not None and next_event < horizon and (loan is None or next_event <= loan.wake):
            _, _, event = heapq.heappop(pending)
            _apply_signal(walk, event)
            continue
        if loan is None:
            return walk
        walk.actions += 1
        if walk.actions > max_actions:
            raise AssertionError("the planner did not finish (too many actions)")
        _step(walk, loan, sender, schedule, report)


def _apply_signal(walk: Walk, event: Event) -> None:
    model, transition = SIGNALS[event.kind]
    walk.events.append(event)
    for index in event.loans:
        loan = walk.loans[index]
        if loan.ended_at is not None or event.at < loan.spec.start:
            continue
        state = loan.state
        try:
            transition(state, model.model_validate(event.payload), loan.moment(event.at))
        except holds.SignalRejected as error:  # kept in rejected_signals by the workflow, never a crash
            loan.rejected.append(f"{event.kind}: {error}")
            continue
        # The independent model of holds and opt-outs (the invariants' side).
        kind = event.kind
        if kind == "pause":
            loan._paused = True
        elif kind == "resume":
            loan._paused = False
        elif kind == "dispute":
            loan._disputed = True
            validation = state.validation
            # Whether the dispute fell in the validation period is the
            # transition's call (1006.38(d)(2)); from then on the hold is ours.
            if validation is not None and validation.verification_required and validation.verification_sent_on is None:
                loan._awaiting_verification = True
        elif kind == "dispute_resolved":
            loan._disputed = False
        elif kind == "verification_sent":
            loan._awaiting_verification = False
        elif kind == "complaint":
            loan._complaints.add(event.payload["complaint_id"])
        elif kind == "complaint_resolved":
            loan._complaints.discard(event.payload["complaint_id"])
        elif kind == "opt_out":
            loan.opt_outs.append((event.at, event.payload["channel"]))
        elif kind == "contact_outcome":
            entry = next((c for c in reversed(state.contacts) if c.step == event.payload["step"]), None)
            if (
                entry is not None and entry.template == notice.VALIDATION_NOTICE
                and event.payload["result"] in notice.DELIVERED_RESULTS and loan.notice_provided_at is None
            ):
                loan.notice_provided_at = event.at
        loan.hold_changes.append((event.at, loan.on_hold_model()))
        # The workflow wakes on a signal and plans again.
        loan.wake = min(loan.wake, event.at)


def _step(walk: Walk, loan: LoanRun, sender: SendModel, schedule, report) -> None:
    """One turn of the workflow's loop for `loan` at its wake time."""
    now = loan.wake
    state, policy, profile, clock = loan.state, loan.policy, loan.profile, loan.clock
    moment = loan.moment(now)
    loan_now = moment.loan_now
    plans.bookkeep(state, loan.rules, moment)
    notice.bookkeep(profile, state, clock.zone)
    outcome = stages.ending(state)
    if outcome is not None:
        loan.ended_at, loan.outcome = now, outcome
        return
    action = next_action(policy, profile, state, clock, loan_now)
    o = action.occurrence
    if o is not None:
        loan.proposed.add(o.key)
    kind = action.kind
    if kind in ("wait", "hold"):
        wake = clock.real_time(action.at)
        assert wake > now, f"a {kind} must move time forward: {action}"
        loan.wake = wake
    elif kind == "write_off":
        loan.ended_at, loan.outcome = now, "written_off"
    elif kind == "enter_stage":
        stages.enter_stage(state, action.stage, policy, clock, loan_now, moment).then()
        loan.entries.append((action.stage, now, state.segment))
    elif kind == "report_to_bureau":
        stages.bureau_record(state, clock, loan_now, moment, action.bureau_kind).then()
    elif kind == "defer":
        walk.deferrals[action.rule] += 1
        contacts.contact_deferred(state, o.key, action.at, action.rule, action.reason, o.channel, moment)
    elif kind == "skip":
        contacts.contact_skipped(state, o, action.skip_result, action.reason, moment, loan_now)
    elif kind == "contact":
        _send(walk, loan, o, now, loan_now, moment, sender, schedule, report)
    elif kind == "assign_visit":
        visits.visit_assignment(state, loan.rules, loan_now, moment).then()
    elif kind == "break_plan":
        plans.break_plan(state, loan_now, moment)
    elif kind == "break_promise":
        plans.end_promise(state, policy, loan_now, moment, kept=False)
    else:
        raise AssertionError(f"unknown action {action}")


def _send(walk: Walk, loan: LoanRun, o: Occurrence, now: datetime, loan_now: datetime, moment: Moment,
          sender: SendModel, schedule, report) -> None:
    """The send activity and what the workflow does with its outcome
    (workflows/dunning.py `_contact`)."""
    state, profile = loan.state, loan.profile
    # activities/outbox.py `_outside_window`, in the zones the directory gives now.
    opening = next_opening_in_all(profile.window, loan_now, walk.borrower.zones)
    if opening != loan_now:
        walk.activity_window_holds.append(f"loan {loan.index} {o.key} at {loan_now.isoformat()}")
        contacts.contact_deferred(state, o.key, opening or loan_now + timedelta(days=1), "window",
                                  "outside the window, read at this contact", o.channel, moment)
        return
    if o.channel == "voice":
        deferral = sender.call_deferral(now)
        if deferral is not None:
            not_before, rule, detail = deferral
            walk.deferrals[f"{rule} (send time)"] += 1
            contacts.contact_deferred(state, o.key, loan.clock.loan_time(not_before), rule, detail, o.channel, moment)
            return
    result = sender.result(o.channel)
    contacts.contact_recorded(state, o, result, moment, loan_now)
    if result != "sent":
        return
    sent = Sent(loan.index, now, o.channel, o.template, o.key)
    walk.sent.append(sent)
    if o.channel == "voice":
        sender.calls.append(now)
    if o.template == notice.VALIDATION_NOTICE and o.channel == "letter" and loan.notice_provided_at is None:
        loan.notice_provided_at = now  # 1006.42(a): mailed, the notice is provided
    for delay, outcome in report(sent):
        schedule(Event(now + delay, "contact_outcome", (loan.index,), {"step": o.key, "result": outcome}))
