"""Placing overdue loans: records with the borrower's contact details.

A record is the workflow input plus a `borrower` block (docs/contract.md,
"Placing loans"). Every record of a file is validated before anything is
written, and an error names the record and the field; the borrower block goes
to the directory (db/directory.py), the rest becomes the workflow input.
"""

from __future__ import annotations

import csv
import io
import json
import re
import unicodedata
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, EmailStr, Field, ValidationError, field_validator, model_validator

from dunning.inputs import ID_PATTERN, InputError, IsoDate, LoanInput, explain
from dunning.money import minor_units
from loaders.zones import known_region, primary_zone, region_has_table

LANGUAGES = ("zh_CN", "zh_TW", "en")


class PlacementError(ValueError):
    """One line per bad record: 'record 3 (loan_id L-9): borrower.phone: ...'."""


def _e164(value: str) -> str:
    """The number in E.164 form (+8613800138000)."""
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        raise ValueError(f"must be an E.164 number such as +8613800138000, got {value[:40]!r}") from None
    if not phonenumbers.is_valid_number(number):
        raise ValueError(f"is not a valid phone number: {value[:40]!r}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _iana_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: "Asia" is a directory, a long name too long
        raise ValueError(f"must be an IANA time zone such as Asia/Shanghai, got {value[:64]!r}") from None
    return value


def _unless_absent(check: Callable[[str], str]) -> Callable[[str | None], str | None]:
    """A field check that lets an absent value (None) through."""

    def checked(value: str | None) -> str | None:
        return None if value is None else check(value)

    return checked


ADDRESS_FIELDS = ("address_line1", "address_line2", "city", "region", "postal_code", "country")
_SSN = re.compile(r"^(\d{3})-?(\d{2})-?(\d{4})$")


def _ssn_digits(value: Any) -> str | None:
    """A US Social Security Number as nine digits (blank: absent). The
    messages never quote it."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise ValueError("must be a string of nine digits such as \"123-45-6789\"")
    match = _SSN.match(value.strip())
    if not match:
        raise ValueError("must be nine digits, optionally as 123-45-6789")
    area, group, serial = match.groups()
    # Never issued: area 000, 666 or 900-999, group 00, serial 0000.
    if area in ("000", "666") or area >= "900" or group == "00" or serial == "0000":
        raise ValueError("is not a valid Social Security Number")
    return area + group + serial


def _birth_date(value: Any) -> Any:
    """YYYY-MM-DD (or a date, from the directory); from 1900. Blank is absent."""
    if value is None or isinstance(value, date):
        return value
    if isinstance(value, str) and not value.strip():
        return None
    if not isinstance(value, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value.strip()):
        raise ValueError('must be an ISO 8601 date such as "1980-04-30"')
    try:
        parsed = date.fromisoformat(value.strip())
    except ValueError:
        raise ValueError("is not a valid date") from None
    if parsed.year < 1900:
        raise ValueError("must be a year from 1900")
    return parsed
_US_ZIP = re.compile(r"^\d{5}(?:-\d{4})?$")

# What a name never holds: a scheme, "www.", or a dotted host with a path.
_LINK = re.compile(r"(?i)(?:[a-z][a-z0-9+.-]*://|www\.|\b[a-z0-9-]+\.[a-z]{2,}/)")


class BorrowerContact(BaseModel):
    """The borrower block: what the directory keeps. Never enters Temporal."""

    # hide_input_in_errors: a validation error (a 422, a log line) never
    # repeats the values, an SSN or a date of birth among them.
    model_config = ConfigDict(extra="ignore", frozen=True, hide_input_in_errors=True)

    name: Annotated[str, Field(min_length=1, max_length=200)]
    phone: str | None = None  # E.164, normalized
    email: EmailStr | None = None
    push_token: Annotated[str, Field(max_length=512)] | None = None
    language: Literal["zh_CN", "zh_TW", "en"] = "zh_CN"
    # An IANA zone. Left out, it is the phone number's region's zone; with no
    # phone (or a number without a zone of its own) it stays None, "not
    # known": no zone is made up here. The loan's policy supplies it then
    # (prepare_loan, its `default_time_zone`), so one borrower's loans under
    # two policies each take their own policy's.
    time_zone: str | None = None
    # The postal address (for a mailed letter, the validation notice, and the
    # zones its state spans). Optional; given, it needs a first line, a city,
    # a postal code and an ISO 3166 country code, and for a country whose
    # regions config/zones/ knows (US), its state code.
    address_line1: Annotated[str, Field(max_length=200)] | None = None
    address_line2: Annotated[str, Field(max_length=200)] | None = None
    city: Annotated[str, Field(max_length=100)] | None = None
    region: Annotated[str, Field(max_length=64)] | None = None
    postal_code: Annotated[str, Field(max_length=32)] | None = None
    country: Annotated[str, Field(max_length=2)] | None = None
    # Optional identity for the Metro 2 bureau file (activities/exports.py),
    # which needs one of them. Kept out of repr (a log line or a traceback
    # never shows them); errors name the field, never the value.
    ssn: Annotated[str | None, Field(repr=False)] = None  # nine digits; "123-45-6789" is accepted
    date_of_birth: Annotated[date | None, Field(repr=False)] = None  # YYYY-MM-DD

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        # The name goes verbatim into SMS, voice and e-mail under the lender's
        # name: a line break, a control character or a web address in it
        # would let whoever places a loan write their own message.
        if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in value):
            raise ValueError("must not contain line breaks or control characters")
        if _LINK.search(value):
            raise ValueError("must not contain a web address")
        return value.strip()

    @field_validator("name", "push_token")
    @classmethod
    def _storable(cls, value: str | None) -> str | None:
        # PostgreSQL text cannot hold NUL: refused here, not by a failed write.
        if value is not None and "\x00" in value:
            raise ValueError("must not contain NUL characters")
        return value

    @field_validator(*ADDRESS_FIELDS)
    @classmethod
    def _address_line(cls, value: str | None) -> str | None:
        # Printed on a letter: no control characters, no line breaks.
        if value is not None and any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in value):
            raise ValueError("must not contain line breaks or control characters")
        return value.strip() if value is not None else None

    @field_validator("country")
    @classmethod
    def _country(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if value.upper() not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"must be an ISO 3166 alpha-2 country code such as US or CN, got {value[:8]!r}")
        return value.upper()

    @field_validator(*ADDRESS_FIELDS, "phone", "email", "push_token", "time_zone", mode="before")
    @classmethod
    def _blank_is_absent(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    _phone = field_validator("phone")(_unless_absent(_e164))
    _zone = field_validator("time_zone")(_unless_absent(_iana_zone))
    _ssn = field_validator("ssn", mode="before")(_ssn_digits)
    _birth = field_validator("date_of_birth", mode="before")(_birth_date)

    @model_validator(mode="after")
    def _reachable_and_zoned(self) -> BorrowerContact:
        if not self.phone and not self.email:
            raise ValueError("needs a phone or an email")
        self._check_address()
        if self.time_zone is None:
            # Frozen model: fill in the derived zone once, while validating:
            # the address's, else the number's (None if neither names a place).
            object.__setattr__(self, "time_zone", primary_zone(self.phone, self.country, self.region))
        return self

    def _check_address(self) -> None:
        given = [name for name in ADDRESS_FIELDS if getattr(self, name) is not None]
        if not given:
            return
        missing = [name for name in ("address_line1", "city", "postal_code", "country") if getattr(self, name) is None]
        if missing:
            raise ValueError(f"an address needs {', '.join(missing)} too (given: {', '.join(given)})")
        if region_has_table(self.country):
            if not known_region(self.country, self.region):
                raise ValueError(f"region must be a state code of {self.country} such as NY, got {(self.region or '')[:8]!r}")
            object.__setattr__(self, "region", self.region.upper())
        if self.country == "US" and not _US_ZIP.match(self.postal_code):
            raise ValueError(f"postal_code must be a US ZIP code such as 10001 or 10001-1234, got {self.postal_code[:16]!r}")

    def resolved_time_zone(self) -> str | None:
        """The given zone, else the phone's; None when neither tells (the
        loan's policy decides, in prepare_loan)."""
        return self.time_zone

    def directory_fields(self) -> dict[str, str | None]:
        """The borrowers row's contact columns (`time_zone` None: not known)."""
        return {
            "name": self.name,
            "phone": self.phone,
            "email": str(self.email) if self.email else None,
            "push_token": self.push_token,
            "language": self.language,
            "time_zone": self.resolved_time_zone(),
            **{name: getattr(self, name) for name in ADDRESS_FIELDS},
            "ssn": self.ssn,
            "date_of_birth": self.date_of_birth,
        }


DEBT_TYPES = ("consumer_financial_product", "other")
ITEMIZED_AMOUNTS = ("amount_on_itemization_date", "interest_since", "fees_since", "payments_since", "credits_since")
ITEMIZATION_FIELDS = (
    "itemization_date", *ITEMIZED_AMOUNTS, "current_creditor", "creditor_on_itemization_date", "account_number", "debt_type",
    "date_opened", "terms_duration", "terms_frequency",
)
# Metro 2 Terms Frequency codes (CRRG): deferred, single payment, weekly,
# biweekly, semimonthly, monthly, bimonthly, quarterly, tri-annually,
# semiannually, annually.
TERMS_FREQUENCIES = ("D", "P", "W", "B", "E", "M", "L", "Q", "T", "S", "Y")
_MONEY_STRING = re.compile(r"^\d{1,15}(\.\d{1,4})?$")
_ACCOUNT_NUMBER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 -]{0,63}$")


