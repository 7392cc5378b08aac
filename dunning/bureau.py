"""Credit-bureau records in a Metro 2-like shape, and when they are due.

Metro 2 (CDIA's Credit Reporting Resource Guide, the CRRG) reports each
account once a reporting cycle with an account status code, a payment rating
where the status needs one, the date of first delinquency, the balance and
the amount past due. We keep its codes and field meanings. Where we read them
(the CRRG itself is not public): the CRRG's field definitions as quoted in
moov-io/metro2 (pkg/lib/base_segment.go, fields 17A, 17B and 25, and
`ValidatePaymentRating`), the CRRG FAQs as republished by M2 Reporter
(m2reporter.com/help/faq.html, FAQ 12; "FAQ 34 - charged off accounts") and
Metro 2 software guides (metro2.switchlabs.dev/metro2/status-code/97;
NetSol's "Remove lease" DA/DF page).

Account status (field 17A):

- by days past due: 71 (30-59), 78 (60-89), 80 (90-119), 82 (120-149),
  83 (150-179), 84 (180+); 11 under 30 days;
- 93 once placed for collection (our legal stage: "account assigned to
  internal or external collections");
- 97 when written off ("unpaid balance reported as a loss", a charge-off),
  even from the legal stage;
- 13 paid or settled ("paid or closed account / zero balance"); 62 paid after
  it was reported 93 ("paid in full, was a collection account"); 64 paid
  after it was reported 97 ("paid in full, was a charge-off");
- DA ("delete entire account, for reasons other than fraud") as the final
  record when a dispute is upheld: the account was reported in error, so
  FCRA 623(a)(2) has us correct it so that no delinquency remains; deleting
  it does that. Balance and amount past due 0, no comment, no compliance
  code, no date of first delinquency.

Payment rating (field 17B): 0 current (0-29 days past the due date), 1 30-59,
2 60-89, 3 90-119, 4 120-149, 5 150-179, 6 180+, G collection, L charge-off:
the account's condition before the status reported. The CRRG requires it with
statuses 05, 13, 65, 88, 89, 94 and 95 and has it blank with every other
status (moov-io/metro2 rejects a rating with any other status; M2 Reporter's
FAQ 12 gives the same list). Of these we report only 13; 61-64, 97 and DA
carry no rating, since the status itself says what the account was.

Special comment (field 19): AC (paying under a partial payment agreement)
during a plan, AU (paid in full for less than the full balance) when settled.

Compliance condition code (field 20): XB while the consumer disputes the
account (FCRA 623(a)(3)), XH once a reported dispute is resolved.

Date of first delinquency (field 25): "the date of the first 30-day
delinquency that led to the status being reported. This date should be 30
days after the Due Date." A loan here has one payment, so the first missed
payment is the due date and the date is the due date + 30 days; the account is
never brought current short of being paid off, so the date is set with the
first record and never moves (FCRA 623(a)(5)). It is reported with statuses
61-65, 71-84, 88, 89 and 93-97, and with 05 or 13 when the payment rating is
not 0; zero-filled (blank here) otherwise (11, 13 with rating 0, DA).

Legal statuses (issue 18, item 1; the `legal_status` signal). The fields'
definitions as moov-io/metro2 quotes the CRRG (pkg/lib/base_segment.go,
fields 37 and 38), the codes from CRRG Exhibits 10 and 11, and its FAQs as
M2 Reporter republishes them (FAQ 19, deceased borrowers):

- Consumer Information Indicator (field 38, `consumerInformationIndicator`):
  "a special condition of the account that applies to the primary consumer
  ... that a bankruptcy was filed, discharged, dismissed or withdrawn ...
  The indicator should be reported one time and will remain on file until
  another Consumer Information Indicator or a Removal value is reported. As
  an option, the indicator may be reported each month as long as the
  condition applies." We report it on every record while it applies: A, B,
  C, D a petition under chapter 7, 11, 12, 13; E, F, G, H discharged under
  them; I, J, K, L dismissed; Q "removes" a bankruptcy indicator (A-P, Z,
  1A), reported once after a status set by mistake is cleared.
- While a bankruptcy runs and when it is discharged, the Account Status is
  the one of the petition's day (the account is frozen by the stay; it does
  not age into 78, 80 ...); discharged, Current Balance and Amount Past Due
  are zero (the debt is no longer owed, 11 U.S.C. 524(a)). Field 25's rule
  3: with CII A-H an account that is current (11, or 05/13 rated 0) carries
  the petition's date as its Date of First Delinquency, "for purging purposes".
- ECOA Code (field 37, `ecoaCode`): 1 individual (every account here), X
  deceased. FAQ 19: "Deceased borrowers should be reported with ECOA Code
  X"; for an individual account, "stop reporting the entire account" once it
  was reported with X (dunning/legal_status.py `reports_to_bureau`), and
  "do not report ECOA Code X until you have received a legally-sufficient
  death notice" (the signal's `reference` names it).
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from dunning.state import LoanState
from dunning import contract

KIND_REGULAR = "regular"
KIND_CORRECTION = "correction"
KIND_FINAL = "final"

CLOSED_OUTCOMES_PAID = ("repaid", "settled")
OUTCOME_WRITTEN_OFF = "written_off"
OUTCOME_DISPUTE_UPHELD = "dispute_upheld"

STATUS_CURRENT = "11"
STATUS_PAID = "13"
STATUS_PAID_AFTER_COLLECTION = "62"
STATUS_PAID_AFTER_CHARGE_OFF = "64"
STATUS_COLLECTION = "93"
STATUS_CHARGE_OFF = "97"
STATUS_DELETE = "DA"
OUTCOME_DISCHARGED = contract.OUTCOME_DISCHARGED

# Field 38 by bankruptcy chapter (CRRG Exhibit 11), and the removal value.
CII_PETITION = {7: "A", 11: "B", 12: "C", 13: "D"}
CII_DISCHARGED = {7: "E", 11: "F", 12: "G", 13: "H"}
CII_DISMISSED = {7: "I", 11: "J", 12: "K", 13: "L"}
CII_REMOVE = "Q"
BANKRUPTCY_CIIS = frozenset({*CII_PETITION.values(), *CII_DISCHARGED.values(), *CII_DISMISSED.values()})
# Field 37 (CRRG Exhibit 10): "1" individual, reported blank here and filled
# by the export (activities/exports.py); X deceased.
ECOA_DECEASED = "X"

# Field 17B: the statuses that must carry a payment rating; every other status
# leaves it blank.
RATED_STATUSES = frozenset({"05", "13", "65", "88", "89", "94", "95"})
# Field 25, rule 1: the statuses reported with the date of first delinquency.
DELINQUENT_STATUSES = frozenset(
    {"61", "62", "63", "64", "65", "71", "78", "80", "82", "83", "84", "88", "89", "93", "94", "95", "96", "97"}
)

_BY_DAYS = ((180, "84", "6"), (150, "83", "5"), (120, "82", "4"), (90, "80", "3"), (60, "78", "2"), (30, "71", "1"))
DAYS_TO_FIRST_DELINQUENCY = 30


def _paid(state: LoanState, outcome: str | None) -> bool:
    return outcome in CLOSED_OUTCOMES_PAID or (outcome is None and state.outstanding <= 0)


def status_code(
    state: LoanState, days_past_due: int, outcome: str | None = None, was_93: bool = False, was_97: bool = False
) -> str:
    """Field 17A: the account's condition on the record's day. `was_93` and
    `was_97`: an earlier record carried 93 (collection) or 97 (charge-off)."""
    if outcome == OUTCOME_DISPUTE_UPHELD:
        return STATUS_DELETE
    if _paid(state, outcome):
        if was_97:
            return STATUS_PAID_AFTER_CHARGE_OFF
        return STATUS_PAID_AFTER_COLLECTION if was_93 else STATUS_PAID
    if outcome == OUTCOME_WRITTEN_OFF:
        return STATUS_CHARGE_OFF
    if state.stage == "legal":
        return STATUS_COLLECTION
    for floor, code, _ in _BY_DAYS:
        if days_past_due >= floor:
            return code
    return STATUS_CURRENT


def payment_rating(
    state: LoanState, days_past_due: int, outcome: str | None = None, was_93: bool = False, was_97: bool = False
) -> str:
    """Field 17B's code for the account's condition before the status
    reported: L charged off, G in collection (the legal stage), else by days
    past due (0 under 30 days)."""
    if outcome == OUTCOME_WRITTEN_OFF or was_97:
        return "L"
    if state.stage == "legal" or was_93:
        return "G"
    for floor, _, rating in _BY_DAYS:
        if days_past_due >= floor:
            return rating
    return "0"


def reported_rating(status: str, rating: str) -> str:
    """The payment rating as reported with `status`: blank unless the status requires one."""
    return rating if status in RATED_STATUSES else ""


def special_comment(state: LoanState, outcome: str | None) -> str:
    if outcome == OUTCOME_DISPUTE_UPHELD:
        return ""
    if outcome == "settled" or (outcome == "repaid" and state.waived > 0):
        return "AU"
    if state.active_plan is not None:
        return "AC"
    return ""


def compliance_code(state: LoanState, outcome: str | None = None) -> str:
    if outcome == OUTCOME_DISPUTE_UPHELD:
        return ""  # the account is deleted: nothing is left to qualify
    if state.disputed:
        return "XB"
    if state.bureau.reported_disputed:
        return "XH"
    return ""


def amount_past_due(state: LoanState, today: date) -> str:
    """Under a plan, the installments due and unpaid; otherwise the whole
    balance (the loan is past its single due date)."""
    plan = state.active_plan
    if plan is None:
        return str(state.outstanding)
    covered = plan.paid_under_plan(state.amount_paid)
    due = sum((i.amount for i in plan.installments if i.due_date <= today), Decimal("0"))
    return str(max(due - covered, Decimal("0")))


def cycle_of(day: date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def next_cycle_start(state: LoanState, report_day: int) -> date:
    """The local date the next regular record is due: `report_day` of the month
    after the last one reported."""
    year, month = (int(x) for x in state.bureau.last_cycle.split("-"))
    month += 1
    if month > 12:
        year, month = year + 1, 1
    return date(year, month, report_day)


def first_delinquency(due_date: date) -> date:
    """Field 25: 30 days after the due date of the first payment missed and
    never brought current; a loan here has one payment, due on `due_date`."""
    return due_date + timedelta(days=DAYS_TO_FIRST_DELINQUENCY)


def reports_first_delinquency(status: str, rating: str) -> bool:
    """Field 25's hierarchy: a delinquent status, or 05/13 after a delinquency."""
    return status in DELINQUENT_STATUSES or (status in ("05", "13") and rating not in ("", "0"))


