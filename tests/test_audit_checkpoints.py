"""Per-loan audit chains and their signed checkpoints (issue 19, item 1),
against a real database (SQLite and PostgreSQL): each loan appends to a chain
of its own without waiting on the others; the checkpoint commits to the loan
heads changed since the last one with an RFC 6962 Merkle root, in the
database and in a file outside it; and `verify` still finds an edit, a
removal, a reordering, a cut, and a chain recomputed after an edit, without
the audit key and with it. Tamper scenarios act as the database's owner
would: the append-only triggers lifted first (tests/support/audit_tampering.py).
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import delete, select, text, update
from sqlalchemy.exc import OperationalError
from temporalio.testing import ActivityEnvironment

from activities import audit_checkpoint as checkpoint_activity
from activities.audit_checkpoint import AuditCheckpoints
from compliance import audit_checkpoints as cli_checkpoints
from compliance import audit_cli
from db import audit, audit_checkpoint, audit_key, merkle
from db.migrate import alembic_config, upgrade_to_head
from db.models import AuditCheckpoint, AuditCheckpointHead, AuditEntry, AuditHead, AuditLoanHead
from db.session import make_engine, make_session_factory
from tests.support.audit_tampering import lift_append_only_guard
from workflows import audit_checkpoint as checkpoint_workflow

pytestmark = pytest.mark.both_databases

# Fixed instants: nothing here reads the wall clock.
DAY = datetime(2026, 11, 5, 1, 30, tzinfo=timezone.utc)
FIRST_CHECKPOINT = datetime(2026, 11, 5, 2, 0, tzinfo=timezone.utc)
SECOND_CHECKPOINT = datetime(2026, 11, 5, 2, 5, tzinfo=timezone.utc)


def appended(session_factory, loan_id: str, *amounts: str) -> None:
    """Payments of `loan_id`, one transaction each, as the activities write them."""
    for amount in amounts:
        with session_factory.begin() as db:
            n = audit.head(db, loan_id)[0] + 1
            audit.append(db, "payment", loan_id, f"dunning-{loan_id}", {"amount": amount},
                         at=DAY + timedelta(minutes=n), key=f"{loan_id}/pay/{n}")


def checkpointed(session_factory, at: datetime = FIRST_CHECKPOINT) -> audit_checkpoint.Written:
    with session_factory.begin() as db:
        return audit_checkpoint.write(db, at, audit_key.current())


def verified(session_factory) -> audit.VerifyResult:
    with session_factory() as db:
        return audit.verify(db)


def chain(session_factory, loan_id: str) -> list[AuditEntry]:
    with session_factory() as db:
        return db.scalars(select(AuditEntry).where(AuditEntry.loan_id == loan_id).order_by(AuditEntry.loan_seq)).all()


def recompute_chain(db, loan_id: str, key: bytes | None) -> None:
    """Re-hash every entry of the loan's chain and its head, keyed with `key`
    (an insider holding the audit key), or with plain SHA-256 when None (all
    an attacker without it can do)."""
    prev = audit.GENESIS_HASH
    rows = db.scalars(select(AuditEntry).where(AuditEntry.loan_id == loan_id).order_by(AuditEntry.loan_seq)).all()
    for entry in rows:
        fields = (prev, entry.seq, entry.loan_seq, entry.at, entry.loan_id, entry.workflow_id, entry.kind,
                  json.loads(entry.payload))
        forged = audit.loan_entry_hash(key, *fields) if key else hashlib.sha256(audit._loan_hashed_text(*fields)).hexdigest()
        db.execute(update(AuditEntry).where(AuditEntry.seq == entry.seq).values(prev_hash=prev, hash=forged))
        prev = forged
    seal = audit.loan_head_mac(key, loan_id, len(rows), prev) if key else hashlib.sha256(prev.encode()).hexdigest()
    db.execute(update(AuditLoanHead).where(AuditLoanHead.loan_id == loan_id).values(seq=len(rows), hash=prev, mac=seal))


# ------------------------------------------------------------ Merkle root


def rfc6962_mth(leaves: list[bytes]) -> bytes:
    """RFC 6962 section 2.1, written out as the RFC states it (recursive), for the check."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\x01" + rfc6962_mth(leaves[:k]) + rfc6962_mth(leaves[k:])).digest()