def _itemized_amount(value: Any) -> Decimal:
    """A decimal string, zero or more; its decimals are checked against the
    loan's currency by `Itemization.problems` (the block does not know it)."""
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError(f'must be a decimal string such as "1200.50", not {type(value).__name__}')
    if not _MONEY_STRING.match(value.strip()):
        raise ValueError(f'must be a decimal string, zero or more, such as "1200.50", got {value[:40]!r}')
    return Decimal(value.strip())


ItemizedAmount = Annotated[Decimal, BeforeValidator(_itemized_amount)]


class Itemization(BaseModel):
    """The validation notice's debt information (12 CFR 1006.34(c)(2)(iii)-(ix)):
    what the debt was on the itemization date and what happened to it since.
    Kept in the directory (`loan_itemizations`); never enters Temporal."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    # 1006.34(b)(3): the last statement, charge-off, last payment, transaction or judgment date.
    itemization_date: IsoDate
    amount_on_itemization_date: ItemizedAmount
    interest_since: ItemizedAmount = Decimal("0")
    fees_since: ItemizedAmount = Decimal("0")
    payments_since: ItemizedAmount = Decimal("0")
    credits_since: ItemizedAmount = Decimal("0")
    current_creditor: Annotated[str, Field(min_length=1, max_length=200)]
    # Required for a consumer financial product debt (1006.34(c)(2)(iii)).
    creditor_on_itemization_date: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    # Stored whole; the notice shows its last four characters (1006.34(c)(2)(iv)).
    account_number: Annotated[str, Field(pattern=_ACCOUNT_NUMBER.pattern)] | None = None
    debt_type: Literal["consumer_financial_product", "other"] = "consumer_financial_product"
    # The account's Metro 2 facts (the bureau file): the date it was opened
    # and its terms: a duration (number of months, "001" for a single
    # payment, LOC or REV) and a frequency (TERMS_FREQUENCIES). Optional;
    # without them a single-payment loan is reported as 001 / P.
    date_opened: IsoDate | None = None
    terms_duration: Annotated[str, Field(pattern=r"^(\d{3}|LOC|REV)$")] | None = None
    terms_frequency: Literal["D", "P", "W", "B", "E", "M", "L", "Q", "T", "S", "Y"] | None = None

    @field_validator("current_creditor", "creditor_on_itemization_date", "account_number", "terms_duration",
                     "terms_frequency", mode="before")
    @classmethod
    def _blank_is_absent(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("current_creditor", "creditor_on_itemization_date")
    @classmethod
    def _printable_name(cls, value: str | None) -> str | None:
        # Printed verbatim on the notice, like the borrower's name.
        if value is None:
            return None
        if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in value):
            raise ValueError("must not contain line breaks or control characters")
        if _LINK.search(value):
            raise ValueError("must not contain a web address")
        return value.strip()

    def current_amount(self) -> Decimal:
        """1006.34(c)(2)(viii)-(ix): the amount then, plus interest and fees, less payments and credits."""
        return (self.amount_on_itemization_date + self.interest_since + self.fees_since
                - self.payments_since - self.credits_since)

    def problems(self, currency: str, amount_due: Decimal) -> list[str]:
        """What is wrong with the block for this loan: 'itemization.<field>: ...'."""
        found = []
        if self.debt_type == "consumer_financial_product" and self.creditor_on_itemization_date is None:
            found.append("itemization.creditor_on_itemization_date: is required for a consumer_financial_product "
                         "debt (12 CFR 1006.34(c)(2)(iii))")
        decimals = []
        for name in ITEMIZED_AMOUNTS:
            value: Decimal = getattr(self, name)
            places = max(0, -value.as_tuple().exponent)
            if places > minor_units(currency):
                decimals.append(f"itemization.{name}: has {places} decimals; {currency} has {minor_units(currency)}")
        found += decimals
        if not decimals and self.current_amount() != amount_due:
            found.append(
                "itemization.amount_on_itemization_date: amount_on_itemization_date + interest_since + fees_since "
                f"- payments_since - credits_since is {self.current_amount()}, which must equal amount_due ({amount_due})"
            )
        return found

    def directory_fields(self) -> dict[str, Any]:
        """The loan_itemizations row's columns (db/directory.py compares them)."""
        return {name: getattr(self, name) for name in ITEMIZATION_FIELDS}


