"""The keyed, hash-chained audit log: append, verify, seal.

Every contact, compliance decision, payment, stage change, operator action,
complaint and closing is appended, inside the transaction that writes the
record it describes, as one row of `audit_log`. Each loan's entries form a
chain of their own (issue 19: concurrent loans never wait on one row):

    hash = HMAC-SHA256(key, prev_hash + canonical({"seq", "loan_seq", "at", "loan_id", "workflow_id", "kind", "payload"}))

where `key` is the audit key, kept outside the database (db/audit_key.py:
DUNNING_AUDIT_KEY or a 0600 key file), `canonical` is JSON with sorted keys,
no spaces and UTF-8 text, `loan_seq` the entry's place in its loan's chain,
`prev_hash` the hash of the loan's entry loan_seq - 1 (GENESIS_HASH for its
first), and `seq` the entry's id in the whole log. Entries about no single
loan (`none`, `borrower-...`) are a chain of their own under that loan_id.
`audit_loan_heads` holds each loan's last loan_seq and hash with `mac`, the
HMAC of the three under the key: an append locks its own loan's row only.

Entries are never updated or deleted (on PostgreSQL and SQLite a trigger
refuses it: migration 0007), so `verify` can walk each chain in order and
name the first entry that was altered (its hash no longer matches: edited, or
re-hashed by someone without the key), removed (a loan_seq missing, or a
prev_hash that is not the previous entry's hash) or reordered; then compare
each loan's head with its chain's end (entries cut off the end show), and its
seal (a chain recomputed without the key fails there). Entries cut off a
loan's end together with its head rolled back to an old one (whose `mac` the
attacker saw), or a chain recomputed by a holder of the key, are caught by the
signed checkpoints (db/audit_checkpoint.py): each commits to the loan heads
of its time, and verify checks that every one of them is still in its chain.

Before migration 0020 the log was one global chain (no loan_seq; `seq`
numbered it and `prev_hash` was entry seq - 1's), headed by the one-row
`audit_head`. Those entries are kept and verified as then, against that head,
frozen since; the ones written before the chain was keyed (scheme `sha256`,
plain SHA-256) can only be its prefix: the first keyed entry covers the last
legacy entry's hash, so the prefix cannot be recomputed either.

Payloads carry ids, codes and money only: no names, addresses or message
bodies (a contact carries the SHA-256 of its message, `message_digest`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime, timezone
from decimal import Decimal
from functools import partial
from typing import Any

from sqlalchemy import and_, bindparam, exists, func, insert, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from db import audit_key
from db.models import AuditCheckpointHead, AuditEntry, AuditHead, AuditLoanHead

GENESIS_HASH = "0" * 64
# How an entry's hash was made: keyed (every entry appended now), or plain
# SHA-256 (entries written before migration 0007, verified the old way).
KEYED = "hmac-sha256"
LEGACY = "sha256"
SCHEMES = frozenset({KEYED, LEGACY})
HEAD_ID = 1
_HEAD = AuditHead.__table__
_HEADS = AuditLoanHead.__table__
_LOG = AuditEntry.__table__
_CHECKPOINTED = AuditCheckpointHead.__table__
# PostgreSQL's source of entry ids (migration 0020): a sequence hands out
# numbers without a row lock, so it is no turn to wait for.
ID_SEQUENCE = "audit_log_seq"
# Loans whose heads and checkpointed heads verify fetches in one query.
LOANS_PER_QUERY = 500
KINDS = frozenset({
    "contact", "decision", "payment", "stage", "operator", "complaint", "closing",
    "arrangement", "visit", "legal",  # plans and promises, field visits, legal outcomes
})


# The append's statements, built once: SQLAlchemy then reuses their compiled
# form without building and keying them again on every append (a statement
# built per call cost about as much CPU as running it on SQLite).
_INSERT_ENTRIES = insert(_LOG)
_MOVE_HEAD = (
    update(_HEADS).where(_HEADS.c.loan_id == bindparam("head_loan_id")).values(seq=_HEADS.c.seq + bindparam("count"))
    .returning(_HEADS.c.seq, _HEADS.c.hash)
)
_SEAL_HEAD = update(_HEADS).where(_HEADS.c.loan_id == bindparam("head_loan_id")).values(
    hash=bindparam("new_hash"), mac=bindparam("new_mac"), updated_at=bindparam("now"))
_LAST_ID = select(func.coalesce(func.max(_LOG.c.seq), 0))
_KEYS_WRITTEN = select(_LOG.c.key).where(_LOG.c.key.in_(bindparam("keys", expanding=True)))
_NEXT_ID = text(f"SELECT nextval('{ID_SEQUENCE}')")
_NEXT_IDS = text(f"SELECT nextval('{ID_SEQUENCE}') FROM generate_series(1, :count)")

def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return _instant(value)
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not allowed in an audit payload")


def canonical(value: Any) -> str:
    """The one JSON text of `value`: sorted keys, no spaces, UTF-8 kept."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_default
    )


