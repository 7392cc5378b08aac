"""The contact permit check: may this contact go out now, and if not, when?

A compliance profile (config/profiles/<name>.toml) holds a market's rules as
data: the local contact window, call caps, notices. `check_contact` is a pure
function of the profile, the loan's contact log and the loan-time now; every
contact the planner proposes passes through it. Rules that stop a channel for
good (an opt-out, a segment that does not use it) are the planner's; this
check answers the ones that only delay: the window and the caps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from decimal import Decimal
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from dunning.policy import describe_validation_error

Channel = Literal["sms", "email", "voice", "push", "letter"]
# Call results that mean a conversation took place (fed back by the voice provider).
CONVERSATION_RESULTS = frozenset({"answered", "conversation"})
# Results that count as a call attempt.
ATTEMPT_RESULTS = frozenset({"sent", "answered", "conversation", "no_answer", "busy", "voicemail"})


class ProfileError(ValueError):
    """A compliance profile that cannot be used, naming the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Window(_Strict):
    start: time
    end: time

    @model_validator(mode="after")
    def _ordered(self) -> Window:
        if self.end <= self.start:
            raise ValueError(f"window.end ({self.end}) must be after window.start ({self.start})")
        return self


class Caps(_Strict):
    voice_attempts_per_day_per_borrower: Annotated[int, Field(ge=1)] | None = None
    voice_attempts_per_7_days_per_loan: Annotated[int, Field(ge=1)] | None = None
    quiet_days_after_conversation: Annotated[int, Field(ge=1)] | None = None
    # Spacing between call attempts to one borrower (any of their loans), so
    # postponed calls released together at the window's opening never go out
    # in a burst; one attempt in progress at a time. None: no spacing (the
    # behaviour of profiles recorded before it existed).
    min_minutes_between_calls: Annotated[int, Field(ge=1, le=24 * 60)] | None = None
    # Steps of one channel that fell due while the loan could not be
    # contacted (a hold, a closed window, a cap) are collapsed into the latest
    # one when it can go out, the others recorded as `skipped_superseded`,
    # instead of being replayed one after the other.
    collapse_missed_steps: bool = False
    # Messages per channel per borrower per local day, across all their loans
    # (issue 17, item 1; a merged message counts once): the policy's
    # [borrower] daily_caps may set its own, the smaller applies. Voice keeps
    # the caps above. Empty: no such cap (profiles recorded before it existed).
    borrower_daily_caps: dict[Literal["sms", "email", "push"], Annotated[int, Field(ge=1, le=10000)]] = Field(
        default_factory=dict
    )

    def borrower_daily_cap(self, channel: str, policy_cap: int | None) -> int | None:
        """The per-borrower daily cap on `channel`: the smaller of this
        profile's and the policy's (`policy_cap`); None when neither sets one."""
        caps = [cap for cap in (self.borrower_daily_caps.get(channel), policy_cap) if cap is not None]
        return min(caps) if caps else None


class Notices(_Strict):
    opt_out_instruction_channels: tuple[Channel, ...] = ()
    validation_notice_within_days: Annotated[int, Field(ge=0)] | None = None
    validation_period_days: Annotated[int, Field(ge=0)] | None = None
    # The channels the validation notice may go by, in the order tried: a
    # failed, bounced or undelivered notice falls back to the next one.
    validation_notice_channels: tuple[Channel, ...] = ("email", "sms")
    # Whether collection contacts wait until the notice is delivered (an
    # e-mail the provider reported delivered, a letter mailed: 1006.42) and
    # whether a dispute in the validation period holds collection until
    # verification is sent (1006.38(d)(2)). False: the behaviour of profiles
    # recorded before it existed (the notice only had to go out).
    validation_notice_delivery: bool = False
    bureau_report_wait_days: Annotated[int, Field(ge=0)] | None = None
    # What starts the wait before the first bureau report (1006.30(a)(1)):
    # `any_contact` (profiles recorded before it existed), or
    # `conversation_or_message`: a call the consumer answered, or a letter
    # or electronic message (e-mail, SMS) to the consumer's own address that
    # was not reported undeliverable. A call nobody answered and a push to
    # an app never start it.
    bureau_report_wait_starts: Literal["any_contact", "conversation_or_message"] = "any_contact"
    # With validation_notice_delivery: how long an e-mail notice the provider
    # took may wait for its delivery report before the next channel is tried.
    notice_delivery_wait_hours: Annotated[int, Field(ge=1)] = 48
    # 《征信业管理条例》第十五条: negative information is reported only after
    # the borrower was told. With this set, the first bureau record waits
    # until a contact with `bureau_notice_template` went out (and was not
    # reported undeliverable). False: profiles recorded before it existed.
    bureau_report_after_notice: bool = False
    bureau_notice_template: str = "bureau_notice"
    # The channels that notice goes by when the stage's own steps never did.
    bureau_notice_channels: tuple[Channel, ...] = ("sms", "email")
    # Templates that would overshadow the consumer's rights while the
    # validation period runs (1006.38(b)): they wait until it has ended.
    templates_held_in_validation_period: tuple[str, ...] = ()


