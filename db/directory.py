"""Writing placed loans and their borrowers to the directory, in one transaction.

Placing never changes what exists. Placing the same record twice changes
nothing. A borrower who exists with other contact details, or a loan placed
before with other terms (borrower, amount, currency, due date, policy, the
borrower's jurisdiction and the last payment before placing, the validation
notice's itemization), is a
conflict: the whole batch is refused (PlacementConflict, naming the fields,
never their values) and nothing is written. Contact details change only
through services/contacts.py, authenticated and audited; a loan's terms never
change, since its workflow runs on the terms it started with.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date
from decimal import Decimal
from typing import Iterable, Protocol

from sqlalchemy.orm import Session, sessionmaker

from db.models import Borrower, Loan, LoanItemization
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


# The borrowers row's contact columns, compared field by field.
CONTACT_FIELDS = (
    "name", "phone", "email", "push_token", "language", "time_zone",
    "address_line1", "address_line2", "city", "region", "postal_code", "country",
    "ssn", "date_of_birth",
)
# Identity for the Metro 2 bureau file: a record that gives none claims none
# (like an unknown zone), so a re-post without them does not contradict them.
OPTIONAL_IDENTITY = ("ssn", "date_of_birth")
# The terms a loan's workflow runs on, under the record's field names. Policy
# is one: a re-post under another policy would otherwise be silently ignored.
TERMS = ("borrower_id", "amount_due", "currency", "due_date", "policy")
# The validation notice's itemization (loan_itemizations), a loan term too:
# a conflict names them `itemization.<field>`.
ITEMIZATION_FIELDS = (
    "itemization_date", "amount_on_itemization_date", "interest_since", "fees_since", "payments_since",
    "credits_since", "current_creditor", "creditor_on_itemization_date", "account_number", "debt_type",
    "date_opened", "terms_duration", "terms_frequency",
)


@dataclass(frozen=True)
class Conflict:
    """One record that disagrees with what the directory holds. It names the
    differing fields, never their values: the answer goes to whoever posted
    the record, who may be probing someone else's details."""

    loan_id: str
    borrower_id: str
    subject: str  # "borrower" (contact details) | "loan" (terms)
    fields: tuple[str, ...]

    def line(self) -> str:
        if self.subject == "borrower":
            return (f"loan {self.loan_id}: borrower {self.borrower_id} exists with other contact details "
                    f"({', '.join(self.fields)}); change them with `starter.py borrower-contact` "
                    f"or PUT /borrowers/{self.borrower_id}/contact")
        return f"loan {self.loan_id}: already placed with other terms ({', '.join(self.fields)})"

    def as_dict(self) -> dict:
        return {"loan_id": self.loan_id, "borrower_id": self.borrower_id, "subject": self.subject,
                "fields": list(self.fields)}


class PlacementConflict(Exception):
    """Records that would change what exists: the whole batch was refused and
    nothing was written. `conflicts` lists every one of them."""

    def __init__(self, conflicts: list[Conflict]) -> None:
        self.conflicts = list(conflicts)
        super().__init__("\n".join(conflict.line() for conflict in self.conflicts))

    def detail(self) -> dict:
        """The 409 body's `detail`: ids and field names only."""
        return {
            "message": "the placement conflicts with what exists; nothing was written",
            "conflicts": [conflict.as_dict() for conflict in self.conflicts],
        }


def new_loan(
    loan_id: str, borrower_id: str, amount_due: Decimal, currency: str, due_date: date, policy: str, workflow_id: str,
    jurisdiction: str | None = None, last_payment_date: date | None = None,
) -> Loan:
    """A loan's directory row, not started yet: placing writes it, and so does
    the workflow's first activity (prepare_loan) for a loan started without
    placing whose borrower is in the directory."""
    return Loan(
        loan_id=loan_id, borrower_id=borrower_id, amount_due=amount_due, currency=currency, due_date=due_date,
        policy=policy, workflow_id=workflow_id, stage=STAGE_PENDING, jurisdiction=jurisdiction,
        last_payment_date=last_payment_date,
    )


