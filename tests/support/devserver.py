"""The dev-server tests' processes: `DevServer` (`temporal server start-dev`
plus `python worker.py` on free ports, with a SQLite database of its own),
`run_ids` (starter.py start's output read back) and `due_days_ago` (a due date
by the wall clock in Asia/Shanghai).

The server is started with runtime/dev_server.py, as the benchmark's
(bench/processes.py) is: that one is in memory and tuned for load, without a
worker or a database; this one restarts on the same port and `--db-filename`
(the crash tests kill it), carries the worker's environment and runs
starter.py."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from db.migrate import upgrade_to_head
from db.session import make_engine, make_session_factory
from dunning.contract import SEARCH_ATTRIBUTES
from runtime.binaries import binary
from runtime.dev_server import free_port, headless_command, stop_process, wait_healthy

ROOT = Path(__file__).resolve().parent.parent.parent


def _ephemeral_ports() -> tuple[int, int]:
    """The range the kernel takes a port from for bind(port 0) and for a
    client's connect() (Linux: /proc/sys/net/ipv4/ip_local_port_range)."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
        return low, high
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def stable_port() -> int:
    """A free port on 127.0.0.1 for a server that must get it back after a
    restart (the crash tests SIGKILL the dev server and start it again on the
    same ports). A port from free_port() is in the ephemeral range, where any
    process's bind(0) or outgoing connection may be given it while the server
    is down, and the restart then fails (EADDRINUSE); with `make test` on two
    xdist workers the other worker's processes open connections all the time.
    Below that range the kernel hands nothing out by itself: a random free
    port there is taken only by someone naming it."""
    low, _ = _ephemeral_ports()
    if low > 11024:
        rng = random.SystemRandom()
        for _ in range(200):
            port = rng.randrange(10000, low)
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    return free_port()


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
        self.port = stable_port()  # the same port (and HTTP and metrics ports) on each start_server()
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
        self.server_command = headless_command(
            self.port, "--db-filename", str(tmp / "temporal.db"), *server_flags, search_attributes=search_attributes
        )
        for flag in ("--http-port", "--metrics-port"):  # free_port()'s, in the ephemeral range: see stable_port
            self.server_command[self.server_command.index(flag) + 1] = str(stable_port())
        self.start_server()
        upgrade_to_head(self.database_url)
        self.sessions = make_session_factory(make_engine(self.database_url))
        self.worker = (
            subprocess.Popen([sys.executable, "worker.py"], cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
            if start_worker else None
        )

    def start_server(self) -> None:
        self.server = subprocess.Popen(self.server_command, stdout=self.log, stderr=subprocess.STDOUT)
        wait_healthy(self.address, self.server, log=self.log.name)

    def temporal(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            [binary("temporal"), *args, "--address", self.address], capture_output=True, text=True, timeout=60, check=check
        )

    def starter(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "starter.py", *args], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=60)

    def stop(self) -> None:
        for process in (self.worker, self.server):
            stop_process(process)
        self.log.close()


def run_ids(output: str) -> dict[str, tuple[str, str]]:
    """starter.py start's lines: workflow id -> (started | already running, run id)."""
    lines = [line.split("\t") for line in output.splitlines() if line.startswith("dunning-")]
    return {parts[0]: (parts[1], parts[2].removeprefix("run ")) for parts in lines}


def due_days_ago(days: int) -> str:
    return (datetime.now(ZoneInfo("Asia/Shanghai")).date() - timedelta(days=days)).isoformat()
