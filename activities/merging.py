"""Merged messages (issue 17, item 1): the send activity's side of
db/borrower_messages.py, which says why coordination lives there and how a
group forms.

A step the policy merges (`ContactRequest.merge`), of a borrower with another
open loan, joins the borrower's open group for its channel; the activity
sleeps until the group's deadline (heartbeating; the deadline is at most the
request's `gather_seconds` away, which the workflow bounded by the contact
window's end), then closes it under the borrower's lock:

- a group of one part sends that step's own message, under its own key;
- a group of several sends one message (template `borrower_summary`) under
  the group's key, through the ordinary outbox path (db/outbox.py, `claim`):
  the part that closed the group sends it; the others wait for its row and
  return its outcome (after SENDER_WAIT_SECONDS without one they claim it
  themselves, under the outbox's claim rules: a message in doubt is not
  sent again). Every part's outcome names the message (`message_key`).

The merged message names each loan, its amount and currency and that
loan's own pay link (the pay page pays one loan: a link per loan, each the
one the loan's own message would have carried), and the total per
currency. Nothing here changes a loan's stage or its timers: a merged step
is sent no later than the window allows, or deferred like any other.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.context import ActivityContext, bound_log
from activities.pay_link import issue_pay_link
from activities.payloads import ContactOutcome, ContactRequest
from db import borrower_messages, outbox
from db.borrower_messages import FIRST_LINE_ORDER, Closed, PartFacts
from db.models import Contact
from dunning.money import quantize

SUMMARY_TEMPLATE = "borrower_summary"
MERGE_CHANNELS = ("sms", "email", "push")
# How long the other parts wait for the sender's outcome before they claim
# the message themselves (the send activity's start-to-close is 60 s; the
# gather is at most 20 s of it).
SENDER_WAIT_SECONDS = 30.0
POLL_SECONDS = 0.2


class Merging:
    def __init__(
        self,
        context: ActivityContext,
        send: Callable[[ContactRequest], ContactOutcome],
        outcome_of: Callable[[Contact], ContactOutcome],
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._context = context
        self._send = send
        self._outcome_of = outcome_of
        self._sleep = sleep

    def send(self, request: ContactRequest, zone: str) -> ContactOutcome | None:
        """The outcome of `request` as part of a merged message; None when it
        is the step's own message after all (not merged, the borrower's only
        open loan, alone in its group, or already tried on its own): the
        caller sends it as usual."""
        if not request.merge or request.channel not in MERGE_CHANNELS:
            return None
        context, sessions, at = self._context, self._context.sessions, self._context.clock()
        if context.in_transaction(lambda db: outbox.find(db, request.key)) is not None:
            return None  # tried on its own before: what was decided stands
        local_day = at.astimezone(_zone(zone)).date()
        joined = borrower_messages.join(
            sessions, part_facts(request), at=at, gather_seconds=request.gather_seconds, local_day=local_day,
        )
        if joined is None:
            return None
        self._wait((joined.deadline - at).total_seconds())
        closed = borrower_messages.close(sessions, joined.group_id, request.key, at)
        if not closed.merged:
            return None
        log = bound_log(loan_id=request.loan_id, key=request.key, channel=request.channel)
        merged = merged_request(closed, request)
        if closed.sender_key == request.key:
            outcome = self._send_merged(closed, merged)
        else:
            outcome = self._senders_outcome(closed, merged)
        log.info("contact_merged", message_key=closed.message_key, parts=len(closed.parts), result=outcome.result,
                 sender=closed.sender_key == request.key)
        return replace(outcome, key=request.key, channel=request.channel, message_key=closed.message_key)

    def _send_merged(self, closed: Closed, merged: ContactRequest) -> ContactOutcome:
        outcome = self._send(merged)
        if outcome.result == outbox.DEFERRED and outcome.not_before:
            borrower_messages.defer(
                self._context.sessions, closed.group_id, datetime.fromisoformat(outcome.not_before), outcome.rule,
            )
        return outcome

    def _senders_outcome(self, closed: Closed, merged: ContactRequest) -> ContactOutcome:
        """The merged message's outcome once its sender has it; after
        SENDER_WAIT_SECONDS without one (the sender stopped), this part
        claims the message itself."""
        give_up = time.monotonic() + SENDER_WAIT_SECONDS
        while True:
            row, group = self._context.in_transaction(
                lambda db: (outbox.find(db, closed.message_key), borrower_messages.closed_group(db, closed.group_id))
            )
            if row is not None and row.status in outbox.FINAL_STATUSES:
                return self._outcome_of(row)
            if row is not None and row.status == outbox.DEFERRED and group is not None and group.deferred_until:
                return replace(self._outcome_of(row), not_before=group.deferred_until.isoformat(),
                               rule=group.deferred_rule)
            if time.monotonic() >= give_up:
                return self._send_merged(closed, merged)
            _heartbeat()
            self._sleep(POLL_SECONDS)

    def _wait(self, seconds: float) -> None:
        """Sleep until the group's deadline, heartbeating."""
        until = time.monotonic() + max(0.0, seconds)
        while (left := until - time.monotonic()) > 0:
            _heartbeat()
            self._sleep(min(left, 1.0))


