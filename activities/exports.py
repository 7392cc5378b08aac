"""Files for others to pick up: the credit-bureau file of a reporting cycle
(Metro 2, dunning/metro2.py), and a legal case's documents.

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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from activities.context import ActivitySettings
from db.evidence import evidence
from db.models import Borrower, BureauRecord, Loan, LoanItemization, Payment
from dunning import metro2
from dunning.compliance import ProfileError
from dunning.csv_cells import csv_row
from dunning.policy import PolicyError
from loaders.config_files import load_policy, load_profile

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


def _money(value: Decimal | None) -> str:
    return "" if value is None else f"{value:f}"


# ------------------------------------------------------------ the bureau file
#
# One Metro 2 file per reporting cycle (YYYY-MM), rewritten whole from the
# bureau_records rows each time a record of the cycle is filed: a Header, one
# Base Segment per account (a K1 with the original creditor when the loan's
# profile collects as a debt collector), a Trailer. Fixed-length records
# (dunning/metro2.py). An account's records of the cycle (first, correction,
# final) are one Base Segment: the latest replaces the earlier ones. An
# account the file cannot identify or describe (no SSN nor date of birth, no
# address, no date opened, ...) is left out and named in
# metro2-YYYY-MM.refused.json beside the file (ids and field names only).


def bureau_cycle_path(export_dir: Path, cycle: str) -> Path:
    return export_dir / "bureau" / f"metro2-{cycle}.dat"


def bureau_refusals_path(export_dir: Path, cycle: str) -> Path:
    return export_dir / "bureau" / f"metro2-{cycle}.refused.json"


@dataclass(frozen=True)
class Refusal:
    """An account left out of the cycle's file: the loan, the fields, why."""

    loan_id: str
    fields: tuple[str, ...]
    reason: str

    def line(self) -> str:
        return f"loan {self.loan_id}: {', '.join(self.fields)}: {self.reason}"

    def as_dict(self) -> dict:
        return {"loan_id": self.loan_id, "fields": list(self.fields), "reason": self.reason}


@dataclass(frozen=True)
class BureauCycle:
    path: Path
    accounts: tuple[str, ...]  # the loans with a Base Segment in the file
    refused: tuple[Refusal, ...]


class _Refused(Exception):
    def __init__(self, fields: tuple[str, ...], reason: str) -> None:
        super().__init__(reason)
        self.fields, self.reason = fields, reason


# Account Status codes of a paid or closed account (CRRG Exhibit 4).
_CHARGE_OFF = ("64", "97")
_CHUNK = 500


def _digits(text: str | None) -> str:
    return "".join(c for c in (text or "") if c.isdigit())


def _telephone(phone: str | None) -> int:
    """A North American number's ten digits (E.164 +1...); 0 for any other."""
    if phone and phone.startswith("+1") and len(_digits(phone)) == 11:
        return int(_digits(phone)[1:])
    return 0


def _whole(value: Decimal | str | None) -> int:
    try:
        return metro2.whole_dollars(value)
    except (InvalidOperation, ValueError):
        return 0


def _utc(instant: datetime | None) -> datetime | None:
    """A stored instant in UTC, naive (the file's time stamp has no zone)."""
    if instant is None:
        return None
    aware = instant if instant.tzinfo else instant.replace(tzinfo=timezone.utc)
    return aware.astimezone(timezone.utc).replace(tzinfo=None)


def _day(instant: datetime | None) -> date | None:
    return None if instant is None else _utc(instant).date()


def agency_by_profile(settings: ActivitySettings) -> Callable[[str], bool]:
    """policy name -> does its profile's collector collect as a debt collector
    (then the file carries the K1 original creditor segment)."""
    known: dict[str, bool] = {}

    def collects_as_agency(policy_name: str) -> bool:
        if policy_name not in known:
            policy = load_policy(policy_name, settings.policies_dir)
            profile = load_profile(policy.profile, settings.profiles_dir)
            known[policy_name] = profile.collector.collects_as_debt_collector
        return known[policy_name]

    return collects_as_agency