def _instant(at: datetime) -> str:
    if at.tzinfo is None:
        raise ValueError("naive datetime in the audit log")
    return at.astimezone(timezone.utc).isoformat(timespec="microseconds")


def _hashed_text(prev_hash: str, seq: int, at: datetime, loan_id: str, workflow_id: str, kind: str, payload: Any) -> bytes:
    body = canonical(
        {"seq": seq, "at": _instant(at), "loan_id": loan_id, "workflow_id": workflow_id, "kind": kind, "payload": payload}
    )
    return (prev_hash + body).encode("utf-8")


def entry_hash(prev_hash: str, seq: int, at: datetime, loan_id: str, workflow_id: str, kind: str, payload: Any) -> str:
    """A legacy (`sha256`) entry's hash: anyone can compute it, so it proves
    nothing against whoever can write the database. Kept to verify old entries."""
    return hashlib.sha256(_hashed_text(prev_hash, seq, at, loan_id, workflow_id, kind, payload)).hexdigest()


def keyed_entry_hash(
    key: bytes, prev_hash: str, seq: int, at: datetime, loan_id: str, workflow_id: str, kind: str, payload: Any
) -> str:
    """A keyed (`hmac-sha256`) entry's hash: only the holder of the audit key can compute it."""
    return hmac.new(key, _hashed_text(prev_hash, seq, at, loan_id, workflow_id, kind, payload), hashlib.sha256).hexdigest()


def head_mac(key: bytes, seq: int, hash_: str) -> str:
    """The head's seal: binds the log's last seq and hash to the key."""
    return hmac.new(key, f"audit_head:{seq}:{hash_}".encode(), hashlib.sha256).hexdigest()


def _loan_hashed_text(
    prev_hash: str, seq: int, loan_seq: int, at: datetime, loan_id: str, workflow_id: str, kind: str, payload: Any
) -> bytes:
    # `loan_seq` in the text sets a loan chain's entries apart from the global
    # chain's: neither kind of hash can pass for the other.
    body = canonical({
        "seq": seq, "loan_seq": loan_seq, "at": _instant(at), "loan_id": loan_id, "workflow_id": workflow_id,
        "kind": kind, "payload": payload,
    })
    return (prev_hash + body).encode("utf-8")


def loan_entry_hash(
    key: bytes, prev_hash: str, seq: int, loan_seq: int, at: datetime, loan_id: str, workflow_id: str, kind: str,
    payload: Any,
) -> str:
    """A loan chain entry's hash (keyed): it covers the entry's id, its place
    in the loan's chain, the previous entry's hash and everything it says."""
    text_ = _loan_hashed_text(prev_hash, seq, loan_seq, at, loan_id, workflow_id, kind, payload)
    return hmac.new(key, text_, hashlib.sha256).hexdigest()


def loan_head_mac(key: bytes, loan_id: str, seq: int, hash_: str) -> str:
    """A loan head's seal: binds the loan, its chain's last loan_seq and hash to the key."""
    return hmac.new(key, ("audit_loan_head:" + canonical([loan_id, seq, hash_])).encode(), hashlib.sha256).hexdigest()


