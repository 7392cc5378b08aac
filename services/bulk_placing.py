"""Placing a large file (issue 19, item 7): 100,000 loans from one CSV, with
bounded concurrency, back-pressure and a checkpoint to resume from.

    records read one at a time (services/placement.iter_records) and validated
      -> batches of `batch` placements written to the directory, one transaction
         each, in a thread (db/directory.upsert_placements: a record equal to
         what exists changes nothing, so a batch written twice is written once)
      -> a queue of at most QUEUE_BATCHES batches: the reader waits while it is
         full (back-pressure: never more than a few batches in memory)
      -> at most `concurrency` workflow starts in flight (services/placing.py
         decides, per loan, to start it or not); a start the server refuses
         for load (RESOURCE_EXHAUSTED) or cannot answer now is retried after
         a growing pause that every other start waits out too
      -> each record's result in file order (`on_result`), and the number of
         the file's first records known done written to the ledger.

A run interrupted (Ctrl-C, a kill, a lost connection) and run again on the
same file, database, namespace and task queue skips the records the ledger
says were done without reading the directory or Temporal for them, and goes
through the rest as placing always does: a loan already written is
unchanged, a workflow already running is `already running`. Nothing is
placed twice either way; the ledger only saves the second pass over what was
done. It is removed once the whole file is done, so placing the file again
later answers for every record as before.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client

from db.directory import Conflict, PlacementConflict, PlacementSummary, upsert_placements
from db.models import Loan
from services.placement import Placement, PlacementError, iter_records, validate_record
from services.placing import PlaceResult, closed_outcomes, staged_loans, start_placement

QUEUE_BATCHES = 2
# Results wait to be reported in file order; a slow start holds at most this
# many finished ones behind it (times `concurrency`).
WINDOW_FACTOR = 4
LEDGER_EVERY_SECONDS = 1.0
RETRY_ATTEMPTS = 10
FIRST_PAUSE_SECONDS = 0.2
LONGEST_PAUSE_SECONDS = 10.0


@dataclass(frozen=True)
class Options:
    concurrency: int = 32  # workflow starts in flight
    batch: int = 500  # records a directory transaction
    keep_going: bool = False  # refuse a bad or conflicting record alone, place every other
    default_policy: str | None = None


@dataclass
class Tally:
    """What a run did, for the summary lines."""

    records: int = 0  # records of the file this run went through (skipped ones included)
    skipped: int = 0  # done by an interrupted run of this file: not read again (the ledger)
    refused: int = 0  # bad or conflicting records (with keep_going)
    conflicts: int = 0  # of which conflicting with what exists
    borrowers_created: int = 0
    loans_created: int = 0
    loans_unchanged: int = 0
    borrowers: set[str] = field(default_factory=set)
    states: Counter = field(default_factory=Counter)  # PlaceResult.state -> loans
    throttled: int = 0  # starts retried after a RESOURCE_EXHAUSTED (or unavailable) answer
    done: int = 0  # the file's first records known done

    @property
    def placed(self) -> int:
        return self.loans_created + self.loans_unchanged

    @property
    def borrowers_unchanged(self) -> int:
        return len(self.borrowers) - self.borrowers_created


class BatchConflict(Exception):
    """A batch refused for its conflicts (without keep_going): the records
    before `first_record` were placed, nothing from it on."""

    def __init__(self, conflict: PlacementConflict, first_record: int) -> None:
        super().__init__(str(conflict))
        self.conflict = conflict
        self.first_record = first_record


# ------------------------------------------------------------------ the ledger


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Ledger:
    """The checkpoint of one file's placement: how many of its first records
    are done (written to the directory and their workflows answered for). A
    small JSON file named by a digest of the file's bytes and of where it was
    placed (database, namespace, task queue, default policy), so another
    file, or the same file placed elsewhere, never resumes from it. Replaced
    atomically; a run killed between two writes redoes at most a second of
    records, idempotently."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._saved = self.done = self._read()
        self._saved_at = time.monotonic()

    @classmethod
    def for_file(cls, directory: Path, file: Path, *where: str | None) -> Ledger:
        key = hashlib.sha256("\0".join([file_digest(file), *(w or "" for w in where)]).encode()).hexdigest()
        return cls(directory / f"{key[:32]}.json")

    def _read(self) -> int:
        try:
            return int(json.loads(self.path.read_text(encoding="utf-8"))["records_done"])
        except (OSError, ValueError, KeyError, TypeError):
            return 0

    def advance(self, done: int) -> None:
        self.done = done
        if time.monotonic() - self._saved_at >= LEDGER_EVERY_SECONDS:
            self.save()

    def save(self) -> None:
        if self.done == self._saved:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps({"records_done": self.done}), encoding="utf-8")
        os.replace(temporary, self.path)
        self._saved, self._saved_at = self.done, time.monotonic()

    def finish(self) -> None:
        """The whole file is done: nothing to resume."""
        self.path.unlink(missing_ok=True)
        self._saved = self.done


