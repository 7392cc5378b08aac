"""The dev-server tests' processes: `DevServer` (`temporal server start-dev`
plus `python worker.py` on free ports, with a SQLite database of its own),
`free_port`, `run_ids` (starter.py start's output read back) and
`due_days_ago` (a due date by the wall clock in Asia/Shanghai).

bench/processes.py has a DevServer of its own: that one is an in-memory
server tuned for load, without a worker or a database, and health means
SERVING; this one restarts on the same port and `--db-filename` (the crash
tests kill it), carries the worker's environment and runs starter.py."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from db.migrate import upgrade_to_head
from db.session import make_engine, make_session_factory
from dunning.contract import SEARCH_ATTRIBUTES
from runtime.binaries import binary
from runtime.temporal import search_attribute_flags

ROOT = Path(__file__).resolve().parent.parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class DevServer:
    """`temporal server start-dev` plus `python worker.py`, on free ports.

    `extra_env` is added to the worker's (and the starter's) environment;
    with `start_worker=False` the caller runs its own workers (`worker` stays
    None). `start_server()` starts the server again on the same port and
    `--db-filename` after it was stopped or killed."""

    def __init__(
        self,
        tmp: Path,
        server_flags: tuple[str, ...] = (),
        extra_env: dict[str, str] | None = None,
        start_worker: bool = True,
        search_attributes: dict[str, str] = SEARCH_ATTRIBUTES,
    ) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.database_url = f"sqlite:///{tmp / 'dunning.db'}"
        self.task_queue = f"dunning-dev-{uuid.uuid4().hex[:6]}"
        self.metrics_port = free_port()
        self.env = {
            **os.environ,
            "TEMPORAL_ADDRESS": self.address,
            "DUNNING_DATABASE_URL": self.database_url,
            "DUNNING_TASK_QUEUE": self.task_queue,
            "DUNNING_PAY_LINK_SECRET": "devserver-test-secret",
            "DUNNING_METRICS_PORT": str(self.metrics_port),
            **(extra_env or {}),
        }
        self.log = open(tmp / "processes.log", "ab")
        self.server_command = [
            binary("temporal"), "server", "start-dev", "--headless", "--ip", "127.0.0.1",
            "--port", str(self.port), "--http-port", str(free_port()), "--metrics-port", str(free_port()),
            "--db-filename", str(tmp / "temporal.db"), "--log-level", "error",
            *search_attribute_flags(search_attributes), *server_flags,
        ]
        self.start_server()
        upgrade_to_head(self.database_url)
        self.sessions = make_session_factory(make_engine(self.database_url))
        self.worker = (
            subprocess.Popen([sys.executable, "worker.py"], cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
            if start_worker else None
        )

    def start_server(self) -> None:
        self.server = subprocess.Popen(self.server_command, stdout=self.log, stderr=subprocess.STDOUT)
        self._wait_healthy()

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.temporal("operator", "cluster", "health", check=False).returncode == 0:
                return
            if self.server.poll() is not None:
                raise RuntimeError(f"temporal dev server exited with {self.server.returncode}")
            time.sleep(0.3)
        raise RuntimeError("temporal dev server did not start")

    def temporal(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            [binary("temporal"), *args, "--address", self.address], capture_output=True, text=True, timeout=60, check=check
        )

    def starter(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "starter.py", *args], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=60)

    def stop(self) -> None:
        for process in (self.worker, self.server):
            if process is None:
                continue
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        self.log.close()


def run_ids(output: str) -> dict[str, tuple[str, str]]:
    """starter.py start's lines: workflow id -> (started | already running, run id)."""
    lines = [line.split("\t") for line in output.splitlines() if line.startswith("dunning-")]
    return {parts[0]: (parts[1], parts[2].removeprefix("run ")) for parts in lines}


def due_days_ago(days: int) -> str:
    return (datetime.now(ZoneInfo("Asia/Shanghai")).date() - timedelta(days=days)).isoformat()
