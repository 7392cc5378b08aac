"""Placing overdue loans: records with the borrower's contact details.

A record is the workflow input plus a `borrower` block (docs/contract.md,
"Placing loans"). Every record of a file is validated before anything is
written, and an error names the record and the field; the borrower block goes
to the directory (db/directory.py), the rest becomes the workflow input.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as phone_timezones
from pydantic import BaseModel, ConfigDict, EmailStr, Field, ValidationError, field_validator, model_validator

from dunning.inputs import InputError, LoanInput, explain

FALLBACK_TIME_ZONE = "Asia/Shanghai"
LANGUAGES = ("zh_CN", "zh_TW", "en")


class PlacementError(ValueError):
    """One line per bad record: 'record 3 (loan_id L-9): borrower.phone: ...'."""


def zone_for_phone(phone: str) -> str | None:
    """The first IANA zone of the number's region, if it has a known one."""
    try:
        number = phonenumbers.parse(phone, None)
    except phonenumbers.NumberParseException:
        return None
    zones = [zone for zone in phone_timezones.time_zones_for_number(number) if zone != "Etc/Unknown"]
    return zones[0] if zones else None


class BorrowerContact(BaseModel):
    """The borrower block: what the directory keeps. Never enters Temporal."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: Annotated[str, Field(min_length=1, max_length=200)]
    phone: str | None = None  # E.164, normalized
    email: EmailStr | None = None
    push_token: Annotated[str, Field(max_length=512)] | None = None
    language: Literal["zh_CN", "zh_TW", "en"] = "zh_CN"
    # An IANA zone. Left out, it is the phone number's region's zone, else
    # Asia/Shanghai; after validation it is always set.
    time_zone: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value.strip()

    @field_validator("phone", "email", "push_token", "time_zone", mode="before")
    @classmethod
    def _blank_is_absent(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            number = phonenumbers.parse(value, None)
        except phonenumbers.NumberParseException:
            raise ValueError(f"must be an E.164 number such as +8613800138000, got {value[:40]!r}") from None
        if not phonenumbers.is_valid_number(number):
            raise ValueError(f"is not a valid phone number: {value[:40]!r}")
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"must be an IANA time zone such as Asia/Shanghai, got {value[:64]!r}") from None
        return value

    @model_validator(mode="after")
    def _reachable_and_zoned(self) -> BorrowerContact:
        if not self.phone and not self.email:
            raise ValueError("needs a phone or an email")
        if self.time_zone is None:
            # Frozen model: fill in the derived zone once, while validating.
            object.__setattr__(self, "time_zone", (self.phone and zone_for_phone(self.phone)) or FALLBACK_TIME_ZONE)
        return self

    def resolved_time_zone(self) -> str:
        return self.time_zone or FALLBACK_TIME_ZONE

    def directory_fields(self) -> dict[str, str | None]:
        """The borrowers row's contact columns."""
        return {
            "name": self.name,
            "phone": self.phone,
            "email": str(self.email) if self.email else None,
            "push_token": self.push_token,
            "language": self.language,
            "time_zone": self.resolved_time_zone(),
        }


class Placement(LoanInput):
    """The LoanInput fields (validated exactly as the workflow validates them)
    plus the borrower block."""

    borrower: BorrowerContact

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
    """Records from a JSON array (or one object), or a CSV whose `borrower.x` columns nest."""
    path = Path(path)
    if not path.is_file():
        raise PlacementError(f"{path}: no such file")
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8-sig") as handle:
            return [_nest(row) for row in csv.DictReader(handle)]
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise PlacementError(f"{path}: not valid JSON: {error}") from None
    return data if isinstance(data, list) else [data]


def validate_placements(records: list[Any], default_policy: str | None = None) -> list[Placement]:
    """Every record validated; raises PlacementError listing every bad one.

    `default_policy` is used for records that name no policy.
    """
    placements: list[Placement] = []
    problems: list[str] = []
    seen: set[str] = set()
    for number, record in enumerate(records, start=1):
        label = f"record {number}"
        if not isinstance(record, dict):
            problems.append(f"{label}: must be an object with the loan's fields and a borrower block")
            continue
        if isinstance(record.get("loan_id"), str) and record["loan_id"]:
            label += f" (loan_id {record['loan_id'][:64]})"
        loan_fields = {key: value for key, value in record.items() if key != "borrower"}
        if default_policy and not loan_fields.get("policy"):
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
        if loan is not None:
            if loan.loan_id in seen:
                errors.append(f"loan_id: {loan.loan_id} appears more than once in this file")
            seen.add(loan.loan_id)
        if errors:
            problems.append(f"{label}: {'; '.join(errors)}")
            continue
        placements.append(Placement.model_construct(**dict(loan), borrower=borrower))
    if problems:
        raise PlacementError("\n".join(problems))
    return placements
