"""Placing loans: the borrowers and loans written to the directory first
(db/directory.py, all or nothing), then each loan's workflow started,
idempotently. Shared by `starter.py start` (`Placing`) and the gateway's
`POST /loans/overdue` (`start_placement`, one loan).

Per loan, whether to start its workflow:

- a loan the directory records as closed (repaid, written off, ...) is not
  started again;
- a loan whose workflow is running is left alone (`already running`);
- otherwise the workflow is started with the id conflict policy USE_EXISTING
  and the reuse policy ALLOW_DUPLICATE_FAILED_ONLY: a completed workflow is
  not started again, one that failed or was terminated can be (`restarted`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client

from db.directory import PlacementSummary, upsert_placements
from db.models import Loan
from dunning import contract
from services.placement import Placement

STARTED = "started"
RESTARTED = "restarted"
ALREADY_RUNNING = "already running"
CLOSED = "closed"


@dataclass(frozen=True)
class PlaceResult:
    loan_id: str
    workflow_id: str
    state: str  # started | restarted | already running | closed
    run_id: str | None
    # For a loan closed in the directory: its outcome.
    outcome: str | None = None

    @property
    def started(self) -> bool:
        return self.state in (STARTED, RESTARTED)

    def line(self) -> str:
        """The starter's output line for this loan."""
        if self.state == CLOSED and self.outcome is not None:
            return f"{self.workflow_id}\tclosed\toutcome {self.outcome}; not started again"
        if self.state == CLOSED:
            return f"{self.workflow_id}\tclosed\trun {self.run_id}; completed, not started again"
        return f"{self.workflow_id}\t{self.state}\trun {self.run_id}"


def closed_outcomes(sessions: sessionmaker[Session], loan_ids: Iterable[str]) -> dict[str, str]:
    """loan id -> outcome, for the loans the directory records as closed."""
    ids = list(loan_ids)
    with sessions() as db:
        return dict(
            db.execute(select(Loan.loan_id, Loan.outcome).where(Loan.loan_id.in_(ids), Loan.outcome.is_not(None))).all()
        )


async def start_placement(
    client: Client, task_queue: str, placement: Placement, closed_outcome: str | None = None
) -> PlaceResult:
    """Start the loan's workflow unless it is running or closed (see the module doc)."""
    from temporalio.client import WorkflowExecutionStatus
    from temporalio.common import (
        SearchAttributePair,
        TypedSearchAttributes,
        WorkflowIDConflictPolicy,
        WorkflowIDReusePolicy,
    )
    from temporalio.exceptions import WorkflowAlreadyStartedError
    from temporalio.service import RPCError, RPCStatusCode

    from workflows.search_attributes import DUNNING_POLICY, LOAN_ID

    workflow_id = contract.workflow_id_for(placement.loan_id)
    if closed_outcome is not None:
        return PlaceResult(placement.loan_id, workflow_id, CLOSED, None, outcome=closed_outcome)
    try:
        running = await client.get_workflow_handle(workflow_id).describe()
    except RPCError as error:
        if error.status != RPCStatusCode.NOT_FOUND:
            raise
        running = None
    if running is not None and running.status == WorkflowExecutionStatus.RUNNING:
        return PlaceResult(placement.loan_id, workflow_id, ALREADY_RUNNING, running.run_id)
    try:
        handle = await client.start_workflow(
            contract.WORKFLOW_TYPE,
            placement.workflow_input(),
            id=workflow_id,
            task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            # A loan whose workflow completed (repaid, written off, ...) is
            # not dunned again; one that failed or was terminated can be.
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
            static_summary=(
                f"Loan {placement.loan_id}: {placement.amount_due} {placement.currency} "
                f"due {placement.due_date}, policy {placement.policy}"
            ),
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(LOAN_ID, placement.loan_id),
                    SearchAttributePair(DUNNING_POLICY, placement.policy),
                ]
            ),
        )
    except WorkflowAlreadyStartedError as error:
        return PlaceResult(placement.loan_id, workflow_id, CLOSED, error.run_id)
    return PlaceResult(placement.loan_id, workflow_id, RESTARTED if running is not None else STARTED, handle.result_run_id)


@dataclass(frozen=True)
class Placing:
    """Loans written to the directory, their workflows to start."""

    placements: list[Placement]
    summary: PlacementSummary
    closed: dict[str, str]  # loan id -> outcome, for the loans the directory records as closed

    @classmethod
    def write(cls, sessions: sessionmaker[Session], placements: Iterable[Placement]) -> Placing:
        """The borrowers and loans into the directory (all or nothing), and
        which of the loans it records as closed."""
        placements = list(placements)
        summary = upsert_placements(sessions, placements)
        return cls(placements, summary, closed_outcomes(sessions, [p.loan_id for p in placements]))

    async def start_each(self, client: Client, task_queue: str) -> AsyncIterator[PlaceResult]:
        """Each loan's start_placement, in order, as each answers."""
        for placement in self.placements:
            yield await start_placement(client, task_queue, placement, self.closed.get(placement.loan_id))