def message_digest(subject: str | None, text: str | None, html: str | None) -> str:
    """The SHA-256 of a rendered message (subject, text and HTML), so the log
    proves what was sent without holding the words or the name in them."""
    return hashlib.sha256(canonical({"subject": subject or "", "text": text or "", "html": html or ""}).encode()).hexdigest()


@dataclass(frozen=True)
class NewEntry:
    """One entry for `append_many`: its kind, payload, moment and key (None: no key)."""

    kind: str
    payload: Mapping[str, Any]
    at: datetime | None = None
    key: str | None = None


def append(
    session: Session,
    kind: str,
    loan_id: str,
    workflow_id: str,
    payload: Mapping[str, Any],
    at: datetime | None = None,
    *,
    key: str | None = None,
    secret: bytes | None = None,
) -> AuditEntry:
    """Append one entry to `loan_id`'s chain in the caller's transaction (it
    commits or rolls back with the record it describes) and return it. With
    `key`, an entry already written under that key is returned instead and
    nothing is appended: a retried activity appends once. (A new entry comes
    back as a copy of the row written, not attached to the session.)

    Appends for one loan take turns on that loan's `audit_loan_heads` row:
    the UPDATE that moves it on holds a row lock on PostgreSQL (a concurrent
    append for the same loan waits, then reads the new head) and the
    database's write lock on SQLite, until the caller commits. Appends for
    other loans lock other rows and never wait on this one.

    The entry is keyed with `secret`, by default the audit key
    (db/audit_key.py)."""
    if kind not in KINDS:
        raise ValueError(f"audit kind {kind!r} is not one of {', '.join(sorted(KINDS))}")
    if key is not None:
        existing = session.scalar(select(AuditEntry).where(AuditEntry.key == key))
        if existing is not None:
            return existing
    # The row as written (not loaded back: one statement less on every append).
    return AuditEntry(**_write_rows(session, loan_id, workflow_id, [NewEntry(kind, payload, at, key)], secret)[0])


def append_many(
    session: Session, loan_id: str, workflow_id: str, entries: list[NewEntry], *, secret: bytes | None = None,
) -> list[bool]:
    """Append `entries` to `loan_id`'s chain, in their order, in the caller's
    transaction, as `append` would one by one, but with one turn on the
    loan's head and one INSERT: a loan's closing writes its payments' entries
    and its own this way (activities/records.py). An entry whose key was
    written already (by an earlier attempt) is skipped. True for each entry
    appended."""
    for entry in entries:
        if entry.kind not in KINDS:
            raise ValueError(f"audit kind {entry.kind!r} is not one of {', '.join(sorted(KINDS))}")
    keys = [entry.key for entry in entries if entry.key is not None]
    seen = set(session.scalars(_KEYS_WRITTEN, {"keys": keys})) if keys else set()
    appended: list[bool] = []
    new: list[NewEntry] = []
    for entry in entries:
        fresh = entry.key is None or entry.key not in seen
        if entry.key is not None:
            seen.add(entry.key)  # the same key twice in one batch: the first only
        appended.append(fresh)
        if fresh:
            new.append(entry)
    if new:
        _write_rows(session, loan_id, workflow_id, new, secret)
    return appended


def _write_rows(
    session: Session, loan_id: str, workflow_id: str, entries: list[NewEntry], secret: bytes | None,
) -> list[dict]:
    """Chain `entries` onto the loan's head and insert them (Core, no ORM
    flush): the head moved on by their number, then sealed at the last."""
    secret = secret if secret is not None else audit_key.current()
    last_seq, prev_hash = _take_turn(session, loan_id, len(entries))
    ids = _next_ids(session, len(entries))
    now = datetime.now(timezone.utc)
    rows = []
    for offset, (entry, seq) in enumerate(zip(entries, ids)):
        loan_seq = last_seq - len(entries) + 1 + offset
        at = (entry.at or now).astimezone(timezone.utc)
        # Through JSON and back: the hash covers exactly what verify will read.
        payload_text = canonical(dict(entry.payload))
        digest = loan_entry_hash(secret, prev_hash, seq, loan_seq, at, loan_id, workflow_id, entry.kind,
                                 json.loads(payload_text))
        rows.append({
            "seq": seq, "loan_seq": loan_seq, "at": at, "loan_id": loan_id, "workflow_id": workflow_id,
            "kind": entry.kind, "key": entry.key, "payload": payload_text, "prev_hash": prev_hash,
            "scheme": KEYED, "hash": digest,
        })
        prev_hash = digest
    session.execute(_INSERT_ENTRIES, rows)
    session.execute(_SEAL_HEAD, {"head_loan_id": loan_id, "new_hash": prev_hash,
                                 "new_mac": loan_head_mac(secret, loan_id, last_seq, prev_hash), "now": now})
    return rows


