"""A seeded generator of synthetic overdue loans, their borrowers and how each
borrower behaves.

    portfolio = generate(200, seed=7, market="cn")
    portfolio.records("default")        # placement records (docs/contract.md, "Placing loans")

The same seed gives the same loans, amounts, borrowers and behaviours; only
the calendar (`start_at`, and the due dates, which make every loan day 1 at
`start_at`) depends on the start, which the caller may fix too.

Markets
    cn: CNY, log-normal amounts around a median of 1,500 (about 4 % under 300,
        9 % over 5,000); zh_CN in Asia/Shanghai mostly, zh_TW in Asia/Taipei,
        a few English speakers in Shanghai. us: USD around a median of 600; en
        in America/New_York, Chicago and Los_Angeles, a few zh_CN speakers in
        Los Angeles.

Borrowers
    Clearly synthetic: names from short lists, phone numbers from reserved or
    test ranges (+86 138 0013 8xxx and neighbours; +1 NPA 555-01xx, the range
    set aside for fiction), e-mail addresses at example.com, push tokens
    `sim-push-...`. Some have no e-mail, about half no app (push token).

Risk scores
    0 (safest) to 1000, drawn around a mean that depends on the behaviour
    (never-payers score higher); 20 % have none, as loans from a lender that
    scores only some of its book.

Behaviours (BEHAVIOURS; DEFAULT_MIX their shares; the counts are exact, by
largest remainder, then shuffled; so are the shares of their traits below,
TRAIT_SHARES, rounded half up within each behaviour). Each reacts to what the
workflow does, as the `status` query shows it, not to fixed days, so a policy
that contacts sooner recovers sooner (simulation/behaviour.py runs them):

    pays_on_reminder  pays in full 0-6 days after the first reminder. Low risk
                      (score < 700) and under 5,000, so the default policy
                      keeps them in the standard cadence.
    pays_after_call   pays in full 0-2 days after the first voice call, if it
                      comes by their `patience_days` (5-20); called later, or
                      never (a segment without calls), half of them pay after
                      the bureau notice instead and half never pay.
    takes_plan        accepts the policy's plan offer (the first offer, or the
                      second for 30 %) 0-3 days after a `plan_offer` message
                      and pays each installment 0-2 days before it is due;
                      30 % stop at installment 2 (the plan breaks).
    breaks_promise    when collections reach them (the first contact of the
                      call stage or later) promises the balance within 3-7
                      days and does not pay; 30 % promise (and break) a second
                      time at the next such contact; 40 % then pay in full
                      after the bureau notice.
    partial_payer     pays 20-50 % of the balance after the first contact of
                      the call stage (if it comes by their patience), and the
                      same share of what is left after the bureau notice;
                      never the whole.
    never_pays        nothing, ever: written off.
    disputes          disputes the debt at the first contact of the call stage;
                      an operator resolves it 7-20 days later, upheld for 40 %
                      (the loan ends dispute_upheld); half of all disputers
                      pay in full after the next contact once a dispute is
                      rejected, the rest never pay.

One more behaviour is acted out but not drawn by the generator (it is in no
mix, so the default portfolio and its results are as they were); the demo's
borrowers (scripts/demo.py) use it:

    keeps_promise     when collections reach them promises the balance within
                      `promise_days` and pays it in full `lead_days` before
                      that date: the promise is kept.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from typing import Mapping
from zoneinfo import ZoneInfo

PAYS_ON_REMINDER = "pays_on_reminder"
PAYS_AFTER_CALL = "pays_after_call"
TAKES_PLAN = "takes_plan"
BREAKS_PROMISE = "breaks_promise"
PARTIAL_PAYER = "partial_payer"
NEVER_PAYS = "never_pays"
DISPUTES = "disputes"
BEHAVIOURS = (PAYS_ON_REMINDER, PAYS_AFTER_CALL, TAKES_PLAN, BREAKS_PROMISE, PARTIAL_PAYER, NEVER_PAYS, DISPUTES)
# Acted out (simulation/behaviour.py) but never generated: see the module doc.
KEEPS_PROMISE = "keeps_promise"

# Shares of a consumer-loan portfolio entering collections: most cure on a
# reminder or a call, a tenth to a fifth never pay.
DEFAULT_MIX: Mapping[str, float] = {
    PAYS_ON_REMINDER: 0.30,
    PAYS_AFTER_CALL: 0.18,
    TAKES_PLAN: 0.12,
    BREAKS_PROMISE: 0.10,
    PARTIAL_PAYER: 0.08,
    NEVER_PAYS: 0.19,
    DISPUTES: 0.03,
}

# Below the default policy's high_risk (700) and high_balance (5,000) segments.
_REMINDER_MAX_RISK = 690
_REMINDER_MAX_AMOUNT = Decimal("4999.00")
_RISK_MEAN = {
    PAYS_ON_REMINDER: 330, PAYS_AFTER_CALL: 450, TAKES_PLAN: 480, BREAKS_PROMISE: 560,
    PARTIAL_PAYER: 520, NEVER_PAYS: 650, DISPUTES: 450,
}
_RISK_SD = 140
_RISK_MISSING = 0.20


@dataclass(frozen=True)
class Market:
    name: str
    currency: str
    median: Decimal  # of the log-normal amount
    sigma: float
    minimum: Decimal
    maximum: Decimal
    # (language, IANA zone, share)
    locales: tuple[tuple[str, str, float], ...]


MARKETS: Mapping[str, Market] = {
    "cn": Market(
        "cn", "CNY", Decimal("1500"), 0.9, Decimal("50.00"), Decimal("50000.00"),
        (("zh_CN", "Asia/Shanghai", 0.86), ("zh_TW", "Asia/Taipei", 0.10), ("en", "Asia/Shanghai", 0.04)),
    ),
    "us": Market(
        "us", "USD", Decimal("600"), 0.95, Decimal("25.00"), Decimal("20000.00"),
        (("en", "America/New_York", 0.42), ("en", "America/Chicago", 0.28),
         ("en", "America/Los_Angeles", 0.25), ("zh_CN", "America/Los_Angeles", 0.05)),
    ),
}
# The market a compliance profile's loans come from.
MARKET_OF_PROFILE = {"cn": "cn", "us": "us"}


@dataclass(frozen=True)
class Behaviour:
    """How one borrower behaves; simulation/behaviour.py acts it out."""

    kind: str
    delay_days: int = 0  # from the trigger to the act
    patience_days: int = 0  # pays_after_call, partial_payer: the last day a first contact still moves them
    fraction: str | None = None  # partial_payer: share of the balance paid each time
    plan_offer: int = 0  # takes_plan: which of the policy's plans.offers (0-based)
    breaks_at: int | None = None  # takes_plan: the installment never paid
    lead_days: int = 0  # takes_plan: days before an installment's due date it is paid; keeps_promise: before by_date
    promises: int = 0  # breaks_promise: promises made and broken
    promise_days: int = 0  # breaks_promise, keeps_promise: by_date = today + this
    pays_later: bool = False  # after the bureau notice (or, for disputes, after the next contact)
    later_delay_days: int = 0
    upheld: bool = False  # disputes
    resolve_after_days: int = 0  # disputes


@dataclass(frozen=True)
class SyntheticLoan:
    loan_id: str
    borrower_id: str
    amount_due: Decimal
    currency: str
    due_date: date
    risk_score: int | None
    name: str
    phone: str
    email: str | None
    push_token: str | None
    language: str
    time_zone: str
    behaviour: Behaviour

    def record(self, policy: str) -> dict:
        """The placement record: the workflow input and the borrower block."""
        record = {
            "loan_id": self.loan_id,
            "borrower_id": self.borrower_id,
            "amount_due": f"{self.amount_due:f}",
            "currency": self.currency,
            "due_date": self.due_date.isoformat(),
            "policy": policy,
            "borrower": {
                "name": self.name,
                "phone": self.phone,
                "email": self.email,
                "push_token": self.push_token,
                "language": self.language,
                "time_zone": self.time_zone,
            },
        }
        if self.risk_score is not None:
            record["risk_score"] = self.risk_score
        return record

    def summary(self) -> dict:
        """What the report and --json show of a loan (no contact details)."""
        return {
            "loan_id": self.loan_id, "amount_due": f"{self.amount_due:f}", "currency": self.currency,
            "due_date": self.due_date.isoformat(), "risk_score": self.risk_score, "language": self.language,
            "time_zone": self.time_zone, "behaviour": asdict(self.behaviour),
        }


@dataclass(frozen=True)
class Portfolio:
    seed: int
    market: str
    start_at: datetime  # every loan is on day 1 at this instant, in its own zone
    mix: dict[str, float]
    loans: tuple[SyntheticLoan, ...] = field(default=())

    def records(self, policy: str) -> list[dict]:
        return [loan.record(policy) for loan in self.loans]

    def counts(self) -> Counter:
        return Counter(loan.behaviour.kind for loan in self.loans)

    def by_id(self) -> dict[str, SyntheticLoan]:
        return {loan.loan_id: loan for loan in self.loans}

    def zones(self) -> list[str]:
        return sorted({loan.time_zone for loan in self.loans})


# ------------------------------------------------------------------ calendar


def default_start(now: datetime, market: str) -> datetime:
    """00:30 in the market's westernmost zone, at least a day after `now`: every
    loan is then on day 1, between midnight and its first contact (09:00),
    whatever its zone. A day ahead so that a second run (the challenger, on a
    fresh server whose clock starts at the wall clock) can reach it too."""
    zone = ZoneInfo(_westernmost(market, now))
    later = (now + timedelta(days=1)).astimezone(zone)
    start = datetime.combine(later.date(), time(0, 30), tzinfo=zone)
    if start <= later:
        start = datetime.combine(later.date() + timedelta(days=1), time(0, 30), tzinfo=zone)
    return start.astimezone(timezone.utc)


def start_on(day: date, market: str) -> datetime:
    """00:30 of `day` in the market's westernmost zone (see default_start)."""
    zone = ZoneInfo(_westernmost(market, datetime.combine(day, time(12), tzinfo=timezone.utc)))
    return datetime.combine(day, time(0, 30), tzinfo=zone).astimezone(timezone.utc)