# The Certificate Transparency reference implementation's test leaves and
# their roots for the first 1 to 8 of them (merkle_tree_test.cc).
CT_LEAVES = [bytes.fromhex(h) for h in (
    "", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f",
)]
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


@pytest.mark.sqlite_only
def test_the_merkle_root_is_rfc_6962s_on_its_known_vectors():
    assert merkle.root([]).hex() == hashlib.sha256(b"").hexdigest()
    for n, expected in enumerate(CT_ROOTS, start=1):
        assert rfc6962_mth(CT_LEAVES[:n]).hex() == expected  # the check itself holds
        assert merkle.root(CT_LEAVES[:n]).hex() == expected


@pytest.mark.sqlite_only
def test_the_merkle_root_matches_the_rfcs_recursion_for_every_size_up_to_70():
    leaves = [hashlib.sha256(str(i).encode()).digest()[: i % 7] for i in range(70)]
    for n in range(71):
        assert merkle.root(leaves[:n]) == rfc6962_mth(leaves[:n]), n


@pytest.mark.sqlite_only
def test_a_checkpoint_root_is_over_the_heads_sorted_by_loan_whatever_order_they_come_in():
    heads = [("L-2", 3, "c" * 64), ("L-1", 7, "a" * 64), ("none", 1, "b" * 64)]
    leaves = [audit.canonical(list(head)).encode() for head in sorted(heads)]
    assert audit_checkpoint.merkle_root(heads) == rfc6962_mth(leaves).hex()
    assert audit_checkpoint.merkle_root(list(reversed(heads))) == audit_checkpoint.merkle_root(heads)


# ------------------------------------------------------------ per-loan chains


def test_each_loan_has_a_chain_of_its_own_with_a_sealed_head(session_factory):
    appended(session_factory, "L-1", "100.00", "200.00")
    appended(session_factory, "L-2", "50.00")
    appended(session_factory, "L-1", "300.00")
    with session_factory.begin() as db:  # an entry about no single loan: a chain of its own too
        audit.append(db, "operator", "none", "", {"action": "opt_out"}, at=DAY)

    one = chain(session_factory, "L-1")
    assert [entry.loan_seq for entry in one] == [1, 2, 3]
    assert one[0].prev_hash == audit.GENESIS_HASH and one[1].prev_hash == one[0].hash and one[2].prev_hash == one[1].hash
    [two] = chain(session_factory, "L-2")
    assert two.loan_seq == 1 and two.prev_hash == audit.GENESIS_HASH
    with session_factory() as db:
        heads = {row.loan_id: row for row in db.scalars(select(AuditLoanHead))}
        assert db.scalar(select(AuditHead.seq)) == 0  # the global head is no longer moved
    assert set(heads) == {"L-1", "L-2", "none"}
    assert (heads["L-1"].seq, heads["L-1"].hash) == (3, one[2].hash)
    assert heads["L-1"].mac == audit.loan_head_mac(audit_key.current(), "L-1", 3, one[2].hash)

    result = verified(session_factory)
    assert result.ok and result.entries_checked == 5 and result.loans_checked == 3


def test_a_loans_head_row_removed_is_detected(session_factory):
    appended(session_factory, "L-1", "100.00")
    with session_factory.begin() as db:
        db.execute(delete(AuditLoanHead).where(AuditLoanHead.loan_id == "L-1"))

    result = verified(session_factory)
    assert not result.ok and result.loan_id == "L-1" and "its head row is missing" in result.problem


def test_a_loan_chain_recomputed_without_the_key_fails_at_its_first_entry(session_factory):
    appended(session_factory, "L-1", "100.00", "200.00")
    with session_factory.begin() as db:
        lift_append_only_guard(db)
        db.execute(text("UPDATE audit_log SET payload = replace(payload, '100.00', '1.00') WHERE loan_seq = 1"))
        recompute_chain(db, "L-1", key=None)

    result = verified(session_factory)
    assert not result.ok and result.first_bad_seq == 1 and "loan L-1: entry 1 was altered" in result.problem


