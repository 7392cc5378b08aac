"""The compliance reviewer's commands on the audit log.

    python -m compliance.audit_cli verify              # walk the keyed chains; exit 1 naming the first bad entry
    python -m compliance.audit_cli checkpoint          # write a signed checkpoint now (the Schedule does, every few minutes)
    python -m compliance.audit_cli seal                # once, for a log written before the chain was keyed
    python -m compliance.audit_cli evidence L-1001     # a loan's contacts and decisions, in the borrower's time
    python -m compliance.audit_cli evidence L-1001 --json
    python -m compliance.audit_cli evidence L-1001 --time-zone UTC

They read the database named by DUNNING_DATABASE_URL (migrating it first),
with the audit key (DUNNING_AUDIT_KEY, or the key file: db/audit_key.py).

`verify` (db/audit.py) checks the global chain written before migration
0020 entry by entry in seq order, as before: no seq missing (a removed
entry), each prev_hash the previous entry's hash (removed, reordered or
re-hashed entries), each hash recomputed (HMAC-SHA256 under the audit key;
plain SHA-256 for the prefix written before the key), no unkeyed entry after
a keyed one, and its head row the chain's end, sealed with the key. Then the
signed checkpoints (db/audit_checkpoint.py: numbered, chained, signed, each
Merkle root recomputed from its heads); then every loan's own chain the same
way as the global one, its head row (its end, sealed with the key: a chain
recomputed without the key fails here) and each head a checkpoint committed
to (still in the chain with the same hash: a chain cut below it, even with
its head rolled back, or recomputed with the key, fails here). Then that
the database agrees with the file outside it: the global head checkpointed
there (compliance/audit_checkpoints.py) is still in the log, and every
signed checkpoint written there is in the database unchanged (a database
rolled back whole fails here). It then records the global head and exports
any checkpoint the file lacks.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from datetime import datetime, timezone

from activities.audit_checkpoint import write_checkpoint
from compliance import audit_checkpoints
from compliance.evidence import format_evidence, loan_time_zone
from db import audit, audit_checkpoint
from db.audit_key import AuditKeyError
from db.evidence import evidence
from db.migrate import upgrade_to_head
from db.models import AuditEntry
from db.session import make_engine, make_session_factory
from runtime.settings import get_settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m compliance.audit_cli", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("verify", help="walk the audit log's keyed chains; exit 1 at the first altered or removed entry")
    commands.add_parser("checkpoint", help="write a signed checkpoint of the loan heads changed since the last one")
    commands.add_parser(
        "seal", help="seal the head of a log written before the chain was keyed (after checking it against a published head)"
    )
    shown = commands.add_parser("evidence", help="print a loan's contacts, decisions, payments, stages and complaints")
    shown.add_argument("loan_id")
    shown.add_argument("--time-zone", help="show times in this IANA zone (default: the borrower's)")
    shown.add_argument("--json", action="store_true", help="JSON rows instead of a table")
    return parser


def verify_command(session, database_url: str) -> int:
    result = audit.verify(session)
    checkpoints = audit_checkpoints.path(database_url)
    if result.ok:
        behind = audit_checkpoints.check(session, result, checkpoints) or audit_checkpoint.check_outside(
            session, checkpoints
        )
        if behind is not None:
            result = audit.VerifyResult(False, result.entries_checked, None, behind, result.head_seq, result.head_hash)
    if result.ok:
        audit_checkpoints.record(result, checkpoints)
        audit_checkpoint.export(session, checkpoints)
        legacy = f" ({result.legacy_entries} written before the chain was keyed)" if result.legacy_entries else ""
        print(
            f"audit log verified: {result.entries_checked} entries{legacy}; {result.loans_checked} loan chains; "
            f"{result.checkpoints_checked} signed checkpoints; global head #{result.head_seq} {result.head_hash}; "
            f"checkpointed to {checkpoints}"
        )
        return 0
    print(f"audit log BROKEN: {result.problem}")
    print(f"entries verified before it: {result.entries_checked}")
    if result.first_bad_seq is not None:
        entry = session.get(AuditEntry, result.first_bad_seq)
        if entry is None:
            print(f"first bad entry: #{result.first_bad_seq} (not in the log)")
        else:
            print(f"first bad entry: #{entry.seq}")
            for name in ("loan_seq", "at", "loan_id", "workflow_id", "kind", "key", "payload", "prev_hash", "hash", "scheme"):
                value = getattr(entry, name)
                print(f"  {name}: {value.isoformat() if hasattr(value, 'isoformat') else value}")
    return 1


def seal_command(session, database_url: str) -> int:
    # Sealing vouches for a log of unkeyed entries. A log that a verify has
    # ever checkpointed was keyed and sealed then: finding it unkeyed now
    # means someone rewrote it without the key, and sealing would launder it.
    file = audit_checkpoints.path(database_url)
    if audit_checkpoint.read_outside(file):
        print("audit log not sealed: signed checkpoints of it were written before; a log that must be sealed again "
              "was rewritten without the key")
        return 1
    checkpointed = audit_checkpoints.last(file)
    if checkpointed is not None:
        print(
            f"audit log not sealed: it was verified and checkpointed before (head #{checkpointed.seq} at "
            f"{checkpointed.at or 'an earlier verify'}); a log that must be sealed again was rewritten without the key"
        )
        return 1
    result = audit.seal(session)
    if not result.ok:
        print(f"audit log not sealed: {result.problem}")
        return 1
    session.commit()
    print(f"audit log sealed: head #{result.head_seq} {result.head_hash} ({result.entries_checked} entries)")
    return 0


def checkpoint_command(sessions, database_url: str) -> int:
    file = audit_checkpoints.path(database_url)
    done = write_checkpoint(sessions, file, datetime.now(timezone.utc))
    if done["checkpoint"]:
        print(f"audit checkpoint {done['checkpoint']}: {done['heads']} loan heads, root {done['root']}; written to {file}")
    else:
        print(f"no loan head changed since the last audit checkpoint; {file} is up to date")
    if done["unsealed"]:
        print(f"{done['unsealed']} loan heads left out: their seal does not hold (run verify)")
        return 1
    return 0


def evidence_command(session, loan_id: str, time_zone: str | None, as_json: bool) -> int:
    rows = evidence(session, loan_id)
    if not rows:
        print(f"no contacts or audit entries for loan {loan_id}", file=sys.stderr)
        return 1
    zone = time_zone or loan_time_zone(session, loan_id) or "UTC"
    if as_json:
        print(json.dumps({"loan_id": loan_id, "time_zone": zone, "rows": rows}, default=_json, ensure_ascii=False, indent=2))
    else:
        print(format_evidence(rows, zone), end="")
        result = audit.verify(session)
        state = "intact" if result.ok else f"BROKEN ({result.problem})"
        print(f"audit log: {state}; {result.entries_checked} entries verified")
    return 0


def _json(value):
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = get_settings()
    upgrade_to_head(settings.database_url)
    sessions = make_session_factory(make_engine(settings.database_url))
    with sessions() as session:
        try:
            if args.command == "verify":
                return verify_command(session, settings.database_url)
            if args.command == "checkpoint":
                return checkpoint_command(sessions, settings.database_url)
            if args.command == "seal":
                return seal_command(session, settings.database_url)
            return evidence_command(session, args.loan_id, args.time_zone, args.json)
        except AuditKeyError as error:
            print(f"audit log not verifiable: {error}", file=sys.stderr)
            return 2


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter finalization: with the Temporal SDK loaded it can crash
    # at exit, after the work is done and printed.
    os._exit(code)