def _westernmost(market: str, at: datetime) -> str:
    zones = {zone for _, zone, _ in MARKETS[market].locales}
    return min(zones, key=lambda z: at.astimezone(ZoneInfo(z)).utcoffset())


# ------------------------------------------------------------------ shares


def allocate(n: int, mix: Mapping[str, float]) -> dict[str, int]:
    """Exact counts for n loans: floor of each share, the rest by largest
    remainder (ties in BEHAVIOURS order)."""
    unknown = set(mix) - set(BEHAVIOURS)
    if unknown:
        raise ValueError(f"mix: unknown behaviour(s) {sorted(unknown)}; known: {', '.join(BEHAVIOURS)}")
    if any(share < 0 for share in mix.values()):
        raise ValueError("mix: shares must not be negative")
    total = sum(mix.values())
    if total <= 0:
        raise ValueError("mix: the shares add up to nothing")
    exact = {kind: n * mix.get(kind, 0.0) / total for kind in BEHAVIOURS}
    counts = {kind: int(exact[kind]) for kind in BEHAVIOURS}
    left = n - sum(counts.values())
    for kind in sorted(BEHAVIOURS, key=lambda k: (-(exact[k] - counts[k]), BEHAVIOURS.index(k)))[:left]:
        counts[kind] += 1
    return {kind: count for kind, count in counts.items() if count or kind in mix}


