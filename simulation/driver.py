"""Driving a placed portfolio on the time-skipping server: the clock moved a
day at a time (to 19:00 past the start time each day, after the day's
contacts), the borrowers whose behaviour needs a decision that day looking at
their loan's `status` and acting (simulation/behaviour.py), and everything
counted. The others are not queried.

BorrowerActs is the looking and acting alone, on any client: the demo's
borrowers (scripts/demo.py) act through it on a dev server in real time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from temporalio.api.enums.v1 import EventType
from temporalio.api.testservice.v1 import SleepRequest
from temporalio.client import Client, WorkflowQueryFailedError, WorkflowQueryRejectedError, WorkflowUpdateFailedError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from db.models import Loan
from dunning.contract import workflow_id_for
from runtime.settings import Settings
from runtime.time_skipping import terminate_when_idle
from services.placing import start_placement
from simulation.behaviour import Act, Borrower

# Each day's look, after the start (00:30 in the westernmost zone): 19:30
# there, 20:30-22:30 further east; after the day's contacts (09:00-10:00 local,
# or 08:00 when a compliance window postponed them), before local midnight.
LOOK_AFTER_START = timedelta(hours=19)
# The longest step when no borrower needs to look sooner; one clock move (the
# server works through every timer of every loan in it within one request,
# hence the generous timeout).
MAX_STEP_DAYS = 10
MAX_SLEEP = timedelta(days=MAX_STEP_DAYS)
SLEEP_TIMEOUT = timedelta(minutes=15)
# Concurrent status queries, signals and updates.
CONCURRENCY = 24

Progress = Callable[[str], None]


class BorrowerActs:
    """Borrowers looking at their loan's `status` and sending what they
    decide (repayment signals, promise and plan updates...), counted."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.limit = asyncio.Semaphore(CONCURRENCY)
        self.statuses = self.signals = self.updates = 0

    async def look(self, borrower: Borrower, now: datetime) -> None:
        handle = self.client.get_workflow_handle(workflow_id_for(borrower.loan.loan_id))
        async with self.limit:
            try:
                status = await handle.query("status")
            except (RPCError, WorkflowQueryFailedError, WorkflowQueryRejectedError) as error:
                borrower.next_look, borrower.done = None, True
                borrower.rejections.append(f"d{borrower.day_of(now)}: status query failed: {error}")
                return
            finally:
                self.statuses += 1
        day = borrower.day_of(now)
        for act in borrower.look(now, status):
            answer, error = None, None
            async with self.limit:
                try:
                    answer = await self.send(handle, act)
                except WorkflowUpdateFailedError as failed:
                    error = str(failed.cause or failed)
                except RPCError as failed:
                    error = f"{type(failed).__name__}: {failed}"
            borrower.answered(act, day, answer, error)

    async def send(self, handle, act: Act) -> Any:
        if act.kind in ("propose_plan", "promise_to_pay"):
            self.updates += 1
            return await handle.execute_update(act.kind, act.payload)
        self.signals += 1
        await handle.signal(act.kind, act.payload)
        return None


class PortfolioDriver(BorrowerActs):
    """Moves the server's clock, lets borrowers look and act, counts it all."""

    def __init__(self, env: WorkflowEnvironment, settings: Settings, sessions, borrowers: dict[str, Borrower],
                 say: Progress, label: str) -> None:
        super().__init__(env.client)
        self.env = env
        self.settings, self.sessions, self.borrowers, self.say, self.label = settings, sessions, borrowers, say, label
        self.steps = 0
        self.began = time.perf_counter()

    async def now(self) -> datetime:
        return await self.env.get_current_time()

    async def sleep_until(self, instant: datetime) -> None:
        now = await self.now()
        if instant <= now:
            raise RuntimeError(
                f"the portfolio starts at {instant.isoformat()}, before the server's clock ({now.isoformat()}): "
                "generate it with a later start"
            )
        while now < instant:
            step = min(instant - now, MAX_SLEEP)
            request = SleepRequest()
            request.duration.FromTimedelta(step)
            began = time.perf_counter()
            await self.client.test_service.unlock_time_skipping_with_sleep(request, timeout=SLEEP_TIMEOUT)
            self.steps += 1
            if time.perf_counter() - began > SLEEP_TIMEOUT.total_seconds() * 0.9:
                self.say(f"{self.label}: a clock move of {step} took {time.perf_counter() - began:.0f} s")
            now = await self.now()

    async def start(self, placements) -> None:
        async def one(placement):
            async with self.limit:
                result = await start_placement(self.client, self.settings.task_queue, placement)
            if not result.started:
                raise RuntimeError(f"{placement.loan_id}: not started ({result.state})")

        await asyncio.gather(*(one(p) for p in placements))

    def open_count(self) -> int:
        with self.sessions() as db:
            return db.scalar(select(func.count(Loan.loan_id)).where(Loan.outcome.is_(None))) or 0

    async def run(self, start_at: datetime, days: int, write_off_day: int) -> int:
        """Day by day until every loan closed or `days` passed; the last day looked at."""
        day = 1
        reported = time.perf_counter()
        while True:
            await self.sleep_until(start_at + LOOK_AFTER_START + timedelta(days=day - 1))
            now = await self.now()
            lookers = [b for b in self.borrowers.values()
                       if b.next_look is not None and b.day_of(now) >= b.next_look]
            await asyncio.gather(*(self.look(b, now) for b in lookers))
            open_loans = self.open_count()
            if time.perf_counter() - reported > 10 or open_loans == 0 or day >= days:
                self.say(f"{self.label}: day {day}, {open_loans} open, {len(lookers)} looked "
                         f"({time.perf_counter() - self.began:.0f} s)")
                reported = time.perf_counter()
            if open_loans == 0 or day >= days:
                return day
            waiting = [b.next_look for b in self.borrowers.values() if b.next_look is not None]
            # The next day someone looks, at most MAX_STEP_DAYS on, and the
            # write-off day (when the rest close).
            ends = [d for d in (write_off_day, write_off_day + 1) if d > day]
            day = max(day + 1, min([*waiting, *ends, day + MAX_STEP_DAYS, days]))

    async def terminate_open(self) -> int:
        """Terminate the loans still open, each once its activities are done."""
        with self.sessions() as db:
            open_ids = db.scalars(select(Loan.loan_id).where(Loan.outcome.is_(None))).all()

        async def one(loan_id: str) -> bool:
            async with self.limit:
                return await terminate_when_idle(self.client.get_workflow_handle(workflow_id_for(loan_id)),
                                                 "simulation over")

        return sum(await asyncio.gather(*(one(loan_id) for loan_id in open_ids)))

    async def workflow_task_problems(self) -> tuple[int, int]:
        """Workflow tasks failed and timed out, over every loan's history."""
        failed, timed_out = EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED, EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT

        async def one(loan_id: str) -> tuple[int, int]:
            async with self.limit:
                history = await self.client.get_workflow_handle(workflow_id_for(loan_id)).fetch_history()
            types = [event.event_type for event in history.events]
            return types.count(failed), types.count(timed_out)

        counts = await asyncio.gather(*(one(loan_id) for loan_id in self.borrowers))
        return sum(c[0] for c in counts), sum(c[1] for c in counts)
