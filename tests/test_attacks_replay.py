"""Issue 14, findings 7 and 8, replayed against the gateway and the audit log:
each attack is refused, and nothing it aimed at changes.

7. Replays: a SendGrid event signed in 2001; an event without `sg_event_id`
   sent again; one signed Twilio gather (`Digits=1`) sent three times; a
   signed `undelivered` callback after the message was sent.
8. The audit chain rewritten by someone who can write the database: an entry
   edited and every later hash and the head recomputed with SHA-256 (with or
   without the `hmac-sha256` scheme mark); the log rolled back with an old
   head; and, on PostgreSQL, the application's UPDATE / DELETE of an entry.

The gateway runs on a fake Temporal client that records the signals, so
"nothing changed" covers the workflow too. The SendGrid window is tested
against an injected clock (`gateway.routes.sendgrid.clock`), never the wall
clock.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import datetime, timezone
from urllib.parse import urlencode

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import func, select, text, update
from sqlalchemy.exc import DBAPIError

from compliance import audit_checkpoints
from db import audit, audit_key, outbox
from db import audit_checkpoint
from db.models import AuditCheckpoint, AuditCheckpointHead, AuditEntry, AuditHead, AuditLoanHead, Contact, WebhookDelivery
from gateway.app import create_app
from gateway.routes import sendgrid
from tests.support.audit_tampering import ids_continue_after_written_rows, lift_append_only_guard
from tests.support.gateway import RecordedSignals, gateway_settings, twilio_signed

pytestmark = pytest.mark.both_databases

NOW = 1_800_000_000  # the injected "now" (2027-01-15): no test depends on the wall clock
SIGNED_IN_2001 = 978_307_200  # 2001-01-01T00:00:00Z
_KEY = ec.generate_private_key(ec.SECP256R1())
_PUBLIC_KEY = base64.b64encode(
    _KEY.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
).decode()


@pytest.fixture
def signals() -> RecordedSignals:
    return RecordedSignals()


@pytest.fixture
async def http(settings, tmp_path, signals, monkeypatch):
    monkeypatch.setattr(sendgrid, "clock", lambda: float(NOW))
    edge = gateway_settings(tmp_path).model_copy(update={"sendgrid_webhook_public_key": _PUBLIC_KEY})
    app = create_app(settings, lambda: signals, edge)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
        yield client


def signed_at(timestamp: int, body: str) -> dict:
    """SendGrid's event webhook headers for `body`, signed at `timestamp`."""
    signature = _KEY.sign((str(timestamp) + body).encode(), ec.ECDSA(hashes.SHA256()))
    return {
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": str(timestamp),
        "Content-Type": "application/json",
    }


def add_contact(session_factory, key: str, channel: str, status: str = "sent") -> None:
    with session_factory.begin() as db:
        db.add(Contact(key=key, workflow_id="dunning-L-R", loan_id="L-R", borrower_id="B-77", stage="reminder",
                       channel=channel, template="t", language="en", status=status, provider="twilio"))


def contact(session_factory, key: str) -> tuple:
    with session_factory() as db:
        row = db.scalar(select(Contact).where(Contact.key == key))
        return row.status, row.error, row.provider_message_id


def deliveries(session_factory) -> int:
    with session_factory() as db:
        return db.scalar(select(func.count()).select_from(WebhookDelivery))


# ---------------------------------------------------------------- finding 7


async def test_a_sendgrid_event_signed_in_2001_is_refused_and_changes_nothing(http, signals, session_factory):
    add_contact(session_factory, "dunning-L-R/mail", "email")
    body = json.dumps([{"event": "unsubscribe", "dunning_key": "dunning-L-R/mail", "sg_event_id": "old-1"}])
    for stale in (SIGNED_IN_2001, NOW - 601, NOW + 601):  # the default window: 600 seconds either way
        response = await http.post("/webhooks/sendgrid/events", content=body, headers=signed_at(stale, body))
        assert response.status_code == 403 and "timestamp" in response.json()["detail"]
    assert signals.sent == [] and deliveries(session_factory) == 0
    assert contact(session_factory, "dunning-L-R/mail") == ("sent", None, None)

    # The same event signed now is SendGrid's: acted on (the control).
    response = await http.post("/webhooks/sendgrid/events", content=body, headers=signed_at(NOW - 599, body))
    assert response.status_code == 200 and response.json() == {"processed": 1, "opted_out": 1}
    assert [name for _, name, _ in signals.sent] == ["opt_out"]


