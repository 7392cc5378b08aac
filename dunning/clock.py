"""The loan's clock: days past due in the borrower's time zone, on real or
compressed time.

Production policies run on real time (a day is 86400 s). The demo policy
shortens the day, so the clock maps real instants to *loan time*, which runs
faster from an anchor (the moment the workflow started). All arithmetic is in
whole microseconds with exact fractions, so that mapping a loan instant to real
time and back never lands a hair before the instant it aimed at: a timer set
for the start of day 8 wakes on day 8, not at 23:59:59.99 of day 7.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from fractions import Fraction
from functools import cached_property
from zoneinfo import ZoneInfo

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_DAY_SECONDS = 86400


def _to_us(instant: datetime) -> int:
    delta = instant - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def _from_us(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


@dataclass(frozen=True)
class LoanClock:
    anchor: datetime  # a real instant (aware) where loan time equals real time
    time_zone: str
    due_date: date
    day_seconds: float = _DAY_SECONDS

    @cached_property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    @cached_property
    def _speed(self) -> Fraction:
        return Fraction(_DAY_SECONDS) / Fraction(self.day_seconds)

    def loan_time(self, real: datetime) -> datetime:
        """The loan-time instant for a real instant, in the borrower's zone."""
        anchor = _to_us(self.anchor)
        elapsed = _to_us(real) - anchor
        return _from_us(anchor + math.floor(elapsed * self._speed)).astimezone(self.zone)

    def real_time(self, loan: datetime) -> datetime:
        """The earliest real instant whose loan time is at or after `loan`."""
        anchor = _to_us(self.anchor)
        elapsed = _to_us(loan) - anchor
        return _from_us(anchor + math.ceil(elapsed / self._speed)).astimezone(self.zone)

    def days_past_due(self, loan: datetime) -> int:
        """Day 1 is the first local day after the due date."""
        return (loan.astimezone(self.zone).date() - self.due_date).days

    def at(self, day: int, local: time = time(0, 0)) -> datetime:
        """Loan time of a local wall-clock time on a day past due."""
        return datetime.combine(self.due_date + timedelta(days=day), local, tzinfo=self.zone)
