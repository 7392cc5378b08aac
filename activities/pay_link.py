"""One-click repayment links: `<base_url>/<token>`, signed and expiring.

The token is an itsdangerous URL-safe timed signature over the loan id and
nothing else: anyone can base64-decode a token and read the loan id inside
(that is how itsdangerous works), so no name, phone number or amount ever goes
into it. Only the holder of the secret can make one, and the gateway's
repayment page refuses a token that was altered, signed with another secret
or salt, or is older than it allows.
"""

from __future__ import annotations

from typing import Final

from itsdangerous import BadData, SignatureExpired, URLSafeTimedSerializer

SALT: Final = "dunning-pay-link"


class PayLinkInvalid(ValueError):
    """A pay-link token that is expired, forged, altered or malformed."""


def _serializer(secret: str) -> URLSafeTimedSerializer:
    if not secret:
        raise ValueError("the pay-link secret is empty; set one before making or reading pay links")
    return URLSafeTimedSerializer(secret, salt=SALT)


def make_pay_link(base_url: str, secret: str, loan_id: str) -> str:
    """f"{base_url.rstrip('/')}/{token}", the token signing `loan_id` and the current time."""
    if not base_url or not base_url.strip():
        raise ValueError("base_url is empty")
    if not isinstance(loan_id, str) or not loan_id:
        raise ValueError("loan_id must be a non-empty string")
    token = _serializer(secret).dumps(loan_id)
    return f"{base_url.strip().rstrip('/')}/{token}"


def read_pay_token(secret: str, token: str, max_age_seconds: int) -> str:
    """The loan id a token was made for; PayLinkInvalid if expired or not ours."""
    serializer = _serializer(secret)
    try:
        loan_id = serializer.loads(token, max_age=max_age_seconds)
    except SignatureExpired as error:
        raise PayLinkInvalid(
            f"pay link expired: it is older than the {max_age_seconds} seconds a link is valid for"
        ) from error
    except BadData as error:
        raise PayLinkInvalid("pay link is not valid: its signature does not match (altered or forged)") from error
    if not isinstance(loan_id, str) or not loan_id:
        raise PayLinkInvalid("pay link is not valid: it does not name a loan")
    return loan_id
