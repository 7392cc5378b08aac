"""Issue 15, item 2: a borrower placed with neither a time zone nor a phone
takes the zone of the loan's policy (`default_time_zone`: America/New_York
under `us`, Asia/Shanghai under `default`/cn), never a hard-coded
Asia/Shanghai. Placement leaves the zone unknown (None in the directory);
prepare_loan, which loads the policy, resolves it. A given zone always wins,
then the phone's."""

from __future__ import annotations

from datetime import timedelta

import pytest
from temporalio.testing import ActivityEnvironment

from activities.dunning_activities import DunningActivities
from activities.payloads import PrepareLoanInput
from activities.rendering import TemplateRenderer
from db.directory import PlacementConflict, upsert_placements
from db.models import Borrower
from runtime.worker_build import activity_settings
from services.placement import validate_placements
from tests.support.temporal import loan_input, overdue_since, running_worker, time_env  # noqa: F401 (fixture)


def record(loan_id: str, borrower_id: str, policy: str, currency: str = "USD", **borrower) -> dict:
    block = {"name": "Jane Doe", "email": "jane@example.com", "language": "en", **borrower}
    return {
        "loan_id": loan_id, "borrower_id": borrower_id, "amount_due": "1200.00", "currency": currency,
        "due_date": "2026-11-01", "policy": policy,
        "borrower": {key: value for key, value in block.items() if value is not None},
    }


def prepare(session_factory, settings, placed: dict):
    acts = DunningActivities(session_factory, {}, TemplateRenderer(settings.templates_dir), activity_settings(settings))
    return ActivityEnvironment().run(acts.prepare_loan, PrepareLoanInput(
        workflow_id=f"dunning-{placed['loan_id']}", loan_id=placed["loan_id"], borrower_id=placed["borrower_id"],
        amount_due=placed["amount_due"], currency=placed["currency"], due_date=placed["due_date"],
        policy=placed["policy"],
    ))


def place(session_factory, *records: dict) -> None:
    upsert_placements(session_factory, validate_placements(list(records)))


@pytest.mark.both_databases
def test_a_us_borrower_with_only_an_email_gets_the_us_policy_s_zone_not_shanghai(session_factory, settings):
    us = record("L-US", "B-US", "us")
    place(session_factory, us)

    prepared = prepare(session_factory, settings, us)

    assert prepared.time_zone == "America/New_York" == prepared.policy["default_time_zone"]
    with session_factory() as db:  # unknown in the directory: no zone is made up for the borrower
        assert db.get(Borrower, "B-US").time_zone is None


@pytest.mark.both_databases
def test_a_cn_borrower_with_only_an_email_still_gets_shanghai(session_factory, settings):
    cn = record("L-CN", "B-CN", "default", currency="CNY", language="zh_CN")
    place(session_factory, cn)

    assert prepare(session_factory, settings, cn).time_zone == "Asia/Shanghai"


@pytest.mark.both_databases
@pytest.mark.parametrize("policy, currency", [("us", "USD"), ("default", "CNY")])
def test_a_given_zone_always_wins_then_the_phone_s(session_factory, settings, policy, currency):
    given = record("L-GIVEN", "B-GIVEN", policy, currency, time_zone="Europe/Berlin")
    given_with_phone = record("L-BOTH", "B-BOTH", policy, currency, phone="+8613800138000", time_zone="America/Chicago")
    phone_only = record("L-PHONE", "B-PHONE", policy, currency, phone="+14155550142", email=None)
    place(session_factory, given, given_with_phone, phone_only)

    assert prepare(session_factory, settings, given).time_zone == "Europe/Berlin"
    assert prepare(session_factory, settings, given_with_phone).time_zone == "America/Chicago"
    assert prepare(session_factory, settings, phone_only).time_zone == "America/Los_Angeles"


@pytest.mark.both_databases
def test_the_same_borrower_s_loans_under_two_policies_each_take_their_policy_s_zone(session_factory, settings):
    # The directory keeps one borrower row; the zone is resolved per loan.
    us, cn = record("L-1", "B-1", "us"), record("L-2", "B-1", "default", currency="CNY")
    place(session_factory, us, cn)

    assert prepare(session_factory, settings, us).time_zone == "America/New_York"
    assert prepare(session_factory, settings, cn).time_zone == "Asia/Shanghai"


@pytest.mark.both_databases
def test_an_email_only_record_placed_again_changes_nothing_even_over_a_stored_zone(session_factory):
    # A borrower placed before this fix holds the old derived Asia/Shanghai:
    # the same record placed again is not a conflict (it claims no zone), and
    # a record that does name another zone still is.
    with session_factory.begin() as db:
        db.add(Borrower(borrower_id="B-OLD", name="Jane Doe", email="jane@example.com", language="en",
                        time_zone="Asia/Shanghai"))
    place(session_factory, record("L-OLD", "B-OLD", "us"))
    with session_factory() as db:
        assert db.get(Borrower, "B-OLD").time_zone == "Asia/Shanghai"
    with pytest.raises(PlacementConflict, match=r"\(time_zone\)"):
        place(session_factory, record("L-OLD-2", "B-OLD", "us", time_zone="America/Denver"))


@pytest.mark.asyncio
async def test_a_us_loan_of_an_email_only_borrower_runs_in_new_york_time(time_env, settings, session_factory):
    placed = record("L-US-RUN", "B-US-RUN", "us")
    placed["due_date"] = (await overdue_since(time_env, 1, "America/New_York")).isoformat()
    place(session_factory, placed)
    async with running_worker(time_env.client, settings) as loans:
        handle = await loans.start({key: value for key, value in placed.items() if key != "borrower"})
        await time_env.sleep(timedelta(minutes=1))
        status = await handle.query("status")
    assert status["time_zone"] == "America/New_York"
