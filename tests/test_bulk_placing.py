"""Placing a large file (issue 19, item 7): `starter.py start` streams the
file, writes it in batches, keeps a bounded number of starts in flight, slows
down when the server says it is overloaded, resumes an interrupted run
without placing anything twice, and with --keep-going refuses a bad record
alone (services/bulk_placing.py).

The first scenarios run in process with the starts replaced; the others run
the command against a real in-memory dev server (no worker: placing only
starts the workflows)."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

import services.bulk_placing as bulk
from bench.placement import CSV_COLUMNS, write_loans_csv
from bench.processes import DevServer
from db.models import Borrower, Loan
from services.placing import STARTED, PlaceResult

ROOT = Path(__file__).resolve().parent.parent


def _ledger(tmp_path: Path, path: Path) -> bulk.Ledger:
    return bulk.Ledger.for_file(tmp_path / "checkpoints", path, "db", "ns", "queue", None)


def _started(placement) -> PlaceResult:
    return PlaceResult(placement.loan_id, f"dunning-{placement.loan_id}", STARTED, "run-1")


# ------------------------------------------------------------------ in process


async def test_a_slow_server_holds_the_reader_back_a_few_batches_ahead(session_factory, tmp_path, monkeypatch):
    """Back-pressure: while the first starts hang, the reader writes at most
    the batches the queue holds (plus the one being started and the one being
    handed over), never the whole file; released, every loan is placed, in order."""
    path = tmp_path / "loans.csv"
    write_loans_csv(path, 2000, prefix="L-SLOW")
    written: list[int] = []
    real_write = bulk.write_batch
    monkeypatch.setattr(bulk, "write_batch", lambda *args: written.append(1) or real_write(*args))
    release = asyncio.Event()
    calls = 0

    async def slow_start(client, task_queue, placement, *args, **kwargs):
        nonlocal calls
        calls += 1
        await release.wait()
        return _started(placement)

    monkeypatch.setattr(bulk, "start_placement", slow_start)
    lines: list[str] = []
    sinks = bulk.Sinks(on_result=lambda result: lines.append(result.loan_id), on_refused=lines.append)
    placing = asyncio.create_task(bulk.place_file(
        None, "q", session_factory, path, bulk.Options(concurrency=4, batch=50), _ledger(tmp_path, path), sinks))
    for _ in range(300):  # give the reader every chance to run ahead
        await asyncio.sleep(0.01)

    assert calls == 4  # the in-flight bound
    assert len(written) <= bulk.QUEUE_BATCHES + 2
    release.set()
    tally = await placing
    assert lines == [f"L-SLOW-{n:06d}" for n in range(2000)]
    assert tally.states == {STARTED: 2000} and len(written) == 40
    with session_factory() as db:
        assert db.scalar(select(func.count()).select_from(Loan)) == 2000


async def test_an_overloaded_server_is_waited_out_and_every_loan_still_placed(session_factory, tmp_path, monkeypatch):
    """RESOURCE_EXHAUSTED: the start is tried again after a pause every other
    start waits out too; nothing is lost or placed twice."""
    path = tmp_path / "loans.csv"
    write_loans_csv(path, 30, prefix="L-BUSY")
    monkeypatch.setattr(bulk, "FIRST_PAUSE_SECONDS", 0.01)
    refusals = {"L-BUSY-000003": 2, "L-BUSY-000017": 1}
    attempts: list[str] = []

    async def busy_start(client, task_queue, placement, *args, **kwargs):
        attempts.append(placement.loan_id)
        if refusals.get(placement.loan_id, 0):
            refusals[placement.loan_id] -= 1
            raise RPCError("namespace rate limit exceeded", RPCStatusCode.RESOURCE_EXHAUSTED, b"")
        return _started(placement)

    monkeypatch.setattr(bulk, "start_placement", busy_start)
    lines: list[str] = []
    sinks = bulk.Sinks(on_result=lambda result: lines.append(result.loan_id), on_refused=lines.append)
    ledger = _ledger(tmp_path, path)
    tally = await bulk.place_file(None, "q", session_factory, path, bulk.Options(concurrency=8, batch=10), ledger, sinks)

    assert lines == [f"L-BUSY-{n:06d}" for n in range(30)]
    assert tally.throttled == 3 and attempts.count("L-BUSY-000003") == 3 and len(attempts) == 33
    assert tally.states == {STARTED: 30}


# ------------------------------------------------------------------ the command, on a dev server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    dev = DevServer(tmp_path_factory.mktemp("bulk-server") / "server.log")
    yield dev
    dev.stop()


def _starter(server, database_url: str, tmp_path: Path, *args: str, wait: bool = True):
    env = {**os.environ, "TEMPORAL_ADDRESS": server.address, "DUNNING_DATABASE_URL": database_url,
           "DUNNING_TASK_QUEUE": "bulk-tests", "DUNNING_LOG_LEVEL": "WARNING"}
    command = [sys.executable, "starter.py", "start", *args, "--checkpoint-dir", str(tmp_path / "checkpoints")]
    if not wait:
        # Ctrl-C as a terminal sends it, however the suite was started: a
        # background job of a shell without job control ignores SIGINT, and
        # an ignored signal stays ignored in every child.
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def _states(stdout: str) -> dict[str, str]:
    """workflow id -> state, from the one line per loan."""
    return {line.split("\t")[0]: line.split("\t")[1] for line in stdout.splitlines() if line.startswith("dunning-")}


def _workflows(server, prefix: str) -> int:
    async def count() -> int:
        client = await Client.connect(server.address)
        return (await client.count_workflows(f"WorkflowId STARTS_WITH 'dunning-{prefix}'")).count

    return asyncio.run(count())


def _eventually_workflows(server, prefix: str, expected: int) -> int:
    """The visibility store catches up with the starts shortly after."""
    for _ in range(100):
        if (found := _workflows(server, prefix)) == expected:
            return found
        time.sleep(0.1)
    return found


@pytest.mark.devserver
@pytest.mark.both_databases
def test_a_csv_is_placed_in_file_order_with_a_progress_bar_on_stderr(server, database_url, database_backend, tmp_path):
    prefix = f"L-ORDER-{database_backend[:2].upper()}"
    path = tmp_path / "loans.csv"
    write_loans_csv(path, 600, prefix=prefix)

    placed = _starter(server, database_url, tmp_path, str(path), "--concurrency", "16", "--batch", "64", "--progress")
    assert placed.returncode == 0, placed.stderr
    lines = placed.stdout.splitlines()
    assert [line.split("\t")[:2] for line in lines[:-1]] == [[f"dunning-{prefix}-{n:06d}", "started"] for n in range(600)]
    assert lines[-1] == "placed 600 loans: borrowers 600 new, 0 unchanged; loans 600 new, 0 unchanged, 0 conflicts"
    assert "records/s" in placed.stderr and "600/600" in placed.stderr  # the bar, on stderr only
    assert _eventually_workflows(server, prefix, 600) == 600

    again = _starter(server, database_url, tmp_path, str(path), "--concurrency", "16")
    assert again.returncode == 0, again.stderr
    assert set(_states(again.stdout).values()) == {"already running"}
    assert again.stdout.splitlines()[-1].endswith("loans 0 new, 600 unchanged, 0 conflicts")
    assert "records/s" not in again.stderr  # not a terminal, no --progress: no bar
    assert not list((tmp_path / "checkpoints").glob("*.json"))  # done: nothing to resume


@pytest.mark.devserver
@pytest.mark.slow
@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "killed"])
def test_an_interrupted_placement_resumes_and_places_every_loan_exactly_once(server, database_url, tmp_path, how):
    prefix = f"L-RESUME-{how.name}"
    path = tmp_path / "loans.csv"
    write_loans_csv(path, 1500, prefix=prefix)
    first = _starter(server, database_url, tmp_path, str(path), "--concurrency", "4", "--batch", "50", wait=False)
    checkpoints = tmp_path / "checkpoints"
    for _ in range(6000):  # until the checkpoint says 200 records are done (or the run ended)
        done = [json.loads(p.read_text())["records_done"] for p in checkpoints.glob("*.json")] if checkpoints.exists() else []
        if (done and done[0] >= 200) or first.poll() is not None:
            break
        time.sleep(0.02)
    first.send_signal(how)
    out, err = first.communicate(timeout=120)
    assert first.returncode != 0, "the run ended before it was interrupted"
    if how == signal.SIGINT:
        assert first.returncode == 130 and "interrupted after record" in err and "run the same command again" in err

    resumed = _starter(server, database_url, tmp_path, str(path), "--concurrency", "8", "--batch", "50")
    assert resumed.returncode == 0, resumed.stderr
    skipped = int(resumed.stdout.split("resumed: records 1-")[1].split()[0])
    assert skipped >= 200
    before, after = _states(out), _states(resumed.stdout)
    assert len(after) == 1500 - skipped  # the records after the checkpoint, each answered once
    started_twice = {wf for wf, state in after.items() if state == "started" and before.get(wf) == "started"}
    assert not started_twice
    assert set(before) | set(after) >= {f"dunning-{prefix}-{n:06d}" for n in range(skipped, 1500)}
    # Every loan once: one row, one workflow.
    assert _eventually_workflows(server, prefix, 1500) == 1500
    from db.session import make_engine, make_session_factory

    with make_session_factory(make_engine(database_url))() as db:
        assert db.scalar(select(func.count()).select_from(Loan).where(Loan.loan_id.like(f"{prefix}-%"))) == 1500


@pytest.mark.devserver
def test_keep_going_refuses_a_bad_or_conflicting_record_alone_and_places_the_rest(server, database_url, session_factory,
                                                                                  tmp_path):
    with session_factory.begin() as db:  # B-KEEP-2 exists with another phone
        db.add(Borrower(borrower_id="B-KEEP-2", name="Borrower 2", phone="+8613900000002", language="zh_CN",
                        time_zone="Asia/Shanghai"))
    rows = [{"loan_id": f"L-KEEP-{n}", "borrower_id": f"B-KEEP-{n}", "amount_due": "100.00", "currency": "CNY",
             "due_date": "2026-11-01", "policy": "default", "borrower.name": f"Borrower {n}",
             "borrower.phone": f"+86138000000{n:02d}", "borrower.email": "", "borrower.language": "zh_CN",
             "borrower.time_zone": "Asia/Shanghai"} for n in range(1, 7)]
    rows[3]["amount_due"] = "12.345"  # record 4
    path = tmp_path / "loans.csv"
    with path.open("w", encoding="utf-8", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)

    strict = _starter(server, "sqlite:///" + str(tmp_path / "other.db"), tmp_path, str(path))
    assert strict.returncode == 2 and "nothing was placed" in strict.stderr  # without the flag: as before

    placed = _starter(server, database_url, tmp_path, str(path), "--keep-going")
    assert placed.returncode == 4, placed.stderr
    assert "record 4 (loan_id L-KEEP-4): amount_due: has 3 decimals; CNY has 2" in placed.stderr
    assert "record 2 (loan_id L-KEEP-2): loan L-KEEP-2: borrower B-KEEP-2 exists with other contact details (phone)" in placed.stderr
    assert "refused 2 of 6 records" in placed.stderr
    assert set(_states(placed.stdout)) == {f"dunning-L-KEEP-{n}" for n in (1, 3, 5, 6)}
    assert placed.stdout.splitlines()[-1] == (
        "placed 4 loans: borrowers 4 new, 0 unchanged; loans 4 new, 0 unchanged, 1 conflicts")
    with session_factory() as db:
        assert sorted(db.scalars(select(Loan.loan_id).where(Loan.loan_id.like("L-KEEP-%")))) == [
            "L-KEEP-1", "L-KEEP-3", "L-KEEP-5", "L-KEEP-6"]
