"""Crash safety: nothing is lost and nothing is sent twice when processes die.

Loans run on a real `temporal server start-dev` with the real worker process
(`worker.py`). SMS and calls go to a local server that speaks Twilio's API
(each request checked against Twilio's OpenAPI spec, as in
test_provider_channels.py), counts every message and call it accepts by its
outbox key, and calls the gateway (`uvicorn gateway.app:app`) back the way
Twilio does; e-mail and push are captured locally. Then:

1. the worker is SIGKILLed 20 times at random moments while messages go out,
   and restarted; every fourth kill comes while Twilio holds back its answer
   to a message it has accepted, the moment a crash could send one twice;
2. the Temporal dev server is SIGKILLed and restarted on the same port and
   state file (`--db-filename`) four times while the worker keeps running.

Payments are signalled during the crashes, each payment id two or three times.
At the end the test ends every loan (a dispute, upheld), waits until all have
closed, and checks: one outbox row per key and none left pending; every row
marked sent was accepted by the provider exactly once, and the provider
accepted nothing else; each workflow's contacts agree with the outbox; each
payment is recorded once and amount_paid is the sum of the distinct payments;
the audit chain verifies. Only the kill timing is random. Each scenario's seed
is printed, in the terminal summary, and in the failure; `--crash-seed N` (or
CRASH_SEED=N) repeats it:

    .venv/bin/python -m pytest tests/test_crash_safety.py --crash-seed 1234567

The worker processes are forked from one process that has done worker.py's
imports (tests/support/crash.py, Workers), so a restart takes well under a
second; each runs worker.py as __main__, as `python worker.py` does. The
dev-server scenario runs in a background thread beside the worker scenario:
both mostly wait for Temporal's timeouts (a send lost with a killed worker is
retried when its 60-second start-to-close timeout expires).

The last two tests pin down, without a server, the two ways a kill between
Twilio's acceptance and the outbox's `sent` could go wrong (see the comment
above them): a retry must not send again, and Twilio's callback must leave
its audit entry.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
from sqlalchemy import select
from temporalio.testing import ActivityEnvironment
from twilio.request_validator import RequestValidator

from activities.dunning_activities import DunningActivities
from activities.payloads import ContactRequest
from activities.rendering import TemplateRenderer
from channels.base import OutboundMessage, ProviderReceipt
from db.models import AuditEntry, Contact
from gateway.app import create_app
from gateway.settings import GatewaySettings
from runtime.worker_build import activity_settings
from tests.support.crash import (
    ROOT,
    Gateway,
    Run,
    TwilioServer,
    Workers,
    check_invariants,
    crash_config,
    end_loan,
    pending_keys,
    placement,
    running_count,
    send_signal,
    wait_until,
)
from tests.support.devserver import DevServer, due_days_ago, run_ids
from tests.support.providers import ACCOUNT_SID, AUTH_TOKEN, FROM_NUMBER

WORKER_KILLS = 20
SERVER_KILLS = 4

# Each scenario's counts, written into the terminal summary (so they are in the
# CI log without -s; tests/conftest.py calls summary_lines) and recorded as
# properties (junit XML). SEEDS: each scenario's seed and test, set as it starts.
REPORT: dict[str, dict] = {}
SEEDS: dict[str, tuple[int, str]] = {}


def crash_seed(config) -> int:
    """The kill timing's seed: `--crash-seed N`, else CRASH_SEED=N, else a random one."""
    seed = config.getoption("crash_seed")
    if seed is None and os.environ.get("CRASH_SEED", "").strip():
        seed = int(os.environ["CRASH_SEED"])
    return seed if seed is not None else random.SystemRandom().randrange(2**32)


def rerun_command(seed: int, nodeid: str) -> str:
    python = Path(sys.executable)
    python = python.relative_to(ROOT) if python.is_relative_to(ROOT) else python  # .venv/bin/python
    return f"{python} -m pytest '{nodeid}' --crash-seed {seed}"


def seed_for(name: str, seed: int, nodeid: str) -> int:
    SEEDS[name] = (seed, nodeid)
    REPORT[name] = {"seed": seed, "result": "did not finish"}
    print(f"\ncrash safety, {name}: seed {seed} (`{rerun_command(seed, nodeid)}` repeats the kill timing)")
    return seed


@contextlib.contextmanager
def repeatable(name: str):
    """A failure of the scenario says how to run it again with its seed."""
    try:
        yield
    except BaseException as error:
        if name in SEEDS:
            seed, nodeid = SEEDS[name]
            error.add_note(f"crash safety, {name}: seed {seed}; repeat its kill timing with: {rerun_command(seed, nodeid)}")
        raise