def consumer_information_indicator(state: LoanState, outcome: str | None = None) -> str:
    """Field 38 on a record today: the bankruptcy's indicator while it
    applies, Q once after one set by mistake was cleared, else blank."""
    legal = state.legal_status
    if legal is None:
        return ""
    if legal.discharged_chapter is not None:
        return CII_DISCHARGED[legal.discharged_chapter]
    filed = legal.find(contract.LEGAL_STATUS_BANKRUPTCY_FILED)
    if filed is not None:
        return CII_PETITION[filed.chapter]
    if legal.dismissed_chapter is not None:
        return CII_DISMISSED[legal.dismissed_chapter]
    if state.bureau.cii_on_file in BANKRUPTCY_CIIS:
        return CII_REMOVE  # the bureau has one on file that no longer applies
    return ""


def ecoa_code(state: LoanState) -> str:
    """Field 37 when it is not the individual's 1 (the export's default): X
    for a deceased borrower."""
    legal = state.legal_status
    if legal is not None and legal.find(contract.LEGAL_STATUS_DECEASED) is not None:
        return ECOA_DECEASED
    return ""


def _petition_day(state: LoanState, outcome: str | None) -> int | None:
    """The petition's day past due while a bankruptcy runs or once it is
    discharged: the account is reported as it stood then."""
    legal = state.legal_status
    if legal is None or legal.petition_day is None:
        return None
    if legal.find(contract.LEGAL_STATUS_BANKRUPTCY_FILED) is None and legal.discharged_chapter is None:
        return None
    return legal.petition_day


