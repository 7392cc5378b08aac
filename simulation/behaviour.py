"""Borrowers acting out their behaviour (simulation/portfolio.py) by looking at
their loan's `status` and answering what the workflow did.

A Borrower is asked to `look` on the days it chose (`next_look`, a day past
due in its own zone) with the loan's status; it answers with acts (a
repayment signal, a promise or a plan update, a dispute...), which the runner
sends. Triggers are the contacts that went out since it last looked: "the
first voice call", "a plan offer", "the bureau notice". While it waits for a
trigger it looks again when the workflow next wakes (`next_action_at`), so a
loan that is quiet for two weeks is not queried every day; a borrower with
nothing left to do (`next_look` None) is never queried again.

Days are the loan's days past due in the borrower's zone: calendar days on a
real clock, or, given the loan's `clock` (dunning/clock.py), days of a fast
demo clock, on which the demo's borrowers (scripts/demo.py) act.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from zoneinfo import ZoneInfo

from dunning.clock import LoanClock
from dunning.money import minor_units
from dunning.policy import Policy, PlanOffer
from simulation.portfolio import (
    BREAKS_PROMISE,
    DISPUTES,
    KEEPS_PROMISE,
    PARTIAL_PAYER,
    PAYS_AFTER_CALL,
    PAYS_ON_REMINDER,
    TAKES_PLAN,
    SyntheticLoan,
)

# Triggers: which contacts move a borrower.
REMINDER = "a reminder"
VOICE = "a voice call"
COLLECTIONS = "a contact of the call stage or later"
PLAN_OFFER = "a plan offer"
BUREAU_NOTICE = "the bureau notice"
ANY = "any contact"

_NOT_OUT = ("failed", "undelivered", "bounced")
_FALLBACK_OFFER = PlanOffer(installments=3, interval_days=30, first_due_in_days=7)


# Reminders: before the due date (a loan placed early) and in the first stage.
_REMINDER_STAGES = ("pre_due", "reminder")


def _matches(trigger: str, contact: dict) -> bool:
    if trigger == REMINDER:
        return contact["stage"] in _REMINDER_STAGES
    if trigger == VOICE:
        return contact["channel"] == "voice"
    if trigger == COLLECTIONS:
        return contact["stage"] not in _REMINDER_STAGES
    if trigger == PLAN_OFFER:
        return contact["template"] == "plan_offer"
    if trigger == BUREAU_NOTICE:
        return contact["template"] == "bureau_notice"
    return True


@dataclass(frozen=True)
class Act:
    """Something the borrower (or, for a dispute's resolution, an operator) sends."""

    kind: str  # repayment | promise_to_pay | propose_plan | dispute | dispute_resolved
    payload: dict
    note: str


@dataclass
class Borrower:
    loan: SyntheticLoan
    policy: Policy
    next_look: int | None = 1
    seen: int = 0  # contacts already looked at
    waiting: str | None = None  # the trigger awaited
    deadline: int | None = None  # past this day the trigger no longer works (patience)
    todo: str | None = None  # the act due on day `due`
    due: int = 0
    todo_trigger: str | None = None  # what the act answers
    installments: list[dict] = field(default_factory=list)  # plan installments still to pay
    promises_left: int = 0
    promise_by: int = 0
    payments: int = 0
    done: bool = False
    closed: bool = False
    log: list[str] = field(default_factory=list)  # "d9: promise 1200.00 by d14", ...
    rejections: list[str] = field(default_factory=list)
    # The loan's clock, for a loan on a fast one (the demo's); None: calendar days.
    clock: LoanClock | None = None

    def __post_init__(self) -> None:
        b = self.loan.behaviour
        self.zone = ZoneInfo(self.loan.time_zone)
        self.promises_left = b.promises
        if b.kind == PAYS_ON_REMINDER:
            self.waiting = REMINDER
        elif b.kind == PAYS_AFTER_CALL:
            self.waiting, self.deadline = VOICE, b.patience_days
        elif b.kind == TAKES_PLAN:
            self.waiting = PLAN_OFFER
        elif b.kind in (BREAKS_PROMISE, KEEPS_PROMISE, DISPUTES):
            self.waiting = COLLECTIONS
        elif b.kind == PARTIAL_PAYER:
            self.waiting, self.deadline = COLLECTIONS, b.patience_days
        else:  # never_pays: never looks
            self.next_look, self.done = None, True

    # ----------------------------------------------------------- the calendar

    def day_of(self, instant: datetime) -> int:
        """Days past due of a real instant, in the borrower's zone (on the loan's clock, if it has one)."""
        if self.clock is not None:
            return self.clock.days_past_due(self.clock.loan_time(instant))
        return (instant.astimezone(self.zone).date() - self.loan.due_date).days

    def date_of(self, day: int) -> date:
        return self.loan.due_date + timedelta(days=day)

    def day_on(self, on: date) -> int:
        return (on - self.loan.due_date).days

    # ----------------------------------------------------------- looking

    def look(self, now: datetime, status: dict) -> list[Act]:
        """What to send now, given the loan's status; sets `next_look`."""
        day = self.day_of(now)
        if status.get("stage") == "closed":
            self.next_look, self.done, self.closed = None, True, True
            return []
        contacts = status.get("contacts") or []
        for contact in contacts[self.seen:]:
            if contact["result"] in _NOT_OUT or contact["result"].startswith("skipped"):
                continue
            sent = self.day_of(datetime.fromisoformat(contact["at"]))
            if self.waiting is not None and _matches(self.waiting, contact):
                self._triggered(sent, contact)
        self.seen = len(contacts)
        if self.waiting is not None and self.deadline is not None and day > self.deadline:
            self._too_late(day)
        acts: list[Act] = []
        if self.todo == "check_promise" and day >= self.due:
            self.todo = None
            self._promise_checked(day, status)
        if self.todo is not None and day >= self.due:
            act = self._act(day, status)
            if act is not None:
                acts.append(act)
        self._plan_next_look(day, status)
        return acts

    def _plan_next_look(self, day: int, status: dict) -> None:
        if self.done:
            self.next_look = None
        elif self.todo is not None and self.due > day:
            self.next_look = self.due
        elif self.todo is not None:
            self.next_look = day + 1  # an act that waits for an answer
        else:
            # Waiting for the workflow to do something: look when it next wakes.
            wake = status.get("next_action_at")
            self.next_look = max(day + 1, self.day_of(datetime.fromisoformat(wake))) if wake else day + 1
            if self.deadline is not None and self.waiting is not None:
                self.next_look = min(self.next_look, max(day + 1, self.deadline + 1))

    # ----------------------------------------------------------- triggers

    def _triggered(self, sent: int, contact: dict) -> None:
        b = self.loan.behaviour
        trigger, self.waiting, deadline, self.deadline = self.waiting, None, self.deadline, None
        self.log.append(f"d{sent}: saw {trigger} ({contact['channel']} {contact['template']})")
        if deadline is not None and sent > deadline:
            self._too_late(sent)
            return
        if b.kind == PAYS_ON_REMINDER:
            self._schedule("pay_full", sent + b.delay_days)
        elif b.kind == PAYS_AFTER_CALL:
            self._schedule("pay_full", sent + (b.later_delay_days if trigger == BUREAU_NOTICE else b.delay_days))
        elif b.kind == TAKES_PLAN:
            self._schedule("propose_plan", sent + b.delay_days)
        elif b.kind == BREAKS_PROMISE:
            if trigger == BUREAU_NOTICE:
                self._schedule("pay_full", sent + b.later_delay_days)
            else:
                self._schedule("promise", sent)
        elif b.kind == KEEPS_PROMISE:
            self._schedule("promise", sent)
        elif b.kind == PARTIAL_PAYER:
            self._schedule("pay_fraction", sent + (b.later_delay_days if trigger == BUREAU_NOTICE else b.delay_days), trigger)
        elif b.kind == DISPUTES:
            if trigger == ANY:
                self._schedule("pay_full", sent + b.later_delay_days)
            else:
                self._schedule("dispute", sent + b.delay_days)

    def _too_late(self, day: int) -> None:
        """The trigger came after the borrower's patience, or not at all."""
        b = self.loan.behaviour
        self.waiting, self.deadline = None, None
        self.log.append(f"d{day}: not reached by day {b.patience_days}")
        if b.kind == PARTIAL_PAYER or (b.kind == PAYS_AFTER_CALL and b.pays_later):
            self.waiting = BUREAU_NOTICE
        else:
            self.done = True

    def _schedule(self, todo: str, day: int, trigger: str | None = None) -> None:
        self.todo, self.due, self.todo_trigger = todo, day, trigger

    # ----------------------------------------------------------- acts

    def _act(self, day: int, status: dict) -> Act | None:
        todo, self.todo = self.todo, None
        b = self.loan.behaviour
        currency = self.loan.currency
        outstanding = Decimal(status["outstanding"])
        if outstanding <= 0:
            self.done = True
            return None
        if todo == "pay_full":
            self.done = True
            return self._payment(day, outstanding, "pays in full")
        if todo == "pay_fraction":
            unit = Decimal(1).scaleb(-minor_units(currency))
            amount = max(unit, (outstanding * Decimal(b.fraction)).quantize(unit, rounding=ROUND_DOWN))
            if self.todo_trigger == BUREAU_NOTICE:
                self.done = True  # the second share, or the only one of a borrower reached late
            else:
                self.waiting = BUREAU_NOTICE
            return self._payment(day, min(amount, outstanding), f"pays {b.fraction} of the balance")
        if todo == "pay_installment":
            installment = self.installments.pop(0)
            amount = min(Decimal(installment["amount"]), outstanding)
            act = self._payment(day, amount, f"pays installment {installment['number']}")
            self._next_installment(day)
            return act
        if todo == "propose_plan":
            offers = self.policy.plans.offers
            offer = offers[b.plan_offer] if b.plan_offer < len(offers) else (offers[0] if offers else _FALLBACK_OFFER)
            payload = {
                "installments": offer.installments,
                "first_due_date": self.date_of(day + offer.first_due_in_days).isoformat(),
                "interval_days": offer.interval_days,
                "waive_fees": offer.waive_fees,
                "waive_interest": offer.waive_interest,
            }
            return Act("propose_plan", payload, f"accepts the plan offer of {offer.installments} installments")
        if todo == "promise":
            by = day + b.promise_days
            self.promise_by = by
            payload = {"amount": f"{outstanding:f}", "by_date": self.date_of(by).isoformat()}
            return Act("promise_to_pay", payload, f"promises {outstanding:f} by day {by}")
        if todo == "dispute":
            self._schedule("dispute_resolved", day + b.resolve_after_days)
            return Act("dispute", {"reason": "amount"}, "disputes the amount")
        if todo == "dispute_resolved":
            if b.upheld:
                self.done = True
            elif b.pays_later:
                self.waiting = ANY
            else:
                self.done = True
            return Act("dispute_resolved", {"upheld": b.upheld}, f"an operator resolves the dispute: upheld {b.upheld}")
        raise AssertionError(f"unknown act {todo}")

    def _payment(self, day: int, amount: Decimal, note: str) -> Act:
        self.payments += 1
        payload = {
            "payment_id": f"{self.loan.loan_id}-P{self.payments}",
            "amount": f"{amount:f}",
            "currency": self.loan.currency,
        }
        return Act("repayment", payload, f"{note}: {amount:f}")

    def _next_installment(self, day: int) -> None:
        breaks_at = self.loan.behaviour.breaks_at
        if not self.installments or (breaks_at is not None and self.installments[0]["number"] >= breaks_at):
            if self.installments:
                self.log.append(f"d{day}: stops paying at installment {self.installments[0]['number']}")
            self.installments, self.done = [], True
            return
        installment = self.installments[0]
        pay_day = self.day_on(date.fromisoformat(installment["due_date"])) - self.loan.behaviour.lead_days
        self._schedule("pay_installment", max(pay_day, day))

    # ----------------------------------------------------------- answers

    def answered(self, act: Act, day: int, answer: object = None, error: str | None = None) -> None:
        """The outcome of an act the runner sent."""
        if error is not None:
            self.rejections.append(f"d{day}: {act.kind} {act.payload}: {error}")
            self.log.append(f"d{day}: {act.kind} refused: {error}")
            if act.kind == "promise_to_pay":
                self._promise_over(day)
            elif act.kind == "propose_plan":
                self.done = True
            self._after_answer(day)
            return
        self.log.append(f"d{day}: {act.note}")
        if act.kind == "propose_plan" and isinstance(answer, dict):
            self.installments = [i for i in answer.get("installments", []) if not i.get("paid_on")]
            self._next_installment(day)
        elif act.kind == "promise_to_pay" and self.loan.behaviour.kind == KEEPS_PROMISE:
            self._schedule("pay_full", max(day, self.promise_by - self.loan.behaviour.lead_days))
        elif act.kind == "promise_to_pay":
            # Look the day after the promise counts as broken (by_date + grace + 1).
            self._schedule("check_promise", self.promise_by + self.policy.promises.grace_days + 1)
        self._after_answer(day)

    def _after_answer(self, day: int) -> None:
        if self.done:
            self.next_look = None
        elif self.todo is not None:
            self.next_look = max(self.due, day + 1)

    def _promise_checked(self, day: int, status: dict) -> None:
        promise = status.get("promise") or {}
        if promise.get("status") == "broken":
            self.log.append(f"d{day}: promise {promise.get('promise_no')} broken")
        self._promise_over(day)

    def _promise_over(self, day: int) -> None:
        b = self.loan.behaviour
        self.promises_left -= 1
        if self.promises_left > 0:
            self.waiting = COLLECTIONS
        elif b.pays_later:
            self.waiting = BUREAU_NOTICE
        else:
            self.done = True

