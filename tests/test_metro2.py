"""The Metro 2 bureau file (issue 16, item 3): the layout against an
independent implementation's sample (moov-io/metro2, tests/fixtures/metro2/),
and the cycle's file written from the database and read back."""

from __future__ import annotations

import json
import os
import stat
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from activities.exports import bureau_refusals_path, write_metro2_cycle
from db.models import Borrower, BureauRecord, Loan, LoanItemization
from dunning import metro2
from services.placement import BorrowerContact, Itemization

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "metro2"
FURNISHER = metro2.Furnisher(identification_number="1234567", reporter_name="Example Lender",
                             reporter_address="1 Main St, Springfield, IL 62701", reporter_telephone="+1 217 555 0100",
                             equifax_program_id="EQ12345678", creditor_classification=12)
CYCLE = "2026-05"
CREATED = date(2026, 5, 20)


# ------------------------------------------------------- the moov-io sample


def _json_value(field: metro2.Field, value):
    """The JSON's value as the reader gives it: dates as dates."""
    if field.kind == metro2.DATE:
        return date.fromisoformat(value[:10])
    if field.kind == metro2.TIMESTAMP:
        return datetime.fromisoformat(value.replace("Z", ""))
    return value


def _same(table, read: dict, expected: dict, where: str) -> int:
    """Every field the JSON has equals the one read; a field the JSON leaves
    out (moov-io omits empty values) is read empty. Returns how many compared."""
    by_name = {f.name: f for f in table}
    unknown = set(expected) - set(by_name)
    assert not unknown, f"{where}: the JSON has fields the layout lacks: {unknown}"
    for name, f in by_name.items():
        if name in expected:
            assert read[name] == _json_value(f, expected[name]), f"{where}.{name}"
        else:
            assert read[name] in (0, "", None), f"{where}.{name}: {read[name]!r} but absent from the JSON"
    return len(expected)


def test_the_moov_sample_reads_to_its_json():
    sample = metro2.read((FIXTURES / "unpacked_fixed_file.dat").read_text(encoding="ascii"))
    expected = json.loads((FIXTURES / "unpacked_fixed_file.json").read_text(encoding="utf-8"))
    compared = 0

    header = dict(expected["header"])
    # The one difference is in the sample: its header record is 470 long
    # (RDW 0470, blank-padded), its JSON says 426 (README.md).
    assert sample.header["recordDescriptorWord"] == 470 and header.pop("recordDescriptorWord") == 426
    compared += _same(metro2.HEADER, {**sample.header, "recordDescriptorWord": 0}, header, "header")

    [record] = sample.records
    [data] = expected["data"]
    compared += _same(metro2.BASE, record.base, data["base"], "base")
    segments = {key: value for key, value in data.items() if key != "base"}
    assert [name for name, _ in record.segments] == ["J1", "J2", "K3", "L1", "N1"]
    for key, values in segments.items():
        for number, one in enumerate(values if isinstance(values, list) else [values]):
            name = key.upper()
            compared += _same(metro2.SEGMENTS[name], record.segment(name)[number], one, f"{name}[{number}]")
    compared += _same(metro2.TRAILER, sample.trailer, expected["trailer"], "trailer")
    assert compared == 129  # every value of the JSON but the header RDW (checked above)
    # Our trailer count agrees with theirs.
    assert {k: v for k, v in metro2.trailer_for(sample.records).items() if k != "recordDescriptorWord"} == {
        k: v for k, v in sample.trailer.items() if k not in ("recordDescriptorWord", "recordIdentifier", "reserved1", "reserved2")
    }


def test_the_moov_sample_written_again_reads_back_identically():
    sample = metro2.read((FIXTURES / "unpacked_fixed_file.dat").read_text(encoding="ascii"))
    text = metro2.write(sample.header, sample.records)
    again = metro2.read(text)
    # Fixed length: every record as long as the data record with its segments (426 + 540), no padding past it.
    assert {len(line) for line in text.splitlines()} == {966}
    assert again.records == [metro2.DataRecord({**sample.records[0].base, "recordDescriptorWord": 966},
                                               sample.records[0].segments)]
    assert again.trailer == {**sample.trailer, "recordDescriptorWord": 966}
    assert {k: v for k, v in again.header.items() if k != "recordDescriptorWord"} == {
        k: v for k, v in sample.header.items() if k != "recordDescriptorWord"}