async def test_the_sendgrid_window_is_a_setting(settings, tmp_path, signals, monkeypatch, session_factory):
    monkeypatch.setattr(sendgrid, "clock", lambda: float(NOW))
    edge = gateway_settings(tmp_path).model_copy(
        update={"sendgrid_webhook_public_key": _PUBLIC_KEY, "sendgrid_max_age_seconds": 30}
    )
    app = create_app(settings, lambda: signals, edge)
    body = json.dumps([{"event": "open", "dunning_key": "nowhere", "sg_event_id": "w-1"}])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
        assert (await client.post("/webhooks/sendgrid/events", content=body, headers=signed_at(NOW - 31, body))).status_code == 403
        assert (await client.post("/webhooks/sendgrid/events", content=body, headers=signed_at(NOW - 29, body))).status_code == 200


async def test_a_sendgrid_event_without_an_id_is_processed_once_however_often_it_is_replayed(http, signals, session_factory):
    add_contact(session_factory, "dunning-L-R/mail", "email")
    body = json.dumps([{"event": "unsubscribe", "dunning_key": "dunning-L-R/mail", "timestamp": NOW - 5}])
    answers = [
        (await http.post("/webhooks/sendgrid/events", content=body, headers=signed_at(NOW - i, body))).json()
        for i in range(3)  # re-signed each time, as a replay by someone who can get fresh signatures would be
    ]
    assert answers == [{"processed": 1, "opted_out": 1}, {"processed": 0, "opted_out": 0}, {"processed": 0, "opted_out": 0}]
    assert [name for _, name, _ in signals.sent] == ["opt_out"]

    # Another event of the same message (a different content) is a different event.
    other = json.dumps([{"event": "unsubscribe", "dunning_key": "dunning-L-R/mail", "timestamp": NOW - 4}])
    assert (await http.post("/webhooks/sendgrid/events", content=other, headers=signed_at(NOW, other))).json()["processed"] == 1


def test_an_event_s_content_key_ignores_the_order_of_its_fields():
    one = sendgrid.delivery_key({"event": "open", "dunning_key": "k", "timestamp": 5})
    assert one == sendgrid.delivery_key({"timestamp": 5, "dunning_key": "k", "event": "open"})
    assert one.startswith("sha256/") and one != sendgrid.delivery_key({"event": "open", "dunning_key": "k", "timestamp": 6})
    assert sendgrid.delivery_key({"event": "open", "sg_event_id": "e-7"}) == "e-7"


async def test_one_signed_gather_sent_three_times_sends_one_sms(http, signals, session_factory):
    add_contact(session_factory, "dunning-L-R/call", "voice")
    path = "/webhooks/twilio/gather?" + urlencode({"key": "dunning-L-R/call"})
    params = {"CallSid": "CA-REPLAY", "Digits": "1"}
    headers = twilio_signed(path, params)
    answers = [await http.post(path, data=params, headers=headers) for _ in range(3)]

    assert [a.status_code for a in answers] == [200, 200, 200]
    assert len({a.text for a in answers}) == 1  # Twilio (or the replayer) hears the same menu answer
    assert [name for _, name, _ in signals.sent] == ["send_pay_link"]

    # Another call of the same loan is another keypress.
    params = {"CallSid": "CA-OTHER", "Digits": "1"}
    assert (await http.post(path, data=params, headers=twilio_signed(path, params))).status_code == 200
    assert [name for _, name, _ in signals.sent] == ["send_pay_link", "send_pay_link"]


async def test_a_signed_undelivered_callback_after_sent_leaves_the_row_sent(http, signals, session_factory):
    add_contact(session_factory, "dunning-L-R/reminder/d1/0-sms", "sms")
    path = "/webhooks/twilio/status?" + urlencode({"key": "dunning-L-R/reminder/d1/0-sms"})
    params = {"MessageSid": "SM-LATE", "MessageStatus": "undelivered", "ErrorCode": "30005"}
    for _ in range(2):  # late, then replayed
        assert (await http.post(path, data=params, headers=twilio_signed(path, params))).status_code == 204

    status, error, _ = contact(session_factory, "dunning-L-R/reminder/d1/0-sms")
    assert (status, error) == ("sent", "twilio sms undelivered (error 30005)")  # kept, not moved back
    assert not outbox.may_follow(outbox.SENT, outbox.FAILED)


