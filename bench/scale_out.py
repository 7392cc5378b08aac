"""Scale-out on PostgreSQL (issue 19, item 4): the same loans with 1 worker
process and then 2 against one dev server, next to the no-op floor run the
same way.

    python -m bench.scale_out                      # 500 loans; floor and dunning, 1 and 2 workers
    python -m bench.scale_out --loans 1000 --out /tmp/scale.json
    python -m bench.scale_out --lifecycles 0       # without the database-size measurement
    python -m bench.scale_out --portfolio bench/results.json [--scale-out-json bench/results-scale-out.json]
                                                   # only the 1,000,000-loan portfolio's figures

For each configuration (kind x worker processes) it creates a fresh
PostgreSQL database (migrated, one borrower per loan), starts a fresh
`temporal server start-dev` and that many `python -m bench.worker_proc KIND`
processes on one task queue, then:

1. start: the N loans started (`--concurrency` calls in flight), timed from
   the first call until every workflow ran its first activity and the workers
   have been idle for a second;
2. signal: each gets its full repayment, timed from the first signal until
   the workers completed the last workflow.

Throughput is N / seconds; CPU per loan is the CPU time the worker processes
used (summed) over N, with the server's and the PostgreSQL backends' (those
connected to the run's database) beside it. Then it drops the database.

Last, for the portfolio arithmetic of docs/benchmarks.md, the database a
lifecycle leaves behind: `--lifecycles` unpaid 180-day loans on the default
policy, on the time-skipping server against a fresh PostgreSQL database (the
real activities, in process), then the rows per loan of every table, what
they take on disk (heap and indexes, from the rows' own sizes) and the rows
written; and the worker's CPU per lifecycle, with the workflow cached and,
one more lifecycle, without a cache (every wake a replay). The start+close
runs above give the measured on-disk bytes of a closed loan, to check that
estimate against. `portfolio` turns these and a `make bench` run's lifecycle
and cost figures into docs/benchmarks.md's "A 1,000,000-loan portfolio".

PostgreSQL: the server scripts/ensure_postgres.sh keeps for this checkout
(started if needed), or DUNNING_BENCH_POSTGRES_URL (a superuser's URL: it
creates and drops databases named bench_scale_*).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection, make_url
from temporalio.client import Client

from bench.processes import ROOT, DevServer, WorkerProcess, worker_env
from bench.progress import say
from bench.throughput import WORKFLOW_TYPES, count_closed, signal_all, start_all, task_latency_summary, workflow_tasks
from bench.workload import loan_records, prepare_config, seed_database
from db.session import make_engine
from dunning.contract import workflow_id_for

QUIET_SECONDS = 1.0
# (kind, worker processes), in the order they run: each kind's floor first.
CONFIGURATIONS = (("noop", 1), ("dunning", 1), ("noop", 2), ("dunning", 2))


# ------------------------------------------------------------------ PostgreSQL
def admin_url() -> str:
    """A superuser's SQLAlchemy URL: DUNNING_BENCH_POSTGRES_URL, or the
    checkout's own server (scripts/ensure_postgres.sh starts it if needed)."""
    if os.environ.get("DUNNING_BENCH_POSTGRES_URL"):
        return os.environ["DUNNING_BENCH_POSTGRES_URL"]
    done = subprocess.run(["bash", str(ROOT / "scripts" / "ensure_postgres.sh")], capture_output=True, text=True,
                          timeout=600)
    if done.returncode != 0 or not done.stdout.strip():
        raise RuntimeError(f"no PostgreSQL server: {done.stderr.strip()[-500:]}")
    return done.stdout.strip().splitlines()[-1]


@contextmanager
def _connection(url: str, **engine_options) -> Iterator[Connection]:
    """A connection on an engine of its own, disposed of after."""
    engine = create_engine(url, **engine_options)
    try:
        with engine.connect() as connection:
            yield connection
    finally:
        engine.dispose()


_TABLES = text("SELECT relname FROM pg_stat_user_tables WHERE schemaname = 'public' ORDER BY relname")