def test_a_segment_the_reader_does_not_know_is_an_error_not_skipped():
    text = (FIXTURES / "unpacked_fixed_file.dat").read_text(encoding="ascii")
    broken = text.replace("K300", "Q900", 1)
    with pytest.raises(metro2.Metro2Error, match="unknown segment 'Q9'"):
        metro2.read(broken)


def test_fields_are_justified_and_filled_as_the_layout_says():
    [status] = [f for f in metro2.BASE if f.name == "accountStatus"]
    [balance] = [f for f in metro2.BASE if f.name == "currentBalance"]
    [opened] = [f for f in metro2.BASE if f.name == "dateOpened"]
    assert metro2.encode(balance, 1234) == "000001234" and metro2.encode(status, "7") == "7 "
    assert metro2.encode(opened, date(2026, 3, 9)) == "03092026" and metro2.encode(opened, None) == "00000000"
    assert metro2.whole_dollars(Decimal("1200.99")) == 1200 and metro2.whole_dollars(Decimal("-5")) == 0
    with pytest.raises(metro2.Metro2Error):
        metro2.encode(balance, 1_000_000_000)
    with pytest.raises(metro2.Metro2Error):
        metro2.encode(status, "XYZ")
    assert metro2.split_name("Mary Ann Smith-Jones Jr.") == {
        "surname": "SMITH-JONES", "firstName": "MARY", "middleName": "ANN", "generationCode": "J"}
    assert metro2.split_name("O'Brien, José") == {"surname": "OBRIEN", "firstName": "JOSE", "middleName": "",
                                                   "generationCode": ""}
    assert metro2.split_name("张三") is None


# ------------------------------------------------------- our file, from the database


def _borrower(db, borrower_id: str, ssn: str | None = "123456789", dob: date | None = date(1980, 4, 30)) -> None:
    db.add(Borrower(borrower_id=borrower_id, name="Jane Q Public", phone="+12175550123", email=None,
                    language="en", time_zone="America/Chicago", address_line1="12 Elm Street", address_line2="Apt 4",
                    city="Springfield", region="IL", postal_code="62701-1234", country="US", ssn=ssn,
                    date_of_birth=dob))


def _loan(db, loan_id: str, borrower_id: str, policy: str = "us", original_creditor: str | None = "Acme Bank") -> None:
    db.add(Loan(loan_id=loan_id, borrower_id=borrower_id, amount_due=Decimal("1200.50"), currency="USD",
                due_date=date(2026, 1, 10), policy=policy, workflow_id=f"dunning-{loan_id}"))
    db.flush()
    db.add(LoanItemization(
        loan_id=loan_id, itemization_date=date(2026, 1, 10), amount_on_itemization_date=Decimal("1200.50"),
        interest_since=Decimal("0"), fees_since=Decimal("0"), payments_since=Decimal("0"), credits_since=Decimal("0"),
        current_creditor="Acme Bank", creditor_on_itemization_date=original_creditor, account_number=None,
        debt_type="consumer_financial_product", date_opened=date(2025, 12, 10), terms_duration="001",
        terms_frequency="P"))


def _record(db, loan_id: str, cycle: str, kind: str = "regular", status: str = "71", balance: str = "1200.50",
            rating: str | None = None, at: datetime | None = None) -> None:
    year, month = (int(x) for x in cycle.split("-"))
    db.add(BureauRecord(
        key=f"bureau:{loan_id}:{cycle}:{kind}", loan_id=loan_id, workflow_id=f"dunning-{loan_id}",
        days_past_due=40, balance=Decimal(balance), currency="USD", kind=kind, cycle=cycle, account_status=status,
        special_comment=None, compliance_code="XB" if kind == "correction" else None,
        first_delinquency=date(2026, 2, 9), amount_past_due=Decimal(balance), original_amount=Decimal("1200.50"),
        reported_on=date(year, month, 15), payment_rating=rating,
        created_at=at or datetime(year, month, 15, 9, 30, tzinfo=timezone.utc),
    ))
    db.flush()


