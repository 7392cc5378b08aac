"""The dev-server phases of one kind (the floor `noop`, or `dunning`) on its own
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
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy

from activities.payloads import PREPARE_LOAN
from bench.noop import NOOP_ACTIVITY, NOOP_WORKFLOW
from bench.processes import DevServer, WorkerProcess, worker_env
from bench.progress import say
from db.models import Loan
from db.session import make_engine, make_session_factory
from dunning.contract import WORKFLOW_TYPE, workflow_id_for

QUIET_SECONDS = 1.0


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
    workflow_type, first_activity = (WORKFLOW_TYPE, PREPARE_LOAN) if kind == "dunning" else (NOOP_WORKFLOW, NOOP_ACTIVITY)
    n, total = args.loans, max(args.open, args.loans)
    out: dict = {"workflow_type": workflow_type}
    server, worker = processes
    try:
        task_queue = f"bench-{kind}"
        await asyncio.to_thread(server.wait_healthy)
        ready = await worker.wait_ready()
        say(f"{kind}: server and worker ready")
        out["max_cached_workflows"] = ready["max_cached_workflows"]
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
        if kind == "dunning":
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