def _latest_by_loan(db: Session, cycle: str) -> dict[str, BureauRecord]:
    """Each account's record of the cycle: the last filed (first < correction < final)."""
    latest: dict[str, BureauRecord] = {}
    for record in db.scalars(select(BureauRecord).where(BureauRecord.cycle == cycle).order_by(BureauRecord.id)):
        latest[record.loan_id] = record
    return latest


def _history(db: Session, loan_ids: list[str], cycle: str) -> dict[str, list[BureauRecord]]:
    """Each account's records of the cycles up to this one, in filing order."""
    history: dict[str, list[BureauRecord]] = {loan_id: [] for loan_id in loan_ids}
    for start in range(0, len(loan_ids), _CHUNK):
        chunk = loan_ids[start:start + _CHUNK]
        for record in db.scalars(select(BureauRecord).where(
            BureauRecord.loan_id.in_(chunk), BureauRecord.cycle <= cycle,
        ).order_by(BureauRecord.id)):
            history[record.loan_id].append(record)
    return history


def _payments(db: Session, loan_id: str) -> list[tuple[date, Decimal]]:
    paid = []
    # A payment reversed since (issue 18, item 3) was never a payment.
    for payment in db.scalars(select(Payment).where(
            Payment.loan_id == loan_id, Payment.applied.is_(True), Payment.reversed_at.is_(None))):
        try:
            paid.append((_day(payment.recorded_at), Decimal(payment.amount)))
        except (InvalidOperation, ValueError):
            continue
    return paid