def _take_turn(session: Session, loan_id: str, count: int = 1) -> tuple[int, str]:
    """Move the loan's head on by `count`, locking its row until the caller
    commits: the last new entry's loan_seq and the hash the first follows."""
    turn = {"head_loan_id": loan_id, "count": count}
    moved = session.execute(_MOVE_HEAD, turn).first()
    if moved is None:
        # The loan's first entry: its head row starts before the genesis. Two
        # first appends at once insert it once (the second waits for the first
        # to commit, then inserts nothing) and then take turns on it.
        dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
        session.execute(
            dialect.insert(_HEADS)
            .values(loan_id=loan_id, seq=0, hash=GENESIS_HASH, mac=None, updated_at=datetime.now(timezone.utc))
            .on_conflict_do_nothing(index_elements=["loan_id"])
        )
        moved = session.execute(_MOVE_HEAD, turn).one()
    return moved.seq, moved.hash


def _next_ids(session: Session, count: int = 1) -> list[int]:
    """The new entries' ids in the whole log. PostgreSQL's sequence gives
    them without a lock; on SQLite the caller already holds the database's
    write lock (taken by _take_turn), so the next numbers are its alone."""
    if session.get_bind().dialect.name == "postgresql":
        if count == 1:
            return [int(session.scalar(_NEXT_ID))]
        return sorted(int(n) for n in session.scalars(_NEXT_IDS, {"count": count}))
    first = int(session.scalar(_LAST_ID) or 0) + 1
    return list(range(first, first + count))


def has_key(session: Session, key: str) -> bool:
    """An entry was appended under `key` (by an earlier attempt of an activity)."""
    return session.scalar(select(AuditEntry.seq).where(AuditEntry.key == key)) is not None


def head(session: Session, loan_id: str) -> tuple[int, str]:
    """The last loan_seq and hash of `loan_id`'s chain (0 and GENESIS_HASH before its first entry)."""
    row = session.execute(select(_HEADS.c.seq, _HEADS.c.hash).where(_HEADS.c.loan_id == loan_id)).first()
    return (row.seq, row.hash) if row else (0, GENESIS_HASH)


def global_head(session: Session) -> tuple[int, str]:
    """The last seq and hash of the global chain written before migration 0020."""
    row = session.execute(select(AuditHead.seq, AuditHead.hash).where(AuditHead.id == HEAD_ID)).first()
    return (row.seq, row.hash) if row else (0, GENESIS_HASH)


def payload_of(entry: AuditEntry) -> dict:
    return json.loads(entry.payload)


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    entries_checked: int
    first_bad_seq: int | None = None  # the id (audit_log.seq) of the first entry that does not hold
    problem: str = ""
    head_seq: int = 0  # the global chain's (before migration 0020)
    head_hash: str = GENESIS_HASH
    legacy_entries: int = 0  # the unkeyed prefix (written before the chain was keyed)
    global_entries: int = 0  # entries of the global chain written before migration 0020
    loans_checked: int = 0  # loan chains whose every entry, head and checkpointed head held
    checkpoints_checked: int = 0
    loan_id: str | None = None  # the loan whose chain does not hold


class _Secret:
    """The audit key, read only when an entry or seal needs it: an empty or
    legacy log verifies without one."""

    def __init__(self, given: bytes | None) -> None:
        self._value = given

    def __call__(self) -> bytes:
        if self._value is None:
            self._value = audit_key.current(create=False)
        return self._value


