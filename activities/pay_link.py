"""One-click repayment links: `<base_url>/<token>`, an opaque token kept hashed.

The token says nothing: it is 32 bytes that look random to anyone without
the pay-link secret, URL-safe base64 (43 characters). The database keeps only
its SHA-256 (`pay_tokens`), with the loan, the workflow, when it was made,
when it expires and whether it was revoked; the gateway finds a link's loan
by hashing the token it was given. So neither the link nor the table gives
away a loan id, and a copy of the table opens no pay page.

Why the token is derived, not drawn: a message is one outbox row per key, and
an attempt that is retried (or a deferred row drafted again) must put the
same link in the same message. A hash cannot be turned back into the token,
so a stored hash could not give the retry its token back; instead the token
is HMAC-SHA256(pay-link secret, contact key). Without the secret it cannot be
told from random bytes nor computed from the key; with it, the same key gives
the same token, and `issue_pay_link` adds its hash once (the key is unique).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from db.models import PayToken

# Domain separation: the pay-link secret signs nothing else with this prefix.
_PURPOSE: Final = b"dunning-pay-token/v1\x00"
TOKEN_LENGTH: Final = 43  # 32 bytes, URL-safe base64 without padding
DEFAULT_MAX_AGE_DAYS: Final = 30


class PayLinkInvalid(ValueError):
    """A pay-link token that is unknown, expired or revoked. The gateway
    answers them all alike, so a token's answer says nothing of its history."""


def pay_token(secret: str, contact_key: str) -> str:
    """The token of the message `contact_key`: HMAC-SHA256(secret, key), URL-safe base64."""
    if not secret:
        raise ValueError("pay-link secret: it is empty; set one before making pay links")
    if not isinstance(contact_key, str) or not contact_key:
        raise ValueError("contact_key: must be a non-empty string")
    digest = hmac.new(secret.encode("utf-8"), _PURPOSE + contact_key.encode("utf-8"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def token_hash(token: str) -> str:
    """The hex SHA-256 the database keeps instead of the token."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def pay_link_url(base_url: str, token: str) -> str:
    if not base_url or not base_url.strip():
        raise ValueError("base_url: it is empty")
    return f"{base_url.strip().rstrip('/')}/{token}"


def issue_pay_link(
    db: Session,
    *,
    base_url: str,
    secret: str,
    contact_key: str,
    loan_id: str,
    workflow_id: str,
    now: datetime,
    max_age_days: int = DEFAULT_MAX_AGE_DAYS,
) -> str:
    """The link for the message `contact_key`, its token's hash added (in
    `db`'s transaction, with the outbox row) the first time; the same link,
    and no second row, every time after. A concurrent first issue of the same
    key fails the unique constraint, which the outbox's claim retries."""
    if not isinstance(loan_id, str) or not loan_id:
        raise ValueError("loan_id: must be a non-empty string")
    if max_age_days < 1:
        raise ValueError(f"max_age_days: must be at least 1, got {max_age_days}")
    token = pay_token(secret, contact_key)
    url = pay_link_url(base_url, token)
    digest = token_hash(token)
    known = db.scalar(select(PayToken).where(PayToken.contact_key == contact_key))
    if known is None:
        db.add(PayToken(
            token_hash=digest, contact_key=contact_key, loan_id=loan_id, workflow_id=workflow_id,
            created_at=now, expires_at=now + timedelta(days=max_age_days),
        ))
        db.flush()
    elif known.token_hash != digest:
        # The secret changed since this message was first drafted: the new
        # token replaces the old, which no message carries any more.
        known.token_hash = digest
    return url


def resolve_pay_token(db: Session, token: str, now: datetime) -> PayToken:
    """The live token's row; PayLinkInvalid if unknown, expired or revoked."""
    if not isinstance(token, str) or len(token) != TOKEN_LENGTH:
        raise PayLinkInvalid("pay link is not valid")
    row = db.scalar(select(PayToken).where(PayToken.token_hash == token_hash(token)))
    if row is None or row.revoked_at is not None or row.expires_at <= now:
        raise PayLinkInvalid("pay link is not valid")
    return row


def revoke_pay_links(db: Session, loan_id: str, now: datetime) -> int:
    """Revoke every live link of a loan (a new contact, a closed loan); how many."""
    result = db.execute(
        update(PayToken).where(PayToken.loan_id == loan_id, PayToken.revoked_at.is_(None)).values(revoked_at=now)
    )
    return result.rowcount or 0
