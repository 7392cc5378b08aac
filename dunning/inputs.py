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
    # A fee for a payment returned unpaid (issue 18, item 3): charged when a
    # payment is reversed, within the profile's caps; none without it.
    returned_payment_fee: Annotated[Decimal, BeforeValidator(_fee)] | None = None


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


class PaymentReversedSignal(_Payload):
    """`payment_reversed` (issue 18, item 3): a payment applied to the loan
    came back (returned unpaid, charged back). `reason` is a short code
    (NSF, chargeback, R01...), never personal data; `reversed_at` when the
    bank reversed it (default: when the signal came)."""

    payment_id: Identifier
    reason: Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._:/()-]*$")]
    reversed_at: Instant | None = None


# ------------------------------------------- a closed loan reopened (issue 18, item 3)


def _decimal(value: Any) -> Decimal:
    # An exact figure carried from the database (the cost cap's allowance has
    # ten decimals): a decimal string, never a float.
    if isinstance(value, bool) or not isinstance(value, str) or not re.fullmatch(r"\d{1,15}(\.\d{1,10})?", value):
        raise ValueError('must be a decimal string such as "12.5"')
    return Decimal(value)


Money = Annotated[Decimal, BeforeValidator(_fee)]


class ReopenedPayment(_Payload):
    """An applied payment and how it was allocated (payments.fees_paid, ...)."""

    payment_id: Identifier
    amount: Money
    fees: Money
    interest: Money
    principal: Money
    overpaid: Money = Decimal("0")


class ReopenedReversal(_Payload):
    """A payment of the loan reversed before it closed."""

    payment_id: Identifier
    amount: Money
    fees: Money
    interest: Money
    principal: Money
    returned_payment_fee: Money = Decimal("0")
    reason: Annotated[str, Field(max_length=200)] = ""
    reversed_at: Instant


class ReopenedBureau(_Payload):
    """What the bureau_records rows say was reported."""

    records: Annotated[int, Field(ge=0, strict=True)] = 0
    first_reported_on: IsoDate | None = None
    last_cycle: Annotated[str, Field(pattern=r"^(\d{4}-\d{2})?$")] = ""
    reported_93: StrictBool = False
    reported_97: StrictBool = False
    reported_disputed: StrictBool = False


class ReopenedLegalCase(_Payload):
    status: Literal["opened", "filed", "judgment", "settled", "withdrawn"] = "opened"
    opened_on: IsoDate
    case_ref: Annotated[str, Field(max_length=64)] = ""


class ReopenedLegalStatusInForce(_Payload):
    """A legal status in force when the loan closed (dunning/state.py LegalStatusInForce)."""

    status: Literal["bankruptcy_filed", "deceased", "cease_communication", "hardship"]
    reference: Identifier
    effective_date: IsoDate
    until: IsoDate | None = None
    chapter: Literal[7, 11, 12, 13] | None = None
    since: IsoDate


class ReopenedLegalStatus(_Payload):
    """What `loans.reopen_basis` kept of the loan's legal statuses (issue 18, item 1)."""

    in_force: Annotated[list[ReopenedLegalStatusInForce], Field(max_length=10)] = []
    petition_day: Annotated[int, Field(strict=True)] | None = None
    petition_date: IsoDate | None = None
    dismissed_chapter: Literal[7, 11, 12, 13] | None = None


class ReopenedNotice(_Payload):
    """A notice the loan was sent before it closed (a contacts row whose step
    is a notice: the validation notice, the bureau notice, a cease request's
    final notice): the reopened run does not send it again."""

    step: Annotated[str, Field(pattern=r"^notice/[a-z_]{1,32}/[a-z]{1,16}$")]
    channel: Literal["sms", "email", "voice", "push", "letter"]
    template: Annotated[str, Field(pattern=r"^[a-z0-9_]{1,64}$")]
    stage: Annotated[str, Field(pattern=r"^[a-z_]{1,32}$")]
    at: Instant
    result: Literal["sent", "failed", "skipped_no_address"]


class ReopenedLoan(_Payload):
    """The `reopened` block of a start input (services/reversals.py): a loan
    whose workflow closed `repaid`, started again from its records because
    `payment_id` was reversed. Ids, codes, dates and money only. Not part of
    LoanInput: a placement cannot carry it."""

    payment_id: Identifier  # the reversal that reopens it (it comes as the start signal)
    reason: Annotated[str, Field(max_length=200)] = ""
    closed_outcome: Literal["repaid"]
    stage: Annotated[str, Field(pattern=r"^[a-z_]{1,32}$")]  # the stage it closed in
    clock_anchor: Instant | None = None
    amount_paid: Money
    fees_charged: Money = Decimal("0")
    interest_charged: Money = Decimal("0")
    charges_through_day: Annotated[int, Field(strict=True)] | None = None
    late_fee_charged: StrictBool | None = None
    cost_cap_allowance: Annotated[Decimal, BeforeValidator(_decimal)] | None = None
    days_past_due_at_close: Annotated[int, Field(strict=True)] = 0
    payments: Annotated[list[ReopenedPayment], Field(max_length=1000)] = []
    # Applied payments whose allocation the records do not hold (recorded before it was kept).
    unallocated_payment_ids: Annotated[list[Identifier], Field(max_length=1000)] = []
    reversals: Annotated[list[ReopenedReversal], Field(max_length=1000)] = []
    bureau: ReopenedBureau = ReopenedBureau()
    opted_out: list[Literal["sms", "email", "voice", "push", "letter", "all"]] = []
    legal: ReopenedLegalCase | None = None
    legal_status: ReopenedLegalStatus | None = None
    notices: Annotated[list[ReopenedNotice], Field(max_length=100)] = []

    @classmethod
    def parse(cls, data: Any) -> ReopenedLoan:
        if not isinstance(data, dict):
            raise InputError(f"reopened: must be a JSON object, got {type(data).__name__}")
        try:
            return cls.model_validate(data)
        except ValidationError as error:
            raise InputError(explain(error, "reopened.")) from None


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


