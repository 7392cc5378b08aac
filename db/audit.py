"""The keyed, hash-chained audit log: append, verify, seal.

Every contact, compliance decision, payment, stage change, operator action,
complaint and closing is appended, inside the transaction that writes the
record it describes, as one row of `audit_log`:

    hash = HMAC-SHA256(key, prev_hash + canonical({"seq", "at", "loan_id", "workflow_id", "kind", "payload"}))

where `key` is the audit key, kept outside the database (db/audit_key.py:
DUNNING_AUDIT_KEY or a 0600 key file), `canonical` is JSON with sorted keys,
no spaces and UTF-8 text, and `prev_hash` is the hash of entry seq - 1
(GENESIS_HASH for entry 1). Each row names its `scheme`: `hmac-sha256`, or
`sha256` for the entries written before the chain was keyed (migration 0007
marks them so), whose hash is the plain SHA-256 of the same text. Such legacy
entries can only be a prefix of the log: the first keyed entry covers the
last legacy entry's hash, so the prefix cannot be recomputed either.

Entries are never updated or deleted (on PostgreSQL and SQLite a trigger
refuses it: migration 0007), so `verify` can walk the chain in seq order and
name the first entry that was altered (its hash no longer matches: edited,
or re-hashed by someone without the key), removed (a gap in seq, or a
prev_hash that is not the previous entry's hash) or reordered. The one-row
`audit_head` holds the last seq and hash and `mac`, the HMAC of both under
the key: appends lock it to take turns, and `verify` compares it with the end
of the log, so cutting entries off the end shows too, and a whole chain
recomputed without the key (even one turned back into plain SHA-256 entries)
fails at the head. Entries cut off the end together with a head rolled back
to an old one (whose `mac` the attacker saw) are caught by the checkpoint
`audit_cli verify` keeps outside the database (compliance/audit_cli.py).

Payloads carry ids, codes and money only: no names, addresses or message
bodies (a contact carries the SHA-256 of its message, `message_digest`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from db import audit_key
from db.models import AuditEntry, AuditHead

GENESIS_HASH = "0" * 64
# How an entry's hash was made: keyed (every entry appended now), or plain
# SHA-256 (entries written before migration 0007, verified the old way).
KEYED = "hmac-sha256"
LEGACY = "sha256"
SCHEMES = frozenset({KEYED, LEGACY})
HEAD_ID = 1
_HEAD = AuditHead.__table__
_LOG = AuditEntry.__table__
KINDS = frozenset({
    "contact", "decision", "payment", "stage", "operator", "complaint", "closing",
    "arrangement", "visit", "legal",  # plans and promises, field visits, legal outcomes
})


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


def message_digest(subject: str | None, text: str | None, html: str | None) -> str:
    """The SHA-256 of a rendered message (subject, text and HTML), so the log
    proves what was sent without holding the words or the name in them."""
    return hashlib.sha256(canonical({"subject": subject or "", "text": text or "", "html": html or ""}).encode()).hexdigest()


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
    """Append one entry in the caller's transaction (it commits or rolls back
    with the record it describes) and return it. With `key`, an entry already
    written under that key is returned instead and nothing is appended: a
    retried activity appends once.

    Appends take turns on the `audit_head` row: the UPDATE that moves it on
    holds a row lock on PostgreSQL (a concurrent append waits, then reads the
    new head) and the database's write lock on SQLite, until the caller
    commits. A race that still slips through (a head row missing) ends in an
    IntegrityError on the unique seq, which the activities retry.

    The entry is keyed with `secret`, by default the audit key
    (db/audit_key.py)."""
    if kind not in KINDS:
        raise ValueError(f"audit kind {kind!r} is not one of {', '.join(sorted(KINDS))}")
    if key is not None:
        existing = session.scalar(select(AuditEntry).where(AuditEntry.key == key))
        if existing is not None:
            return existing
    secret = secret if secret is not None else audit_key.current()
    at = (at or datetime.now(timezone.utc)).astimezone(timezone.utc)
    # Through JSON and back: the hash covers exactly what verify will read.
    payload_text = canonical(dict(payload))
    payload_value = json.loads(payload_text)

    moved = session.execute(update(_HEAD).where(_HEAD.c.id == HEAD_ID).values(seq=_HEAD.c.seq + 1))
    if moved.rowcount == 1:
        seq, prev_hash = session.execute(select(AuditHead.seq, AuditHead.hash).where(AuditHead.id == HEAD_ID)).one()
    else:  # a database built without the migrations' head row: start it from the log
        last = session.scalars(select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(1)).first()
        seq, prev_hash = (last.seq + 1, last.hash) if last else (1, GENESIS_HASH)
        session.add(AuditHead(id=HEAD_ID, seq=seq, hash=prev_hash))
    entry = AuditEntry(
        seq=seq,
        at=at,
        loan_id=loan_id,
        workflow_id=workflow_id,
        kind=kind,
        key=key,
        payload=payload_text,
        prev_hash=prev_hash,
        scheme=KEYED,
        hash=keyed_entry_hash(secret, prev_hash, seq, at, loan_id, workflow_id, kind, payload_value),
    )
    session.add(entry)
    session.flush()
    session.execute(
        update(_HEAD).where(_HEAD.c.id == HEAD_ID).values(hash=entry.hash, mac=head_mac(secret, seq, entry.hash))
    )
    return entry


def has_key(session: Session, key: str) -> bool:
    """An entry was appended under `key` (by an earlier attempt of an activity)."""
    return session.scalar(select(AuditEntry.seq).where(AuditEntry.key == key)) is not None


def head(session: Session) -> tuple[int, str]:
    """The last seq and hash (0 and GENESIS_HASH for an empty log)."""
    row = session.execute(select(AuditHead.seq, AuditHead.hash).where(AuditHead.id == HEAD_ID)).first()
    return (row.seq, row.hash) if row else (0, GENESIS_HASH)


def payload_of(entry: AuditEntry) -> dict:
    return json.loads(entry.payload)


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    entries_checked: int
    first_bad_seq: int | None = None
    problem: str = ""
    head_seq: int = 0
    head_hash: str = GENESIS_HASH
    legacy_entries: int = 0  # the unkeyed prefix (written before the chain was keyed)


def verify(session: Session, batch_size: int = 1000, *, secret: bytes | None = None) -> VerifyResult:
    """Walk the chain in seq order; stop at the first entry that does not
    hold, naming it. Keyed entries are checked with `secret` (by default the
    audit key, read only when needed: an empty or legacy log verifies
    without one); then the head's seal. Raises audit_key.AuditKeyError when
    a key is needed and none is configured."""
    expected_seq, prev_hash, checked, legacy = 1, GENESIS_HASH, 0, 0

    def bad(seq: int, problem: str) -> VerifyResult:
        return VerifyResult(False, checked, seq, problem, expected_seq - 1, prev_hash, legacy)

    last_seq = 0
    while True:
        # Plain rows, not ORM objects: nothing piles up in the caller's session.
        rows = session.execute(select(_LOG).where(_LOG.c.seq > last_seq).order_by(_LOG.c.seq).limit(batch_size)).all()
        if not rows:
            break
        for row in rows:
            last_seq = row.seq
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
            if row.scheme == KEYED and secret is None:
                secret = audit_key.current(create=False)
            try:
                payload = json.loads(row.payload)
                fields = (prev_hash, row.seq, row.at, row.loan_id, row.workflow_id, row.kind, payload)
                recomputed = keyed_entry_hash(secret, *fields) if row.scheme == KEYED else entry_hash(*fields)
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

    head_row = session.execute(select(AuditHead.seq, AuditHead.hash, AuditHead.mac).where(AuditHead.id == HEAD_ID)).first()
    last = expected_seq - 1

    def broken(seq: int | None, problem: str) -> VerifyResult:
        return VerifyResult(False, checked, seq, problem, last, prev_hash, legacy)

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
        str(head_row.mac), head_mac(secret if secret is not None else audit_key.current(create=False), last, prev_hash)
    ):
        return broken(
            None,
            f"the head (entry {last}) is not sealed with the audit key: the chain was recomputed without the key, "
            "or the audit key is not the one it was written with",
        )
    return VerifyResult(True, checked, None, "", last, prev_hash, legacy)


def seal(session: Session, *, secret: bytes | None = None) -> VerifyResult:
    """Seal the head of a log written before the chain was keyed (only
    legacy entries, no head seal yet), once its chain verifies the old way.
    The next keyed append covers it too. Run by an operator who has checked
    the head against a published one: sealing a chain that was rewritten
    before would vouch for it."""
    secret = secret if secret is not None else audit_key.current()  # sealing is the log's first keyed act
    result = verify(session, secret=secret)
    if result.ok or not result.problem.startswith("the head is not sealed") or result.legacy_entries < result.entries_checked:
        return result
    session.execute(
        update(_HEAD).where(_HEAD.c.id == HEAD_ID).values(mac=head_mac(secret, result.head_seq, result.head_hash))
    )
    return VerifyResult(True, result.entries_checked, None, "", result.head_seq, result.head_hash, result.legacy_entries)


def hash_at(session: Session, seq: int) -> str | None:
    """The stored hash of entry `seq` (None when there is no such entry)."""
    return session.scalar(select(AuditEntry.hash).where(AuditEntry.seq == seq))


def count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(AuditEntry)) or 0
