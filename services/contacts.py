"""Changing a borrower's contact details: the one way they change once placed.

Placing never changes them (db/directory.py refuses a record that disagrees).
An operator (`starter.py borrower-contact`) or a lender's system holding a
`borrowers:write` key (`PUT /borrowers/{borrower_id}/contact`) changes them
here, and both go through `change_contact`:

- the fields given replace the directory's; the fields left out stay;
  `None` clears one (and for `time_zone` means "the phone's zone again", or the loan policy's default without a phone);
- the result is validated exactly as a placement's borrower block is
  (services/placement.py, BorrowerContact), so a phone is E.164, an address
  an address, and the borrower stays reachable by phone or e-mail;
- the row and its audit entries are written in one transaction: one entry
  (kind `operator`, action `contact_changed`) per open loan of the borrower,
  so each loan's evidence shows why its next message went elsewhere (one
  entry without a loan when none is open), recording who made the change and
  the changed fields' values before and after, masked (dunning/masking.py);
- the send activity reads the directory at each send (activities/outbox.py),
  so open loans use the new details (addresses, name, language) from their
  next contact. Nothing goes to Temporal: workflows never held the details.
  Zones too (issue 15, item 3): the send checks the window in every zone the
  details give at that moment and tells the workflow, which plans with them
  from then on; a running loan keeps counting its days in the zone it
  started with.

A change that changes nothing writes nothing and audits nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from db import audit
from db.directory import CONTACT_FIELDS
from db.models import Borrower, Loan
from dunning.contract import workflow_id_for
from dunning.masking import mask
from services.placement import BorrowerContact

AUDIT_ACTION = "contact_changed"
# Preferences, not addresses: audited as they are. The rest is masked.
_PLAIN = ("language", "time_zone", "country")


class ContactError(ValueError):
    """Bad input: `problems` pairs a field with what is wrong with it."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{field}: {message}" for field, message in problems))


class UnknownBorrower(LookupError):
    pass


@dataclass(frozen=True)
class ContactChange:
    borrower_id: str
    changed: tuple[str, ...]  # field names; empty when nothing changed
    open_loans: tuple[str, ...]  # the loans whose next contact uses the new details

    def as_dict(self) -> dict:
        return {"borrower_id": self.borrower_id, "changed": list(self.changed), "open_loans": list(self.open_loans)}


def _masked(name: str, value: str | None) -> str | None:
    if value is None or name in _PLAIN:
        return value
    # Identity (the Metro 2 file's): an SSN's last four digits at most, a date of birth not at all.
    if name == "ssn":
        return "*****" + str(value)[-4:]
    if name == "date_of_birth":
        return "****-**-**"
    return mask(value)


def _problems(error: ValidationError, given: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The validation errors as (field, message). A field the caller did not
    give is named without its message, which may quote the stored value."""
    problems = []
    for item in error.errors():
        field = str(item["loc"][0]) if item["loc"] else next(
            (name for name in ("phone", "email") if name in given), "phone"
        )
        message = item["msg"].removeprefix("Value error, ")
        if item["loc"] and field not in given:
            message = "the stored value is not valid any more; give a new one"
        problems.append((field, message))
    return problems


def check_fields(changes: Mapping[str, Any]) -> None:
    """Only contact fields, at least one, each a string or None."""
    problems = [(name, f"is not a contact field (one of {', '.join(CONTACT_FIELDS)})")
                for name in changes if name not in CONTACT_FIELDS]
    problems += [(name, "must be a string or null") for name, value in changes.items()
                 if name in CONTACT_FIELDS and value is not None and not isinstance(value, str)]
    if not changes:
        problems.append(("(payload)", f"give at least one of {', '.join(CONTACT_FIELDS)}"))
    if problems:
        raise ContactError(problems)


def change_contact(
    sessions: sessionmaker[Session],
    borrower_id: str,
    changes: Mapping[str, str | None],
    by: str,
    at: datetime | None = None,
) -> ContactChange:
    """Apply `changes` to the borrower's contact details, validated and
    audited in one transaction (see the module doc). `by` names who made the
    change (an API key's id and name, or an operator). Raises ContactError
    (naming the field) or UnknownBorrower; nothing is written then."""
    check_fields(changes)
    at = (at or datetime.now(timezone.utc)).astimezone(timezone.utc)
    with sessions.begin() as db:
        # Locked: two changes at once apply one after the other (PostgreSQL).
        row = db.scalar(select(Borrower).where(Borrower.borrower_id == borrower_id).with_for_update())
        if row is None:
            raise UnknownBorrower(borrower_id)
        before = {name: getattr(row, name) for name in CONTACT_FIELDS}
        try:
            after = BorrowerContact.model_validate({**before, **changes}).directory_fields()
        except ValidationError as error:
            raise ContactError(_problems(error, changes)) from None
        changed = tuple(name for name in CONTACT_FIELDS if before[name] != after[name])
        open_loans = tuple(db.scalars(
            select(Loan.loan_id).where(Loan.borrower_id == borrower_id, Loan.outcome.is_(None)).order_by(Loan.loan_id)
        ))
        if not changed:
            return ContactChange(borrower_id, (), open_loans)
        for name in changed:
            setattr(row, name, after[name])
        payload = {
            "action": AUDIT_ACTION,
            "borrower_id": borrower_id,
            "by": by,
            "fields": {name: {"before": _masked(name, before[name]), "after": _masked(name, after[name])}
                       for name in changed},
        }
        for loan_id in open_loans or ("",):
            audit.append(db, "operator", loan_id, workflow_id_for(loan_id) if loan_id else "", payload, at=at)
    return ContactChange(borrower_id, changed, open_loans)
