"""Agent tasks the loan opens (issue 17): work for a person, watched until
its SLA runs out, then escalated once (db/tasks.py keeps the task itself).

A dispute opens a `dispute_verification` task, a complaint a
`complaint_review` task. A loan started before agent tasks existed has no
`task_sla_hours` and opens none (its history replays unchanged)."""

from __future__ import annotations

from datetime import timedelta

from dunning import keys
from dunning.state import LoanState, OpenTask
from dunning.transitions.records import TASK, Moment, Record


# Kinds whose outcomes send the task's subject back to the loan
# (config/tasks.toml): their record carries it.
SUBJECT_KINDS = frozenset({"complaint_review", "settlement_approval"})


def open_task(
    state: LoanState, moment: Moment, kind: str, subject: str, default_hours: int | None = None, note: str = "",
) -> list[Record]:
    """The task's record (written by the open_task activity, idempotent by
    key), and the task watched until its SLA; nothing before agent tasks.
    `default_hours` is the SLA of a kind the loan's policy did not name when
    it started (a kind newer than the loan)."""
    if state.task_sla_hours is None:
        return []
    hours = state.task_sla_hours.get(kind, default_hours)
    if hours is None or moment.clock is None:
        return []
    key = keys.task_key(moment.workflow_id, kind, subject)
    if any(task.key == key for task in state.open_tasks):
        return []
    state.open_tasks.append(OpenTask(key=key, kind=kind, due=moment.loan_now + timedelta(hours=hours)))
    return [Record(
        TASK,
        dict(key=key, workflow_id=moment.workflow_id, loan_id=state.loan_id, borrower_id=state.borrower_id, kind=kind,
             due_in_hours=hours, subject=subject if kind in SUBJECT_KINDS else "", at=moment.now.isoformat(),
             **({"note": note} if note else {})),
        f"Open a {kind} task",
    )]


def task_escalated(state: LoanState, key: str) -> None:
    """Escalated (or done, or gone): no longer watched."""
    state.open_tasks = [task for task in state.open_tasks if task.key != key]
