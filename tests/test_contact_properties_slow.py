"""Issue 15, "Done when": random borrower lifecycles find no contact that
breaks a window, cap, spacing, opt-out or hold rule.

Each lifecycle is one borrower with 1-3 loans under one compliance profile
(`us` with the `us` policy or, for 40 % of the loans, `us_calls`, a variant
that calls three times a day, at 07:30, 10:30 and 20:30; `cn` with `default`
or `cn_calls`, four calls a day from 07:45 to 21:45: the stock policies call
at most once a day, which never reaches 7 calls in 7 days or 6 calls a day,
and the steps outside or at the edge of the window test it). The borrower's zones come
from single-zone and multi-zone sets (a number or an address that spans
zones: state.time_zone is the first, state.contact_zones all of them), the
loans' due dates, placement days and hours are random, and random signals
come at random moments: pause/resume, dispute/dispute_resolved (now and
then upheld, which ends the loan), verification_sent after a dispute,
complaint/complaint_resolved, opt-outs of a channel or of all, to one loan
or to all of the borrower's loans (as an SMS STOP does). Providers report
calls answered, unanswered, busy or on voicemail (or never), e-mails
delivered, bounced or never reported, and refuse a message now and then; a
borrower may have no e-mail address.

The loans of one borrower are walked together, in time order, by
tests/support/borrower_walk.py: the pure planner and the workflow's own
transitions, with db/outbox.py's per-borrower call checks at send time
(spacing across loans, cn's daily cap across loans) modelled in the driver:
a refused call becomes a deferral exactly as the workflow makes it from the
activity's `deferred` outcome. The database code itself is tested on real
SQLite and PostgreSQL in tests/test_call_cap_concurrency.py.

Horizon: a lifecycle ends 32 days after its last loan's due date (day 32 of
that loan, up to day 47 of the first), not at write-off (day 180). That
covers every stage with calls (reminder from day 1, calls from day 4 or 8 to
15, negotiation's calls to day 30) and the first day of credit reporting (its
notices, held in the US validation period); the later stages only send SMS
and e-mail on a slow cadence, and 10,000 full 180-day lifecycles per profile
would not fit the few minutes this test may take on a 2-core machine. The
planner is the cost (it lists the stage's steps on every call): measured on
one core, about 12 ms a lifecycle under us and 20 ms under cn; the full run
splits the lifecycles over the machine's cores (each is seeded on its own).

Checked from the messages handed to a provider, for every loan:
- each moment is inside the profile's window in EVERY zone of the borrower;
- us: at most 7 call attempts in any 7 days per loan; no call within 7 days
  after a call the borrower answered; the validation notice is the first
  contact, and nothing else goes out before it is provided (an e-mail
  reported delivered, a letter mailed); cn: at most 6 calls per
  borrower-local day across the borrower's loans;
- call attempts to one borrower, across loans, at least
  min_minutes_between_calls apart;
- nothing on a channel at or after an opt-out of it (or of all) reached the
  loan; nothing while a hold is on (pause, dispute, complaint, a dispute
  awaiting verification), by a model of the holds kept by the test;
- every step the planner proposed is in `contacts` (sent, failed or skipped
  with a reason) or still in `state.deferred`; and every cadence step that
  fell due while its loan could be contacted was proposed.

`CONTACT_PROPERTIES_SEED` changes the base seed (default below); every
failure names its lifecycle's seed, and `describe(seed)` replays it:

    .venv/bin/python -c "from tests.test_contact_properties_slow import describe; print(describe('SEED'))"

The counts are printed in the test summary ("contact properties: ..."), by
a plugin this module registers; under pytest-xdist the summary is the
controller's, which never imports this module, so the line is not printed
there (make test-fast).
"""

from __future__ import annotations

import multiprocessing
import os
import random
import tempfile
import time as timer
from bisect import bisect_right
from concurrent.futures import ProcessPoolExecutor
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from dunning import notice
from dunning.compliance import ATTEMPT_RESULTS, CONVERSATION_RESULTS
from dunning.planner import occurrences
from loaders.config_files import load_policy, load_profile
from tests.support.borrower_walk import Borrower, Event, LoanSpec, Walk, walk_borrower
from tests.support.planner import POLICIES, PROFILES