def verify(session: Session, batch_size: int = 1000, *, secret: bytes | None = None) -> VerifyResult:
    """Check the whole log; stop at the first thing that does not hold,
    naming it: the global chain written before migration 0020 (seq by seq,
    then its head's seal), the signed checkpoints (db/audit_checkpoint.py:
    their chain, signatures and Merkle roots), then every loan's chain (entry
    by entry, then its head and seal, then each head a checkpoint committed
    to). Keyed entries are checked with `secret` (by default the audit key,
    read only when needed). Raises audit_key.AuditKeyError when a key is
    needed and none is configured."""
    from db import audit_checkpoint  # it builds on this module's hashing

    key = _Secret(secret)
    result = _verify_global_chain(session, batch_size, secret=key)
    if not result.ok:
        return result
    problem, checkpoints = audit_checkpoint.verify_rows(session, key)
    if problem:
        return replace(result, ok=False, problem=problem, checkpoints_checked=checkpoints)
    result = replace(result, checkpoints_checked=checkpoints)
    return _verify_loan_chains(session, batch_size, key, result)

def _verify_global_chain(session: Session, batch_size: int, *, secret: Callable[[], bytes]) -> VerifyResult:
    """Walk the global chain written before migration 0020 in seq order, as
    verify did then; stop at the first entry that does not hold, naming it;
    then its head's seal. An entry of a loan chain moved into it (its
    loan_seq cleared) shows as one past its frozen head."""
    expected_seq, prev_hash, checked, legacy = 1, GENESIS_HASH, 0, 0
    head_row = session.execute(select(AuditHead.seq, AuditHead.hash, AuditHead.mac).where(AuditHead.id == HEAD_ID)).first()

    def bad(seq: int, problem: str) -> VerifyResult:
        return VerifyResult(False, checked, seq, problem, expected_seq - 1, prev_hash, legacy, checked)

    last_seq = 0
    while True:
        # Plain rows, not ORM objects: nothing piles up in the caller's session.
        chosen = select(_LOG).where(_LOG.c.loan_seq.is_(None), _LOG.c.seq > last_seq)
        rows = session.execute(chosen.order_by(_LOG.c.seq).limit(batch_size)).all()
        if not rows:
            break
        for row in rows:
            last_seq = row.seq
            if head_row is not None and row.seq > head_row.seq:
                return bad(
                    row.seq,
                    f"entry {row.seq} was altered: it is in no loan's chain (its loan_seq is empty), and past the "
                    f"head of the global chain written before migration 0020 (entry {head_row.seq})",
                )
            if row.seq != expected_seq:
                missing = (
                    f"entry {expected_seq} is missing"
                    if row.seq == expected_seq + 1
                    else f"entries {expected_seq} to {row.seq - 1} are missing"
                )
                return bad(expected_seq, f"{missing} (removed): entry {row.seq} follows entry {expected_seq - 1}")
            if row.prev_hash != prev_hash:
                return bad(
                    row.seq,
                    f"entry {row.seq} does not follow entry {row.seq - 1}: its prev_hash is not that entry's hash "
                    f"(an entry before it was removed, reordered, or altered and re-hashed)",
                )
            if row.scheme not in SCHEMES:
                return bad(row.seq, f"entry {row.seq} was altered: its scheme {str(row.scheme)[:32]!r} is unknown")
            if row.scheme == LEGACY and checked > legacy:
                return bad(
                    row.seq,
                    f"entry {row.seq} was altered: an unkeyed (sha256) entry after keyed ones "
                    "(the chain was recomputed without the audit key)",
                )
            key = secret() if row.scheme == KEYED else b""  # outside the try: a missing key is no bad entry
            try:
                payload = json.loads(row.payload)
                fields = (prev_hash, row.seq, row.at, row.loan_id, row.workflow_id, row.kind, payload)
                recomputed = keyed_entry_hash(key, *fields) if row.scheme == KEYED else entry_hash(*fields)
            except (ValueError, TypeError) as error:
                return bad(row.seq, f"entry {row.seq} was altered: its payload is not valid JSON ({error})")
            if not hmac.compare_digest(recomputed, str(row.hash)):
                how = (
                    "its content does not match its keyed hash (edited, re-hashed without the audit key, "
                    "or the audit key is not the one it was written with)"
                    if row.scheme == KEYED
                    else "its content does not match its hash"
                )
                return bad(row.seq, f"entry {row.seq} was altered: {how}")
            if row.payload != canonical(payload):
                return bad(row.seq, f"entry {row.seq} was altered: its payload text is not the one that was hashed")
            checked += 1
            legacy += row.scheme == LEGACY
            expected_seq, prev_hash = row.seq + 1, row.hash

    last = expected_seq - 1

    def broken(seq: int | None, problem: str) -> VerifyResult:
        return VerifyResult(False, checked, seq, problem, last, prev_hash, legacy, checked)

    if head_row is None:
        if last:
            return broken(None, "the audit_head row is missing")
    elif head_row.seq > last:
        return broken(
            last + 1,
            f"entries {last + 1} to {head_row.seq} were removed from the end of the log (the head is at {head_row.seq})",
        )
    elif head_row.seq < last or head_row.hash != prev_hash:
        return broken(
            min(head_row.seq + 1, last),
            f"the log's end (entry {last}) is not the recorded head (entry {head_row.seq}): "
            "entries were written around append() or the last entry was replaced",
        )
    elif last and head_row.mac is None and legacy < checked:
        return broken(None, "the head's seal was removed: a keyed log's head is always sealed")
    elif last and head_row.mac is None:
        return broken(
            None,
            "the head is not sealed: the log holds only entries written before the chain was keyed; "
            "check its head against a published one, then run `python -m compliance.audit_cli seal`",
        )
    elif last and not hmac.compare_digest(
        str(head_row.mac), head_mac(secret(), last, prev_hash)
    ):
        return broken(
            None,
            f"the head (entry {last}) is not sealed with the audit key: the chain was recomputed without the key, "
            "or the audit key is not the one it was written with",
        )
    return VerifyResult(True, checked, None, "", last, prev_hash, legacy, checked)