# ---------------------------------------------------------------- finding 8


def a_chain(session_factory, entries: int = 4) -> None:
    for i in range(1, entries + 1):
        with session_factory.begin() as db:
            audit.append(db, "payment", "L-A", "dunning-L-A", {"amount": f"{i}00.00"}, key=f"pay/{i}",
                         at=datetime(2026, 11, i, tzinfo=timezone.utc))


def recompute_with_sha256(db, from_seq: int, scheme: str | None, upto: int | None = None) -> None:
    """The finding's attack: rewrite every hash from `from_seq` on (to `upto`),
    and the head, with plain SHA-256 (all the attacker can compute). Entries
    of a loan chain (issue 19) are re-hashed over what their keyed hash
    covers, and their loan's head; those of the global chain from before
    migration 0020 the old way, and its head."""
    prev = db.scalar(select(AuditEntry.hash).where(AuditEntry.seq == from_seq - 1)) or audit.GENESIS_HASH
    chosen = select(AuditEntry).where(AuditEntry.seq >= from_seq, AuditEntry.seq <= (upto or 2**31 - 1))
    for entry in db.scalars(chosen.order_by(AuditEntry.seq)).all():
        fields = (entry.at, entry.loan_id, entry.workflow_id, entry.kind, json.loads(entry.payload))
        if entry.loan_seq is None:
            forged = audit.entry_hash(prev, entry.seq, *fields)
        else:
            forged = hashlib.sha256(audit._loan_hashed_text(prev, entry.seq, entry.loan_seq, *fields)).hexdigest()
        values = {"prev_hash": prev, "hash": forged} | ({"scheme": scheme} if scheme else {})
        db.execute(update(AuditEntry).where(AuditEntry.seq == entry.seq).values(**values))
        prev = forged
    seal = hashlib.sha256(prev.encode()).hexdigest()
    if entry.loan_seq is None:
        db.execute(update(AuditHead).values(hash=prev, mac=seal))
    else:
        db.execute(update(AuditLoanHead).where(AuditLoanHead.loan_id == entry.loan_id).values(hash=prev, mac=seal))


@pytest.mark.parametrize("scheme", [None, audit.LEGACY], ids=["keeps-hmac-mark", "marked-sha256"])
def test_an_edit_recomputed_with_sha256_fails_verify(session_factory, scheme):
    a_chain(session_factory)
    assert audit.verify(session_factory()).ok
    with session_factory.begin() as db:
        lift_append_only_guard(db)
        db.execute(text("UPDATE audit_log SET payload = replace(payload, '200.00', '2.00') WHERE seq = 2"))
        recompute_with_sha256(db, 2 if scheme is None else 1, scheme)

    with session_factory() as db:
        result = audit.verify(db)
    assert not result.ok
    if scheme is None:
        assert result.first_bad_seq == 2 and "entry 2 was altered" in result.problem
    else:  # every entry turned into a plain, self-consistent SHA-256 chain: a loan chain is keyed throughout
        assert result.first_bad_seq == 1 and "entry 1 was altered: a loan chain's entries are keyed" in result.problem


def test_edits_removals_and_reorderings_fail_verify(session_factory):
    a_chain(session_factory)
    with session_factory.begin() as db:
        lift_append_only_guard(db)
        db.execute(text("UPDATE audit_log SET seq = 100 WHERE seq = 2"))
        db.execute(text("UPDATE audit_log SET seq = 2 WHERE seq = 3"))
        db.execute(text("UPDATE audit_log SET seq = 3 WHERE seq = 100"))
    result = audit.verify(session_factory())
    assert not result.ok and result.first_bad_seq == 2

    with session_factory.begin() as db:
        db.execute(text("DELETE FROM audit_log WHERE seq = 3"))
    result = audit.verify(session_factory())
    assert not result.ok and result.first_bad_seq == 2


def test_a_chain_verified_with_another_key_fails(session_factory):
    a_chain(session_factory, 2)
    with session_factory() as db:
        assert not audit.verify(db, secret=b"x" * 32).ok


