"""How the workflow calls its activities: which activity writes each kind of
record the transitions return, as a local activity or not, with what
timeouts and retries; loading the loan; sending a contact."""

from datetime import timedelta
from types import MappingProxyType

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities import payloads as acts
    from dunning.money import format_amount
    from dunning.state import LoanState
    from dunning.transitions import records
    from dunning.transitions.records import Record, Write

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
# A contact that found the database down waits this long before it is
# decided again (SEND_RETRY's attempts took about half a minute already).
DATABASE_WAIT = timedelta(minutes=10)
# The activity that writes each kind of record, and its payload type (read-only:
# every workflow in the worker shares this module).
WRITERS = MappingProxyType({
    records.PAYMENT: (acts.RECORD_PAYMENT, acts.PaymentRecord),
    records.DECISION: (acts.RECORD_DECISION, acts.DecisionRecord),
    records.COMPLAINT_OPENED: (acts.OPEN_COMPLAINT, acts.ComplaintOpened),
    records.COMPLAINT_RESOLVED: (acts.RESOLVE_COMPLAINT, acts.ComplaintResolved),
    records.ARRANGEMENT: (acts.RECORD_ARRANGEMENT, acts.ArrangementEvent),
    records.VISIT_ASSIGNED: (acts.ASSIGN_FIELD_VISIT, acts.FieldVisitAssignment),
    records.VISIT_OUTCOME: (acts.RECORD_VISIT, acts.VisitOutcome),
    records.LEGAL_OUTCOME: (acts.RECORD_LEGAL_OUTCOME, acts.LegalOutcomeRecord),
    records.STAGE_ENTRY: (acts.ENTER_STAGE, acts.StageEntry),
    records.BUREAU: (acts.REPORT_TO_BUREAU, acts.BureauReport),
    records.CLOSING: (acts.CLOSE_LOAN, acts.LoanClosing),
    records.TASK: (acts.OPEN_TASK, acts.TaskRequest),
    records.PAYMENT_REVERSAL: (acts.RECORD_PAYMENT_REVERSAL, acts.PaymentReversalRecord),
    records.REOPENING: (acts.REOPEN_LOAN, acts.ReopeningRecord),
})


def _execute(locally: bool):
    """Since the deep-stages patch a write to our own database is a local
    activity: it runs inside the workflow task and leaves one marker in
    history instead of three activity events and a workflow task of three
    more. (A database write is short and idempotent by its key, which is
    what local activities suit; providers stay regular activities.)"""
    return workflow.execute_local_activity if locally else workflow.execute_activity


class RecordWriter:
    """Records queued by signal and update handlers (which cannot wait for
    activities), written by the loop, in order, before it plans again."""

    def __init__(self) -> None:
        self.queued: list[Record] = []
        self.locally = True  # as local activities (dunning/versions.py)

    def queue(self, written: list[Record]) -> None:
        self.queued.extend(written)

    def take(self, kind: str) -> list[Record]:
        """The queued records of `kind`, taken out of the queue (to be written
        by another activity: the closing payments, with the close)."""
        taken = [r for r in self.queued if r.kind == kind]
        self.queued = [r for r in self.queued if r.kind != kind]
        return taken

    async def write_queued(self) -> None:
        while self.queued:
            await self.write(self.queued[0])
            self.queued.pop(0)

    async def apply(self, write: Write) -> None:
        """Write the record, then change the state."""
        await self.write(write.record)
        write.then()

    async def write(self, record: Record) -> None:
        activity, payload = WRITERS[record.kind]
        try:
            await _execute(self.locally)(
                activity, payload(**record.fields), start_to_close_timeout=timedelta(seconds=30), retry_policy=DATABASE_RETRY,
                summary=record.summary,
            )
        except ActivityError as error:
            if record.kind != records.TASK:
                raise
            # A task that cannot be opened (InvalidTask) never stops the loan.
            workflow.logger.warning("task_not_opened", extra={"key": record.fields["key"], "error": str(error.cause or error)})


