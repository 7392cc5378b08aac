"""Issue 16, items 1 and 2: the Metro 2 codes and dates of a bureau record
(dunning/bureau.py has them and their sources). An upheld dispute deletes
the account (DA); a write-off is a charge-off (97), paid after it 64, paid
after collection 62; the payment rating goes with the statuses the CRRG
requires it with; the date of first delinquency is the due date + 30 days
and never moves. Through the pure functions, then through the planner's walk
and the workflow's own transitions (as tests/test_deep_stages.py does on
the time-skipping server)."""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone
from decimal import Decimal

import pytest

from dunning import bureau
from dunning.clock import LoanClock
from dunning.inputs import DisputeResolvedSignal, DisputeSignal
from dunning.state import Installment, LoanState, Plan
from dunning.transitions import holds, payments, stages
from dunning.transitions.records import Moment
from loaders.config_files import load_policy
from tests.support.planner import DUE, POLICIES, new_state, walk

DOFD = DUE + timedelta(days=30)
ZONE = "Asia/Shanghai"


def loan(stage: str = "credit_reporting", **changes) -> LoanState:
    return new_state(stage=stage, **changes)


def fields(state: LoanState, day: int, outcome: str | None = None) -> dict:
    return bureau.record_fields(state, day, DUE + timedelta(days=day), outcome)


# ------------------------------------------------------------ pure functions


def test_the_date_of_first_delinquency_is_30_days_after_the_due_date():
    assert bureau.first_delinquency(DUE) == DOFD == DUE + timedelta(days=30)
    for day in (31, 62, 95, 179, 200):
        assert fields(loan(), day)["first_delinquency"] == DOFD.isoformat()


@pytest.mark.parametrize(
    ("days", "rating"),
    [(0, "0"), (29, "0"), (30, "1"), (59, "1"), (60, "2"), (89, "2"), (90, "3"), (119, "3"),
     (120, "4"), (149, "4"), (150, "5"), (179, "5"), (180, "6"), (400, "6")],
)
def test_payment_ratings_by_days_past_due(days, rating):
    assert bureau.payment_rating(loan(), days) == rating


def test_payment_ratings_for_collection_and_charge_off():
    assert bureau.payment_rating(loan("legal"), 95) == "G"
    assert bureau.payment_rating(loan(), 40, was_93=True) == "G"
    assert bureau.payment_rating(loan("legal"), 180, outcome="written_off") == "L"
    assert bureau.payment_rating(loan(), 40, was_93=True, was_97=True) == "L"


def test_the_rating_is_reported_with_the_statuses_the_crrg_requires_it_with_and_blank_with_the_others():
    assert bureau.RATED_STATUSES == {"05", "13", "65", "88", "89", "94", "95"}
    for status in ("05", "13", "65", "88", "89", "94", "95"):
        assert bureau.reported_rating(status, "1") == "1"
    for status in ("11", "61", "62", "63", "64", "71", "78", "80", "82", "83", "84", "93", "96", "97", "DA", "DF"):
        assert bureau.reported_rating(status, "1") == ""


def test_delinquent_statuses_carry_no_rating_and_the_date_of_first_delinquency():
    for day, status in ((31, "71"), (61, "78"), (91, "80"), (121, "82"), (151, "83"), (181, "84")):
        record = fields(loan(), day)
        assert (record["account_status"], record["payment_rating"], record["first_delinquency"]) == (status, "", DOFD.isoformat())
    record = fields(loan("legal"), 95)
    assert (record["account_status"], record["payment_rating"], record["first_delinquency"]) == ("93", "", DOFD.isoformat())


def test_a_write_off_is_a_charge_off_97_not_93():
    for stage in ("credit_reporting", "legal"):
        record = fields(loan(stage), 180, "written_off")
        assert record["account_status"] == "97"
        # 97 carries no rating (CRRG 17B); its condition, were it asked, is L.
        assert record["payment_rating"] == ""
        assert bureau.payment_rating(loan(stage), 180, "written_off") == "L"
        assert record["first_delinquency"] == DOFD.isoformat()
        assert (record["balance"], record["amount_past_due"]) == ("1200.00", "1200.00")


