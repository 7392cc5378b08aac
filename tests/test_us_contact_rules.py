"""Issue 15's contact defects under the `us` profile (Regulation F), each
reproduced through the planner as the workflow drives it (tests/support/
planner.py `walk`), on the loan's own clock: no wall clock, fixed zones.

Each test names the item it reproduces; each failed on the code before the
fix (the planner used one zone, counted a sent notice as provided, started
the bureau wait at any contact, replayed missed calls, and dropped steps
postponed past their stage)."""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone

from dunning import keys
from dunning.clock import LoanClock
from dunning.compliance import check_contact
from dunning.planner import first_report_due, next_action
from dunning.state import ContactEntry
from dunning.transitions import contacts, holds
from dunning.inputs import DisputeSignal, VerificationSentSignal
from dunning.transitions.records import Moment
from dunning.validation_period import period_end
from loaders.config_files import load_policy, load_profile
from loaders.zones import candidate_zones, phone_zones, primary_zone
from tests.support.planner import DUE, POLICIES, PROFILES, new_state, walk

US = load_profile("us", PROFILES)


def us_state(zone: str = "America/New_York", zones: tuple[str, ...] = ()):
    state = new_state()
    state.currency, state.policy, state.time_zone, state.contact_zones = "USD", "us", zone, list(zones)
    return state


def at(zone: str, day: int, hour: int, minute: int = 0) -> datetime:
    return LoanClock(datetime(2026, 1, 1, tzinfo=timezone.utc), zone, DUE).at(day, time(hour, minute))


# ------------------------------------------------- item 1: every possible zone


def test_a_208_number_may_be_in_boise_or_los_angeles_and_0800_boise_is_0700_there():
    zones = candidate_zones(primary_zone("+12085550100"), "+12085550100")
    assert zones == ("America/Boise", "America/Los_Angeles")
    eight_in_boise = at("America/Boise", 3, 8, 0)
    permit = check_contact(US, "sms", eight_in_boise, [], zones)
    assert not permit.allowed and permit.rule == "window"
    # Allowed from 08:00 in Los Angeles, which is 09:00 in Boise.
    assert permit.not_before == at("America/Boise", 3, 9, 0)
    assert check_contact(US, "sms", at("America/Boise", 3, 9, 0), [], zones).allowed


def test_a_605_number_may_be_mountain_or_central_and_2030_mountain_is_2130_central():
    zones = candidate_zones(primary_zone("+16055550100"), "+16055550100")
    assert set(zones) == {"America/Denver", "America/North_Dakota/Center"}
    permit = check_contact(US, "voice", at("America/Denver", 9, 20, 30), [], zones)
    assert not permit.allowed and permit.rule == "window"
    assert check_contact(US, "voice", at("America/Denver", 9, 19, 30), [], zones).allowed


def test_a_toll_free_number_names_no_place_and_gives_no_zone():
    assert phone_zones("+18005550100") == ()
    assert primary_zone("+18005550100") is None  # the policy's default_time_zone applies (prepare_loan)
    # An address's state still does: Texas spans Central and Mountain.
    assert candidate_zones(None, "+18005550100", "US", "TX") == ("America/Chicago", "America/Denver")


def test_zones_that_share_no_hour_of_the_window_skip_the_step_visibly():
    # Two zones always share some of a 13-hour window; three 8 hours apart do not.
    zones = ("Europe/London", "Asia/Shanghai", "America/Los_Angeles")
    assert check_contact(US, "sms", at("Europe/London", 1, 12), [], zones[:2]).allowed
    state = us_state("Europe/London", zones)
    walk(load_policy("us", POLICIES), state, at("Europe/London", 1, 0, 30), until_day=3)
    assert state.contacts and all(c.result == "skipped_no_common_window" for c in state.contacts)


def test_every_contact_of_a_multi_zone_us_loan_is_inside_the_window_in_all_its_zones():
    zones = ("America/Boise", "America/Los_Angeles")
    state = us_state("America/Boise", zones)
    walk(load_policy("us", POLICIES), state, at("America/Boise", 1, 0, 30), until_day=40)
    sent = [c for c in state.contacts if c.went_out]
    assert len(sent) > 5
    for contact in sent:
        for zone in zones:
            local = contact.loan_at.astimezone(LoanClock(contact.loan_at, zone, DUE).zone).time()
            assert US.window.start <= local < US.window.end, (contact.step, zone, local)


# --------------------------------- items 5 and 11: the notice, delivered, first


