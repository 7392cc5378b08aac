"""One-click e-mail unsubscribe links (RFC 8058): a URL on the gateway's
public face that names the message's outbox key and carries a signature of it.

    <public base>/webhooks/email/unsubscribe?key=<outbox key>&sig=<signature>

The signature is HMAC-SHA256(secret, purpose + key), URL-safe base64: without
the secret nobody can make one for another key, so a link opts out only the
loan whose message carried it. The secret is the one the pay links are
derived from (runtime/settings.py `signing_secret`), separated from them by
the purpose prefix. The SendGrid channel puts the URL in the `List-Unsubscribe`
header; the e-mail templates show it as `{{ unsubscribe_url }}`; the gateway
(gateway/routes/email_unsubscribe.py) checks it with `unsubscribe_signature_ok`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Final
from urllib.parse import urlencode

UNSUBSCRIBE_PATH: Final = "/webhooks/email/unsubscribe"
_PURPOSE: Final = b"dunning-email-unsubscribe/v1\x00"


def unsubscribe_signature(secret: str, key: str) -> str:
    """HMAC-SHA256(secret, purpose + key), URL-safe base64 without padding."""
    if not secret:
        raise ValueError("unsubscribe secret: it is empty")
    if not isinstance(key, str) or not key:
        raise ValueError("key: must be a non-empty string")
    digest = hmac.new(secret.encode("utf-8"), _PURPOSE + key.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def unsubscribe_signature_ok(secret: str, key: str, signature: str) -> bool:
    """True only for the signature `unsubscribe_signature` makes for this key."""
    if not secret or not isinstance(key, str) or not key or not isinstance(signature, str) or not signature:
        return False
    return hmac.compare_digest(unsubscribe_signature(secret, key).encode("ascii"),
                               signature.encode("utf-8", "surrogatepass"))


def unsubscribe_url(public_base_url: str, secret: str, key: str) -> str:
    """The message's one-click unsubscribe URL on the gateway."""
    query = urlencode({"key": key, "sig": unsubscribe_signature(secret, key)})
    return f"{public_base_url.rstrip('/')}{UNSUBSCRIBE_PATH}?{query}"
