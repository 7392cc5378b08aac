"""The payment service's signature on POST /payments (docs/gateway.md):
`X-Dunning-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of f"{t}.{raw body}">`
with the shared secret. A missing, forged or stale one is a 401."""

from __future__ import annotations

import hashlib
import hmac
import time


def _digest(secret: str, t: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()


def sign_payment(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The X-Dunning-Signature header for `body` (what the payment service computes)."""
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},v1={_digest(secret, t, body)}"


def check_payment_signature(secret: str, header: str | None, body: bytes, max_age: int, now: float | None = None) -> str | None:
    """None if the signature is good, else why not."""
    if not secret:
        return "no payments secret is configured"
    if not header:
        return "missing X-Dunning-Signature"
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        name, _, value = item.strip().partition("=")
        parts.setdefault(name, []).append(value)
    try:
        t = int(parts["t"][0])
    except (KeyError, ValueError):
        return "malformed X-Dunning-Signature: no t=<unix time>"
    now = time.time() if now is None else now
    if not -(2**53) < t < 2**53 or abs(now - t) > max_age:  # (a t= too large for a float is stale too)
        return "stale X-Dunning-Signature: outside the replay window"
    expected = _digest(secret, t, body)
    if not any(hmac.compare_digest(expected.encode(), v.encode("utf-8", "replace")) for v in parts.get("v1", [])):
        return "X-Dunning-Signature does not match"
    return None
