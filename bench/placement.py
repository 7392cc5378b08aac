"""Placing 100,000 loans (issue 19, item 7), against the floor's start rate.

    python -m bench.placement --loans 100000          # ≈ 25 minutes on 2 busy cores
    python -m bench.placement --loans 2000 --floor-loans 500
    python -m bench.placement --no-worker             # placing alone, no worker taking the loans up

In one run, each part on a fresh `temporal server start-dev` configured as
`make bench`'s (bench/processes.py), its state in a SQLite file of the run's
temporary directory (removed at the end unless `--keep`):

1. the floor: `--floor-loans` no-op workflows started by the benchmark's own
   loop on the no-op worker, timed as `make bench`'s start throughput (until
   the worker has run every first activity and the task after it);
2. placing: a CSV of `--loans` records (bench/portfolio.py's loans: one
   borrower each, due tomorrow in Asia/Shanghai) placed with
   `starter.py start FILE` against a fresh PostgreSQL database on the tests'
   server (scripts/ensure_postgres.sh), with the dunning worker running
   (bench/worker_proc.py, as `make bench`'s) unless `--no-worker`: records/s
   from the command's start to its exit, and the ratio to the floor. Checked
   after: one `loans` row and one workflow per record;
3. the KPI report over those loans, after bench/portfolio.py gave them a
   collections history (stage entries, payments, contacts, promises, plans):
   `starter.py report --json` timed end to end, `--report-runs` times.

Every process it starts is stopped at the end, and the database and the
temporary directory (the servers' files: their workflows go with them) are
removed unless `--keep`.
The figures go to stdout and `--out` (JSON).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import psutil
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from temporalio.client import Client

from bench.figures import machine
from bench.noop import NOOP_ACTIVITY, NOOP_WORKFLOW
from bench.portfolio import seed_history
from bench.processes import DEV_SERVER_CONFIG, ROOT, WorkerProcess, worker_env
from bench.progress import say
from bench.throughput import start_all, wait_for
from bench.workload import ZONE, loan_records
from db.migrate import upgrade_to_head
from runtime.dev_server import free_port, headless_command, stop_process, wait_healthy

CSV_COLUMNS = ("loan_id", "borrower_id", "amount_due", "currency", "due_date", "policy",
               "borrower.name", "borrower.phone", "borrower.email", "borrower.language", "borrower.time_zone")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.placement", description=__doc__.split("\n\n")[0])
    parser.add_argument("--loans", type=int, default=100_000, help="records in the CSV (default 100000)")
    parser.add_argument("--floor-loans", type=int, default=2000, help="no-op workflows in the floor's start rate")
    parser.add_argument("--concurrency", type=int, default=64, help="starts in flight, for the floor and the starter")
    parser.add_argument("--batch", type=int, default=500, help="the starter's records per database transaction")
    parser.add_argument("--no-worker", action="store_true", help="place with no worker running")
    parser.add_argument("--report-runs", type=int, default=3, help="times the KPI report is run (median)")
    parser.add_argument("--keep", action="store_true", help="keep the database and the temporary directory")
    parser.add_argument("--out", default=str(ROOT / ".dunning" / "bench-placement.json"), help="the figures as JSON")
    return parser.parse_args(argv)


def write_loans_csv(path: Path, count: int, prefix: str = "L-PLACE") -> None:
    """`count` records with their borrowers, as a backend would send them."""
    due = (datetime.now(ZoneInfo(ZONE)).date() + timedelta(days=1)).isoformat()
    with path.open("w", encoding="utf-8", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(CSV_COLUMNS)
        for n in range(count):
            writer.writerow((f"{prefix}-{n:06d}", f"B-{prefix}-{n:06d}", f"{1000 + n % 900}.00", "CNY", due, "default",
                             f"Borrower {n}", f"+86138{n:08d}", f"b{n}@example.com", "zh_CN", ZONE))


# ------------------------------------------------------------------ PostgreSQL


def postgres_admin_url() -> str:
    done = subprocess.run([str(ROOT / "scripts" / "ensure_postgres.sh")], capture_output=True, text=True, check=True)
    return done.stdout.strip().splitlines()[-1]


class Database:
    """A fresh PostgreSQL database for the run, migrated to head."""

    def __init__(self, admin_url: str) -> None:
        self.name = f"bench_placement_{uuid.uuid4().hex[:8]}"
        self._admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with self._admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{self.name}"'))
        self.url = make_url(admin_url).set(database=self.name).render_as_string(hide_password=False)
        upgrade_to_head(self.url)

    def drop(self) -> None:
        with self._admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        self._admin.dispose()


class DevServer:
    """`make bench`'s dev server (bench/processes.py: no rate limits), its
    state in a SQLite file rather than in memory: the in-memory server died
    (SIGSEGV in its SQLite) at about 92,000 open workflows on this machine.
    The file is on a RAM disk (/dev/shm) where there is one: on this VM's disk
    each commit's sync made the server ten times slower than in memory."""

    def __init__(self, log_path: Path, db_path: Path) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.log = open(log_path, "ab")
        flags = ["--db-filename", str(db_path)]
        for value in DEV_SERVER_CONFIG:
            flags += ["--dynamic-config-value", value]
        self.process = subprocess.Popen(headless_command(self.port, *flags), stdout=self.log, stderr=subprocess.STDOUT)
        wait_healthy(self.address, self.process, 60, self.log.name)

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        stop_process(self.process)
        self.log.close()


