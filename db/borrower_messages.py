"""One voice per borrower (issue 17, item 1): the steps of one borrower's
loans gathered into one message. The one owner of `borrower_message_groups`
and `borrower_message_parts`.

The choice: coordination lives in the database, under the borrower's lock,
in the send activity, not in a borrower entity workflow
(`borrower-<borrower_id>` signalled with signal-with-start by each loan).

- Every contact of every loan already passes through the send activity's
  outbox claim, which already takes the borrower's row lock for the voice cap
  across their loans (db/outbox.py, `_write`); the per-borrower daily caps
  are that same count, on every channel, under that same lock.
- The outbox key already guarantees "never sent twice": a merged message is
  one outbox row, keyed by its own key, claimed like any other.
- An entity workflow would add a signal round trip and several history
  events to every contact of every loan (issue 19 must bring a lifecycle
  under 300 events), a second long-lived state to keep across
  continue-as-new, and a new failure mode: the coordinator down.
- Here, "the coordinator unavailable" is the database unavailable: the send
  activity raises, Temporal retries it, and the contact waits, as any
  contact does. Coordination changes no stage and no timer of a loan.

How a step is merged (activities/merging.py drives it; all of it under the
borrower's turn, `lock_borrower`):

1. `join`: a step whose policy merges it, of a borrower with another open
   loan (the `loans` table), is registered as a part (keyed by its own
   contact key) in the borrower's open group for its channel: the one whose
   deadline has not passed, else a new one whose deadline is the first
   part's moment plus its gather time (bounded by the window's end).
2. The activity sleeps until the deadline, then `close`s the group (once;
   whoever comes first is its sender): a group of one part sends that part's
   own message under its own key; more parts send one message under
   `dunning/keys.py` `borrower_message_key`, through the ordinary outbox
   path, whose row every part's outcome names (`message_key`).
3. A retry of any part finds its part, its group and the group's message:
   the same outcome, never a second message. A merged message that a daily
   cap deferred is recorded on the group (`defer`); its parts gather again
   when they are tried after that moment.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from db.models import Borrower, BorrowerMessageGroup, BorrowerMessagePart, Loan
from db.write_once import in_transaction
from dunning.contract import STAGE_CLOSED
from dunning.keys import borrower_message_key

# What a part's rules may say of the first line, strictest last: the merged
# message obeys the strictest of its parts'.
FIRST_LINE_ORDER = ("full", "no_amount_before_identity", "limited_content")


@dataclass(frozen=True)
class PartFacts:
    """What a step brings to a merged message: ids, money and its rules."""

    key: str
    workflow_id: str
    loan_id: str
    borrower_id: str
    channel: str
    stage: str
    template: str
    outstanding: Decimal
    currency: str
    due_date: date
    days_past_due: int
    daily_cap: int | None = None
    privacy_first_line: str = "full"
    debt_collector: bool = False


@dataclass(frozen=True)
class Joined:
    """The group a part is in, and until when it gathers."""

    group_id: int
    deadline: datetime


@dataclass(frozen=True)
class Closed:
    """A closed group: its message's key, the part that sends it, its parts
    (by loan id: the message lists them so) and, if a cap deferred it, until when."""

    group_id: int
    message_key: str
    sender_key: str
    parts: tuple[PartFacts, ...]
    deferred_until: datetime | None = None
    deferred_rule: str = ""

    @property
    def merged(self) -> bool:
        return len(self.parts) > 1


def lock_borrower(db: Session, borrower_id: str) -> Borrower | None:
    """The borrower's turn, for the rest of `db`'s transaction: on PostgreSQL
    their directory row FOR UPDATE (as the outbox's caps take it); on SQLite,
    which ignores FOR UPDATE, a write first (the database's write lock),
    so that what is read next is what the previous turn committed."""
    if db.get_bind().dialect.name == "sqlite":
        table = Borrower.__table__
        db.execute(
            update(table).where(table.c.borrower_id == borrower_id)
            .values(borrower_id=table.c.borrower_id, updated_at=table.c.updated_at)
        )
    return db.scalar(select(Borrower).where(Borrower.borrower_id == borrower_id).with_for_update())


def has_other_open_loan(db: Session, borrower_id: str, loan_id: str) -> bool:
    """Whether the borrower has an open loan besides `loan_id` (placed, not closed)."""
    return db.scalar(
        select(Loan.loan_id).where(
            Loan.borrower_id == borrower_id, Loan.loan_id != loan_id, Loan.closed_at.is_(None),
            Loan.stage != STAGE_CLOSED,
        ).limit(1)
    ) is not None


def find_part(db: Session, key: str) -> BorrowerMessagePart | None:
    return db.scalar(select(BorrowerMessagePart).where(BorrowerMessagePart.key == key))


def join(
    sessions: sessionmaker[Session], part: PartFacts, *, at: datetime, gather_seconds: float, local_day: date,
) -> Joined | None:
    """Register `part` (or find it registered by an earlier attempt) in the
    borrower's open group for its channel; None when it is not to be merged:
    the borrower has no other open loan, or is not in the directory."""

    def work(db: Session) -> Joined | None:
        if lock_borrower(db, part.borrower_id) is None:
            return None
        row = find_part(db, part.key)
        if row is not None:
            group = db.get(BorrowerMessageGroup, row.group_id)
            if not _gathers_again(group, at):
                return Joined(group.id, _aware(group.deadline))
        elif not has_other_open_loan(db, part.borrower_id, part.loan_id):
            return None
        group = db.scalar(
            select(BorrowerMessageGroup).where(
                BorrowerMessageGroup.borrower_id == part.borrower_id,
                BorrowerMessageGroup.channel == part.channel,
                BorrowerMessageGroup.closed_at.is_(None),
                BorrowerMessageGroup.deadline > at,
            ).order_by(BorrowerMessageGroup.id).limit(1)
        )
        if group is None:
            group = BorrowerMessageGroup(
                borrower_id=part.borrower_id, channel=part.channel, local_day=local_day, opened_at=at,
                deadline=at + timedelta(seconds=max(0.0, gather_seconds)),
            )
            db.add(group)
            db.flush()
        if row is None:
            row = BorrowerMessagePart(key=part.key)
            db.add(row)
        _fill(row, part, group.id, at)
        return Joined(group.id, _aware(group.deadline))

    return in_transaction(sessions, work)


def _gathers_again(group: BorrowerMessageGroup, at: datetime) -> bool:
    """A part whose merged message a cap deferred, tried again from the
    moment it may go: it gathers anew (with whatever is due with it then)."""
    return group.deferred_until is not None and at >= _aware(group.deferred_until)


def _fill(row: BorrowerMessagePart, part: PartFacts, group_id: int, at: datetime) -> None:
    row.group_id, row.joined_at = group_id, at
    row.workflow_id, row.loan_id, row.borrower_id = part.workflow_id, part.loan_id, part.borrower_id
    row.stage, row.template = part.stage, part.template
    row.outstanding, row.currency, row.due_date, row.days_past_due = (
        part.outstanding, part.currency, part.due_date, part.days_past_due)
    row.daily_cap, row.privacy_first_line, row.debt_collector = (
        part.daily_cap, part.privacy_first_line, part.debt_collector)


def close(sessions: sessionmaker[Session], group_id: int, part_key: str, at: datetime) -> Closed:
    """Close the group, if no part has yet, naming its message and this part
    as its sender; the group as closed, in any case."""

    def work(db: Session) -> Closed:
        group = db.get(BorrowerMessageGroup, group_id)
        lock_borrower(db, group.borrower_id)
        db.refresh(group)
        parts = _parts(db, group.id)
        if group.closed_at is None:
            group.closed_at = max(at, _aware(group.deadline))
            group.sender_key = part_key
            group.message_key = (
                parts[0].key if len(parts) == 1
                else borrower_message_key(group.borrower_id, group.channel, group.local_day.isoformat(), group.id)
            )
        return _closed(group, parts)

    return in_transaction(sessions, work)


def defer(sessions: sessionmaker[Session], group_id: int, until: datetime, rule: str) -> None:
    """The group's merged message was deferred by a cap until `until`."""

    def work(db: Session) -> None:
        group = db.get(BorrowerMessageGroup, group_id)
        group.deferred_until, group.deferred_rule = until, rule[:32]

    in_transaction(sessions, work)


def closed_group(db: Session, group_id: int) -> Closed | None:
    """The group as it is now; None while it is open."""
    group = db.get(BorrowerMessageGroup, group_id)
    if group is None or group.closed_at is None:
        return None
    return _closed(group, _parts(db, group.id))


def parts_of_message(db: Session, message_key: str) -> list[PartFacts]:
    """The parts a merged message covers, by loan id; [] for any other key
    (a loan's own message)."""
    group = db.scalar(select(BorrowerMessageGroup).where(BorrowerMessageGroup.message_key == message_key))
    if group is None:
        return []
    parts = _parts(db, group.id)
    return [_facts(p, group.channel) for p in parts] if len(parts) > 1 else []


def _parts(db: Session, group_id: int) -> list[BorrowerMessagePart]:
    return list(db.scalars(
        select(BorrowerMessagePart).where(BorrowerMessagePart.group_id == group_id)
        .order_by(BorrowerMessagePart.loan_id, BorrowerMessagePart.id)
    ))


def _closed(group: BorrowerMessageGroup, parts: list[BorrowerMessagePart]) -> Closed:
    return Closed(
        group_id=group.id, message_key=group.message_key or "", sender_key=group.sender_key or "",
        parts=tuple(_facts(p, group.channel) for p in parts),
        deferred_until=_aware(group.deferred_until) if group.deferred_until else None,
        deferred_rule=group.deferred_rule or "",
    )


def _facts(row: BorrowerMessagePart, channel: str) -> PartFacts:
    return PartFacts(
        key=row.key, workflow_id=row.workflow_id, loan_id=row.loan_id, borrower_id=row.borrower_id, channel=channel,
        stage=row.stage, template=row.template, outstanding=row.outstanding, currency=row.currency,
        due_date=row.due_date, days_past_due=row.days_past_due, daily_cap=row.daily_cap,
        privacy_first_line=row.privacy_first_line, debt_collector=row.debt_collector,
    )


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)