def part_facts(request: ContactRequest) -> PartFacts:
    return PartFacts(
        key=request.key, workflow_id=request.workflow_id, loan_id=request.loan_id, borrower_id=request.borrower_id,
        channel=request.channel, stage=request.stage, template=request.template,
        outstanding=Decimal(request.outstanding), currency=request.currency,
        due_date=date.fromisoformat(request.due_date), days_past_due=request.days_past_due,
        daily_cap=request.borrower_daily_cap, privacy_first_line=request.privacy_first_line,
        debt_collector=request.debt_collector_disclosure,
    )


def merged_request(closed: Closed, request: ContactRequest) -> ContactRequest:
    """The one message of a closed group of several parts, as the outbox
    sends it: keyed by the group's message key, on its first loan's row,
    under the strictest of its parts' rules."""
    parts = closed.parts
    first = parts[0]
    caps = [p.daily_cap for p in parts if p.daily_cap]
    return ContactRequest(
        key=closed.message_key, workflow_id=first.workflow_id, loan_id=first.loan_id, borrower_id=first.borrower_id,
        stage=first.stage, channel=request.channel, template=SUMMARY_TEMPLATE,
        days_past_due=max(p.days_past_due for p in parts), outstanding=str(first.outstanding),
        currency=first.currency, due_date=min(p.due_date for p in parts).isoformat(),
        borrower_daily_cap=min(caps) if caps else None,
        privacy_first_line=max((p.privacy_first_line for p in parts), key=_strictness),
        debt_collector_disclosure=any(p.debt_collector for p in parts),
        time_zone=request.time_zone,
    )


def summary_context(db: Session, request: ContactRequest, *, base_url: str, secret: str, at: datetime,
                    max_age_days: int) -> dict:
    """The `summary` of a merged message (activities/rendering.py): each loan
    with its own pay link (issued for its part's key, as its own message
    would have had it), and the total per currency."""
    parts = borrower_messages.parts_of_message(db, request.key)
    if not parts:
        raise ApplicationError(f"no merged message {request.key}", type="MergedMessageMissing", non_retryable=True)
    loans, totals = [], {}
    for part in parts:
        link = issue_pay_link(
            db, base_url=base_url, secret=secret, contact_key=part.key, loan_id=part.loan_id,
            workflow_id=part.workflow_id, now=at, max_age_days=max_age_days,
        )
        loans.append({
            "loan_id": part.loan_id, "amount": part.outstanding, "currency": part.currency, "due_date": part.due_date,
            "days_past_due": part.days_past_due, "pay_link": link,
        })
        totals[part.currency] = totals.get(part.currency, Decimal("0")) + part.outstanding
    return {
        "loans": loans,
        "totals": [{"amount": quantize(amount, currency), "currency": currency} for currency, amount in totals.items()],
    }


def _strictness(mode: str) -> int:
    return FIRST_LINE_ORDER.index(mode) if mode in FIRST_LINE_ORDER else len(FIRST_LINE_ORDER)


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ValueError, KeyError):
        return ZoneInfo("UTC")


def _heartbeat() -> None:
    try:
        activity.heartbeat()
    except RuntimeError:  # not in an activity (a direct call)
        pass