def _base_segment(
    db: Session, record: BureauRecord, history: list[BureauRecord], furnisher: metro2.Furnisher,
    agency: bool, cycle: str,
) -> metro2.DataRecord:
    """The account's Base Segment (and K1), or _Refused naming the fields it lacks."""
    loan = db.get(Loan, record.loan_id)
    if loan is None:
        raise _Refused(("loan",), "no such loan in the directory")
    if len(record.loan_id) > 30:
        raise _Refused(("loan_id",), "is longer than the Consumer Account Number's 30 characters")
    if not record.account_status:
        raise _Refused(("bureau_record.account_status",), "the record has no Account Status")
    borrower = db.get(Borrower, loan.borrower_id)
    if borrower is None:
        raise _Refused(("borrower",), "the loan's borrower is not in the directory")
    if not borrower.ssn and borrower.date_of_birth is None:
        raise _Refused(("borrower.ssn", "borrower.date_of_birth"),
                       "neither is on file; a Base Segment identifies the consumer by one of them")
    name = metro2.split_name(borrower.name)
    if name is None:
        raise _Refused(("borrower.name",), "does not split into a surname and a first name")
    missing = [f"borrower.{field}" for field in ("address_line1", "city", "region", "postal_code")
               if not getattr(borrower, field)]
    if missing:
        raise _Refused(tuple(missing), "the consumer's address is required in a Base Segment")
    zip_code = _digits(borrower.postal_code)
    if len(zip_code) not in (5, 9) or len(borrower.region.strip()) != 2:
        raise _Refused(("borrower.region", "borrower.postal_code"),
                       "a Base Segment needs a two-letter state and a 5- or 9-digit ZIP code")
    itemization = db.get(LoanItemization, loan.loan_id)
    if itemization is None or itemization.date_opened is None:
        raise _Refused(("itemization.date_opened",), "a Base Segment needs the account's Date Opened")
    if agency and not (itemization.creditor_on_itemization_date or "").strip():
        raise _Refused(("itemization.creditor_on_itemization_date",),
                       "a debt collector's K1 segment needs the original creditor's name")

    reported = record.reported_on or _day(record.created_at)
    earlier: dict[str, tuple[str | None, str | None]] = {}
    charged_off: Decimal | None = None
    for older in history:  # filing order: a cycle's last record wins
        if older.cycle and older.cycle < cycle:
            earlier[older.cycle] = (older.account_status, older.payment_rating)
        if charged_off is None and older.account_status in _CHARGE_OFF:
            charged_off = older.balance
    payments = [(day, amount) for day, amount in _payments(db, loan.loan_id) if day is not None and day <= reported]
    this_cycle = sum((amount for day, amount in payments if f"{day:%Y-%m}" == cycle), Decimal("0"))
    closed = _day(loan.closed_at)
    base = {
        "processingIndicator": 1,
        "timeStamp": _utc(record.created_at),
        "correctionIndicator": 0,
        "identificationNumber": furnisher.identification_number,
        "consumerAccountNumber": record.loan_id,
        "portfolioType": furnisher.portfolio_type or ("O" if agency else "I"),
        "accountType": furnisher.account_type or ("48" if agency else "01"),
        "dateOpened": itemization.date_opened,
        "creditLimit": 0,
        "highestCredit": _whole(record.original_amount if record.original_amount is not None else loan.amount_due),
        "termsDuration": itemization.terms_duration or "001",
        "termsFrequency": itemization.terms_frequency or "P",
        "scheduledMonthlyPaymentAmount": 0,
        "actualPaymentAmount": _whole(this_cycle),
        "accountStatus": record.account_status,
        "paymentRating": record.payment_rating or "",
        "paymentHistoryProfile": metro2.payment_history_profile(cycle, earlier),
        "specialComment": record.special_comment or "",
        "complianceConditionCode": record.compliance_code or "",
        "currentBalance": _whole(record.balance),
        "amountPastDue": _whole(record.amount_past_due),
        "originalChargeOffAmount": _whole(charged_off) if record.account_status in _CHARGE_OFF else 0,
        "dateAccountInformation": reported,
        "dateFirstDelinquency": record.first_delinquency,
        "dateClosed": closed if closed is not None and closed <= reported else None,
        "dateLastPayment": max((day for day, _ in payments), default=None),
        **name,
        "socialSecurityNumber": int(borrower.ssn) if borrower.ssn else 0,
        "dateBirth": borrower.date_of_birth,
        "telephoneNumber": _telephone(borrower.phone),
        # Individual (the borrower alone is liable), or X once the borrower is
        # deceased (issue 18, item 1; CRRG FAQ 19).
        "ecoaCode": record.ecoa_code or "1",
        # A bankruptcy's indicator, or Q to remove one (dunning/bureau.py).
        "consumerInformationIndicator": record.consumer_information_indicator or "",
        "countryCode": (borrower.country or "").upper(),
        "firstLineAddress": metro2.ascii_upper(borrower.address_line1)[:32].rstrip(),
        "secondLineAddress": metro2.ascii_upper(borrower.address_line2)[:32].rstrip(),
        "city": metro2.ascii_upper(borrower.city)[:20].rstrip(),
        "state": borrower.region.strip().upper(),
        "zipCode": zip_code,
    }
    data = metro2.DataRecord(base)
    if agency:
        data.segments.append(("K1", {
            "originalCreditorName": metro2.ascii_upper(itemization.creditor_on_itemization_date)[:30].rstrip(),
            "creditorClassification": furnisher.creditor_classification,
        }))
    try:  # every value fits its field, or the account is refused naming it
        metro2.encode_fields(metro2.BASE, base)
        for identifier, values in data.segments:
            metro2.encode_fields(metro2.SEGMENTS[identifier], values)
    except metro2.Metro2Error as error:
        # The field's name only: the message may quote a value (personal data).
        raise _Refused((str(error).split(":", 1)[0],), "the value does not fit its Metro 2 field") from None
    return data


