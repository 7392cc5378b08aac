"""Writing placed loans and their borrowers to the directory, in one transaction.

Placing the same record twice changes nothing. A loan already placed with
other terms (amount, currency, due date, borrower) is left as it is, since its
workflow runs on the terms it started with, and reported as a conflict.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date
from decimal import Decimal
from typing import Iterable, Protocol

from sqlalchemy.orm import Session, sessionmaker

from db.models import Borrower, Loan
from dunning.contract import STAGE_PENDING, workflow_id_for
from dunning.inputs import LoanInput


class _DirectoryBorrower(Protocol):
    def directory_fields(self) -> dict: ...


class PlacedLoan(Protocol):
    """What the directory needs of a placement (services/placement.py's
    Placement): the loan's terms and the borrower block. The directory sits
    below the services and names no type of theirs."""

    @property
    def loan(self) -> LoanInput: ...

    @property
    def borrower(self) -> _DirectoryBorrower: ...


_CONTACT_FIELDS = ("name", "phone", "email", "push_token", "language", "time_zone")
# The terms a loan's workflow runs on: placed again with others, it is a conflict.
_TERMS = ("borrower_id", "amount_due", "currency", "due_date")


def new_loan(
    loan_id: str, borrower_id: str, amount_due: Decimal, currency: str, due_date: date, policy: str, workflow_id: str
) -> Loan:
    """A loan's directory row, not started yet: placing writes it, and so does
    the workflow's first activity (prepare_loan) for a loan started without
    placing whose borrower is in the directory."""
    return Loan(
        loan_id=loan_id, borrower_id=borrower_id, amount_due=amount_due, currency=currency, due_date=due_date,
        policy=policy, workflow_id=workflow_id, stage=STAGE_PENDING,
    )


@dataclass
class PlacementSummary:
    borrowers_created: int = 0
    borrowers_updated: int = 0
    loans_created: int = 0
    loans_unchanged: int = 0
    # "L-9: already placed with other terms (...); left unchanged"
    conflicts: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def upsert_placements(session_factory: sessionmaker[Session], placements: Iterable[PlacedLoan]) -> PlacementSummary:
    """Upsert the borrowers and insert the loans that are not there yet, all or nothing."""
    summary = PlacementSummary()
    with session_factory.begin() as db:
        for placement in placements:
            loan = placement.loan
            wanted = placement.borrower.directory_fields()
            borrower = db.get(Borrower, loan.borrower_id)
            if borrower is None:
                db.add(Borrower(borrower_id=loan.borrower_id, **wanted))
                db.flush()  # the loan's foreign key, and a later record of the same borrower, see it
                summary.borrowers_created += 1
            elif any(getattr(borrower, name) != wanted[name] for name in _CONTACT_FIELDS):
                for name in _CONTACT_FIELDS:
                    setattr(borrower, name, wanted[name])
                summary.borrowers_updated += 1

            existing = db.get(Loan, loan.loan_id)
            if existing is None:
                db.add(new_loan(loan.loan_id, loan.borrower_id, loan.amount_due, loan.currency, loan.due_date,
                                loan.policy, workflow_id_for(loan.loan_id)))
                db.flush()
                summary.loans_created += 1
            elif any(getattr(existing, name) != getattr(loan, name) for name in _TERMS):
                summary.conflicts.append(
                    f"{loan.loan_id}: already placed with other terms "
                    f"({existing.amount_due} {existing.currency} due {existing.due_date}, borrower {existing.borrower_id}); "
                    "left unchanged"
                )
            else:
                summary.loans_unchanged += 1
    return summary
