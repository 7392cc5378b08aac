"""The dev-server phases of one kind (the floor `noop`, the `essential` floor, or `dunning`) on its own
server and worker process: start N workflows, fill up to `--open`, signal the
first N (see bench/run.py's docstring); timed, with the CPU each process used,
the worker's memory and, with --profile, py-spy profiles of the worker."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import psutil
from sqlalchemy import func, select
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy

from activities.payloads import PREPARE_LOAN
from bench.figures import SLOW_TASK_SECONDS
from bench.essential import ESSENTIAL_WORKFLOW
from bench.noop import NOOP_ACTIVITY, NOOP_WORKFLOW
from bench.processes import DevServer, WorkerProcess, worker_env
from bench.progress import say
from db.models import Loan
from db.session import make_engine, make_session_factory
from dunning.contract import WORKFLOW_TYPE, workflow_id_for

QUIET_SECONDS = 1.0
# Each kind's workflow type, and the activity that ends its start.
WORKFLOW_TYPES = {
    "dunning": (WORKFLOW_TYPE, PREPARE_LOAN),
    "noop": (NOOP_WORKFLOW, NOOP_ACTIVITY),
    "essential": (ESSENTIAL_WORKFLOW, PREPARE_LOAN),
}


async def start_all(client: Client, workflow_type: str, loans: list[dict], task_queue: str, concurrency: int) -> None:
    gate = asyncio.Semaphore(concurrency)

    async def start(loan: dict) -> None:
        async with gate:
            await client.start_workflow(
                workflow_type, loan, id=workflow_id_for(loan["loan_id"]), task_queue=task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            )

    await asyncio.gather(*(start(loan) for loan in loans))


async def signal_all(client: Client, loans: list[dict], concurrency: int) -> None:
    gate = asyncio.Semaphore(concurrency)
    paid_at = datetime.now(timezone.utc).isoformat(timespec="seconds")

    async def pay(loan: dict) -> None:
        async with gate:
            await client.get_workflow_handle(workflow_id_for(loan["loan_id"])).signal(
                "repayment",
                {"payment_id": f"P-{loan['loan_id']}", "amount": loan["amount_due"], "currency": loan["currency"],
                 "paid_at": paid_at},
            )

    await asyncio.gather(*(pay(loan) for loan in loans))


async def wait_for(worker: WorkerProcess, done, timeout: float, what: str, quiet: float = QUIET_SECONDS) -> dict:
    """Poll the worker until `done(stats)` and it has run no activation for `quiet` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        stats = await worker.stats()
        if stats["failed"]:
            raise RuntimeError(f"{worker.kind} worker: {stats['failed']} workflow tasks failed; see {worker.log.name}")
        if done(stats) and stats["now"] - stats["last_activation_at"] >= quiet:
            return stats
        if time.monotonic() > deadline:
            raise RuntimeError(f"{worker.kind} worker: {what} not done in {timeout:.0f} s: {stats}; see {worker.log.name}")
        await asyncio.sleep(0.2)


async def count_closed(client: Client, workflow_type: str, expected: int, timeout: float = 30) -> int:
    """Completed workflows of a type, by the server's visibility (a check, not timed)."""
    deadline = time.monotonic() + timeout
    while True:
        count = (await client.count_workflows(f'WorkflowType="{workflow_type}" AND ExecutionStatus="Completed"')).count
        if count >= expected or time.monotonic() > deadline:
            return count
        await asyncio.sleep(0.5)


