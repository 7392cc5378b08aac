"""The pure core: policies load or fail naming the key, and the planner walks a
loan through its stages on the days the policy names."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from dunning import versions
from dunning.clock import LoanClock
from loaders.config_files import load_profile
from dunning.planner import next_action
from dunning.policy import PolicyError
from dunning.state import ContactEntry
from loaders.config_files import load_policy
from tests.support.planner import DUE, POLICIES, PROFILES, new_state, walk


def default_policy():
    return load_policy("default", POLICIES)


def local(day: int, hour: int, minute: int = 0) -> datetime:
    return LoanClock(datetime.now(timezone.utc), "Asia/Shanghai", DUE).at(day, datetime.min.time()).replace(
        hour=hour, minute=minute
    )


def test_default_policy_walks_all_five_stages_on_its_days_and_writes_off_on_day_180():
    events, last = walk(default_policy(), new_state(), local(1, 0, 30))
    stages = [(e[1], e[2]) for e in events if e[0] == "stage"]
    assert stages == [("reminder", 1), ("call", 8), ("negotiation", 16), ("credit_reporting", 31), ("legal", 91)]
    assert ("bureau", 31) in events  # cn: reported as credit_reporting starts
    assert events[-1] == ("write_off", 180)
    first_day = [e for e in events if e[0] == "contact" and e[3] == 1]
    assert [(e[1], e[2], e[4]) for e in first_day] == [
        ("sms", "reminder_friendly", "09:00"),
        ("push", "reminder_friendly", "09:00"),
        ("email", "reminder_friendly", "09:00"),
    ]
    calls = [e[3] for e in events if e[0] == "contact" and e[1] == "voice"]
    assert calls == [8, 11, 14, 21]  # every third day of the call stage, then once in negotiation
    days = [e[3] for e in events if e[0] == "contact"]
    assert days == sorted(days), "contacts go out in day order"


def test_a_loan_placed_on_day_40_starts_in_credit_reporting_without_replaying_missed_reminders():
    events, _ = walk(default_policy(), new_state(), local(40, 15), until_day=60)
    assert events[0] == ("stage", "credit_reporting", 40)
    contacts = [e for e in events if e[0] == "contact"]
    # The day-31 notices were never due while the loan was ours: the borrower
    # is told once, by SMS, before the first record (《征信业管理条例》第十五条);
    # the fortnightly reminder runs on its own days (45, 59).
    assert [(c[1], c[2], c[3]) for c in contacts] == [
        ("sms", "bureau_notice", 40), ("sms", "reminder_followup", 45), ("sms", "reminder_followup", 59)]
    assert ("bureau", 40) in events
    assert events.index(("bureau", 40)) > events.index(contacts[0])


def test_a_contact_due_earlier_today_is_still_sent_but_yesterdays_is_not():
    events, _ = walk(default_policy(), new_state(), local(4, 12), until_day=6)
    contacts = [(e[1], e[2], e[3]) for e in events if e[0] == "contact"]
    assert contacts == [("sms", "reminder_followup", 4)]


def test_small_balances_skip_voice_calls():
    events, _ = walk(default_policy(), new_state(amount="250.00"), local(8, 1), until_day=12)
    assert ("skip", "voice", "call_script", 8, "10:00") in events
    assert not [e for e in events if e[0] == "contact" and e[1] == "voice"]


def test_an_opted_out_channel_is_skipped_and_others_still_go_out():
    events, _ = walk(default_policy(), new_state(opted_out=["sms"]), local(1, 0, 30), until_day=2)
    assert [(e[0], e[1]) for e in events if e[0] in ("contact", "skip")] == [
        ("skip", "sms"), ("contact", "push"), ("contact", "email"),
    ]


@pytest.mark.parametrize("flags", [{"paused": True}, {"disputed": True}])
def test_nothing_happens_on_hold(flags):
    policy, state = default_policy(), new_state(**flags)
    clock = LoanClock(local(100, 9), "Asia/Shanghai", DUE)
    action = next_action(policy, load_profile("cn", PROFILES), state, clock, local(100, 9))
    assert action.kind == "hold" and action.at == local(101, 0)  # wakes only to count the day


def test_before_day_one_the_loan_waits_for_the_reminder_stage():
    policy = default_policy()
    clock = LoanClock(local(0, 15), "Asia/Shanghai", DUE)
    action = next_action(policy, load_profile("cn", PROFILES), new_state(), clock, local(0, 15))
    assert action.kind == "wait" and action.at == local(1, 0)


def test_a_run_from_before_deep_stages_plans_as_it_did_then():
    """Its history replays with the workflow's DEEP_STAGES patch unset: the
    first bureau report waited for a hold to end, and no segment moved a
    stage's days (dunning/versions.py)."""
    policy, profile = default_policy(), load_profile("cn", PROFILES)
    clock = LoanClock(local(40, 9), "Asia/Shanghai", DUE)
    on_hold = new_state(stage="credit_reporting", paused=True)
    told = local(31, 9)  # the borrower was told before the first record (《征信业管理条例》第十五条)
    on_hold.contacts.append(ContactEntry(at=told, loan_at=told, channel="sms", stage="credit_reporting",
                                         template="bureau_notice", day=31, result="sent"))
    assert versions.CURRENT.next_action(policy, profile, on_hold, clock, local(40, 9)).kind == "report_to_bureau"
    assert versions.BEFORE_DEEP_STAGES.next_action(policy, profile, on_hold, clock, local(40, 9)).kind == "hold"
    risky = new_state(stage="reminder", risk_score=800)  # high_risk: calls from day 4
    assert versions.CURRENT.next_action(policy, profile, risky, clock, local(5, 9)).stage == "call"
    waiting = versions.BEFORE_DEEP_STAGES.next_action(policy, profile, risky, clock, local(5, 9))
    assert waiting.kind == "wait" and waiting.at <= local(8, 0) and waiting.stage is None


