"""Placing overdue loans from JSON or CSV: every record checked before any is
written; the same file twice changes nothing."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from db.directory import PlacementConflict, upsert_placements
from db.models import Borrower, Loan
from services.placement import PlacementError, read_placements, validate_placements

# The records, the outbox, the audit chain and placing are about the database:
# every database test here runs on SQLite and on PostgreSQL (tests/conftest.py).
pytestmark = pytest.mark.both_databases


def record(loan_id="L-1", borrower_id="B-1", **borrower):
    return {
        "loan_id": loan_id,
        "borrower_id": borrower_id,
        "amount_due": "1200.00",
        "currency": "CNY",
        "due_date": "2026-11-01",
        "borrower": {"name": "王小明", "phone": "+8613800138000", "email": "wang@example.com", **borrower},
    }


def counts(session_factory):
    with session_factory() as db:
        return db.scalar(select(func.count()).select_from(Borrower)), db.scalar(select(func.count()).select_from(Loan))


def test_a_json_file_is_placed_once_however_often_it_is_placed(tmp_path, session_factory):
    path = tmp_path / "loans.json"
    path.write_text(json.dumps([record("L-1", "B-1"), record("L-2", "B-1"), record("L-3", "B-2")], ensure_ascii=False))
    first = upsert_placements(session_factory, validate_placements(read_placements(path), default_policy="demo"))
    second = upsert_placements(session_factory, validate_placements(read_placements(path), default_policy="demo"))
    assert (first.borrowers_created, first.loans_created) == (2, 3)
    assert (second.borrowers_created, second.borrowers_unchanged, second.loans_created, second.loans_unchanged) == (0, 2, 0, 3)
    assert counts(session_factory) == (2, 3)
    with session_factory() as db:
        loan = db.get(Loan, "L-1")
        assert (loan.policy, loan.workflow_id, str(loan.amount_due)) == ("demo", "dunning-L-1", "1200.00")


def test_a_csv_with_nested_borrower_columns_reads_like_json(tmp_path):
    path = tmp_path / "loans.csv"
    path.write_text(
        "loan_id,borrower_id,amount_due,currency,due_date,policy,borrower.name,borrower.phone,borrower.email,borrower.language\n"
        "L-9,B-9,99.50,USD,2026-10-01,,Maria Garcia,+12125550123,,en\n",
        encoding="utf-8",
    )
    [placement] = validate_placements(read_placements(path))
    assert placement.workflow_input() == {
        "loan_id": "L-9", "borrower_id": "B-9", "currency": "USD", "amount_due": "99.50",
        "due_date": "2026-10-01", "policy": "default",
    }
    assert placement.borrower.email is None
    assert placement.borrower.resolved_time_zone().startswith("America/")


def test_one_bad_record_among_good_ones_names_itself_and_nothing_is_written(tmp_path, session_factory):
    bad = record("L-2", "B-2", phone="12345", email="not-an-address")
    bad["amount_due"] = 1200.5
    path = tmp_path / "loans.json"
    path.write_text(json.dumps([record("L-1"), bad, {"loan_id": "L-3"}], ensure_ascii=False))
    with pytest.raises(PlacementError) as error:
        upsert_placements(session_factory, validate_placements(read_placements(path)))
    lines = str(error.value).splitlines()
    assert lines[0].startswith("record 2 (loan_id L-2): amount_due: must be a decimal string")
    assert "borrower.phone:" in lines[0] and "borrower.email:" in lines[0]
    assert lines[1].startswith("record 3 (loan_id L-3):") and "borrower: Field required" in lines[1]
    assert counts(session_factory) == (0, 0)


def test_the_personal_data_stays_out_of_the_workflow_input():
    [placement] = validate_placements([record()])
    text = json.dumps(placement.workflow_input(), ensure_ascii=False)
    for personal in ("王小明", "+8613800138000", "wang@example.com"):
        assert personal not in text


def test_placing_a_loan_again_with_other_terms_or_contact_details_is_refused_and_changes_nothing(session_factory):
    upsert_placements(session_factory, validate_placements([record()]))
    changed = record(email="new@example.com")
    changed["amount_due"] = "1500.00"
    with pytest.raises(PlacementConflict) as refused:
        upsert_placements(session_factory, validate_placements([changed, record("L-2", "B-2")]))
    assert [(c.loan_id, c.subject, c.fields) for c in refused.value.conflicts] == [
        ("L-1", "borrower", ("email",)), ("L-1", "loan", ("amount_due",))]
    assert "new@example.com" not in str(refused.value) and "1500" not in str(refused.value)
    assert counts(session_factory) == (1, 1)  # L-2 and B-2, fine on their own, were not written either
    with session_factory() as db:
        assert str(db.get(Loan, "L-1").amount_due) == "1200.00"
        assert db.get(Borrower, "B-1").email == "wang@example.com"


def test_a_borrower_without_phone_or_email_cannot_be_reached_and_is_refused():
    with pytest.raises(PlacementError, match="borrower: .*needs a phone or an email"):
        validate_placements([record(phone=None, email=None)])


@pytest.mark.parametrize(
    "phone, expected",
    [("+8613800138000", "+8613800138000"), ("+86 138-0013-8000", "+8613800138000"), ("+1 (212) 555-0123", "+12125550123")],
)
def test_phones_are_kept_in_e164(phone, expected):
    [placement] = validate_placements([record(phone=phone)])
    assert placement.borrower.phone == expected


@pytest.mark.parametrize("phone", ["13800138000", "+86123", "+999 1234 5678", "call me"])
def test_a_phone_that_is_not_a_valid_international_number_is_refused(phone):
    with pytest.raises(PlacementError, match=r"^record 1 \(loan_id L-1\): borrower\.phone: "):
        validate_placements([record(phone=phone)])


def test_the_time_zone_comes_from_the_record_else_the_phone_else_is_left_to_the_policy():
    given, from_us_phone, email_only = validate_placements(
        [
            record("L-1", time_zone="Europe/Berlin"),
            record("L-2", phone="+14155550142", email=None),
            record("L-3", phone=None, email="a@example.com"),
        ]
    )
    assert given.borrower.time_zone == "Europe/Berlin"
    assert from_us_phone.borrower.time_zone.startswith("America/")
    # Not known: prepare_loan gives the loan its policy's default_time_zone
    # (tests/test_us_zone_default.py).
    assert email_only.borrower.time_zone is None
    with pytest.raises(PlacementError, match="borrower.time_zone: must be an IANA time zone"):
        validate_placements([record(time_zone="Mars/Olympus")])


def test_a_record_is_the_loan_input_plus_the_borrower(session_factory):
    [placement] = validate_placements([record(language="en")], default_policy="demo")
    assert (placement.loan_id, placement.policy, str(placement.amount_due)) == ("L-1", "demo", "1200.00")
    assert placement.loan.model_dump(mode="json", exclude_none=True) == placement.workflow_input()
    assert "borrower" not in placement.workflow_input()
    upsert_placements(session_factory, [placement])
    with session_factory() as db:
        borrower = db.get(Borrower, "B-1")
        assert (borrower.name, borrower.language, borrower.time_zone) == ("王小明", "en", "Asia/Shanghai")
        assert db.get(Loan, "L-1").stage == "pending"


def test_the_shipped_samples_are_valid(session_factory):
    from pathlib import Path

    samples = Path(__file__).resolve().parent.parent / "samples"
    placements = validate_placements(read_placements(samples / "loans.csv")) + validate_placements(
        read_placements(samples / "loans.json")
    )
    assert len(placements) == 8
    summary = upsert_placements(session_factory, placements)
    assert summary.loans_created == 8 and summary.borrowers_created == 8


def test_the_same_loan_twice_in_one_file_is_refused():
    with pytest.raises(PlacementError, match=r"record 2 \(loan_id L-1\): loan_id: L-1 appears more than once"):
        validate_placements([record(), record()])


# ------------------------------------------------------------ the validation notice's itemization


def itemized(loan_id="L-1", **changes):
    # 1100.00 + 75.00 + 35.00 - 10.00 - 0.00 = 1200.00, the amount due
    item = {
        "itemization_date": "2026-09-01", "amount_on_itemization_date": "1100.00", "interest_since": "75.00",
        "fees_since": "35.00", "payments_since": "10.00", "credits_since": "0",
        "current_creditor": "Acme Lending", "creditor_on_itemization_date": "Acme Bank",
        "account_number": "4417-1234-5678-9113", "debt_type": "consumer_financial_product",
    }
    item.update(changes)
    return record(loan_id) | {"itemization": {k: v for k, v in item.items() if v is not None}}


def test_an_itemization_is_validated_stored_with_the_loan_and_kept_out_of_the_workflow(session_factory):
    from db.models import LoanItemization

    [placement] = validate_placements([itemized()])
    assert placement.itemization.current_amount() == placement.amount_due
    assert "itemization" not in placement.workflow_input()
    assert "4417" not in json.dumps(placement.workflow_input())
    summary = upsert_placements(session_factory, [placement])
    again = upsert_placements(session_factory, validate_placements([itemized()]))
    assert (summary.loans_created, again.loans_unchanged) == (1, 1)
    with session_factory() as db:
        row = db.get(LoanItemization, "L-1")
        assert (row.itemization_date.isoformat(), str(row.amount_on_itemization_date), str(row.fees_since)) == (
            "2026-09-01", "1100.00", "35.00")
        assert (row.current_creditor, row.creditor_on_itemization_date, row.account_number, row.debt_type) == (
            "Acme Lending", "Acme Bank", "4417-1234-5678-9113", "consumer_financial_product")


def test_an_itemization_that_does_not_add_up_to_the_amount_due_is_refused_naming_the_field():
    with pytest.raises(PlacementError) as error:
        validate_placements([itemized(fees_since="45.00")])
    assert "record 1 (loan_id L-1): itemization.amount_on_itemization_date:" in str(error.value)
    assert "must equal amount_due (1200.00)" in str(error.value)
    with pytest.raises(PlacementError, match=r"itemization\.fees_since: has 3 decimals; CNY has 2"):
        validate_placements([itemized(fees_since="35.005")])
    with pytest.raises(PlacementError, match=r"itemization\.credits_since: must be a decimal string, zero or more"):
        validate_placements([itemized(credits_since="-1.00")])
    with pytest.raises(PlacementError, match=r"itemization\.itemization_date: must be an ISO 8601 date"):
        validate_placements([itemized(itemization_date="01/09/2026")])


def test_a_consumer_financial_product_debt_needs_the_creditor_on_the_itemization_date():
    with pytest.raises(PlacementError, match=r"itemization\.creditor_on_itemization_date: is required"):
        validate_placements([itemized(creditor_on_itemization_date=None)])
    [other] = validate_placements([itemized(creditor_on_itemization_date=None, debt_type="other")])
    assert other.itemization.creditor_on_itemization_date is None
    with pytest.raises(PlacementError, match=r"itemization\.debt_type:"):
        validate_placements([itemized(debt_type="mortgage")])


def test_the_gateway_validates_the_same_itemization():
    from pydantic import ValidationError

    from services.placement import Placement

    assert Placement.model_validate(itemized()).itemization.account_number == "4417-1234-5678-9113"
    with pytest.raises(ValidationError, match=r"itemization\.amount_on_itemization_date: .* must equal amount_due"):
        Placement.model_validate(itemized(interest_since="70.00"))


def test_csv_itemization_columns_nest_like_the_borrower_ones(tmp_path):
    path = tmp_path / "loans.csv"
    path.write_text(
        "loan_id,borrower_id,amount_due,currency,due_date,borrower.name,borrower.email,"
        "itemization.itemization_date,itemization.amount_on_itemization_date,itemization.interest_since,"
        "itemization.current_creditor,itemization.creditor_on_itemization_date,itemization.account_number\n"
        "L-9,B-9,99.50,USD,2026-10-01,Maria Garcia,maria@example.com,2026-08-31,90.00,9.50,Acme Lending,Acme Bank,778899\n",
        encoding="utf-8",
    )
    [placement] = validate_placements(read_placements(path))
    assert placement.itemization.amount_on_itemization_date + placement.itemization.interest_since == placement.amount_due
    assert (placement.itemization.fees_since, placement.itemization.account_number) == (0, "778899")


def test_placing_a_loan_again_with_another_itemization_is_a_conflict_naming_fields_not_values(session_factory):
    upsert_placements(session_factory, validate_placements([itemized()]))
    changed = itemized(fees_since="25.00", payments_since="0", current_creditor="Other Creditor")
    with pytest.raises(PlacementConflict) as refused:
        upsert_placements(session_factory, validate_placements([changed]))
    [conflict] = refused.value.conflicts
    assert (conflict.subject, conflict.fields) == (
        "loan", ("itemization.fees_since", "itemization.payments_since", "itemization.current_creditor"))
    assert "Other Creditor" not in str(refused.value) and "25.00" not in str(refused.value)
    # A record without the block claims nothing; one adding a block to a loan placed without it is a conflict.
    assert upsert_placements(session_factory, validate_placements([record()])).loans_unchanged == 1
    upsert_placements(session_factory, validate_placements([record("L-2")]))
    with pytest.raises(PlacementConflict) as added:
        upsert_placements(session_factory, validate_placements([itemized("L-2")]))
    assert added.value.conflicts[0].fields == ("itemization",)
