"""The crash-safety harness (tests/test_crash_safety.py): a local Twilio that
counts what it accepts and calls the gateway back like Twilio does, the
gateway process, workers that can be SIGKILLed and restarted at once, the
loans and payments, and the invariants checked at the end.

Nothing here is a mock of the service: the worker is `worker.py` in its own
process, the gateway is `uvicorn gateway.app:app`, the database is one SQLite
file they share, and the Temporal server is `temporal server start-dev`.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlparse

from sqlalchemy import select
from twilio.request_validator import RequestValidator
from werkzeug import Request
from werkzeug.serving import make_server

from db import audit
from db.models import AuditEntry, Contact, Payment
from tests.support.devserver import ROOT, DevServer, free_port
from tests.support.providers import ACCOUNT_SID, AUTH_TOKEN, FROM_NUMBER, FakeTwilio

PROVIDER_CHANNELS = ("sms", "voice")  # through the local Twilio; e-mail and push are captured locally

# The default policy (its stage days, segments, profile and templates) on a
# fast clock, contacting on three channels every day of every stage, so that
# many messages go out in a few real seconds; the loans are ended by the test
# (a dispute upheld) long before the write-off day.
CRASH_POLICY = """\
extends = "default"
name = "{name}"
description = "Crash-safety tests: a {day_seconds}-second day and three contacts every day."
profile = "{profile}"
day_seconds = {day_seconds}

# A borrower's daily caps count the real local day, which holds thousands of
# 2-second loan days: the default's 2 a day would postpone nearly every send,
# and these tests need sends in flight when the worker dies. Each loan has its
# own borrower, so nothing merges either.
[borrower]
daily_caps = {{ sms = 10000, email = 10000, push = 10000 }}
merge = false

[stages.reminder]
steps = [
  {{ day = 0, channel = "sms",   template = "reminder_friendly", every_days = 1 }},
  {{ day = 0, channel = "voice", template = "call_script", every_days = 1, at = "11:00:00" }},
  {{ day = 0, channel = "push",  template = "reminder_followup", every_days = 2, at = "15:00:00" }},
  {{ day = 1, channel = "email", template = "reminder_followup", every_days = 2, at = "15:00:00" }},
]

[stages.call]
steps = [
  {{ day = 0, channel = "voice", template = "call_script", every_days = 1, at = "10:00:00" }},
  {{ day = 0, channel = "sms",   template = "reminder_followup", every_days = 1, at = "13:00:00" }},
  {{ day = 0, channel = "email", template = "reminder_followup", every_days = 1, at = "16:00:00" }},
]

[stages.negotiation]
steps = [
  {{ day = 0, channel = "sms",   template = "plan_offer", every_days = 1 }},
  {{ day = 0, channel = "voice", template = "call_script", every_days = 1, at = "11:00:00" }},
  {{ day = 0, channel = "push",  template = "plan_offer", every_days = 1, at = "15:00:00" }},
]

[stages.credit_reporting]
steps = [
  {{ day = 0, channel = "email", template = "bureau_notice" }},
  {{ day = 0, channel = "sms",   template = "bureau_notice" }},
  {{ day = 1, channel = "sms",   template = "reminder_followup", every_days = 1 }},
  {{ day = 1, channel = "voice", template = "call_script", every_days = 1, at = "11:00:00" }},
  {{ day = 1, channel = "push",  template = "reminder_followup", every_days = 1, at = "15:00:00" }},
]