def _loan_rows(session: Session, batch_size: int) -> Iterator[Any]:
    """Every loan chain entry, by loan and then by id, in batches (keyset:
    the database compares, so its collation orders both the query and the page)."""
    after: tuple[str, int] | None = None
    while True:
        chosen = select(_LOG).where(_LOG.c.loan_seq.is_not(None))
        if after is not None:
            chosen = chosen.where(
                or_(_LOG.c.loan_id > after[0], and_(_LOG.c.loan_id == after[0], _LOG.c.seq > after[1]))
            )
        rows = session.execute(chosen.order_by(_LOG.c.loan_id, _LOG.c.seq).limit(batch_size)).all()
        if not rows:
            return
        yield from rows
        after = (rows[-1].loan_id, rows[-1].seq)


def _chains(rows: Iterator[Any]) -> Iterator[tuple[str, list[Any]]]:
    loan_id, chain = None, []
    for row in rows:
        if chain and row.loan_id != loan_id:
            yield loan_id, chain
            chain = []
        loan_id = row.loan_id
        chain.append(row)
    if chain:
        yield loan_id, chain


@dataclass(frozen=True)
class _Bad:
    seq: int | None
    problem: str
    loan_id: str | None = None  # the loan whose chain does not hold


def _altered(loan_id: str, loan_seq: int, seq: int, how: str) -> _Bad:
    return _Bad(seq, f"loan {loan_id}: entry {loan_seq} was altered: {how} (audit_log seq {seq})")