def _write(session_factory, tmp_path, agency: bool = False):
    with session_factory() as db:
        written = write_metro2_cycle(db, tmp_path, CYCLE, furnisher=FURNISHER,
                                     collects_as_agency=lambda policy: agency, created=CREATED)
    text = written.path.read_text(encoding="ascii")
    return written, text, metro2.read(text)


@pytest.mark.both_databases
def test_our_file_reads_back_field_by_field(session_factory, tmp_path):
    with session_factory.begin() as db:
        _borrower(db, "B-1")
        _loan(db, "L-1", "B-1")
        _record(db, "L-1", CYCLE)
    written, text, read = _write(session_factory, tmp_path)
    assert written.accounts == ("L-1",) and written.refused == ()
    lines = text.split("\n")
    assert lines[-1] == "" and all(len(line) == 426 for line in lines[:-1]) and len(lines) == 4
    assert all(line[:4] == "0426" for line in lines[:-1])
    assert stat.S_IMODE(os.stat(written.path).st_mode) == 0o600
    [record] = read.records
    base = record.base
    assert record.segments == []
    assert {name: base[name] for name in (
        "recordDescriptorWord", "processingIndicator", "identificationNumber", "consumerAccountNumber",
        "portfolioType", "accountType", "dateOpened", "highestCredit", "termsDuration", "termsFrequency",
        "accountStatus", "paymentHistoryProfile", "currentBalance", "amountPastDue", "dateAccountInformation",
        "dateFirstDelinquency", "surname", "firstName", "middleName", "socialSecurityNumber", "dateBirth",
        "telephoneNumber", "ecoaCode", "countryCode", "firstLineAddress", "secondLineAddress", "city", "state",
        "zipCode", "timeStamp",
    )} == {
        "recordDescriptorWord": 426, "processingIndicator": 1, "identificationNumber": "1234567",
        "consumerAccountNumber": "L-1", "portfolioType": "I", "accountType": "01", "dateOpened": date(2025, 12, 10),
        "highestCredit": 1200, "termsDuration": "001", "termsFrequency": "P", "accountStatus": "71",
        "paymentHistoryProfile": "B" * 24, "currentBalance": 1200, "amountPastDue": 1200,
        "dateAccountInformation": date(2026, 5, 15), "dateFirstDelinquency": date(2026, 2, 9),
        "surname": "PUBLIC", "firstName": "JANE", "middleName": "Q", "socialSecurityNumber": 123456789,
        "dateBirth": date(1980, 4, 30), "telephoneNumber": 2175550123, "ecoaCode": "1", "countryCode": "US",
        "firstLineAddress": "12 ELM STREET", "secondLineAddress": "APT 4", "city": "SPRINGFIELD", "state": "IL",
        "zipCode": "627011234", "timeStamp": datetime(2026, 5, 15, 9, 30),
    }
    assert read.header["reporterName"] == "EXAMPLE LENDER" and read.header["dateCreated"] == CREATED
    assert read.header["equifaxProgramIdentifier"] == "EQ12345678" and read.header["reporterTelephoneNumber"] == 2175550100
    # Written again from what was read: the same text.
    assert metro2.write({k: v for k, v in read.header.items() if k != "reserved"},
                        read.records) == text


@pytest.mark.both_databases
def test_header_and_trailer_totals_match_the_records(session_factory, tmp_path):
    with session_factory.begin() as db:
        for number, (status, ssn, dob) in enumerate([("71", "123456789", None), ("93", None, date(1970, 1, 1)),
                                                     ("DA", "223456789", date(1990, 2, 2))]):
            _borrower(db, f"B-{number}", ssn=ssn, dob=dob)
            _loan(db, f"L-{number}", f"B-{number}")
            _record(db, f"L-{number}", CYCLE, status=status)
    _, text, read = _write(session_factory, tmp_path)
    trailer = read.trailer
    assert trailer["recordIdentifier"] == "TRAILER" and trailer["totalBaseRecords"] == 3 and trailer["blockCount"] == 5
    assert (trailer["totalStatusCode71"], trailer["totalStatusCode93"], trailer["totalStatusCodeDA"]) == (1, 1, 1)
    assert trailer["totalSocialNumbersAllSegments"] == trailer["totalSocialNumbersBaseSegments"] == 2
    assert trailer["totalDatesBirthAllSegments"] == trailer["totalDatesBirthBaseSegments"] == 2
    assert trailer["totalTelephoneNumbersAllSegments"] == 3 and trailer["totalOriginalCreditorSegments"] == 0
    # A deletion is written as Metro 2 deletes an account: Account Status DA.
    assert [r.base["accountStatus"] for r in read.records] == ["71", "93", "DA"]
    assert read.header["recordIdentifier"] == "HEADER" and read.header["activityDate"] == date(2026, 5, 15)
    assert all(len(line) == 426 for line in text.splitlines())


