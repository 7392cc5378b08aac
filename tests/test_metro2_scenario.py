"""Issue 16, end to end on the time-skipping server: one US loan furnished
over four monthly cycles, each cycle's Metro 2 file read back field by field.

1. the first record, then a payment: the correction replaces it in the same
   cycle's file (one Base Segment, the lower balance);
2. the next cycle's regular record;
3. a dispute before the third cycle's record: compliance condition XB;
4. still disputed at the fourth cycle, then upheld: the loan ends and its
   final record deletes the account (Account Status DA, balance zero),
   replacing that cycle's XB record in its file.

The server's clock is moved to 10:00 in New York first; every date checked
is computed from the loan's own records, never from the wall clock."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from activities.exports import bureau_cycle_path
from db.directory import upsert_placements
from db.models import BureauRecord
from dunning import metro2
from services.placement import validate_placements
from tests.support.temporal import overdue_since, running_worker, time_env  # noqa: F401 (fixture)
from tests.test_us_notice_scenario import NOTICE_EMAIL, sent, status_when, ten_in_new_york

LOAN, BORROWER = "L-US-M2", "B-US-M2"


def placement(due) -> dict:
    return {
        "loan_id": LOAN, "borrower_id": BORROWER, "amount_due": "1254.50", "currency": "USD",
        "due_date": due.isoformat(), "policy": "us",
        "borrower": {
            "name": "Jane Q Doe", "email": "jane.doe@example.com", "language": "en", "time_zone": "America/New_York",
            "address_line1": "12 Main Street", "city": "Albany", "region": "NY", "postal_code": "12207", "country": "US",
            "ssn": "123-45-6789", "date_of_birth": "1980-04-02",
        },
        "itemization": {
            "itemization_date": (due - timedelta(days=30)).isoformat(), "amount_on_itemization_date": "1254.50",
            "interest_since": "0.00", "fees_since": "0.00", "payments_since": "0.00", "credits_since": "0.00",
            "current_creditor": "Example Lending LLC", "creditor_on_itemization_date": "Example Lending LLC",
            "account_number": "4000123412341234", "debt_type": "consumer_financial_product",
            "date_opened": (due - timedelta(days=365)).isoformat(), "terms_duration": "012",
        },
    }


def records(session_factory) -> list[BureauRecord]:
    with session_factory() as db:
        return list(db.scalars(select(BureauRecord).where(BureauRecord.loan_id == LOAN).order_by(BureauRecord.id)))


def furnished(settings, cycle: str) -> metro2.DataRecord:
    """The cycle's file, read by our reader; written back, the same text."""
    text = bureau_cycle_path(settings.export_dir, cycle).read_text(encoding="ascii")
    read = metro2.read(text)
    assert metro2.write(read.header, read.records) == text, "the file reads back field by field"
    assert read.trailer["totalBaseRecords"] == 1 == len(read.records)
    [account] = read.records
    assert account.base["consumerAccountNumber"] == LOAN and account.base["socialSecurityNumber"] == 123456789
    assert account.base["surname"] == "DOE" and account.base["firstName"] == "JANE"
    return account


async def records_when(time_env, session_factory, condition, what: str, tries: int = 80, step=timedelta(hours=12)):
    for _ in range(tries):
        found = records(session_factory)
        if condition(found):
            return found
        await time_env.sleep(step)
    raise AssertionError(f"{what} never happened: {[(r.kind, r.cycle, r.account_status) for r in records(session_factory)]}")


@pytest.mark.asyncio
@pytest.mark.sqlite_only  # fixed loan ids on the session's time-skipping server
async def test_four_monthly_metro2_files_for_one_us_loan_read_back_field_by_field(time_env, settings, session_factory):
    settings = settings.model_copy(update={"metro2_identification_number": "DUNNING01"})
    await ten_in_new_york(time_env)
    due = await overdue_since(time_env, 29, "America/New_York")
    upsert_placements(session_factory, validate_placements([placement(due)]))
    async with running_worker(time_env.client, settings) as loans:
        handle = await loans.start({"loan_id": LOAN, "borrower_id": BORROWER, "amount_due": "1254.50",
                                    "currency": "USD", "due_date": due.isoformat(), "policy": "us"})
        await status_when(time_env, handle, lambda s: s and sent(s), "the notice e-mail")
        await handle.signal("contact_outcome", {"step": NOTICE_EMAIL, "result": "delivered"})

        # 1. The first record (14 days after the delivered notice, 1006.30(a)),
        # then a payment: its correction replaces it in the cycle's file.
        first = (await records_when(time_env, session_factory, lambda rs: rs, "the first record"))[0]
        await handle.signal("repayment", {"payment_id": "P-M2-1", "amount": "200.00", "currency": "USD"})
        found = await records_when(time_env, session_factory, lambda rs: len(rs) >= 2, "the correction", step=timedelta(hours=1))
        correction = found[1]
        assert (first.kind, correction.kind, correction.cycle) == ("first", "correction", first.cycle)
        one = furnished(settings, first.cycle)
        assert one.base["currentBalance"] == 1054 and one.base["accountStatus"] == correction.account_status
        assert one.base["dateFirstDelinquency"] == due + timedelta(days=30)

        # 2. The next cycle's regular record.
        found = await records_when(time_env, session_factory, lambda rs: any(r.kind == "regular" for r in rs), "a regular record")
        second = [r for r in found if r.kind == "regular"][0]
        two = furnished(settings, second.cycle)
        assert two.base["accountStatus"] == second.account_status and two.base["complianceConditionCode"] == ""
        assert two.base["paymentHistoryProfile"][0] != "B", "the earlier cycle is in the payment history"

        # 3. A dispute before the next cycle's record: XB.
        await handle.signal("dispute", {"reason": "amount"})
        found = await records_when(time_env, session_factory,
                                   lambda rs: len([r for r in rs if r.kind == "regular"]) >= 2, "the disputed record")
        third = [r for r in found if r.kind == "regular"][1]
        three = furnished(settings, third.cycle)
        assert third.compliance_code == "XB" == three.base["complianceConditionCode"]

        # 4. Still disputed at the next cycle (XB again); upheld then: the final
        # record deletes the account, and replaces that cycle's record in its file.
        found = await records_when(time_env, session_factory,
                                   lambda rs: len([r for r in rs if r.kind == "regular"]) >= 3, "the next cycle's record")
        fourth = [r for r in found if r.kind == "regular"][2]
        assert fourth.compliance_code == "XB" and furnished(settings, fourth.cycle).base["complianceConditionCode"] == "XB"
        await handle.signal("dispute_resolved", {"upheld": True})
        found = await records_when(time_env, session_factory, lambda rs: rs[-1].kind == "final", "the final record",
                                   step=timedelta(hours=1))
        final = found[-1]
        assert final.cycle == fourth.cycle
        four = furnished(settings, final.cycle)  # one Base Segment: the final record replaced the XB one
        assert final.account_status == "DA" == four.base["accountStatus"]
        assert four.base["currentBalance"] == 0 and four.base["amountPastDue"] == 0
        assert final.balance == Decimal("0")
    assert len({first.cycle, second.cycle, third.cycle, final.cycle}) == 4