[stages.legal]
steps = [
  {{ day = 0, channel = "sms",   template = "legal_notice" }},
  {{ day = 0, channel = "email", template = "legal_notice" }},
  {{ day = 1, channel = "sms",   template = "reminder_followup", every_days = 1 }},
  {{ day = 1, channel = "voice", template = "legal_notice", every_days = 1, at = "11:00:00" }},
]
"""


def crash_config(tmp: Path, name: str = "crash", day_seconds: float = 2.0) -> Path:
    """A copy of config/ with the crash policy in it, and a profile `crash`:
    the cn profile with its contact window open all day (a loan day of two
    seconds spends most of its time outside a real window, and postponed
    contacts are not what these tests are about). The DUNNING_CONFIG_DIR."""
    config = tmp / "config"
    shutil.copytree(ROOT / "config", config)
    text = (config / "profiles" / "cn.toml").read_text(encoding="utf-8")
    changed = 0
    for pattern, replacement, flags in (
        (r'(\[window\][^\[]*?)start = "[0-9:]+"', r'\1start = "00:00:00"', 0),
        (r'(\[window\][^\[]*?)end = "[0-9:]+"', r'\1end = "23:59:59"', 0),
        (r'^name = "cn"', 'name = "crash"', re.M),
    ):
        text, n = re.subn(pattern, replacement, text, count=1, flags=flags)
        changed += n
    profile = "crash" if changed == 3 else "cn"  # cn.toml changed shape: keep its window
    if profile == "crash":
        (config / "profiles" / "crash.toml").write_text(text, encoding="utf-8")
    (config / "policies" / f"{name}.toml").write_text(
        CRASH_POLICY.format(name=name, day_seconds=day_seconds, profile=profile), encoding="utf-8"
    )
    return config


# --------------------------------------------------------------- Twilio's side


class CountingTwilio(FakeTwilio):
    """tests/support/providers.py's spec-checking Twilio, which also
    counts every message and call it accepts by its outbox key (the `key` of
    its StatusCallback), and then calls that StatusCallback the way Twilio
    does (SMS `sent`, call `initiated`), signed with X-Twilio-Signature.

    `arm()` makes it hold its answer to the next create it accepts, so a test
    can kill the worker after Twilio took a message and before the worker
    learnt so: the window where a crash could send a message twice."""

    def __init__(self, callback_delay: float = 1.0) -> None:
        super().__init__()
        self.lock = threading.Lock()
        self.accepted: Counter[str] = Counter()
        self.callback_delay = callback_delay
        self.callbacks: queue.Queue = queue.Queue()
        self.callbacks_scheduled = 0
        self.callbacks_done = 0
        self.callback_failures: list[str] = []
        self._validator = RequestValidator(AUTH_TOKEN)
        self._armed = False
        self.held = threading.Event()
        self.held_key: str | None = None
        self._release = threading.Event()
        self._sender = threading.Thread(target=self._send_callbacks, name="twilio-callbacks", daemon=True)
        self._sender.start()

    def handle(self, request: Request):
        response = super().handle(request)
        if response.status_code != 201:
            return response
        form = request.form
        callback = form.get("StatusCallback", "")
        key = parse_qs(urlparse(callback).query).get("key", [""])[0]
        resource = json.loads(response.get_data())
        is_call = request.path.endswith("/Calls.json")
        with self.lock:
            self.accepted[key] += 1
            hold, self._armed = self._armed, False
            if hold:
                self.held_key = key
            self.callbacks_scheduled += 1
        common = {"AccountSid": ACCOUNT_SID, "To": form.get("To", ""), "From": form.get("From", FROM_NUMBER),
                  "ApiVersion": "2010-04-01"}
        if is_call:
            params = {**common, "CallSid": resource["sid"], "CallStatus": "initiated", "Direction": "outbound-api",
                      "CallbackSource": "call-progress-events", "SequenceNumber": "0"}
        else:
            params = {**common, "MessageSid": resource["sid"], "SmsSid": resource["sid"], "MessageStatus": "sent",
                      "SmsStatus": "sent"}
        self.callbacks.put((time.monotonic() + self.callback_delay, key, callback, params))
        if hold:
            self.held.set()
            self._release.wait(timeout=60)  # the worker that asked is dead by then
        return response

    def accepted_total(self) -> int:
        with self.lock:
            return sum(self.accepted.values())

    def arm(self) -> None:
        with self.lock:
            self.held.clear()
            self._release.clear()
            self.held_key = None
            self._armed = True

    def release(self) -> None:
        with self.lock:
            self._armed = False
        self._release.set()

    def _send_callbacks(self) -> None:
        while True:
            due, key, url, params = self.callbacks.get()
            if url is None:
                return
            time.sleep(max(0.0, due - time.monotonic()))
            body = urlencode(params).encode()
            signature = self._validator.compute_signature(url, params)
            for attempt in range(20):
                try:
                    request = urllib.request.Request(url, data=body, method="POST", headers={
                        "Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature})
                    with urllib.request.urlopen(request, timeout=10) as answer:
                        ok = answer.status < 300
                except urllib.error.HTTPError as error:
                    ok = False
                    if error.code < 500:  # refused for good (a bad signature): the harness is wrong
                        self.callback_failures.append(f"{key}: HTTP {error.code}")
                        break
                except OSError:
                    ok = False
                if ok:
                    break
                time.sleep(min(2.0, 0.2 * (attempt + 1)))  # the gateway is busy: try again a while
            else:
                self.callback_failures.append(f"{key}: gateway unreachable")
            with self.lock:
                self.callbacks_done += 1

    def callbacks_drained(self) -> bool:
        with self.lock:
            return self.callbacks_done >= self.callbacks_scheduled

    def stop(self) -> None:
        self.release()
        self.callbacks.put((0, "", None, None))


class TwilioServer:
    """CountingTwilio behind a real HTTP server on a free port."""

    def __init__(self) -> None:
        import logging

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self.twilio = CountingTwilio()

        @Request.application
        def app(request: Request):
            if request.method == "POST" and request.path.startswith("/2010-04-01/"):
                return self.twilio.handle(request)
            from werkzeug import Response

            return Response("not found", status=404)

        self._server = make_server("127.0.0.1", 0, app, threaded=True)
        self.base_url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="twilio-server", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.twilio.stop()
        self._server.shutdown()


# ------------------------------------------------------------------ processes


class Gateway:
    """`uvicorn gateway.app:app` on a free port: Twilio's callbacks reach the
    outbox through it."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "gateway.app:app", "--host", "127.0.0.1", "--port", str(self.port),
             "--log-level", "warning"],
            cwd=ROOT, env={**env, "DUNNING_PUBLIC_BASE_URL": self.url}, stdout=self.log, stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the gateway exited with {self.process.returncode}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2):  # /openapi.json is off by default
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("the gateway did not start")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