def state_dir(workdir: Path) -> Path:
    """Where the servers keep their SQLite files: /dev/shm/<run> if it exists."""
    shm = Path("/dev/shm")
    directory = shm / workdir.name if shm.is_dir() else workdir
    directory.mkdir(exist_ok=True)
    return directory


# ------------------------------------------------------------------ the phases


async def floor_rate(args, workdir: Path, config_dir: Path) -> dict:
    """`make bench`'s start throughput of the no-op workflow (bench/throughput.py)."""
    server = DevServer(workdir / "floor-server.log", state_dir(workdir) / "floor-temporal.db")
    worker = WorkerProcess("noop", worker_env(server.address, "bench-noop", "sqlite:///" + str(workdir / "floor.db"),
                                              config_dir), workdir / "floor-worker.log")
    try:
        await worker.wait_ready()
        client = await Client.connect(server.address)
        loans = loan_records(args.floor_loans)
        say(f"floor: starting {len(loans)} no-op workflows")
        began = time.time()
        await start_all(client, NOOP_WORKFLOW, loans, "bench-noop", args.concurrency)
        calls_done = time.time()
        stats = await wait_for(worker, lambda s: s["activities"].get(NOOP_ACTIVITY, 0) >= len(loans),
                               120 + len(loans) / 5, "floor start")
        took = stats["last_activation_at"] - began
        return {"workflows": len(loans), "seconds": round(took, 2), "per_second": round(len(loans) / took, 1),
                "start_calls_per_second": round(len(loans) / (calls_done - began), 1)}
    finally:
        worker.stop()
        server.stop()


async def placing(args, workdir: Path, config_dir: Path, database_url: str) -> dict:
    """`starter.py start` on the CSV, timed, with the dunning worker running (or none)."""
    path = workdir / "loans.csv"
    write_loans_csv(path, args.loans)
    server = DevServer(workdir / "placing-server.log", state_dir(workdir) / "placing-temporal.db")
    task_queue = "bench-placing"
    env = worker_env(server.address, task_queue, database_url, config_dir)
    worker = None if args.no_worker else WorkerProcess("dunning", env, workdir / "placing-worker.log")
    out: dict = {"records": args.loans, "worker": not args.no_worker, "concurrency": args.concurrency,
                 "batch": args.batch}
    try:
        if worker is not None:
            await worker.wait_ready()
        say(f"placing: starter.py start on {args.loans} records ({'with' if worker else 'no'} worker)")
        command = [sys.executable, "starter.py", "start", str(path), "--concurrency", str(args.concurrency),
                   "--batch", str(args.batch), "--no-progress", "--checkpoint-dir", str(workdir / "checkpoints")]
        with open(workdir / "placing.out", "wb") as stdout, open(workdir / "placing.err", "wb") as stderr:
            began = time.time()
            starter = subprocess.Popen(command, cwd=ROOT, env={**env, "DUNNING_LOG_LEVEL": "WARNING"},
                                       stdout=stdout, stderr=stderr)
            cpu = CpuWatch({"starter": starter.pid, "server": server.pid, **({"worker": worker.pid} if worker else {})})
            loads = []
            while starter.poll() is None:
                cpu.sample()
                loads.append(os.getloadavg()[0])
                await asyncio.sleep(1)
            took = time.time() - began
        if starter.returncode != 0:
            raise RuntimeError(f"starter.py start exited {starter.returncode}; see {workdir / 'placing.err'}")
        lines = (workdir / "placing.out").read_text(encoding="utf-8").splitlines()
        out.update({"seconds": round(took, 1), "per_second": round(args.loans / took, 1), "summary": lines[-1],
                    "started": sum(1 for line in lines if "\tstarted\t" in line), "cpu_seconds": cpu.used(),
                    "load_average_1min": {"min": min(loads, default=0), "median": statistics.median(loads or [0]),
                                          "max": max(loads, default=0)}})
        client = await Client.connect(server.address)
        out["workflows_on_server"] = (await client.count_workflows("WorkflowType='DunningWorkflow'")).count
        if worker is not None:
            stats = await worker.stats()
            out["prepared_by_worker_when_placed"] = stats["activities"].get("prepare_loan", 0)
    finally:
        if worker is not None:
            worker.stop()
        server.stop()
    engine = create_engine(database_url)
    with engine.connect() as connection:
        out["loans_in_database"] = connection.scalar(text("SELECT count(*) FROM loans"))
    engine.dispose()
    return out