_JURISDICTION = re.compile(r"^([A-Z]{2})(?:-([A-Z0-9]{1,3}))?$")


def _jurisdiction(value: Any) -> str | None:
    """An ISO 3166 code: a country (CN), or a country and its subdivision
    (US-CA); for a country whose regions config/zones/ knows (US), a state
    code it knows. Blank is absent."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise ValueError('must be an ISO 3166 code such as "US-CA", "US-NY" or "CN"')
    code = value.strip().upper()
    match = _JURISDICTION.match(code)
    if not match or match.group(1) not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f"must be an ISO 3166 code such as US-CA, US-NY or CN, got {value[:16]!r}")
    country, region = match.groups()
    if region is not None and region_has_table(country) and not known_region(country, region):
        raise ValueError(f"{region!r} is not a subdivision of {country} (a state code such as US-NY), got {value[:16]!r}")
    return code


def _last_payment(value: Any) -> Any:
    """YYYY-MM-DD, not after today (anywhere: UTC+14). Blank is absent."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return value


def _not_in_the_future(value: date | None) -> date | None:
    if value is not None and value > (datetime.now(timezone.utc) + timedelta(hours=14)).date():
        raise ValueError(f"{value.isoformat()} is in the future")
    return value


Jurisdiction = Annotated[str | None, BeforeValidator(_jurisdiction)]
LastPaymentDate = Annotated[IsoDate | None, BeforeValidator(_last_payment), AfterValidator(_not_in_the_future)]