def record_fields(state: LoanState, days_past_due: int, today: date, outcome: str | None = None) -> dict:
    """The Metro 2-like fields of a record about the loan today (ids, codes and money)."""
    was_93, was_97 = state.bureau.reported_93, state.bureau.reported_97
    petition_day = _petition_day(state, outcome)
    aged = days_past_due if petition_day is None else min(days_past_due, petition_day)
    status = status_code(state, aged, outcome, was_93, was_97)
    rating = payment_rating(state, aged, outcome, was_93, was_97)
    dofd = first_delinquency(state.due_date)
    cii = consumer_information_indicator(state, outcome)
    zero = outcome in CLOSED_OUTCOMES_PAID or status == STATUS_DELETE or outcome == OUTCOME_DISCHARGED
    reported_dofd = dofd.isoformat() if reports_first_delinquency(status, rating) else ""
    current = status == STATUS_CURRENT or (status in ("05", STATUS_PAID) and rating == "0")
    if current and cii in BANKRUPTCY_CIIS - set(CII_DISMISSED.values()) and state.legal_status.petition_date:
        # Field 25, rule 3: a current account in bankruptcy carries the petition's date.
        reported_dofd = state.legal_status.petition_date.isoformat()
    return {
        "account_status": status,
        "payment_rating": reported_rating(status, rating),
        "special_comment": special_comment(state, outcome),
        "compliance_code": compliance_code(state, outcome),
        "first_delinquency": reported_dofd,
        "balance": "0" if zero else str(state.outstanding),
        "amount_past_due": "0" if zero else amount_past_due(state, today),
        "original_amount": str(state.amount_due),
        "days_past_due": days_past_due,
        # Issue 18, item 1: blank unless a legal status sets them.
        "consumer_information_indicator": cii,
        "ecoa_code": ecoa_code(state),
    }
