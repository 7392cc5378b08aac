"""The validation period's end date, as 12 CFR 1006.34(b)(5) defines it.

"Validation period means the period starting on the date that a debt
collector provides the validation information ... and ending 30 days after
the consumer receives or is assumed to receive the validation information.
For purposes of determining the end of the validation period, the debt
collector may assume that a consumer receives the validation information on
any date that is at least five days (excluding legal public holidays
identified in 5 U.S.C. 6103(a), Saturdays, and Sundays) after the debt
collector provides it."

The notice states the end as a date (1006.34(c)(3)(ii)), and the planner
holds collection that would overshadow the consumer's rights until then, so
both compute it here, from the day the notice was provided.
"""

from __future__ import annotations

from datetime import date, timedelta
from functools import lru_cache

import holidays

RECEIPT_BUSINESS_DAYS = 5


@lru_cache(maxsize=16)
def _federal_holidays(year: int) -> frozenset[date]:
    # holidays.US() without subdivisions: the legal public holidays of 5 U.S.C. 6103(a).
    return frozenset(holidays.US(years=year))


def _business_day(day: date) -> bool:
    return day.weekday() < 5 and day not in _federal_holidays(day.year)


def assumed_receipt(provided_on: date) -> date:
    """Five days after `provided_on`, counting neither weekends nor federal holidays."""
    day, counted = provided_on, 0
    while counted < RECEIPT_BUSINESS_DAYS:
        day += timedelta(days=1)
        if _business_day(day):
            counted += 1
    return day


def period_end(provided_on: date, period_days: int = 30) -> date:
    """The last day of the validation period for a notice provided on `provided_on`."""
    return assumed_receipt(provided_on) + timedelta(days=period_days)
