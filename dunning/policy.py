"""Dunning policies: data under config/policies/, validated on load.

A policy says when each stage starts (in days past due), which contacts each
stage makes (day offset, channel, template), which segments change that, and
when the loan is written off. Loading one that is wrong raises PolicyError
naming the file and the key, so a typo never reaches a running loan.
"""

from __future__ import annotations

import re
from datetime import time
from decimal import Decimal
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from dunning.contract import STAGE_PRE_DUE, STAGES

Channel = Literal["sms", "email", "voice", "push"]
TEMPLATE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
POLICY_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")


class PolicyError(ValueError):
    """A policy that cannot be used, with the key that is wrong."""


class _Strict(BaseModel):
    # A misspelled key is an error, not a silently ignored setting.
    model_config = ConfigDict(extra="forbid", frozen=True)


class ContactStep(_Strict):
    day: Annotated[int, Field(ge=0, le=3650)] = Field(description="days after the stage starts")
    channel: Channel
    template: str
    every_days: Annotated[int, Field(ge=0, le=365)] = Field(
        default=0, description="repeat every N days until the stage ends; 0 sends once"
    )
    at: time | None = Field(default=None, description="local time; the policy's contact_time if unset")

    @field_validator("template")
    @classmethod
    def _template_name(cls, value: str) -> str:
        if not TEMPLATE_NAME.match(value):
            raise ValueError("must be a lowercase template name like 'reminder_friendly'")
        return value


class Stage(_Strict):
    start_day: Annotated[int, Field(ge=0, le=3650)]
    steps: tuple[ContactStep, ...] = ()


class PreDueStep(ContactStep):
    """A reminder before the due date: `day` counts from the due date (-3 is
    three days before it, 0 the due date itself), not from a stage start."""

    day: Annotated[int, Field(ge=-366, le=0)] = Field(description="days relative to the due date, at most 0")


