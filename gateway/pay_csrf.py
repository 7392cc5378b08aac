"""CSRF protection of the pay page's forms (`POST /pay/<token>/plan`, and
the "this is wrong" form, `POST /pay/<token>/dispute`): a signed
double-submit cookie bound to the pay token (one proof serves both forms of
the page it was shown on).

Showing the page sets a random cookie (`pay_csrf`: HttpOnly, SameSite=Strict,
Secure over HTTPS) and puts HMAC(pay-link secret, cookie + the pay token's
hash) in each form's hidden `csrf` field. A plan is proposed, or a dispute
raised, only when the posted field matches the cookie the browser sent and
this pay token. Another site's page cannot read the field, cannot set our
cookie, and its POST does not carry the cookie (SameSite=Strict); a
browser's `Sec-Fetch-Site: cross-site` or an `Origin` that is not ours is
refused before anything else.

Why not starlette-csrf: its middleware takes the token from a request header
only, which a plain HTML form (this page has no script; its CSP allows none)
cannot send.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Final
from urllib.parse import urlsplit

from fastapi import Request
from fastapi.responses import Response

COOKIE: Final = "pay_csrf"
FIELD: Final = "csrf"
COOKIE_PATH: Final = "/pay/"
_PURPOSE: Final = b"dunning-pay-plan-csrf/v1\x00"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def form_proof(secret: str, cookie: str, token_hash: str) -> str:
    """What the form's hidden field must hold for this cookie and pay token."""
    message = _PURPOSE + cookie.encode("utf-8", "surrogatepass") + b"\x00" + token_hash.encode("ascii")
    return _b64(hmac.new(secret.encode("utf-8"), message, hashlib.sha256).digest())


def browser_cookie(request: Request) -> str | None:
    """The request's pay_csrf cookie, if it is one we could have set."""
    value = request.cookies.get(COOKIE)
    return value if value and 20 <= len(value) <= 100 and value.isascii() else None


def new_cookie() -> str:
    return secrets.token_urlsafe(32)


def set_cookie(response: Response, request: Request, value: str) -> None:
    response.set_cookie(
        COOKIE, value, path=COOKIE_PATH, httponly=True, samesite="strict", secure=request.url.scheme == "https",
    )


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def cross_site(request: Request, own_urls: tuple[str, ...]) -> bool:
    """True if the browser says this POST comes from another site."""
    if request.headers.get("sec-fetch-site", "").lower() == "cross-site":
        return True
    origin = request.headers.get("origin")
    if origin is None:
        return False
    allowed = {_origin(str(request.base_url))} | {_origin(url) for url in own_urls if url}
    return origin.lower() not in allowed  # includes "null" (a sandboxed or file: page)


def form_is_ours(request: Request, posted: object, secret: str, token_hash: str) -> bool:
    """True if the posted field was made for this browser's cookie and this pay token."""
    cookie = browser_cookie(request)
    if cookie is None or not isinstance(posted, str) or not posted:
        return False
    return hmac.compare_digest(posted.encode("utf-8", "surrogatepass"), form_proof(secret, cookie, token_hash).encode())