def _on_server(admin: str, statement: str) -> None:
    """One statement outside a transaction (CREATE and DROP DATABASE need that) on the admin URL's server."""
    with _connection(admin, isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text(statement))


def create_database(admin: str, name: str) -> str:
    """A new empty database on the admin URL's server; its URL."""
    _on_server(admin, f'CREATE DATABASE "{name}"')
    return make_url(admin).set(database=name).render_as_string(hide_password=False)


def drop_database(admin: str, name: str) -> None:
    # FORCE: the driver's own engine (seed_database's) may still hold a connection.
    _on_server(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def table_sizes(url: str) -> dict[str, dict]:
    """Rows and bytes on disk (heap, TOAST and indexes) of every table."""
    with _connection(url) as connection:
        names = connection.execute(_TABLES).scalars().all()
        out = {}
        for name in names:
            rows = connection.execute(text(f'SELECT count(*) FROM "{name}"')).scalar_one()
            total, indexes = connection.execute(text(
                "SELECT pg_total_relation_size(c.oid), pg_indexes_size(c.oid) FROM pg_class c "
                "WHERE c.relname = :name AND c.relnamespace = 'public'::regnamespace"), {"name": name}).one()
            out[name] = {"rows": rows, "bytes": total, "index_bytes": indexes}
        return out


def scan_counts(url: str) -> dict[str, dict]:
    """Per table, the sequential and index scans the run made (the
    database's own statistics; it was created for the run): a hot query
    without its index shows as sequential scans reading many rows."""
    with _connection(url) as connection:
        rows = connection.execute(text(
            "SELECT relname, seq_scan, seq_tup_read, coalesce(idx_scan, 0) AS idx_scan, n_tup_ins, n_tup_upd "
            "FROM pg_stat_user_tables WHERE schemaname = 'public' ORDER BY relname")).all()
    return {row.relname: {"seq_scan": row.seq_scan, "seq_tup_read": row.seq_tup_read, "idx_scan": row.idx_scan,
                          "inserted": row.n_tup_ins, "updated": row.n_tup_upd}
            for row in rows if row.seq_scan or row.idx_scan or row.n_tup_ins or row.n_tup_upd}


# Per row on disk beyond its columns' own bytes: a heap tuple's header (23,
# aligned to 24) and its line pointer (4); an index entry's header (8) and
# line pointer (4). Pages are filled to about 90 % (B-tree leaf fillfactor,
# free space the heap leaves after updates): FILL.
HEAP_TUPLE_OVERHEAD = 28
INDEX_TUPLE_OVERHEAD = 12
FILL = 0.9


def row_bytes(url: str) -> dict[str, dict]:
    """For every table with rows: rows, and the bytes a row takes on disk,
    heap plus one entry in each of its indexes, from the rows' own sizes
    (pg_column_size), so that a small database gives the figure a large one
    would (its pages are not yet full)."""
    with _connection(url) as connection:
        names = connection.execute(_TABLES).scalars().all()
        out = {}
        for name in names:
            rows = connection.execute(text(f'SELECT count(*) FROM "{name}"')).scalar_one()
            if not rows:
                continue
            heap = connection.execute(text(f'SELECT avg(pg_column_size(t.*)) FROM "{name}" t')).scalar_one()
            index_columns = connection.execute(text(
                "SELECT i.indexrelid::regclass::text, array_agg(a.attname ORDER BY a.attnum) "
                "FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
                "WHERE i.indrelid = CAST(:name AS regclass) GROUP BY i.indexrelid"), {"name": name}).all()
            index = 0.0
            for _index, columns in index_columns:
                width = " + ".join(f'coalesce(pg_column_size("{column}"), 0)' for column in columns)
                index += float(connection.execute(text(f'SELECT avg({width}) FROM "{name}"')).scalar_one())
                index += INDEX_TUPLE_OVERHEAD
            per_row = (float(heap) + HEAP_TUPLE_OVERHEAD + index) / FILL
            out[name] = {"rows": rows, "bytes_per_row": round(per_row, 1), "indexes": len(index_columns)}
        return out


class BackendCpu:
    """CPU seconds of the PostgreSQL backends connected to one database
    (pg_stat_activity), counted from when this was made: a backend that
    connects later counts from zero."""

    def __init__(self, url: str, database: str) -> None:
        self._engine = create_engine(url)
        self._database = database
        self._start = self._now()

    def _now(self) -> dict[int, float]:
        with self._engine.connect() as connection:
            pids = connection.execute(text("SELECT pid FROM pg_stat_activity WHERE datname = :name AND pid <> pg_backend_pid()"),
                                      {"name": self._database}).scalars().all()
        return {pid: _cpu(pid) for pid in pids}

    def used(self) -> float:
        now = self._now()
        self._engine.dispose()
        return round(sum(cpu - self._start.get(pid, 0.0) for pid, cpu in now.items()), 2)


def _cpu(pid: int) -> float:
    try:
        times = psutil.Process(pid).cpu_times()
        return times.user + times.system
    except psutil.Error:
        return 0.0


# --------------------------------------------------------------------- a run
async def _wait(workers: list[WorkerProcess], done, timeout: float, what: str, quiet: float) -> dict:
    """Poll every worker until `done(summed stats)` and none has run an
    activation for `quiet` seconds; the stats summed over the workers."""
    deadline = time.monotonic() + timeout
    while True:
        each = [await worker.stats() for worker in workers]
        total = _summed(each)
        if total["failed"]:
            raise RuntimeError(f"{total['failed']} workflow tasks failed; see {[w.log.name for w in workers]}")
        if done(total) and total["now"] - total["last_activation_at"] >= quiet:
            return total
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not done in {timeout:.0f} s: {total}")
        await asyncio.sleep(0.2)


def _summed(each: list[dict]) -> dict:
    activities: dict[str, int] = {}
    for stats in each:
        for name, count in stats["activities"].items():
            activities[name] = activities.get(name, 0) + count
    return {
        "activations": sum(s["activations"] for s in each),
        "completed": sum(s["completed"] for s in each),
        "failed": sum(s["failed"] for s in each),
        "last_activation_at": max(s["last_activation_at"] for s in each),
        "last_completed_at": max(s["last_completed_at"] for s in each),
        "now": max(s["now"] for s in each),
        "activities": activities,
        "per_worker_activations": [s["activations"] for s in each],
    }


def _processes_cpu(pids: list[int]) -> float:
    return sum(_cpu(pid) for pid in pids)


async def configuration(kind: str, workers: int, loans: list[dict], admin: str, workdir: Path, config_dir: Path,
                        concurrency: int, keep_sizes: bool = False) -> dict:
    """One kind with `workers` worker processes on a fresh database and server."""
    workflow_type, first_activity = WORKFLOW_TYPES[kind]
    n = len(loans)
    name = f"bench_scale_{os.getpid()}_{kind}{workers}_{uuid.uuid4().hex[:6]}"
    url = create_database(admin, name)
    label = f"{kind} x{workers}"
    out: dict = {"kind": kind, "workers": workers, "loans": n}
    server = None
    processes: list[WorkerProcess] = []
    try:
        seed_database(url, n)
        server = DevServer(workdir / f"scale-{kind}{workers}-server.log", wait=False)
        task_queue = f"bench-scale-{kind}"
        env = worker_env(server.address, task_queue, url, config_dir)
        processes = [WorkerProcess(kind, env, workdir / f"scale-{kind}{workers}-worker{index}.log") for index in range(workers)]
        await asyncio.to_thread(server.wait_healthy)
        for process in processes:
            await process.wait_ready()
        out["tuning"] = processes[0].ready.get("tuning")
        client = await Client.connect(server.address)
        pids = [process.pid for process in processes]
        timeout = 120 + n / 2

        for phase in ("start", "signal"):
            say(f"scale-out {label}: {phase}, {n} loans")
            before = _summed([await process.stats() for process in processes])
            worker_cpu, server_cpu, driver_cpu = _processes_cpu(pids), _cpu(server.pid), _cpu(os.getpid())
            database_cpu = BackendCpu(admin, name)
            began = time.time()
            if phase == "start":
                await start_all(client, workflow_type, loans, task_queue, concurrency)
                stats = await _wait(processes, lambda s: s["activities"].get(first_activity, 0) >= n, timeout, label,
                                    QUIET_SECONDS)
                took = stats["last_activation_at"] - began
                signal_began = None
            else:
                signal_began = began
                await signal_all(client, loans, concurrency)
                stats = await _wait(processes, lambda s: s["completed"] - before["completed"] >= n, timeout, label, 0)
                took = stats["last_completed_at"] - began
            worker_cpu = _processes_cpu(pids) - worker_cpu
            out[phase] = {
                "seconds": took, "per_second": n / took,
                "worker_cpu_seconds": round(worker_cpu, 2),
                "server_cpu_seconds": round(_cpu(server.pid) - server_cpu, 2),
                "database_cpu_seconds": database_cpu.used(),
                "driver_cpu_seconds": round(_cpu(os.getpid()) - driver_cpu, 2),
                "worker_cpu_ms_per_loan": 1000 * worker_cpu / n,
                "activations_per_worker": [a - b for a, b in zip(stats["per_worker_activations"],
                                                                 before["per_worker_activations"])],
                "load_average": os.getloadavg()[0],
            }
        out["closed_on_server"] = await count_closed(client, workflow_type, n)
        tasks = await workflow_tasks(client, [workflow_id_for(loan["loan_id"]) for loan in loans])
        out["workflow_tasks"] = {
            "start": task_latency_summary([t for t in tasks if t["scheduled_at"] < signal_began]),
            "signal": task_latency_summary([t for t in tasks if t["scheduled_at"] >= signal_began]),
        }
        if keep_sizes:
            out["tables"] = table_sizes(url)
    finally:
        for process in processes:
            process.stop()
        if server is not None:
            server.stop()
        if kind == "dunning" and "signal" in out:
            # Read once the workers' backends have exited: a backend's last
            # statistics reach the view when it ends.
            await asyncio.sleep(0.5)
            out["scans"] = scan_counts(url)
        drop_database(admin, name)
    say(f"scale-out {label}: start {out.get('start', {}).get('per_second', 0):.1f}/s, "
        f"signal {out.get('signal', {}).get('per_second', 0):.1f}/s")
    return out


async def lifecycle_database(admin: str, workdir: Path, config_dir: Path, count: int) -> dict:
    """`count` unpaid default-policy lifecycles (placed, 180 days, written
    off) against a fresh PostgreSQL database: rows per loan and bytes per row
    of every table they wrote."""
    from bench.lifecycle import dunning_lifecycle, log_to
    from runtime.time_skipping import start_time_skipping

    name = f"bench_scale_{os.getpid()}_life_{uuid.uuid4().hex[:6]}"
    url = create_database(admin, name)
    # The in-process worker's log lines and the bureau files it writes stay in the work directory.
    log_to(workdir / "scale-lifecycle-worker.log")
    export_dir = os.environ.get("DUNNING_EXPORT_DIR")
    cache_setting = os.environ.get("DUNNING_MAX_CACHED_WORKFLOWS")
    os.environ["DUNNING_EXPORT_DIR"] = str(workdir / "exports")
    try:
        seed_database(url, 1, prefix="B-LIFE")
        env = await start_time_skipping(quiet=True)
        # This process's CPU over the lifecycles: the in-process worker's
        # (workflow tasks, activities, the database client), what a worker
        # spends on one loan's whole life; the time-skipping server is apart.
        cpu = time.process_time()
        uncached = 0.0
        try:
            for index in range(count):
                say(f"scale-out: lifecycle {index + 1} of {count} on PostgreSQL (default policy, 180 days)")
                life = await dunning_lifecycle(env, url, config_dir, "default", "B-LIFE-000000")
            cpu = time.process_time() - cpu
            # Once more without a workflow cache: every wake replays the
            # loan's history so far, as nearly every wake does in a portfolio
            # of millions of open loans and a cache of thousands.
            say("scale-out: one more lifecycle, without a workflow cache")
            os.environ["DUNNING_MAX_CACHED_WORKFLOWS"] = "0"
            uncached = time.process_time()
            await dunning_lifecycle(env, url, config_dir, "default", "B-LIFE-000000")
            uncached = time.process_time() - uncached
        finally:
            if cache_setting is None:
                os.environ.pop("DUNNING_MAX_CACHED_WORKFLOWS", None)
            else:
                os.environ["DUNNING_MAX_CACHED_WORKFLOWS"] = cache_setting
            await env.shutdown()
        make_engine(url).dispose()  # the in-process worker's connections end, and with them their statistics
        await asyncio.sleep(0.5)
        scans = scan_counts(url)  # before row_bytes, whose own scans would count
        rows = row_bytes(url)
    finally:
        if export_dir is None:
            os.environ.pop("DUNNING_EXPORT_DIR", None)
        else:
            os.environ["DUNNING_EXPORT_DIR"] = export_dir
        drop_database(admin, name)
    # One row whatever the number of loans: not the loans'.
    for table in ("alembic_version", "audit_head"):
        rows.pop(table, None)
    # The seeded borrower is one for all of them; a portfolio has one per loan.
    count += 1  # the uncached one wrote its rows too
    tables = {table: {**figures, "rows_per_loan": figures["rows"] / count if table != "borrowers" else 1.0}
              for table, figures in rows.items()}
    return {"lifecycles": count, "policy": "default", "tables": tables, "scans": scans,
            "worker_cpu_seconds_per_lifecycle": round(cpu / (count - 1), 3),
            "worker_cpu_seconds_per_lifecycle_uncached": round(uncached, 3), "events": life["events"],
            "activities": life["activities"], "history_bytes_per_run": life.get("history_bytes_per_run"),
            "bytes_per_loan": round(sum(t["rows_per_loan"] * t["bytes_per_row"] for t in tables.values())),
            "rows_per_loan": round(sum(t["rows_per_loan"] for t in tables.values()), 1)}


async def scale_out(loans: int, concurrency: int, workdir: Path, config_dir: Path, lifecycles: int = 3,
                    configurations=CONFIGURATIONS) -> dict:
    admin = admin_url()
    records = loan_records(loans)
    out: dict = {"loans": loans, "concurrency": concurrency, "database": "postgresql", "runs": []}
    for kind, workers in configurations:
        out["runs"].append(await configuration(kind, workers, records, admin, workdir, config_dir, concurrency,
                                               keep_sizes=(kind, workers) == ("dunning", 1)))
    if lifecycles:
        out["lifecycle_database"] = await lifecycle_database(admin, workdir, config_dir, lifecycles)
    return out


# ----------------------------------------------------- a 1,000,000-loan portfolio
# What docs/benchmarks.md's "A 1,000,000-loan portfolio" assumes; everything
# else comes from a `make bench` run's results.json.
PORTFOLIO = {
    "loans_a_month": 1_000_000,       # placed every month, all on the default policy
    "days_a_month": 30,
    "lifecycle_days": 180,            # the worst case: no loan repaid, each written off on day 180
    "window_hours": 12,               # contacts, wakes and placements between 09:00 and 21:00, one time zone
    "peak_hour_factor": 2,            # the busiest hour carries twice the window's average
    "retention_years": 5,             # the cn profile's records_retention_years: a closed loan's rows kept 5 years
    "history_retention_days": 30,     # the namespace keeps a closed workflow's history 30 days
    "worker_utilisation": 0.5,        # a worker process (one Python process: about one core) run at half its CPU
    "aps_limit": 500,                 # Temporal Cloud's default per namespace (docs.temporal.io/cloud/limits)
    "history_shards": 512,
}


def portfolio(results: dict, assume: dict = PORTFOLIO) -> list[tuple[str, str, str]]:
    """(what, how much, from what) for a portfolio of `loans_a_month` loans a
    month, from a run's measurements: the default policy's lifecycle (events
    by type, history size, Actions) and the database and worker CPU of the
    same lifecycle on PostgreSQL (scale_out's lifecycle_database)."""
    life = results["lifecycle"]["default"]
    by_type = life["by_type"]
    db = results["scale_out"]["lifecycle_database"]
    cost = next(row for row in results["cost"]["rows"] if row["policy"] == "default")
    n = db["lifecycles"]
    per_day = assume["loans_a_month"] / assume["days_a_month"]  # lifecycles' worth of work a day, once steady
    open_loans = per_day * assume["lifecycle_days"]
    window = assume["window_hours"] * 3600
    peak = assume["peak_hour_factor"] / window  # per-second rate at the peak hour, for a day's amount

    cached = db["worker_cpu_seconds_per_lifecycle"]
    # Millions of open loans against a cache of thousands: nearly every wake
    # is a replay, so the uncached lifecycle is what a worker spends.
    cpu = db.get("worker_cpu_seconds_per_lifecycle_uncached") or cached
    cores = per_day * cpu * peak
    workers = max(2, -(-cores / assume["worker_utilisation"] // 1))
    written = sum(t["inserted"] + t["updated"] for name, t in db["scans"].items()
                  if name not in ("alembic_version", "audit_head", "borrowers")) / n + 1  # + the borrower's row
    kept_loans = open_loans + assume["loans_a_month"] * 12 * assume["retention_years"]
    tasks = by_type.get("WORKFLOW_TASK_COMPLETED", 0)
    activities = by_type.get("ACTIVITY_TASK_COMPLETED", 0)
    timers = by_type.get("TIMER_FIRED", 0)
    runs = life["runs"]
    upserts = by_type.get("UPSERT_WORKFLOW_SEARCH_ATTRIBUTES", 0)
    # A workflow task: started, then completed (2 writes); an activity the
    # same; a timer firing 1; a run's start 1. Visibility: each upsert, each
    # run's start and close.
    history_writes = 2 * tasks + 2 * activities + timers + runs
    visibility_writes = upserts + 2 * runs
    history_bytes = sum(life.get("history_bytes_per_run") or [0])
    actions = cost["actions_per_loan"]
    with_reports = (cost.get("with_reports") or {}).get("actions_per_loan", actions)
    gib = 2**30
    return [
        ("loans placed a day; open at once", f"{per_day:,.0f}; {open_loans / 1e6:.1f} M",
         f"{assume['loans_a_month']:,} a month over {assume['days_a_month']} days; each open {assume['lifecycle_days']} days"),
        ("worker CPU per lifecycle: every wake replayed; the workflow cached",
         f"{cpu:.2f} s; {cached:.2f} s", "measured: default-policy lifecycles on PostgreSQL, in process, without and with a cache"),
        ("worker cores at the peak hour", f"{cores:.1f}",
         f"{per_day:,.0f} lifecycles' worth a day x {cpu:.2f} s, in a {assume['window_hours']} h window, x{assume['peak_hour_factor']} at the peak"),
        ("worker processes", f"{workers:.0f}",
         f"at {assume['worker_utilisation']:.0%} of a core each, at least 2 (one may fail)"),
        ("database: bytes per loan", f"{db['bytes_per_loan'] / 1024:,.0f} KiB ({db['rows_per_loan']:.0f} rows)",
         "measured: the lifecycle's rows, heap and indexes"),
        ("database size", f"{kept_loans * db['bytes_per_loan'] / 2**40:,.1f} TiB",
         f"{open_loans / 1e6:.1f} M open + {assume['retention_years']} years of closed loans ({kept_loans / 1e6:.0f} M)"),
        ("database: rows written per lifecycle; at the peak", f"{written:.0f}; {per_day * written * peak:,.0f} rows/s",
         "measured: inserts + updates of the lifecycle (pg_stat_user_tables)"),
        ("server: history events per lifecycle; at the peak", f"{life['events']}; {per_day * life['events'] * peak:,.0f} events/s",
         f"{runs} run(s)"),
        ("self-hosted: persistence writes per lifecycle; at the peak",
         f"{history_writes} + {visibility_writes} visibility; {per_day * (history_writes + visibility_writes) * peak:,.0f}/s",
         f"2 x {tasks} workflow tasks + 2 x {activities} activities + {timers} timers + {runs} start(s); {upserts} upserts + starts and closes"),
        (f"self-hosted: per history shard ({assume['history_shards']} shards)",
         f"{open_loans / assume['history_shards']:,.0f} open workflows; {per_day * (history_writes + visibility_writes) * peak / assume['history_shards']:.2f} writes/s",
         "shards are fixed when the cluster is created"),
        ("self-hosted: history kept", f"{(open_loans * history_bytes / 2 + per_day * assume['history_retention_days'] * history_bytes) / gib:,.0f} GiB",
         f"{history_bytes / 1024:.0f} KiB a lifecycle: open loans half-way on average, closed ones {assume['history_retention_days']} days"),
        ("Temporal Cloud: Actions per lifecycle; at the peak", f"{actions}; {per_day * actions * peak:,.0f} APS",
         f"limit {assume['aps_limit']} APS by default"),
        ("Temporal Cloud: with a provider report on every message", f"{with_reports}; {per_day * with_reports * peak:,.0f} APS",
         "a contact_outcome signal and the timer it restarts"),
    ]


def portfolio_table(rows: list[tuple[str, str, str]]) -> str:
    lines = ["| what | how much | from |", "| --- | ---: | --- |"]
    lines += [f"| {what} | {value} | {source} |" for what, value, source in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale_out", description=__doc__.splitlines()[0])
    parser.add_argument("--loans", type=int, default=500, help="loans per configuration (default 500)")
    parser.add_argument("--concurrency", type=int, default=64, help="start and signal calls in flight (default 64)")
    parser.add_argument("--lifecycles", type=int, default=3,
                        help="default-policy lifecycles for the database-size measurement (default 3; 0: none)")
    parser.add_argument("--out", default=str(ROOT / ".dunning" / "bench-scale-out.json"), help="the JSON file to write")
    parser.add_argument("--portfolio", metavar="JSON", default=None,
                        help="only print the 1,000,000-loan portfolio's figures from a `make bench` results.json")
    parser.add_argument("--scale-out-json", metavar="JSON", default=None,
                        help="with --portfolio: the lifecycle database of this run of `python -m bench.scale_out` instead")
    args = parser.parse_args(argv)
    if args.portfolio:
        results = json.loads(Path(args.portfolio).read_text(encoding="utf-8"))
        if args.scale_out_json:
            results["scale_out"] = json.loads(Path(args.scale_out_json).read_text(encoding="utf-8"))
        print(portfolio_table(portfolio(results)))
        return 0
    from bench.figures import machine, scale_out_rows, table

    with tempfile.TemporaryDirectory(prefix="dunning-scale-") as directory:
        workdir = Path(directory)
        config_dir = prepare_config(workdir)
        began = time.monotonic()
        load_before = os.getloadavg()
        result = asyncio.run(scale_out(args.loans, args.concurrency, workdir, config_dir, args.lifecycles))
    result.update(machine=machine(), load_average_before=load_before, load_average_after=os.getloadavg(),
                  seconds=time.monotonic() - began)
    print(table(scale_out_rows(result)))
    if result.get("lifecycle_database"):
        life = result["lifecycle_database"]
        print(f"a default-policy lifecycle leaves {life['rows_per_loan']} rows, ~{life['bytes_per_loan']:,} bytes on PostgreSQL")
    print(f"load average {load_before[0]:.2f} before, {result['load_average_after'][0]:.2f} after; {result['seconds']:.0f} s")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
