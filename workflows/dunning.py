"""DunningWorkflow: one overdue loan, from the first reminder to its end.

The loop asks the pure planner (dunning/planner.py) what to do next and when,
waits durably until then (waking early when a signal changes something), has
an activity do it, records the result in the state, and asks again. Signals
and updates parse their payload, apply a transition (dunning/transitions/)
and queue the records it returns; every decision is the planner's. What a
run recorded by older code does differently is dunning/versions.py's.
"""

# No `from __future__ import annotations` in the workflow modules: the
# sandbox runs this module again for every workflow instance (each new loan,
# each loan woken after the worker's cache evicted it), and the SDK reads
# every handler's type hints; string annotations were compiled anew each
# time, about 4 ms of a 20 ms replay. A subclass (the tests' copies) must
# not use string annotations either: the SDK compares run's with __init__'s.

from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from dunning import carry, contract, versions
    from dunning.arrangements import ArrangementRejected
    from dunning.clock import LoanClock
    from dunning.compliance import Profile
    from dunning import limitation as limitations
    from dunning.limitation import LimitationRule
    from dunning.inputs import (
        ComplaintResolvedSignal,
        ComplaintSignal,
        ContactOutcomeSignal,
        DisputeResolvedSignal,
        DisputeSignal,
        HoldSignal,
        InputError,
        EstateOutcome,
        LegalOutcome,
        LegalStatusSignal,
        OptOutSignal,
        PayLinkRequest,
        PaymentReversedSignal,
        SettlementDecisionSignal,
        VerificationSentSignal,
        VisitReport,
        parse_signal,
    )
    from dunning import notice
    from dunning.money import format_amount
    from dunning.planner import Action, Occurrence
    from dunning.policy import Policy
    from dunning.state import FieldVisit, LoanState, Plan, Promise, RejectedSignal, Settlement
    from dunning.status_view import plan_view, progress_note, settlement_view, status_view
    from dunning.transitions import contacts, holds, legal, plans, reversals, settlements, stages, tasks, visits
    from dunning.transitions import legal_status as legal_statuses
    from dunning.transitions import limitation as limitation_steps
    from dunning.transitions import records
    from dunning.transitions.records import Moment, Record, Rules
    from workflows import calls
    from workflows.publishing import Publisher

# Risk segments, charges, plans, promises, monthly bureau records, field
# visits and legal outcomes. Histories recorded before them replay with it
# unset, planning as they did then (dunning/versions.py; README, "Changing
# workflow code").
DEEP_STAGES = "deep-stages-2026-11"
# The DueDate search attribute. Histories recorded before it replay with it
# unset: their upserts carry no DueDate.
DUE_DATE_ATTRIBUTE = "due-date-search-attribute-2026-12"
# The BorrowerId search attribute (issue 17). Histories recorded before it
# replay with it unset: their upserts carry no BorrowerId.
BORROWER_ID_ATTRIBUTE = "borrower-id-search-attribute-2026-12"
# Agent tasks opened by the loan (a dispute, a complaint) and escalated past
# their SLA (issue 17). Loans started before it open none.
AGENT_TASKS = "agent-tasks-2026-12"
# Reminders before the due date: a loan placed early enters the policy's
# pre_due stage (issue 17, item 5). Loans started before it wait in
# `pending` until the first overdue stage, as they did.
PRE_DUE = "pre-due-stage-2026-12"
# Legal statuses (issue 18, item 1): the `legal_status` signal is new, but one
# may sit unread in a history recorded before it (no handler then): replayed,
# it is left unread as it was. Every decision it changes (holds, frozen
# charges, the hardship cadence, the cease notice, the bureau's indicators,
# the `discharged` outcome) follows from a status it set, so it is gated here.
LEGAL_STATUS = "legal-status-2026-12"
# The LegalStatus search attribute. Histories recorded before it replay with
# it unset: their upserts carry no LegalStatus (a run from before it shows
# one only once a status is set, after the marker above).
LEGAL_STATUS_ATTRIBUTE = "legal-status-search-attribute-2026-12"
# Settlements (issue 18, item 4). The `propose_settlement` update is new
# input (an older worker refused it, so no history holds one), but a
# `settlement_decision` signal may sit in a history recorded before it,
# unread for want of a handler: replayed, it is left unread as it was.
SETTLEMENTS = "settlements-2026-12"
# Payment reversals (issue 18, item 3). The `payment_reversed` signal is new,
# but one may sit unread in a history recorded before it (no handler then):
# replayed, it is left unread as it was. A reopened run (a loan closed
# `repaid` started again from its records) is new input, never replayed by
# older code.
PAYMENT_REVERSALS = "payment-reversals-2026-12"
# Time-barred debt (issue 18, item 2). Asked only of a loan that starts with
# a statute of limitations (prepare_loan names one for its jurisdiction), so
# no other loan's history gets the marker; every decision it changes (no
# legal stage, the stage's cadence to the write-off day, the time-barred
# messages, a restart by a payment, no bureau record past obsolescence)
# follows from the limitation only this sets.
TIME_BARRED = "time-barred-2026-12"
# A lean lifecycle (issue 19, item 5): one marker instead of one per patch
# above (each patch also upserts TemporalChangeVersion: two events), contacts
# due at the same instant sent through one activity, a run that continues as
# new only as a safety net (LEAN_HISTORY_LIMIT), and the closing payment
# written with the close in one local activity (item 2). A run that records
# it decides as every patch above were set, without asking them; histories
# from before it replay asking each, as they did.
LEAN = "lean-lifecycle-2026-12"
# A lean run continues as new once its history reaches this many events (or
# when the server suggests it): no run passes 300 events (one loop turn adds
# at most a dozen or so), which bounds the replay of a loan the worker's cache
# evicted. A default-policy lifecycle (284 events) never gets there: it is
# the safety net of a loan that lives on, or a busy policy's.
LEAN_HISTORY_LIMIT = 286
# At most this many contacts go out through one send activity.
MAX_CONTACTS_AT_ONCE = 8