def test_days_past_due_follow_the_borrowers_time_zone():
    # 2026-11-02 20:00 UTC is already the 3rd in Shanghai (day 2) but the 2nd in New York (day 1).
    instant = datetime(2026, 11, 2, 20, 0, tzinfo=timezone.utc)
    assert LoanClock(instant, "Asia/Shanghai", DUE).days_past_due(instant) == 2
    assert LoanClock(instant, "America/New_York", DUE).days_past_due(instant) == 1


def test_the_demo_clock_runs_a_day_in_four_seconds_and_never_wakes_early():
    demo = load_policy("demo", POLICIES)
    start = datetime(2026, 11, 23, 7, 30, 1, 123456, tzinfo=timezone.utc)
    clock = LoanClock(start, "Asia/Shanghai", DUE, demo.day_seconds)
    day_8 = clock.at(8)
    wake = clock.real_time(day_8)
    assert clock.loan_time(wake) >= day_8 > clock.loan_time(wake - timedelta(microseconds=1))
    assert clock.loan_time(start + timedelta(seconds=4)) - clock.loan_time(start) == timedelta(days=1)
    events, _ = walk(demo, new_state(), start)
    assert events[-1][0] == "write_off"


def write(tmp_path: Path, name: str, text: str) -> Path:
    (tmp_path / f"{name}.toml").write_text(text)
    return tmp_path


def test_a_policy_with_a_misspelled_key_is_rejected_naming_it(tmp_path):
    text = (POLICIES / "default.toml").read_text().replace("start_day = 8", "strat_day = 8")
    with pytest.raises(PolicyError, match=r"stages\.call\.strat_day: Extra inputs are not permitted"):
        load_policy("default", write(tmp_path, "default", text))


def test_a_policy_whose_stages_go_backwards_is_rejected_naming_them(tmp_path):
    text = (POLICIES / "default.toml").read_text().replace("start_day = 16", "start_day = 5")
    with pytest.raises(PolicyError, match=r"stages\.negotiation\.start_day \(5\) must be after stages\.call\.start_day \(8\)"):
        load_policy("default", write(tmp_path, "default", text))