def test_a_loan_head_sealed_without_the_key_is_detected(session_factory):
    appended(session_factory, "L-1", "100.00")
    with session_factory.begin() as db:
        db.execute(update(AuditLoanHead).values(mac=hashlib.sha256(b"forged").hexdigest()))

    result = verified(session_factory)
    assert not result.ok and "loan L-1: its head (entry 1) is not sealed with the audit key" in result.problem


def test_an_entry_moved_into_the_old_global_chain_is_detected(session_factory):
    appended(session_factory, "L-1", "100.00", "200.00")
    with session_factory.begin() as db:  # its loan_seq cleared: out of its loan's chain
        lift_append_only_guard(db)
        db.execute(text("UPDATE audit_log SET loan_seq = NULL WHERE seq = 2"))

    result = verified(session_factory)
    assert not result.ok and result.first_bad_seq == 2 and "entry 2 was altered: it is in no loan's chain" in result.problem


def test_an_entry_moved_to_another_loans_chain_is_detected(session_factory):
    appended(session_factory, "L-1", "100.00", "200.00")
    appended(session_factory, "L-2", "50.00")
    with session_factory.begin() as db:
        lift_append_only_guard(db)
        db.execute(text("UPDATE audit_log SET loan_id = 'L-2', loan_seq = 2 WHERE seq = 2"))

    result = verified(session_factory)
    assert not result.ok and result.first_bad_seq == 2


# ------------------------------------------------------------ concurrency


@pytest.mark.parametrize("database_backend", ["postgresql"], indirect=True)
def test_two_loans_appending_in_open_transactions_do_not_wait_on_each_other(session_factory):
    """Loan A's append holds its transaction open; loan B's append, under a
    lock_timeout, still commits at once. The control: a second append for
    loan A does wait, and its lock_timeout ends it."""
    appended(session_factory, "L-A", "1.00")  # both loans already have their head rows
    appended(session_factory, "L-B", "1.00")
    holder = session_factory()
    try:
        holder.begin()
        audit.append(holder, "payment", "L-A", "dunning-L-A", {"amount": "2.00"}, at=DAY, key="L-A/held")

        with session_factory.begin() as other:
            other.execute(text("SET LOCAL lock_timeout = '2s'"))
            audit.append(other, "payment", "L-B", "dunning-L-B", {"amount": "2.00"}, at=DAY, key="L-B/2")
        with session_factory.begin() as first_append_of_new_loan:
            first_append_of_new_loan.execute(text("SET LOCAL lock_timeout = '2s'"))
            audit.append(first_append_of_new_loan, "payment", "L-C", "dunning-L-C", {"amount": "1.00"}, at=DAY)

        with pytest.raises(OperationalError, match="lock timeout"):
            with session_factory.begin() as same_loan:
                same_loan.execute(text("SET LOCAL lock_timeout = '500ms'"))
                audit.append(same_loan, "payment", "L-A", "dunning-L-A", {"amount": "3.00"}, at=DAY)
        holder.commit()
    finally:
        holder.close()

    assert [entry.loan_seq for entry in chain(session_factory, "L-A")] == [1, 2]
    assert [entry.loan_seq for entry in chain(session_factory, "L-B")] == [1, 2]
    assert verified(session_factory).ok


# ------------------------------------------------------------ checkpoints


def test_a_checkpoint_commits_to_the_heads_changed_since_the_last_one(session_factory):
    appended(session_factory, "L-1", "100.00", "200.00")
    appended(session_factory, "L-2", "50.00")
    first = checkpointed(session_factory).checkpoint
    with session_factory() as db:
        heads = [(row.loan_id, row.seq, row.hash) for row in db.scalars(select(AuditLoanHead))]
    assert first.number == 1 and first.prev_hash == audit.GENESIS_HASH and first.size == 2
    assert first.root == audit_checkpoint.merkle_root(heads)
    assert first.signature == audit_checkpoint.signature(audit_key.current(), first.hash)

    assert checkpointed(session_factory, SECOND_CHECKPOINT).checkpoint is None  # nothing changed since

    appended(session_factory, "L-2", "60.00")
    second = checkpointed(session_factory, SECOND_CHECKPOINT).checkpoint
    [l2] = [head for head in heads if head[0] == "L-2"]
    [new_l2] = [entry for entry in chain(session_factory, "L-2") if entry.loan_seq == 2]
    assert second.number == 2 and second.prev_hash == first.hash and second.size == 1
    assert second.root == audit_checkpoint.merkle_root([("L-2", 2, new_l2.hash)]) != audit_checkpoint.merkle_root([l2])
    with session_factory() as db:
        assert db.execute(select(AuditCheckpointHead.loan_id, AuditCheckpointHead.seq)
                          .where(AuditCheckpointHead.checkpoint == 2)).all() == [("L-2", 2)]

    result = verified(session_factory)
    assert result.ok and result.checkpoints_checked == 2 and result.loans_checked == 2


