"""The hash-chained audit log: append, verify.

Every contact, compliance decision, payment, stage change, operator action,
complaint and closing is appended, inside the transaction that writes the
record it describes, as one row of `audit_log`:

    hash = sha256(prev_hash + canonical({"seq", "at", "loan_id", "workflow_id", "kind", "payload"}))

where `canonical` is JSON with sorted keys, no spaces and UTF-8 text, and
`prev_hash` is the hash of entry seq - 1 (GENESIS_HASH for entry 1). Entries
are never updated or deleted, so `verify` can walk the chain in seq order and
name the first entry that was altered (its hash no longer matches), removed (a
gap in seq, or a prev_hash that is not the previous entry's hash) or
reordered. The one-row `audit_head` holds the last seq and hash: appends lock
it to take turns, and `verify` compares it with the end of the log, so cutting
entries off the end shows too. Publishing the head's hash from time to time
(`python -m compliance.audit_cli verify` prints it) anchors the chain outside
the database.

Payloads carry ids, codes and money only: no names, addresses or message
bodies (a contact carries the SHA-256 of its message, `message_digest`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from db.models import AuditEntry, AuditHead

GENESIS_HASH = "0" * 64
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


def entry_hash(prev_hash: str, seq: int, at: datetime, loan_id: str, workflow_id: str, kind: str, payload: Any) -> str:
    body = canonical(
        {"seq": seq, "at": _instant(at), "loan_id": loan_id, "workflow_id": workflow_id, "kind": kind, "payload": payload}
    )
    return hashlib.sha256((prev_hash + body).encode("utf-8")).hexdigest()


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
) -> AuditEntry:
    """Append one entry in the caller's transaction (it commits or rolls back
    with the record it describes) and return it. With `key`, an entry already
    written under that key is returned instead and nothing is appended: a
    retried activity appends once.

    Appends take turns on the `audit_head` row: the UPDATE that moves it on
    holds a row lock on PostgreSQL (a concurrent append waits, then reads the
    new head) and the database's write lock on SQLite, until the caller
    commits. A race that still slips through (a head row missing) ends in an
    IntegrityError on the unique seq, which the activities retry."""
    if kind not in KINDS:
        raise ValueError(f"audit kind {kind!r} is not one of {', '.join(sorted(KINDS))}")
    if key is not None:
        existing = session.scalar(select(AuditEntry).where(AuditEntry.key == key))
        if existing is not None:
            return existing
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
        hash=entry_hash(prev_hash, seq, at, loan_id, workflow_id, kind, payload_value),
    )
    session.add(entry)
    session.flush()
    session.execute(update(_HEAD).where(_HEAD.c.id == HEAD_ID).values(hash=entry.hash))
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


def verify(session: Session, batch_size: int = 1000) -> VerifyResult:
    """Walk the chain in seq order; stop at the first entry that does not
    hold, naming it."""
    expected_seq, prev_hash, checked = 1, GENESIS_HASH, 0

    def bad(seq: int, problem: str) -> VerifyResult:
        return VerifyResult(False, checked, seq, problem, expected_seq - 1, prev_hash)

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
            try:
                payload = json.loads(row.payload)
                recomputed = entry_hash(prev_hash, row.seq, row.at, row.loan_id, row.workflow_id, row.kind, payload)
            except (ValueError, TypeError) as error:
                return bad(row.seq, f"entry {row.seq} was altered: its payload is not valid JSON ({error})")
            if recomputed != row.hash:
                return bad(row.seq, f"entry {row.seq} was altered: its content does not match its hash")
            if row.payload != canonical(payload):
                return bad(row.seq, f"entry {row.seq} was altered: its payload text is not the one that was hashed")
            checked += 1
            expected_seq, prev_hash = row.seq + 1, row.hash

    head_row = session.execute(select(AuditHead.seq, AuditHead.hash).where(AuditHead.id == HEAD_ID)).first()
    last = expected_seq - 1
    if head_row is None:
        if last:
            return VerifyResult(False, checked, None, "the audit_head row is missing", last, prev_hash)
    elif head_row.seq > last:
        return VerifyResult(
            False, checked, last + 1,
            f"entries {last + 1} to {head_row.seq} were removed from the end of the log (the head is at {head_row.seq})",
            last, prev_hash,
        )
    elif head_row.seq < last or head_row.hash != prev_hash:
        return VerifyResult(
            False, checked, min(head_row.seq + 1, last),
            f"the log's end (entry {last}) is not the recorded head (entry {head_row.seq}): "
            "entries were written around append() or the last entry was replaced",
            last, prev_hash,
        )
    return VerifyResult(True, checked, None, "", last, prev_hash)


def count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(AuditEntry)) or 0
