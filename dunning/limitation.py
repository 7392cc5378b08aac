"""Time-barred debt (issue 18, item 2): when the statute of limitations
that applies to a loan runs out, and what that changes.

The rules as written:

- 12 CFR 1006.26(a)(1)-(2): "Statute of limitations means the period
  prescribed by applicable law for bringing a legal action against the
  consumer to collect a debt"; "Time-barred debt means a debt for which the
  applicable statute of limitations has expired." (b): "A debt collector
  must not bring or threaten to bring a legal action against a consumer to
  collect a time-barred debt." So a time-barred loan never enters the legal
  stage (a case opened and not yet filed stops: it is never filed) and every
  message about it is rendered in its time-barred variant, which threatens
  no suit and carries the disclosure its jurisdiction requires (the
  templates' `{% if time_barred %}`; the template lint checks both).
- The period itself, from which event it runs and whether a payment starts
  it again are the jurisdiction's: the loan's profile (config/profiles,
  `[limitations."US-CA"]`, with the sources quoted there). prepare_loan
  hands the workflow the one rule that applies (`LimitationRule`: numbers
  and keys, never the jurisdiction); a loan whose jurisdiction the profile
  does not list, or that was placed without one, has no limitation applied.
- FCRA 605(a)(4), (c)(1) (15 U.S.C. 1681c): an account placed for collection
  is not reported once it "antedate[s] the report by more than seven years",
  the 7 years beginning "upon the expiration of the 180-day period beginning
  on the date of the commencement of the delinquency". Some jurisdictions
  word the disclosure otherwise past that date (Cal. Civ. Code
  1788.14(d)(2): "we will not report it to any credit reporting agency"),
  so a time-barred loan past it files no more bureau records.

How the dates are counted (the cautious side wherever a rule leaves room):
the period runs from the first day of delinquency (the day after the due
date) or from the last payment; a payment restarts it from the day it counts
from, where the rule says so. The debt is time-barred from the day `years`
calendar years after that day (29 February counts to 28 February): the
anniversary itself, a day before the last day on which a rule that excludes
the first day (Cal. Code Civ. Proc. 12) would still let an action be filed,
so no message ever threatens suit on a day a court could count as barred. A
payment never revives a time-barred debt (Cal. Code Civ. Proc. 360: "no
such payment of itself shall revive a cause of action once barred"; N.Y.
CPLR 214-i: "any subsequent payment toward ... the debt does not revive or
extend the limitation period"). A payment reversed before the debt was
time-barred no longer restarts it.

Pure functions, like dunning/settlements.py; the transitions are
dunning/transitions/limitation.py.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from dunning import bureau
from dunning.state import Limitation, LimitationRestart, LoanState

# FCRA 605(a)(4), (c)(1).
FCRA_REPORTING_YEARS = 7
FCRA_DELAY_DAYS = 180


class LimitationRule(BaseModel):
    """What prepare_loan gives the workflow (activities/payloads.py
    PreparedLoan.limitation): the profile's rule for the loan's
    jurisdiction, and the placement's last payment where the rule runs from
    it. Numbers, dates and keys only."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    years: int = Field(ge=1, le=30)
    runs_from: Literal["first_delinquency", "last_payment"]
    payment_restarts: bool = False
    partial_payment_restarts: bool = False
    disclosure: str = ""
    disclosure_after_obsolescence: str = ""
    last_payment_date: date | None = None


def add_years(day: date, years: int) -> date:
    """The same calendar day `years` later; 29 February becomes 28 February
    (the earlier day: the cautious side)."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return day.replace(year=day.year + years, day=28)


def first_day_of_delinquency(due_date: date) -> date:
    """The first day the payment was missed: the day after the due date (day 1)."""
    return due_date + timedelta(days=1)


def obsolete_on(due_date: date) -> date:
    """FCRA 605(c)(1): 7 years from the end of the 180 days that begin on the
    commencement of the delinquency, the date of first delinquency the
    bureau records carry (dunning/bureau.py: the due date + 30)."""
    return add_years(bureau.first_delinquency(due_date) + timedelta(days=FCRA_DELAY_DAYS), FCRA_REPORTING_YEARS)


def start(rule: LimitationRule, due_date: date) -> Limitation:
    """The loan's limitation when it starts: from the first day of
    delinquency, or from the last payment the placement names (none named:
    the first day of delinquency, as nothing was paid since)."""
    runs_from_date = first_day_of_delinquency(due_date)
    if rule.runs_from == "last_payment" and rule.last_payment_date is not None:
        runs_from_date = rule.last_payment_date
    return Limitation(
        years=rule.years, runs_from=rule.runs_from, payment_restarts=rule.payment_restarts,
        partial_payment_restarts=rule.partial_payment_restarts, disclosure=rule.disclosure,
        disclosure_after_obsolescence=rule.disclosure_after_obsolescence, runs_from_date=runs_from_date,
        obsolete_on=obsolete_on(due_date),
    )


def time_barred_on(limitation: Limitation) -> date:
    """The first day the debt is time-barred (recorded, or as it stands now)."""
    if limitation.time_barred_since is not None:
        return limitation.time_barred_since
    return add_years(limitation.runs_since, limitation.years)


def is_time_barred(state: LoanState, today: date) -> bool:
    """Whether the loan's debt is time-barred on its local day `today`."""
    limitation = state.limitation
    return limitation is not None and (limitation.time_barred or today >= time_barred_on(limitation))


def pays_what_is_due(state: LoanState, today: date) -> bool:
    """A payment just applied leaves nothing due: the balance is paid, or a
    running plan's installments due by `today` are covered. Otherwise it was
    a partial payment."""
    if state.outstanding <= 0:
        return True
    plan = state.active_plan
    if plan is None:
        return False
    due = sum((i.amount for i in plan.installments if i.due_date <= today), start=plan.total * 0)
    return due > 0 and plan.paid_under_plan(state.amount_paid) >= due


def restart(limitation: Limitation, payment_id: str, day: date, full: bool) -> LimitationRestart | None:
    """A payment counted from `day`: the restart it makes, or None when the
    rule does not restart on it (a partial one where only full ones do),
    the debt is time-barred already (a payment never revives it), or it
    moves nothing (a day not after the one the period runs from)."""
    if limitation.time_barred or day >= time_barred_on(limitation):
        return None
    if not limitation.payment_restarts or (not full and not limitation.partial_payment_restarts):
        return None
    if day <= limitation.runs_since:
        return None
    return LimitationRestart(payment_id=payment_id, on=day)


def disclosure_key(limitation: Limitation, today: date) -> str:
    """The disclosure a time-barred message carries on `today`: the one for
    a debt past the FCRA obsolescence date where the rule names one."""
    if limitation.disclosure_after_obsolescence and today >= limitation.obsolete_on:
        return limitation.disclosure_after_obsolescence
    return limitation.disclosure


def reports_to_bureau(state: LoanState, today: date) -> bool:
    """No bureau record for a time-barred debt past the FCRA 605 obsolescence
    date (what the disclosure then promises, Cal. Civ. Code 1788.14(d)(2))."""
    limitation = state.limitation
    return limitation is None or not (is_time_barred(state, today) and today >= limitation.obsolete_on)
