"""Scoped API keys for the internal API: create, list, rotate, revoke, verify.

A key reads `dk_<key_id>_<secret>`. The key id is public (it names the key in
`keys list`, logs and the audit trail); the secret is 256 random bits from
`secrets` and is shown once, when the key is made. The database keeps only
SHA-256(secret): a slow password hash (bcrypt, scrypt) exists to make guessing
a low-entropy password expensive, and there is nothing to guess in 256 random
bits, so a fast hash is as safe here and keeps every request cheap.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from db.models import ApiKey

SCOPES = frozenset({
    "loans:place", "loans:read", "loans:operate", "borrowers:write", "visits:report",
    "tasks:read", "tasks:write",  # agent tasks (issue 17): GET /tasks; claiming and completing one
})
PREFIX = "dk"
_KEY = re.compile(r"dk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")
# last_used_at is a hint for operators, not a log: written at most this often.
_TOUCH_EVERY = timedelta(minutes=1)


class UnknownScope(ValueError):
    pass


class NoSuchKey(LookupError):
    pass


@dataclass(frozen=True)
class KeyInfo:
    """What may be shown about a key: never its secret."""

    key_id: str
    name: str
    scopes: frozenset[str]
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def _info(row: ApiKey) -> KeyInfo:
    return KeyInfo(row.key_id, row.name, frozenset(row.scopes.split()), row.created_at, row.revoked_at, row.last_used_at)


def check_scopes(scopes: list[str] | tuple[str, ...] | frozenset[str]) -> frozenset[str]:
    """The scopes as a set; UnknownScope names the first one that is not a scope."""
    if not scopes:
        raise UnknownScope("scope: at least one is required (" + ", ".join(sorted(SCOPES)) + ")")
    for scope in scopes:
        if scope not in SCOPES:
            raise UnknownScope(f"scope: {scope!r} is not one of " + ", ".join(sorted(SCOPES)))
    return frozenset(scopes)


def _new_row(name: str, scopes: frozenset[str]) -> tuple[ApiKey, str]:
    key_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
    row = ApiKey(key_id=key_id, name=name, scopes=" ".join(sorted(scopes)), secret_hash=_hash(secret), created_at=_now())
    return row, f"{PREFIX}_{key_id}_{secret}"


def create_key(sessions: sessionmaker[Session], name: str, scopes) -> tuple[KeyInfo, str]:
    """A new key: its description and the key itself (show it once, then forget it)."""
    name = name.strip()
    if not name or len(name) > 200:
        raise ValueError("name: 1 to 200 characters")
    wanted = check_scopes(tuple(scopes))
    row, key = _new_row(name, wanted)
    with sessions.begin() as db:
        db.add(row)
    return _info(row), key


def list_keys(sessions: sessionmaker[Session]) -> list[KeyInfo]:
    with sessions() as db:
        return [_info(row) for row in db.scalars(select(ApiKey).order_by(ApiKey.created_at, ApiKey.key_id))]


def revoke_key(sessions: sessionmaker[Session], key_id: str) -> KeyInfo:
    """Revoke a key (idempotent: revoking it again keeps the first time)."""
    with sessions.begin() as db:
        row = db.get(ApiKey, key_id)
        if row is None:
            raise NoSuchKey(key_id)
        if row.revoked_at is None:
            row.revoked_at = _now()
        return _info(row)


def rotate_key(sessions: sessionmaker[Session], key_id: str) -> tuple[KeyInfo, str]:
    """A new key with the old one's name and scopes; the old one is revoked in
    the same transaction, so exactly one of them works at any moment."""
    with sessions.begin() as db:
        old = db.get(ApiKey, key_id)
        if old is None or old.revoked_at is not None:
            raise NoSuchKey(key_id)
        row, key = _new_row(old.name, frozenset(old.scopes.split()))
        old.revoked_at = _now()
        db.add(row)
    return _info(row), key


def verify_key(sessions: sessionmaker[Session], presented: str) -> KeyInfo | None:
    """The key's description if `presented` is a live key, else None (for any
    reason: malformed, unknown, wrong secret, revoked; callers say no more)."""
    match = _KEY.fullmatch(presented or "")
    if match is None:
        return None
    key_id, secret = match.groups()
    with sessions() as db:
        row = db.get(ApiKey, key_id)
        if row is None or not hmac.compare_digest(row.secret_hash, _hash(secret)) or row.revoked_at is not None:
            return None
        info = _info(row)
    now = _now()
    if info.last_used_at is None or now - info.last_used_at > _TOUCH_EVERY:
        with sessions.begin() as db:
            touched = db.get(ApiKey, key_id)
            if touched is not None:
                touched.last_used_at = now
    return info
