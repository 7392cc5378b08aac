"""The worker under test, in its own process, so that its resident memory and
CPU are its own:

    python -m bench.worker_proc dunning     the worker exactly as worker.py builds it
    python -m bench.worker_proc noop        the same worker with NoopWorkflow instead
    python -m bench.worker_proc essential   the same worker with EssentialWorkflow (bench/essential.py)

Settings come from the environment, as for worker.py. Both kinds are built by
runtime/worker_build.py's build_worker (sandbox runner, activity executor,
cache size, ...); the noop kind then swaps the workflows and activities for
bench/noop.py's, nothing else. Two probes are added, identically for both kinds, so the benchmark can
time what the worker did instead of polling the server:

- an activity interceptor counting completed activities by type, with the time
  of the last one;
- the workflow-task executor (the SDK's default, a thread pool of the same
  size) timestamps every workflow activation and counts the activations that
  complete a workflow.

Control: one command per line on stdin, one JSON line on stdout.

    stats      counters, times (time.time()), resident memory, cache size
    quit       stop the worker and exit
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import os
import sys
import threading
import time
from collections import Counter
from typing import Any

import psutil
from temporalio import activity
from temporalio.client import Client
from temporalio.client import Interceptor as ClientInterceptor
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Worker
from temporalio.worker import Interceptor as WorkerInterceptor

class Probe(ClientInterceptor, WorkerInterceptor):
    """Counters shared by the interceptor and the executor (any thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.activations = 0
        self.last_activation_at = 0.0
        self.completed = 0  # activations that completed a workflow
        self.failed = 0  # activations that failed a workflow or the task
        self.last_completed_at = 0.0
        self.activities: Counter[str] = Counter()
        self.last_activity_at: dict[str, float] = {}

    # ------------------------------------------------------------ activities
    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _ActivityProbe(next, self)

    def activity_done(self, activity_type: str) -> None:
        now = time.time()
        with self._lock:
            self.activities[activity_type] += 1
            self.last_activity_at[activity_type] = now

    # ----------------------------------------------------------- activations
    def activation_done(self, completion: Any) -> None:
        now = time.time()
        closed = failed = False
        if completion is not None and hasattr(completion, "HasField"):
            if completion.HasField("successful"):
                for command in completion.successful.commands:
                    if command.HasField("complete_workflow_execution"):
                        closed = True
                    elif command.HasField("fail_workflow_execution"):
                        failed = True
            elif completion.HasField("failed"):
                failed = True
        with self._lock:
            self.activations += 1
            self.last_activation_at = now
            if closed:
                self.completed += 1
                self.last_completed_at = now
            if failed:
                self.failed += 1

    def stats(self) -> dict:
        with self._lock:
            return {
                "activations": self.activations,
                "last_activation_at": self.last_activation_at,
                "completed": self.completed,
                "failed": self.failed,
                "last_completed_at": self.last_completed_at,
                "activities": dict(self.activities),
                "last_activity_at": dict(self.last_activity_at),
            }


class _ActivityProbe(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, probe: Probe) -> None:
        super().__init__(next)
        self._probe = probe

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        result = await self.next.execute_activity(input)
        self._probe.activity_done(activity.info().activity_type)
        return result


class TimedExecutor(concurrent.futures.ThreadPoolExecutor):
    """The SDK's default workflow-task executor, timestamping each activation."""

    def __init__(self, probe: Probe, max_workers: int) -> None:
        super().__init__(max_workers=max_workers, thread_name_prefix="temporal_workflow_")
        self._probe = probe

    def submit(self, fn, /, *args, **kwargs):
        probe = self._probe

        def timed():
            result = fn(*args, **kwargs)
            probe.activation_done(result)
            return result

        return super().submit(timed)


def resident_bytes() -> dict:
    process = psutil.Process()
    peak = 0
    try:
        with open(f"/proc/{os.getpid()}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    peak = int(line.split()[1]) * 1024
    except OSError:
        pass
    return {"rss": process.memory_info().rss, "rss_peak": peak}


async def _connect(config: dict, probe: Probe, timeout: float = 90) -> Client:
    """The benchmark starts this process while the server is still starting."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await Client.connect(**config, interceptors=[probe])
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


async def build(kind: str, probe: Probe, executor: concurrent.futures.Executor) -> Worker:
    from runtime.bytecode import share_code
    from runtime.settings import get_settings
    from runtime.temporal import connect_config
    from runtime.worker_build import build_worker

    settings = get_settings()
    client = await _connect(connect_config(settings), probe)
    # Built by build_worker, then rebuilt from its configuration with
    # the probes; the first one is registered on a queue of its own (the SDK
    # refuses two workers on one queue) and never runs.
    template = build_worker(client, settings.model_copy(update={"task_queue": f"{settings.task_queue}-template"}), executor)
    config = template.config()
    config["task_queue"] = settings.task_queue
    if kind == "noop":
        from bench.noop import NoopWorkflow, noop_prepare

        share_code("bench")  # as sandbox_runner() does for workflows/
        config["workflows"], config["activities"] = [NoopWorkflow], [noop_prepare]
    if kind == "essential":
        from bench.essential import EssentialWorkflow

        share_code("bench")
        config["workflows"] = [EssentialWorkflow]  # the real activities, as built
    if config.get("workflow_task_executor") is None:
        size = config.get("max_concurrent_workflow_tasks") or 500  # the SDK's default
        config["workflow_task_executor"] = TimedExecutor(probe, size)
    return Worker(**config)


async def serve(kind: str) -> None:
    from runtime.logging import configure_logging
    from runtime.settings import get_settings

    settings = get_settings()
    configure_logging(settings.log_level)
    probe = Probe()
    loop = asyncio.get_running_loop()
    commands: asyncio.Queue[str] = asyncio.Queue()

    def read_stdin() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(commands.put_nowait, line.strip())
        loop.call_soon_threadsafe(commands.put_nowait, "quit")

    # The activity thread pool, sized as worker.py's main() sizes it.
    with concurrent.futures.ThreadPoolExecutor(max_workers=settings.activity_threads) as executor:
        worker = await build(kind, probe, executor)
        config = worker.config(active_config=True)
        cache = config.get("max_cached_workflows")
        # The worker's size as built (None: the SDK's default), for the results.
        tuning = {"activity_threads": settings.activity_threads, "max_cached_workflows": cache,
                  "workflow_sandbox": settings.workflow_sandbox,
                  "sticky_schedule_to_start_seconds": config["sticky_queue_schedule_to_start_timeout"].total_seconds(),
                  **{name: config.get(name) for name in ("max_concurrent_workflow_tasks", "max_concurrent_activities",
                                                          "max_concurrent_local_activities")}}
        async with worker:
            threading.Thread(target=read_stdin, daemon=True).start()
            reply({"ready": True, "pid": os.getpid(), "kind": kind, "max_cached_workflows": cache, "tuning": tuning,
                   **resident_bytes()})
            while True:
                command = await commands.get()
                if command == "stats":
                    reply({**probe.stats(), **resident_bytes(), "now": time.time(), "max_cached_workflows": cache})
                elif command == "quit":
                    break
                elif command:
                    reply({"error": f"unknown command {command!r}"})
    reply({"stopped": True})


_replies = sys.stdout


def reply(payload: dict) -> None:
    _replies.write(json.dumps(payload) + "\n")
    _replies.flush()


def _own_stdout() -> None:
    """Keep stdout for the replies: anything else written to file descriptor 1
    (the SDK core's Rust log lines) goes to stderr, the worker's log."""
    global _replies
    _replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("dunning", "noop", "essential"))
    args = parser.parse_args()
    _own_stdout()
    asyncio.run(serve(args.kind))


if __name__ == "__main__":
    main()