def test_a_log_rolled_back_with_an_old_head_fails_against_the_checkpoint(session_factory, tmp_path):
    checkpoints = tmp_path / "checkpoints.jsonl"
    a_chain(session_factory, 2)
    with session_factory() as db:
        old_head = db.execute(select(AuditLoanHead.seq, AuditLoanHead.hash, AuditLoanHead.mac)).one()
    a_chain_more = [(3, "300.00"), (4, "400.00")]
    for seq, amount in a_chain_more:
        with session_factory.begin() as db:
            audit.append(db, "payment", "L-A", "dunning-L-A", {"amount": amount}, key=f"pay/{seq}")
    # The signed checkpoint of the loan chains (issue 19), in the database and outside it.
    with session_factory.begin() as db:
        assert audit_checkpoint.write(db, datetime(2026, 11, 5, tzinfo=timezone.utc), audit_key.current()).checkpoint
    with session_factory() as db:
        assert audit_checkpoint.export(db, checkpoints) == 1
        assert audit.verify(db).ok and audit_checkpoint.check_outside(db, checkpoints) is None
    assert oct(checkpoints.stat().st_mode & 0o777) == "0o600"

    # Entries 3 and 4 cut off, the head put back to entry 2's (its seal copied when it was current).
    with session_factory.begin() as db:
        lift_append_only_guard(db)
        db.execute(text("DELETE FROM audit_log WHERE seq > 2"))
        db.execute(update(AuditLoanHead).values(seq=old_head.seq, hash=old_head.hash, mac=old_head.mac))
    with session_factory() as db:
        rolled_back = audit.verify(db)
    assert not rolled_back.ok and "entries 3 to 4 were cut off its chain: checkpoint 1" in rolled_back.problem

    # The checkpoint removed from the database as well: the one outside it still tells.
    with session_factory.begin() as db:
        db.execute(AuditCheckpointHead.__table__.delete())
        db.execute(AuditCheckpoint.__table__.delete())
    with session_factory() as db:
        assert audit.verify(db).ok  # the database alone cannot tell ...
        problem = audit_checkpoint.check_outside(db, checkpoints)
    assert problem is not None and "checkpoint 1" in problem and "rolled back" in problem  # ... the file outside it can


def test_a_legacy_chain_stays_verifiable_and_is_covered_by_the_first_keyed_entry(session_factory):
    """Entries written before the key (scheme sha256) verify the old way; the
    first keyed entry covers the last one's hash, so they cannot be rewritten
    either."""
    with session_factory.begin() as db:  # two entries as the code before migration 0007 wrote them
        prev = audit.GENESIS_HASH
        for seq in (1, 2):
            at = datetime(2026, 10, seq, tzinfo=timezone.utc)
            digest = audit.entry_hash(prev, seq, at, "L-A", "dunning-L-A", "payment", {"amount": f"{seq}.00"})
            db.add(AuditEntry(seq=seq, at=at, loan_id="L-A", workflow_id="dunning-L-A", kind="payment", key=None,
                              payload=audit.canonical({"amount": f"{seq}.00"}), prev_hash=prev, hash=digest,
                              scheme=audit.LEGACY))
            db.flush()
            prev = digest
        db.execute(update(AuditHead).values(seq=2, hash=prev, mac=None))
        ids_continue_after_written_rows(db)
    with session_factory() as db:
        unsealed = audit.verify(db)
    assert not unsealed.ok and "not sealed" in unsealed.problem and "seal" in unsealed.problem
    with session_factory.begin() as db:
        assert audit.seal(db).ok
    with session_factory() as db:
        assert audit.verify(db).ok and audit.verify(db).legacy_entries == 2

    with session_factory.begin() as db:
        audit.append(db, "payment", "L-A", "dunning-L-A", {"amount": "3.00"}, key="pay/3")
    with session_factory() as db:
        result = audit.verify(db)
    assert result.ok and result.entries_checked == 3 and result.legacy_entries == 2

    with session_factory.begin() as db:  # rewrite the legacy prefix, recomputing it the old way
        lift_append_only_guard(db)
        db.execute(text("UPDATE audit_log SET payload = replace(payload, '1.00', '9.00') WHERE seq = 1"))
        recompute_with_sha256(db, 1, audit.LEGACY, upto=2)
    # Since migration 0020 the global chain's sealed head covers it (entry 3 is loan L-A's own chain).
    result = audit.verify(session_factory())
    assert not result.ok and "the head (entry 2) is not sealed with the audit key" in result.problem