def parse_mix(text: str) -> dict[str, float]:
    """'pays_on_reminder=0.3,never_pays=0.2' -> shares (normalized later)."""
    mix: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        try:
            mix[name.strip()] = float(value)
        except ValueError:
            raise ValueError(f"mix: {part!r} is not name=share") from None
    allocate(1, mix)  # validates the names and shares
    return mix


# ------------------------------------------------------------------ borrowers

_CN_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
_CN_GIVEN = ["伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛", "明", "超", "秀英", "小明", "建华", "志强", "晓燕"]
_TW_SURNAMES = "陳林黃張李王吳劉蔡楊"
_TW_GIVEN = ["志明", "淑芬", "家豪", "雅婷", "俊傑", "怡君", "建宏", "美玲", "冠宇", "佳穎"]
_EN_FIRST = ["James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda", "David", "Elizabeth",
             "William", "Barbara", "Maria", "Carlos", "Aisha", "Wei", "Priya", "Daniel", "Sarah", "Kevin"]
_EN_LAST = ["Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez", "Martinez",
            "Lee", "Nguyen", "Patel", "Kim", "Chen", "Taylor", "Thomas", "Moore", "Jackson", "White"]
# Fictional or test ranges: 138 0013 8xxx (the project's own fixtures use it) and neighbours.
_CN_PHONE_BLOCKS = ("+8613800138", "+8613900139", "+8613700137", "+8613600136", "+8613500135")
# NANP 555-0100..0199 is reserved for fiction, in every area code; codes of the borrower's city.
_US_AREA_CODES = {
    "America/New_York": ("212", "646", "718", "917", "347", "929"),
    "America/Chicago": ("312", "773", "872"),
    "America/Los_Angeles": ("213", "310", "323", "424", "818"),
}