def test_a_policy_with_an_unknown_channel_is_rejected_naming_the_step(tmp_path):
    text = (POLICIES / "default.toml").read_text().replace('channel = "push",  template = "reminder_friendly"', 'channel = "fax", template = "reminder_friendly"')
    with pytest.raises(PolicyError, match=r"stages\.reminder\.steps\.1\.channel"):
        load_policy("default", write(tmp_path, "default", text))


def test_a_policy_is_read_again_when_its_file_or_its_base_changes_and_not_otherwise(tmp_path):
    base = (POLICIES / "default.toml").read_text()
    write(tmp_path, "default", base)
    write(tmp_path, "child", 'extends = "default"\nname = "child"\n')
    first = load_policy("child", tmp_path)
    assert load_policy("child", tmp_path) is first  # the same files: the same parsed policy
    # The base edited at once, to the same length (a modification time may not move):
    write(tmp_path, "default", base.replace("start_day = 16", "start_day = 17"))
    edited = load_policy("child", tmp_path)
    assert edited is not first and edited.stages.negotiation.start_day == 17
    # A broken edit is an error every time, not a policy kept from before.
    write(tmp_path, "child", 'extends = "default"\nname = "child"\nstrat = 1\n')
    for _ in range(2):
        with pytest.raises(PolicyError, match="strat"):
            load_policy("child", tmp_path)


def test_an_unknown_policy_names_the_known_ones():
    known = ", ".join(sorted(p.stem for p in POLICIES.glob("*.toml")))
    assert "default, demo" in known
    with pytest.raises(PolicyError, match=rf"no policy named 'gentle'.*\(known: {known}\)$"):
        load_policy("gentle", POLICIES)


def test_a_loan_placed_early_in_a_pre_due_segment_enters_pre_due_and_one_outside_waits_for_day_one():
    policy, profile = default_policy(), load_profile("cn", PROFILES)
    clock = LoanClock(local(-4, 15), "Asia/Shanghai", DUE)
    risky = new_state().model_copy(update={"pre_due": True, "segment": "high_risk"})
    safe = new_state().model_copy(update={"pre_due": True, "segment": "standard"})
    from_before_it = new_state().model_copy(update={"segment": "high_risk"})  # a run from before pre_due

    entering = next_action(policy, profile, risky, clock, local(-4, 15))
    assert (entering.kind, entering.stage) == ("enter_stage", "pre_due")
    for waiting in (safe, from_before_it):
        action = next_action(policy, profile, waiting, clock, local(-4, 15))
        assert action.kind == "wait" and action.at == local(1, 0)


def test_in_pre_due_the_next_reminder_is_the_one_three_days_before_the_due_date():
    policy, profile = default_policy(), load_profile("cn", PROFILES)
    clock = LoanClock(local(-4, 15), "Asia/Shanghai", DUE)
    state = new_state().model_copy(update={"pre_due": True, "segment": "high_risk", "stage": "pre_due"})
    waiting = next_action(policy, profile, state, clock, local(-4, 15))
    assert waiting.kind == "wait" and waiting.at == local(-3, 9)
    due = next_action(policy, profile, state, clock, local(-3, 9))
    assert (due.kind, due.occurrence.channel, due.occurrence.template, due.occurrence.day) == ("contact", "sms", "due_soon", -3)


def test_a_pre_due_step_after_the_due_date_is_rejected_naming_it(tmp_path):
    text = (POLICIES / "default.toml").read_text().replace("{ day = -1, channel = \"push\"", "{ day = 2, channel = \"push\"")
    with pytest.raises(PolicyError, match=r"stages\.pre_due\.steps\.1\.day: Input should be less than or equal to 0"):
        load_policy("default", write(tmp_path, "default", text))


def test_a_pre_due_stage_naming_an_unknown_segment_is_rejected(tmp_path):
    text = (POLICIES / "default.toml").read_text().replace('segments = ["high_risk", "high_balance"]', 'segments = ["gold"]')
    with pytest.raises(PolicyError, match=r"stages\.pre_due\.segments: 'gold' is not one of the policy's segments"):
        load_policy("default", write(tmp_path, "default", text))