def test_the_application_cannot_update_or_delete_an_audit_entry(session_factory):
    """Migration 0007's trigger: even the table's owner (the tests connect as
    a superuser on PostgreSQL) is refused until it drops the trigger."""
    a_chain(session_factory, 2)
    for statement in ("UPDATE audit_log SET payload = '{}' WHERE seq = 1", "DELETE FROM audit_log WHERE seq = 2"):
        with pytest.raises(DBAPIError, match="append-only"):
            with session_factory.begin() as db:
                db.execute(text(statement))
    with session_factory() as db:
        assert db.scalar(select(func.count()).select_from(AuditEntry)) == 2
        assert audit.verify(db).ok


def test_verify_without_the_audit_key_says_so_and_never_makes_a_new_one(session_factory, tmp_path, monkeypatch):
    a_chain(session_factory, 1)
    missing = tmp_path / "no_key"
    monkeypatch.delenv(audit_key.ENV_KEY, raising=False)
    monkeypatch.setenv(audit_key.ENV_KEY_FILE, str(missing))
    with session_factory() as db, pytest.raises(audit_key.AuditKeyError, match="DUNNING_AUDIT_KEY"):
        audit.verify(db)
    assert not missing.exists()

    monkeypatch.setenv(audit_key.ENV_KEY, "too short")
    with pytest.raises(audit_key.AuditKeyError, match="DUNNING_AUDIT_KEY must be at least 32"):
        audit_key.current()


def test_a_new_key_file_is_created_0600_and_kept(tmp_path, monkeypatch):
    monkeypatch.delenv(audit_key.ENV_KEY, raising=False)
    monkeypatch.setenv(audit_key.ENV_KEY_FILE, str(tmp_path / "audit_key"))
    first = audit_key.current()
    assert oct((tmp_path / "audit_key").stat().st_mode & 0o777) == "0o600"
    assert len(first) >= audit_key.MIN_KEY_LENGTH and audit_key.current() == first


def test_a_keyed_log_rewritten_as_legacy_entries_cannot_be_sealed_again(session_factory, database_url, tmp_path, monkeypatch, capsys):
    """Review of issue 14: drop the seal, rewrite every entry as an unkeyed
    SHA-256 chain, and `verify` asks for `seal`; sealing must refuse a log
    that a verify has checkpointed before, or it would launder the rewrite."""
    from compliance import audit_cli

    monkeypatch.setenv(audit_checkpoints.ENV_FILE, str(tmp_path / "checkpoints.jsonl"))
    with session_factory.begin() as db:  # a keyed global chain, as appended before migration 0020
        prev = audit.GENESIS_HASH
        for n in (1, 2):
            at, payload = datetime(2026, 10, n, tzinfo=timezone.utc), {"amount": f"{n}00.00"}
            digest = audit.keyed_entry_hash(audit_key.current(), prev, n, at, "L-A", "dunning-L-A", "payment", payload)
            db.add(AuditEntry(seq=n, at=at, loan_id="L-A", workflow_id="dunning-L-A", kind="payment", key=f"pay/{n}",
                              payload=audit.canonical(payload), prev_hash=prev, hash=digest, scheme=audit.KEYED))
            db.flush()
            prev = digest
        db.execute(update(AuditHead).values(seq=2, hash=prev, mac=audit.head_mac(audit_key.current(), 2, prev)))
    with session_factory() as db:
        assert audit_cli.verify_command(db, database_url) == 0  # checkpointed

    with session_factory.begin() as db:  # the rewrite, by someone without the key
        lift_append_only_guard(db)
        db.execute(text("UPDATE audit_log SET payload = replace(payload, '100.00', '0.01') WHERE seq = 1"))
        recompute_with_sha256(db, 1, audit.LEGACY, upto=2)
        db.execute(update(AuditHead).values(mac=None))
    with session_factory() as db:
        assert "not sealed" in audit.verify(db).problem
        assert audit_cli.seal_command(db, database_url) == 1
    assert "not sealed" in capsys.readouterr().out
    with session_factory() as db:
        assert not audit.verify(db).ok and db.scalar(select(AuditHead.mac)) is None
