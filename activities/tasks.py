"""The agent tasks' activities: `open_task`, work for a person made once by
its key, and `escalate_task`, a task past its SLA raised in priority once.

Both write through db/tasks.py (the one owner of a task's status) in one
transaction with their audit entries, so Temporal may retry either, or run
it again after a worker crash, and the database keeps one task and one
entry per change. A task a person already claimed or completed is left as
it is: opening it again answers its current status; escalating a done task
changes nothing.
"""

from __future__ import annotations

from datetime import timezone

from sqlalchemy.orm import Session
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.context import ActivityContext, aware, bound_log
from activities.payloads import ESCALATE_TASK, OPEN_TASK, TaskEscalation, TaskOpened, TaskRequest
from db import tasks as store
from dunning.contract import wrong_workflow_id


class AgentTasks:
    def __init__(self, context: ActivityContext, needs_subject: frozenset[str] = frozenset({"complaint_review"})) -> None:
        self._context = context
        # Kinds whose outcomes send the task's subject (config/tasks.toml): opened without one, refused.
        self._needs_subject = needs_subject

    def registered(self) -> list:
        return [self.open_task, self.escalate_task]

    @activity.defn(name=OPEN_TASK)
    def open_task(self, request: TaskRequest) -> TaskOpened:
        """The task for `request.key`: made open (and audited) the first time,
        found after. A bad field fails at once, not retried (InvalidTask)."""
        at = aware(request.at) if request.at else self._context.clock()
        problem = wrong_workflow_id(request.loan_id, request.workflow_id)
        if problem is None and request.kind in self._needs_subject and not request.subject:
            problem = f"subject: a {request.kind} task needs one (the id its outcome sends)"
        if problem is not None:
            raise ApplicationError(problem, type="InvalidTask", non_retryable=True)
        new = store.NewTask(
            key=request.key, kind=request.kind, loan_id=request.loan_id, borrower_id=request.borrower_id,
            workflow_id=request.workflow_id, due_in_hours=request.due_in_hours, sla_hours=request.sla_hours,
            priority=request.priority, subject=request.subject or None, note=request.note or None,
        )

        def work(db: Session) -> tuple[TaskOpened, bool]:
            row, created = store.create(db, new, at)
            return TaskOpened(row.key, row.id, row.status, row.due_at.astimezone(timezone.utc).isoformat()), created

        try:
            opened, created = self._context.in_transaction(work)
        except store.TaskError as error:
            raise ApplicationError(str(error), type="InvalidTask", non_retryable=True) from None
        bound_log(loan_id=request.loan_id).info("task_opened", key=request.key, kind=request.kind,
                                                task_id=opened.task_id, new=created, status=opened.status)
        return opened

    @activity.defn(name=ESCALATE_TASK)
    def escalate_task(self, escalation: TaskEscalation) -> str:
        """Raise the task's priority and mark it escalated, once (audited).
        Answers its status (`open`, `claimed`, `done`), or `unknown` for no
        such key: the workflow stops watching a done task."""
        at = aware(escalation.at) if escalation.at else self._context.clock()

        def work(db: Session) -> tuple[str, bool, str]:
            row, changed = store.escalate(db, escalation.key, at)
            return (row.status if row is not None else "unknown"), changed, (row.loan_id if row is not None else "")

        try:
            status, changed, loan_id = self._context.in_transaction(work)
        except store.TaskError as error:
            raise ApplicationError(str(error), type="InvalidTask", non_retryable=True) from None
        bound_log(loan_id=loan_id).info("task_escalated", key=escalation.key, status=status, new=changed)
        return status
