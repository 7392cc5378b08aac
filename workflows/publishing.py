"""The loan's search attributes (docs/contract.md), kept current from the
workflow: upserted only when a value changed."""

from datetime import datetime
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from dunning import legal_status
    from dunning.clock import LoanClock
    from dunning.state import LoanState
    from workflows import search_attributes as sa


class Publisher:
    def __init__(self) -> None:
        self._published: dict[str, Any] = {}
        # The DueDate attribute; histories recorded before it replay without it.
        self.due_date = True
        # The BorrowerId attribute (issue 17): an operator lists a borrower's
        # loans in the Temporal UI. Histories recorded before it replay without it.
        self.borrower_id = True
        # The LegalStatus attribute (issue 18, item 1). Histories recorded
        # before it replay without it; a run from before it publishes it once
        # a legal status is set (which only a run since then can do).
        self.legal_status = True

    def publish(self, state: LoanState, clock: LoanClock, loan_now: datetime) -> None:
        values = {
            sa.DUNNING_STAGE: state.stage,
            sa.DAYS_PAST_DUE: clock.days_past_due(loan_now),
            sa.OUTSTANDING_AMOUNT: float(state.outstanding),
            sa.LOAN_ID: state.loan_id,
            sa.DUNNING_POLICY: state.policy,
        }
        if state.segment is not None:  # none is assigned in a run from before segments
            values[sa.DUNNING_SEGMENT] = state.segment or "none"  # Keyword: "" would not be searchable
        if self.due_date:
            # The start of the due date in the borrower's zone: a fixed instant,
            # so `DueDate < X` stays right while the workflow sleeps, where
            # DaysPastDue is only as fresh as the last wake.
            values[sa.DUE_DATE] = clock.at(0)
        if self.borrower_id:
            values[sa.BORROWER_ID] = state.borrower_id
        if self.legal_status or state.legal_status is not None:
            values[sa.LEGAL_STATUS] = legal_status.headline(state)  # Keyword: `none`, never ""
        changed = [key.value_set(value) for key, value in values.items() if self._published.get(key.name) != value]
        if changed:
            workflow.upsert_search_attributes(changed)
            self._published.update({key.name: value for key, value in values.items()})