# ------------------------------------------------------------------ reading


@dataclass(frozen=True)
class Item:
    """One record on its way: a placement to start, or a refusal to report."""

    number: int
    placement: Placement | None = None
    refusal: str | None = None
    new_loan: bool = False
    closed_outcome: str | None = None
    has_run: bool = False


def count_records(path: Path) -> int:
    """How many records the file has (for the progress bar's total)."""
    return sum(1 for _ in iter_records(path))


def validate_file(path: Path, default_policy: str | None) -> tuple[int, list[str]]:
    """Every record checked, none kept: (records, one line per bad record)."""
    seen: set[str] = set()
    problems: list[str] = []
    count = 0
    for count, record in iter_records(path):
        checked = record if isinstance(record, str) else validate_record(count, record, default_policy, seen)
        if isinstance(checked, str):
            problems.append(checked)
    return count, problems


def _checked(path: Path, options: Options, skip: int) -> Iterator[tuple[int, Placement | str | None]]:
    """(number, placement or refusal) per record; None for a record the
    ledger says is done (its loan id still counts as seen, for repeats)."""
    seen: set[str] = set()
    for number, record in iter_records(path):
        if number <= skip:
            if isinstance(record, dict) and isinstance(record.get("loan_id"), str):
                seen.add(record["loan_id"])
            yield number, None
        elif isinstance(record, str):
            yield number, record
        else:
            yield number, validate_record(number, record, options.default_policy, seen)


@dataclass(frozen=True)
class Written:
    placements: list[Placement]
    new: frozenset[str]
    closed: dict[str, str]
    staged: frozenset[str]
    summary: PlacementSummary
    conflicts: list[Conflict]


def write_batch(sessions: sessionmaker[Session], placements: list[Placement], keep_going: bool) -> Written:
    """The batch into the directory, one transaction. With keep_going a
    conflicting record is left out and the rest written; without, the batch's
    PlacementConflict is raised (nothing of it written)."""
    ids = [p.loan_id for p in placements]
    with sessions() as db:
        existing = set(db.scalars(select(Loan.loan_id).where(Loan.loan_id.in_(ids))))
    conflicts: list[Conflict] = []
    summary = PlacementSummary()
    while placements:
        try:
            summary = upsert_placements(sessions, placements)
            break
        except PlacementConflict as conflict:
            if not keep_going:
                raise
            conflicts += conflict.conflicts
            refused = {c.loan_id for c in conflict.conflicts}
            placements = [p for p in placements if p.loan_id not in refused]
    ids = [p.loan_id for p in placements]
    return Written(placements, frozenset(ids) - existing, closed_outcomes(sessions, ids) if ids else {},
                   staged_loans(sessions, ids) if ids else frozenset(), summary, conflicts)


# ------------------------------------------------------------------ starting


class Throttle:
    """One pause every start waits out: the server said it is overloaded."""

    def __init__(self) -> None:
        self._until = 0.0

    async def wait(self) -> None:
        while (left := self._until - time.monotonic()) > 0:
            await asyncio.sleep(left)

    def pause(self, seconds: float) -> None:
        self._until = max(self._until, time.monotonic() + seconds)


def _retryable(error: BaseException) -> bool:
    from temporalio.service import RPCError, RPCStatusCode

    return isinstance(error, RPCError) and error.status in (
        RPCStatusCode.RESOURCE_EXHAUSTED, RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED)


async def start_with_backoff(client: Client, task_queue: str, item: Item, throttle: Throttle, tally: Tally) -> PlaceResult:
    pause = FIRST_PAUSE_SECONDS
    for attempt in range(1, RETRY_ATTEMPTS + 1):
        await throttle.wait()
        try:
            return await start_placement(client, task_queue, item.placement, item.closed_outcome, item.has_run,
                                         new_loan=item.new_loan)
        except Exception as error:
            if not _retryable(error) or attempt == RETRY_ATTEMPTS:
                raise
            tally.throttled += 1
            # Jitter: the starts that were refused together do not all come back together.
            throttle.pause(pause * random.uniform(0.5, 1.0))
            pause = min(pause * 2, LONGEST_PAUSE_SECONDS)
    raise AssertionError("unreachable")


@dataclass
class Sinks:
    """Where a run reports: each result and refusal in file order, progress."""

    on_result: Callable[[PlaceResult], None]
    on_refused: Callable[[str], None]
    on_progress: Callable[[int], None] = lambda advanced: None


class _Stopped(Exception):
    """The starting side gave up (an error, Ctrl-C): the reader stops too."""