def test_the_notice_goes_first_and_alone_and_collection_waits_for_its_delivery():
    state = us_state()
    events, _ = walk(load_policy("us", POLICIES), state, at("America/New_York", 1, 0, 30), until_day=12, email_result="sent")
    sent = [c for c in state.contacts if c.went_out]
    # The e-mail went at 08:00 and was never reported delivered: nothing
    # else for 48 hours, then the letter, then collection.
    assert (sent[0].channel, sent[0].template) == ("email", "validation_notice")
    assert (sent[1].channel, sent[1].template) == ("letter", "validation_notice")
    assert sent[1].loan_at - sent[0].loan_at >= timedelta(hours=48)
    assert all(c.loan_at > sent[1].loan_at for c in sent[2:])
    assert state.validation.channel == "letter" and state.validation.provided_on == sent[1].loan_at.date()


def test_a_bounced_notice_falls_back_to_a_letter_and_no_day_8_call_goes_before_it():
    state = us_state()
    walk(load_policy("us", POLICIES), state, at("America/New_York", 1, 0, 30), until_day=3, email_result="bounced")
    notice = [c for c in state.contacts if c.template == "validation_notice"]
    assert [(c.channel, c.result) for c in notice] == [("email", "bounced"), ("letter", "sent")]
    first_other = next(c for c in state.contacts if c.template != "validation_notice" and c.went_out)
    assert first_other.loan_at >= notice[-1].loan_at


def test_an_sms_never_counts_as_the_notice_under_us():
    state = us_state()
    state.opted_out = ["email"]
    walk(load_policy("us", POLICIES), state, at("America/New_York", 1, 0, 30), until_day=2)
    notice = [c for c in state.contacts if c.template == "validation_notice"]
    assert [c.channel for c in notice] == ["letter"]


def test_with_no_way_to_provide_the_notice_no_collection_contact_goes_out():
    state = us_state()
    state.opted_out = ["email", "letter"]
    walk(load_policy("us", POLICIES), state, at("America/New_York", 1, 0, 30), until_day=20)
    assert not [c for c in state.contacts if c.went_out]


def test_the_validation_period_ends_on_the_date_1006_34_b_5_gives_and_holds_overshadowing_notices():
    state = us_state()
    walk(load_policy("us", POLICIES), state, at("America/New_York", 25, 0, 30), until_day=75)
    provided = state.validation.provided_on
    assert state.validation.period_ends == period_end(provided, US.notices.validation_period_days)
    bureau_notices = [c for c in state.contacts if c.template == "bureau_notice" and c.went_out]
    assert bureau_notices and all(c.loan_at.date() > state.validation.period_ends for c in bureau_notices)


def _moment(state, loan_now):
    clock = LoanClock(loan_now, state.time_zone, state.due_date)
    return Moment("dunning-L-1", "run-1", loan_now, clock)


def test_a_dispute_in_the_validation_period_holds_collection_until_verification_is_sent():
    state = us_state()
    policy = load_policy("us", POLICIES)
    walk(policy, state, at("America/New_York", 1, 0, 30), until_day=3)
    day3 = at("America/New_York", 3, 12)
    holds.open_dispute(state, DisputeSignal(reason="not mine"), _moment(state, day3))
    assert state.validation.verification_required
    # The review rejects the dispute: collection still waits for verification.
    state.disputed = False
    clock = LoanClock(day3, state.time_zone, state.due_date)
    action = next_action(policy, US, state, clock, day3)
    assert action.kind == "hold" and "verification" in action.reason
    holds.verification_sent(state, VerificationSentSignal(reference="VER-1"), _moment(state, day3))
    assert next_action(policy, US, state, clock, day3).kind != "hold"


def test_a_dispute_after_the_validation_period_needs_no_verification():
    state = us_state()
    walk(load_policy("us", POLICIES), state, at("America/New_York", 1, 0, 30), until_day=3)
    after = datetime.combine(state.validation.period_ends + timedelta(days=1), time(12), tzinfo=at("America/New_York", 1, 0).tzinfo)
    holds.open_dispute(state, DisputeSignal(reason="late"), _moment(state, after))
    assert not state.validation.verification_required


# ----------------------------------------- item 6: what starts the bureau wait


def _entry(channel: str, result: str, day: int) -> ContactEntry:
    moment = at("America/New_York", day, 10)
    return ContactEntry(at=moment, loan_at=moment, channel=channel, stage="credit_reporting", template="t", day=day, result=result)