def test_a_head_whose_seal_does_not_hold_is_left_out_of_the_checkpoint(session_factory):
    appended(session_factory, "L-1", "100.00")
    appended(session_factory, "L-2", "50.00")
    with session_factory.begin() as db:
        db.execute(update(AuditLoanHead).where(AuditLoanHead.loan_id == "L-2").values(mac="0" * 64))

    written = checkpointed(session_factory)
    assert written.checkpoint.size == 1 and written.unsealed == ("L-2",)


def test_entries_cut_off_a_loan_with_its_head_rolled_back_fail_against_the_checkpoint(session_factory):
    appended(session_factory, "L-1", "100.00", "200.00")
    with session_factory() as db:
        old_head = db.execute(select(AuditLoanHead.seq, AuditLoanHead.hash, AuditLoanHead.mac)).one()
    appended(session_factory, "L-1", "300.00", "400.00")
    checkpointed(session_factory)
    with session_factory.begin() as db:  # entries 3 and 4 cut off; the head's seal copied when it was current
        lift_append_only_guard(db)
        db.execute(delete(AuditEntry).where(AuditEntry.loan_seq > 2))
        db.execute(update(AuditLoanHead).values(seq=old_head.seq, hash=old_head.hash, mac=old_head.mac))

    result = verified(session_factory)
    assert not result.ok and result.loan_id == "L-1"
    assert "loan L-1: entries 3 to 4 were cut off its chain: checkpoint 1 committed to its entry 4" in result.problem


def test_a_loans_whole_chain_removed_with_its_head_fails_against_the_checkpoint(session_factory):
    appended(session_factory, "L-1", "100.00")
    appended(session_factory, "L-2", "50.00", "60.00")
    checkpointed(session_factory)
    with session_factory.begin() as db:
        lift_append_only_guard(db)
        db.execute(delete(AuditEntry).where(AuditEntry.loan_id == "L-2"))
        db.execute(delete(AuditLoanHead).where(AuditLoanHead.loan_id == "L-2"))

    result = verified(session_factory)
    assert not result.ok and result.loan_id == "L-2"
    assert "loan L-2: its whole chain was removed: checkpoint 1 committed to its entry 2" in result.problem


def test_a_chain_recomputed_with_the_key_after_an_edit_fails_against_the_checkpoint(session_factory):
    appended(session_factory, "L-1", "100.00", "200.00", "300.00")
    checkpointed(session_factory)
    with session_factory.begin() as db:  # an insider with the audit key: every hash and the head's seal hold again
        lift_append_only_guard(db)
        db.execute(text("UPDATE audit_log SET payload = replace(payload, '200.00', '2.00') WHERE loan_seq = 2"))
        recompute_chain(db, "L-1", key=audit_key.current())

    result = verified(session_factory)
    assert not result.ok and result.loan_id == "L-1"
    assert "loan L-1: entry 3 is not the one checkpoint 1 committed to" in result.problem


