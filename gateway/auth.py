"""Who may call the internal API: `Authorization: Bearer <key>` with a scoped
API key (db/api_keys.py), checked before a route does anything else.

    @router.post("/loans/overdue")
    async def place(caller: Caller = Depends(require_scope("loans:place")), ...)

No key, an unknown, malformed or revoked key: 401 "unauthorized". A live key
without the scope: 403 "forbidden". The texts are the same whatever the reason,
so a refusal tells a caller nothing about keys, routes or configuration; the
reason is logged (key id only, never the key).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import structlog
from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from db.api_keys import SCOPES, verify_key
from gateway.deps import Gateway, gateway

log = structlog.get_logger("gateway.auth")

# auto_error=False: a missing or non-Bearer header comes to us as None, so the
# answer is our generic 401 rather than FastAPI's own text.
bearer = HTTPBearer(auto_error=False, description="an API key: dk_<id>_<secret> (starter.py keys create)")


@dataclass(frozen=True)
class Caller:
    """The authenticated caller: its key's id, name and scopes (never the key)."""

    key_id: str
    name: str
    scopes: frozenset[str]


# For a route's OpenAPI `responses`.
AUTH_RESPONSES: dict[int | str, dict] = {
    401: {"description": "unauthorized: no API key, or an unknown or revoked one"},
    403: {"description": "forbidden: the API key lacks this route's scope"},
}


def unauthorized() -> HTTPException:
    return HTTPException(401, "unauthorized", headers={"WWW-Authenticate": "Bearer"})


def forbidden() -> HTTPException:
    return HTTPException(403, "forbidden")


def authenticate(gw: Gateway, request: Request, credentials: HTTPAuthorizationCredentials | None, scope: str) -> Caller:
    """The caller whose key holds `scope`; else 401 (no, unknown or revoked
    key) or 403 (no such scope), with the reason in the log only."""
    if credentials is None:
        log.info("auth_refused", reason="no bearer key", path=request.url.path, scope=scope)
        raise unauthorized()
    info = verify_key(gw.sessions(), credentials.credentials.strip())
    if info is None:
        log.warning("auth_refused", reason="unknown or revoked key", path=request.url.path, scope=scope)
        raise unauthorized()
    if scope not in info.scopes:
        log.warning("auth_forbidden", key_id=info.key_id, path=request.url.path, scope=scope)
        raise forbidden()
    return Caller(info.key_id, info.name, info.scopes)


def require_scope(scope: str) -> Callable[..., Caller]:
    """A dependency that returns the `Caller` whose key holds `scope`, or
    refuses the request (401/403) before the route body runs."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}")  # a programming error, at import time

    # A plain `def`: FastAPI runs it in its thread pool, so the database
    # lookup never blocks the event loop.
    def caller_with_scope(
        request: Request,
        credentials: HTTPAuthorizationCredentials | None = Depends(bearer),
        gw: Gateway = Depends(gateway),
    ) -> Caller:
        return authenticate(gw, request, credentials, scope)

    caller_with_scope.__name__ = f"require_{scope.replace(':', '_')}"
    return caller_with_scope