# Worker processes are forked from one process that has imported worker.py's
# modules (a "zygote"), and each child runs worker.py as __main__, exactly as
# `python worker.py` does. A killed worker is so restarted in a fraction of a
# second instead of the seconds its imports take on a busy 2-core machine, and
# twenty restarts do not import everything twenty times. The zygote starts no
# thread before it forks (nothing of Temporal's runtime exists until a child
# connects), so each child is a clean process.
ZYGOTE = """\
import json, os, runpy, signal, sys, traceback
import worker  # the imports, once
signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # a killed child is reaped at once
print("ready", flush=True)
while True:
    line = sys.stdin.readline()
    if not line:
        break
    order = json.loads(line)
    pid = os.fork()
    if pid == 0:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.environ.clear()
        os.environ.update(order["env"])
        log = os.open(order["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        code = 0
        try:
            sys.argv = ["worker.py"]
            runpy.run_path("worker.py", run_name="__main__")
        except SystemExit as exit:
            code = exit.code if isinstance(exit.code, int) else 1
        except BaseException:
            traceback.print_exc()
            code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    print(pid, flush=True)
"""


class Workers:
    """`python worker.py` processes, started, SIGKILLed and restarted.
    Create it early: the zygote imports while the rest starts."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.zygote = subprocess.Popen(
            [sys.executable, "-c", ZYGOTE], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=open(log_dir / "zygote.log", "ab"), text=True,
        )
        self.ready = False
        self.pid: int | None = None
        self.current_log: Path | None = None
        self.started = 0
        self.kills = 0

    def start(self, env: dict[str, str], timeout: float = 90) -> None:
        """Start a worker with `env` and wait until it runs."""
        if not self.ready:
            answer = self.zygote.stdout.readline().strip()
            if answer != "ready":
                raise RuntimeError(f"the worker zygote did not start: {(self.log_dir / 'zygote.log').read_text()[-3000:]}")
            self.ready = True
        self.started += 1
        path = self.log_dir / f"worker-{self.started:02d}.log"
        self.zygote.stdin.write(json.dumps({"env": env, "log": str(path)}) + "\n")
        self.zygote.stdin.flush()
        self.pid, self.current_log = int(self.zygote.stdout.readline()), path
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if path.exists() and "worker_started" in path.read_text(errors="replace"):
                return
            if not self.alive():
                raise RuntimeError(f"the worker exited:\n{path.read_text()[-3000:]}")
            time.sleep(0.05)
        raise RuntimeError(f"the worker did not start:\n{path.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL the running worker: no shutdown, no goodbye to the server."""
        assert self.alive(), "the worker died before it was killed"
        os.kill(self.pid, signal.SIGKILL)
        wait_until(lambda: not self.alive(), 10, 0.01, "the killed worker gone")
        self.kills += 1

    def alive(self) -> bool:
        if self.pid is None:
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def stop(self) -> None:
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
        self.zygote.stdin.close()
        try:
            self.zygote.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.zygote.kill()
            self.zygote.wait()