def test_an_unanswered_call_or_a_push_never_starts_the_bureau_wait():
    state = us_state()
    state.stage = "credit_reporting"
    state.contacts = [_entry("voice", "no_answer", 31), _entry("push", "sent", 31), _entry("email", "bounced", 32)]
    assert first_report_due(US, state) is None
    state.contacts.append(_entry("voice", "answered", 33))
    assert first_report_due(US, state) == at("America/New_York", 33, 10) + timedelta(days=14)


def test_a_delivered_message_starts_the_wait_and_a_later_bounce_takes_it_back():
    state = us_state()
    state.stage = "credit_reporting"
    state.contacts = [_entry("email", "delivered", 31)]
    assert first_report_due(US, state) == at("America/New_York", 31, 10) + timedelta(days=14)
    state.contacts[0].result = "bounced"  # a notice of undeliverability within the wait
    assert first_report_due(US, state) is None


# ------------------------------------------------------ item 9: no call bursts


def test_postponed_calls_are_spaced_and_missed_ones_collapsed_after_a_resume(tmp_path):
    from tests.test_compliance_rules import policy_with_calls

    policy = load_policy(policy_with_calls(tmp_path, "us", ["09:00:00", "09:01:00", "09:02:00"]), tmp_path)
    state = us_state()
    walk(policy, state, at("America/New_York", 1, 0, 30), until_day=14)
    calls = sorted(c.loan_at for c in state.contacts if c.channel == "voice" and c.went_out)
    assert calls
    gaps = [b - a for a, b in zip(calls, calls[1:])]
    assert min(gaps) >= timedelta(minutes=US.caps.min_minutes_between_calls)
    assert any(c.result == "skipped_superseded" for c in state.contacts)


def test_call_steps_that_fell_due_during_a_hold_are_not_replayed_in_a_burst(tmp_path):
    from tests.test_compliance_rules import policy_with_calls

    policy = load_policy(policy_with_calls(tmp_path, "us", ["09:00:00", "09:01:00", "09:02:00"]), tmp_path)
    state = us_state()
    walk(policy, state, at("America/New_York", 7, 0, 30), until_day=8)
    assert state.validation.provided_on is not None
    state.paused = True  # days 8 and 9; resumed on day 10 at noon
    resumed = at("America/New_York", 10, 12)
    state.paused = False
    clock = LoanClock(at("America/New_York", 7, 0, 30), state.time_zone, state.due_date)  # the loan's own clock
    kinds = []
    for _ in range(20):
        action = next_action(policy, US, state, clock, resumed)
        kinds.append(action.kind)
        if action.kind == "enter_stage":
            from dunning.transitions import stages

            stages.enter_stage(state, action.stage, policy, clock, resumed, _moment(state, resumed)).then()
        elif action.kind == "skip":
            contacts.contact_skipped(state, action.occurrence, action.skip_result, action.reason, _moment(state, resumed), resumed)
        elif action.kind == "contact":
            contacts.contact_recorded(state, action.occurrence, "no_answer", _moment(state, resumed), resumed)
        else:
            break
    # Day 10's three calls (09:00-09:02) all fell due during the hold: one
    # goes, the others are superseded; days 8 and 9 are not replayed, and
    # each of their calls shows as missed.
    assert kinds.count("contact") == 1
    assert sum(1 for c in state.contacts if c.result == "skipped_superseded") == 2
    earlier = [c for c in state.contacts if c.channel == "voice" and c.day in (8, 9)]
    assert len(earlier) == 6 and {c.result for c in earlier} == {"skipped_missed"}


# -------------------------------------------- item 10: refused calls are shown


def test_a_call_postponed_past_its_stage_shows_as_skipped_with_the_rule(tmp_path):
    from tests.test_compliance_rules import policy_with_calls

    policy = load_policy(policy_with_calls(tmp_path, "us", ["10:00:00", "16:00:00"]), tmp_path)
    state = us_state()
    # Every call is answered: no call within 7 days after a conversation
    # (1006.14(b)(2)(ii)), so calls wait past the call stage's end (day 16).
    walk(policy, state, at("America/New_York", 7, 0, 30), until_day=20, call_result="answered")
    left = [c for c in state.contacts if c.result == "skipped_stage_ended"]
    assert left and all(c.rule for c in left)
    planned = {c.step for c in state.contacts} | set(state.deferred)
    # Every call step of the call stage that came due is accounted for.
    for day in range(8, 16):
        for index in range(2):
            assert keys.stage_step("call", day, index, "voice") in planned, (day, index)
