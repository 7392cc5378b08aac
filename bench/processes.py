"""The benchmark's own processes: a `temporal server start-dev` and a worker
process (bench/worker_proc.py) speaking JSON lines on stdin/stdout."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from runtime.dev_server import free_port, headless_command, stop_process, wait_healthy

ROOT = Path(__file__).resolve().parent.parent


# Dynamic config for the dev server. Its defaults are meant for one developer;
# the benchmark starts thousands of workflows a minute from one client.
DEV_SERVER_CONFIG = (
    # No per-namespace rate limit in the way of the start and signal bursts.
    "frontend.namespaceRPS=100000",
    "frontend.namespaceBurstRatio=2",
    "frontend.rps=100000",
    "history.rps=100000",
    "matching.rps=100000",
)


class DevServer:
    """`temporal server start-dev`, in memory, on free ports, with the contract's
    search attributes registered (runtime/dev_server.py) and no rate limits."""

    def __init__(self, log_path: Path, extra_config: tuple[str, ...] = (), wait: bool = True) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.log = open(log_path, "ab")
        config_flags: list[str] = []
        for value in (*DEV_SERVER_CONFIG, *extra_config):
            config_flags += ["--dynamic-config-value", value]
        self.process = subprocess.Popen(
            headless_command(self.port, *config_flags), stdout=self.log, stderr=subprocess.STDOUT
        )
        if wait:
            self.wait_healthy()

    def wait_healthy(self, timeout: float = 60) -> None:
        wait_healthy(self.address, self.process, timeout, self.log.name)

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        stop_process(self.process)
        self.log.close()


class WorkerProcess:
    """`python -m bench.worker_proc KIND`, talked to over stdin/stdout."""

    def __init__(self, kind: str, env: dict[str, str], log_path: Path) -> None:
        self.kind = kind
        self.log = open(log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.worker_proc", kind],
            cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True, bufsize=1,
        )
        self._lock = asyncio.Lock()
        self.ready: dict = {}

    @property
    def pid(self) -> int:
        return self.process.pid

    async def wait_ready(self, timeout: float = 90) -> dict:
        self.ready = await asyncio.wait_for(self._read(), timeout)
        if not self.ready.get("ready"):
            raise RuntimeError(f"{self.kind} worker did not start: {self.ready}")
        return self.ready

    async def _read(self) -> dict:
        line = await asyncio.to_thread(self.process.stdout.readline)
        if not line:
            raise RuntimeError(
                f"{self.kind} worker exited ({self.process.poll()}); see {self.log.name}"
            )
        return json.loads(line)

    async def stats(self) -> dict:
        async with self._lock:
            self.process.stdin.write("stats\n")
            self.process.stdin.flush()
            return await asyncio.wait_for(self._read(), 60)

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                self.process.stdin.write("quit\n")
                self.process.stdin.flush()
                self.process.wait(timeout=20)
            except (OSError, subprocess.TimeoutExpired):
                pass
        stop_process(self.process)
        self.log.close()


def worker_env(address: str, task_queue: str, database_url: str, config_dir: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "TEMPORAL_ADDRESS": address,
        "TEMPORAL_NAMESPACE": "default",
        "DUNNING_TASK_QUEUE": task_queue,
        "DUNNING_DATABASE_URL": database_url,
        "DUNNING_CONFIG_DIR": str(config_dir),
        "DUNNING_PAY_LINK_SECRET": "bench-pay-link-secret",
        "PYTHONPATH": str(ROOT) + (os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else ""),
    }
    # The worker's own settings from the environment stay out of the way:
    # local providers only, no metrics port.
    for name in ("DUNNING_METRICS_PORT", "DUNNING_SMS_PROVIDER", "DUNNING_VOICE_PROVIDER",
                 "DUNNING_EMAIL_PROVIDER", "DUNNING_PUSH_PROVIDER", "TEMPORAL_API_KEY", "TEMPORAL_PROFILE",
                 "TEMPORAL_CONFIG_FILE"):
        env.pop(name, None)
    return env