class LoanFacts(BaseModel):
    """What a placement says of the debt besides the workflow input (issue 18,
    item 2): the borrower's jurisdiction, whose statute of limitations the
    profile applies, and the last payment before placing. Kept on the loan's
    row (db/directory.py); never enters Temporal."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    jurisdiction: Jurisdiction = None
    last_payment_date: LastPaymentDate = None

    def directory_fields(self) -> dict[str, Any]:
        return {"jurisdiction": self.jurisdiction, "last_payment_date": self.last_payment_date}


class Placement(LoanInput):
    """The LoanInput fields (validated exactly as the workflow validates them)
    plus the borrower block and, optionally, the validation notice's
    itemization, the borrower's jurisdiction and the last payment before
    placing (none of them enters Temporal)."""

    borrower: BorrowerContact
    itemization: Itemization | None = None
    jurisdiction: Jurisdiction = None
    last_payment_date: LastPaymentDate = None

    @property
    def facts(self) -> LoanFacts:
        return LoanFacts.model_construct(jurisdiction=self.jurisdiction, last_payment_date=self.last_payment_date)

    @model_validator(mode="after")
    def _itemization_adds_up(self) -> Placement:
        # The gateway validates a Placement as a whole; validate_placements
        # checks the same through Itemization.problems, record by record.
        if self.itemization is not None:
            problems = self.itemization.problems(self.currency, self.amount_due)
            if problems:
                raise ValueError("; ".join(problems))
        return self

    @property
    def loan(self) -> LoanInput:
        return LoanInput.model_construct(**{name: getattr(self, name) for name in LoanInput.model_fields})

    def workflow_input(self) -> dict:
        """The workflow's input, JSON-safe: ids, money as strings and dates; no borrower block."""
        return self.model_dump(mode="json", include=set(LoanInput.model_fields), exclude_none=True)