@dataclass
class PlacementSummary:
    borrowers_created: int = 0
    borrowers_unchanged: int = 0
    loans_created: int = 0
    loans_unchanged: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def _differing(row: object, wanted: dict, names: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(name for name in names if getattr(row, name) != wanted[name])


def _compared(wanted: dict) -> tuple[str, ...]:
    """The contact fields a record is compared on. A record whose zone is not
    known (None: neither given nor derivable from a phone) claims none, so it
    does not contradict a stored one (a borrower placed before zones could be
    unknown holds the Asia/Shanghai that placing used to make up)."""
    unclaimed = {name for name in ("time_zone", *OPTIONAL_IDENTITY) if wanted.get(name) is None}
    return tuple(name for name in CONTACT_FIELDS if name not in unclaimed)


# What a placement says of the debt besides its terms (issue 18, item 2):
# the borrower's jurisdiction and the last payment before placing.
FACT_FIELDS = ("jurisdiction", "last_payment_date")


def _facts(placement: object) -> dict:
    """The placement's jurisdiction and last payment (None: not given)."""
    facts = getattr(placement, "facts", None)
    return facts.directory_fields() if facts is not None else dict.fromkeys(FACT_FIELDS)


def _facts_differing(stored: Loan, wanted: dict) -> tuple[str, ...]:
    """A fact a re-post would change. A record that leaves one out claims
    none (like the itemization); one that gives it for a loan placed without
    it, or otherwise, is a conflict: the limitation a loan runs on is fixed."""
    return tuple(name for name in FACT_FIELDS if wanted[name] is not None and getattr(stored, name) != wanted[name])


def _itemization_fields(placement: object) -> dict | None:
    """The placement's loan_itemizations columns; None when it has no block."""
    itemization = getattr(placement, "itemization", None)
    return None if itemization is None else itemization.directory_fields()


def _itemization_differing(stored: LoanItemization | None, wanted: dict | None) -> tuple[str, ...]:
    """The itemization fields a re-post would change. A record without the
    block claims nothing (like an unknown zone); one with a block for a loan
    placed without it would add to what exists: a conflict (`itemization`)."""
    if wanted is None:
        return ()
    if stored is None:
        return ("itemization",)
    return tuple(f"itemization.{name}" for name in _differing(stored, wanted, ITEMIZATION_FIELDS))


def upsert_placements(session_factory: sessionmaker[Session], placements: Iterable[PlacedLoan]) -> PlacementSummary:
    """Insert the borrowers and loans that are not there yet, all or nothing.

    A record whose borrower exists with other contact details, or whose loan
    exists with other terms, is a conflict: every conflict of the batch is
    collected, then PlacementConflict is raised and the transaction rolls
    back, so nothing of the batch is written. A record equal to what exists
    changes nothing. A later record of the same batch is compared with an
    earlier one, so a file giving one borrower two sets of details is refused.
    """
    summary = PlacementSummary()
    conflicts: list[Conflict] = []
    created: set[str] = set()
    unchanged: set[str] = set()
    with session_factory.begin() as db:
        for placement in placements:
            loan = placement.loan
            wanted = placement.borrower.directory_fields()
            borrower = db.get(Borrower, loan.borrower_id)
            if borrower is None:
                db.add(Borrower(borrower_id=loan.borrower_id, **wanted))
                db.flush()  # the loan's foreign key, and a later record of the same borrower, see it
                created.add(loan.borrower_id)
            elif differing := _differing(borrower, wanted, _compared(wanted)):
                conflicts.append(Conflict(loan.loan_id, loan.borrower_id, "borrower", differing))
            elif loan.borrower_id not in created:
                unchanged.add(loan.borrower_id)

            existing = db.get(Loan, loan.loan_id)
            itemization = _itemization_fields(placement)
            facts = _facts(placement)
            if existing is None:
                db.add(new_loan(loan.loan_id, loan.borrower_id, loan.amount_due, loan.currency, loan.due_date,
                                loan.policy, workflow_id_for(loan.loan_id), **facts))
                db.flush()
                if itemization is not None:
                    db.add(LoanItemization(loan_id=loan.loan_id, **itemization))
                    db.flush()
                summary.loans_created += 1
            elif differing := (_differing(existing, {name: getattr(loan, name) for name in TERMS}, TERMS)
                               + _facts_differing(existing, facts)
                               + _itemization_differing(db.get(LoanItemization, loan.loan_id), itemization)):
                # A closed or terminated loan too: its id is never reused for new terms.
                conflicts.append(Conflict(loan.loan_id, loan.borrower_id, "loan", differing))
            else:
                summary.loans_unchanged += 1
        if conflicts:
            raise PlacementConflict(conflicts)  # leaving the block rolls the whole batch back
    summary.borrowers_created, summary.borrowers_unchanged = len(created), len(unchanged)
    return summary
