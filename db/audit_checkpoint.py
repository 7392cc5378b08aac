"""Signed checkpoints of the per-loan audit chains (issue 19, item 1).

A loan's chain (db/audit.py) proves its entries were not altered, removed
or reordered, and its sealed head that nothing was cut off its end; what it
cannot show alone is the chain cut and its head rolled back to an older one
(whose seal the attacker copied when it was current), or a chain recomputed
by someone holding the audit key. A checkpoint can. Every few minutes (the
Temporal Schedule `dunning-audit-checkpoint`, runtime/audit_checkpoint_schedule.py)
`write` takes the loan heads changed since the last checkpoint and commits to
them in one row of `audit_checkpoints`:

    leaf     = canonical([loan_id, seq, hash])             one per changed head, sorted by (loan_id, seq)
    root     = the RFC 6962 Merkle Tree Hash of the leaves (db/merkle.py)
    hash     = SHA-256(canonical({"number", "at", "prev_hash", "root", "size"}))
    prev_hash: the previous checkpoint's hash (GENESIS_HASH for the first): a chain of checkpoints
    signature = HMAC-SHA256(audit key, "audit_checkpoint:" + hash)

and keeps its leaves in `audit_checkpoint_heads`, so `verify` can check each
still names an entry of its loan's chain with that hash. Each checkpoint is
also appended, as one JSON line, to a file outside the database (`export`;
the file the compliance CLI has kept its checkpoints in: see `outside_file`),
which `check_outside` holds the database's checkpoints to: a checkpoint the
file has and the database lost, or has other, means the database was rolled
back or rewritten. Put that file where the database's attacker does not
reach (another host, append-only storage), or publish its lines.

Heads changed after the last checkpoint are protected by their chain and
seal alone until the next one: the interval is the window.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import func, insert, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from db import merkle
from db.audit import GENESIS_HASH, canonical, loan_head_mac
from db.models import AuditCheckpoint, AuditCheckpointHead, AuditLoanHead
from db.private_files import open_private_append

_ROWS = AuditCheckpoint.__table__
_LEAVES = AuditCheckpointHead.__table__
_HEADS = AuditLoanHead.__table__


@dataclass(frozen=True)
class Checkpoint:
    number: int
    at: datetime
    prev_hash: str
    root: str
    size: int
    hash: str
    signature: str

    def line(self) -> str:
        """Its line in the file outside the database."""
        return json.dumps({
            "checkpoint": self.number, "at": _instant(self.at), "prev_hash": self.prev_hash, "root": self.root,
            "size": self.size, "hash": self.hash, "signature": self.signature,
        }, sort_keys=True)


def _instant(at: datetime) -> str:
    return at.astimezone(timezone.utc).isoformat(timespec="microseconds")


def leaf(loan_id: str, seq: int, hash_: str) -> bytes:
    return canonical([loan_id, seq, hash_]).encode("utf-8")


def merkle_root(heads: list[tuple[str, int, str]]) -> str:
    """The Merkle root of `heads` (loan_id, seq, hash), sorted by loan and seq."""
    return merkle.root([leaf(*head) for head in sorted(heads)]).hex()


def checkpoint_hash(number: int, at: datetime, prev_hash: str, root: str, size: int) -> str:
    body = canonical({"number": number, "at": _instant(at), "prev_hash": prev_hash, "root": root, "size": size})
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def signature(key: bytes, hash_: str) -> str:
    return hmac.new(key, f"audit_checkpoint:{hash_}".encode(), hashlib.sha256).hexdigest()


def changed_heads(session: Session) -> list[tuple[str, int, str, str | None]]:
    """The loan heads (loan_id, seq, hash, mac) past the last seq a checkpoint
    committed to for that loan. By seq, not by time: an append that commits
    after a checkpoint read the heads is still past it, and is in the next."""
    last = (
        select(func.max(_LEAVES.c.seq)).where(_LEAVES.c.loan_id == _HEADS.c.loan_id).correlate(_HEADS).scalar_subquery()
    )
    chosen = select(_HEADS.c.loan_id, _HEADS.c.seq, _HEADS.c.hash, _HEADS.c.mac).where(
        _HEADS.c.seq > func.coalesce(last, 0)
    )
    return [tuple(row) for row in session.execute(chosen)]


def latest(session: Session) -> Checkpoint | None:
    row = session.execute(select(_ROWS).order_by(_ROWS.c.number.desc()).limit(1)).first()
    return _checkpoint(row) if row else None


def _checkpoint(row) -> Checkpoint:
    return Checkpoint(row.number, row.at, row.prev_hash, row.root, row.size, row.hash, row.signature)


@dataclass(frozen=True)
class Written:
    checkpoint: Checkpoint | None  # None: no head changed since the last one
    unsealed: tuple[str, ...] = ()  # loans left out: their head's seal does not hold (verify names them)


def write(session: Session, at: datetime, secret: bytes) -> Written:
    """Commit, in the caller's transaction, to every loan head changed since
    the last checkpoint. A head whose seal does not hold under the key is left
    out, not vouched for. Two writers at once: the second's number is taken,
    its transaction fails (IntegrityError), and its retry finds nothing or
    what came since."""
    heads, unsealed = [], []
    for loan_id, seq, hash_, mac in changed_heads(session):
        if mac is not None and hmac.compare_digest(str(mac), loan_head_mac(secret, loan_id, seq, hash_)):
            heads.append((loan_id, seq, hash_))
        else:
            unsealed.append(loan_id)
    if not heads:
        return Written(None, tuple(sorted(unsealed)))
    before = latest(session)
    number = before.number + 1 if before else 1
    prev_hash = before.hash if before else GENESIS_HASH
    at = at.astimezone(timezone.utc)
    root = merkle_root(heads)
    digest = checkpoint_hash(number, at, prev_hash, root, len(heads))
    made = Checkpoint(number, at, prev_hash, root, len(heads), digest, signature(secret, digest))
    session.execute(insert(_ROWS).values(
        number=number, at=at, prev_hash=prev_hash, root=root, size=len(heads), hash=digest, signature=made.signature
    ))
    session.execute(insert(_LEAVES), [
        {"checkpoint": number, "loan_id": loan_id, "seq": seq, "hash": hash_} for loan_id, seq, hash_ in heads
    ])
    return Written(made, tuple(sorted(unsealed)))


def verify_rows(session: Session, secret: Callable[[], bytes]) -> tuple[str | None, int]:
    """The checkpoints in the database: numbered 1, 2, ... each chained to
    the one before, its hash and signature recomputed, its root recomputed
    from its leaves. What does not hold first (or None), and how many did."""
    prev_hash, checked = GENESIS_HASH, 0
    for row in session.execute(select(_ROWS).order_by(_ROWS.c.number)).all():
        number = checked + 1
        if row.number != number:
            return (f"checkpoint {number} is missing (removed): checkpoint {row.number} follows checkpoint "
                    f"{number - 1}"), checked
        if row.prev_hash != prev_hash:
            return f"checkpoint {number} does not follow checkpoint {number - 1}: its prev_hash is not that one's hash", checked
        if checkpoint_hash(row.number, row.at, row.prev_hash, row.root, row.size) != row.hash:
            return f"checkpoint {number} was altered: its fields do not match its hash", checked
        if not hmac.compare_digest(str(row.signature), signature(secret(), row.hash)):
            return (f"checkpoint {number} is not signed with the audit key: forged, or the audit key is not the one "
                    "it was written with"), checked
        leaves = session.execute(
            select(_LEAVES.c.loan_id, _LEAVES.c.seq, _LEAVES.c.hash).where(_LEAVES.c.checkpoint == row.number)
        ).all()
        if len(leaves) != row.size or merkle_root([tuple(leaf_) for leaf_ in leaves]) != row.root:
            return (f"checkpoint {number}'s heads were altered: they do not make its Merkle root "
                    f"({len(leaves)} of {row.size} heads)"), checked
        prev_hash, checked = row.hash, number
    return None, checked


# ------------------------------------------------------------------ outside


def outside_file(database_url: str, directory: Path, override: Path | str | None = None) -> Path:
    """The file outside the database its checkpoints are appended to: one per
    database, named by a digest of its URL (password left out), in `directory`;
    or `override` (DUNNING_AUDIT_CHECKPOINT_FILE) when set."""
    if override:
        return Path(override)
    name = make_url(database_url).set(password=None).render_as_string(hide_password=False)
    return Path(directory) / f"{hashlib.sha256(name.encode()).hexdigest()[:16]}.jsonl"


def read_outside(file: Path) -> list[dict]:
    """The checkpoint lines of the file (lines of other kinds, and a torn last
    line, are passed over: the compliance CLI's head marks share the file)."""
    if not file.exists():
        return []
    found = []
    for line in file.read_text(encoding="utf-8").splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if isinstance(item, dict) and isinstance(item.get("checkpoint"), int):
            found.append(item)
    return found


def export(session: Session, file: Path) -> int:
    """Append to the outside file every checkpoint of the database it does
    not have yet (the one just written; and one whose export a crash cut
    short): how many."""
    have = max((item["checkpoint"] for item in read_outside(file)), default=0)
    rows = session.execute(select(_ROWS).where(_ROWS.c.number > have).order_by(_ROWS.c.number)).all()
    if rows:
        with open_private_append(file) as handle:
            for row in rows:
                handle.write(_checkpoint(row).line() + "\n")
    return len(rows)


def check_outside(session: Session, file: Path) -> str | None:
    """Why the database's checkpoints do not agree with the file outside it,
    or None if they do: each checkpoint the file holds must be in the
    database, the same (the database may be ahead by the ones not exported yet)."""
    kept = {row.number: _checkpoint(row) for row in session.execute(select(_ROWS)).all()}
    for item in read_outside(file):
        number = item["checkpoint"]
        mine = kept.get(number)
        if mine is None:
            return (f"checkpoint {number} (of {item.get('at', '?')}) is in the file outside the database but not in "
                    "the database: the database was rolled back or its checkpoints removed")
        if (mine.hash, mine.root, mine.signature) != (item.get("hash"), item.get("root"), item.get("signature")):
            return (f"checkpoint {number} in the database is not the one written outside it at {item.get('at', '?')}: "
                    "the database's checkpoints were rewritten")
    return None