def _signal(name: str, model: type, transition):
    """A signal handler that parses the payload as `model` and applies
    `transition` (state, parsed payload, moment) -> records | None."""

    def handle(self, payload: Any = None) -> None:
        self._on_signal(name, model, payload, transition)

    handle.__name__, handle.__doc__ = name, transition.__doc__
    return workflow.signal(name=name)(handle)


@workflow.defn(name=contract.WORKFLOW_TYPE)
class DunningWorkflow:
    @workflow.init
    def __init__(self, loan: Any = None) -> None:
        # Parsed here, not in run(), so that signals arriving with the start
        # find the state ready. A bad input is reported by run() as a failure.
        start = carry.read_start(loan)
        self._input_error, self._state, self._carried_rules = start.error, start.state, start.carried_rules
        self._version = versions.CURRENT  # until run() has asked the history
        self._rules: Rules | None = None  # known once prepare_loan has answered
        self._clock: LoanClock | None = None
        self._next: Action | None = None
        self._changed = False
        self._writer = calls.RecordWriter()
        self._publisher = Publisher()
        # Reversals that came while the loan was starting (a reopened run's
        # start signal), applied once it is prepared; and whether it is
        # closing (a reversal then is refused: posted again, it reopens the loan).
        self._early_reversals: list[Any] = []
        self._closing = False
        self._lean: bool | None = None  # run() asks LEAN first; None until then

    def _asks_lean(self) -> bool:
        """LEAN's marker, asked first in every run. (A test's copy of the
        workflow as it was before LEAN answers False without asking.)"""
        return workflow.patched(LEAN)

    def _patched(self, patch_id: str) -> bool:
        """A patch of a lean run is set without asking (one marker, LEAN's);
        a run from before LEAN asks it, as it did."""
        return self._lean is True or workflow.patched(patch_id)

    @workflow.run
    async def run(self, loan: Any = None) -> dict:
        if self._input_error is not None:
            raise ApplicationError(f"invalid workflow input: {self._input_error}", type="InvalidInput", non_retryable=True)
        state = self._require_state()
        if (wrong_id := contract.wrong_workflow_id(state.loan_id, workflow.info().workflow_id)) is not None:
            raise ApplicationError(wrong_id, type="InvalidInput", non_retryable=True)
        # Asked here, in this order, in every run: the patch markers' place in history.
        self._lean = self._asks_lean()
        self._version = versions.CURRENT if self._patched(DEEP_STAGES) else versions.BEFORE_DEEP_STAGES
        self._publisher.due_date = self._patched(DUE_DATE_ATTRIBUTE)
        self._publisher.borrower_id = self._patched(BORROWER_ID_ATTRIBUTE)
        self._publisher.legal_status = self._patched(LEGAL_STATUS_ATTRIBUTE)
        self._writer.locally = self._version.records_locally
        await self._prepare()
        self._take_early_reversals()

        while True:
            # A lean run writes the payment that ends the loan with the close (_close).
            ending = self._lean and stages.ending(state) is not None
            if not ending:
                await self._writer.write_queued()
            loan_now = self._clock.loan_time(workflow.now())
            self._writer.queue(plans.bookkeep(state, self._rules, self._moment()))
            # A legal status's task; a hardship ended on its `until` (nothing without one).
            self._writer.queue(legal_statuses.bookkeep(state, self._moment()))
            # The debt turning time-barred today (nothing without a limitation).
            self._writer.queue(limitation_steps.bookkeep(state, self._moment()))
            notice.bookkeep(self._rules.profile, state, self._clock.zone)  # the state only: no record, no command
            if not ending:
                await self._writer.write_queued()
            if (outcome := stages.ending(state)) is not None:
                return await self._close(outcome)
            info, limit = workflow.info(), LEAN_HISTORY_LIMIT if self._lean else self._version.history_limit
            if info.is_continue_as_new_suggested() or (limit is not None and info.get_current_history_length() >= limit):
                await self._continue_as_new()

            action = self._version.next_action(self._rules.policy, self._rules.profile, state, self._clock, loan_now)
            self._next = action
            if not self._lean or action.kind in ("hold", "wait"):
                # A lean run publishes once before it sleeps, not at every
                # step of one wake (each upsert is a history event).
                self._publisher.publish(state, self._clock, loan_now)
            if action.kind == "write_off":
                return await self._close(contract.OUTCOME_WRITTEN_OFF)
            await self._carry_out(action, loan_now)

    async def _carry_out(self, action: Action, loan_now: datetime) -> None:
        state, clock, policy = self._require_state(), self._clock, self._rules.policy
        if action.kind in ("hold", "wait"):
            wake = clock.real_time(self._lean_wake(action) if self._lean else action.at)
            workflow.set_current_details(progress_note(state, action, clock.days_past_due(loan_now), wake))
            await self._wait(wake - workflow.now())
        elif action.kind == "enter_stage":
            previous = state.stage
            await self._writer.apply(self._version.enter_stage(state, action.stage, policy, clock, loan_now, self._moment()))
            self._count("dunning_stage_transitions", "loans entering a stage", stage=action.stage, policy=state.policy)
            workflow.logger.info("stage_entered", extra={"loan_id": state.loan_id, "stage": action.stage, "from": previous,
                                                         "day": clock.days_past_due(loan_now)})
        elif action.kind == "report_to_bureau":
            await self._writer.apply(self._version.bureau_record(state, clock, loan_now, self._moment(), action.bureau_kind or "first"))
        elif action.kind == "break_plan":
            self._break_plan(loan_now)
        elif action.kind == "break_promise":
            self._break_promise(loan_now)
        elif action.kind == "miss_settlement":
            self._queue("settlement_missed", settlements.miss(state, self._moment()))
        elif action.kind == "assign_visit":
            await self._writer.apply(visits.visit_assignment(state, self._rules, loan_now, self._moment()))
        elif action.kind == "skip":
            o = action.occurrence
            self._queue("contact_skipped", contacts.contact_skipped(state, o, action.skip_result, action.reason, self._moment(), loan_now))
            self._count("dunning_contacts", "contacts by channel and result", channel=o.channel, result=action.skip_result)
        elif action.kind == "defer":
            self._defer(action.occurrence, action.at, action.rule, action.reason)
        elif action.kind == "contact":
            await self._contact(action.occurrence, loan_now)
        elif action.kind == "escalate_task":
            await calls.escalate_task(action.task_key, self._version.records_locally)
            tasks.task_escalated(state, action.task_key)

    # ----------------------------------------------------------------- signals

    @workflow.signal(name=contract.SIGNAL_REPAYMENT)
    def repayment(self, payload: Any = None) -> None:
        state = self._require_state()
        terms = self._rules.terms if self._rules else None
        receipt = self._version.receive_payment(state, payload, self._moment(), terms)
        log = {"loan_id": state.loan_id, "payment_id": receipt.payment_id}
        if receipt.duplicate:
            workflow.logger.info("payment_duplicate_ignored", extra=log)
            return
        self._writer.queue(receipt.records)
        if receipt.applied is None:  # kept for a person to look at, never dropped
            workflow.logger.warning("payment_unapplied", extra={**log, "reason": receipt.unapplied_reason})
        else:
            self._count("dunning_payments_applied", "repayments applied", currency=state.currency)
            workflow.logger.info("payment_applied", extra={**log, "amount": str(receipt.applied)})
        self._touch()

    # The other signals all work alike (`_signal` below): parse the payload,
    # apply the transition, queue what it writes.
    dispute = _signal(contract.SIGNAL_DISPUTE, DisputeSignal, holds.open_dispute)
    dispute_resolved = _signal(contract.SIGNAL_DISPUTE_RESOLVED, DisputeResolvedSignal, holds.resolve_dispute)
    opt_out = _signal(contract.SIGNAL_OPT_OUT, OptOutSignal, contacts.opt_out)
    pause = _signal(contract.SIGNAL_PAUSE, HoldSignal, holds.pause)
    resume = _signal(contract.SIGNAL_RESUME, HoldSignal, holds.resume)
    complaint = _signal(contract.SIGNAL_COMPLAINT, ComplaintSignal, holds.open_complaint)
    complaint_resolved = _signal(contract.SIGNAL_COMPLAINT_RESOLVED, ComplaintResolvedSignal, holds.resolve_complaint)
    send_pay_link = _signal(contract.SIGNAL_SEND_PAY_LINK, PayLinkRequest, contacts.request_pay_link)
    contact_outcome = _signal(contract.SIGNAL_CONTACT_OUTCOME, ContactOutcomeSignal, contacts.contact_outcome)
    verification_sent = _signal(contract.SIGNAL_VERIFICATION_SENT, VerificationSentSignal, holds.verification_sent)

    @workflow.signal(name=contract.SIGNAL_SETTLEMENT_DECISION)
    def settlement_decision(self, payload: Any = None) -> None:
        """An approver accepts or refuses a settlement pending approval."""
        if not self._patched(SETTLEMENTS):
            return  # taken before settlements existed: unread then, so unread now
        self._on_signal(contract.SIGNAL_SETTLEMENT_DECISION, SettlementDecisionSignal, payload, settlements.decide)

    @workflow.signal(name=contract.SIGNAL_PAYMENT_REVERSED)
    def payment_reversed(self, payload: Any = None) -> None:
        """A payment applied to the loan came back: its allocation undone
        (dunning/transitions/reversals.py)."""
        if not self._patched(PAYMENT_REVERSALS):
            return  # taken before reversals existed: unread then, so unread now
        if self._rules is None or self._clock is None:
            self._early_reversals.append(payload)  # the returned-payment fee needs the loan's terms and clock
            return
        self._on_signal(contract.SIGNAL_PAYMENT_REVERSED, PaymentReversedSignal, payload, self._reverse)

    def _reverse(self, state: LoanState, signal: PaymentReversedSignal, moment: Moment) -> list[Record]:
        if self._closing:
            raise holds.SignalRejected(
                "loan: closing; post the reversal again once it has closed, to reopen it "
                "(POST /payments/reversals, starter.py reverse)"
            )
        return reversals.reverse_payment(state, signal, moment, self._rules.terms)

    def _take_early_reversals(self) -> None:
        early, self._early_reversals = self._early_reversals, []
        for payload in early:
            self._on_signal(contract.SIGNAL_PAYMENT_REVERSED, PaymentReversedSignal, payload, self._reverse)

    @workflow.signal(name=contract.SIGNAL_LEGAL_STATUS)
    def legal_status(self, payload: Any = None) -> None:
        """A bankruptcy, a death, a request to cease communication, a hardship
        (dunning/transitions/legal_status.py)."""
        if not self._patched(LEGAL_STATUS):
            return  # taken before legal statuses existed: unread then, so unread now
        self._on_signal(contract.SIGNAL_LEGAL_STATUS, LegalStatusSignal, payload, legal_statuses.change)

    def _on_signal(self, name: str, model: type, payload: Any, transition) -> None:
        """Parse, apply, queue what to write. A bad or inapplicable signal is
        kept in `rejected_signals`, never dropped and never a crash."""
        state = self._require_state()
        try:
            written = transition(state, parse_signal(model, payload), self._moment())
        except (InputError, holds.SignalRejected) as error:
            state.rejected_signals.append(RejectedSignal(signal=name, error=str(error), received_at=workflow.now()))
            workflow.logger.warning("signal_rejected", extra={"loan_id": state.loan_id, "signal": name, "error": str(error)})
            self._touch()
            return
        if written is not None:  # None: the same signal again, nothing changed
            self._queue(name, written)
            self._touch()

    # ----------------------------------------------------------------- updates
    # Each validator checks a proposal against the policy without changing
    # anything (a rejection is not even in history); the handler checks it
    # again on the state it then finds, and accepts it.

    @workflow.update(name=contract.UPDATE_PROPOSE_PLAN)
    def propose_plan(self, payload: Any = None) -> dict:
        state = self._require_state()
        plan = self._check_plan(payload)
        self._accepted("plan_accepted", plans.accept_plan(state, plan, self._moment()))
        return plan_view(state, plan)

    @propose_plan.validator
    def _check_plan(self, payload: Any = None) -> Plan:
        state = self._ready_for_updates()
        return plans.proposed_plan(self._rules.policy, state, payload, self._moment().today)

    @workflow.update(name=contract.UPDATE_PROMISE_TO_PAY)
    def promise_to_pay(self, payload: Any = None) -> dict:
        state = self._require_state()
        promise = self._check_promise(payload)
        self._accepted("promise_made", plans.make_promise(state, promise, self._moment()))
        return {"accepted": True, "promise_no": promise.promise_no, "amount": format_amount(promise.amount, state.currency),
                "by_date": promise.by_date.isoformat()}

    @promise_to_pay.validator
    def _check_promise(self, payload: Any = None) -> Promise:
        state = self._ready_for_updates()
        return plans.proposed_promise(self._rules.policy, state, payload, self._moment().today)

    @workflow.update(name=contract.UPDATE_RECORD_VISIT)
    def record_visit(self, payload: Any = None) -> dict:
        state = self._require_state()
        report, visit = self._check_visit(payload)
        # Everything that can be refused was checked above, before any change.
        promise = None
        if report.outcome == "promise":
            promise = plans.proposed_promise(self._rules.policy, state, report.promise.model_dump(mode="json"), self._moment().today, "field_visit")
        self._writer.queue(visits.visit_reported(state, report, visit, self._moment()))
        answer: dict = {"visit_id": visit.visit_id, "outcome": report.outcome}
        if promise is not None:
            self._accepted("promise_made", plans.make_promise(state, promise, self._moment()))
            answer["promise_no"] = promise.promise_no
        self._touch()
        return answer

    @record_visit.validator
    def _check_visit(self, payload: Any = None) -> tuple[VisitReport, FieldVisit]:
        state = self._ready_for_updates()
        return visits.checked_visit_report(self._rules, state, payload, self._moment().today)

    @workflow.update(name=contract.UPDATE_LEGAL_OUTCOME)
    def legal_outcome(self, payload: Any = None) -> dict:
        state = self._require_state()
        outcome = self._check_legal(payload)
        self._accepted("legal_outcome", legal.legal_outcome(state, outcome, self._moment()))
        return {"status": state.legal.status, "case_ref": state.legal.case_ref, "ends_loan": outcome.outcome == "settled"}

    @legal_outcome.validator
    def _check_legal(self, payload: Any = None) -> LegalOutcome:
        return legal.checked_legal_outcome(self._ready_for_updates(), payload)

    @workflow.update(name=contract.UPDATE_PROPOSE_SETTLEMENT)
    def propose_settlement(self, payload: Any = None) -> dict:
        state = self._require_state()
        settlement = self._check_settlement(payload)
        event = "settlement_accepted" if settlement.status == "accepted" else "settlement_pending"
        self._accepted(event, settlements.propose(state, settlement, self._moment()))
        return settlement_view(state, settlement)

    @propose_settlement.validator
    def _check_settlement(self, payload: Any = None) -> Settlement:
        state = self._ready_for_updates()
        return settlements.proposed_settlement(self._rules.policy, state, payload, self._moment().today)

    @workflow.update(name=contract.UPDATE_ESTATE_OUTCOME)
    def estate_outcome(self, payload: Any = None) -> dict:
        """A deceased borrower's loan ends: written off, or settled by the estate."""
        state = self._require_state()
        outcome = self._check_estate_outcome(payload)
        self._accepted("estate_outcome", legal_statuses.estate_outcome(state, outcome, self._moment()))
        return {"outcome": outcome.outcome, "reference": outcome.reference, "ends_loan": True}

    @estate_outcome.validator
    def _check_estate_outcome(self, payload: Any = None) -> EstateOutcome:
        return legal_statuses.checked_estate_outcome(self._ready_for_updates(), payload)

    # ArrangementRejected names the key, or the policy rule a proposal breaks.

    def _ready_for_updates(self) -> LoanState:
        state = self._require_state()
        if self._rules is None or self._clock is None or not self._version.takes_updates:
            raise ArrangementRejected("loan: not ready for updates yet (still starting)")
        if state.stage == contract.STAGE_CLOSED:
            raise ArrangementRejected("loan: closed")
        return state

    def _accepted(self, event: str, written: list[Record]) -> None:
        self._queue(event, written)
        self._touch()

    # ------------------------------------------------------------------- query

    @workflow.query(name=contract.QUERY_STATUS)
    def status(self) -> dict:
        state, now, rules, clock = self._require_state(), workflow.now(), self._rules, self._clock
        segment = self._version.shown_segment(rules and rules.policy, state, clock, clock and clock.loan_time(now))
        return status_view(state, rules and rules.profile, clock, self._next, now, segment)

    # ------------------------------------------------------------------- steps

    async def _prepare(self) -> None:
        state = self._require_state()
        if self._carried_rules is not None and state.clock_anchor is not None:
            # A continued run: the policy and profile came with the state.
            self._rules = self._carried_rules
            self._clock = LoanClock(state.clock_anchor, state.time_zone, state.due_date, self._rules.policy.day_seconds)
            return
        # Since the deep-stages patch, a local activity too: one marker, and no
        # round trip through the server before the loan's first decision.
        prepared = await calls.prepare_loan(state, self._version.records_locally)
        fresh = False
        policy, profile = Policy.model_validate(prepared.policy), Profile.model_validate(prepared.profile)
        # A loan closed `repaid` started again from its records (issue 18,
        # item 3) starts like a fresh one, on the clock anchor it had.
        reopening = state.reopened is not None and state.reopened.at is None
        if state.clock_anchor is None or reopening:  # a fresh loan, not a continued one
            state.time_zone, state.language = prepared.time_zone, prepared.language
            state.contact_zones = list(prepared.time_zones)  # empty from a worker before multi-zone checks
            if self._patched(AGENT_TASKS):
                state.task_sla_hours = dict(policy.tasks.sla_hours)
            state.clock_anchor = state.clock_anchor or workflow.now()
            fresh = True
        self._clock = LoanClock(state.clock_anchor, state.time_zone, state.due_date, policy.day_seconds)
        if fresh and self._clock.days_past_due(self._clock.loan_time(workflow.now())) <= 0:
            # Asked only of a loan placed before it is due: no marker in the
            # history of every other loan.
            state.pre_due = self._patched(PRE_DUE)
        terms = self._version.begin(state, policy, profile, self._clock, self._clock.loan_time(workflow.now()))
        self._rules = Rules(policy, profile, terms)
        if fresh and prepared.limitation is not None and self._patched(TIME_BARRED):
            # The statute of limitations of the loan's jurisdiction (issue 18, item 2).
            try:
                rule = LimitationRule.model_validate(prepared.limitation)
            except ValueError as error:
                raise ApplicationError(f"prepare_loan: limitation: {str(error)[:200]}", type="PolicyError",
                                       non_retryable=True) from None
            self._queue("limitation_set", limitation_steps.begin(state, rule, self._moment()))
        if reopening:
            moment = self._moment()
            self._queue("loan_reopened", reversals.reopening_started(state, moment, moment.days_past_due))

    def _lean_wake(self, action: Action) -> datetime:
        """When to wake for `action` (loan time): its own time, unless a stage
        is entered then whose first step is due later that same day; then at
        that step, entering the stage with it (issue 19, item 5: no wake that
        only enters a stage). Woken earlier (a signal), the loan enters the
        stage then, as it always did."""
        if action.kind != "wait":
            return action.at
        rules = self._rules
        ahead = self._version.next_action(rules.policy, rules.profile, self._require_state(), self._clock, action.at)
        if ahead.kind != "enter_stage":
            return action.at
        return self._first_step_of_stage(ahead, action.at) or action.at

    def _first_step_of_stage(self, action: Action, loan_now: datetime) -> datetime | None:
        """When the stage `action` enters has its first step due, if that is
        later today (loan time) and nothing else is due before it; else None
        (the stage is entered now). Asked of a copy of the state."""
        trial = self._require_state().model_copy(deep=True)
        rules, clock = self._rules, self._clock
        self._version.enter_stage(trial, action.stage, rules.policy, clock, loan_now, self._moment()).then()
        planned = self._version.next_action(rules.policy, rules.profile, trial, clock, loan_now)
        zone = clock.zone
        if planned.kind != "wait" or planned.at <= loan_now or planned.at.astimezone(zone).date() != loan_now.astimezone(zone).date():
            return None
        return planned.at

    async def _contact(self, occurrence: Occurrence, loan_now: datetime) -> None:
        state = self._require_state()
        decided = self._moment()  # the contact's time is when it went to the provider
        batch = [occurrence, *self._also_due(occurrence, decided, loan_now)] if self._lean else [occurrence]
        requests = [contacts.contact_request(state, self._rules.profile, o, decided, loan_now, self._rules.policy) for o in batch]
        outcomes = await calls.send_contacts(requests)
        for each, outcome in zip(batch, outcomes):
            self._contact_outcome(each, outcome, decided, loan_now)

    def _also_due(self, first: Occurrence, decided: Moment, loan_now: datetime) -> list[Occurrence]:
        """The other contacts the planner would send at this same instant,
        were `first` sent (issue 19, item 5: one activity for them all). Asked
        of a copy of the state; the loop plans again after the batch, so a
        contact that the real outcomes would have changed is decided then."""
        trial = self._require_state().model_copy(deep=True)
        contacts.contact_recorded(trial, first, "sent", decided, loan_now)
        found: list[Occurrence] = []
        while len(found) < MAX_CONTACTS_AT_ONCE - 1:
            action = self._version.next_action(self._rules.policy, self._rules.profile, trial, self._clock, loan_now)
            if action.kind != "contact":
                break
            found.append(action.occurrence)
            contacts.contact_recorded(trial, action.occurrence, "sent", decided, loan_now)
        return found

    def _contact_outcome(self, occurrence: Occurrence, outcome, decided: Moment, loan_now: datetime) -> None:
        state = self._require_state()
        result = outcome.result if outcome is not None else "failed"
        moved = outcome is not None and bool(outcome.time_zones) and list(outcome.time_zones) != state.contact_zones
        if moved:
            # The directory's details changed since the loan started (issue
            # 15, item 3): the permit check uses the zones read at this contact.
            state.contact_zones = list(outcome.time_zones)
        if result == "deferred" and outcome.rule == "window":
            # Outside the window in a zone read just now. With new zones the
            # planner postpones it (it checks them next); else the activity's
            # opening, in loan time, stands.
            if not moved:
                self._defer(occurrence, datetime.fromisoformat(outcome.not_before), "window", outcome.detail)
            return
        if result == "deferred":
            until = self._clock.loan_time(datetime.fromisoformat(outcome.not_before))
            self._defer(occurrence, until, outcome.rule or "voice_daily_cap", outcome.detail or "call cap across the borrower's loans")
            return
        # The message that carried it: its own key, or one merged across the
        # borrower's loans (an older worker's outcome names only its own key).
        message_key = (outcome.message_key or outcome.key) if outcome is not None else ""
        contacts.contact_recorded(state, occurrence, result, decided, loan_now, message_key)
        self._count("dunning_contacts", "contacts by channel and result", channel=occurrence.channel, result=result)

    def _defer(self, occurrence: Occurrence, until: datetime, rule: str, reason: str) -> None:
        """A compliance rule said 'not now': the contact waits for `until` (loan time)."""
        self._queue("contact_deferred", contacts.contact_deferred(self._require_state(), occurrence.key, until, rule, reason, occurrence.channel, self._moment()))
        self._count("dunning_permits_denied", "contacts a compliance rule postponed", rule=rule, channel=occurrence.channel)

    def _break_plan(self, loan_now: datetime) -> None:
        self._queue("plan_broken", plans.break_plan(self._require_state(), loan_now, self._moment()))
        self._count("dunning_plans_broken", "installment plans broken", policy=self._require_state().policy)

    def _break_promise(self, loan_now: datetime) -> None:
        self._queue("promise_broken", plans.end_promise(self._require_state(), self._rules.policy, loan_now, self._moment(), kept=False))

    async def _close(self, outcome: str) -> dict:
        state = self._require_state()
        self._closing = True
        # Let signal handlers finish, then record what they queued (a lean
        # run keeps the payments for the close's own transaction).
        await workflow.wait_condition(workflow.all_handlers_finished)
        closing_payments = self._writer.take(records.PAYMENT) if self._lean else []
        await self._writer.write_queued()
        final_stage = state.stage
        loan_now = self._clock.loan_time(workflow.now())
        # Nothing is left open when the loan ends: a plan or promise the
        # balance did not pay off ends broken (written off, dispute upheld).
        if state.active_plan is not None:
            self._break_plan(loan_now)
        if state.open_promise is not None:
            self._break_promise(loan_now)
        if state.open_settlement is not None:
            self._queue("settlement_lapsed", settlements.lapse(state, self._moment()))
        await self._writer.write_queued()
        if state.bureau_reported and limitations.reports_to_bureau(state, loan_now.date()):
            # The bureau learns how it ended: paid (13/62/64), settled (13, AU), charged off (97),
            # an upheld dispute deletes the account (DA): dunning/bureau.py.
            final = self._version.bureau_record(state, self._clock, loan_now, self._moment(), "final", outcome)
            if final is not None:
                await self._writer.apply(final)
        await self._writer.write(stages.closing_record(state, outcome, loan_now, self._moment(), closing_payments))
        # `closed` is shown only once the database says so too.
        state.stage = contract.STAGE_CLOSED
        self._next = None
        self._publisher.publish(state, self._clock, self._clock.loan_time(workflow.now()))
        await self._writer.write_queued()  # what signals queued while the loan closed
        workflow.set_current_details(f"Closed: {outcome} at {final_stage}.")
        workflow.logger.info("loan_closed", extra={"loan_id": state.loan_id, "outcome": outcome, "final_stage": final_stage})
        amount_paid = format_amount(state.amount_paid, state.currency)
        return {"loan_id": state.loan_id, "outcome": outcome, "amount_paid": amount_paid, "final_stage": final_stage}

    async def _continue_as_new(self) -> None:
        state = self._require_state()
        await workflow.wait_condition(workflow.all_handlers_finished)
        await self._writer.write_queued()
        workflow.continue_as_new(carry.carried_input(state, self._rules if self._version.carries_policy else None))

    # ----------------------------------------------------------------- helpers

    def _queue(self, event: str, written: list[Record]) -> None:
        """Queue what a transition wrote, and say so in the log."""
        self._writer.queue(written)
        workflow.logger.info(event, extra={"loan_id": self._require_state().loan_id, "records": [r.summary for r in written]})

    def _moment(self) -> Moment:
        info = workflow.info()
        return Moment(info.workflow_id, info.first_execution_run_id, workflow.now(), self._clock)

    async def _wait(self, timeout: timedelta) -> None:
        """Sleep durably until `timeout` passes or a signal changes something."""
        self._changed = False
        # Round up to whole milliseconds: a timer never fires early.
        timeout = max(timedelta(milliseconds=1), timedelta(milliseconds=-(-timeout // timedelta(milliseconds=1))))
        try:
            await workflow.wait_condition(lambda: self._changed, timeout=timeout)
        except TimeoutError:
            pass

    def _count(self, name: str, description: str, **attributes: str) -> None:
        """A service metric (Prometheus, when the worker exports them). The
        workflow's meter counts nothing while a history replays."""
        workflow.metric_meter().create_counter(name, description).add(1, attributes)

    def _touch(self) -> None:
        self._require_state().signals_received += 1
        self._changed = True

    def _require_state(self) -> LoanState:
        if self._state is None:
            raise ApplicationError(f"invalid workflow input: {self._input_error}", type="InvalidInput", non_retryable=True)
        return self._state