def _nest(row: dict[str | None, str | None]) -> dict[str, Any]:
    record: dict[str, Any] = {}
    for column, value in row.items():
        if column is None or value is None or value.strip() == "":
            continue  # an empty cell is an absent key
        column = column.strip()
        if "." in column:
            outer, inner = column.split(".", 1)
            nested = record.setdefault(outer, {})
            if isinstance(nested, dict):
                nested[inner] = value
        else:
            record[column] = value
    return record


def read_placements(path: str | Path) -> list[dict]:
    """Records from a JSON array (or one object), or a CSV whose `borrower.x`
    (and `itemization.x`) columns nest."""
    path = Path(path)
    if not path.is_file():
        raise PlacementError(f"{path}: no such file")
    if path.suffix.lower() == ".csv":
        return _read_csv(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as error:
        raise PlacementError(f"{path}: not valid JSON: {error}") from None
    return data if isinstance(data, list) else [data]


_UNDECODABLE = re.compile("[\udc80-\udcff]")  # bytes that were not UTF-8, kept by surrogateescape


def _read_csv(path: Path) -> list[dict]:
    """The rows of a UTF-8 CSV (a BOM is allowed); text in another encoding
    or a malformed row is refused naming its record and column."""
    text = path.read_bytes().decode("utf-8", "surrogateescape").removeprefix("\ufeff")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    rows: list[dict] = []
    try:
        for row in reader:
            rows.append(row)
    except csv.Error as error:
        raise PlacementError(f"{path}: record {len(rows) + 1} (line {reader.line_num}): {error}") from None
    problems = [
        f"{path}: header: column {number} is not UTF-8 text; save the file as UTF-8"
        for number, column in enumerate(reader.fieldnames or [], start=1)
        if _UNDECODABLE.search(column)
    ]
    for number, row in enumerate(rows, start=1):
        for column, value in row.items():
            values = value if isinstance(value, list) else [value]
            if any(isinstance(v, str) and _UNDECODABLE.search(v) for v in values):
                name = (column or "(extra values)").strip()[:64]
                name = name if name.isprintable() else repr(name)
                problems.append(f"record {number}: {name}: is not UTF-8 text; save the file as UTF-8")
    if problems:
        raise PlacementError("\n".join(problems))
    return [_nest(row) for row in rows]


def iter_records(path: str | Path) -> Iterator[tuple[int, dict | str]]:
    """(record number, record) for each record of a JSON or CSV file, the CSV
    read row by row so a file of 100,000 loans is never held in memory whole.
    A CSV row that cannot be read (not UTF-8, malformed) comes as a string
    naming the record and column instead of a record; a file that cannot be
    read at all raises PlacementError."""
    path = Path(path)
    if not path.is_file():
        raise PlacementError(f"{path}: no such file")
    if path.suffix.lower() != ".csv":
        yield from enumerate(read_placements(path), start=1)
        return
    with path.open(encoding="utf-8-sig", errors="surrogateescape", newline="") as stream:
        reader = csv.DictReader(stream)
        number = 0
        try:
            fields = reader.fieldnames or []
        except csv.Error as error:
            raise PlacementError(f"{path}: header (line {reader.line_num}): {error}") from None
        bad_header = [f"{path}: header: column {n} is not UTF-8 text; save the file as UTF-8"
                      for n, column in enumerate(fields, start=1) if _UNDECODABLE.search(column)]
        if bad_header:
            raise PlacementError("\n".join(bad_header))
        while True:
            number += 1
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as error:
                yield number, f"{path}: record {number} (line {reader.line_num}): {error}"
                continue
            problem = _undecodable(number, row)
            yield number, problem if problem else _nest(row)


def _undecodable(number: int, row: dict) -> str | None:
    for column, value in row.items():
        values = value if isinstance(value, list) else [value]
        if any(isinstance(v, str) and _UNDECODABLE.search(v) for v in values):
            name = (column or "(extra values)").strip()[:64]
            name = name if name.isprintable() else repr(name)
            return f"record {number}: {name}: is not UTF-8 text; save the file as UTF-8"
    return None


def validate_record(number: int, record: Any, default_policy: str | None, seen: set[str]) -> Placement | str:
    """One record validated: its Placement, or one line naming the record and
    every bad field ('record 3 (loan_id L-9): borrower.phone: ...'). `seen`
    holds the loan ids of the file's earlier records (a repeat is refused)
    and is updated."""
    label = f"record {number}"
    if not isinstance(record, dict):
        return f"{label}: must be an object with the loan's fields and a borrower block"
    if isinstance(record.get("loan_id"), str) and record["loan_id"]:
        loan_id = record["loan_id"]
        # A bad id is quoted: a newline or a right-to-left mark in it must not garble the report.
        label += f" (loan_id {loan_id})" if re.fullmatch(ID_PATTERN, loan_id) else f" (loan_id {loan_id[:64]!r})"
    loan_fields = {key: value for key, value in record.items()
                   if key not in ("borrower", "itemization", *LoanFacts.model_fields)}
    if default_policy and loan_fields.get("policy") in (None, ""):  # absent; a wrong type stays wrong
        loan_fields["policy"] = default_policy
    errors: list[str] = []
    loan = borrower = None
    try:
        loan = LoanInput.parse(loan_fields)
    except InputError as error:
        errors.append(str(error))
    if record.get("borrower") is None:
        errors.append("borrower: Field required")
    elif not isinstance(record["borrower"], dict):
        errors.append("borrower: must be an object with name, phone, email, ...")
    else:
        try:
            borrower = BorrowerContact.model_validate(record["borrower"])
        except ValidationError as error:
            errors.append(explain(error, prefix="borrower."))
    itemization = None
    if record.get("itemization") is not None:
        if not isinstance(record["itemization"], dict):
            errors.append("itemization: must be an object with itemization_date, amount_on_itemization_date, ...")
        else:
            try:
                itemization = Itemization.model_validate(record["itemization"])
            except ValidationError as error:
                errors.append(explain(error, prefix="itemization."))
            else:
                if loan is not None:
                    errors.extend(itemization.problems(loan.currency, loan.amount_due))
    facts = LoanFacts()
    try:
        facts = LoanFacts.model_validate({name: record.get(name) for name in LoanFacts.model_fields})
    except ValidationError as error:
        errors.append(explain(error))
    if loan is not None:
        if loan.loan_id in seen:
            errors.append(f"loan_id: {loan.loan_id} appears more than once in this file")
        seen.add(loan.loan_id)
    if errors:
        return f"{label}: {'; '.join(errors)}"
    return Placement.model_construct(**dict(loan), borrower=borrower, itemization=itemization, **dict(facts))


def validate_placements(records: list[Any], default_policy: str | None = None) -> list[Placement]:
    """Every record validated; raises PlacementError listing every bad one.

    `default_policy` is used for records that name no policy.
    """
    placements: list[Placement] = []
    problems: list[str] = []
    seen: set[str] = set()
    for number, record in enumerate(records, start=1):
        checked = validate_record(number, record, default_policy, seen)
        if isinstance(checked, str):
            problems.append(checked)
        else:
            placements.append(checked)
    if problems:
        raise PlacementError("\n".join(problems))
    return placements