def test_checkpoints_re_signed_with_the_key_fail_against_the_file_outside(session_factory, tmp_path):
    outside = tmp_path / "outside.jsonl"
    appended(session_factory, "L-1", "100.00", "200.00")
    checkpointed(session_factory)
    with session_factory() as db:
        assert audit_checkpoint.export(db, outside) == 1
    with session_factory.begin() as db:  # the insider rewrites the chain and the checkpoint to match it
        lift_append_only_guard(db)
        db.execute(text("UPDATE audit_log SET payload = replace(payload, '200.00', '2.00') WHERE loan_seq = 2"))
        recompute_chain(db, "L-1", key=audit_key.current())
        db.execute(delete(AuditCheckpointHead))
        db.execute(delete(AuditCheckpoint))
    checkpointed(session_factory)  # checkpoint 1 again, over the rewritten head

    with session_factory() as db:
        assert audit.verify(db).ok  # the database agrees with itself ...
        problem = audit_checkpoint.check_outside(db, outside)
    assert problem is not None and "checkpoint 1 in the database is not the one written outside it" in problem


@pytest.mark.parametrize("tamper, found", [
    ("UPDATE audit_checkpoints SET root = '" + "ab" * 32 + "'", "checkpoint 1 was altered"),
    ("UPDATE audit_checkpoints SET signature = '" + "ab" * 32 + "'", "checkpoint 1 is not signed with the audit key"),
    ("UPDATE audit_checkpoint_heads SET seq = 1 WHERE checkpoint = 1", "checkpoint 1's heads were altered"),
    ("DELETE FROM audit_checkpoint_heads WHERE checkpoint = 1 AND loan_id = 'L-2'", "checkpoint 1's heads were altered"),
], ids=["root", "signature", "a-head-moved-back", "a-head-removed"])
def test_a_checkpoint_altered_in_the_database_fails_verify(session_factory, tamper, found):
    appended(session_factory, "L-1", "100.00", "200.00")
    appended(session_factory, "L-2", "50.00")
    checkpointed(session_factory)
    with session_factory.begin() as db:
        db.execute(text(tamper))

    result = verified(session_factory)
    assert not result.ok and found in result.problem


def test_a_checkpoint_removed_from_the_middle_breaks_the_chain_of_checkpoints(session_factory):
    for n, at in enumerate((FIRST_CHECKPOINT, SECOND_CHECKPOINT, SECOND_CHECKPOINT + timedelta(minutes=5)), start=1):
        appended(session_factory, "L-1", f"{n}.00")
        checkpointed(session_factory, at)
    with session_factory.begin() as db:
        db.execute(delete(AuditCheckpointHead).where(AuditCheckpointHead.checkpoint == 2))
        db.execute(delete(AuditCheckpoint).where(AuditCheckpoint.number == 2))

    result = verified(session_factory)
    assert not result.ok and "checkpoint 2 is missing (removed)" in result.problem


# ------------------------------------------------------------ the job and the file outside


def test_the_activity_writes_a_checkpoint_and_appends_it_outside(session_factory, tmp_path):
    outside = tmp_path / "outside" / "checkpoints.jsonl"
    job = AuditCheckpoints(session_factory, outside, clock=lambda: FIRST_CHECKPOINT)
    env = ActivityEnvironment()
    appended(session_factory, "L-1", "100.00")
    appended(session_factory, "L-2", "50.00")

    done = env.run(job.write_audit_checkpoint)
    again = env.run(job.write_audit_checkpoint)

    assert done["checkpoint"] == 1 and done["heads"] == 2 and done["exported"] == 1 and done["unsealed"] == 0
    assert again == {"checkpoint": 0, "heads": 0, "root": "", "exported": 0, "unsealed": 0}
    assert "L-1" not in json.dumps(done)  # counts and a root: nothing of a loan
    [line] = audit_checkpoint.read_outside(outside)
    assert line["checkpoint"] == 1 and line["root"] == done["root"] and line["at"].startswith("2026-11-05T02:00")
    assert oct(outside.stat().st_mode & 0o777) == "0o600"
    with session_factory() as db:
        assert audit_checkpoint.check_outside(db, outside) is None


def test_a_checkpoint_whose_export_was_cut_short_is_exported_by_the_next_run(session_factory, tmp_path):
    outside = tmp_path / "checkpoints.jsonl"
    appended(session_factory, "L-1", "100.00")
    checkpointed(session_factory)  # committed; the process died before writing the file
    appended(session_factory, "L-1", "200.00")

    done = checkpoint_activity.write_checkpoint(session_factory, outside, SECOND_CHECKPOINT)

    assert done["checkpoint"] == 2 and done["exported"] == 2
    assert [line["checkpoint"] for line in audit_checkpoint.read_outside(outside)] == [1, 2]


