"""The payment service's signature on POST /payments (docs/gateway.md):
`X-Dunning-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of f"{t}.{raw body}">`
with a shared secret. A missing, forged or stale one is a 401.

Several secrets may be configured at once (DUNNING_PAYMENTS_SECRET: one, a
comma-separated list, or a JSON list), so the shared secret can be rotated:
add the new one, let the payment service switch, then drop the old one. A
signature made with any configured secret is good.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time


def _digest(secret: str, t: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()


def parse_secrets(value: object) -> tuple[str, ...]:
    """The configured secrets, from the setting's text (or SecretStr): a JSON
    list, else comma-separated; blanks dropped. () when none is configured."""
    if hasattr(value, "get_secret_value"):
        value = value.get_secret_value()
    if isinstance(value, (list, tuple)):
        items = [str(item) for item in value]
    else:
        text = str(value or "").strip()
        items = None
        if text.startswith("["):
            try:
                loaded = json.loads(text)
            except ValueError:
                loaded = None
            if isinstance(loaded, list):
                items = [str(item) for item in loaded]
        if items is None:
            items = text.split(",")
    return tuple(item.strip() for item in items if item.strip())


def sign_payment(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The X-Dunning-Signature header for `body` (what the payment service computes)."""
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},v1={_digest(secret, t, body)}"


def check_payment_signature(
    secrets: object, header: str | None, body: bytes, max_age: int, now: float | None = None
) -> str | None:
    """None if the signature is good, else why not (for the log: the caller
    answers a generic 401, so the reason never reaches the sender).
    `secrets`: one secret, a list of them, or the setting's text."""
    keys = parse_secrets(secrets)
    if not keys:
        return "no payments secret is configured (DUNNING_PAYMENTS_SECRET)"
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
    presented = [v.encode("utf-8", "replace") for v in parts.get("v1", [])]
    # Every secret is tried (no early exit), so timing does not tell which one matched.
    matched = False
    for key in keys:
        expected = _digest(key, t, body).encode()
        for candidate in presented:
            matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        return "X-Dunning-Signature does not match"
    return None