FULL = 10_000  # lifecycles per profile (issue 15)
FAST = 300  # the variant make test-fast runs
BASE_SEED = os.environ.get("CONTACT_PROPERTIES_SEED", "issue-15")
DUE = date(2026, 11, 1)  # US daylight saving time ends that day
HORIZON_DAYS = 32

PROFILE_POLICIES = {"us": ("us", "us_calls"), "cn": ("default", "cn_calls")}

# Zones a borrower may be in, with weights: single-zone numbers, area codes
# and states that span zones, and (rarely) zones that share no hour of the
# window, or only one.
ZONE_SETS = {
    "us": [
        (("America/Boise", "America/Los_Angeles"), 3),
        (("America/Denver", "America/North_Dakota/Center"), 3),
        (("America/New_York",), 3),
        (("America/Chicago", "America/Denver"), 3),
        (("America/Los_Angeles",), 1),
        (("Pacific/Honolulu", "America/Los_Angeles"), 1),
        (("America/Phoenix", "America/Denver"), 1),
        (("Asia/Shanghai",), 1),
        (("America/New_York", "Asia/Shanghai"), 0.3),
    ],
    "cn": [
        (("Asia/Shanghai",), 4),
        (("Asia/Urumqi", "Asia/Shanghai"), 2),
        (("Asia/Shanghai", "Asia/Tokyo"), 1),
        (("America/Boise", "America/Los_Angeles"), 1),
        (("America/Denver", "America/North_Dakota/Center"), 1),
        (("America/New_York",), 1),
        (("America/Chicago", "America/Denver"), 1),
        (("Asia/Shanghai", "America/New_York"), 0.3),
    ],
}

# Policies that call several times a day (the call caps and the spacing
# across loans only bite there); steps at 07:30 and late in the evening
# test the window's edges.
DENSE_POLICIES = {
    "us_calls": """
extends = "us"
name = "us_calls"
[stages.call]
start_day = 8
steps = [
  { day = 0, channel = "voice", template = "call_script", every_days = 1, at = "07:30:00" },
  { day = 0, channel = "voice", template = "call_script", every_days = 1, at = "10:30:00" },
  { day = 0, channel = "voice", template = "call_script", every_days = 1, at = "20:30:00" },
  { day = 1, channel = "sms", template = "reminder_followup" },
]
[stages.negotiation]
start_day = 16
steps = [
  { day = 0, channel = "email", template = "plan_offer" },
  { day = 1, channel = "voice", template = "call_script", every_days = 2, at = "10:00:00" },
]
""",
    "cn_calls": """
extends = "default"
name = "cn_calls"
[stages.call]
start_day = 8
steps = [
  { day = 0, channel = "voice", template = "call_script", every_days = 1, at = "07:45:00" },
  { day = 0, channel = "voice", template = "call_script", every_days = 1, at = "09:00:00" },
  { day = 0, channel = "voice", template = "call_script", every_days = 1, at = "09:20:00" },
  { day = 0, channel = "voice", template = "call_script", every_days = 1, at = "21:45:00" },
  { day = 1, channel = "sms", template = "reminder_followup" },
]
[stages.negotiation]
start_day = 16
steps = [
  { day = 0, channel = "sms", template = "plan_offer" },
  { day = 1, channel = "voice", template = "call_script", every_days = 1, at = "10:00:00" },
]
""",
}

INVARIANTS = (
    "window", "calls_7_in_7", "quiet_after_conversation", "daily_cap_per_borrower", "call_spacing",
    "validation_notice_first", "opt_out", "hold", "accounted_for", "not_dropped",
)


@lru_cache(maxsize=None)
def policies():
    """The stock policies and the dense ones, read through the loaders."""
    with tempfile.TemporaryDirectory(prefix="contact-properties-") as name:
        directory = Path(name)
        for base in ("default", "us"):
            (directory / f"{base}.toml").write_text((POLICIES / f"{base}.toml").read_text(encoding="utf-8"), encoding="utf-8")
        for dense, text in DENSE_POLICIES.items():
            (directory / f"{dense}.toml").write_text(text, encoding="utf-8")
        return {policy: load_policy(policy, directory) for names in PROFILE_POLICIES.values() for policy in names}