def _check_chain(loan_id: str, chain: list[Any], secret: Callable[[], bytes]) -> list[str] | _Bad:
    """One loan's entries, in id order (appends for a loan take turns, so ids
    rise with loan_seq): their hashes, or what does not hold first."""
    hashes: list[str] = []
    prev_hash = GENESIS_HASH
    for row in chain:
        expected = len(hashes) + 1
        where = f"(audit_log seq {row.seq})"
        altered = partial(_altered, loan_id, expected, row.seq)
        if row.loan_seq != expected:
            if row.loan_seq > expected:
                missing = (
                    f"entry {expected} is" if row.loan_seq == expected + 1 else f"entries {expected} to {row.loan_seq - 1} are"
                )
                return _Bad(
                    row.seq,
                    f"loan {loan_id}: {missing} missing (removed, or moved): entry {row.loan_seq} follows entry "
                    f"{expected - 1} {where}",
                )
            return _Bad(
                row.seq, f"loan {loan_id}: entry {row.loan_seq} comes after entry {expected - 1}: reordered or duplicated {where}"
            )
        if row.prev_hash != prev_hash:
            return _Bad(
                row.seq,
                f"loan {loan_id}: entry {expected} does not follow entry {expected - 1}: its prev_hash is not that "
                f"entry's hash (an entry before it was removed, reordered, or altered and re-hashed) {where}",
            )
        if row.scheme != KEYED:
            return altered(f"a loan chain's entries are keyed, its scheme is {str(row.scheme)[:32]!r}")
        key = secret()  # outside the try: a missing key is no bad entry
        try:
            payload = json.loads(row.payload)
            recomputed = loan_entry_hash(
                key, prev_hash, row.seq, row.loan_seq, row.at, row.loan_id, row.workflow_id, row.kind, payload
            )
        except (ValueError, TypeError) as error:
            return altered(f"its payload is not valid JSON ({error})")
        if not hmac.compare_digest(recomputed, str(row.hash)):
            return altered(
                "its content does not match its keyed hash (edited, moved, re-hashed without the audit key, "
                "or the audit key is not the one it was written with)"
            )
        if row.payload != canonical(payload):
            return altered("its payload text is not the one that was hashed")
        hashes.append(row.hash)
        prev_hash = row.hash
    return hashes


def _check_ends(
    session: Session, walked: dict[str, tuple[list[str], list[int]]], secret: Callable[[], bytes]
) -> _Bad | None:
    """The walked loans' heads (each its chain's end, sealed with the key) and
    the heads checkpoints committed to (each still in its chain, same hash)."""
    loans = list(walked)
    heads = {row.loan_id: row for row in session.execute(select(_HEADS).where(_HEADS.c.loan_id.in_(loans)))}
    committed: dict[str, list[Any]] = {}
    for row in session.execute(select(_CHECKPOINTED).where(_CHECKPOINTED.c.loan_id.in_(loans))):
        committed.setdefault(row.loan_id, []).append(row)
    for loan_id in loans:
        bad = _check_end(loan_id, *walked[loan_id], heads.get(loan_id), committed.get(loan_id, ()), secret)
        if bad is not None:
            return replace(bad, loan_id=loan_id)
    return None


def _check_end(
    loan_id: str, hashes: list[str], ids: list[int], head_row: Any, committed: Any, secret: Callable[[], bytes]
) -> _Bad | None:
    last = len(hashes)
    if head_row is None:
        return _Bad(None, f"loan {loan_id}: its head row is missing (audit_loan_heads)")
    if head_row.seq > last:
        return _Bad(None, f"loan {loan_id}: entries {last + 1} to {head_row.seq} were removed from the end of its "
                          f"chain (its head is at entry {head_row.seq})")
    if head_row.seq < last or head_row.hash != hashes[-1]:
        return _Bad(
            ids[min(head_row.seq, last - 1)],
            f"loan {loan_id}: its chain's end (entry {last}) is not its recorded head (entry {head_row.seq}): "
            "entries were written around append() or the last entry was replaced",
        )
    if head_row.mac is None or not hmac.compare_digest(
        str(head_row.mac), loan_head_mac(secret(), loan_id, last, hashes[-1])
    ):
        return _Bad(
            None,
            f"loan {loan_id}: its head (entry {last}) is not sealed with the audit key: the chain was recomputed "
            "without the key, or the audit key is not the one it was written with",
        )
    for mark in sorted(committed, key=lambda row: row.checkpoint):
        if mark.seq > last:
            return _Bad(
                None,
                f"loan {loan_id}: entries {last + 1} to {mark.seq} were cut off its chain: checkpoint "
                f"{mark.checkpoint} committed to its entry {mark.seq}",
            )
        if mark.seq < 1 or not hmac.compare_digest(hashes[mark.seq - 1], str(mark.hash)):
            return _Bad(
                ids[max(mark.seq, 1) - 1],
                f"loan {loan_id}: entry {mark.seq} is not the one checkpoint {mark.checkpoint} committed to: "
                "the chain was rewritten after it (recomputed with the audit key, or its entries replaced)",
            )
    return None