class Rules(_Strict):
    third_party_contact: bool = False
    record_calls: bool = True
    field_visit_min_staff: Annotated[int, Field(ge=1)] | None = None
    fees_beyond_contract: bool = False
    # Late fees plus penalty interest may not exceed this annualized share of
    # the principal over the days past due (cn: 0.24); None for no such cap.
    annual_cost_cap: Annotated[Decimal, Field(ge=0, le=10)] | None = None
    records_retention_years: Annotated[int, Field(ge=1)]
    # How charges are measured and when they stop (issue 16, items 5 and 6;
    # dunning/charges.py). Every default is the behaviour of profiles
    # recorded before the setting existed: a running loan replays its history
    # with the profile it started with, so only a new profile changes them.
    #
    # What the cost cap is a share of: `original_amount` (the amount placed,
    # whatever has been paid since), or `owed`: the principal owed on each day
    # past due, summed day by day (fees and interest owed are no base, that
    # would be charging on charges).
    cost_cap_basis: Literal["original_amount", "owed"] = "original_amount"
    # The costs the cap covers. The service charges late fees and penalty
    # interest; a kind not named here is not counted against the cap.
    # `contract_interest`: the contract's own interest counts too. The loan's
    # input carries no separate contract rate (contract_terms has the late fee
    # and the penalty rate), so under such a profile the contract's penalty
    # rate is the whole interest on the overdue principal, contract interest
    # included: nothing else may accrue on the loan while it is collected.
    cost_cap_covers: tuple[Literal["late_fees", "penalty_interest", "contract_interest"], ...] = (
        "late_fees",
        "penalty_interest",
    )
    # Penalty interest accrued exactly each day, charged in whole minor units
    # (rounded down) and the remainder carried to the next day (across
    # continue-as-new), so what is charged never exceeds the rate or the cap
    # on a small balance. False: each day's interest rounded by the policy's
    # rule (8.00 at 24 % is 0.0053 a day, charged 0.01: 46 % a year).
    exact_interest_accrual: bool = False
    # A repayment whose `paid_at` is at most this many hours before it reached
    # the workflow counts as paid at `paid_at` for charges: none for the days
    # after it. A `paid_at` in the future or further back: received_at. None:
    # charges follow received_at only.
    payment_time_tolerance_hours: Annotated[int, Field(ge=1, le=24 * 31)] | None = None
    # Whether fees and interest accrue while a dispute, a complaint, a pause
    # (or a verification awaited) holds collection. False: those days are
    # passed over, not charged later.
    charges_during_hold: bool = True
    # Whether a loan whose borrower asked in writing to cease communication
    # (the `legal_status` signal's cease_communication; issue 18, item 1) may
    # still enter the legal stage (a case opened; its notice is not sent).
    # False: it stops at the stage before legal. No running loan had the
    # status before the setting existed, so its default changes none.
    legal_escalation_after_cease: bool = False


class Collector(_Strict):
    """Who collects, as the validation notice names it (Model Form B-1)."""

    name: str = ""
    mailing_address: tuple[str, ...] = ()
    phone: str = ""
    # The electronic way to dispute or ask for the original creditor (an
    # e-mail address or a web address), besides the mailed response form.
    dispute_email: str = ""
    dispute_url: str = ""
    # The lender collects as a "debt collector" (FDCPA 803(6)): the
    # 1006.18(e) disclosure goes into every communication. A creditor
    # collecting its own debts is not covered by Reg F's notice rules.
    collects_as_debt_collector: bool = False