@lru_cache(maxsize=None)
def profile_named(name: str):
    return load_profile(name, PROFILES)


# ------------------------------------------------------------ a lifecycle


@dataclass
class Lifecycle:
    seed: str
    profile: str
    borrower: Borrower
    specs: list[LoanSpec]
    script: list[Event]
    horizon: datetime
    rng: random.Random = field(repr=False)


def _minute(rng: random.Random, start: datetime, end: datetime) -> datetime:
    minutes = max(int((end - start).total_seconds() // 60), 1)
    return start + timedelta(minutes=rng.randrange(minutes))


def lifecycle(seed: str) -> Lifecycle:
    """The lifecycle a seed names ("<base>/<profile>/<n>")."""
    rng = random.Random(seed)
    profile = seed.split("/")[-2]
    sets, weights = zip(*ZONE_SETS[profile])
    zones = rng.choices(sets, weights)[0]
    borrower = Borrower(zones=zones, has_email=rng.random() < 0.85, has_address=rng.random() < 0.97)
    primary = ZoneInfo(zones[0])
    specs = []
    for index in range(rng.choice((1, 1, 2, 2, 3))):
        due = DUE if index == 0 else DUE + timedelta(days=rng.choice((0, 0, 2, 7, 15)))
        placed_day = rng.randint(0, 12)
        start = datetime.combine(due + timedelta(days=placed_day), time(0), tzinfo=primary) + timedelta(minutes=rng.randrange(24 * 60))
        specs.append(LoanSpec(
            policy=policies()[rng.choices(PROFILE_POLICIES[profile], (0.6, 0.4))[0]], due=due,
            amount=rng.choice(("100.00", "1200.00", "1200.00", "9800.00")), start=start,
            risk_score=rng.choice((None, None, 300, 800)),
        ))
    first = min(s.start for s in specs)
    horizon = datetime.combine(max(s.due for s in specs) + timedelta(days=HORIZON_DAYS), time(0), tzinfo=primary)
    script = []
    everyone = tuple(range(len(specs)))

    def later(at: datetime, longest: timedelta) -> datetime:
        return at + timedelta(minutes=rng.randint(1, int(longest.total_seconds() // 60)))

    for number in range(rng.choice((0, 1, 2, 2, 3, 4, 6))):
        at = _minute(rng, first, horizon)
        targets = everyone if rng.random() < 0.4 else (rng.randrange(len(specs)),)
        kind = rng.choices(("pause", "dispute", "complaint", "opt_out"), (3, 2, 1, 3))[0]
        if kind == "pause":
            script.append(Event(at, "pause", targets, {"reason": "operator review"}))
            script.append(Event(later(at, timedelta(days=rng.choice((1, 3, 8)))), "resume", targets, {}))
        elif kind == "dispute":
            script.append(Event(at, "dispute", targets, {"reason": "not mine"}))
            if rng.random() < 0.7:
                script.append(Event(later(at, timedelta(days=6)), "verification_sent", targets, {"reference": f"V-{number}"}))
            script.append(Event(later(at, timedelta(days=10)), "dispute_resolved", targets, {"upheld": rng.random() < 0.05}))
        elif kind == "complaint":
            complaint = {"complaint_id": f"C-{number}"}
            script.append(Event(at, "complaint", targets, {**complaint, "category": "harassment"}))
            script.append(Event(later(at, timedelta(days=4)), "complaint_resolved", targets,
                                {**complaint, "upheld": rng.random() < 0.5, "reviewer_id": "R-1"}))
        else:
            channel = rng.choices(("sms", "email", "voice", "push", "all"), (2, 2, 3, 1, 1))[0]
            script.append(Event(at, "opt_out", targets, {"channel": channel}))
    return Lifecycle(seed, profile, borrower, specs, script, horizon, rng)


def run(seed: str) -> Walk:
    life = lifecycle(seed)
    rng = life.rng

    def report(sent) -> list[tuple[timedelta, str]]:
        """What the provider says later. A call's outcome comes within the
        hour (a call lasts minutes): inside us's 120 minutes between calls,
        so a conversation is known before the loan may call again (cn has no
        quiet days)."""
        if sent.channel == "voice":
            if rng.random() < 0.1:
                return []
            result = rng.choices(("answered", "no_answer", "busy", "voicemail"), (3, 4, 1, 2))[0]
            return [(timedelta(minutes=rng.randint(0, 60)), result)]
        if sent.channel == "email":
            roll = rng.random()
            if roll < 0.45:
                return [(timedelta(minutes=rng.randint(0, 120)), rng.choice(("delivered", "delivered", "opened")))]
            if roll < 0.6:
                return [(timedelta(hours=rng.randint(1, 72)), "delivered")]
            if roll < 0.75:
                return [(timedelta(minutes=rng.randint(0, 24 * 60)), "bounced")]
            return []  # never reported
        if sent.channel == "sms" and rng.random() < 0.5:
            return [(timedelta(minutes=rng.randint(0, 30)), rng.choice(("delivered", "delivered", "undelivered")))]
        return []

    return walk_borrower(
        life.borrower, profile_named(life.profile), life.specs, life.script, life.horizon, report,
        refuse=lambda channel: rng.random() < 0.02,
    )


# ------------------------------------------------------------ the checks


def _hold_at(changes: list[tuple[datetime, bool]], at: datetime) -> bool:
    """The test's own hold model at `at` (a signal at `at` counts)."""
    index = bisect_right([t for t, _ in changes], at) - 1
    return changes[index][1] if index >= 0 else False


def check(walk: Walk) -> dict[str, list[str]]:
    """Every invariant's violations in one walked lifecycle."""
    found: dict[str, list[str]] = defaultdict(list)
    profile = walk.profile
    window, caps = profile.window, profile.caps
    zones = [ZoneInfo(z) for z in walk.borrower.zones]
    primary = zones[0]
    us_notice = profile.notices.validation_notice_delivery

    for held in walk.activity_window_holds:
        found["window"].append(f"the planner asked for a contact the activity holds by its window: {held}")
    for sent in walk.sent:
        for zone in zones:
            local = sent.at.astimezone(zone)
            if not (window.start <= local.time() < window.end):
                found["window"].append(f"{sent} at {local:%Y-%m-%d %H:%M} in {zone.key}")

    calls_by_loan: dict[int, list] = defaultdict(list)
    for sent in walk.sent:
        if sent.channel == "voice":
            calls_by_loan[sent.loan].append(sent)
    for loan in walk.loans:
        results = {c.step: c.result for c in loan.state.contacts}
        attempts = sorted((c for c in calls_by_loan[loan.index] if results.get(c.step) in ATTEMPT_RESULTS), key=lambda c: c.at)
        if caps.voice_attempts_per_7_days_per_loan:
            cap = caps.voice_attempts_per_7_days_per_loan
            for i, first in enumerate(attempts):
                within = [c for c in attempts[i:] if c.at < first.at + timedelta(days=7)]
                if len(within) > cap:
                    found["calls_7_in_7"].append(f"loan {loan.index}: {len(within)} calls in 7 days from {first.at.isoformat()}")
                    break
        if caps.quiet_days_after_conversation:
            quiet = timedelta(days=caps.quiet_days_after_conversation)
            for call in attempts:
                if results.get(call.step) in CONVERSATION_RESULTS:
                    after = [c for c in attempts if call.at < c.at < call.at + quiet]
                    if after:
                        found["quiet_after_conversation"].append(
                            f"loan {loan.index}: a call at {after[0].at.isoformat()} within {quiet.days} days of a "
                            f"conversation at {call.at.isoformat()}")

    borrower_calls = sorted((s for s in walk.sent if s.channel == "voice"), key=lambda s: s.at)
    if caps.voice_attempts_per_day_per_borrower:
        per_day = Counter(c.at.astimezone(primary).date() for c in borrower_calls)
        for day, count in per_day.items():
            if count > caps.voice_attempts_per_day_per_borrower:
                found["daily_cap_per_borrower"].append(f"{count} calls on {day} ({primary.key}) across the loans")
    if caps.min_minutes_between_calls:
        gap = timedelta(minutes=caps.min_minutes_between_calls)
        for earlier, later in zip(borrower_calls, borrower_calls[1:]):
            if later.at - earlier.at < gap:
                found["call_spacing"].append(f"calls {earlier} and {later} {later.at - earlier.at} apart")

    for loan in walk.loans:
        mine = [s for s in walk.sent if s.loan == loan.index]
        for sent in mine:
            for since, channel in loan.opt_outs:
                if channel in (sent.channel, "all") and sent.at >= since:
                    found["opt_out"].append(f"{sent} after an opt-out of {channel} at {since.isoformat()}")
            if _hold_at(loan.hold_changes, sent.at):
                found["hold"].append(f"{sent} while on hold")
        if us_notice and mine:
            if mine[0].template != notice.VALIDATION_NOTICE:
                found["validation_notice_first"].append(f"loan {loan.index}: first contact {mine[0]}")
            provided = loan.notice_provided_at
            for sent in mine:
                if sent.template != notice.VALIDATION_NOTICE and (provided is None or sent.at < provided):
                    found["validation_notice_first"].append(
                        f"loan {loan.index}: {sent} before the notice was provided ({provided})")
                    break

        # Every step proposed is in contacts or still postponed.
        state = loan.state
        recorded = {c.step for c in state.contacts}
        for key in sorted(loan.proposed - recorded - set(state.deferred)):
            found["accounted_for"].append(f"loan {loan.index}: step {key} proposed, then neither recorded nor postponed")
        found["not_dropped"].extend(_dropped_steps(walk, loan, us_notice))
    return found


def _dropped_steps(walk: Walk, loan, us_notice: bool) -> list[str]:
    """Cadence steps that fell due while the loan could be contacted (on its
    local day, from the step's time on) but that the planner never proposed."""
    found = []
    policy, clock = loan.policy, loan.clock
    end_of_life = min(walk.horizon, loan.ended_at or walk.horizon)
    provided = loan.notice_provided_at
    changes = sorted({t for t, _ in loan.hold_changes} | ({provided} if provided else set()))

    def contactable(at: datetime) -> bool:
        if us_notice and (provided is None or at < provided):
            return False
        return not _hold_at(loan.hold_changes, at)

    for number, (stage, entered, segment_name) in enumerate(loan.entries):
        left = loan.entries[number + 1][1] if number + 1 < len(loan.entries) else end_of_life
        left = min(left, end_of_life)
        segment = policy.segment(segment_name)
        for o in occurrences(policy, clock, stage, clock.days_past_due(entered), segment):
            if o.key in loan.proposed or o.at >= left:
                continue
            day_end = clock.at(o.day + 1)
            start, end = max(o.at, entered), min(day_end, left)
            moments = [start] + [t for t in changes if start < t < end]
            if any(contactable(t) for t in moments):
                found.append(f"loan {loan.index}: {stage} step {o.key} due {o.at.isoformat()} was never proposed")
    return found


# ------------------------------------------------------------ running them


@dataclass
class Results:
    profile: str
    count: int
    lifecycles: int = 0
    loans: int = 0
    contacts: int = 0
    seconds: float = 0.0
    processes: int = 1
    violations: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    exercised: Counter = field(default_factory=Counter)

    @property
    def total_violations(self) -> int:
        return sum(len(v) for v in self.violations.values())

    def add(self, other: Results) -> None:
        self.lifecycles += other.lifecycles
        self.loans += other.loans
        self.contacts += other.contacts
        for name, problems in other.violations.items():
            self.violations.setdefault(name, []).extend(problems)
        self.exercised.update(other.exercised)


def _run_range(profile: str, first: int, last: int) -> Results:
    """Lifecycles first..last-1 of `profile`, checked."""
    outcome = Results(profile, last - first)
    for number in range(first, last):
        seed = f"{BASE_SEED}/{profile}/{number}"
        walk = run(seed)
        outcome.lifecycles += 1
        outcome.loans += len(walk.loans)
        outcome.contacts += len(walk.sent)
        for name, problems in check(walk).items():
            if problems:
                outcome.violations.setdefault(name, []).extend((seed, problem) for problem in problems)
        _count_exercised(outcome.exercised, walk)
    return outcome


def _processes() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


@lru_cache(maxsize=None)
def results(profile: str, count: int) -> Results:
    """`count` lifecycles of `profile`, checked; the full run on every core
    (each lifecycle is seeded on its own, so the split changes nothing)."""
    outcome = Results(profile, count)
    began = timer.perf_counter()
    processes = _processes() if count >= 1000 else 1
    if processes == 1:
        outcome.add(_run_range(profile, 0, count))
    else:
        chunk = -(-count // (processes * 8))
        bounds = [(start, min(start + chunk, count)) for start in range(0, count, chunk)]
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=processes, mp_context=context) as pool:
            for part in pool.map(_run_range, [profile] * len(bounds), *zip(*bounds)):
                outcome.add(part)
    outcome.processes = processes
    outcome.seconds = timer.perf_counter() - began
    SUMMARY[(profile, count)] = outcome
    return outcome


def _count_exercised(exercised: Counter, walk: Walk) -> None:
    """What the lifecycles made the rules do (so the property is not vacuous)."""
    for loan in walk.loans:
        for contact in loan.state.contacts:
            if contact.result.startswith("skipped"):
                exercised[contact.result] += 1
        for event in walk.events:
            if loan.index in event.loans:
                exercised[f"signal {event.kind}"] += 1
        steps = [c.step for c in loan.state.contacts]
        if len(set(steps)) != len(steps):
            exercised["duplicate steps"] += 1
    exercised["multi-zone borrowers"] += len(walk.borrower.zones) > 1
    exercised["borrowers with several loans"] += len(walk.loans) > 1
    exercised["calls"] += sum(1 for s in walk.sent if s.channel == "voice")
    for rule, times in walk.deferrals.items():
        exercised[f"deferred {rule}"] += times


def describe(seed: str) -> str:
    """A lifecycle replayed: its loans, signals, messages and violations."""
    life = lifecycle(seed)
    walk = run(seed)
    lines = [f"seed {seed!r}: profile {life.profile}, zones {life.borrower.zones}, e-mail {life.borrower.has_email}, "
             f"mailing address {life.borrower.has_address}, horizon {life.horizon.isoformat()}"]
    for loan in walk.loans:
        spec = loan.spec
        lines.append(f"loan {loan.index}: policy {spec.policy.name}, due {spec.due}, {spec.amount}, risk {spec.risk_score}, "
                     f"placed {spec.start.isoformat()}, segment {loan.state.segment}, ended {loan.ended_at} {loan.outcome}")
        for contact in loan.state.contacts:
            lines.append(f"    {contact.loan_at.isoformat()} {contact.step} {contact.channel} {contact.template} -> {contact.result} {contact.rule}")
        for key, at in loan.state.deferred.items():
            lines.append(f"    still postponed: {key} to {at.isoformat()} ({loan.state.deferred_rules.get(key)})")
        for rejected in loan.rejected:
            lines.append(f"    signal rejected: {rejected}")
    lines.append("signals:")
    lines.extend(f"    {event.describe()}" for event in walk.events)
    for name, problems in check(walk).items():
        lines.extend(f"VIOLATION {name}: {problem}" for problem in problems)
    return "\n".join(lines)


# ------------------------------------------------------------ the summary

SUMMARY: dict[tuple[str, int], Results] = {}


class _SummaryPlugin:
    """Prints the counts at the end of the run (tests/conftest.py reports the
    other property tests' the same way)."""

    def pytest_terminal_summary(self, terminalreporter):
        for count in sorted({count for _, count in SUMMARY}, reverse=True):
            runs = [SUMMARY[(profile, count)] for profile in PROFILES_RUN if (profile, count) in SUMMARY]
            profiles = ", ".join(r.profile for r in runs)
            contacts = sum(r.contacts for r in runs)
            violations = sum(r.total_violations for r in runs)
            times = ", ".join(f"{r.profile} {r.seconds:.0f} s on {r.processes} process{'es' if r.processes > 1 else ''}" for r in runs)
            terminalreporter.write_line(
                f"contact properties: {count} lifecycles per profile ({profiles}), {contacts} contacts checked, "
                f"{violations} violations ({times}; seed {BASE_SEED!r})"
            )


@pytest.fixture(scope="module", autouse=True)
def _summary(request):
    plugin = _SummaryPlugin()
    name = "contact-properties-summary"
    if not request.config.pluginmanager.has_plugin(name):
        request.config.pluginmanager.register(plugin, name)
    yield


# ------------------------------------------------------------ the tests

SIZES = [pytest.param(FAST, id="fast"), pytest.param(FULL, id="full", marks=pytest.mark.slow)]
PROFILES_RUN = ["us", "cn"]


def _assert_none(profile: str, count: int, *names: str) -> None:
    outcome = results(profile, count)
    problems = [(name, seed, problem) for name in names for seed, problem in outcome.violations.get(name, [])]
    if problems:
        shown = "\n".join(f"  [{name}] seed {seed!r}: {problem}" for name, seed, problem in problems[:15])
        pytest.fail(
            f"{len(problems)} violations of {', '.join(names)} in {outcome.lifecycles} {profile} lifecycles "
            f"(replay one: describe(seed)):\n{shown}",
            pytrace=False,
        )


@pytest.mark.parametrize("count", SIZES)
@pytest.mark.parametrize("profile", PROFILES_RUN)
def test_every_contact_is_inside_the_window_in_every_zone_of_the_borrower(profile, count):
    _assert_none(profile, count, "window")


@pytest.mark.parametrize("count", SIZES)
@pytest.mark.parametrize("profile", PROFILES_RUN)
def test_call_caps_hold(profile, count):
    """us: 7 calls in 7 days per loan, 7 quiet days after a conversation;
    cn: 6 calls a day per borrower across their loans."""
    _assert_none(profile, count, "calls_7_in_7", "quiet_after_conversation", "daily_cap_per_borrower")


@pytest.mark.parametrize("count", SIZES)
@pytest.mark.parametrize("profile", PROFILES_RUN)
def test_calls_to_one_borrower_are_spaced_across_loans(profile, count):
    _assert_none(profile, count, "call_spacing")


@pytest.mark.parametrize("count", SIZES)
def test_us_validation_notice_is_provided_before_any_other_contact(count):
    _assert_none("us", count, "validation_notice_first")


@pytest.mark.parametrize("count", SIZES)
@pytest.mark.parametrize("profile", PROFILES_RUN)
def test_nothing_goes_out_on_a_channel_after_its_opt_out(profile, count):
    _assert_none(profile, count, "opt_out")


@pytest.mark.parametrize("count", SIZES)
@pytest.mark.parametrize("profile", PROFILES_RUN)
def test_nothing_goes_out_during_a_hold(profile, count):
    _assert_none(profile, count, "hold")


@pytest.mark.parametrize("count", SIZES)
@pytest.mark.parametrize("profile", PROFILES_RUN)
def test_every_planned_step_is_accounted_for(profile, count):
    _assert_none(profile, count, "accounted_for")


@pytest.mark.parametrize("count", SIZES)
@pytest.mark.parametrize("profile", PROFILES_RUN)
def test_no_cadence_step_is_silently_dropped(profile, count):
    _assert_none(profile, count, "not_dropped")


@pytest.mark.parametrize("count", SIZES)
@pytest.mark.parametrize("profile", PROFILES_RUN)
def test_the_lifecycles_exercise_the_rules(profile, count):
    """The property is not vacuous: the lifecycles ran, contacted, and made
    each rule act (skips by opt-out and collapsed steps, multi-zone
    borrowers, several loans, each kind of signal)."""
    outcome = results(profile, count)
    assert outcome.lifecycles == count
    seen = outcome.exercised
    wanted = ["skipped_opt_out", "skipped_superseded", "multi-zone borrowers", "borrowers with several loans", "calls",
              "signal pause", "signal resume", "signal dispute", "signal dispute_resolved", "signal opt_out",
              "signal complaint", "signal contact_outcome"]
    wanted += ["deferred window", "deferred call_spacing", "deferred call_spacing (send time)"]
    if profile == "us":
        wanted += ["signal verification_sent", "deferred voice_7_in_7", "deferred quiet_after_conversation"]
    else:
        wanted += ["deferred voice_daily_cap (send time)"]
    missing = [w for w in wanted if not seen[w]]
    assert not missing, f"never exercised: {missing} ({dict(seen)})"
    assert not seen["duplicate steps"]
