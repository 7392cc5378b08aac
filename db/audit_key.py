"""The audit chain's key: kept outside the database, so that whoever can
write to the database still cannot recompute a valid chain (db/audit.py keys
every entry with HMAC-SHA256 under it).

Where it comes from, first match wins:

    DUNNING_AUDIT_KEY        the key itself (at least 32 characters), e.g. from
                             a secrets manager; every worker, gateway and
                             `audit_cli verify` of one database needs the same one
    DUNNING_AUDIT_KEY_FILE   a file holding it (created 0600 with a random key
                             when missing); default .dunning/audit_key

Read from the environment here, in the lowest layer that does I/O, because
the chain is appended wherever a record is written (the activities, the
outbox, the gateway's callbacks) and every one of them must use the same key.
Losing the key does not lose the log: it can no longer be verified as keyed,
only read. Back the key up apart from the database backups, where an
attacker of the database does not reach it.
"""

from __future__ import annotations

import os
import secrets
from functools import lru_cache
from pathlib import Path

from db.private_files import create_private_once

ENV_KEY = "DUNNING_AUDIT_KEY"
ENV_KEY_FILE = "DUNNING_AUDIT_KEY_FILE"
DEFAULT_KEY_FILE = Path(__file__).resolve().parent.parent / ".dunning" / "audit_key"
MIN_KEY_LENGTH = 32


class AuditKeyError(ValueError):
    """The configured audit key cannot be used (the message names the setting)."""


def current(create: bool = True) -> bytes:
    """The key every append and verify of this process uses. Without
    `create` (verifying), a missing key file is an error, not a new key."""
    return _load(os.environ.get(ENV_KEY, ""), os.environ.get(ENV_KEY_FILE, "") or str(DEFAULT_KEY_FILE), create)


@lru_cache(maxsize=8)
def _load(value: str, path: str, create: bool) -> bytes:
    if value:
        if len(value.strip()) < MIN_KEY_LENGTH:
            raise AuditKeyError(f"{ENV_KEY} must be at least {MIN_KEY_LENGTH} characters")
        return value.strip().encode("utf-8")
    file = Path(path)
    if not file.exists() and not create:
        raise AuditKeyError(
            f"no audit key: set {ENV_KEY}, or {ENV_KEY_FILE} to the key file the log was written with ({file} is missing)"
        )
    if not file.exists():
        # Two processes starting at once both end up with the first one's key.
        create_private_once(file, secrets.token_urlsafe(48))
    text = file.read_text(encoding="utf-8").strip()
    if len(text) < MIN_KEY_LENGTH:
        raise AuditKeyError(f"{ENV_KEY_FILE} ({file}) must hold a key of at least {MIN_KEY_LENGTH} characters")
    return text.encode("utf-8")
