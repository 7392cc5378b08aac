"""What comes in from outside: the workflow input and signal payloads.

Everything arrives as plain JSON. It is validated here, inside the workflow
too, so a bad value is answered with an error naming the key instead of a
dropped signal or a workflow task that fails forever.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, ValidationError, ValidationInfo, field_validator

from dunning.money import CURRENCY_CODE, parse_amount

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"


class InputError(ValueError):
    """Bad input, with the key it is about: 'amount_due: must be ...'."""


def explain(error: ValidationError, prefix: str = "") -> str:
    parts = []
    for item in error.errors():
        key = ".".join(str(p) for p in item["loc"])
        key = f"{prefix}{key}" if key else (prefix.rstrip(".") or "(payload)")
        message = item["msg"].removeprefix("Value error, ")
        parts.append(f"{key}: {message}")
    return "; ".join(parts)


def _currency(value: Any) -> str:
    if not isinstance(value, str) or not CURRENCY_CODE.fullmatch(value):
        raise ValueError("must be an ISO 4217 code in capitals, such as CNY or USD")
    return value


def _iso_date(value: Any) -> Any:
    # JSON has no dates: accept only "YYYY-MM-DD", not numbers pydantic would coerce.
    if not isinstance(value, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise ValueError('must be an ISO 8601 date such as "2026-11-01"')
    # A loan's timers run up to ten years past its dates: keep them in range.
    if not 1970 <= int(value[:4]) <= 2999:
        raise ValueError("must be a year from 1970 to 2999")
    return value


def _aware_instant(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError('must be an ISO 8601 instant with an offset, such as "2026-11-05T10:00:00+08:00"')
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError('must be an ISO 8601 instant with an offset, such as "2026-11-05T10:00:00+08:00"') from None
    if parsed.tzinfo is None:
        raise ValueError("must carry a UTC offset (+08:00, Z)")
    return parsed


Currency = Annotated[str, BeforeValidator(_currency)]
IsoDate = Annotated[date, BeforeValidator(_iso_date)]
Instant = Annotated[datetime, BeforeValidator(_aware_instant)]
Identifier = Annotated[str, Field(pattern=ID_PATTERN)]


def _amount_in_currency(cls, value: Any, info: ValidationInfo) -> Decimal:
    # Validated after `currency` (declared first), whose minor units it checks.
    return parse_amount(value, info.data.get("currency") or "XXX")


class _Payload(BaseModel):
    # Unknown keys are ignored (the contract says so), so newer senders can add
    # fields without breaking older workers.
    model_config = ConfigDict(extra="ignore", frozen=True)


def _rate(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, str) or not re.match(r"^\d{1,2}(\.\d{1,6})?$", value):
        raise ValueError('must be a decimal string such as "0.18" (18 % a year)')
    return Decimal(value)


def _score(value: Any) -> Any:
    # JSON gives an integer; a CSV cell gives its digits. Nothing else.
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) <= 4:
        return int(value.strip())
    raise ValueError("must be a whole number from 0 to 1000")


def _fee(value: Any) -> Decimal:
    return parse_amount(value, "XXX", allow_zero=True)


class ContractTerms(_Payload):
    """What the loan's contract allows beyond the principal: the most the
    service may charge where the profile forbids charges beyond the contract."""

    late_fee: Annotated[Decimal, BeforeValidator(_fee)] | None = None
    penalty_rate_annual: Annotated[Decimal, BeforeValidator(_rate)] | None = None


class LoanInput(_Payload):
    loan_id: Identifier
    borrower_id: Identifier
    currency: Currency  # before amount_due, which is checked against it
    amount_due: Decimal
    due_date: IsoDate
    policy: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,63}$")] = "default"
    # The lender's risk score for the loan, 0 (safest) to 1000 (riskiest).
    risk_score: Annotated[int, BeforeValidator(_score), Field(ge=0, le=1000)] | None = None
    contract_terms: ContractTerms | None = None

    _amount = field_validator("amount_due", mode="before")(_amount_in_currency)

    @classmethod
    def parse(cls, data: Any) -> LoanInput:
        return _parse(cls, data)


class RepaymentSignal(_Payload):
    payment_id: Identifier
    currency: Currency
    amount: str
    paid_at: Instant | None = None


class DisputeSignal(_Payload):
    reason: Annotated[str, Field(max_length=500)] = ""


class VerificationSentSignal(_Payload):
    """An operator sent the consumer verification of a disputed debt (12 CFR
    1006.38(d)(2)(i)): `reference` names the mailing or message (an id)."""

    reference: Annotated[str, Field(min_length=1, max_length=128, pattern=ID_PATTERN)]


class DisputeResolvedSignal(_Payload):
    upheld: StrictBool  # a JSON boolean: "yes" or 1 must not end a loan


class OptOutSignal(_Payload):
    # 12 CFR 1006.14(h): a medium the consumer asked not to be used is not used (a letter too).
    channel: Literal["sms", "email", "voice", "push", "letter", "all"]


class ComplaintSignal(_Payload):
    complaint_id: Identifier
    category: Literal["harassment", "wrong_amount", "privacy", "third_party_contact", "identity", "other"] = "other"


class ComplaintResolvedSignal(_Payload):
    complaint_id: Identifier
    upheld: StrictBool
    reviewer_id: Identifier


class ContactOutcomeSignal(_Payload):
    """What a provider reported about a contact after it was sent (a call's
    outcome, say), so that call caps count real attempts and conversations."""

    step: Annotated[str, Field(min_length=1, max_length=255)]
    result: Literal[
        "answered", "no_answer", "busy", "voicemail", "failed", "delivered", "undelivered", "bounced", "opened", "clicked"
    ]


# ------------------------------------------------------------------ updates


class PlanProposal(_Payload):
    """`propose_plan`: the borrower (or an agent, the repayment page, the IVR)
    asks for an installment plan; the policy's `[plans]` decides."""

    installments: Annotated[int, Field(ge=1, le=120, strict=True)]
    first_due_date: IsoDate
    interval_days: Annotated[int, Field(ge=1, le=366, strict=True)] = 30
    waive_fees: StrictBool = False
    waive_interest: StrictBool = False


class PromiseToPay(_Payload):
    amount: str
    by_date: IsoDate


VISIT_OUTCOMES = ("met", "not_home", "refused", "promise", "paid")


class VisitReport(_Payload):
    """`record_visit`: the field team's outcome. Notes go to the database
    (`starter.py visit` or the gateway), never into Temporal."""

    visit_id: Identifier
    outcome: Literal["met", "not_home", "refused", "promise", "paid"]
    staff_ids: Annotated[list[Identifier], Field(min_length=1, max_length=10)]
    promise: PromiseToPay | None = None


class LegalOutcome(_Payload):
    outcome: Literal["filed", "judgment", "settled", "withdrawn"]
    case_ref: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._:/()-]{0,63}$")] | None = None


class PayLinkRequest(_Payload):
    """send_pay_link: no fields; a JSON object (or nothing)."""


class HoldSignal(_Payload):
    """pause / resume."""

    reason: Annotated[str, Field(max_length=500)] = ""


def _parse(model: type[_Payload], data: Any):
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InputError(f"(payload): must be a JSON object, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise InputError(explain(error)) from None


def parse_signal(model: type[_Payload], data: Any):
    return _parse(model, data)