class PreDueStage(_Strict):
    """Reminders before the due date (issue 17, item 5), for a loan placed
    before it is due. `segments` limits them to loans in those segments (a
    lender need not pay for reminders to borrowers who always pay); empty:
    every loan placed early. A loan outside them waits, unreminded, for the
    first overdue stage."""

    steps: tuple[PreDueStep, ...] = ()
    segments: tuple[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")], ...] = ()


class SegmentFacts(BaseModel):
    """What a loan's segment is decided on (at start, at each stage change and
    when a promise is broken): ids and numbers only."""

    model_config = ConfigDict(frozen=True)

    days_past_due: int
    outstanding: Decimal
    risk_score: int | None = None  # from the start input, 0 (safest) to 1000
    partial_payments: int = 0  # payments applied that left a balance
    broken_promises: int = 0


class Segment(_Strict):
    """A risk segment: loans matching every bound given here get its cadence.

    Bounds left out match anything; `min_risk_score` never matches a loan that
    came without a score. The first segment a loan matches is its segment.
    """

    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
    min_days: int | None = None
    max_days: int | None = None
    min_outstanding: Decimal | None = None
    max_outstanding: Decimal | None = None
    min_risk_score: Annotated[int, Field(ge=0, le=1000)] | None = None
    max_risk_score: Annotated[int, Field(ge=0, le=1000)] | None = None
    min_partial_payments: Annotated[int, Field(ge=0)] | None = None
    min_broken_promises: Annotated[int, Field(ge=0)] | None = None
    # What the segment changes: channels it never uses (self-service only =
    # skip voice), and stages that start on another day (calls sooner).
    skip_channels: tuple[Channel, ...] = ()
    stage_start_days: dict[Literal["reminder", "call", "negotiation", "credit_reporting", "legal"], Annotated[int, Field(ge=0, le=3650)]] = Field(default_factory=dict)
    field_visits: bool = True  # False: this segment never gets a field visit

    def matches(self, facts: SegmentFacts) -> bool:
        return (
            (self.min_days is None or facts.days_past_due >= self.min_days)
            and (self.max_days is None or facts.days_past_due <= self.max_days)
            and (self.min_outstanding is None or facts.outstanding >= self.min_outstanding)
            and (self.max_outstanding is None or facts.outstanding <= self.max_outstanding)
            and (self.min_risk_score is None or (facts.risk_score is not None and facts.risk_score >= self.min_risk_score))
            and (self.max_risk_score is None or (facts.risk_score is not None and facts.risk_score <= self.max_risk_score))
            and (self.min_partial_payments is None or facts.partial_payments >= self.min_partial_payments)
            and (self.min_broken_promises is None or facts.broken_promises >= self.min_broken_promises)
        )


Rounding = Literal["ROUND_HALF_UP", "ROUND_HALF_EVEN", "ROUND_DOWN"]


class Charges(_Strict):
    """Late fees and penalty interest the lender charges, before the caps of
    the loan's contract and the compliance profile (dunning/charges.py)."""

    late_fee: Decimal = Field(default=Decimal("0"), ge=0, description="charged once, on late_fee_day")
    late_fee_day: Annotated[int, Field(ge=1, le=3650)] = 1
    penalty_rate_annual: Decimal = Field(default=Decimal("0"), ge=0, le=10, description="on the principal outstanding, per day rate/365")
    interest_from_day: Annotated[int, Field(ge=1, le=3650)] = 1
    # How each charge is rounded to the currency's minor unit.
    rounding: Rounding = "ROUND_HALF_UP"


class PlanOffer(_Strict):
    installments: Annotated[int, Field(ge=1, le=120)]
    interval_days: Annotated[int, Field(ge=1, le=366)] = 30
    first_due_in_days: Annotated[int, Field(ge=0, le=366)] = 7
    waive_fees: bool = False
    waive_interest: bool = False


class Plans(_Strict):
    """What an installment plan may offer (the `propose_plan` update)."""

    enabled: bool = True
    from_stage: Literal["reminder", "call", "negotiation", "credit_reporting", "legal"] = "reminder"
    max_installments: Annotated[int, Field(ge=1, le=120)] = 6
    min_interval_days: Annotated[int, Field(ge=1, le=366)] = 7
    max_interval_days: Annotated[int, Field(ge=1, le=366)] = 31
    first_due_within_days: Annotated[int, Field(ge=0, le=366)] = 14
    # The first installment is at least this share of the plan's total.
    min_first_payment_ratio: Decimal = Field(default=Decimal("0"), ge=0, le=1)
    # The last installment falls at most this many days after acceptance.
    max_extension_days: Annotated[int, Field(ge=1, le=3650)] = 180
    allow_fee_waiver: bool = True
    allow_interest_waiver: bool = True
    # An installment unpaid this many days after its due date breaks the plan.
    grace_days: Annotated[int, Field(ge=0, le=60)] = 3
    reminder_days_before: Annotated[int, Field(ge=0, le=30)] = 2
    reminder_channel: Channel = "sms"
    # What the repayment page and the IVR offer with one click / one key.
    offers: tuple[PlanOffer, ...] = ()


class Promises(_Strict):
    """What a promise to pay may be (the `promise_to_pay` update)."""

    enabled: bool = True
    max_days: Annotated[int, Field(ge=0, le=90)] = 14
    min_amount_ratio: Decimal = Field(default=Decimal("0.1"), ge=0, le=1, description="of the outstanding balance")
    # After this many broken promises no new promise is accepted.
    max_broken: Annotated[int, Field(ge=1, le=100)] = 3
    grace_days: Annotated[int, Field(ge=0, le=30)] = 0


class Bureau(_Strict):
    """Credit-bureau reporting: a record per monthly cycle after the first."""

    report_day_of_month: Annotated[int, Field(ge=1, le=28)] = 1


class FieldVisits(_Strict):
    """Field visits (上门催收), where the profile allows them."""

    enabled: bool = False
    from_day: Annotated[int, Field(ge=1, le=3650)] = 61
    min_outstanding: Decimal = Field(default=Decimal("0"), ge=0)
    every_days: Annotated[int, Field(ge=1, le=365)] = 30


class Tasks(_Strict):
    """Agent tasks the loan opens (issue 17): the hours each kind may wait
    before it is escalated (its priority raised and recorded)."""

    sla_hours: dict[str, Annotated[int, Field(ge=1, le=24 * 365)]] = Field(
        default_factory=lambda: {"dispute_verification": 72, "complaint_review": 120, "settlement_approval": 24}
    )


SettlementStage = Literal["reminder", "call", "negotiation", "credit_reporting", "legal"]
DiscountShare = Annotated[Decimal, Field(ge=0, lt=1)]


class Settlements(_Strict):
    """Settlements for less than the balance, in full satisfaction (the
    `propose_settlement` update; issue 18, item 4).

    The discount is 1 - amount / outstanding. An agent may grant alone up to
    `agent_limits[stage]` (a stage not named: 0, so every discount there waits
    for an approver); `segment_limits[segment][stage]` replaces it for a loan
    in that segment. Above the limit the settlement waits in
    `pending_approval` with a `settlement_approval` task until an approver's
    `settlement_decision`. `pay_by` is at most `max_pay_by_days` from the
    proposal; unpaid when the local day after pay_by (+ `grace_days`) begins,
    the settlement is missed and the loan returns to its stage. While one is
    accepted: no escalation, no stage contacts, only its confirmation and a
    reminder `reminder_days_before` pay_by on `reminder_channel` (a plan's
    behaviour). The defaults (no limits: every settlement needs an approver)
    keep a policy that says nothing safe."""

    enabled: bool = True
    agent_limits: dict[SettlementStage, DiscountShare] = Field(default_factory=dict)
    segment_limits: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")], dict[SettlementStage, DiscountShare]] = Field(
        default_factory=dict
    )
    max_pay_by_days: Annotated[int, Field(ge=0, le=366)] = 30
    grace_days: Annotated[int, Field(ge=0, le=30)] = 0
    reminder_days_before: Annotated[int, Field(ge=0, le=30)] = 2
    reminder_channel: Channel = "sms"

    def agent_limit(self, stage: str, segment: str | None) -> Decimal:
        """The largest discount an agent may grant alone in `stage` for a loan in `segment`."""
        by_segment = self.segment_limits.get(segment or "", {})
        if stage in by_segment:
            return by_segment[stage]
        return self.agent_limits.get(stage, Decimal("0"))

    def limit_key(self, stage: str, segment: str | None) -> str:
        """The policy key the limit comes from, for a message naming it."""
        if stage in self.segment_limits.get(segment or "", {}):
            return f"settlements.segment_limits.{segment}.{stage}"
        return f"settlements.agent_limits.{stage}"


