"""The validation notice's progress: sent first, delivered before collection.

Under a profile with `validation_notice_delivery` (us):
- the notice is the loan's first contact (12 CFR 1006.34(a)(1)), by the
  profile's channels in order (e-mail, then a mailed letter);
- it counts as provided when the e-mail provider reports it delivered (or
  opened, clicked), or when the print-and-mail provider took the letter
  (1006.42(a): mail is a method "reasonably expected to provide actual
  notice"); a failed, bounced or undelivered notice falls back to the next
  channel, and so does an e-mail with no delivery report after the
  profile's `notice_delivery_wait_hours`;
- until it is provided, no other collection contact goes out (issue 15,
  items 5 and 11): the notice goes first, alone;
- the validation period ends on 1006.34(b)(5)'s date (validation_period.py);
  a dispute before it ends holds collection until verification is sent
  (1006.38(d)(2)), and templates the profile names as overshadowing
  (a credit-report or legal notice) wait until it has ended (1006.38(b)).

Profiles without the setting (cn, and every run recorded before it
existed) keep the older rule: the notice only has to go out, by e-mail or
SMS.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from dunning.compliance import Profile
from dunning.state import ContactEntry, LoanState, ValidationNotice
from dunning.validation_period import period_end

VALIDATION_NOTICE = "validation_notice"
DELIVERED_RESULTS = frozenset({"delivered", "opened", "clicked"})


@dataclass(frozen=True)
class NoticeProgress:
    """What the notice asks of the planner now."""

    channel: str | None = None  # send the notice by this channel now
    blocks_collection: bool = False  # no other collection contact yet
    wake: datetime | None = None  # loan time to look again (a delivery report's wait ends)
    exhausted: bool = False  # every channel tried: the notice cannot be provided


def _provided(contact: ContactEntry) -> bool:
    if contact.channel == "letter":
        return contact.went_out
    return contact.result in DELIVERED_RESULTS


def provided_notice(state: LoanState) -> ContactEntry | None:
    return next((c for c in state.contacts if c.template == VALIDATION_NOTICE and _provided(c)), None)


def next_channel(channels: tuple[str, ...], tried: set[str], state: LoanState) -> str | None:
    """The first of a notice's channels not tried yet and not opted out of."""
    return next((c for c in channels if c not in tried and not state.channel_opted_out(c)), None)


def progress(profile: Profile, state: LoanState, now: datetime) -> NoticeProgress:
    """Where the notice stands under `profile`, at loan time `now`."""
    notices = profile.notices
    tried = [c for c in state.contacts if c.template == VALIDATION_NOTICE]
    if not notices.validation_notice_delivery:
        if any(c.went_out for c in tried):
            return NoticeProgress()
        channel = next_channel(notices.validation_notice_channels, {c.channel for c in tried}, state)
        return NoticeProgress(channel=channel, blocks_collection=True) if channel else NoticeProgress()
    if provided_notice(state) is not None:
        return NoticeProgress()
    wait = timedelta(hours=notices.notice_delivery_wait_hours)
    awaiting = [c for c in tried if c.went_out and c.loan_at + wait > now]
    if awaiting:
        return NoticeProgress(blocks_collection=True, wake=awaiting[-1].loan_at + wait)
    channel = next_channel(notices.validation_notice_channels, {c.channel for c in tried}, state)
    if channel is None:
        return NoticeProgress(blocks_collection=True, exhausted=True)
    return NoticeProgress(channel=channel, blocks_collection=True)


def held_for_validation_period(profile: Profile, state: LoanState, template: str, today: date) -> date | None:
    """The day after the validation period, when `template` overshadows the
    consumer's rights and the period runs (1006.38(b)); None otherwise."""
    validation = state.validation
    if validation is None or validation.period_ends is None or today > validation.period_ends:
        return None
    if template not in profile.notices.templates_held_in_validation_period:
        return None
    return validation.period_ends + timedelta(days=1)


def bookkeep(profile: Profile, state: LoanState, clock_zone) -> None:
    """Keep `state.validation` current: created once the profile requires
    the notice's delivery, then the day it was provided and the period's end."""
    notices = profile.notices
    if not notices.validation_notice_delivery:
        return
    if state.validation is None:
        state.validation = ValidationNotice()
    if state.validation.provided_on is not None:
        return
    provided = provided_notice(state)
    if provided is None:
        return
    day = provided.loan_at.astimezone(clock_zone).date()
    state.validation.channel = provided.channel
    state.validation.provided_on = day
    state.validation.period_ends = period_end(day, notices.validation_period_days or 30)
