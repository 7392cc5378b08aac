"""Placing overdue loans from JSON or CSV: every record checked before any is
written; the same file twice changes nothing."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from db.directory import upsert_placements
from db.models import Borrower, Loan
from runtime.placement import PlacementError, read_placements, validate_placements


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
    assert (second.borrowers_created, second.borrowers_updated, second.loans_created, second.loans_unchanged) == (0, 0, 0, 3)
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


def test_placing_a_loan_again_with_other_terms_keeps_the_first_and_says_so(session_factory):
    upsert_placements(session_factory, validate_placements([record()]))
    changed = record(email="new@example.com")
    changed["amount_due"] = "1500.00"
    summary = upsert_placements(session_factory, validate_placements([changed]))
    assert summary.borrowers_updated == 1 and summary.conflicts and "L-1" in summary.conflicts[0]
    with session_factory() as db:
        assert str(db.get(Loan, "L-1").amount_due) == "1200.00"
        assert db.get(Borrower, "B-1").email == "new@example.com"


def test_a_borrower_without_phone_or_email_cannot_be_reached_and_is_refused():
    with pytest.raises(PlacementError, match="borrower: .*needs a phone or an email"):
        validate_placements([record(phone=None, email=None)])
