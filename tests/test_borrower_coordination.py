"""Issue 17, item 1: one voice per borrower, across all their open loans.

Coordination lives in the database under the borrower's lock, in the send
activity (db/borrower_messages.py says why). Through the contract:

- (a) two loans of one borrower due on the same day get one merged SMS (and
  one push, one e-mail), and both loans' `status.contacts` name the same
  `message_key` (time-skipping server, real activities, local capture);
- (b) a per-borrower daily cap holds across 3 loans over 30 simulated days:
  the captured messages per borrower-local day per channel never exceed it;
- (c) a retry of any participant sends nothing more and answers the same;
- (d) a group of one part sends the ordinary message under its own key.

And around them: a borrower with one open loan never waits, a merged message
counts once against the cap, a merged message over the cap defers every
part (rule `borrower_daily_cap`, to the next local midnight) and they gather
again then, the policy and profile settings and what the workflow puts in
the request. The clocks are fixed: the activities' is a fixed instant, the
workflows' borrowers live in a zone where the server's clock reads a chosen
hour; no test reads the wall clock's hour.
"""

from __future__ import annotations

import json
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy import select
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities import merging
from activities.dunning_activities import DunningActivities
from activities.pay_link import pay_token, token_hash
from activities.payloads import ContactRequest
from activities.rendering import TemplateRenderer
from channels.base import OutboundMessage
from channels.local import LocalCaptureChannel
from channels.unsubscribe import unsubscribe_url
from db import borrower_messages
from db.borrower_messages import FIRST_LINE_ORDER
from db.borrower_messages import PartFacts as BorrowerMessagePartFacts
from db.directory import upsert_placements
from db.models import AuditEntry, Borrower, BorrowerMessagePart, Contact, Loan, PayToken
from db.session import make_engine, make_session_factory
from dunning import contract
from dunning.compliance import Caps, Profile
from dunning.planner import Occurrence
from dunning.policy import BorrowerContacts, Policy
from dunning.transitions.contacts import borrower_terms
from loaders.config_files import load_policy, load_profile
from runtime.worker_build import activity_settings
from gateway.app import create_app
from services.placement import validate_placements
from tests.conftest import BORROWER, TEST_PAY_LINK_SECRET
from tests.support.gateway import RecordedSignals, gateway_settings
from tests.support.planner import new_state
from tests.support.temporal import PLACELESS_PHONE, overdue_since, running_worker, time_env, zone_where_it_is  # noqa: F401

# The outbox and the groups are about the database: both of them; the
# time-skipping tests (fixed loan ids on the session's one server) stay on SQLite.
pytestmark = pytest.mark.both_databases

ROOT = Path(__file__).resolve().parent.parent
SHANGHAI = ZoneInfo("Asia/Shanghai")
# 09:00 on 2026-11-02 in Shanghai: the activities' fixed clock.
NOW = datetime(2026, 11, 2, 1, 0, tzinfo=timezone.utc)
NEXT_MIDNIGHT = datetime(2026, 11, 3, tzinfo=SHANGHAI)
GATHER = 0.4