def test_paid_after_a_charge_off_is_64_and_after_collection_62():
    charged_off = loan("legal")
    charged_off.bureau.reported_93 = charged_off.bureau.reported_97 = True
    record = fields(charged_off, 200, "repaid")
    assert (record["account_status"], record["payment_rating"], record["balance"], record["amount_past_due"]) == ("64", "", "0", "0")
    assert record["first_delinquency"] == DOFD.isoformat()
    assert bureau.status_code(loan(), 200, "settled", was_97=True) == "64"

    collected = loan("legal")
    collected.bureau.reported_93 = True
    record = fields(collected, 120, "repaid")
    assert (record["account_status"], record["payment_rating"], record["balance"]) == ("62", "", "0")
    assert record["first_delinquency"] == DOFD.isoformat()
    settled = fields(collected, 120, "settled")
    assert (settled["account_status"], settled["special_comment"]) == ("62", "AU")


def test_paid_without_93_or_97_is_13_with_the_rating_of_what_came_before():
    # Paid before it was ever 30 days late: rating 0 and no date of first
    # delinquency (CRRG field 25: zero-filled for 13 with rating 0).
    record = fields(loan("negotiation"), 20, "repaid")
    assert (record["account_status"], record["payment_rating"], record["first_delinquency"]) == ("13", "0", "")
    assert (record["balance"], record["amount_past_due"]) == ("0", "0")
    # Paid 40 days late: 13 with rating 1, and the date it first went delinquent.
    record = fields(loan(), 40, "repaid")
    assert (record["account_status"], record["payment_rating"], record["first_delinquency"]) == ("13", "1", DOFD.isoformat())
    assert (fields(loan(), 100, "settled")["account_status"], fields(loan(), 100, "settled")["payment_rating"]) == ("13", "3")
    # Paid in the legal stage before any 93 was reported: 13, rating G.
    assert (fields(loan("legal"), 92, "repaid")["account_status"], fields(loan("legal"), 92, "repaid")["payment_rating"]) == ("13", "G")


def test_a_current_account_reports_no_date_of_first_delinquency():
    record = fields(loan("negotiation"), 29)
    assert (record["account_status"], record["payment_rating"], record["first_delinquency"]) == ("11", "", "")


def test_an_upheld_dispute_deletes_the_account():
    state = loan(disputed=False, dispute_upheld=True)
    state.bureau.reported_disputed = True  # it was reported XB
    state.plans.append(Plan(plan_no=1, accepted_on=DUE + timedelta(days=40), total=Decimal("1200.00"), paid_before=Decimal("0"),
                            installments=[Installment(number=1, due_date=DUE + timedelta(days=50), amount=Decimal("1200.00"))]))
    record = fields(state, 78, "dispute_upheld")
    assert record["account_status"] == "DA"
    assert (record["balance"], record["amount_past_due"]) == ("0", "0")
    assert (record["special_comment"], record["compliance_code"], record["payment_rating"], record["first_delinquency"]) == ("", "", "", "")
    # Even from the legal stage after 93 was reported.
    legal = loan("legal", dispute_upheld=True)
    legal.bureau.reported_93 = True
    assert fields(legal, 120, "dispute_upheld")["account_status"] == "DA"


# ------------------------------------------------ through the planner's walk


def start_at(day: int, hour: int) -> datetime:
    return LoanClock(datetime.now(timezone.utc), ZONE, DUE).at(day, time(hour))