class Profiler:
    """py-spy sampling a worker process (every thread holding the GIL), written
    as collapsed stacks; bench/profile_report.py summarises them."""

    def __init__(self, pid: int, path: Path) -> None:
        self.path = path
        self.process = None
        spy = shutil.which("py-spy") or (str(Path(sys.executable).parent / "py-spy")
                                         if (Path(sys.executable).parent / "py-spy").exists() else None)
        if spy is None:
            print("  (py-spy is not installed: no profile; pip install py-spy)", file=sys.stderr)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [spy, "record", "--pid", str(pid), "--rate", "250", "--gil", "--nonblocking", "--format", "raw",
             "--output", str(path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()


def launch(kind: str, workdir: Path, database_url: str, config_dir: Path) -> tuple[DevServer, WorkerProcess]:
    """A fresh server and worker process for one kind; the worker imports while
    the server starts, and connects once it answers."""
    server = DevServer(workdir / f"{kind}-server.log", wait=False)
    try:
        env = worker_env(server.address, f"bench-{kind}", database_url, config_dir)
        return server, WorkerProcess(kind, env, workdir / f"{kind}-worker.log")
    except BaseException:
        server.stop()
        raise


async def throughput(kind: str, args, processes: tuple[DevServer, WorkerProcess], database_url: str, loans: list[dict]) -> dict:
    """Start, fill and signal phases for one kind on its own server and worker."""
    workflow_type, first_activity = WORKFLOW_TYPES[kind]
    n, total = args.loans, max(args.open, args.loans)
    out: dict = {"workflow_type": workflow_type}
    server, worker = processes
    try:
        task_queue = f"bench-{kind}"
        await asyncio.to_thread(server.wait_healthy)
        ready = await worker.wait_ready()
        say(f"{kind}: server and worker ready")
        out["max_cached_workflows"] = ready["max_cached_workflows"]
        out["tuning"] = ready.get("tuning")
        out["rss_idle"] = psutil.Process(worker.pid).memory_info().rss
        client = await Client.connect(server.address)
        timeout = 120 + total / 5

        # 1. start N
        say(f"{kind}: starting {n} workflows")
        profiler = Profiler(worker.pid, Path(args.profile) / f"start-{kind}.txt") if args.profile else None
        before = await worker.stats()
        meter = CpuMeter(worker, server)
        began = time.time()
        await start_all(client, workflow_type, loans[:n], task_queue, args.concurrency)
        calls_done = time.time()
        stats = await wait_for(worker, lambda s: s["activities"].get(first_activity, 0) >= n, timeout, "start")
        if profiler:
            profiler.stop()
        took = stats["last_activation_at"] - began
        out["start"] = {
            "workflows": n, "seconds": took, "per_second": n / took,
            "start_calls_seconds": calls_done - began,
            "first_activities_seconds": stats["last_activity_at"][first_activity] - began,
            "activations": stats["activations"] - before["activations"],
            **meter.used(),
        }
        out["rss_at_start_n"] = psutil.Process(worker.pid).memory_info().rss

        # 2. fill up to `total` open
        if total > n:
            say(f"{kind}: filling up to {total} open workflows")
            meter = CpuMeter(worker, server)
            began = time.time()
            await start_all(client, workflow_type, loans[n:total], task_queue, args.concurrency)
            stats = await wait_for(worker, lambda s: s["activities"].get(first_activity, 0) >= total, timeout, "fill")
            took = stats["last_activation_at"] - began
            out["fill"] = {"workflows": total - n, "seconds": took, "per_second": (total - n) / took, **meter.used()}
        out["open"] = total
        memory = psutil.Process(worker.pid).memory_info()
        out["rss_open"] = memory.rss
        out["rss_peak"] = stats["rss_peak"]

        # 3. signal the first N: the oldest, evicted from the cache if more than it holds are open
        say(f"{kind}: signalling {n} workflows")
        profiler = Profiler(worker.pid, Path(args.profile) / f"signal-{kind}.txt") if args.profile else None
        before = await worker.stats()
        meter = CpuMeter(worker, server)
        began = time.time()
        await signal_all(client, loans[:n], args.concurrency)
        calls_done = time.time()
        stats = await wait_for(worker, lambda s: s["completed"] - before["completed"] >= n, timeout, "signal", quiet=0)
        if profiler:
            profiler.stop()
        took = stats["last_completed_at"] - began
        out["signal"] = {
            "workflows": n, "seconds": took, "per_second": n / took, "signal_calls_seconds": calls_done - began,
            "activations": stats["activations"] - before["activations"],
            **meter.used(),
            "evicted_before_signal": total > n + (out["max_cached_workflows"] or 0),
        }
        out["closed_on_server"] = await count_closed(client, workflow_type, n)
        # After the timing: the workflow tasks of the N timed workflows, from
        # their histories, by phase (those scheduled before the first signal
        # call are the start phase's).
        say(f"{kind}: reading {n} histories for the workflow task latencies")
        tasks = await workflow_tasks(client, [workflow_id_for(loan["loan_id"]) for loan in loans[:n]])
        out["workflow_tasks"] = {
            "start": task_latency_summary([t for t in tasks if t["scheduled_at"] < began]),
            "signal": task_latency_summary([t for t in tasks if t["scheduled_at"] >= began]),
        }
        if kind != "noop":
            sessions = make_session_factory(make_engine(database_url))
            with sessions() as db:
                out["closed_in_database"] = db.scalar(select(func.count()).select_from(Loan).where(Loan.outcome == "repaid"))
        out["activities"] = stats["activities"]
    finally:
        worker.stop()
        server.stop()
        out["worker_warnings"] = worker_warnings(Path(worker.log.name))
        say(f"{kind}: stopped")
    return out


async def workflow_tasks(client: Client, workflow_ids: list[str], concurrency: int = 16) -> list[dict]:
    """Every workflow task in these workflows' histories (see task_timings)."""
    gate = asyncio.Semaphore(concurrency)

    async def one(workflow_id: str) -> list[dict]:
        async with gate:
            history = await client.get_workflow_handle(workflow_id).fetch_history()
        return task_timings(history.events)

    return [task for tasks in await asyncio.gather(*(one(w) for w in workflow_ids)) for task in tasks]


_TASK_ENDS = {
    EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED: ("workflow_task_completed_event_attributes", "completed"),
    EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED: ("workflow_task_failed_event_attributes", "failed"),
    EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT: ("workflow_task_timed_out_event_attributes", "timed_out"),
}


def task_timings(events) -> list[dict]:
    """One history's workflow tasks, from its events (server times, seconds
    since the epoch): when each was scheduled, how long it waited for a worker
    to take it (schedule-to-start: queued on the server, or on the worker's
    sticky queue while its slots were full) and how long the worker took to
    answer (start-to-close: what the SDK's TMPRL1104 warns of over 5 s), and
    how it ended (completed, failed, timed_out; None: still open)."""
    scheduled: dict[int, dict] = {}
    for event in events:
        at = event.event_time.ToMicroseconds() / 1e6
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
            scheduled[event.event_id] = {"scheduled_at": at, "started_at": None, "ended_at": None, "outcome": None}
        elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
            task = scheduled.get(event.workflow_task_started_event_attributes.scheduled_event_id)
            if task is not None:
                task["started_at"] = at
        elif event.event_type in _TASK_ENDS:
            field, outcome = _TASK_ENDS[event.event_type]
            task = scheduled.get(getattr(event, field).scheduled_event_id)
            if task is not None:
                task["ended_at"], task["outcome"] = at, outcome
    for task in scheduled.values():
        started, ended = task["started_at"], task["ended_at"]
        task["schedule_to_start"] = None if started is None else started - task["scheduled_at"]
        task["start_to_close"] = None if started is None or ended is None else ended - started
        task["schedule_to_close"] = None if ended is None else ended - task["scheduled_at"]
    return list(scheduled.values())


def percentile(values: list[float], share: float) -> float:
    """The nearest-rank percentile (share in 0..1) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * share // 1))  # ceil(n * share), at least the first
    return ordered[int(rank) - 1]


def latency_summary(values: list[float], over: float = SLOW_TASK_SECONDS) -> dict:
    """p50, p95, p99, max and how many are over `over` seconds."""
    if not values:
        return {"count": 0, "p50": None, "p95": None, "p99": None, "max": None, f"over_{over:g}s": 0}
    return {"count": len(values), "p50": percentile(values, 0.50), "p95": percentile(values, 0.95),
            "p99": percentile(values, 0.99), "max": max(values), f"over_{over:g}s": sum(v > over for v in values)}


def task_latency_summary(tasks: list[dict]) -> dict:
    """Schedule-to-start, start-to-close and schedule-to-close of these
    workflow tasks (each summarised), and how many timed out or failed."""
    out = {"tasks": len(tasks), "timed_out": sum(t["outcome"] == "timed_out" for t in tasks),
           "failed": sum(t["outcome"] == "failed" for t in tasks)}
    for measure in ("schedule_to_start", "start_to_close", "schedule_to_close"):
        out[measure] = latency_summary([t[measure] for t in tasks if t[measure] is not None])
    return out


def worker_warnings(log: Path) -> dict:
    """Signs of an overloaded worker in its log: workflow tasks that took over
    5 s (the SDK's TMPRL1104), and completions of tasks the server had timed out
    already (10 s), whose work (local activities included) is then done again."""
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    return {"workflow_tasks_over_5s": text.count("TMPRL1104"),
            "workflow_tasks_timed_out": text.count("Task not found when completing")}


class CpuMeter:
    """CPU seconds used by the worker, the server and this driver during a phase."""

    def __init__(self, worker: WorkerProcess, server: DevServer) -> None:
        self._pids = {"worker": worker.pid, "server": server.pid, "driver": os.getpid()}
        self._start = self._now()

    def _now(self) -> dict:
        return {name: _cpu(pid) for name, pid in self._pids.items()}

    def used(self) -> dict:
        now = self._now()
        return {f"{name}_cpu_seconds": round(now[name] - self._start[name], 2) for name in now}


def _cpu(pid: int) -> float:
    try:
        times = psutil.Process(pid).cpu_times()
        return times.user + times.system
    except psutil.Error:
        return 0.0