def summary_lines(failed: set[str]) -> list[str]:
    """Each scenario's seed and counts for the terminal summary, and for a
    failed one the command that repeats it (`failed`: the failed node ids)."""
    lines = []
    for name, (seed, nodeid) in SEEDS.items():
        counts = {"seed": seed, **REPORT.get(name, {})}
        lines.append(f"crash safety, {name}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
        if nodeid in failed:
            lines.append(f"crash safety, {name}: FAILED; repeat its kill timing with: {rerun_command(seed, nodeid)}")
    return lines


def report(name: str, run: Run, counts: dict, record_property, started: float, finished: float | None = None) -> None:
    counts = {"seed": run.seed, **counts, "seconds": round((finished or time.monotonic()) - started)}
    REPORT[name] = counts
    for key, value in counts.items():
        record_property(key, value)
    print(f"crash safety, {name}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    for note in run.notes:
        print(f"crash safety, {name}: {note}")


LOANS = [
    # loan id, amount, language, zone; two small balances (no calls) among them
    ("L-CR-1", "1200.00", "zh_CN", "Asia/Shanghai"),
    ("L-CR-2", "800.00", "zh_TW", "Asia/Taipei"),
    ("L-CR-3", "2500.00", "en", "Asia/Singapore"),
    ("L-CR-4", "250.00", "zh_CN", "Asia/Shanghai"),
    ("L-CR-5", "1500.00", "en", "Asia/Hong_Kong"),
    ("L-CR-6", "900.00", "zh_CN", "Asia/Shanghai"),
    ("L-CR-7", "3000.00", "zh_TW", "Asia/Taipei"),
    ("L-CR-8", "600.00", "zh_CN", "Asia/Shanghai"),
    ("L-CR-9", "4000.00", "en", "Asia/Singapore"),
    ("L-CR-10", "180.00", "zh_CN", "Asia/Shanghai"),
    ("L-CR-11", "2200.00", "zh_TW", "Asia/Taipei"),
    ("L-CR-12", "1000.00", "zh_CN", "Asia/Shanghai"),
]
# (after crash number, loan id, payment id, amount): each payment id is
# signalled two or three times, around different crashes; each counts once.
WORKER_KILL_PAYMENTS = [
    (1, "L-CR-1", "P-CR-1", "100.00"), (4, "L-CR-1", "P-CR-1", "100.00"), (9, "L-CR-1", "P-CR-1", "100.00"),
    (2, "L-CR-3", "P-CR-3A", "250.00"), (6, "L-CR-3", "P-CR-3A", "250.00"),
    (7, "L-CR-3", "P-CR-3B", "40.50"), (12, "L-CR-3", "P-CR-3B", "40.50"),
    (3, "L-CR-6", "P-CR-6", "300.00"), (8, "L-CR-6", "P-CR-6", "300.00"), (15, "L-CR-6", "P-CR-6", "300.00"),
]
SERVER_KILL_PAYMENTS = [
    (1, "L-CR-1", "P-CR-1", "100.00"), (2, "L-CR-1", "P-CR-1", "100.00"),
    (2, "L-CR-3", "P-CR-3A", "250.00"), (3, "L-CR-3", "P-CR-3A", "250.00"),
    (3, "L-CR-6", "P-CR-6", "300.00"), (4, "L-CR-6", "P-CR-6", "300.00"),
]


def by_crash(payments) -> dict[int, list[tuple[str, str, str]]]:
    found: dict[int, list] = {}
    for after, loan_id, payment_id, amount in payments:
        found.setdefault(after, []).append((loan_id, payment_id, amount))
    return found


class Stack:
    """One run's processes: the worker zygote, the local Twilio, a dev server,
    the gateway; loans on the crash policy (a 2-second loan day)."""

    def __init__(self, tmp, loans: int) -> None:
        self.tmp = tmp
        self.loans = LOANS[:loans]
        self.workers = self.twilio_server = self.dev = self.gateway = None
        try:
            self.workers = Workers(tmp)  # imports while the rest starts
            self.twilio_server = TwilioServer()
            self.twilio = self.twilio_server.twilio
            config = crash_config(tmp)
            self.dev = DevServer(tmp, start_worker=False, extra_env={
                "DUNNING_CONFIG_DIR": str(config),
                "DUNNING_SMS_PROVIDER": "twilio",
                "DUNNING_VOICE_PROVIDER": "twilio",
                "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
                "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
                "TWILIO_FROM_NUMBER": FROM_NUMBER,
                "TWILIO_API_BASE_URL": self.twilio_server.base_url,
                "DUNNING_PROVIDER_TIMEOUT_SECONDS": "10",
                "DUNNING_LOG_LEVEL": "INFO",
            })
            self.dev.env.pop("DUNNING_METRICS_PORT", None)  # workers come and go: no port to fight over
            self.gateway = Gateway(self.dev.env, tmp / "gateway.log")
            self.dev.env["DUNNING_PUBLIC_BASE_URL"] = self.gateway.url  # where Twilio's callbacks go
            self.gateway.wait_ready()
        except BaseException:
            self.stop()
            raise

    def start(self) -> list[str]:
        """Place the loans with `starter.py start` while the first worker starts."""
        records = [placement(loan_id, 1, amount, language, zone, "crash", due_days_ago)
                   for loan_id, amount, language, zone in self.loans]
        path = self.tmp / "loans.json"
        path.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
        starter = subprocess.Popen([sys.executable, "starter.py", "start", str(path)], cwd=ROOT, env=self.dev.env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.workers.start(self.dev.env)
        out, err = starter.communicate(timeout=120)
        assert starter.returncode == 0, err
        assert {state for state, _ in run_ids(out).values()} == {"started"}
        return [loan_id for loan_id, *_ in self.loans]

    def pay(self, run: Run, loan_id: str, payment_id: str, amount: str) -> None:
        send_signal(self.dev, loan_id, "repayment",
                    {"payment_id": payment_id, "amount": amount, "currency": "CNY", "paid_at": "2026-11-05T10:00:00+08:00"})
        run.payment_signals += 1
        run.payments.setdefault(loan_id, {})[payment_id] = amount

    def finish(self, run: Run, loan_ids: list[str]) -> dict:
        """End every loan, wait until each has closed (a send lost with a
        killed worker is retried when its 60-second start-to-close timeout
        expires) and Twilio's callbacks have arrived; then check."""
        for loan_id in loan_ids:
            end_loan(self.dev, loan_id)
        wait_until(lambda: running_count(self.dev) == 0, 180, 1.0, "every loan closed")
        wait_until(self.twilio.callbacks_drained, 60, 0.2, "Twilio's callbacks delivered")
        findings = check_invariants(self.dev, self.twilio, run, loan_ids)
        assert not findings.problems, f"seed {run.seed}:\n" + "\n".join(findings.problems)
        return findings.counts

    def stop(self) -> None:
        for part in (self.workers, self.gateway, self.dev, self.twilio_server):
            if part is not None:
                part.stop()


def worker_kills(tmp, seed: int) -> tuple[Run, dict]:
    """Scenario 1: SIGKILL the worker 20 times while messages go out."""
    rng = random.Random(seed)
    run = Run(seed)
    started = time.monotonic()
    stack = Stack(tmp, loans=12)
    try:
        loan_ids = stack.start()
        payments = by_crash(WORKER_KILL_PAYMENTS)
        for kill in range(1, WORKER_KILLS + 1):
            targeted = kill % 4 == 0
            if targeted:
                # Twilio accepts the next message and holds its answer: the
                # worker dies not knowing the message went.
                stack.twilio.arm()
                if stack.twilio.held.wait(timeout=30):
                    run.targeted_kills += 1
                else:
                    stack.twilio.release()
                    targeted = False
            else:
                # A random moment, and not before this worker has sent
                # something (waiting up to 2 s more, then a random fraction
                # of a second): the kill lands among sends.
                sent_before = stack.twilio.accepted_total()
                time.sleep(rng.uniform(0.2, 2.0))
                deadline = time.monotonic() + 2
                while stack.twilio.accepted_total() == sent_before and time.monotonic() < deadline:
                    time.sleep(0.02)
                time.sleep(rng.uniform(0.0, 0.3))
            stack.workers.kill()
            run.kills += 1
            if targeted:
                run.held_keys.append(stack.twilio.held_key)
                stack.twilio.release()
            run.pending_after_kills |= pending_keys(stack.dev.sessions)
            for loan_id, payment_id, amount in payments.get(kill, []):
                stack.pay(run, loan_id, payment_id, amount)
            stack.workers.start(stack.dev.env)
        run.kill_phase_seconds = time.monotonic() - started
        return run, stack.finish(run, loan_ids)
    finally:
        stack.stop()


def dev_server_kills(tmp, seed: int) -> tuple[Run, dict]:
    """Scenario 2: SIGKILL the dev server four times; the worker rides it out."""
    rng = random.Random(seed)
    run = Run(seed)
    started = time.monotonic()
    stack = Stack(tmp, loans=8)
    try:
        loan_ids = stack.start()
        payments = by_crash(SERVER_KILL_PAYMENTS)
        for kill in range(1, SERVER_KILLS + 1):
            time.sleep(rng.uniform(1.5, 4.0))
            stack.dev.server.kill()  # SIGKILL
            stack.dev.server.wait()
            run.kills += 1
            time.sleep(rng.uniform(0.5, 3.0))  # down a moment; the worker keeps trying
            stack.dev.start_server()  # same port, same --db-filename
            run.server_restarts += 1
            if not stack.workers.alive():
                run.notes.append(f"the worker exited during outage {kill}")
                stack.workers.start(stack.dev.env)
                run.worker_restarts += 1
            for loan_id, payment_id, amount in payments.get(kill, []):
                stack.pay(run, loan_id, payment_id, amount)
        run.kill_phase_seconds = time.monotonic() - started
        return run, stack.finish(run, loan_ids)
    finally:
        stack.stop()


class Background:
    """A scenario in a thread of its own."""

    def __init__(self, scenario, tmp, seed: int) -> None:
        self.started = self.finished = time.monotonic()
        self.outcome: tuple[Run, dict] | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(scenario, tmp, seed), name=scenario.__name__, daemon=True)
        self.thread.start()

    def _run(self, scenario, tmp, seed: int) -> None:
        try:
            self.outcome = scenario(tmp, seed)
        except BaseException as error:  # re-raised by the test that joins it
            self.error = error
        finally:
            self.finished = time.monotonic()

    def join(self, timeout: float = 600) -> tuple[Run, dict]:
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise AssertionError(f"{self.thread.name} still running after {timeout} s")
        if self.error is not None:
            raise self.error
        return self.outcome


@pytest.fixture(scope="module")
def dev_server_kills_run(request, tmp_path_factory):
    """The dev-server scenario runs in the background from the module's first
    devserver test on: most of its time, and the worker scenario's, is
    waiting (for Temporal's timeouts to expire), so side by side they take
    little longer than the longer one alone."""
    wanted = [item.nodeid for item in request.session.items
              if item.name == "test_dev_server_kills_lose_no_message_or_payment_and_send_none_twice"]
    background = None
    if wanted:
        seed = seed_for("dev server kills", crash_seed(request.config), wanted[0])
        background = Background(dev_server_kills, tmp_path_factory.mktemp("dev-server-kills"), seed)
    yield background
    if background is not None:
        background.thread.join(600)  # never leave its processes running


@pytest.mark.slow  # 167 s measured
@pytest.mark.devserver
def test_twenty_worker_kills_lose_no_message_or_payment_and_send_none_twice(
    request, tmp_path, record_property, dev_server_kills_run
):
    started = time.monotonic()
    seed = seed_for("worker kills", crash_seed(request.config), request.node.nodeid)
    with repeatable("worker kills"):
        run, counts = worker_kills(tmp_path, seed)
        report("worker kills", run, counts, record_property, started)
        assert counts["kills"] == WORKER_KILLS and counts["targeted_kills"] >= 3
        assert counts["duplicates"] == 0 and counts["lost"] == 0
        assert counts["sent_via_twilio"] > 0 and counts["payments_recorded"] == 4


@pytest.mark.slow  # its scenario: 31 s measured, in the background beside the worker kills
@pytest.mark.devserver
def test_dev_server_kills_lose_no_message_or_payment_and_send_none_twice(record_property, dev_server_kills_run):
    with repeatable("dev server kills"):
        run, counts = dev_server_kills_run.join()
        report("dev server kills", run, counts, record_property, dev_server_kills_run.started, dev_server_kills_run.finished)
        assert counts["server_restarts"] == SERVER_KILLS and counts["worker_restarts"] == 0
        assert counts["duplicates"] == 0 and counts["lost"] == 0
        assert counts["sent_via_twilio"] > 0 and counts["payments_recorded"] == 3


# ------------------------------------------------ the kill window, pinned down
#
# send_contact commits the outbox row (`pending`), calls the provider, then
# records `sent` (activities/outbox.py send_contact, through db/outbox.py). A
# worker killed after Twilio accepted a message and before step 3 committed
# leaves the row `pending`; Temporal retries the activity when its 60-second
# start-to-close timeout expires, and `db.outbox.claim` hands a `pending` row back to be
# sent again. Twilio's Messages and Calls APIs take no idempotency key, so
# only the gateway's status callback, if it reconciles the row first, keeps
# the retry from sending twice. The end-to-end runs above have that callback
# (and find no duplicate); these two show what happens around it.

TWILIO_CALLBACK_TOKEN = "crash-window-token"
PUBLIC = "https://gw.crash.example"


class _WorkerKilled(BaseException):
    """The worker process dies here: nothing after this point of send_contact runs."""


class _AcceptingTwilio:
    """Twilio's side of the window: counts what it accepts; the first time,
    the worker dies before Twilio's answer arrives."""

    name = "sms"
    idempotent_by_key = False  # as Twilio: no idempotency key

    def __init__(self) -> None:
        self.accepted: list[str] = []

    def send(self, message: OutboundMessage) -> ProviderReceipt:
        self.accepted.append(message.key)
        if len(self.accepted) == 1:
            raise _WorkerKilled()
        return ProviderReceipt("twilio", f"SM{len(self.accepted):032x}")


def _killed_after_acceptance(settings, session_factory):
    twilio = _AcceptingTwilio()
    acts = DunningActivities(
        session_factory, {"sms": twilio}, TemplateRenderer(settings.templates_dir), activity_settings(settings)
    )
    request = ContactRequest(
        key="dunning-L-KW/run-1/reminder/d1/0-sms", workflow_id="dunning-L-KW", loan_id="L-KW", borrower_id="B-77",
        stage="reminder", channel="sms", template="reminder_friendly", days_past_due=1, outstanding="1200.00",
        currency="CNY", due_date="2026-11-01",
    )
    with pytest.raises(_WorkerKilled):
        ActivityEnvironment().run(acts.send_contact, request)
    with session_factory() as db:
        if db.scalar(select(Contact.status).where(Contact.key == request.key)) != "sending":
            pytest.fail("the kill did not leave the outbox row in doubt (sending)")
    return acts, twilio, request


def test_without_twilio_s_callback_the_retry_after_a_kill_does_not_send_again_but_records_it_unconfirmed(
    settings, session_factory, seeded_borrower
):
    acts, twilio, request = _killed_after_acceptance(settings, session_factory)

    outcome = ActivityEnvironment().run(acts.send_contact, request)  # Temporal's retry, 60 s later

    # Twilio takes no idempotency key: a send in doubt is never repeated.
    assert twilio.accepted == [request.key], f"Twilio accepted {len(twilio.accepted)} messages for one key"
    assert outcome.result == "unconfirmed"
    again = ActivityEnvironment().run(acts.send_contact, request)
    assert again.result == "unconfirmed" and twilio.accepted == [request.key]
    with session_factory() as db:
        audited = db.scalars(select(AuditEntry.key).where(AuditEntry.kind == "contact")).all()
    assert f"{request.key}/contact/unconfirmed" in audited


async def test_a_send_reconciled_by_twilio_s_callback_after_a_kill_is_in_the_audit_log(
    settings, session_factory, seeded_borrower, tmp_path
):
    acts, twilio, request = _killed_after_acceptance(settings, session_factory)
    gateway = create_app(settings, lambda: None, GatewaySettings(
        TWILIO_AUTH_TOKEN=TWILIO_CALLBACK_TOKEN, DUNNING_PUBLIC_BASE_URL=PUBLIC,
    ))
    path = "/webhooks/twilio/status?" + urlencode({"key": request.key})
    params = {"MessageSid": "SM" + "0" * 31 + "1", "MessageStatus": "sent", "AccountSid": ACCOUNT_SID}
    signature = RequestValidator(TWILIO_CALLBACK_TOKEN).compute_signature(PUBLIC + path, params)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway), base_url="http://testserver") as http:
        answer = await http.post(path, data=params, headers={"X-Twilio-Signature": signature})
    if answer.status_code != 204:
        pytest.fail(f"the gateway refused Twilio's callback: {answer.status_code} {answer.text}")

    outcome = ActivityEnvironment().run(acts.send_contact, request)  # Temporal's retry, 60 s later

    if outcome.result != "sent" or twilio.accepted != [request.key]:
        pytest.fail(f"the reconciled row was sent again or not recorded: {outcome}, {twilio.accepted}")
    with session_factory() as db:
        audited = db.scalars(select(AuditEntry.key).where(AuditEntry.kind == "contact")).all()
    assert f"{request.key}/contact/sent" in audited, "Twilio took the message; the audit log has no contact entry"