class CountingChannel:
    """Local capture that counts what it was handed."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._inner = LocalCaptureChannel(name)
        self.sent: list[OutboundMessage] = []
        self.idempotent_by_key = True
        self._lock = threading.Lock()

    def send(self, message: OutboundMessage):
        with self._lock:
            self.sent.append(message)
        return self._inner.send(message)


@pytest.fixture
def channels():
    return {name: CountingChannel(name) for name in ("sms", "email", "voice", "push")}


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture
def clock():
    return Clock(NOW)


@pytest.fixture
def acts(session_factory, channels, settings, clock):
    return DunningActivities(
        session_factory, channels, TemplateRenderer(settings.templates_dir), activity_settings(settings), clock=clock,
    )


def place(session_factory, borrower_id: str, *loans: tuple[str, str, str]) -> None:
    """The borrower and their open loans ((loan id, amount, currency)) in the directory."""
    with session_factory.begin() as db:
        db.add(Borrower(**{**BORROWER, "borrower_id": borrower_id}))
        for loan_id, amount, currency in loans:
            db.add(Loan(loan_id=loan_id, borrower_id=borrower_id, amount_due=Decimal(amount), currency=currency,
                        due_date=date(2026, 11, 1), policy="default", workflow_id=f"dunning-{loan_id}", stage="reminder"))


def step(loan_id: str, borrower_id: str, name: str = "reminder/d1/0-sms", *, channel: str = "sms",
         outstanding: str = "1200.00", currency: str = "CNY", merge: bool = True, cap: int | None = None,
         template: str = "reminder_friendly") -> ContactRequest:
    return ContactRequest(
        key=f"dunning-{loan_id}/run-1/{name}", workflow_id=f"dunning-{loan_id}", loan_id=loan_id,
        borrower_id=borrower_id, stage="reminder", channel=channel, template=template, days_past_due=1,
        outstanding=outstanding, currency=currency, due_date="2026-11-01", time_zone="Asia/Shanghai",
        merge=merge, gather_seconds=GATHER if merge else 0.0, borrower_daily_cap=cap,
    )


def send(acts, request: ContactRequest):
    return ActivityEnvironment().run(acts.send_contact, request)


def send_together(acts, *requests: ContactRequest) -> list:
    """The requests' activities started at the same instant, from as many threads."""
    barrier = threading.Barrier(len(requests))

    def one(request: ContactRequest):
        barrier.wait()
        return send(acts, request)

    with ThreadPoolExecutor(max_workers=len(requests)) as pool:
        return list(pool.map(one, requests))


def rows(session_factory, borrower_id: str, channel: str = "sms") -> list[Contact]:
    with session_factory() as db:
        return list(db.scalars(select(Contact).where(Contact.borrower_id == borrower_id, Contact.channel == channel)
                               .order_by(Contact.id)))


# ------------------------------------------------------- merged, once, by key


def test_two_loans_due_together_get_one_message_naming_each_loan_and_the_total(acts, channels, session_factory):
    place(session_factory, "B-M1", ("L-M1-A", "1200.00", "CNY"), ("L-M1-B", "300.50", "CNY"))
    a, b = step("L-M1-A", "B-M1"), step("L-M1-B", "B-M1", outstanding="300.50")

    first, second = send_together(acts, a, b)

    assert (first.result, second.result) == ("sent", "sent")
    assert first.message_key == second.message_key
    assert first.message_key not in (a.key, b.key) and first.message_key.startswith("borrower-B-M1/sms-2026-11-02-")
    assert (first.key, second.key) == (a.key, b.key)  # each part's outcome is its own step's
    assert len(channels["sms"].sent) == 1
    [row] = rows(session_factory, "B-M1")
    assert (row.key, row.template, row.status, row.loan_id) == (first.message_key, "borrower_summary", "sent", "L-M1-A")
    text = channels["sms"].sent[0].text
    assert "L-M1-A" in text and "L-M1-B" in text
    assert "¥1,200.00" in text and "¥300.50" in text and "¥1,500.50" in text  # each loan and the total
    assert text.splitlines()[0] == f"【Example Lender】{BORROWER['name']}，您有新消息。"  # the first line names no debt
    # Each loan's own link: the one its own message would have carried, for its loan.
    with session_factory() as db:
        for request in (a, b):
            token = pay_token(TEST_PAY_LINK_SECRET, request.key)
            assert token in text
            link = db.scalar(select(PayToken).where(PayToken.token_hash == token_hash(token)))
            assert (link.loan_id, link.workflow_id) == (request.loan_id, request.workflow_id)