@pytest.mark.sqlite_only
def test_the_workflow_calls_the_activity_by_its_name():
    assert checkpoint_workflow.WRITE_AUDIT_CHECKPOINT == checkpoint_activity.WRITE_AUDIT_CHECKPOINT
    assert AuditCheckpoints(None, Path("x")).registered()[0].__temporal_activity_definition.name == (
        checkpoint_activity.WRITE_AUDIT_CHECKPOINT
    )


def test_the_cli_checkpoints_verifies_against_the_file_and_catches_a_rollback(
    session_factory, database_url, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv(cli_checkpoints.ENV_FILE, str(tmp_path / "checkpoints.jsonl"))
    appended(session_factory, "L-1", "100.00", "200.00")
    assert audit_cli.checkpoint_command(session_factory, database_url) == 0
    assert "audit checkpoint 1: 1 loan heads" in capsys.readouterr().out
    with session_factory() as db:
        assert audit_cli.verify_command(db, database_url) == 0
    assert "1 loan chains; 1 signed checkpoints" in capsys.readouterr().out

    with session_factory.begin() as db:  # the database rolled back to before the checkpoint
        db.execute(delete(AuditCheckpointHead))
        db.execute(delete(AuditCheckpoint))
    with session_factory() as db:
        assert audit_cli.verify_command(db, database_url) == 1
    shown = capsys.readouterr().out
    assert "audit log BROKEN" in shown and "checkpoint 1" in shown and "rolled back" in shown


# ------------------------------------------------------------ migration 0020


def test_migration_0020_keeps_the_global_chain_verifiable_and_new_entries_go_per_loan(empty_database_url):
    """A log written before 0020 (one keyed global chain, its sealed head)
    verifies after it as before; new entries start their loans' chains, with
    ids after the old ones; an edit of the old chain is still caught."""
    url = empty_database_url
    command.upgrade(alembic_config(url), "0019")
    key = audit_key.current()
    engine = make_engine(url)
    with engine.begin() as connection:  # what db/audit.py appended before 0020
        prev = audit.GENESIS_HASH
        for seq in (1, 2, 3):
            at, payload = DAY + timedelta(minutes=seq), {"amount": f"{seq}.00"}
            digest = audit.keyed_entry_hash(key, prev, seq, at, "L-OLD", "dunning-L-OLD", "payment", payload)
            # Only the columns of 0019's table: the insert names no other.
            connection.execute(AuditEntry.__table__.insert().values(
                seq=seq, at=at, loan_id="L-OLD", workflow_id="dunning-L-OLD", kind="payment", key=f"old/{seq}",
                payload=audit.canonical(payload), prev_hash=prev, hash=digest, scheme=audit.KEYED,
            ))
            prev = digest
        connection.execute(text("UPDATE audit_head SET seq = 3, hash = :hash, mac = :mac"),
                           {"hash": prev, "mac": audit.head_mac(key, 3, prev)})

    upgrade_to_head(url)
    sessions = make_session_factory(engine)
    with sessions() as db:
        before = audit.verify(db)
    assert before.ok and before.global_entries == 3 and before.loans_checked == 0 and before.head_seq == 3

    appended(sessions, "L-OLD", "4.00")
    appended(sessions, "L-NEW", "5.00")
    with sessions() as db:
        after = audit.verify(db)
        new = db.scalars(select(AuditEntry).where(AuditEntry.loan_seq.is_not(None)).order_by(AuditEntry.seq)).all()
    assert after.ok and after.entries_checked == 5 and after.global_entries == 3 and after.loans_checked == 2
    assert [(entry.loan_id, entry.seq, entry.loan_seq) for entry in new] == [("L-OLD", 4, 1), ("L-NEW", 5, 1)]

    with sessions.begin() as db:
        lift_append_only_guard(db)
        db.execute(text("UPDATE audit_log SET payload = replace(payload, '2.00', '9.00') WHERE seq = 2"))
    with sessions() as db:
        edited = audit.verify(db)
    assert not edited.ok and edited.first_bad_seq == 2 and "entry 2 was altered" in edited.problem
