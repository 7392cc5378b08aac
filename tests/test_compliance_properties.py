"""Properties of whole loans run through the real workflow on the time-skipping
server: random policies, time zones, languages, signal sequences.

For every lifecycle: no contact outside the profile's window, no call cap
exceeded, nothing on a channel after its opt-out, nothing while a dispute, a
complaint or a pause is open, nothing to anyone but the borrower, and every
message carries its required parts. The number of lifecycles checked is printed.
"""

from __future__ import annotations

import tomllib
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from db.models import Borrower, Contact
from loaders.config_files import load_profile
from loaders.config_files import load_policy
from tests.support.temporal import days_ago, loan_input, running_worker, time_env  # noqa: F401 (fixture)

CONFIG = Path(__file__).resolve().parent.parent / "config"
RULES = tomllib.loads((CONFIG / "compliance" / "template_rules.toml").read_text(encoding="utf-8"))
LIFECYCLES = 40
checked = Counter()

ZONES = ["Asia/Shanghai", "Asia/Taipei", "America/New_York", "America/Los_Angeles", "Europe/London"]
PHONES = {"Asia/Shanghai": "+8613800138000", "Asia/Taipei": "+886912345678", "America/New_York": "+12125550123",
          "America/Los_Angeles": "+14155550123", "Europe/London": "+447700900123"}


@dataclass(frozen=True)
class Event:
    after_hours: int
    kind: str  # opt_out:<channel> | dispute | complaint | pause | payment
    hold_hours: int = 0


events = st.lists(
    st.builds(
        Event,
        after_hours=st.integers(1, 10 * 24),
        kind=st.sampled_from(["opt_out:sms", "opt_out:email", "opt_out:voice", "opt_out:all", "dispute", "complaint", "pause", "payment"]),
        hold_hours=st.integers(1, 8 * 24),
    ),
    max_size=4,
)


@pytest.fixture(scope="module", autouse=True)
def every_generated_lifecycle_is_run(request):
    """Once the module's tests are over, in whatever order they ran: if the
    property ran, it ran every lifecycle it generated (conftest prints the
    count), so a hypothesis setting can't quietly shrink the check."""
    yield
    if any(item.originalname == "test_every_contact_of_random_lifecycles_keeps_the_rules" for item in request.session.items):
        assert checked["lifecycles"] >= LIFECYCLES, f"only {checked['lifecycles']} of {LIFECYCLES} lifecycles ran"


@pytest.mark.asyncio
@settings(max_examples=LIFECYCLES, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(
    policy_name=st.sampled_from(["default", "us"]),
    zone=st.sampled_from(ZONES),
    language=st.sampled_from(["zh_CN", "zh_TW", "en"]),
    start_day=st.integers(0, 60),
    amount=st.sampled_from(["250.00", "1200.00", "9800.00"]),
    has_email=st.booleans(),
    script=events,
)
async def test_every_contact_of_random_lifecycles_keeps_the_rules(
    time_env, settings, session_factory, policy_name, zone, language, start_day, amount, has_email, script  # noqa: F811
):
    checked["lifecycles"] += 1
    n = checked["lifecycles"]
    borrower = Borrower(
        borrower_id=f"B-P{n}", name="Property Borrower", phone=PHONES[zone],
        email=f"p{n}@example.com" if has_email else None, language=language, time_zone=zone,
    )
    with session_factory.begin() as db:
        db.add(borrower)
    policy = load_policy(policy_name, CONFIG / "policies")
    profile = load_profile(policy.profile, CONFIG / "profiles")
    holds: list[tuple[datetime, datetime]] = []
    opt_outs: list[tuple[str, datetime]] = []

    async with running_worker(time_env.client, settings) as loans:
        now = await time_env.get_current_time()
        handle = await loans.start(
            loan_input(f"L-P{n}", days_ago(start_day, zone, now=now), amount=amount, policy=policy_name,
                       borrower_id=borrower.borrower_id, currency="CNY")
        )
        paid = 0
        for number, event in enumerate(script):
            await time_env.sleep(timedelta(hours=event.after_hours))
            at = await time_env.get_current_time()
            if event.kind.startswith("opt_out:"):
                channel = event.kind.split(":")[1]
                await handle.signal("opt_out", {"channel": channel})
                opt_outs.append((channel, at))
            elif event.kind == "payment":
                paid += 1
                await handle.signal("repayment", {"payment_id": f"P-{number}", "amount": "10.00", "currency": "CNY"})
            else:
                opening, closing = {
                    "dispute": (("dispute", {"reason": "code-7"}), ("dispute_resolved", {"upheld": False})),
                    "complaint": (("complaint", {"complaint_id": f"C-{number}", "category": "harassment"}),
                                  ("complaint_resolved", {"complaint_id": f"C-{number}", "upheld": False, "reviewer_id": "R-1"})),
                    "pause": (("pause", {"reason": "review"}), ("resume", {})),
                }[event.kind]
                await handle.signal(*opening)
                await time_env.sleep(timedelta(hours=event.hold_hours))
                end = await time_env.get_current_time()
                await handle.signal(*closing)
                holds.append((at, end))
        await time_env.sleep(timedelta(days=25))
        status = await handle.query("status")

    tolerance = timedelta(seconds=1)  # a signal is sent a moment after its time is read
    sent = [c for c in status["contacts"] if c["result"] == "sent"]
    checked["contacts"] += len(sent)
    local_zone = ZoneInfo(zone)
    for contact in sent:
        at = datetime.fromisoformat(contact["at"])
        local = at.astimezone(local_zone).time()
        assert profile.window.start <= local < profile.window.end, f"{contact} outside the window"
        for start, end in holds:
            assert not (start + tolerance < at < end), f"{contact} during a hold {start}..{end}"
        for channel, since in opt_outs:
            assert not (channel in (contact["channel"], "all") and at > since + tolerance), f"{contact} after opt-out of {channel}"
    calls = sorted(datetime.fromisoformat(c["at"]) for c in sent if c["channel"] == "voice")
    if profile.caps.voice_attempts_per_day_per_borrower:
        per_day = Counter(c.astimezone(local_zone).date() for c in calls)
        assert max(per_day.values(), default=0) <= profile.caps.voice_attempts_per_day_per_borrower
    if profile.caps.voice_attempts_per_7_days_per_loan:
        for i, first in enumerate(calls):
            assert len([c for c in calls[i:] if c < first + timedelta(days=7)]) <= profile.caps.voice_attempts_per_7_days_per_loan
    if profile.notices.validation_notice_within_days is not None and sent:
        assert sent[0]["template"] == "validation_notice"

    with session_factory() as db:
        rows = db.scalars(select(Contact).where(Contact.loan_id == f"L-P{n}", Contact.status == "sent")).all()
    assert len(rows) == len(sent)
    addresses = {"sms": borrower.phone, "voice": borrower.phone, "email": borrower.email, "push": borrower.borrower_id}
    for row in rows:
        assert row.recipient == addresses[row.channel], "only the borrower is ever contacted"
        if row.channel in ("sms", "email"):
            assert "http://localhost:8000/pay/" in row.body_text
        if row.channel == "sms":
            assert RULES["parts"]["opt_out"][language] in row.body_text
        if row.channel == "email":
            assert RULES["parts"]["unsubscribe"][language].lower() in row.body_text.lower()
        if row.channel == "voice":
            assert "http" not in row.body_text