def _orphans(session: Session) -> _Bad | None:
    """A head, or a checkpointed head, of a loan that has no chain left: the
    whole chain was removed."""
    def has_chain(table):
        return exists().where(_LOG.c.loan_id == table.c.loan_id, _LOG.c.loan_seq.is_not(None))

    head_row = session.execute(select(_HEADS.c.loan_id, _HEADS.c.seq).where(~has_chain(_HEADS)).limit(1)).first()
    if head_row is not None:
        return _Bad(None, f"loan {head_row.loan_id}: its whole chain was removed (its head is at entry {head_row.seq})",
                    head_row.loan_id)
    mark = session.execute(
        select(_CHECKPOINTED.c.loan_id, _CHECKPOINTED.c.seq, _CHECKPOINTED.c.checkpoint)
        .where(~has_chain(_CHECKPOINTED)).limit(1)
    ).first()
    if mark is not None:
        return _Bad(None, f"loan {mark.loan_id}: its whole chain was removed: checkpoint {mark.checkpoint} "
                          f"committed to its entry {mark.seq}", mark.loan_id)
    return None


def _verify_loan_chains(
    session: Session, batch_size: int, secret: Callable[[], bytes], so_far: VerifyResult
) -> VerifyResult:
    checked, loans = so_far.entries_checked, 0
    walked: dict[str, tuple[list[str], list[int]]] = {}

    def failed(bad: _Bad, loan_id: str | None) -> VerifyResult:
        return replace(so_far, ok=False, entries_checked=checked, first_bad_seq=bad.seq, problem=bad.problem,
                       loans_checked=loans, loan_id=bad.loan_id or loan_id)

    def ends() -> VerifyResult | None:
        nonlocal loans
        bad = _check_ends(session, walked, secret)
        if bad is not None:
            return failed(bad, bad.loan_id)
        loans += len(walked)
        walked.clear()
        return None

    for loan_id, chain in _chains(_loan_rows(session, batch_size)):
        hashes = _check_chain(loan_id, chain, secret)
        if isinstance(hashes, _Bad):
            checked += next(i for i, row in enumerate(chain) if row.seq == hashes.seq)  # the ones before it held
            return failed(hashes, loan_id)
        checked += len(hashes)
        walked[loan_id] = (hashes, [row.seq for row in chain])
        if len(walked) >= LOANS_PER_QUERY and (stop := ends()) is not None:
            return stop
    if walked and (stop := ends()) is not None:
        return stop
    bad = _orphans(session)
    if bad is not None:
        return failed(bad, bad.loan_id)
    return replace(so_far, entries_checked=checked, loans_checked=loans)


def seal(session: Session, *, secret: bytes | None = None) -> VerifyResult:
    """Seal the head of a global chain written before the chain was keyed
    (only legacy entries, no head seal yet), once it verifies the old way.
    Run by an operator who has checked the head against a published one:
    sealing a chain that was rewritten before would vouch for it."""
    secret = secret if secret is not None else audit_key.current()  # sealing is the log's first keyed act
    result = verify(session, secret=secret)
    if result.ok or not result.problem.startswith("the head is not sealed") or result.legacy_entries < result.global_entries:
        return result
    session.execute(
        update(_HEAD).where(_HEAD.c.id == HEAD_ID).values(mac=head_mac(secret, result.head_seq, result.head_hash))
    )
    return verify(session, secret=secret)


def hash_at(session: Session, seq: int) -> str | None:
    """The stored hash of the entry with id `seq` (None when there is no such entry)."""
    return session.scalar(select(AuditEntry.hash).where(AuditEntry.seq == seq))


def loan_hash_at(session: Session, loan_id: str, loan_seq: int) -> str | None:
    """The stored hash of `loan_id`'s entry `loan_seq` (None when there is no such entry)."""
    return session.scalar(
        select(AuditEntry.hash).where(AuditEntry.loan_id == loan_id, AuditEntry.loan_seq == loan_seq)
    )


def count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(AuditEntry)) or 0