def test_a_retry_of_either_part_sends_nothing_more_and_answers_the_same(acts, channels, session_factory):
    place(session_factory, "B-M2", ("L-M2-A", "1200.00", "CNY"), ("L-M2-B", "80.00", "USD"))
    a, b = step("L-M2-A", "B-M2"), step("L-M2-B", "B-M2", outstanding="80.00", currency="USD")
    first = send_together(acts, a, b)

    again = [send(acts, a), send(acts, b), send(acts, b)]

    assert len(channels["sms"].sent) == 1
    assert [(o.key, o.result, o.message_key) for o in again] == [
        (a.key, "sent", first[0].message_key), (b.key, "sent", first[0].message_key),
        (b.key, "sent", first[0].message_key)]
    assert len(rows(session_factory, "B-M2")) == 1
    assert "¥1,200.00" in channels["sms"].sent[0].text and "US$80.00" in channels["sms"].sent[0].text


def test_a_part_that_comes_after_the_sender_reads_the_message_the_sender_sent(acts, channels, session_factory):
    """The part that closes the group sends; a part that comes later (its
    attempt ran after the sender's) reads the sender's row."""
    place(session_factory, "B-M3", ("L-M3-A", "100.00", "CNY"), ("L-M3-B", "200.00", "CNY"))
    a, b = step("L-M3-A", "B-M3"), step("L-M3-B", "B-M3", outstanding="200.00")
    with ThreadPoolExecutor(max_workers=2) as pool:
        late = pool.submit(lambda: (threading.Event().wait(GATHER / 4), send(acts, b))[1])
        early = send(acts, a)
        late = late.result()
    assert early.message_key == late.message_key != a.key
    assert len(channels["sms"].sent) == 1


def test_when_the_sender_never_sends_another_part_sends_the_message_once(
    acts, channels, session_factory, monkeypatch
):
    """The sender's loan closed, or its worker died, after it closed the
    group: the other part waits SENDER_WAIT_SECONDS, then claims the merged
    message itself. Nothing is lost, nothing is sent twice."""
    monkeypatch.setattr(merging, "SENDER_WAIT_SECONDS", 0.3)
    place(session_factory, "B-M7", ("L-M7-A", "100.00", "CNY"), ("L-M7-B", "200.00", "CNY"))
    a, b = step("L-M7-A", "B-M7"), step("L-M7-B", "B-M7", outstanding="200.00")
    for request in (a, b):
        joined = borrower_messages.join(session_factory, merging.part_facts(request), at=NOW, gather_seconds=1,
                                        local_day=date(2026, 11, 2))
    closed = borrower_messages.close(session_factory, joined.group_id, a.key, NOW)  # A closed it, and stopped
    assert closed.sender_key == a.key and closed.merged

    outcome = send(acts, b)

    assert (outcome.result, outcome.message_key) == ("sent", closed.message_key)
    assert send(acts, a).message_key == closed.message_key  # A, tried again, reads it
    assert len(channels["sms"].sent) == 1


def test_with_the_database_down_the_activity_raises_and_the_contact_waits(channels, settings, tmp_path):
    """Coordination unavailable is the database unavailable: the send
    activity fails its attempt as DatabaseUnavailable (Temporal retries it,
    then the workflow makes the contact wait: tests/test_workflow_scenarios.py),
    naming no statement or parameter; it never sends without the outbox."""
    down = make_session_factory(make_engine(f"sqlite:///{tmp_path}/no-such-dir/down.db"))
    acts = DunningActivities(down, channels, TemplateRenderer(settings.templates_dir), activity_settings(settings),
                             clock=Clock(NOW))
    with pytest.raises(ApplicationError) as failed:
        send(acts, step("L-M8-A", "B-M8"))
    assert failed.value.type == "DatabaseUnavailable" and not failed.value.non_retryable
    assert failed.value.message == "database unavailable (OperationalError)"
    assert channels["sms"].sent == []


