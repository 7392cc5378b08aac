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

import structlog
from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.dunning_activities import DunningActivities
from activities.rendering import TemplateRenderer
from channels.registry import build_channels
from db.migrate import upgrade_to_head
from db.session import make_engine, make_session_factory
from runtime.bytecode import share_code
from runtime.logging import configure_logging
from runtime.settings import Settings, get_settings
from runtime.temporal import SearchAttributesMissing, check_search_attributes, connect, metrics_runtime
from workflows.dunning import DunningWorkflow

log = structlog.get_logger("worker")

# Modules the workflow sandbox may share with the worker instead of
# re-importing them for every workflow run: they are deterministic (pydantic
# models and pure functions), and re-importing pydantic per run is slow.
PASSTHROUGH_MODULES = ("pydantic", "pydantic_core", "annotated_types", "dunning", "activities.payloads")


def sandbox_runner() -> SandboxedWorkflowRunner:
    # The sandbox imports the workflow modules again for every workflow
    # instance: with one shared copy of their compiled code (runtime/bytecode.py).
    share_code("workflows")
    return SandboxedWorkflowRunner(restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH_MODULES))


def build_activities(settings: Settings) -> DunningActivities:
    engine = make_engine(settings.database_url)
    return DunningActivities(
        session_factory=make_session_factory(engine),
        channels=build_channels(settings),
        renderer=TemplateRenderer(settings.templates_dir),
        settings=settings,
    )


def build_worker(
    client: Client,
    settings: Settings,
    executor: concurrent.futures.Executor,
    activities: DunningActivities | None = None,
) -> Worker:
    acts = activities or build_activities(settings)
    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=[DunningWorkflow],
        activities=acts.registered(),
        activity_executor=executor,
        workflow_runner=sandbox_runner(),
    )


async def main() -> None:
    settings = get_settings()
    configure_logging(settings.log_level)
    upgrade_to_head(settings.database_url)
    client = await connect(settings, metrics_runtime(settings))
    await check_search_attributes(client, settings.temporal_namespace)
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as executor:
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