class Privacy(_Strict):
    """What the first line of an SMS or push (what a lock screen shows) may say.

    - `full`: anything the template says (profiles recorded before it existed);
    - `limited_content`: no debt named at all, in the style of 1006.2(j)'s
      limited-content message;
    - `no_amount_before_identity`: no amount and no "overdue" (cn: before the
      borrower confirmed who they are, a notification names no debt)."""

    first_line: Literal["full", "limited_content", "no_amount_before_identity"] = "full"


# A jurisdiction: an ISO 3166-1 alpha-2 country, optionally with an ISO
# 3166-2 subdivision (US-CA, US-NY, CN). The placement's `jurisdiction`.
JURISDICTION_PATTERN = r"^[A-Z]{2}(?:-[A-Z0-9]{1,3})?$"
# A limitation disclosure's key in config/compliance/limitation_disclosures.toml.
DISCLOSURE_KEY_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"


class StatuteOfLimitations(_Strict):
    """How long a debt may be sued on in one jurisdiction (issue 18, item 2;
    dunning/limitation.py computes the dates). Data, with its source quoted
    in the profile's comments."""

    # The period, in whole years.
    years: Annotated[int, Field(ge=1, le=30)]
    # From which event it runs: the first day of delinquency (the day after
    # the due date), or the last payment the loan knows (the placement's
    # `last_payment_date`, then each payment received).
    runs_from: Literal["first_delinquency", "last_payment"]
    # Whether a payment received before the debt is time-barred starts the
    # period again from its day; and whether a partial one does (a payment
    # that leaves a balance and does not bring a plan's installments due up
    # to date). A payment never revives a debt once it is time-barred.
    payment_restarts: bool = False
    partial_payment_restarts: bool = False
    # The disclosure every contact about the debt carries once it is
    # time-barred (a key of config/compliance/limitation_disclosures.toml;
    # "" where the jurisdiction requires none), and the one after the FCRA
    # 605 obsolescence date, where the jurisdiction words it otherwise ("":
    # the same one).
    disclosure: Annotated[str, Field(pattern=r"^$|" + DISCLOSURE_KEY_PATTERN)] = ""
    disclosure_after_obsolescence: Annotated[str, Field(pattern=r"^$|" + DISCLOSURE_KEY_PATTERN)] = ""

    @model_validator(mode="after")
    def _consistent(self) -> StatuteOfLimitations:
        if self.partial_payment_restarts and not self.payment_restarts:
            raise ValueError("partial_payment_restarts needs payment_restarts (a partial payment is a payment)")
        if self.runs_from == "last_payment" and not self.payment_restarts:
            raise ValueError("payment_restarts must be true when runs_from is last_payment (a payment received "
                             "is the last payment)")
        return self


class Profile(_Strict):
    name: str
    description: str = ""
    window: Window
    caps: Caps = Caps()
    notices: Notices = Notices()
    rules: Rules
    collector: Collector = Collector()
    privacy: Privacy = Privacy()
    # The statute of limitations per jurisdiction (issue 18, item 2). A loan
    # whose placement names a jurisdiction not listed here (or none) has no
    # limitation applied: it is never treated as time-barred. Not sent into
    # Temporal: prepare_loan hands the workflow the one rule that applies.
    limitations: dict[Annotated[str, Field(pattern=JURISDICTION_PATTERN)], StatuteOfLimitations] = Field(
        default_factory=dict
    )


def parse_profile(data: dict, source: str = "profile") -> Profile:
    try:
        return Profile.model_validate(data)
    except ValidationError as error:
        raise ProfileError(f"{source}: {describe_validation_error(error)}") from None


@dataclass(frozen=True)
class PastContact:
    at: datetime  # loan time
    channel: str
    result: str


@dataclass(frozen=True)
class Permit:
    allowed: bool
    rule: str = ""  # which rule said no: window, voice_7_in_7, quiet_after_conversation
    reason: str = ""
    not_before: datetime | None = None  # loan time it may go out


ALLOWED = Permit(True)


def next_window_opening(profile: Profile | Window, now: datetime) -> datetime:
    """The next moment at or after `now` (aware, borrower's zone) inside the window."""
    window = profile.window if isinstance(profile, Profile) else profile
    local = now
    if local.time() < window.start:
        return local.replace(hour=window.start.hour, minute=window.start.minute, second=0, microsecond=0)
    if local.time() >= window.end:
        tomorrow = (local + timedelta(days=1)).date()
        return datetime.combine(tomorrow, window.start, tzinfo=local.tzinfo)
    return local


