"""The global audit chain's heads as `audit_cli verify` saw them, kept
outside the database: one JSON line per verified head, appended to
DUNNING_AUDIT_CHECKPOINT_FILE (default .dunning/audit_checkpoints/<a digest
of the database URL, password left out>.jsonl, one per database; 0600).
Since migration 0020 that chain is frozen (each loan has a chain of its own)
and the same file also receives the signed checkpoints of the loan chains
(db/audit_checkpoint.py): lines with a `checkpoint` number, which `last`
passes over, as the loan chains' checks pass over these.

The keyed chain (db/audit.py) stops anyone without the audit key from
rewriting entries. What it cannot see alone is the database rolled back
whole: entries cut off the end together with the head put back to an older
one, whose seal the attacker copied when it was current. A checkpoint can:
the entry it names must still be in the log, with the same hash, and the
log may only have grown since. Put the file where the database's attacker
does not reach (another host, append-only storage), or publish its lines.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy.orm import Session

from db import audit, audit_checkpoint
from db.private_files import open_private_append

ENV_FILE = "DUNNING_AUDIT_CHECKPOINT_FILE"
ENV_DIR = "DUNNING_AUDIT_CHECKPOINT_DIR"
DEFAULT_FILE = Path(__file__).resolve().parent.parent / ".dunning" / "audit_checkpoints"


@dataclass(frozen=True)
class Checkpoint:
    seq: int
    hash: str
    at: str


def path(database_url: str) -> Path:
    """The checkpoint file of the database at `database_url`: the same file
    the signed checkpoints of the per-loan chains are appended to
    (db/audit_checkpoint.py; DUNNING_AUDIT_CHECKPOINT_DIR moves its directory)."""
    directory = Path(os.environ.get(ENV_DIR) or DEFAULT_FILE)
    return audit_checkpoint.outside_file(database_url, directory, os.environ.get(ENV_FILE) or None)


def last(file: Path) -> Checkpoint | None:
    """The latest checkpoint in the file (None if there is none)."""
    if not file.exists():
        return None
    found = None
    for line in file.read_text(encoding="utf-8").splitlines():
        try:
            item = json.loads(line)
            found = Checkpoint(int(item["seq"]), str(item["hash"]), str(item.get("at", "")))
        except (ValueError, KeyError, TypeError):
            continue  # a torn last line: the ones before it still hold
    return found


def check(session: Session, result: audit.VerifyResult, file: Path) -> str | None:
    """Why the verified log does not extend the latest checkpoint, or None if it does."""
    mark = last(file)
    if mark is None or mark.seq == 0:
        return None
    if result.head_seq < mark.seq:
        return (
            f"entries {result.head_seq + 1} to {mark.seq} were removed from the end of the log: "
            f"the checkpoint of {mark.at} recorded head #{mark.seq}"
        )
    if audit.hash_at(session, mark.seq) != mark.hash:
        return f"entry {mark.seq} is not the one checkpointed at {mark.at}: the log was rewritten since"
    return None


def record(result: audit.VerifyResult, file: Path, now: datetime | None = None) -> None:
    """Append the verified head (when the log has grown since the last checkpoint)."""
    mark = last(file)
    if mark is not None and mark.seq == result.head_seq and mark.hash == result.head_hash:
        return
    at = (now or datetime.now(timezone.utc)).isoformat(timespec="seconds")
    with open_private_append(file) as handle:
        handle.write(json.dumps({"seq": result.head_seq, "hash": result.head_hash, "at": at}) + "\n")