class Loan:
    """A loan walked by the planner (tests/support/planner.py) with the
    bureau records it files captured, then driven by the transitions the
    workflow runs on a signal and at closing."""

    def __init__(self, monkeypatch, start_day: int = 30):
        self.policy = load_policy("default", POLICIES)
        self.state = new_state()
        self.start = start_at(start_day, 12)
        self.clock = LoanClock(self.start, ZONE, DUE, self.policy.day_seconds)
        self.records: list[dict] = []
        filed = stages.bureau_record

        def capturing(*args, **kwargs):
            write = filed(*args, **kwargs)
            self.records.append(write.record.fields)
            return write

        monkeypatch.setattr(stages, "bureau_record", capturing)

    def walk(self, until_day: int | None = None):
        events, action = walk(self.policy, self.state, self.start, until_day=until_day)
        return events, action

    def moment(self, day: int) -> Moment:
        return Moment("dunning-L-1", "run-1", self.clock.real_time(self.clock.at(day, time(15))), self.clock)

    def file(self, day: int, kind: str, outcome: str | None = None) -> dict:
        moment = self.moment(day)
        stages.bureau_record(self.state, self.clock, moment.loan_now, moment, kind, outcome).then()
        return self.records[-1]

    def pay_in_full(self, day: int) -> str:
        moment = self.moment(day)
        amount = str(self.state.outstanding)
        receipt = payments.receive_payment(self.state, {"payment_id": f"P-{day}", "amount": amount, "currency": "CNY"}, moment, None)
        assert receipt.applied is not None
        outcome = stages.ending(self.state)
        assert outcome == "repaid"
        return outcome


def test_a_walked_write_off_reports_93_in_legal_then_97_and_one_date_of_first_delinquency(monkeypatch):
    loan_ = Loan(monkeypatch)
    events, action = loan_.walk()
    assert action.kind == "write_off"
    final = loan_.file(loan_.clock.days_past_due(action.at), "final", "written_off")
    statuses = [r["account_status"] for r in loan_.records]
    assert statuses[0] == "71" and final["account_status"] == "97" and final["payment_rating"] == ""
    legal = [r for r in loan_.records[:-1] if r["days_past_due"] >= 91]
    assert legal and {r["account_status"] for r in legal} == {"93"}
    assert {r["first_delinquency"] for r in loan_.records} == {DOFD.isoformat()}, "set once, never moved"
    assert all(r["payment_rating"] == "" for r in loan_.records), "no status here takes a rating"
    assert loan_.state.bureau.first_delinquency == DOFD and loan_.state.bureau.reported_97


def test_a_walked_loan_paid_in_collection_is_62_and_paid_while_71_is_13_with_rating_1(monkeypatch):
    collected = Loan(monkeypatch)
    collected.walk(until_day=125)
    assert collected.state.bureau.reported_93
    outcome = collected.pay_in_full(125)
    final = collected.file(125, "final", outcome)
    assert (final["account_status"], final["payment_rating"]) == ("62", "")
    assert (final["outstanding"], final["amount_past_due"]) == ("0", "0")
    assert {r["first_delinquency"] for r in collected.records} == {DOFD.isoformat()}

    early = Loan(monkeypatch)
    early.walk(until_day=40)
    assert [r["account_status"] for r in early.records] == ["71"]
    final = early.file(40, "final", early.pay_in_full(40))
    assert (final["account_status"], final["payment_rating"], final["first_delinquency"]) == ("13", "1", DOFD.isoformat())


def test_a_walked_loan_whose_dispute_is_upheld_ends_with_the_account_deleted(monkeypatch):
    loan_ = Loan(monkeypatch)
    loan_.walk(until_day=70)
    holds.open_dispute(loan_.state, DisputeSignal(reason="not mine"), loan_.moment(70))
    disputed = loan_.file(70, "regular")
    assert disputed["compliance_code"] == "XB" and disputed["account_status"] == "78"
    holds.resolve_dispute(loan_.state, DisputeResolvedSignal(upheld=True), loan_.moment(75))
    outcome = stages.ending(loan_.state)
    assert outcome == "dispute_upheld"
    final = loan_.file(75, "final", outcome)
    assert final["account_status"] == "DA"
    assert (final["outstanding"], final["amount_past_due"]) == ("0", "0")
    assert (final["compliance_code"], final["special_comment"], final["payment_rating"], final["first_delinquency"]) == ("", "", "", "")
    assert final["kind"] == "final" and final["key"].endswith("final")


def test_a_date_of_first_delinquency_carried_over_from_before_issue_16_is_corrected(monkeypatch):
    loan_ = Loan(monkeypatch)
    loan_.walk(until_day=40)
    loan_.state.bureau.first_delinquency = DUE + timedelta(days=1)  # a run from before: the due date + 1
    record = loan_.file(45, "correction")
    assert record["first_delinquency"] == DOFD.isoformat() and loan_.state.bureau.first_delinquency == DOFD