async def prepare_loan(state: LoanState, locally: bool) -> acts.PreparedLoan:
    """The policy and profile the loan runs on (into history, so a running
    loan keeps them) and the borrower's preferences; a start that cannot get
    them fails, naming why."""
    try:
        return await _execute(locally)(
            acts.PREPARE_LOAN,
            acts.PrepareLoanInput(
                workflow_id=workflow.info().workflow_id, loan_id=state.loan_id, borrower_id=state.borrower_id,
                amount_due=format_amount(state.amount_due, state.currency), currency=state.currency,
                due_date=state.due_date.isoformat(), policy=state.policy,
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


async def escalate_task(key: str, locally: bool) -> str:
    """An agent task past its SLA: its priority raised, once (db/tasks.py)."""
    try:
        return await _execute(locally)(
            acts.ESCALATE_TASK, acts.TaskEscalation(key=key, at=workflow.now().isoformat()), result_type=str,
            start_to_close_timeout=timedelta(seconds=30), retry_policy=DATABASE_RETRY, summary="Escalate a task past its SLA",
        )
    except ActivityError as error:
        workflow.logger.warning("task_not_escalated", extra={"key": key, "error": str(error.cause or error)})
        return "unknown"


async def send_contacts(requests: list[Record]) -> list[acts.ContactOutcome | None]:
    """Contacts due at the same instant through one activity (issue 19, item
    5): each one's outcome, in order, as send_contact gives it."""
    if len(requests) == 1:
        return [await send_contact(requests[0])]
    try:
        batch = await workflow.execute_activity(
            acts.SEND_CONTACTS,
            acts.ContactBatch([acts.ContactRequest(**r.fields) for r in requests], max_attempts=SEND_RETRY.maximum_attempts),
            result_type=acts.ContactOutcomes,
            start_to_close_timeout=timedelta(seconds=60) * len(requests),
            # A lost worker is noticed as fast as for one contact (the
            # activity heartbeats before each), not after the batch's whole time.
            heartbeat_timeout=timedelta(seconds=60),
            retry_policy=SEND_RETRY,
            summary="; ".join(r.summary for r in requests)[:400],
        )
    except ActivityError as error:
        # The batch failed as a whole (the database down, or a contact still
        # failing after the retries): each contact as if it had failed alone.
        # The ones it sent are found by their keys when decided again.
        return [_failed_send(request, error) for request in requests]
    return list(batch.outcomes)


async def send_contact(request: Record) -> acts.ContactOutcome | None:
    """The provider's answer, or None when it refused or kept failing."""
    try:
        return await workflow.execute_activity(
            acts.SEND_CONTACT,
            acts.ContactRequest(**request.fields),
            result_type=acts.ContactOutcome,
            start_to_close_timeout=timedelta(seconds=60),
            retry_policy=SEND_RETRY,
            summary=request.summary,
        )
    except ActivityError as error:
        return _failed_send(request, error)


def _failed_send(request: Record, error: ActivityError) -> acts.ContactOutcome | None:
    """What a send activity that failed for good means for one contact."""
    cause = error.cause
    if isinstance(cause, ApplicationError) and cause.type == acts.DATABASE_UNAVAILABLE:
        # The borrower's coordinator (the database) is down: the contact
        # waits and is decided again, never lost (issue 17, item 1).
        workflow.logger.warning("contact_waits_for_database", extra={"loan_id": request.fields["loan_id"], "key": request.fields["key"]})
        return acts.ContactOutcome(
            key=request.fields["key"], channel=request.fields["channel"], result="deferred",
            detail="the database that coordinates the borrower's contacts was unavailable",
            not_before=(workflow.now() + DATABASE_WAIT).isoformat(), rule="database_unavailable",
        )
    workflow.logger.warning(
        "contact_failed", extra={"loan_id": request.fields["loan_id"], "key": request.fields["key"], "error": str(error.cause or error)}
    )
    return None
