"""Placing loans: the borrowers and loans written to the directory first
(db/directory.py, all or nothing; a record that would change what exists
refuses the batch with PlacementConflict), then each loan's workflow started,
idempotently. Shared by `starter.py start` (`Placing`) and the gateway's
`POST /loans/overdue` (one loan).

Per loan, whether to start its workflow. A loan id is used once: a loan
whose workflow has ended, however it ended, is never started again, with the
same terms or others (other terms are already a conflict in the directory).
An operator who terminated a run meant it; a run that failed is resumed with
Temporal's reset, which keeps its history, never by a fresh run that would
dun the borrower again from the start.

- a loan the directory records as closed (repaid, written off, ...) is not
  started again (`closed`, with its outcome);
- a loan whose workflow is running is left alone (`already running`);
- a loan whose workflow has ended (completed, terminated, failed, timed out)
  is not started again (`closed`, with how its run ended);
- a loan the directory records as having entered a stage, whose workflow
  Temporal no longer knows (its history is past the namespace's retention),
  is not started again either (`closed`);
- otherwise the workflow is started with the id conflict policy USE_EXISTING
  and the reuse policy REJECT_DUPLICATE, so a run that ended between the
  check and the start is not replaced either.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client

from db.directory import PlacementConflict, PlacementSummary, upsert_placements
from db.models import Loan
from dunning import contract
from dunning.contract import STAGE_PENDING
from services.placement import Placement

__all__ = ["PlacementConflict", "Placing", "PlaceResult", "start_placement"]

STARTED = "started"
ALREADY_RUNNING = "already running"
CLOSED = "closed"


@dataclass(frozen=True)
class PlaceResult:
    loan_id: str
    workflow_id: str
    state: str  # started | already running | closed
    run_id: str | None
    # For a loan closed in the directory: its outcome.
    outcome: str | None = None
    # For a loan whose workflow ended without closing it in the directory:
    # how the run ended (terminated, failed, ...), or "no longer in Temporal".
    ended: str | None = None

    @property
    def started(self) -> bool:
        return self.state == STARTED

    def line(self) -> str:
        """The starter's output line for this loan."""
        if self.state == CLOSED and self.outcome is not None:
            return f"{self.workflow_id}\tclosed\toutcome {self.outcome}; not started again"
        if self.state == CLOSED:
            return f"{self.workflow_id}\tclosed\trun {self.run_id}; {self.ended or 'ended'}, not started again"
        return f"{self.workflow_id}\t{self.state}\trun {self.run_id}"


def closed_outcomes(sessions: sessionmaker[Session], loan_ids: Iterable[str]) -> dict[str, str]:
    """loan id -> outcome, for the loans the directory records as closed."""
    ids = list(loan_ids)
    with sessions() as db:
        return dict(
            db.execute(select(Loan.loan_id, Loan.outcome).where(Loan.loan_id.in_(ids), Loan.outcome.is_not(None))).all()
        )


def staged_loans(sessions: sessionmaker[Session], loan_ids: Iterable[str]) -> frozenset[str]:
    """The loans the directory records as having entered a stage: their
    workflow has run, whether or not Temporal still remembers it."""
    ids = list(loan_ids)
    with sessions() as db:
        return frozenset(db.scalars(select(Loan.loan_id).where(Loan.loan_id.in_(ids), Loan.stage != STAGE_PENDING)))


async def start_placement(
    client: Client, task_queue: str, placement: Placement, closed_outcome: str | None = None, has_run: bool = False,
    new_loan: bool = False,
) -> PlaceResult:
    """Start the loan's workflow unless it is running or closed (see the module doc).

    `new_loan`: the directory had no row for the loan before this placement
    wrote it (services/bulk_placing.py knows), so placing never started it and
    the describe is skipped: one call instead of two per loan. The start's
    reuse policy still refuses to replace a run that ended, and a run started
    by hand without placing is kept (USE_EXISTING)."""
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
        running = None if new_loan else await client.get_workflow_handle(workflow_id).describe()
    except RPCError as error:
        if error.status != RPCStatusCode.NOT_FOUND:
            raise
        running = None
    if running is not None and running.status == WorkflowExecutionStatus.RUNNING:
        return PlaceResult(placement.loan_id, workflow_id, ALREADY_RUNNING, running.run_id)
    if running is not None:  # ended: terminated, failed, completed, timed out
        ended = running.status.name.lower().replace("_", " ") if running.status else "ended"
        return PlaceResult(placement.loan_id, workflow_id, CLOSED, running.run_id, ended=ended)
    if has_run:
        return PlaceResult(placement.loan_id, workflow_id, CLOSED, None, ended="no longer in Temporal")
    try:
        handle = await client.start_workflow(
            contract.WORKFLOW_TYPE,
            placement.workflow_input(),
            id=workflow_id,
            task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            # A loan id is used once (see the module doc): a run that ended
            # since the describe above is not replaced.
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
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
        return PlaceResult(placement.loan_id, workflow_id, CLOSED, error.run_id, ended="ended")
    return PlaceResult(placement.loan_id, workflow_id, STARTED, handle.result_run_id)


@dataclass(frozen=True)
class Placing:
    """Loans written to the directory, their workflows to start."""

    placements: list[Placement]
    summary: PlacementSummary
    closed: dict[str, str]  # loan id -> outcome, for the loans the directory records as closed
    staged: frozenset[str] = frozenset()  # loans the directory records as having entered a stage

    @classmethod
    def write(cls, sessions: sessionmaker[Session], placements: Iterable[Placement]) -> Placing:
        """The borrowers and loans into the directory (all or nothing;
        PlacementConflict when a record would change what exists), and which
        of the loans it records as closed or as having run."""
        placements = list(placements)
        summary = upsert_placements(sessions, placements)
        ids = [p.loan_id for p in placements]
        return cls(placements, summary, closed_outcomes(sessions, ids), staged_loans(sessions, ids))

    async def start_each(self, client: Client, task_queue: str) -> AsyncIterator[PlaceResult]:
        """Each loan's start_placement, in order, as each answers."""
        for placement in self.placements:
            yield await start_placement(client, task_queue, placement, self.closed.get(placement.loan_id),
                                        placement.loan_id in self.staged)