def test_a_group_of_one_sends_the_ordinary_message_under_its_own_key(acts, channels, session_factory):
    place(session_factory, "B-M4", ("L-M4-A", "1200.00", "CNY"), ("L-M4-B", "300.00", "CNY"))
    a = step("L-M4-A", "B-M4")

    outcome = send(acts, a)

    assert (outcome.result, outcome.message_key) == ("sent", a.key)
    [row] = rows(session_factory, "B-M4")
    assert (row.key, row.template) == (a.key, "reminder_friendly")
    assert send(acts, a).message_key == a.key and len(channels["sms"].sent) == 1  # and a retry is the same


def test_a_borrower_with_one_open_loan_is_not_gathered(acts, channels, session_factory):
    place(session_factory, "B-M5", ("L-M5-A", "1200.00", "CNY"))
    a = step("L-M5-A", "B-M5")
    outcome = send(acts, a)
    assert (outcome.result, outcome.message_key) == ("sent", a.key)
    with session_factory() as db:
        assert db.scalars(select(BorrowerMessagePart)).all() == []


def test_notices_and_unmerged_steps_go_alone(acts, channels, session_factory):
    place(session_factory, "B-M6", ("L-M6-A", "1200.00", "CNY"), ("L-M6-B", "300.00", "CNY"))
    a = step("L-M6-A", "B-M6", merge=False)
    b = step("L-M6-B", "B-M6", "notice/bureau/sms", merge=False, template="bureau_notice")
    outcomes = send_together(acts, a, b)
    assert [o.message_key for o in outcomes] == [a.key, b.key]
    assert len(channels["sms"].sent) == 2


# --------------------------------------------------------------- the daily cap


def test_the_cap_counts_a_merged_message_once_and_defers_what_is_over_it(acts, channels, session_factory):
    place(session_factory, "B-C1", ("L-C1-A", "100.00", "CNY"), ("L-C1-B", "200.00", "CNY"), ("L-C1-C", "300.00", "CNY"))
    merged = send_together(acts, step("L-C1-A", "B-C1", cap=2), step("L-C1-B", "B-C1", cap=2))
    assert {o.result for o in merged} == {"sent"}
    alone = send(acts, step("L-C1-C", "B-C1", merge=False, cap=2))
    assert alone.result == "sent"  # the merged message counted once: this is the second of two

    over = send(acts, step("L-C1-A", "B-C1", "reminder/d1/3-sms", merge=False, cap=2))

    assert (over.result, over.rule) == ("deferred", "borrower_daily_cap")
    assert datetime.fromisoformat(over.not_before) == NEXT_MIDNIGHT
    assert len(channels["sms"].sent) == 2
    # Other channels have caps of their own.
    assert send(acts, step("L-C1-A", "B-C1", "reminder/d1/1-push", channel="push", merge=False, cap=2)).result == "sent"


def test_a_merged_message_over_the_cap_defers_every_part_and_they_gather_again_the_next_day(
    acts, channels, session_factory, clock
):
    place(session_factory, "B-C2", ("L-C2-A", "100.00", "CNY"), ("L-C2-B", "200.00", "CNY"), ("L-C2-C", "300.00", "CNY"))
    assert send(acts, step("L-C2-C", "B-C2", merge=False, cap=1)).result == "sent"
    a, b = step("L-C2-A", "B-C2", cap=1), step("L-C2-B", "B-C2", cap=1)

    held = send_together(acts, a, b)

    assert [(o.result, o.rule) for o in held] == [("deferred", "borrower_daily_cap")] * 2
    assert {datetime.fromisoformat(o.not_before) for o in held} == {NEXT_MIDNIGHT}
    assert held[0].message_key == held[1].message_key
    assert len(channels["sms"].sent) == 1

    clock.at = NOW + timedelta(days=1)  # 09:00 the next day: both steps are tried again
    again = send_together(acts, a, b)

    assert [o.result for o in again] == ["sent", "sent"]
    assert again[0].message_key == again[1].message_key != held[0].message_key
    assert len(channels["sms"].sent) == 2 and "L-C2-A" in channels["sms"].sent[1].text


