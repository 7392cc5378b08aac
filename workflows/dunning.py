"""DunningWorkflow: one overdue loan, from the first reminder to its end.

The loop asks the pure planner (dunning/planner.py) what to do next and when,
waits durably until then (waking early when a signal changes something), has
an activity do it, records the result in the state, and asks again. Signals
only change the state; every decision is the planner's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities import payloads as acts
    from dunning import bureau, contract
    from dunning.arrangements import (
        ArrangementRejected,
        check_plan,
        check_promise,
        parse_update,
        plan_progress,
        promise_kept,
    )
    from dunning.charges import Terms, apply_payment, post_charges, reinstate, terms_for, waive
    from dunning.clock import LoanClock
    from dunning.compliance import Profile
    from dunning.inputs import (
        ComplaintResolvedSignal,
        ContactOutcomeSignal,
        ComplaintSignal,
        DisputeResolvedSignal,
        DisputeSignal,
        HoldSignal,
        InputError,
        LegalOutcome,
        LoanInput,
        OptOutSignal,
        PayLinkRequest,
        PlanProposal,
        PromiseToPay,
        VisitReport,
        RepaymentSignal,
        parse_signal,
    )
    from dunning.money import format_amount, parse_amount
    from dunning.planner import INSTALLMENT_REMINDER, PLAN_CONFIRMATION, Action, next_action, segment_name
    from dunning.policy import Policy
    from dunning.state import ContactEntry, FieldVisit, LegalCase, LoanState, RejectedSignal, UnappliedPayment
    from workflows import search_attributes as sa

# Writes to our own database: retried until the database is back.
DATABASE_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1))
# A provider that keeps failing must not hold up the loan for ever: after a few
# tries the contact is recorded as failed and the loan goes on.
SEND_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    maximum_interval=timedelta(minutes=2),
    maximum_attempts=5,
    non_retryable_error_types=["TemplateMissing", "PermanentSendError"],
)
# The carried state travels under this key of the input on continue-as-new,
# with the policy and profile the loan started with (so a new run never picks
# up an edited policy file).
CARRIED_STATE = "carried_state"
CARRIED_POLICY = "carried_policy"
# A run continues as new once its history reaches this many events (or when
# the server suggests it), so no run's history grows past ~300 events however
# long the loan lives; one loop turn adds at most a few dozen.
HISTORY_LIMIT = 250
# Risk segments, charges, plans, promises, monthly bureau records, field
# visits and legal outcomes. Histories recorded before them replay with it
# unset, planning as they did then (see README, "Changing workflow code").
DEEP_STAGES = "deep-stages-2026-11"
# The DueDate search attribute. Histories recorded before it replay with it
# unset: their upserts carry no DueDate.
DUE_DATE_ATTRIBUTE = "due-date-search-attribute-2026-12"


@dataclass(frozen=True)
class _Record:
    """A record to write, queued by a signal handler (handlers cannot wait for
    activities) and written by the loop, in order, before it plans again."""

    activity: str
    arg: Any
    summary: str


@workflow.defn(name=contract.WORKFLOW_TYPE)
class DunningWorkflow:
    @workflow.init
    def __init__(self, loan: Any = None) -> None:
        # Parsed here, not in run(), so that signals arriving with the start
        # find the state ready. A bad input is reported by run() as a failure.
        self._input_error: str | None = None
        self._state: LoanState | None = None
        self._policy: Policy | None = None
        self._profile: Profile | None = None
        self._clock: LoanClock | None = None
        self._next: Action | None = None
        self._changed = False
        self._records: list[_Record] = []
        self._published: dict[str, Any] = {}
        self._deep = True
        self._publish_due_date = True
        self._terms: Terms | None = None
        try:
            parsed = LoanInput.parse(loan)
        except InputError as error:
            self._input_error = str(error)
            return
        carried = loan.get(CARRIED_STATE) if isinstance(loan, dict) else None
        self._carried_policy: tuple[Policy, Profile] | None = None
        if carried:
            try:
                self._state = LoanState.model_validate(carried)
            except ValueError as error:  # pydantic's ValidationError: fail the start, not the task
                self._input_error = f"{CARRIED_STATE}: not a loan state carried over by this workflow ({str(error)[:200]})"
                return
            carried_policy = loan.get(CARRIED_POLICY)
            if carried_policy:
                # Checked here like the state: a bad one must fail the start,
                # not fail every workflow task for ever.
                try:
                    if not isinstance(carried_policy, dict):
                        raise ValueError("must be an object with `policy` and `profile`")
                    self._carried_policy = (
                        Policy.model_validate(carried_policy.get("policy")),
                        Profile.model_validate(carried_policy.get("profile")),
                    )
                except ValueError as error:
                    self._input_error = f"{CARRIED_POLICY}: not a policy carried over by this workflow ({str(error)[:200]})"
                    return
        else:
            terms = parsed.contract_terms
            self._state = LoanState(
                **parsed.model_dump(exclude={"contract_terms"}),
                contract_late_fee=terms.late_fee if terms else None,
                contract_penalty_rate=terms.penalty_rate_annual if terms else None,
            )

    @workflow.run
    async def run(self, loan: Any = None) -> dict:
        if self._input_error is not None:
            raise ApplicationError(f"invalid workflow input: {self._input_error}", type="InvalidInput", non_retryable=True)
        state = self._require_state()
        info = workflow.info()
        expected_id = contract.workflow_id_for(state.loan_id)
        if info.workflow_id != expected_id:
            raise ApplicationError(
                f"workflow id: must be {expected_id!r} for loan_id {state.loan_id!r}, got {info.workflow_id!r}",
                type="InvalidInput",
                non_retryable=True,
            )
        self._deep = workflow.patched(DEEP_STAGES)
        self._publish_due_date = workflow.patched(DUE_DATE_ATTRIBUTE)
        await self._prepare()

        while True:
            await self._write_records()
            loan_now = self._clock.loan_time(workflow.now())
            if self._deep:
                self._bookkeep(loan_now)
                await self._write_records()
            if state.outstanding <= 0:
                return await self._close(contract.OUTCOME_SETTLED if state.waived > 0 else contract.OUTCOME_REPAID)
            if state.dispute_upheld:
                return await self._close(contract.OUTCOME_DISPUTE_UPHELD)
            if state.legal is not None and state.legal.status == "settled":
                return await self._close(contract.OUTCOME_SETTLED)
            info = workflow.info()
            if info.is_continue_as_new_suggested() or (self._deep and info.get_current_history_length() >= HISTORY_LIMIT):
                await self._continue_as_new()

            action = next_action(self._policy, self._profile, state, self._clock, loan_now, deep=self._deep)
            self._next = action
            self._publish(loan_now)

            if action.kind == "hold":
                workflow.set_current_details(f"On hold: {action.reason}. Waiting for the hold to be lifted.")
                await self._wait(self._clock.real_time(action.at) - workflow.now())
            elif action.kind == "wait":
                wake = self._clock.real_time(action.at)
                workflow.set_current_details(
                    f"{self._stage_label()}, day {self._clock.days_past_due(loan_now)}, "
                    f"{format_amount(state.outstanding, state.currency)} {state.currency} outstanding: "
                    f"{action.reason} (at {wake.isoformat(timespec='seconds')})."
                )
                await self._wait(wake - workflow.now())
            elif action.kind == "enter_stage":
                await self._enter_stage(action.stage, loan_now)
            elif action.kind == "report_to_bureau":
                await self._report_to_bureau(loan_now, action.bureau_kind or "first")
            elif action.kind == "break_plan":
                self._break_plan(loan_now)
            elif action.kind == "break_promise":
                self._end_promise(loan_now, kept=False)
            elif action.kind == "assign_visit":
                await self._assign_visit(loan_now)
            elif action.kind == "write_off":
                return await self._close(contract.OUTCOME_WRITTEN_OFF)
            elif action.kind == "skip":
                self._record_contact(action, loan_now, result=action.skip_result)
                self._queue_decision("decision", action.skip_result, action.reason, action.occurrence.channel, action.occurrence.key)
            elif action.kind == "defer":
                self._defer(action.occurrence.key, action.at, action.rule, action.reason, action.occurrence.channel)
            elif action.kind == "contact":
                await self._contact(action, loan_now)

    # ----------------------------------------------------------------- signals

    @workflow.signal(name=contract.SIGNAL_REPAYMENT)
    def repayment(self, payload: Any = None) -> None:
        state = self._require_state()
        received_at = workflow.now()
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
            # Kept for a person to look at, never dropped, never a crash.
            state.unapplied_payments.append(
                UnappliedPayment(
                    payment_id=payment_id,
                    amount=str(raw.get("amount", ""))[:64],
                    currency=str(raw.get("currency", ""))[:16],
                    reason=str(error),
                    received_at=received_at,
                )
            )
            self._queue_payment_record(payment_id, raw, applied=False, reason=str(error))
            workflow.logger.warning("payment_unapplied", extra={"loan_id": state.loan_id, "reason": str(error)})
            self._touch()
            return
        if payment.payment_id in state.applied_payment_ids:
            workflow.logger.info("payment_duplicate_ignored", extra={"loan_id": state.loan_id, "payment_id": payment.payment_id})
            return
        state.applied_payment_ids.append(payment.payment_id)
        if self._deep and self._clock is not None and self._terms is not None:
            # Charges of the days begun before the payment, then the payment.
            post_charges(self._terms, state, self._clock.days_past_due(self._clock.loan_time(received_at)))
        apply_payment(state, amount)
        if self._deep:
            if state.outstanding > 0:
                state.partial_payments += 1
            if state.bureau_reported:
                state.bureau.correction_due = True  # the bureau's balance is out of date
        self._count("dunning_payments_applied", "repayments applied", currency=state.currency)
        self._queue_payment_record(payment.payment_id, raw, applied=True)
        workflow.logger.info(
            "payment_applied",
            extra={"loan_id": state.loan_id, "payment_id": payment.payment_id, "amount": str(amount)},
        )
        self._touch()

    @workflow.signal(name=contract.SIGNAL_DISPUTE)
    def dispute(self, payload: Any = None) -> None:
        state = self._require_state()
        if self._parse_or_reject(contract.SIGNAL_DISPUTE, DisputeSignal, payload) is None:
            return
        state.disputed = True
        self._operator_action(contract.SIGNAL_DISPUTE, "dispute opened: contact and escalation stop")

    @workflow.signal(name=contract.SIGNAL_DISPUTE_RESOLVED)
    def dispute_resolved(self, payload: Any = None) -> None:
        state = self._require_state()
        if (signal := self._parse_or_reject(contract.SIGNAL_DISPUTE_RESOLVED, DisputeResolvedSignal, payload)) is None:
            return
        if not state.disputed:
            self._reject(contract.SIGNAL_DISPUTE_RESOLVED, "no dispute is open")
            return
        state.disputed = False
        state.dispute_upheld = signal.upheld
        self._operator_action(contract.SIGNAL_DISPUTE_RESOLVED, "dispute upheld" if signal.upheld else "dispute rejected: collection resumes")

    @workflow.signal(name=contract.SIGNAL_OPT_OUT)
    def opt_out(self, payload: Any = None) -> None:
        state = self._require_state()
        if (signal := self._parse_or_reject(contract.SIGNAL_OPT_OUT, OptOutSignal, payload)) is None:
            return
        if signal.channel not in state.opted_out:
            state.opted_out.append(signal.channel)
        self._operator_action(contract.SIGNAL_OPT_OUT, f"opted out of {signal.channel}", channel=signal.channel)

    @workflow.signal(name=contract.SIGNAL_PAUSE)
    def pause(self, payload: Any = None) -> None:
        state = self._require_state()
        if (signal := self._parse_or_reject(contract.SIGNAL_PAUSE, HoldSignal, payload)) is None:
            return
        state.paused, state.pause_reason = True, signal.reason
        self._operator_action(contract.SIGNAL_PAUSE, "paused by an operator")

    @workflow.signal(name=contract.SIGNAL_RESUME)
    def resume(self, payload: Any = None) -> None:
        state = self._require_state()
        if self._parse_or_reject(contract.SIGNAL_RESUME, HoldSignal, payload) is None:
            return
        state.paused, state.pause_reason = False, ""
        self._operator_action(contract.SIGNAL_RESUME, "resumed by an operator")

    @workflow.signal(name=contract.SIGNAL_COMPLAINT)
    def complaint(self, payload: Any = None) -> None:
        state = self._require_state()
        if (signal := self._parse_or_reject(contract.SIGNAL_COMPLAINT, ComplaintSignal, payload)) is None:
            return
        if signal.complaint_id in state.open_complaints or signal.complaint_id in state.resolved_complaints:
            return  # the same complaint sent twice
        state.open_complaints.append(signal.complaint_id)
        info = workflow.info()
        self._queue(
            acts.OPEN_COMPLAINT,
            acts.ComplaintOpened(
                key=f"{info.workflow_id}/complaint/{signal.complaint_id}", workflow_id=info.workflow_id,
                loan_id=state.loan_id, complaint_id=signal.complaint_id, category=signal.category,
                at=workflow.now().isoformat(),
            ),
            f"Open complaint {signal.complaint_id} ({signal.category}) for review",
        )
        workflow.logger.info("complaint_opened", extra={"loan_id": state.loan_id, "complaint_id": signal.complaint_id})
        self._touch()

    @workflow.signal(name=contract.SIGNAL_COMPLAINT_RESOLVED)
    def complaint_resolved(self, payload: Any = None) -> None:
        state = self._require_state()
        if (signal := self._parse_or_reject(contract.SIGNAL_COMPLAINT_RESOLVED, ComplaintResolvedSignal, payload)) is None:
            return
        if signal.complaint_id not in state.open_complaints:
            self._reject(contract.SIGNAL_COMPLAINT_RESOLVED, f"complaint_id: no open complaint {signal.complaint_id!r}")
            return
        state.open_complaints.remove(signal.complaint_id)
        state.resolved_complaints.append(signal.complaint_id)
        info = workflow.info()
        self._queue(
            acts.RESOLVE_COMPLAINT,
            acts.ComplaintResolved(
                workflow_id=info.workflow_id, loan_id=state.loan_id, complaint_id=signal.complaint_id,
                upheld=signal.upheld, reviewer_id=signal.reviewer_id, at=workflow.now().isoformat(),
            ),
            f"Resolve complaint {signal.complaint_id}: {'upheld' if signal.upheld else 'not upheld'}",
        )
        workflow.logger.info("complaint_resolved", extra={"loan_id": state.loan_id, "complaint_id": signal.complaint_id, "upheld": signal.upheld})
        self._touch()

    @workflow.signal(name=contract.SIGNAL_SEND_PAY_LINK)
    def send_pay_link(self, payload: Any = None) -> None:
        """The borrower asked for the repayment link (keypad 1 on a call)."""
        state = self._require_state()
        if self._parse_or_reject(contract.SIGNAL_SEND_PAY_LINK, PayLinkRequest, payload) is None:
            return
        state.pay_link_requests += 1
        self._operator_action(contract.SIGNAL_SEND_PAY_LINK, "borrower asked for the repayment link by SMS", channel="sms")

    @workflow.signal(name=contract.SIGNAL_CONTACT_OUTCOME)
    def contact_outcome(self, payload: Any = None) -> None:
        state = self._require_state()
        if (signal := self._parse_or_reject(contract.SIGNAL_CONTACT_OUTCOME, ContactOutcomeSignal, payload)) is None:
            return
        entry = next((c for c in reversed(state.contacts) if c.step == signal.step), None)
        if entry is None or entry.result.startswith("skipped"):
            self._reject(contract.SIGNAL_CONTACT_OUTCOME, f"step: no contact {signal.step!r} was sent")
            return
        entry.result = signal.result
        workflow.logger.info("contact_outcome", extra={"loan_id": state.loan_id, "key": signal.step, "outcome": signal.result})
        self._touch()

    # ----------------------------------------------------------------- updates
    # Each validator checks a proposal against the policy without changing
    # anything (a rejection is not even in history); the handler checks it
    # again on the state it then finds, and accepts it.

    @workflow.update(name=contract.UPDATE_PROPOSE_PLAN)
    def propose_plan(self, payload: Any = None) -> dict:
        state = self._require_state()
        plan = self._check_plan(payload)
        state.plans.append(plan)
        waive(state, fees=plan.waived_fees > 0, interest=plan.waived_interest > 0)
        state.deferred = {k: at for k, at in state.deferred.items() if k.startswith("request/")}
        self._queue_arrangement(
            "plan_accepted", plan.plan_no, amount=str(plan.total),
            schedule=[{"number": i.number, "due_date": i.due_date.isoformat(), "amount": str(i.amount)} for i in plan.installments],
            waived_fees=str(plan.waived_fees), waived_interest=str(plan.waived_interest),
        )
        workflow.logger.info("plan_accepted", extra={"loan_id": state.loan_id, "plan_no": plan.plan_no, "installments": len(plan.installments)})
        self._touch()
        return self._plan_view(plan)

    @propose_plan.validator
    def _validate_plan(self, payload: Any = None) -> None:
        self._check_plan(payload)

    @workflow.update(name=contract.UPDATE_PROMISE_TO_PAY)
    def promise_to_pay(self, payload: Any = None) -> dict:
        promise = self._make_promise(self._check_promise(payload))
        return {"accepted": True, "promise_no": promise.promise_no, "amount": self._money(promise.amount),
                "by_date": promise.by_date.isoformat()}

    @promise_to_pay.validator
    def _validate_promise(self, payload: Any = None) -> None:
        self._check_promise(payload)

    @workflow.update(name=contract.UPDATE_RECORD_VISIT)
    def record_visit(self, payload: Any = None) -> dict:
        state = self._require_state()
        report, visit = self._check_visit(payload)
        # Everything that can be refused was checked above, before any change.
        promise = None
        if report.outcome == "promise":
            promise = self._check_promise(report.promise.model_dump(mode="json"), source="field_visit")
        visit.status, visit.outcome = "done", report.outcome
        info = workflow.info()
        self._queue(
            acts.RECORD_VISIT,
            acts.VisitOutcome(
                key=f"{info.workflow_id}/visit/{visit.visit_id}/outcome", workflow_id=info.workflow_id,
                loan_id=state.loan_id, visit_id=visit.visit_id, outcome=report.outcome,
                staff_ids=list(report.staff_ids), at=workflow.now().isoformat(),
            ),
            f"Field visit {visit.visit_id}: {report.outcome}",
        )
        answer: dict = {"visit_id": visit.visit_id, "outcome": report.outcome}
        if promise is not None:
            answer["promise_no"] = self._make_promise(promise).promise_no
        self._touch()
        return answer

    @record_visit.validator
    def _validate_visit(self, payload: Any = None) -> None:
        self._check_visit(payload)

    @workflow.update(name=contract.UPDATE_LEGAL_OUTCOME)
    def legal_outcome(self, payload: Any = None) -> dict:
        state = self._require_state()
        outcome = self._check_legal(payload)
        state.legal.status = outcome.outcome
        if outcome.case_ref:
            state.legal.case_ref = outcome.case_ref
        info = workflow.info()
        self._queue(
            acts.RECORD_LEGAL_OUTCOME,
            acts.LegalOutcomeRecord(
                key=f"{info.workflow_id}/legal/{outcome.outcome}", workflow_id=info.workflow_id, loan_id=state.loan_id,
                outcome=outcome.outcome, case_ref=state.legal.case_ref, at=workflow.now().isoformat(),
            ),
            f"Legal case: {outcome.outcome}",
        )
        workflow.logger.info("legal_outcome", extra={"loan_id": state.loan_id, "outcome": outcome.outcome})
        self._touch()
        return {"status": state.legal.status, "case_ref": state.legal.case_ref,
                "ends_loan": outcome.outcome == "settled"}

    @legal_outcome.validator
    def _validate_legal(self, payload: Any = None) -> None:
        self._check_legal(payload)

    # The checks behind the validators: ArrangementRejected names the key.

    def _ready_for_updates(self) -> LoanState:
        state = self._require_state()
        if self._policy is None or self._clock is None or not self._deep:
            raise ArrangementRejected("loan: not ready for updates yet (still starting)")
        if state.stage == contract.STAGE_CLOSED:
            raise ArrangementRejected("loan: closed")
        return state

    def _local_today(self):
        return self._clock.loan_time(workflow.now()).date()

    def _check_plan(self, payload: Any):
        state = self._ready_for_updates()
        proposal = parse_update(PlanProposal, payload)
        return check_plan(self._policy, state, proposal, self._local_today())

    def _check_promise(self, payload: Any, source: str = "borrower"):
        state = self._ready_for_updates()
        promise = parse_update(PromiseToPay, payload)
        return check_promise(self._policy, state, promise, self._local_today(), source)

    def _check_visit(self, payload: Any):
        state = self._ready_for_updates()
        report = parse_update(VisitReport, payload)
        visit = next((v for v in state.visits if v.visit_id == report.visit_id), None)
        if visit is None:
            raise ArrangementRejected(f"visit_id: no field visit {report.visit_id!r} was assigned to this loan")
        if visit.status != "assigned":
            raise ArrangementRejected(f"visit_id: visit {report.visit_id!r} was already reported ({visit.outcome})")
        needed = self._profile.rules.field_visit_min_staff or 1
        if len(set(report.staff_ids)) < needed:
            raise ArrangementRejected(f"staff_ids: a field visit needs {needed} different staff ({self._profile.name} profile)")
        if report.outcome == "promise":
            if report.promise is None:
                raise ArrangementRejected("promise: an outcome 'promise' needs the promise's amount and by_date")
            try:
                check_promise(self._policy, state, report.promise, self._local_today(), "field_visit")
            except ArrangementRejected as error:
                # The visit happened; report it with another outcome, or fix the promise.
                raise ArrangementRejected(f"promise: not accepted ({error})") from None
        elif report.promise is not None:
            raise ArrangementRejected(f"promise: only with outcome 'promise', not {report.outcome!r}")
        return report, visit

    def _check_legal(self, payload: Any):
        state = self._ready_for_updates()
        outcome = parse_update(LegalOutcome, payload)
        if state.legal is None:
            raise ArrangementRejected("outcome: the loan has no legal case (it is not in the legal stage)")
        allowed = {
            "opened": ("filed", "settled", "withdrawn"),
            "filed": ("judgment", "settled", "withdrawn"),
            "judgment": ("settled",),
        }.get(state.legal.status, ())
        if outcome.outcome not in allowed:
            raise ArrangementRejected(
                f"outcome: a case that is {state.legal.status} can be {', '.join(allowed) or 'nothing more'}, not {outcome.outcome}"
            )
        return outcome

    def _make_promise(self, promise):
        state = self._require_state()
        state.promises.append(promise)
        self._queue_arrangement(
            "promise_made", promise.promise_no, amount=str(promise.amount), due_date=promise.by_date.isoformat(),
            source=promise.source,
        )
        workflow.logger.info("promise_made", extra={"loan_id": state.loan_id, "promise_no": promise.promise_no})
        self._touch()
        return promise

    # ------------------------------------------------------------------- query

    @workflow.query(name=contract.QUERY_STATUS)
    def status(self) -> dict:
        state = self._require_state()
        zone_clock = self._clock
        loan_now = zone_clock.loan_time(workflow.now()) if zone_clock else None
        next_at = None
        if self._next is not None and self._next.kind == "wait" and zone_clock and state.stage != contract.STAGE_CLOSED:
            next_at = zone_clock.real_time(self._next.at).isoformat()
        if self._deep:
            segment_name = state.segment
        else:
            from dunning.policy import SegmentFacts

            found = self._policy.segment_for(SegmentFacts(days_past_due=zone_clock.days_past_due(loan_now), outstanding=state.outstanding)) if self._policy and zone_clock else None
            segment_name = found.name if found else None
        money = self._money
        return {
            "loan_id": state.loan_id,
            "stage": state.stage,
            "days_past_due": zone_clock.days_past_due(loan_now) if zone_clock else None,
            "amount_due": money(state.amount_due),
            "amount_paid": money(state.amount_paid),
            "outstanding": money(state.outstanding),
            "currency": state.currency,
            "paused": state.paused,
            "plan": self._plan_view(state.active_plan or (state.plans[-1] if state.plans else None)),
            "next_action_at": next_at,
            "contacts": [
                {
                    "at": c.at.isoformat(),
                    "channel": c.channel,
                    "stage": c.stage,
                    "result": c.result,
                    "template": c.template,
                    "day": c.day,
                    "step": c.step,
                }
                for c in state.contacts
            ],
            # Extensions (docs/contract.md).
            # A query sees the workflow as of its last task: every figure here
            # describes this instant (the last wake), not the moment of asking.
            "as_of": workflow.now().isoformat(),
            "borrower_id": state.borrower_id,
            "due_date": state.due_date.isoformat(),
            "policy": state.policy,
            "time_zone": state.time_zone,
            "segment": segment_name or None,
            "principal": money(state.principal_due),
            "fees": money(state.fees_due),
            "interest": money(state.interest_due),
            "fees_charged": money(state.fees_charged),
            "interest_charged": money(state.interest_charged),
            "waived": money(state.waived),
            "promise": self._promise_view(),
            "promises_broken": state.broken_promises,
            "bureau": {
                "records": state.bureau.records,
                "first_delinquency": state.bureau.first_delinquency.isoformat() if state.bureau.first_delinquency else None,
                "last_cycle": state.bureau.last_cycle or None,
            },
            "field_visits": [v.model_dump(mode="json") for v in state.visits],
            "legal_case": state.legal.model_dump(mode="json") if state.legal else None,
            "disputed": state.disputed,
            "pause_reason": state.pause_reason,
            "opted_out": list(state.opted_out),
            "profile": self._profile.name if self._profile else None,
            "open_complaints": list(state.open_complaints),
            "bureau_reported": state.bureau_reported,
            "postponed_contacts": [
                {"step": key, "until": zone_clock.real_time(until).isoformat()} for key, until in state.deferred.items()
            ] if zone_clock else [],
            "next_action": self._next.reason if self._next else None,
            "unapplied_payments": [p.model_dump(mode="json") for p in state.unapplied_payments],
            "rejected_signals": [r.model_dump(mode="json") for r in state.rejected_signals],
        }

    # ------------------------------------------------------------------- steps

    async def _prepare(self) -> None:
        state = self._require_state()
        if self._carried_policy and state.clock_anchor is not None:
            # A continued run: the policy and profile came with the state.
            self._policy, self._profile = self._carried_policy
            self._clock = LoanClock(state.clock_anchor, state.time_zone, state.due_date, self._policy.day_seconds)
            self._terms = terms_for(self._policy, self._profile, state)
            return
        # Since the deep-stages patch, a local activity too: one marker, and no
        # round trip through the server before the loan's first decision.
        execute = workflow.execute_local_activity if self._deep else workflow.execute_activity
        try:
            prepared: acts.PreparedLoan = await execute(
                acts.PREPARE_LOAN,
                acts.PrepareLoanInput(
                    workflow_id=workflow.info().workflow_id,
                    loan_id=state.loan_id,
                    borrower_id=state.borrower_id,
                    amount_due=format_amount(state.amount_due, state.currency),
                    currency=state.currency,
                    due_date=state.due_date.isoformat(),
                    policy=state.policy,
                ),
                result_type=acts.PreparedLoan,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=DATABASE_RETRY,
                summary=f"Load policy {state.policy!r} and borrower preferences",
            )
        except ActivityError as error:
            cause = error.cause
            message = cause.message if isinstance(cause, ApplicationError) else str(error)
            raise ApplicationError(f"cannot start loan {state.loan_id}: {message}", type="PolicyError", non_retryable=True) from None
        self._policy = Policy.model_validate(prepared.policy)
        self._profile = Profile.model_validate(prepared.profile)
        if state.clock_anchor is None:  # a fresh loan, not a continued one
            state.time_zone, state.language = prepared.time_zone, prepared.language
            state.clock_anchor = workflow.now()
        self._clock = LoanClock(state.clock_anchor, state.time_zone, state.due_date, self._policy.day_seconds)
        if self._deep:
            self._terms = terms_for(self._policy, self._profile, state)
            if state.segment is None:
                self._resegment(self._clock.loan_time(workflow.now()))

    async def _enter_stage(self, stage: str, loan_now) -> None:
        state = self._require_state()
        day = self._clock.days_past_due(loan_now)
        await self._execute(
            acts.ENTER_STAGE,
            acts.StageEntry(
                key=f"{workflow.info().workflow_id}/{stage}",
                workflow_id=workflow.info().workflow_id,
                loan_id=state.loan_id,
                stage=stage,
                days_past_due=day,
                outstanding=format_amount(state.outstanding, state.currency),
                currency=state.currency,
                segment=(state.segment or "") if self._deep else "",
            ),
            f"Enter {stage} on day {day}",
        )
        previous, state.stage, state.done_steps = state.stage, stage, []
        if self._deep:
            self._resegment(loan_now)
            if stage == "legal" and state.legal is None:
                state.legal = LegalCase(opened_on=loan_now.date())
        self._count("dunning_stage_transitions", "loans entering a stage", stage=stage, policy=state.policy)
        # Postponed contacts of the old stage give way to the new stage's own.
        state.deferred = {key: at for key, at in state.deferred.items() if key.startswith(("notice/", "request/"))}
        workflow.logger.info("stage_entered", extra={"loan_id": state.loan_id, "stage": stage, "from": previous, "day": day})

    async def _contact(self, action: Action, loan_now) -> None:
        state = self._require_state()
        decided_at = workflow.now()  # the contact's time is when it went to the provider
        occurrence = action.occurrence
        info = workflow.info()
        request = acts.ContactRequest(
            # One message per loan, step and day, across retries, crashes and
            # continue-as-new (the first run id names this chain of runs).
            key=f"{info.workflow_id}/{info.first_execution_run_id}/{occurrence.key}",
            workflow_id=info.workflow_id,
            loan_id=state.loan_id,
            borrower_id=state.borrower_id,
            stage=occurrence.stage,
            channel=occurrence.channel,
            template=occurrence.template,
            days_past_due=self._clock.days_past_due(loan_now),
            outstanding=format_amount(state.outstanding, state.currency),
            currency=state.currency,
            due_date=state.due_date.isoformat(),
            # Enforced by the activity, which alone sees the borrower's other loans.
            voice_daily_cap=self._profile.caps.voice_attempts_per_day_per_borrower,
            **self._message_terms(occurrence),
        )
        try:
            outcome: acts.ContactOutcome = await workflow.execute_activity(
                acts.SEND_CONTACT,
                request,
                result_type=acts.ContactOutcome,
                start_to_close_timeout=timedelta(seconds=60),
                retry_policy=SEND_RETRY,
                summary=f"{occurrence.channel} {occurrence.template}, day {occurrence.day}",
            )
            result = outcome.result
        except ActivityError as error:
            cause = error.cause
            workflow.logger.warning(
                "contact_failed", extra={"loan_id": state.loan_id, "key": request.key, "error": str(cause or error)}
            )
            result = "failed"
        if result == "deferred":
            until = self._clock.loan_time(datetime.fromisoformat(outcome.not_before))
            self._defer(occurrence.key, until, "voice_daily_cap", outcome.detail or "call cap across the borrower's loans", occurrence.channel)
            return
        self._record_contact(action, loan_now, result, at=decided_at)

    async def _report_to_bureau(self, loan_now, kind: str, outcome: str | None = None) -> None:
        state = self._require_state()
        info = workflow.info()
        day = self._clock.days_past_due(loan_now)
        today = loan_now.date()
        if not self._deep:  # as before monthly records existed
            await self._execute(
                acts.REPORT_TO_BUREAU,
                acts.BureauReport(
                    key=f"{info.workflow_id}/bureau/first", workflow_id=info.workflow_id, loan_id=state.loan_id,
                    days_past_due=day, outstanding=format_amount(state.outstanding, state.currency), currency=state.currency,
                ),
                f"First credit-bureau report on day {day}",
            )
            state.bureau_reported = True
            return
        if state.bureau.first_delinquency is None:
            state.bureau.first_delinquency = bureau.first_delinquency(state.due_date)
            state.bureau.first_reported_on = today
        # A regular record belongs to this month's cycle; a correction or the
        # final record to the cycle of the day it is filed.
        cycle = bureau.cycle_of(today)
        fields = bureau.record_fields(state, day, today, outcome)
        number = state.bureau.records + 1
        await self._execute(
            acts.REPORT_TO_BUREAU,
            acts.BureauReport(
                key=f"{info.workflow_id}/bureau/{number}-{kind}", workflow_id=info.workflow_id, loan_id=state.loan_id,
                days_past_due=day, outstanding=fields["balance"], currency=state.currency, kind=kind, cycle=cycle,
                account_status=fields["account_status"], special_comment=fields["special_comment"],
                compliance_code=fields["compliance_code"], first_delinquency=fields["first_delinquency"],
                amount_past_due=fields["amount_past_due"], original_amount=fields["original_amount"],
                reported_on=today.isoformat(),
            ),
            f"Credit-bureau record {number} ({kind}): status {fields['account_status']} {fields['compliance_code']}".rstrip(),
        )
        state.bureau_reported = True
        state.bureau.records = number
        if kind in ("first", "regular"):
            state.bureau.last_cycle = cycle
        state.bureau.correction_due = False
        state.bureau.reported_disputed = state.bureau.reported_disputed or fields["compliance_code"] == "XB"
        state.bureau.reported_93 = state.bureau.reported_93 or fields["account_status"] == "93"

    # ------------------------------------------------------ plans and promises

    def _bookkeep(self, loan_now) -> None:
        """Charges up to today, and what payments did to a plan or a promise."""
        state = self._require_state()
        today = loan_now.date()
        post_charges(self._terms, state, self._clock.days_past_due(loan_now))
        plan = state.active_plan
        if plan is not None:
            progress = plan_progress(self._policy, plan, state.amount_paid, today)
            for installment in progress.newly_paid:
                installment.paid_on = today
                self._queue_arrangement(
                    "installment_paid", plan.plan_no, amount=str(installment.amount),
                    due_date=installment.due_date.isoformat(), installment=installment.number,
                )
            if progress.complete:
                plan.status, plan.ended_on = "kept", today
                self._queue_arrangement("plan_kept", plan.plan_no, amount=str(plan.total))
        promise = state.open_promise
        if promise is not None and promise_kept(promise, state.amount_paid):
            self._end_promise(loan_now, kept=True)

    def _break_plan(self, loan_now) -> None:
        state = self._require_state()
        plan = state.active_plan
        plan.status, plan.ended_on = "broken", loan_now.date()
        # The waivers were the price of keeping the plan: they lapse.
        reinstate(state, plan.waived_fees, plan.waived_interest)
        # Charges start again from today; the plan's days stay uncharged.
        state.charges_through_day = max(state.charges_through_day, self._clock.days_past_due(loan_now) - 1)
        self._queue_arrangement("plan_broken", plan.plan_no, amount=str(plan.total))
        self._count("dunning_plans_broken", "installment plans broken", policy=state.policy)
        workflow.logger.info("plan_broken", extra={"loan_id": state.loan_id, "plan_no": plan.plan_no})

    def _end_promise(self, loan_now, kept: bool) -> None:
        state = self._require_state()
        promise = state.open_promise
        promise.status, promise.ended_on = ("kept" if kept else "broken"), loan_now.date()
        self._queue_arrangement(
            "promise_kept" if kept else "promise_broken", promise.promise_no, amount=str(promise.amount),
            due_date=promise.by_date.isoformat(), source=promise.source,
        )
        if not kept:
            self._resegment(loan_now)  # a broken promise counts in the segment
        workflow.logger.info("promise_ended", extra={"loan_id": state.loan_id, "promise_no": promise.promise_no, "kept": kept})

    def _resegment(self, loan_now) -> None:
        state = self._require_state()
        state.segment = segment_name(self._policy, state, self._clock.days_past_due(loan_now))

    def _queue_arrangement(self, kind: str, number: int, **fields: Any) -> None:
        state = self._require_state()
        info = workflow.info()
        suffix = f"/i{fields['installment']}" if fields.get("installment") else ""
        family = "plan" if kind.startswith(("plan", "installment")) else "promise"
        loan_now = self._clock.loan_time(workflow.now())
        self._queue(
            acts.RECORD_ARRANGEMENT,
            acts.ArrangementEvent(
                key=f"{info.workflow_id}/{family}/{number}/{kind}{suffix}", workflow_id=info.workflow_id,
                loan_id=state.loan_id, kind=kind, number=number, currency=state.currency,
                at=workflow.now().isoformat(), days_past_due=self._clock.days_past_due(loan_now),
                policy=state.policy, segment=state.segment or "", **fields,
            ),
            f"{kind.replace('_', ' ').capitalize()} ({family} {number})",
        )

    def _message_terms(self, occurrence) -> dict:
        """An installment reminder states the installment, not the balance."""
        state = self._require_state()
        plan = state.active_plan
        if plan is None or occurrence.template not in (INSTALLMENT_REMINDER, PLAN_CONFIRMATION):
            return {}
        number = int(occurrence.key.split("/i")[1].split("/")[0]) if occurrence.template == INSTALLMENT_REMINDER else 1
        installment = plan.installments[number - 1]
        return {"message_amount": self._money(installment.amount), "message_due_date": installment.due_date.isoformat()}

    async def _assign_visit(self, loan_now) -> None:
        state = self._require_state()
        info = workflow.info()
        visit = FieldVisit(visit_id=f"{state.loan_id}-V{len(state.visits) + 1}", assigned_on=loan_now.date())
        await self._execute(
            acts.ASSIGN_FIELD_VISIT,
            acts.FieldVisitAssignment(
                key=f"{info.workflow_id}/visit/{visit.visit_id}", workflow_id=info.workflow_id, loan_id=state.loan_id,
                visit_id=visit.visit_id, staff_required=self._profile.rules.field_visit_min_staff or 1,
                days_past_due=self._clock.days_past_due(loan_now), outstanding=self._money(state.outstanding),
                currency=state.currency, at=workflow.now().isoformat(),
            ),
            f"Assign field visit {visit.visit_id}",
        )
        state.visits.append(visit)

    def _plan_view(self, plan) -> dict | None:
        if plan is None:
            return None
        state = self._require_state()
        return {
            "plan_no": plan.plan_no,
            "status": plan.status,
            "accepted_on": plan.accepted_on.isoformat(),
            "total": self._money(plan.total),
            "paid": self._money(min(plan.paid_under_plan(state.amount_paid), plan.total)),
            "waived_fees": self._money(plan.waived_fees),
            "waived_interest": self._money(plan.waived_interest),
            "installments": [
                {"number": i.number, "due_date": i.due_date.isoformat(), "amount": self._money(i.amount),
                 "paid_on": i.paid_on.isoformat() if i.paid_on else None}
                for i in plan.installments
            ],
        }

    def _promise_view(self) -> dict | None:
        state = self._require_state()
        promise = state.open_promise or (state.promises[-1] if state.promises else None)
        if promise is None:
            return None
        return {"promise_no": promise.promise_no, "amount": self._money(promise.amount), "by_date": promise.by_date.isoformat(),
                "status": promise.status, "source": promise.source}

    def _money(self, amount) -> str:
        return format_amount(amount, self._require_state().currency)

    async def _execute(self, activity_name: str, arg: Any, summary: str) -> None:
        """A write to our own database. Since the deep-stages patch it is a local
        activity: it runs inside the workflow task and leaves one marker in
        history instead of three activity events and a workflow task of three
        more. (A database write is short and idempotent by its key, which is
        what local activities suit; providers stay regular activities.)"""
        if self._deep:
            await workflow.execute_local_activity(
                activity_name, arg, start_to_close_timeout=timedelta(seconds=30), retry_policy=DATABASE_RETRY, summary=summary
            )
        else:
            await workflow.execute_activity(
                activity_name, arg, start_to_close_timeout=timedelta(seconds=30), retry_policy=DATABASE_RETRY, summary=summary
            )

    def _record_contact(self, action: Action, loan_now: datetime, result: str, at: datetime | None = None) -> None:
        state = self._require_state()
        occurrence = action.occurrence
        state.done_steps.append(occurrence.key)
        state.deferred.pop(occurrence.key, None)
        self._count("dunning_contacts", "contacts by channel and result", channel=occurrence.channel, result=result)
        state.contacts.append(
            ContactEntry(
                at=(at or workflow.now()).astimezone(self._clock.zone),
                loan_at=loan_now,
                step=occurrence.key,
                channel=occurrence.channel,
                stage=occurrence.stage,
                template=occurrence.template,
                day=occurrence.day,
                result=result,
            )
        )

    async def _write_records(self) -> None:
        while self._records:
            record = self._records[0]
            await self._execute(record.activity, record.arg, record.summary)
            self._records.pop(0)

    async def _close(self, outcome: str) -> dict:
        state = self._require_state()
        # Let signal handlers finish, then record what they queued.
        await workflow.wait_condition(workflow.all_handlers_finished)
        await self._write_records()
        final_stage = state.stage
        loan_now = self._clock.loan_time(workflow.now())
        if self._deep:
            # Nothing is left open when the loan ends: a plan or promise the
            # balance did not pay off ends broken (written off, dispute upheld).
            if state.active_plan is not None:
                self._break_plan(loan_now)
            if state.open_promise is not None:
                self._end_promise(loan_now, kept=False)
            await self._write_records()
        if self._deep and state.bureau_reported:
            # The bureau learns how it ended: paid (13/62), settled (13, AU), charged off (93).
            await self._report_to_bureau(loan_now, "final", outcome)
        await self._execute(
            acts.CLOSE_LOAN,
            acts.LoanClosing(
                workflow_id=workflow.info().workflow_id,
                loan_id=state.loan_id,
                outcome=outcome,
                amount_paid=format_amount(state.amount_paid, state.currency),
                outstanding=format_amount(state.outstanding, state.currency),
                final_stage=final_stage,
                closed_at=workflow.now().isoformat(),
                days_past_due=self._clock.days_past_due(loan_now),
                segment=state.segment or "",
                waived=self._money(state.waived),
                fees_charged=self._money(state.fees_charged),
                interest_charged=self._money(state.interest_charged),
            ),
            f"Close loan: {outcome}",
        )
        # `closed` is shown only once the database says so too.
        state.stage = contract.STAGE_CLOSED
        self._next = None
        self._publish(self._clock.loan_time(workflow.now()))
        await self._write_records()  # what signals queued while the loan closed
        workflow.set_current_details(f"Closed: {outcome} at {final_stage}.")
        workflow.logger.info("loan_closed", extra={"loan_id": state.loan_id, "outcome": outcome, "final_stage": final_stage})
        return {
            "loan_id": state.loan_id,
            "outcome": outcome,
            "amount_paid": format_amount(state.amount_paid, state.currency),
            "final_stage": final_stage,
        }

    async def _continue_as_new(self) -> None:
        state = self._require_state()
        await workflow.wait_condition(workflow.all_handlers_finished)
        await self._write_records()
        carried = {
            "loan_id": state.loan_id,
            "borrower_id": state.borrower_id,
            "amount_due": format_amount(state.amount_due, state.currency),
            "currency": state.currency,
            "due_date": state.due_date.isoformat(),
            "policy": state.policy,
            CARRIED_STATE: state.model_dump(mode="json"),
        }
        if self._deep:
            carried[CARRIED_POLICY] = {
                "policy": self._policy.model_dump(mode="json"), "profile": self._profile.model_dump(mode="json"),
            }
        workflow.continue_as_new(carried)

    # ----------------------------------------------------------------- helpers

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

    def _publish(self, loan_now) -> None:
        """Keep the search attributes current; upsert only what changed."""
        state = self._require_state()
        values = {
            sa.DUNNING_STAGE: state.stage,
            sa.DAYS_PAST_DUE: self._clock.days_past_due(loan_now),
            sa.OUTSTANDING_AMOUNT: float(state.outstanding),
            sa.LOAN_ID: state.loan_id,
            sa.DUNNING_POLICY: state.policy,
        }
        if self._deep:
            values[sa.DUNNING_SEGMENT] = state.segment or "none"  # Keyword: "" would not be searchable
        if self._publish_due_date:
            # The start of the due date in the borrower's zone: a fixed instant,
            # so `DueDate < X` stays right while the workflow sleeps, where
            # DaysPastDue is only as fresh as the last wake.
            values[sa.DUE_DATE] = self._clock.at(0)
        changed = [key.value_set(value) for key, value in values.items() if self._published.get(key.name) != value]
        if changed:
            workflow.upsert_search_attributes(changed)
            self._published.update({key.name: value for key, value in values.items()})

    def _parse_or_reject(self, name: str, model, payload: Any):
        try:
            return parse_signal(model, payload)
        except InputError as error:
            self._reject(name, str(error))
            return None

    def _reject(self, name: str, error: str) -> None:
        state = self._require_state()
        state.rejected_signals.append(RejectedSignal(signal=name, error=error, received_at=workflow.now()))
        workflow.logger.warning("signal_rejected", extra={"loan_id": state.loan_id, "signal": name, "error": error})
        self._touch()

    def _queue(self, activity_name: str, arg: Any, summary: str) -> None:
        self._records.append(_Record(activity_name, arg, summary))

    def _queue_payment_record(self, payment_id: str, raw: dict, applied: bool, reason: str = "") -> None:
        state = self._require_state()
        info = workflow.info()
        # A payment id is the key; a payload without one gets a key from its
        # place among this loan's signals, so it is still recorded exactly once.
        suffix = payment_id if applied else f"unapplied-{state.signals_received}-{payment_id or 'no-id'}"
        self._queue(
            acts.RECORD_PAYMENT,
            acts.PaymentRecord(
                key=f"{info.workflow_id}/payment/{suffix}",
                workflow_id=info.workflow_id,
                loan_id=state.loan_id,
                payment_id=payment_id,
                amount=str(raw.get("amount", ""))[:64],
                currency=str(raw.get("currency", ""))[:16],
                paid_at=str(raw.get("paid_at", "") or workflow.now().isoformat())[:64],
                applied=applied,
                reason=reason,
            ),
            f"Record payment {payment_id or '(no id)'}" + ("" if applied else " (unapplied)"),
        )

    def _queue_decision(self, kind: str, rule: str, reason: str, channel: str = "", step_key: str = "") -> None:
        """Record a compliance decision or an operator action in the audit log."""
        state = self._require_state()
        info = workflow.info()
        state.decisions_recorded += 1
        self._queue(
            acts.RECORD_DECISION,
            acts.DecisionRecord(
                key=f"{info.workflow_id}/{info.first_execution_run_id}/decision/{state.decisions_recorded}",
                workflow_id=info.workflow_id,
                loan_id=state.loan_id,
                kind=kind,
                rule=rule,
                reason=reason,
                channel=channel,
                step_key=step_key,
                at=workflow.now().isoformat(),
            ),
            f"Record {kind}: {rule}",
        )

    def _operator_action(self, signal: str, reason: str, channel: str = "") -> None:
        workflow.logger.info("operator_action", extra={"loan_id": self._require_state().loan_id, "signal": signal, "reason": reason})
        self._queue_decision("operator", signal, reason, channel)
        self._touch()

    def _defer(self, step_key: str, until: datetime, rule: str, reason: str, channel: str) -> None:
        """A compliance rule said 'not now': the contact waits for `until` (loan time)."""
        state = self._require_state()
        state.deferred[step_key] = until
        self._count("dunning_permits_denied", "contacts a compliance rule postponed", rule=rule, channel=channel)
        self._queue_decision("decision", rule, f"{reason}; postponed to {until.isoformat()}", channel, step_key)
        workflow.logger.info("contact_deferred", extra={"loan_id": state.loan_id, "key": step_key, "reason": reason})

    def _require_state(self) -> LoanState:
        if self._state is None:
            raise ApplicationError(f"invalid workflow input: {self._input_error}", type="InvalidInput", non_retryable=True)
        return self._state

    def _stage_label(self) -> str:
        stage = self._require_state().stage
        return "Not yet overdue enough for the first stage" if stage == contract.STAGE_PENDING else f"Stage {stage}"