def time_report(database_url: str, workdir: Path, runs: int) -> dict:
    """`starter.py report --json` over the database, `runs` times."""
    env = {**os.environ, "DUNNING_DATABASE_URL": database_url, "DUNNING_LOG_LEVEL": "WARNING"}
    seconds = []
    for _ in range(runs):
        began = time.perf_counter()
        done = subprocess.run([sys.executable, "starter.py", "report", "--json", "--out", str(workdir / "report")],
                              cwd=ROOT, env=env, capture_output=True, text=True)
        seconds.append(time.perf_counter() - began)
        if done.returncode != 0:
            raise RuntimeError(f"starter.py report exited {done.returncode}: {done.stderr[-2000:]}")
    report = json.loads(done.stdout)
    # The numbers alone, without the chart, the page and the interpreter's start:
    probe = ("import time; from db.session import make_engine, make_session_factory; from reports.kpi import build_report; "
             "s = make_session_factory(make_engine(%r)); t = time.perf_counter(); db = s(); build_report(db); "
             "print(time.perf_counter() - t)" % database_url)
    aggregate = []
    for _ in range(runs):
        done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
        aggregate.append(float(done.stdout.strip().splitlines()[-1]))
    return {"runs": runs, "command_seconds": [round(s, 2) for s in seconds],
            "command_median_seconds": round(statistics.median(seconds), 2),
            "build_report_seconds": [round(s, 2) for s in aggregate],
            "build_report_median_seconds": round(statistics.median(aggregate), 2),
            "loans": report["overall"]["loans"]}


class CpuWatch:
    """CPU seconds of each process, sampled while it runs (a process that has
    exited keeps its last sample)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self._processes = {name: psutil.Process(pid) for name, pid in pids.items()}
        self._first = {name: self._cpu(process) for name, process in self._processes.items()}
        self._last = dict(self._first)

    @staticmethod
    def _cpu(process: psutil.Process) -> float | None:
        try:
            times = process.cpu_times()
            return times.user + times.system
        except psutil.Error:
            return None

    def sample(self) -> None:
        for name, process in self._processes.items():
            now = self._cpu(process)
            if now is not None:
                self._last[name] = now

    def used(self) -> dict:
        return {name: round((self._last[name] or 0) - (self._first[name] or 0), 1) for name in self._processes}


async def main_async(args) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="bench-placement-"))
    config_dir = ROOT / "config"
    database = Database(postgres_admin_url())
    results: dict = {"machine": machine(), "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                     "load_average_at_start": os.getloadavg(),
                     "database": "postgresql (scripts/ensure_postgres.sh)", "workdir": str(workdir)}
    try:
        results["floor"] = await floor_rate(args, workdir, config_dir)
        say(f"floor: {results['floor']['per_second']} starts/s")
        results["placing"] = await placing(args, workdir, config_dir, database.url)
        results["placing"]["ratio_to_floor"] = round(results["placing"]["per_second"] / results["floor"]["per_second"], 2)
        say(f"placing: {results['placing']['per_second']} records/s "
            f"({results['placing']['ratio_to_floor']} of the floor)")
        say("report: as placed")
        results["report_as_placed"] = time_report(database.url, workdir, args.report_runs)
        say("report: seeding a collections history for every loan")
        began = time.time()
        results["history_rows"] = seed_history(database.url, seed=19)
        results["history_seconds"] = round(time.time() - began, 1)
        results["report"] = time_report(database.url, workdir, args.report_runs)
        say(f"report: {results['report']['command_median_seconds']} s for {results['report']['loans']} loans")
    finally:
        if args.keep:
            say(f"kept: database {database.url}, {workdir} and {state_dir(workdir)}")
        else:
            database.drop()
            shutil.rmtree(state_dir(workdir), ignore_errors=True)
            shutil.rmtree(workdir, ignore_errors=True)
    return results


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    results = asyncio.run(main_async(args))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2), encoding="utf-8")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
