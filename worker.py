"""The dunning worker: runs DunningWorkflow and its activities.

    python worker.py

Settings come from the environment (runtime/settings.py): TEMPORAL_ADDRESS,
TEMPORAL_NAMESPACE, DUNNING_TASK_QUEUE, DUNNING_DATABASE_URL, ...
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import sys
from datetime import timedelta

import structlog

from db.migrate import upgrade_to_head
from runtime.audit_checkpoint_schedule import SCHEDULE_ID as CHECKPOINT_SCHEDULE_ID
from runtime.audit_checkpoint_schedule import ensure_audit_checkpoint_schedule
from runtime.logging import configure_logging
from runtime.retention_schedule import SCHEDULE_ID, ensure_retention_schedule
from runtime.settings import get_settings
from runtime.temporal import SearchAttributesMissing, check_search_attributes, connect, metrics_runtime
from runtime.worker_build import build_worker

log = structlog.get_logger("worker")


async def main() -> None:
    settings = get_settings()
    configure_logging(settings.log_level)
    upgrade_to_head(settings.database_url)
    client = await connect(settings, metrics_runtime(settings))
    await check_search_attributes(client, settings.temporal_namespace)
    # The daily records retention job (runtime/retention_schedule.py): created
    # or brought up to date. A namespace that refuses it (no permission) does
    # not stop the worker; `starter.py retention schedule` can make it later.
    try:
        outcome = await ensure_retention_schedule(client, settings.task_queue)
        log.info("retention_schedule", schedule_id=SCHEDULE_ID, outcome=outcome)
    except Exception as error:  # noqa: BLE001 - logged for the operator; the loans go on
        log.error("retention_schedule_failed", schedule_id=SCHEDULE_ID, error=str(error)[:300])
    # The audit checkpoints' Schedule (runtime/audit_checkpoint_schedule.py), the same way.
    try:
        every = timedelta(minutes=settings.audit_checkpoint_minutes)
        outcome = await ensure_audit_checkpoint_schedule(client, settings.task_queue, every)
        log.info("audit_checkpoint_schedule", schedule_id=CHECKPOINT_SCHEDULE_ID, outcome=outcome)
    except Exception as error:  # noqa: BLE001 - logged for the operator; the loans go on
        log.error("audit_checkpoint_schedule_failed", schedule_id=CHECKPOINT_SCHEDULE_ID, error=str(error)[:300])
    with concurrent.futures.ThreadPoolExecutor(max_workers=settings.activity_threads) as executor:
        worker = build_worker(client, settings, executor)
        log.info(
            "worker_started",
            task_queue=settings.task_queue,
            namespace=settings.temporal_namespace,
            address=settings.temporal_address,
        )
        await worker.run()


# Exit code of a worker that refuses its namespace (docs/operations.md).
EXIT_NAMESPACE_NOT_READY = 3


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    except SearchAttributesMissing as refused:
        log.error("namespace_not_ready", error=str(refused))
        print(f"error: {refused}", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        # os._exit: a client process leaving through the interpreter's
        # shutdown can abort in the SDK's runtime (sdk-python #300).
        os._exit(EXIT_NAMESPACE_NOT_READY)