# The channels a borrower-level cap or a merged message may be on: calls keep
# the profile's own voice caps (cn: 6 a day per borrower; Reg F: 7 in 7 per debt).
BorrowerChannel = Literal["sms", "email", "push"]
# Messages about one debt, never merged with another loan's: the notices,
# the link the borrower asked for, a plan's confirmation and its reminders.
PER_DEBT_TEMPLATES = frozenset({
    "validation_notice", "bureau_notice", "legal_notice", "pay_link", "plan_confirmation", "installment_reminder",
    "settlement_confirmation", "settlement_reminder",
    "cease_final_notice", "cease_remedy_notice",  # issue 18, item 1
})


class BorrowerContacts(_Strict):
    """One voice per borrower (issue 17, item 1), across all their open loans.

    - `daily_caps`: at most this many messages per channel per local day in
      the borrower's zone, across their loans (a merged message counts once);
      over it a contact is postponed to the next local midnight (rule
      `borrower_daily_cap`). The profile's `caps.borrower_daily_caps` may cap
      lower: the smaller applies.
    - `merge`: steps of several loans due at the same moment on one of
      `merge_channels` with one of `merge_templates` become one message
      (template `borrower_summary`) naming each loan and the total; the first
      waits up to `gather_seconds` (real seconds, never past the contact
      window's end) for the others.

    The defaults are the behaviour before it: no caps, nothing merged."""

    daily_caps: dict[BorrowerChannel, Annotated[int, Field(ge=1, le=10000)]] = Field(default_factory=dict)
    merge: bool = False
    merge_templates: tuple[str, ...] = ()
    merge_channels: tuple[BorrowerChannel, ...] = ("sms", "email", "push")
    gather_seconds: Annotated[float, Field(ge=0, le=20)] = 3.0

    @field_validator("merge_templates")
    @classmethod
    def _mergeable(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if not TEMPLATE_NAME.match(name):
                raise ValueError(f"{name!r} must be a lowercase template name like 'reminder_friendly'")
            if name in PER_DEBT_TEMPLATES:
                raise ValueError(f"{name!r} is about one debt and is never merged")
        return value

    def merges(self, channel: str, template: str) -> bool:
        """Whether a step on `channel` with `template` may join a merged message."""
        return self.merge and channel in self.merge_channels and template in self.merge_templates


class HardshipCadence(_Strict):
    """The gentler contact of a loan in hardship (issue 18, item 1): steps
    whose `day` counts from the hardship's first day (its effective_date, or
    the day it was set if later), until its `until`. None: no contact at all
    while the hardship lasts."""

    steps: tuple[ContactStep, ...] = ()


class LegalStatusRules(_Strict):
    """What the policy does with a legal status (the `legal_status` signal;
    issue 18, item 1; dunning/legal_status.py has the rules themselves).

    - `cease_final_notice_template`: the one final notice after a written
      request to cease communication (12 CFR 1006.6(c)(1)): that collection
      is ending (`cease_final_notice`, 1006.6(c)(1)(i)) or that a remedy may
      be invoked (`cease_remedy_notice`, (c)(1)(ii)); "" sends none. It goes
      once, on `cease_final_notice_channel`.
    - `hardship`: the cadence while a hardship lasts."""

    cease_final_notice_template: str = ""
    cease_final_notice_channel: Literal["email", "sms"] = "email"
    hardship: HardshipCadence = HardshipCadence()

    @field_validator("cease_final_notice_template")
    @classmethod
    def _template_name(cls, value: str) -> str:
        if value and not TEMPLATE_NAME.match(value):
            raise ValueError("must be a lowercase template name like 'cease_final_notice', or \"\" for none")
        return value


class Stages(_Strict):
    pre_due: PreDueStage | None = None
    reminder: Stage
    call: Stage
    negotiation: Stage
    credit_reporting: Stage
    legal: Stage


class Policy(_Strict):
    name: str
    description: str = ""
    # The compliance profile (config/profiles/<name>.toml): the market's rules.
    profile: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,63}$")] = "cn"
    default_time_zone: str = "Asia/Shanghai"
    default_language: str = "zh_CN"
    contact_time: time = time(9, 0)
    # Seconds in one loan day. 86400 in production; the demo policy shortens it
    # so that a person sees a loan move through every stage in minutes.
    day_seconds: Annotated[float, Field(gt=0, le=86400)] = 86400
    write_off_day: Annotated[int, Field(ge=1, le=3650)]
    stages: Stages
    segments: tuple[Segment, ...] = ()
    charges: Charges = Charges()
    plans: Plans = Plans()
    promises: Promises = Promises()
    bureau: Bureau = Bureau()
    field_visits: FieldVisits = FieldVisits()
    tasks: Tasks = Tasks()
    # Caps and merged messages across the borrower's loans (issue 17, item 1).
    borrower: BorrowerContacts = BorrowerContacts()
    # Settlements for less than the balance and who approves them (issue 18, item 4).
    settlements: Settlements = Settlements()
    # A cease request's final notice and a hardship's cadence (issue 18, item 1).
    legal_status: LegalStatusRules = LegalStatusRules()

    @field_validator("default_time_zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {value!r}") from None
        return value

    @model_validator(mode="after")
    def _stage_days_increase(self) -> Policy:
        for where, segment in [("stages", None), *((f"segments.{s.name}.stage_start_days", s) for s in self.segments)]:
            previous = None
            for name in STAGES:
                start = self.start_day(name, segment)
                if previous is not None and start <= previous[1]:
                    if segment is None:
                        raise ValueError(
                            f"stages.{name}.start_day ({start}) must be after stages.{previous[0]}.start_day ({previous[1]})"
                        )
                    raise ValueError(f"{where}: {name} (day {start}) must start after {previous[0]} (day {previous[1]})")
                previous = (name, start)
            if self.write_off_day <= previous[1]:
                raise ValueError(f"write_off_day ({self.write_off_day}) must be after the legal stage's day ({previous[1]}) in {where}")
        names = [s.name for s in self.segments]
        if len(set(names)) != len(names):
            raise ValueError(f"segments: names must be unique, got {names}")
        if self.stages.pre_due is not None:
            unknown = [name for name in self.stages.pre_due.segments if name not in names]
            if unknown:
                raise ValueError(f"stages.pre_due.segments: {unknown[0]!r} is not one of the policy's segments {names}")
        if self.plans.min_interval_days > self.plans.max_interval_days:
            raise ValueError("plans.min_interval_days must not exceed plans.max_interval_days")
        unknown = [name for name in self.settlements.segment_limits if name not in names]
        if unknown:
            raise ValueError(f"settlements.segment_limits: {unknown[0]!r} is not one of the policy's segments {names}")
        return self

    def stage(self, name: str) -> Stage:
        return getattr(self.stages, name)

    def segment(self, name: str | None) -> Segment | None:
        return next((s for s in self.segments if s.name == name), None) if name else None

    def start_day(self, stage: str, segment: Segment | None = None) -> int:
        """The day past due a stage starts on, for a loan in `segment`; for
        pre_due, its earliest step's day (negative: before the due date)."""
        if stage == STAGE_PRE_DUE:
            steps = self.stages.pre_due.steps if self.stages.pre_due is not None else ()
            return min((step.day for step in steps), default=0)
        if segment is not None and stage in segment.stage_start_days:
            return segment.stage_start_days[stage]
        return self.stage(stage).start_day

    def step_base_day(self, stage: str, segment: Segment | None = None) -> int:
        """The day a stage's step days count from: its start day, or for
        pre_due the due date (day 0)."""
        return 0 if stage == STAGE_PRE_DUE else self.start_day(stage, segment)

    def pre_due_for(self, segment: Segment | None) -> bool:
        """Whether a loan in `segment` gets the pre_due reminders."""
        rules = self.stages.pre_due
        if rules is None or not rules.steps:
            return False
        return not rules.segments or (segment is not None and segment.name in rules.segments)

    def stage_end_day(self, name: str, segment: Segment | None = None) -> int:
        """The first day that no longer belongs to the stage."""
        if name == STAGE_PRE_DUE:
            return self.start_day(STAGES[0], segment)
        index = STAGES.index(name)
        if index + 1 < len(STAGES):
            return self.start_day(STAGES[index + 1], segment)
        return self.write_off_day

    def stage_for_day(self, days_past_due: int, segment: Segment | None = None) -> str | None:
        """The stage a loan is in on a day, or None before the first stage."""
        current = None
        for name in STAGES:
            if days_past_due >= self.start_day(name, segment):
                current = name
        return current

    def segment_for(self, facts: SegmentFacts) -> Segment | None:
        return next((s for s in self.segments if s.matches(facts)), None)


def describe_validation_error(error: ValidationError) -> str:
    """'stages.call.start_day: Input should be ...; ...' - one line per bad key."""
    parts = []
    for item in error.errors():
        key = ".".join(str(p) for p in item["loc"]) or "(top level)"
        parts.append(f"{key}: {item['msg']}")
    return "; ".join(parts)


def parse_policy(data: dict, source: str = "policy") -> Policy:
    try:
        return Policy.model_validate(data)
    except ValidationError as error:
        raise PolicyError(f"{source}: {describe_validation_error(error)}") from None
