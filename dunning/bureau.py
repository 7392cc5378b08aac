"""Credit-bureau records in a Metro 2-like shape, and when they are due.

Metro 2 (CDIA's Credit Reporting Resource Guide) reports each account once a
reporting cycle with an account status code, the date of first delinquency,
the balance and the amount past due. We keep its codes and field meanings:

- account status by days past due: 71 (30-59), 78 (60-89), 80 (90-119),
  82 (120-149), 83 (150-179), 84 (180+); 11 for an account under 30 days or
  paying under a plan on time; 93 once placed for collection (the legal
  stage) or charged off (written off); 13 paid or settled, 62 paid after it
  was reported 93;
- special comment AC (paying under a partial payment agreement) during a
  plan, AU (paid in full for less than the full balance) when settled;
- compliance condition code XB while the consumer disputes the account
  (FCRA 623(a)(3)), XH once a reported dispute is resolved;
- date of first delinquency: the first day past due, set on the first record
  and never moved (FCRA 623(a)(5)).
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from dunning.state import LoanState

KIND_REGULAR = "regular"
KIND_CORRECTION = "correction"
KIND_FINAL = "final"

CLOSED_OUTCOMES_PAID = ("repaid", "settled")


def status_code(state: LoanState, days_past_due: int, outcome: str | None = None, was_93: bool = False) -> str:
    if outcome in CLOSED_OUTCOMES_PAID or (outcome is None and state.outstanding <= 0):
        return "62" if was_93 else "13"
    if outcome == "written_off" or state.stage == "legal":
        return "93"
    for floor, code in ((180, "84"), (150, "83"), (120, "82"), (90, "80"), (60, "78"), (30, "71")):
        if days_past_due >= floor:
            return code
    return "11"


def special_comment(state: LoanState, outcome: str | None) -> str:
    if outcome == "settled" or (outcome == "repaid" and state.waived > 0):
        return "AU"
    if state.active_plan is not None:
        return "AC"
    return ""


def compliance_code(state: LoanState) -> str:
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
    return due_date + timedelta(days=1)


def record_fields(state: LoanState, days_past_due: int, today: date, outcome: str | None = None) -> dict:
    """The Metro 2-like fields of a record about the loan today (ids, codes and money)."""
    was_93 = state.bureau.reported_93
    return {
        "account_status": status_code(state, days_past_due, outcome, was_93),
        "special_comment": special_comment(state, outcome),
        "compliance_code": compliance_code(state),
        "first_delinquency": (state.bureau.first_delinquency or first_delinquency(state.due_date)).isoformat(),
        "balance": str(state.outstanding) if outcome not in CLOSED_OUTCOMES_PAID else "0",
        "amount_past_due": amount_past_due(state, today) if outcome not in CLOSED_OUTCOMES_PAID else "0",
        "original_amount": str(state.amount_due),
        "days_past_due": days_past_due,
    }