def _phone(market: str, zone: str, index: int) -> str:
    if market == "cn":
        block = _CN_PHONE_BLOCKS[(index // 1000) % len(_CN_PHONE_BLOCKS)]
        return f"{block}{index % 1000:03d}"
    codes = _US_AREA_CODES.get(zone, ("202",))
    return f"+1{codes[(index // 100) % len(codes)]}5550{100 + index % 100}"


def _name(rng: random.Random, language: str) -> str:
    if language == "zh_TW":
        return rng.choice(_TW_SURNAMES) + rng.choice(_TW_GIVEN)
    if language == "zh_CN":
        return rng.choice(_CN_SURNAMES) + rng.choice(_CN_GIVEN)
    return f"{rng.choice(_EN_FIRST)} {rng.choice(_EN_LAST)}"


def _choice(rng: random.Random, weighted: list[tuple[object, float]]):
    point, running = rng.random() * sum(w for _, w in weighted), 0.0
    for value, weight in weighted:
        running += weight
        if point < running:
            return value
    return weighted[-1][0]


def _amount(rng: random.Random, market: Market, kind: str) -> Decimal:
    while True:
        value = Decimal(str(rng.lognormvariate(0.0, market.sigma))) * market.median
        value = min(max(value, market.minimum), market.maximum).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
        if kind != PAYS_ON_REMINDER or value <= _REMINDER_MAX_AMOUNT:
            return value


def _risk(rng: random.Random, kind: str) -> int | None:
    if rng.random() < _RISK_MISSING:
        return None
    score = max(0, min(1000, round(rng.gauss(_RISK_MEAN[kind], _RISK_SD))))
    return min(score, _REMINDER_MAX_RISK) if kind == PAYS_ON_REMINDER else score


class _Quotas:
    """Yes/no traits of a behaviour's loans in exact shares: of n loans of a
    kind, round(share x n) get the trait, in an order shuffled by the seed, so
    that a small portfolio has its 30 % of broken plans too."""

    def __init__(self, rng: random.Random, counts: Mapping[str, int]) -> None:
        self._rng, self._counts, self._draws = rng, counts, {}

    def take(self, kind: str, trait: str, share: float) -> bool:
        key = (kind, trait)
        if key not in self._draws:
            n = self._counts.get(kind, 0)
            yes = int(Decimal(str(share * n)).quantize(Decimal(1), rounding=ROUND_HALF_UP))
            draws = [True] * yes + [False] * (n - yes)
            self._rng.shuffle(draws)
            self._draws[key] = draws
        draws = self._draws[key]
        return draws.pop() if draws else False


# Shares of each behaviour's traits (exact, see _Quotas).
TRAIT_SHARES: Mapping[str, float] = {
    "pays_after_call.pays_later": 0.5,
    "takes_plan.second_offer": 0.3,
    "takes_plan.breaks_at_2": 0.3,
    "breaks_promise.two_promises": 0.3,
    "breaks_promise.pays_later": 0.4,
    "disputes.upheld": 0.4,
    "disputes.pays_later": 0.5,
}


def _behaviour(rng: random.Random, kind: str, quotas: _Quotas) -> Behaviour:
    def trait(name: str) -> bool:
        return quotas.take(kind, name, TRAIT_SHARES[f"{kind}.{name}"])

    if kind == PAYS_ON_REMINDER:
        delay = _choice(rng, [(0, 0.30), (1, 0.20), (2, 0.15), (3, 0.12), (4, 0.10), (5, 0.08), (6, 0.05)])
        return Behaviour(kind, delay_days=delay)
    if kind == PAYS_AFTER_CALL:
        return Behaviour(
            kind, delay_days=_choice(rng, [(0, 0.5), (1, 0.3), (2, 0.2)]), patience_days=rng.randint(5, 20),
            pays_later=trait("pays_later"), later_delay_days=rng.randint(0, 5),
        )
    if kind == TAKES_PLAN:
        return Behaviour(
            kind, delay_days=rng.randint(0, 3), plan_offer=1 if trait("second_offer") else 0,
            breaks_at=2 if trait("breaks_at_2") else None, lead_days=rng.randint(0, 2),
        )
    if kind == BREAKS_PROMISE:
        return Behaviour(
            kind, promises=2 if trait("two_promises") else 1, promise_days=rng.randint(3, 7),
            pays_later=trait("pays_later"), later_delay_days=rng.randint(0, 5),
        )
    if kind == PARTIAL_PAYER:
        return Behaviour(
            kind, delay_days=rng.randint(0, 2), patience_days=rng.randint(5, 20),
            fraction=f"{Decimal(rng.randint(4, 10)) * Decimal('0.05'):.2f}",
            later_delay_days=rng.randint(0, 5),
        )
    if kind == DISPUTES:
        return Behaviour(
            kind, delay_days=rng.randint(0, 2), upheld=trait("upheld"), resolve_after_days=rng.randint(7, 20),
            pays_later=trait("pays_later"), later_delay_days=rng.randint(0, 3),
        )
    return Behaviour(kind)


def generate(
    n: int,
    seed: int = 1,
    market: str = "cn",
    mix: Mapping[str, float] | None = None,
    start_at: datetime | None = None,
    prefix: str = "SIM",
) -> Portfolio:
    """N synthetic loans on day 1 at `start_at` (default: default_start(now))."""
    if n < 1:
        raise ValueError("loans: at least 1")
    if market not in MARKETS:
        raise ValueError(f"market: {market!r}; known: {', '.join(MARKETS)}")
    spec = MARKETS[market]
    mix = dict(DEFAULT_MIX if mix is None else mix)
    start_at = start_at or default_start(datetime.now(timezone.utc), market)
    rng = random.Random(f"{seed}/{market}")
    counts = allocate(n, mix)
    kinds = [kind for kind, count in counts.items() for _ in range(count)]
    rng.shuffle(kinds)
    quotas = _Quotas(rng, counts)
    loans = []
    for index, kind in enumerate(kinds):
        number = index + 1
        language, zone = _choice(rng, [((lang, z), share) for lang, z, share in spec.locales])
        loans.append(
            SyntheticLoan(
                loan_id=f"{prefix}-{number:05d}",
                borrower_id=f"{prefix}B-{number:05d}",
                amount_due=_amount(rng, spec, kind),
                currency=spec.currency,
                due_date=start_at.astimezone(ZoneInfo(zone)).date() - timedelta(days=1),
                risk_score=_risk(rng, kind),
                name=_name(rng, language),
                phone=_phone(market, zone, index),
                email=None if rng.random() < 0.08 else f"sim.{number:05d}@example.com",
                push_token=f"sim-push-{number:05d}" if rng.random() < 0.55 else None,
                language=language,
                time_zone=zone,
                behaviour=_behaviour(rng, kind, quotas),
            )
        )
    return Portfolio(seed=seed, market=market, start_at=start_at, mix=mix, loans=tuple(loans))