class SettlementProposal(_Payload):
    """`propose_settlement` (issue 18, item 4): less than the balance in full
    satisfaction, paid by `pay_by`, proposed by an agent (an id)."""

    amount: str  # checked against the loan's currency and balance
    pay_by: IsoDate
    agent_id: Identifier


def _settlement_no(value: Any) -> Any:
    # A JSON integer, or its digits as a task's subject carries them ("1").
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isdigit() and len(value) <= 6:
        return int(value)
    raise ValueError("must be a settlement number such as 1")


class SettlementDecisionSignal(_Payload):
    """`settlement_decision`: an approver accepts or refuses a settlement
    pending approval; the approver is not the agent who proposed it."""

    settlement_no: Annotated[int, BeforeValidator(_settlement_no), Field(ge=1)]
    approved: StrictBool
    approver_id: Identifier


BANKRUPTCY_CHAPTERS = (7, 11, 12, 13)
# A hardship lasts at most this long; a longer one is set again when it ends.
HARDSHIP_MAX_DAYS = 366
# A reference is a case number or a document's id, never a person's data:
# an id's shape (ID_PATTERN), and not a US Social Security number's.
_SSN_SHAPE = re.compile(r"^\d{3}-?\d{2}-?\d{4}$")


def _chapter(value: Any) -> Any:
    # A JSON integer, or its digits (a CSV cell, a form): nothing else.
    if value is None:
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or value not in BANKRUPTCY_CHAPTERS:
        raise ValueError("must be a bankruptcy chapter: 7, 11, 12 or 13")
    return value


class LegalStatusSignal(_Payload):
    """`legal_status` (issue 18, item 1): a life event a collector must
    honour, as its notice says. `reference` names the notice (a court's case
    number, a death certificate's or a letter's id); `effective_date` is the
    petition's, the death's, the day the written request was received, the
    day a hardship starts, or the day a status is cleared; `chapter` goes
    with `bankruptcy_filed` (and may with its dismissal or discharge),
    `until` with `hardship` (the day the loan resumes)."""

    status: Literal[
        "bankruptcy_filed", "bankruptcy_dismissed", "bankruptcy_discharged", "deceased", "cease_communication",
        "hardship", "cleared",
    ]
    reference: Annotated[str, Field(min_length=1, max_length=64, pattern=ID_PATTERN)]
    effective_date: IsoDate
    until: Annotated[date | None, BeforeValidator(lambda v: None if v is None else _iso_date(v))] = Field(
        default=None, validate_default=True
    )
    chapter: Annotated[int | None, BeforeValidator(_chapter)] = Field(default=None, validate_default=True)

    @field_validator("reference")
    @classmethod
    def _not_personal(cls, value: str) -> str:
        if _SSN_SHAPE.match(value):
            raise ValueError("looks like a Social Security number; give the notice's or the case's id")
        return value

    @field_validator("until")
    @classmethod
    def _until(cls, value: date | None, info: ValidationInfo) -> date | None:
        status, start = info.data.get("status"), info.data.get("effective_date")
        if status == "hardship" and value is None:
            raise ValueError("required with hardship: the day the loan resumes")
        if status != "hardship" and value is not None:
            raise ValueError("only with hardship")
        if value is not None and start is not None:
            if value <= start:
                raise ValueError("must be after effective_date")
            if (value - start).days > HARDSHIP_MAX_DAYS:
                raise ValueError(f"at most {HARDSHIP_MAX_DAYS} days after effective_date")
        return value

    @field_validator("chapter")
    @classmethod
    def _chapter_for_status(cls, value: int | None, info: ValidationInfo) -> int | None:
        status = info.data.get("status")
        if status == "bankruptcy_filed" and value is None:
            raise ValueError("required with bankruptcy_filed: 7, 11, 12 or 13")
        if value is not None and status is not None and not status.startswith("bankruptcy_"):
            raise ValueError("only with a bankruptcy status")
        return value


class EstateOutcome(_Payload):
    """`estate_outcome` (issue 18, item 1): how a deceased borrower's loan
    ends, decided by an operator: written off, or settled by the estate
    (whatever it paid came as `repayment` signals; the rest is not owed)."""

    outcome: Literal["written_off", "settled"]
    reference: Identifier  # the estate's file or the decision's id


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
