"""The pay page's hand-off to the lender's own payment page: `<lender_pay_url>?handoff=<token>`.

The token is an itsdangerous URL-safe timed signature, with a secret shared
with the lender (`DUNNING_LENDER_HANDOFF_SECRET`), over the loan id, the
amount shown, its currency and what the borrower chose (pay, plan, dispute).
The lender checks it with `verify_handoff` (copy it: it needs only
itsdangerous) and refuses one that is altered, signed with another secret or
older than 15 minutes; so a link copied out of a browser's history, or a made
up `?loan=` of somebody else's loan, opens nothing on the lender's side.

Signed, not encrypted: whoever holds the hand-off URL (the borrower's browser,
then the lender) can read the loan id and amount in it. It is never put in a
message, lives for minutes, and the pay page sends no Referer with it.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Final
from urllib.parse import urlencode

from itsdangerous import URLSafeTimedSerializer

SALT: Final = "dunning-lender-handoff"
ACTIONS: Final = ("pay", "plan", "dispute")
PARAMETER: Final = "handoff"


def handoff_secret(configured: str, pay_link_secret: str) -> str:
    """The configured shared secret; unset, one derived from the pay-link
    secret (a local demo: no lender holds it), never the pay-link secret itself."""
    if configured:
        return configured
    if not pay_link_secret:
        raise ValueError("lender_handoff_secret: unset, and no pay-link secret to derive one from")
    return hmac.new(pay_link_secret.encode(), b"dunning-lender-handoff-secret", hashlib.sha256).hexdigest()


def make_handoff(secret: str, loan_id: str, amount: str, currency: str, action: str) -> str:
    """The signed hand-off token (timestamped now)."""
    if not secret:
        raise ValueError("lender_handoff_secret: it is empty")
    if action not in ACTIONS:
        raise ValueError(f"action: must be one of {', '.join(ACTIONS)}, got {action!r}")
    payload = {"loan_id": loan_id, "amount": str(amount or ""), "currency": str(currency or ""), "action": action}
    return URLSafeTimedSerializer(secret, salt=SALT).dumps(payload)


def handoff_url(lender_pay_url: str, token: str) -> str:
    separator = "&" if "?" in lender_pay_url else "?"
    return f"{lender_pay_url}{separator}{urlencode({PARAMETER: token})}"


# ---------------------------------------------------------------- the lender's side
# Copy this function into the lender's payment page (it needs only
# itsdangerous), with the same secret, SALT and max_age.


def verify_handoff(secret: str, token: str, max_age_seconds: int = 900) -> dict:
    """The hand-off's {"loan_id", "amount", "currency", "action"}; raises
    itsdangerous.BadData (SignatureExpired: too old; BadSignature: altered,
    forged, or signed with another secret) when it must be refused."""
    from itsdangerous import BadPayload, URLSafeTimedSerializer

    data = URLSafeTimedSerializer(secret, salt="dunning-lender-handoff").loads(token, max_age=max_age_seconds)
    if not isinstance(data, dict) or not isinstance(data.get("loan_id"), str) or not data["loan_id"]:
        raise BadPayload("the hand-off names no loan")
    return data