async def place_file(
    client: Client, task_queue: str, sessions: sessionmaker[Session], path: Path, options: Options,
    ledger: Ledger, sinks: Sinks, tally: Tally | None = None,
) -> Tally:
    """Place every record of the file (see the module doc); returns the tally.
    Without keep_going a bad record stops nothing here (the caller validated
    the file first) and a conflicting batch raises BatchConflict once the
    batches before it are done."""
    tally = tally or Tally()
    skip = ledger.done
    queue: asyncio.Queue[list[Item] | None] = asyncio.Queue(maxsize=QUEUE_BATCHES)
    loop = asyncio.get_running_loop()
    stop = threading.Event()

    def hand_over(items: list[Item]) -> None:
        if stop.is_set():
            raise _Stopped
        asyncio.run_coroutine_threadsafe(queue.put(items), loop).result()  # waits while the queue is full

    def produce() -> None:
        """In a thread: read, validate, write each batch, hand it over."""
        items: list[Item] = []
        pending: dict[str, int] = {}  # loan id -> record number, of the batch's placements
        placements: list[Placement] = []
        for number, checked in _checked(path, options, skip):
            if stop.is_set():
                raise _Stopped
            tally.records = number
            if checked is None:
                tally.skipped += 1
                continue
            if isinstance(checked, str):
                items.append(Item(number, refusal=checked))
            else:
                items.append(Item(number))  # filled in once its batch is written
                pending[checked.loan_id] = number
                placements.append(checked)
            if len(placements) >= options.batch:
                hand_over(written_items(items, pending, placements))
                items, pending, placements = [], {}, []
        if items:
            hand_over(written_items(items, pending, placements))

    def written_items(items: list[Item], pending: dict[str, int], placements: list[Placement]) -> list[Item]:
        if not placements:
            return items
        try:
            written = write_batch(sessions, placements, options.keep_going)
        except PlacementConflict as conflict:
            raise BatchConflict(conflict, min(pending.values())) from None
        tally.borrowers_created += written.summary.borrowers_created
        tally.loans_created += written.summary.loans_created
        tally.loans_unchanged += written.summary.loans_unchanged
        tally.borrowers.update(p.borrower_id for p in written.placements)
        first = items[0].number
        tally.conflicts += len(written.conflicts)
        for conflict in written.conflicts:
            number = pending[conflict.loan_id]
            items[number - first] = Item(number, refusal=f"record {number} (loan_id {conflict.loan_id}): {conflict.line()}")
        for placement in written.placements:
            number = pending[placement.loan_id]
            items[number - first] = Item(number, placement, new_loan=placement.loan_id in written.new,
                                         closed_outcome=written.closed.get(placement.loan_id),
                                         has_run=placement.loan_id in written.staged)
        return items

    async def reader() -> None:
        try:
            await asyncio.to_thread(produce)
        finally:
            if not stop.is_set():
                await queue.put(None)

    tally.done = skip  # the caller's progress starts there too (ledger.done)
    reading = asyncio.create_task(reader())
    try:
        await _start_all(client, task_queue, queue, options, ledger, sinks, tally)
    finally:
        ledger.save()
        if not reading.done():
            # Stop the reader: it sees the flag before its next batch; a batch
            # it is handing over is taken off the queue so it never waits.
            stop.set()
            while not reading.done():
                while not queue.empty():
                    queue.get_nowait()
                await asyncio.wait({reading}, timeout=0.05)
    try:
        await reading  # a BatchConflict (or a read error) surfaces here, after every batch before it
    except _Stopped:
        pass
    return tally


async def _start_all(client: Client, task_queue: str, queue: asyncio.Queue, options: Options, ledger: Ledger,
                     sinks: Sinks, tally: Tally) -> None:
    gate = asyncio.Semaphore(options.concurrency)
    throttle = Throttle()
    window: deque[tuple[Item, asyncio.Task | None]] = deque()
    limit = WINDOW_FACTOR * options.concurrency

    async def start(item: Item) -> PlaceResult:
        try:
            return await start_with_backoff(client, task_queue, item, throttle, tally)
        finally:
            gate.release()

    async def report(block: bool) -> None:
        """The finished head of the window, in file order."""
        while window and (block or window[0][1] is None or window[0][1].done()):
            item, task = window.popleft()
            if task is None:
                tally.refused += 1
                sinks.on_refused(item.refusal)
            else:
                result = await task
                tally.states[result.state] += 1
                sinks.on_result(result)
            tally.done = item.number
            ledger.advance(item.number)
            sinks.on_progress(1)

    try:
        while (batch := await queue.get()) is not None:
            for item in batch:
                if item.placement is None:
                    window.append((item, None))
                else:
                    await gate.acquire()
                    window.append((item, asyncio.create_task(start(item))))
                await report(block=False)
                while len(window) >= limit:  # the head is a start still running
                    await asyncio.wait({window[0][1]})
                    await report(block=False)
        await report(block=True)
    finally:
        for _, task in window:
            if task is not None:
                task.cancel()


__all__ = ["BatchConflict", "Ledger", "Options", "PlacementError", "Sinks", "Tally", "count_records", "place_file",
           "validate_file"]