@pytest.mark.both_databases
def test_a_correction_in_the_cycle_replaces_the_first_record(session_factory, tmp_path):
    with session_factory.begin() as db:
        _borrower(db, "B-1")
        _loan(db, "L-1", "B-1")
        _record(db, "L-1", CYCLE, kind="first", balance="1200.50")
        _record(db, "L-1", CYCLE, kind="correction", balance="1000.00",
                at=datetime(2026, 5, 16, 8, 0, tzinfo=timezone.utc))
    _, _, read = _write(session_factory, tmp_path)
    [record] = read.records  # one Base Segment for the account, not two rows
    assert record.base["currentBalance"] == 1000 and record.base["complianceConditionCode"] == "XB"
    assert read.trailer["totalBaseRecords"] == 1


@pytest.mark.both_databases
def test_k1_is_there_if_and_only_if_the_profile_collects_as_a_debt_collector(session_factory, tmp_path):
    with session_factory.begin() as db:
        _borrower(db, "B-1")
        _loan(db, "L-1", "B-1", original_creditor="Acme Bank, N.A.")
        _record(db, "L-1", CYCLE)
    _, creditor_text, creditor = _write(session_factory, tmp_path, agency=False)
    assert creditor.records[0].segments == [] and creditor.trailer["totalOriginalCreditorSegments"] == 0
    _, text, agency = _write(session_factory, tmp_path, agency=True)
    [record] = agency.records
    assert record.segment("K1") == [{"segmentIdentifier": "K1", "originalCreditorName": "ACME BANK, N.A.",
                                     "creditorClassification": 12}]
    assert (record.base["portfolioType"], record.base["accountType"]) == ("O", "48")
    assert agency.trailer["totalOriginalCreditorSegments"] == 1
    # Fixed length: every record of the file as long as the Base Segment and its K1.
    assert {len(line) for line in text.splitlines()} == {460} and record.base["recordDescriptorWord"] == 460


def test_k1_follows_the_profiles_in_config(tmp_path):
    from activities.context import ActivitySettings
    from activities.exports import agency_by_profile

    config = Path(__file__).resolve().parent.parent / "config"
    settings = ActivitySettings(lender_name="x", policies_dir=config / "policies", profiles_dir=config / "profiles",
                                pay_link_base_url="http://x", pay_link_secret="s", export_dir=tmp_path)
    collects = agency_by_profile(settings)
    from loaders.config_files import load_policy, load_profile
    for policy in ("us", "default"):
        profile = load_profile(load_policy(policy, settings.policies_dir).profile, settings.profiles_dir)
        assert collects(policy) is profile.collector.collects_as_debt_collector


@pytest.mark.both_databases
def test_the_payment_history_profile_of_an_account_with_three_earlier_cycles(session_factory, tmp_path):
    with session_factory.begin() as db:
        _borrower(db, "B-1")
        _loan(db, "L-1", "B-1")
        _record(db, "L-1", "2026-01", kind="first", status="11")
        _record(db, "L-1", "2026-02", status="71")
        _record(db, "L-1", "2026-02", kind="correction", status="78")  # the cycle's last record counts
        _record(db, "L-1", "2026-04", status="13", rating="2")  # 2026-03: no record
        _record(db, "L-1", CYCLE, status="80")
    _, _, read = _write(session_factory, tmp_path)
    # Most recent first: April (13 with rating 2), March (none: D), February (78), January (11), then B.
    assert read.records[0].base["paymentHistoryProfile"] == "2D20" + "B" * 20
    assert metro2.payment_history_profile("2026-05", {}) == "B" * 24