def metro2_cycle(
    db: Session, cycle: str, furnisher: metro2.Furnisher, collects_as_agency: Callable[[str], bool],
    created: date,
) -> tuple[str, tuple[str, ...], tuple[Refusal, ...]]:
    """The cycle's Metro 2 file's text, the accounts in it and those refused."""
    latest = _latest_by_loan(db, cycle)
    history = _history(db, sorted(latest), cycle)
    records: list[metro2.DataRecord] = []
    accounts: list[str] = []
    refused: list[Refusal] = []
    for loan_id in sorted(latest):
        record = latest[loan_id]
        try:
            if not furnisher.identification_number:
                raise _Refused(("DUNNING_METRO2_IDENTIFICATION_NUMBER",),
                               "the furnisher's Identification Number is not set")
            loan = db.get(Loan, loan_id)
            try:
                agency = collects_as_agency(loan.policy) if loan is not None else False
            except (PolicyError, ProfileError) as error:
                raise _Refused(("policy",), f"the loan's policy or profile cannot be read: {error}") from None
            records.append(_base_segment(db, record, history[loan_id], furnisher, agency, cycle))
            accounts.append(loan_id)
        except _Refused as refusal:
            refused.append(Refusal(loan_id, refusal.fields, refusal.reason))
    activity = max((r.base["dateAccountInformation"] for r in records), default=created)
    header = {
        "innovisProgramIdentifier": furnisher.innovis_program_id,
        "equifaxProgramIdentifier": furnisher.equifax_program_id,
        "experianProgramIdentifier": furnisher.experian_program_id,
        "transUnionProgramIdentifier": furnisher.transunion_program_id,
        "activityDate": min(activity, created),
        "dateCreated": created,
        "programDate": furnisher.program_date,
        "programRevisionDate": furnisher.program_date,
        "reporterName": metro2.ascii_upper(furnisher.reporter_name)[:40].rstrip(),
        "reporterAddress": metro2.ascii_upper(furnisher.reporter_address)[:96].rstrip(),
        "reporterTelephoneNumber": int(_digits(furnisher.reporter_telephone)[-10:] or 0),
    }
    return metro2.write(header, records), tuple(accounts), tuple(refused)


def write_metro2_cycle(
    db: Session, export_dir: Path, cycle: str, settings: ActivitySettings | None = None, *,
    furnisher: metro2.Furnisher | None = None, collects_as_agency: Callable[[str], bool] | None = None,
    created: date | None = None,
) -> BureauCycle:
    """The cycle's file, written whole and renamed into place, and its
    refusals beside it (removed when there are none)."""
    if furnisher is None:
        furnisher = settings.metro2 if settings is not None else metro2.Furnisher()
    if collects_as_agency is None:
        collects_as_agency = agency_by_profile(settings) if settings is not None else (lambda policy: False)
    created = created or datetime.now(timezone.utc).date()
    text, accounts, refused = metro2_cycle(db, cycle, furnisher, collects_as_agency, created)
    path = bureau_cycle_path(export_dir, cycle)
    _atomic_write(path, text)
    refusals = bureau_refusals_path(export_dir, cycle)
    if refused:
        _atomic_write(refusals, json.dumps([r.as_dict() for r in refused], indent=2))
    else:
        refusals.unlink(missing_ok=True)
    return BureauCycle(path, accounts, refused)


def write_bureau_cycle(db: Session, export_dir: Path, cycle: str, settings: ActivitySettings | None = None) -> Path:
    """The cycle's Metro 2 file (write_metro2_cycle), its path."""
    return write_metro2_cycle(db, export_dir, cycle, settings).path


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
                                 "reversed" if payment.reversed_at else "yes" if payment.applied else "no",
                                 payment.reason or "")))
    _atomic_write(folder / "statement_of_account.csv", statement.getvalue())
    documents.append({"name": "statement_of_account", "path": str(folder / "statement_of_account.csv")})

    rows = evidence(db, loan_id)
    for row in rows:
        row["at"] = row["at"].isoformat()
    _atomic_write(folder / "contact_evidence.json", json.dumps(rows, ensure_ascii=False, indent=2, default=str))
    documents.append({"name": "contact_evidence", "path": str(folder / "contact_evidence.json")})
    return json.dumps(documents)