# ---------------------------------------------------------------------- loans


def placement(loan_id: str, days: int, amount: str, language: str, zone: str, policy: str, due_days_ago) -> dict:
    n = re.sub(r"\D", "", loan_id)[-4:].rjust(4, "0")
    return {
        "loan_id": loan_id, "borrower_id": f"B-{loan_id}", "amount_due": amount, "currency": "CNY",
        "due_date": due_days_ago(days), "policy": policy,
        "borrower": {
            "name": f"Borrower {loan_id}", "phone": f"+861380013{n}", "email": f"{loan_id.lower()}@example.com",
            "language": language, "time_zone": zone,
        },
    }


@dataclass
class Run:
    """What one crash run did, for the checks and the report."""

    seed: int
    kills: int = 0
    targeted_kills: int = 0  # kills while Twilio held an accepted message's answer
    held_keys: list[str] = field(default_factory=list)
    pending_after_kills: set[str] = field(default_factory=set)  # rows a kill left `pending`
    payments: dict[str, dict[str, str]] = field(default_factory=dict)  # loan id -> payment id -> amount
    payment_signals: int = 0
    server_restarts: int = 0
    worker_restarts: int = 0
    kill_phase_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def pending_keys(sessions) -> set[str]:
    with sessions() as db:
        return set(db.scalars(select(Contact.key).where(Contact.status == "pending")))


