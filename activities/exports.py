"""Files for others to pick up: the credit-bureau export of a reporting
cycle, and a legal case's documents.

Each file is written whole from the database and renamed into place, so a
retried activity or a crashed worker never leaves a half-written file, a line
twice or a line missing: the rows are the truth, the file a rendering of them.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from decimal import Decimal
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.evidence import evidence
from db.models import BureauRecord, Loan, Payment
from dunning.csv_cells import csv_row

# The Metro 2 base-segment fields we fill, in file order, under their Metro 2
# names (CDIA Credit Reporting Resource Guide), one row per record.
BUREAU_COLUMNS = (
    "consumer_account_number",  # the loan id; the lender maps it to its own account number
    "record_key",
    "record_kind",  # first | regular | correction | final
    "date_of_account_information",
    "account_status",
    "special_comment",
    "compliance_condition_code",
    "date_of_first_delinquency",
    "highest_credit_or_original_loan_amount",
    "current_balance",
    "amount_past_due",
    "currency",
    "days_past_due",
    "consumer_information_indicator",  # blank: identity fields are joined by the lender from its own files
)


def _atomic_write(path: Path, text: str) -> None:
    # mkstemp creates the file 0600, and the rename keeps that: the case
    # files hold personal data and are never readable by others.
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def bureau_cycle_path(export_dir: Path, cycle: str) -> Path:
    return export_dir / "bureau" / f"metro2-{cycle}.csv"


def _money(value: Decimal | None) -> str:
    return "" if value is None else f"{value:f}"


def write_bureau_cycle(db: Session, export_dir: Path, cycle: str) -> Path:
    """The cycle's export file, from every record of that cycle, in filing order."""
    records = db.scalars(select(BureauRecord).where(BureauRecord.cycle == cycle).order_by(BureauRecord.id)).all()
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(csv_row(BUREAU_COLUMNS))
    for r in records:
        writer.writerow(csv_row([
            r.loan_id, r.key, r.kind, (r.reported_on.isoformat() if r.reported_on else ""),
            r.account_status or "", r.special_comment or "", r.compliance_code or "",
            r.first_delinquency.isoformat() if r.first_delinquency else "",
            _money(r.original_amount), _money(r.balance), _money(r.amount_past_due), r.currency,
            r.days_past_due, "",
        ]))
    path = bureau_cycle_path(export_dir, cycle)
    _atomic_write(path, out.getvalue())
    return path


def write_legal_documents(db: Session, export_dir: Path, loan_id: str) -> str:
    """The case file: the contract terms on record, the statement of account
    and the contact evidence from the audit log. Returns the JSON list of
    documents for the legal case row."""
    folder = export_dir / "legal" / loan_id
    loan = db.get(Loan, loan_id)
    documents = []

    contract = {
        "loan_id": loan_id,
        "borrower_id": loan.borrower_id if loan else None,
        "amount_due": _money(loan.amount_due) if loan else None,
        "currency": loan.currency if loan else None,
        "due_date": loan.due_date.isoformat() if loan else None,
        "policy": loan.policy if loan else None,
        "placed_at": loan.placed_at.isoformat() if loan and loan.placed_at else None,
    }
    _atomic_write(folder / "contract.json", json.dumps(contract, ensure_ascii=False, indent=2))
    documents.append({"name": "contract", "path": str(folder / "contract.json")})

    statement = io.StringIO()
    writer = csv.writer(statement, lineterminator="\n")
    # Every cell through csv_row: a payment id or a note starting with "="
    # must not run as a formula in the lawyer's spreadsheet.
    writer.writerow(csv_row(("date", "entry", "payment_id", "amount", "currency", "applied", "note")))
    if loan is not None:
        writer.writerow(csv_row((loan.due_date.isoformat(), "amount_due", "", _money(loan.amount_due), loan.currency, "", "")))
    for payment in db.scalars(select(Payment).where(Payment.loan_id == loan_id).order_by(Payment.id)):
        writer.writerow(csv_row((payment.paid_at, "payment", payment.payment_id, payment.amount, payment.currency,
                                 "yes" if payment.applied else "no", payment.reason or "")))
    _atomic_write(folder / "statement_of_account.csv", statement.getvalue())
    documents.append({"name": "statement_of_account", "path": str(folder / "statement_of_account.csv")})

    rows = evidence(db, loan_id)
    for row in rows:
        row["at"] = row["at"].isoformat()
    _atomic_write(folder / "contact_evidence.json", json.dumps(rows, ensure_ascii=False, indent=2, default=str))
    documents.append({"name": "contact_evidence", "path": str(folder / "contact_evidence.json")})
    return json.dumps(documents)