# Looking further than this for an hour open in every zone means there is none.
_COMMON_WINDOW_SEARCH = timedelta(days=3)


def next_opening_in_all(profile: Profile | Window, now: datetime, zones: Sequence[str] = ()) -> datetime | None:
    """The first moment at or after `now` inside the window in every zone of
    `zones` (and in `now`'s own zone), in `now`'s zone; None when the zones
    share no hour of the window (they are further apart than it is long).

    12 CFR 1006.6(b)(1)(i), comment 6(b)(1)(i)-4: with ambiguous information
    about the consumer's location, a time is convenient only if it is
    convenient in every location the information points to."""
    home = now.tzinfo
    places = [ZoneInfo(zone) for zone in zones] or [home]
    candidate = now
    while candidate - now <= _COMMON_WINDOW_SEARCH:
        later = max(next_window_opening(profile, candidate.astimezone(place)) for place in places)
        if later == candidate:
            return candidate.astimezone(home)
        candidate = later
    return None


def check_contact(
    profile: Profile, channel: str, now: datetime, history: Sequence[PastContact], zones: Sequence[str] = ()
) -> Permit:
    """`now` is loan time in the borrower's (primary) zone; `history` is this
    loan's contacts; `zones` every zone the borrower may be in (empty: only
    `now`'s)."""
    opening = next_opening_in_all(profile, now, zones)
    if opening is None:
        return Permit(
            False,
            "no_common_window",
            f"the borrower's possible zones ({', '.join(zones)}) share no hour of the contact window "
            f"{profile.window.start:%H:%M}-{profile.window.end:%H:%M} ({profile.name} profile)",
            None,
        )
    if opening != now:
        where = "borrower local time" if len(zones) <= 1 else f"in every zone the borrower may be in ({', '.join(zones)})"
        return Permit(
            False,
            "window",
            f"outside the contact window {profile.window.start:%H:%M}-{profile.window.end:%H:%M} "
            f"{where} ({profile.name} profile)",
            opening,
        )
    if channel != "voice":
        return ALLOWED
    caps = profile.caps
    calls = sorted((c for c in history if c.channel == "voice" and c.result in ATTEMPT_RESULTS), key=lambda c: c.at)
    if caps.min_minutes_between_calls and calls:
        # No bursts: the loan's own calls spaced (the activity spaces the
        # borrower's calls across loans, which only it sees).
        until = calls[-1].at + timedelta(minutes=caps.min_minutes_between_calls)
        if now < until:
            return Permit(
                False,
                "call_spacing",
                f"the last call was less than {caps.min_minutes_between_calls} minutes ago ({profile.name} profile)",
                next_opening_in_all(profile, until.astimezone(now.tzinfo), zones) or until,
            )
    if caps.quiet_days_after_conversation:
        conversations = [c.at for c in calls if c.result in CONVERSATION_RESULTS]
        if conversations and now < conversations[-1] + timedelta(days=caps.quiet_days_after_conversation):
            until = conversations[-1] + timedelta(days=caps.quiet_days_after_conversation)
            return Permit(
                False,
                "quiet_after_conversation",
                f"no call within {caps.quiet_days_after_conversation} days after a conversation ({profile.name} profile)",
                next_opening_in_all(profile, until.astimezone(now.tzinfo), zones) or until,
            )
    if caps.voice_attempts_per_7_days_per_loan:
        cap = caps.voice_attempts_per_7_days_per_loan
        recent = [c.at for c in calls if c.at > now - timedelta(days=7)]
        if len(recent) >= cap:
            # Allowed again once the oldest call that counts leaves the 7 days.
            until = recent[-cap] + timedelta(days=7)
            return Permit(
                False,
                "voice_7_in_7",
                f"{len(recent)} calls in the last 7 days; at most {cap} ({profile.name} profile)",
                next_opening_in_all(profile, until.astimezone(now.tzinfo), zones) or until,
            )
    if caps.voice_attempts_per_day_per_borrower:
        cap = caps.voice_attempts_per_day_per_borrower
        today = [c for c in calls if c.at.astimezone(now.tzinfo).date() == now.date()]
        if len(today) >= cap:
            tomorrow = datetime.combine(now.date() + timedelta(days=1), profile.window.start, tzinfo=now.tzinfo)
            return Permit(
                False,
                "voice_daily_cap",
                f"{len(today)} calls today; at most {cap} per day ({profile.name} profile)",
                tomorrow,
            )
    return ALLOWED