@pytest.mark.both_databases
def test_an_account_without_ssn_and_date_of_birth_is_refused_alone(session_factory, tmp_path):
    with session_factory.begin() as db:
        _borrower(db, "B-1")
        _borrower(db, "B-2", ssn=None, dob=None)
        _borrower(db, "B-3", ssn=None, dob=date(1985, 6, 1))  # a date of birth alone identifies
        for number in (1, 2, 3):
            _loan(db, f"L-{number}", f"B-{number}")
            _record(db, f"L-{number}", CYCLE)
    written, _, read = _write(session_factory, tmp_path)
    assert written.accounts == ("L-1", "L-3")
    [refusal] = written.refused
    assert refusal.loan_id == "L-2" and refusal.fields == ("borrower.ssn", "borrower.date_of_birth")
    assert "L-2" in refusal.line() and "borrower.ssn" in refusal.line()
    assert [r.base["consumerAccountNumber"] for r in read.records] == ["L-1", "L-3"]
    assert read.trailer["totalBaseRecords"] == 2
    assert json.loads(bureau_refusals_path(tmp_path, CYCLE).read_text()) == [refusal.as_dict()]
    # Once the account can be written, the refusals file goes.
    with session_factory.begin() as db:
        db.get(Borrower, "B-2").ssn = "323456789"
    written, _, _ = _write(session_factory, tmp_path)
    assert written.refused == () and not bureau_refusals_path(tmp_path, CYCLE).exists()


@pytest.mark.both_databases
def test_without_an_identification_number_every_account_is_refused_and_the_file_still_written(session_factory, tmp_path):
    with session_factory.begin() as db:
        _borrower(db, "B-1")
        _loan(db, "L-1", "B-1")
        _record(db, "L-1", CYCLE)
    with session_factory() as db:
        written = write_metro2_cycle(db, tmp_path, CYCLE, furnisher=metro2.Furnisher(), created=CREATED)
    assert written.accounts == () and written.refused[0].fields == ("DUNNING_METRO2_IDENTIFICATION_NUMBER",)
    assert metro2.read(written.path.read_text()).trailer["totalBaseRecords"] == 0


# ------------------------------------------------------- the placement's new fields


def test_the_borrower_block_takes_an_ssn_and_a_date_of_birth_and_never_shows_them():
    contact = BorrowerContact.model_validate({"name": "Jane Public", "email": "jane@example.com",
                                              "ssn": "123-45-6789", "date_of_birth": "1960-02-29"})
    assert contact.ssn == "123456789" and contact.date_of_birth == date(1960, 2, 29)
    assert "123456789" not in repr(contact) and "1960" not in repr(contact)
    assert contact.directory_fields()["ssn"] == "123456789"
    for bad in ("12345678", "000-12-3456", "666-12-3456", "912-34-5678", "123-00-4567", "123-45-0000"):
        with pytest.raises(ValueError) as error:
            BorrowerContact.model_validate({"name": "Jane Public", "email": "jane@example.com", "ssn": bad})
        assert bad not in str(error.value) and bad.replace("-", "") not in str(error.value)
    assert BorrowerContact.model_validate({"name": "J P", "email": "j@example.com", "ssn": " "}).ssn is None


def test_the_itemization_block_takes_date_opened_and_terms():
    block = {"itemization_date": "2026-01-10", "amount_on_itemization_date": "100.00", "current_creditor": "Acme",
             "creditor_on_itemization_date": "Acme", "date_opened": "2025-12-10", "terms_duration": "012",
             "terms_frequency": "M"}
    itemization = Itemization.model_validate(block)
    assert itemization.directory_fields()["date_opened"] == date(2025, 12, 10)
    assert (itemization.terms_duration, itemization.terms_frequency) == ("012", "M")
    with pytest.raises(ValueError):
        Itemization.model_validate({**block, "terms_frequency": "X"})
    with pytest.raises(ValueError):
        Itemization.model_validate({**block, "terms_duration": "12"})
