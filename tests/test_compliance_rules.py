"""The contact permit check, through the planner: windows, call caps, the US
validation notice and the wait before the first bureau report."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, time, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dunning.clock import LoanClock
from dunning.compliance import ProfileError
from loaders.config_files import load_profile
from loaders.config_files import load_policy
from tests.support.planner import DUE, POLICIES, PROFILES, new_state, walk


def policy_with_calls(tmp_path: Path, profile: str, times: list[str]) -> str:
    """A policy whose call stage phones at each of `times`, every day."""
    steps = ", ".join(
        f'{{ day = 0, channel = "voice", template = "call_script", every_days = 1, at = "{t}" }}' for t in times
    )
    (tmp_path / "calls.toml").write_text(
        f'extends = "default"\nname = "calls"\nprofile = "{profile}"\n[stages.call]\nstart_day = 8\nsteps = [{steps}]\n'
    )
    for name in ("default",):
        (tmp_path / f"{name}.toml").write_text((POLICIES / f"{name}.toml").read_text())
    return "calls"


def start_at(zone: str, day: int, hour: int, minute: int = 0) -> datetime:
    return LoanClock(datetime.now(timezone.utc), zone, DUE).at(day, time(hour, minute))


def test_a_loan_placed_at_23_00_gets_its_first_reminders_at_08_00_next_morning():
    policy = load_policy("default", POLICIES)
    events, _ = walk(policy, new_state(), start_at("Asia/Shanghai", 1, 23), until_day=3)
    assert events[1] == ("defer", "sms", "window", "03 08:00")
    sent = [e for e in events if e[0] == "contact"]
    assert [(e[1], e[3], e[4]) for e in sent] == [("sms", 1, "08:00"), ("push", 1, "08:00"), ("email", 1, "08:00")]


def test_cn_caps_calls_at_six_a_day_and_moves_the_rest_to_the_next_morning(tmp_path):
    eight_calls = [f"{h:02d}:00:00" for h in range(9, 17)]
    policy = load_policy(policy_with_calls(tmp_path, "cn", eight_calls), tmp_path)
    state = new_state()
    events, _ = walk(policy, state, start_at("Asia/Shanghai", 8, 0, 30), until_day=12)
    # Attempts only: under cn, calls missed the day before are collapsed
    # into one (the others recorded as skipped_superseded), never replayed.
    calls_per_day = Counter(c.loan_at.date() for c in state.contacts if c.channel == "voice" and c.went_out)
    assert calls_per_day and max(calls_per_day.values()) == 6
    assert ("defer", "voice", "voice_daily_cap", "10 08:00") in events


def test_us_allows_seven_calls_in_seven_days(tmp_path):
    policy = load_policy(policy_with_calls(tmp_path, "us", ["10:00:00", "16:00:00"]), tmp_path)
    state = new_state()
    state.time_zone = "America/New_York"
    walk(policy, state, start_at("America/New_York", 8, 0, 30), until_day=16)
    calls = sorted(c.loan_at for c in state.contacts if c.channel == "voice" and c.went_out)
    assert len(calls) >= 7
    for i, first in enumerate(calls):
        assert len([c for c in calls[i:] if c < first + timedelta(days=7)]) <= 7


def test_us_makes_no_call_within_seven_days_of_a_conversation(tmp_path):
    policy = load_policy(policy_with_calls(tmp_path, "us", ["10:00:00"]), tmp_path)
    state = new_state()
    state.time_zone = "America/New_York"
    events, _ = walk(policy, state, start_at("America/New_York", 8, 0, 30), until_day=16, call_result="answered")
    calls = [c.loan_at for c in state.contacts if c.channel == "voice" and c.went_out]
    assert len(calls) == 2 and calls[1] - calls[0] >= timedelta(days=7)
    assert any(e[0] == "defer" and e[2] == "quiet_after_conversation" for e in events)


def test_us_first_contact_is_the_validation_notice_and_the_bureau_waits_14_days_after_it():
    policy = load_policy("us", POLICIES)
    state = new_state()
    state.time_zone = "America/New_York"
    events, _ = walk(policy, state, start_at("America/New_York", 40, 10), until_day=60)
    contacts = [e for e in events if e[0] == "contact"]
    assert contacts[0][1:3] == ("email", "validation_notice")
    assert ("bureau", 54) in events and ("bureau", 40) not in events


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    zone=st.sampled_from(["Asia/Shanghai", "America/New_York", "America/Los_Angeles", "Asia/Taipei", "Europe/London"]),
    profile_name=st.sampled_from(["cn", "us"]),
    start_day=st.integers(min_value=0, max_value=100),
    start_minute=st.integers(min_value=0, max_value=24 * 60 - 1),
    amount=st.sampled_from(["100.00", "1200.00", "50000.00"]),
    opted_out=st.lists(st.sampled_from(["sms", "email", "voice", "push"]), max_size=2, unique=True),
)
def test_no_planned_contact_falls_outside_the_window_or_after_an_opt_out(zone, profile_name, start_day, start_minute, amount, opted_out):
    policy = load_policy("us" if profile_name == "us" else "default", POLICIES)
    profile = load_profile(profile_name, PROFILES)
    state = new_state(amount=amount, opted_out=opted_out)
    state.time_zone = zone
    start = start_at(zone, start_day, start_minute // 60, start_minute % 60)
    walk(policy, state, start)
    for contact in state.contacts:
        if contact.result != "sent":
            continue
        local = contact.loan_at.astimezone(LoanClock(start, zone, DUE).zone).time()
        assert profile.window.start <= local < profile.window.end
        assert contact.channel not in opted_out


def test_a_profile_with_a_bad_key_is_rejected_naming_it(tmp_path):
    (tmp_path / "cn.toml").write_text((PROFILES / "cn.toml").read_text().replace('end = "22:00:00"', 'end = "07:00:00"'))
    with pytest.raises(ProfileError, match=r"window.end \(07:00:00\) must be after window.start"):
        load_profile("cn", tmp_path)


def test_cn_reports_to_the_bureau_only_after_the_borrower_was_told():
    """Issue 16, item 4: 《征信业管理条例》第十五条. On day 31 the record used to be
    written at 00:00 and the bureau_notice message went at 09:00."""
    policy = load_policy("default", POLICIES)
    state = new_state()
    walk(policy, state, start_at("Asia/Shanghai", 30, 12), until_day=33)
    told = min(c.loan_at for c in state.contacts if c.template == "bureau_notice" and c.went_out)
    assert state.bureau_reported and state.bureau.first_reported_on >= told.date()
    events, _ = walk(policy, new_state(opted_out=["all"]), start_at("Asia/Shanghai", 30, 12), until_day=40)
    assert not [e for e in events if e[0] == "bureau"], "never told: never reported"


def test_cn_first_record_waits_for_the_notice_in_time_not_only_in_day():
    from dunning.planner import first_report_due

    profile = load_profile("cn", PROFILES)
    state = new_state()
    state.stage = "credit_reporting"
    assert first_report_due(profile, state) is None