def wait_until(check, timeout: float, interval: float = 0.5, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not met in {timeout:.0f} s")
        time.sleep(interval)


def temporal_json(dev: DevServer, *args: str, attempts: int = 30):
    """A `temporal` CLI call's JSON output, retried while the server restarts."""
    for attempt in range(attempts):
        done = dev.temporal(*args, "-o", "json", check=False)
        if done.returncode == 0:
            return json.loads(done.stdout)
        time.sleep(0.5)
    raise AssertionError(f"temporal {' '.join(args)} failed: {done.stderr.strip()[:500]}")


def send_signal(dev: DevServer, loan_id: str, name: str, payload: dict) -> None:
    """A signal through the `temporal` CLI, retried while the server restarts
    (a signal that arrived before a restart and is sent again is a duplicate
    the workflow must absorb, like any redelivery)."""
    for _ in range(60):
        done = dev.temporal("workflow", "signal", "--workflow-id", f"dunning-{loan_id}", "--name", name,
                            "--input", json.dumps(payload), check=False)
        if done.returncode == 0:
            return
        if "already completed" in done.stderr:
            raise AssertionError(f"{name} for {loan_id}: the loan closed before the test ended it")
        time.sleep(0.5)
    raise AssertionError(f"{name} signal for {loan_id} not delivered: {done.stderr.strip()[:300]}")


def end_loan(dev: DevServer, loan_id: str) -> None:
    """End a loan the way an operator can: a dispute, upheld. The loan stops
    contacting, finishes what it has in flight, and closes (dispute_upheld)."""
    send_signal(dev, loan_id, "dispute", {"reason": "crash test over"})
    send_signal(dev, loan_id, "dispute_resolved", {"upheld": True})


def running_count(dev: DevServer) -> int:
    answer = temporal_json(dev, "workflow", "count", "--query",
                           f'TaskQueue="{dev.task_queue}" AND ExecutionStatus="Running"')
    return int(answer.get("count", 0))


# ----------------------------------------------------------------- the checks


@dataclass
class Findings:
    counts: dict[str, int]
    problems: list[str]


def check_invariants(dev: DevServer, twilio: CountingTwilio, run: Run, loan_ids: list[str]) -> Findings:
    """Everything that must hold after the crashes, as counts and problems."""
    problems: list[str] = []
    with dev.sessions() as db:
        rows = db.execute(select(Contact.key, Contact.channel, Contact.status, Contact.workflow_id)).all()
        payments = db.execute(
            select(Payment.loan_id, Payment.payment_id, Payment.amount, Payment.applied, Payment.key)).all()
        audited = Counter(db.scalars(select(AuditEntry.key).where(AuditEntry.kind == "contact")))
        chain = audit.verify(db)

    # 1. The outbox: one row per key; nothing left pending.
    keys = Counter(key for key, *_ in rows)
    duplicate_rows = {key: n for key, n in keys.items() if n > 1}
    if duplicate_rows:
        problems.append(f"outbox keys written more than once: {sorted(duplicate_rows)[:5]}")
    status_of = {key: status for key, _, status, _ in rows}
    channel_of = {key: channel for key, channel, _, _ in rows}
    pending = sorted(key for key, status in status_of.items() if status == "pending")
    if pending:
        problems.append(f"{len(pending)} outbox rows still pending: {pending[:5]}")

    # 2. The provider: what it accepted is exactly the rows marked sent.
    with twilio.lock:
        accepted = Counter(twilio.accepted)
    provider_dupes = {key: n for key, n in accepted.items() if n > 1}
    sent_provider_rows = {key for key, status in status_of.items()
                          if status == "sent" and channel_of[key] in PROVIDER_CHANNELS}
    never_seen = sorted(sent_provider_rows - set(accepted))  # `sent` but Twilio never got it
    unrecorded = sorted(key for key in accepted if status_of.get(key) != "sent")  # Twilio got it, the outbox says not
    if provider_dupes:
        problems.append(f"{sum(provider_dupes.values()) - len(provider_dupes)} duplicate messages at the provider: "
                        + ", ".join(f"{k} x{n}" for k, n in sorted(provider_dupes.items())[:5]))
    if never_seen:
        problems.append(f"{len(never_seen)} rows marked sent that the provider never accepted: {never_seen[:5]}")
    if unrecorded:
        problems.append(f"{len(unrecorded)} provider messages without a sent outbox row: "
                        + ", ".join(f"{k} ({status_of.get(k, 'no row')})" for k in unrecorded[:5]))
    if twilio.problems:
        problems.append(f"requests Twilio's spec refuses: {twilio.problems[:3]}")
    if twilio.callback_failures:
        problems.append(f"status callbacks the gateway refused: {twilio.callback_failures[:3]}")

    # 3. The kill window: each message held while its worker was killed went once.
    for key in run.held_keys:
        if accepted.get(key) != 1 or status_of.get(key) != "sent":
            problems.append(f"held message {key}: accepted {accepted.get(key, 0)} times, row {status_of.get(key)}")

    # 4. The workflows: each one's contacts agree with the outbox; its payments were applied once.
    amounts_paid: dict[str, Decimal] = {}
    workflow_sent = 0
    for loan_id in loan_ids:
        workflow_id = f"dunning-{loan_id}"
        status = temporal_json(dev, "workflow", "query", "--workflow-id", workflow_id, "--name", "status")
        status = status["queryResult"][0] if isinstance(status, dict) and "queryResult" in status else status
        if status["stage"] != "closed":
            problems.append(f"{loan_id}: not closed (stage {status['stage']})")
        steps = {}
        for contact in status.get("contacts") or []:  # the CLI prints an empty list as null
            steps.setdefault(contact["step"], []).append(contact["result"])
        rows_of_loan = {key.split("/", 2)[2]: row_status for key, row_status in status_of.items()
                        if key.startswith(f"{workflow_id}/")}
        for step, results in steps.items():
            if len(results) > 1:
                problems.append(f"{loan_id}: step {step} recorded {len(results)} times in the workflow")
            if results[-1] == "sent":
                workflow_sent += 1
                if rows_of_loan.get(step) != "sent":
                    problems.append(f"{loan_id}: the workflow says {step} was sent, the outbox says {rows_of_loan.get(step)}")
        for step, row_status in rows_of_loan.items():
            if row_status == "sent" and "sent" not in steps.get(step, []):
                problems.append(f"{loan_id}: outbox row {step} is sent, the workflow recorded {steps.get(step)}")
        expected = sum((Decimal(a) for a in run.payments.get(loan_id, {}).values()), Decimal("0"))
        amounts_paid[loan_id] = Decimal(status["amount_paid"])
        if Decimal(status["amount_paid"]) != expected:
            problems.append(f"{loan_id}: amount_paid {status['amount_paid']}, the distinct payments sum to {expected}")

    # 5. The payments table: one applied row per payment id, the amounts signalled.
    recorded: dict[tuple[str, str], list] = {}
    for loan_id, payment_id, amount, applied, key in payments:
        recorded.setdefault((loan_id, payment_id), []).append((amount, applied))
    for loan_id, by_id in run.payments.items():
        for payment_id, amount in by_id.items():
            found = recorded.get((loan_id, payment_id), [])
            if len(found) != 1 or not found[0][1] or Decimal(found[0][0]) != Decimal(amount):
                problems.append(f"{loan_id} payment {payment_id}: recorded {found}, expected one applied {amount}")
    extra = set(recorded) - {(loan, pid) for loan, by_id in run.payments.items() for pid in by_id}
    if extra:
        problems.append(f"payments recorded that were never made: {sorted(extra)[:5]}")

    # 6. The audit log: the chain holds across the kills.
    if not chain.ok:
        problems.append(f"audit chain broken: {chain.problem}")

    sent_rows = [key for key, status in status_of.items() if status == "sent"]
    unaudited = sorted(key for key in sent_rows if audited.get(f"{key}/contact/sent", 0) != 1)
    counts = {
        "kills": run.kills,
        "kill_phase_seconds": round(run.kill_phase_seconds),
        "targeted_kills": run.targeted_kills,
        "server_restarts": run.server_restarts,
        "worker_restarts": run.worker_restarts,
        "outbox_rows": len(rows),
        "outbox_by_status": " ".join(f"{status}:{n}" for status, n in sorted(Counter(status_of.values()).items())),
        "sent": len(sent_rows),
        "sent_via_twilio": len(sent_provider_rows),
        "provider_accepted": sum(accepted.values()),
        "workflow_contacts_sent": workflow_sent,
        "pending_after_kills": len(run.pending_after_kills),
        "pending_after_kills_at_provider": len({k for k in run.pending_after_kills if k in accepted}),
        "duplicates": (sum(provider_dupes.values()) - len(provider_dupes)) + sum(n - 1 for n in duplicate_rows.values()),
        "lost": len(never_seen) + len(unrecorded) + len(pending),
        "payment_signals": run.payment_signals,
        "payments_distinct": sum(len(by_id) for by_id in run.payments.values()),
        "payments_recorded": sum(1 for *_, applied, _ in payments if applied),
        "sent_without_audit_entry": len(unaudited),
        "audit_entries": chain.entries_checked,
    }
    if unaudited:
        run.notes.append(f"sent rows without their 'contact sent' audit entry: {unaudited[:5]}")
    return Findings(counts, problems)