# ------------------------------------------- the providers' side of a merged message


@pytest.mark.sqlite_only
async def test_unsubscribing_from_a_merged_email_opts_out_each_loan_it_covered(acts, channels, session_factory, settings,
                                                                             tmp_path):
    place(session_factory, "B-U1", ("L-U1-A", "100.00", "CNY"), ("L-U1-B", "200.00", "CNY"))
    outcomes = send_together(acts, step("L-U1-A", "B-U1", "reminder/d1/2-email", channel="email"),
                             step("L-U1-B", "B-U1", "reminder/d1/2-email", channel="email"))
    key = outcomes[0].message_key
    url = unsubscribe_url(settings.public_base_url, settings.signing_secret(), key)
    assert url in channels["email"].sent[0].text  # the footer's link is the merged message's
    signals = RecordedSignals()
    app = create_app(settings, lambda: signals, gateway_settings(tmp_path), face="public")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=settings.public_base_url) as http:
        answer = await http.post(url=url, content="List-Unsubscribe=One-Click",
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
        # A provider's report on the merged message reaches each loan, for its own step.
        await app.state.gateway.tell_contact_outcome("dunning-L-U1-A", key, "delivered")

    assert answer.status_code == 200 and answer.json() == {"opted_out": True, "duplicate": False}
    assert signals.sent == [
        ("dunning-L-U1-A", contract.SIGNAL_OPT_OUT, {"channel": "email"}),
        ("dunning-L-U1-B", contract.SIGNAL_OPT_OUT, {"channel": "email"}),
        ("dunning-L-U1-A", contract.SIGNAL_CONTACT_OUTCOME, {"step": "reminder/d1/2-email", "result": "delivered"}),
        ("dunning-L-U1-B", contract.SIGNAL_CONTACT_OUTCOME, {"step": "reminder/d1/2-email", "result": "delivered"}),
    ]


def test_calls_keep_the_profiles_voice_cap_and_no_borrower_cap():
    with pytest.raises(ValidationError, match="sms"):
        BorrowerContacts.model_validate({"daily_caps": {"voice": 1}})


# ------------------------------------------------------------ the settings


def test_notices_are_never_merged():
    for template in ("validation_notice", "bureau_notice", "legal_notice", "pay_link", "plan_confirmation",
                     "installment_reminder"):
        with pytest.raises(ValidationError, match="never merged"):
            BorrowerContacts.model_validate({"merge": True, "merge_templates": [template]})


def test_a_policy_without_the_section_keeps_the_old_behaviour():
    policy = load_policy("default", ROOT / "config" / "policies").model_dump()
    policy.pop("borrower")
    old = Policy.model_validate(policy)
    assert old.borrower == BorrowerContacts() and old.borrower.daily_caps == {} and not old.borrower.merge
    profile = load_profile("cn", ROOT / "config" / "profiles")
    state = new_state()
    occurrence = Occurrence("reminder/d1/0-sms", "reminder", 1, "sms", "reminder_friendly", datetime(2026, 11, 2, 9, tzinfo=SHANGHAI))
    assert borrower_terms(state, profile, old, occurrence, occurrence.at) == {}
    assert borrower_terms(state, profile, None, occurrence, occurrence.at) == {}
    assert ContactRequest(**{f: "x" for f in ("key", "workflow_id", "loan_id", "borrower_id", "stage", "channel",
                                               "template", "outstanding", "currency", "due_date")},
                          days_past_due=1).merge is False


def test_the_request_carries_the_smaller_cap_and_merges_only_merged_templates_within_the_window():
    policy = load_policy("default", ROOT / "config" / "policies")
    cn = load_profile("cn", ROOT / "config" / "profiles")
    state = new_state()

    def terms(channel: str, template: str, at: time, profile: Profile = cn) -> dict:
        moment = datetime.combine(date(2026, 11, 2), at, tzinfo=SHANGHAI)
        return borrower_terms(state, profile, policy, Occurrence("k", "reminder", 1, channel, template, moment), moment)

    assert terms("sms", "reminder_friendly", time(9)) == {"borrower_daily_cap": 2, "merge": True, "gather_seconds": 3.0}
    assert terms("email", "bureau_notice", time(9)) == {"borrower_daily_cap": 2}  # a notice: capped, never merged
    assert terms("voice", "call_script", time(10)) == {}  # calls: the profile's voice caps
    # Two seconds before the window closes (22:00 in Shanghai), the gather is two seconds.
    assert terms("push", "reminder_followup", time(21, 59, 58))["gather_seconds"] == 2.0
    # The profile may cap lower than the policy.
    strict = cn.model_copy(update={"caps": Caps(**{**cn.caps.model_dump(), "borrower_daily_caps": {"sms": 1}})})
    assert terms("sms", "reminder_friendly", time(9), strict)["borrower_daily_cap"] == 1
    assert cn.caps.borrower_daily_cap("sms", None) is None and strict.caps.borrower_daily_cap("sms", 5) == 1


def test_the_merged_message_takes_the_strictest_rules_of_its_parts():
    assert FIRST_LINE_ORDER[-1] == "limited_content"
    a = merging.part_facts(step("L-R-A", "B-R", cap=3))
    b = merging.part_facts(step("L-R-B", "B-R", cap=2, outstanding="80.00", currency="USD"))
    b = BorrowerMessagePartFacts(**{**b.__dict__, "privacy_first_line": "no_amount_before_identity", "debt_collector": True})
    closed = borrower_messages.Closed(group_id=1, message_key="borrower-B-R/sms-2026-11-02-1", sender_key=a.key,
                                      parts=(a, b))
    merged = merging.merged_request(closed, step("L-R-A", "B-R"))
    assert (merged.key, merged.template, merged.loan_id) == (closed.message_key, "borrower_summary", "L-R-A")
    assert (merged.borrower_daily_cap, merged.privacy_first_line, merged.debt_collector_disclosure) == (
        2, "no_amount_before_identity", True)
    assert not merged.merge and merged.window_start == ""  # sent at once, through the ordinary path


# ------------------------------------------------- through the workflow (a), (b)

COORDINATION_POLICY = """
extends = "default"
name = "coordination"
description = "The default policy, merging after a short gather."

[borrower]
gather_seconds = 0.5
"""

CAPPED_POLICY = """
extends = "default"
name = "capped"
description = "The default policy, one message per channel per borrower per day, nothing merged."

[borrower]
daily_caps = { sms = 1, email = 1, push = 1 }
merge = false
"""


@pytest.fixture
def core(settings, tmp_path, monkeypatch):
    """Settings with a config/ copy holding the test policies."""
    config = tmp_path / "config"
    shutil.copytree(ROOT / "config", config)
    (config / "policies" / "coordination.toml").write_text(COORDINATION_POLICY, encoding="utf-8")
    (config / "policies" / "capped.toml").write_text(CAPPED_POLICY, encoding="utf-8")
    monkeypatch.setenv("DUNNING_CONFIG_DIR", str(config))
    return settings.model_copy(update={"config_dir": config})


def placed(session_factory, borrower_id: str, zone: str, due: date, policy: str, *loans: tuple[str, str]) -> list[dict]:
    block = {"name": BORROWER["name"], "phone": PLACELESS_PHONE, "email": BORROWER["email"], "language": "zh_CN",
             "time_zone": zone}
    placements = validate_placements([
        {"loan_id": loan_id, "borrower_id": borrower_id, "amount_due": amount, "currency": "CNY",
         "due_date": due.isoformat(), "policy": policy, "borrower": block}
        for loan_id, amount in loans
    ])
    upsert_placements(session_factory, placements)
    return [p.workflow_input() for p in placements]


@pytest.mark.sqlite_only
async def test_two_loans_of_one_borrower_get_one_merged_sms_with_one_message_key_in_both_statuses(
    time_env, core, session_factory
):
    zone = await zone_where_it_is(time_env, 7)  # 07:xx there: day 1's messages go at 09:00
    due = await overdue_since(time_env, 1, zone)
    inputs = placed(session_factory, "B-WF-MERGE", zone, due, "coordination", ("L-WF-MERGE-A", "1200.00"),
                    ("L-WF-MERGE-B", "300.50"))
    async with running_worker(time_env.client, core) as loans:
        handles = [await loans.start(i) for i in inputs]
        await time_env.sleep(timedelta(hours=4))  # past 09:00 and the day's three messages
        statuses = [await h.query("status") for h in handles]

    day1 = [[c for c in s["contacts"] if c["day"] == 1] for s in statuses]
    assert [[c["channel"] for c in d] for d in day1] == [["sms", "push", "email"]] * 2, statuses
    for a, b in zip(*day1):
        assert a["result"] == b["result"] == "sent"
        assert a["message_key"] == b["message_key"] and a["message_key"].startswith("borrower-B-WF-MERGE/")
        assert a["step"] == b["step"]  # each loan keeps its own entry, for its own step
    sms = rows(session_factory, "B-WF-MERGE", "sms")
    assert [(r.key, r.template, r.status) for r in sms] == [(day1[0][0]["message_key"], "borrower_summary", "sent")]
    assert "L-WF-MERGE-A" in sms[0].body_text and "L-WF-MERGE-B" in sms[0].body_text and "¥1,500.50" in sms[0].body_text


@pytest.mark.sqlite_only
async def test_a_per_borrower_cap_holds_across_three_loans_over_thirty_days(time_env, core, session_factory):
    zone = await zone_where_it_is(time_env, 7)
    due = await overdue_since(time_env, 1, zone)
    inputs = placed(session_factory, "B-WF-CAP", zone, due, "capped", ("L-WF-CAP-A", "1200.00"),
                    ("L-WF-CAP-B", "2400.00"), ("L-WF-CAP-C", "3600.00"))
    async with running_worker(time_env.client, core) as loans:
        handles = [await loans.start(i) for i in inputs]
        await time_env.sleep(timedelta(days=30))
        statuses = [await h.query("status") for h in handles]

    with session_factory() as db:
        went = db.scalars(select(Contact).where(
            Contact.borrower_id == "B-WF-CAP", Contact.status.in_(("sent", "unconfirmed")))).all()
    per_day: dict[tuple[date, str], int] = {}
    for row in went:
        at = row.sent_at or row.created_at
        day = at.astimezone(ZoneInfo(zone)).date()
        per_day[(day, row.channel)] = per_day.get((day, row.channel), 0) + 1
    capped = {k: n for k, n in per_day.items() if k[1] in ("sms", "email", "push")}
    assert capped and max(capped.values()) == 1, sorted(capped.items())
    # The cap did act: on day 1 each loan had an SMS due, one went; the
    # others were postponed by the rule, each recorded in the audit log.
    first_day = min(day for day, _ in capped)
    assert per_day[(first_day, "sms")] == 1
    with session_factory() as db:
        decisions = db.scalars(select(AuditEntry).where(AuditEntry.kind == "decision")).all()
    held = [e for e in decisions if json.loads(e.payload)["rule"] == "borrower_daily_cap"]
    assert held and {e.loan_id for e in held} <= {"L-WF-CAP-A", "L-WF-CAP-B", "L-WF-CAP-C"}
    # Every message that went out is on exactly one loan's status, with its own key.
    sent = [c for s in statuses for c in s["contacts"] if c["channel"] in ("sms", "email", "push") and c["result"] == "sent"]
    assert sorted(c["message_key"] for c in sent) == sorted(r.key for r in went if r.channel in ("sms", "email", "push"))
