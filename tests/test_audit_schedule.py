"""The audit checkpoint job's Temporal Schedule (issue 19, item 1), on a real
`temporal server start-dev`: the worker's start creates it once and then only
brings it up to date (an operator's pause stays), and a run it starts writes
a signed checkpoint through AuditCheckpointWorkflow and its activity, with a
worker built as worker.py builds it."""

from __future__ import annotations

import asyncio
import concurrent.futures
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select
from temporalio.client import Client

from db import audit, audit_checkpoint
from db.models import AuditCheckpoint
from runtime.audit_checkpoint_schedule import SCHEDULE_ID, ensure_audit_checkpoint_schedule
from runtime.worker_build import build_worker
from tests.support.devserver import DevServer
from tests.support.polling import poll_until
from workflows.audit_checkpoint import AUDIT_CHECKPOINT_WORKFLOW

pytestmark = pytest.mark.devserver

EVERY = timedelta(minutes=5)


@pytest.fixture
def dev(tmp_path):
    (tmp_path / "devserver").mkdir()
    server = DevServer(tmp_path / "devserver", start_worker=False)
    try:
        yield server
    finally:
        server.stop()


async def test_the_schedule_is_created_once_kept_paused_and_its_run_writes_a_checkpoint(
    dev, settings, session_factory, tmp_path
):
    client = await Client.connect(dev.address)
    task_queue = f"dunning-audit-{uuid.uuid4().hex[:6]}"

    assert await ensure_audit_checkpoint_schedule(client, task_queue, EVERY) == "created"
    handle = client.get_schedule_handle(SCHEDULE_ID)
    await handle.pause(note="paused by an operator")
    assert await ensure_audit_checkpoint_schedule(client, task_queue, EVERY) == "updated"  # a second worker's start

    described = await handle.describe()
    assert described.schedule.state.paused and described.schedule.state.note == "paused by an operator"
    assert [spec.every for spec in described.schedule.spec.intervals] == [EVERY]
    assert described.schedule.action.workflow == AUDIT_CHECKPOINT_WORKFLOW
    assert described.schedule.action.task_queue == task_queue
    assert described.schedule.action.args == []  # no input: nothing of a loan enters its history

    with session_factory.begin() as db:
        audit.append(db, "payment", "L-1", "dunning-L-1", {"amount": "1.00"},
                     at=datetime(2026, 11, 5, tzinfo=timezone.utc))
    outside = tmp_path / "outside.jsonl"
    worker_settings = settings.model_copy(update={
        "temporal_address": dev.address, "task_queue": task_queue, "audit_checkpoint_file_setting": outside,
    })
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as executor:
        async with build_worker(client, worker_settings, executor):
            await handle.trigger()  # a run now, as the interval would start it (a paused schedule still can be)

            def checkpoints():
                with session_factory() as db:
                    return db.scalars(select(AuditCheckpoint)).all()

            async def fetch():
                return checkpoints()

            [made] = await poll_until(fetch, bool, pause=lambda: asyncio.sleep(0.2), tries=150,
                                      failure=lambda seen: f"no checkpoint written: {seen}")
    assert made.number == 1 and made.size == 1
    assert [line["checkpoint"] for line in audit_checkpoint.read_outside(outside)] == [1]
