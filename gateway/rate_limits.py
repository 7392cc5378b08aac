"""Rate limits, before a route runs: per API key on the internal API, per
client address on the public edge, per pay token on the pay pages.

Every pay-page or `/loans` hit runs a Temporal query, so one caller hammering
either was a load on Temporal (issue 14, finding 6). The counting is the
`limits` library's (the one slowapi is built on; moving windows), in this
process's memory by default, or in the shared storage
`DUNNING_GATEWAY_RATE_LIMIT_STORAGE` names (e.g. `redis://host:6379`) so every
gateway process counts together. Over a limit: 429 with `Retry-After`.

A pure ASGI middleware keyed on the path, so no route module has to know about
it, and the internal and public apps get it alike (gateway/limits.py).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass

import anyio.to_thread
import structlog
from limits import RateLimitItem, parse
from limits.storage import MemoryStorage, storage_from_string
from limits.strategies import MovingWindowRateLimiter

from gateway.settings import GatewaySettings

log = structlog.get_logger("gateway.limits")

# Paths whose callers are the providers (signed, a few addresses sending for
# every loan): counted per address under their own, higher limit.
_PROVIDER_PATHS = ("/payments", "/payments/reversals")
_PROVIDER_PREFIXES = ("/webhooks/",)


def _limit(env: str, value: str) -> RateLimitItem | None:
    """The setting's limit ("120/minute"); None when it is set to "" (off)."""
    if not value.strip():
        return None
    try:
        return parse(value)
    except ValueError:
        raise ValueError(f"{env}: {value!r} is not a rate limit such as '120/minute'") from None


def _digest(secret: str) -> str:
    """What the counters are keyed by instead of a bearer key or pay token:
    neither is kept in memory or in a shared storage as it came."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()[:32]


@dataclass(frozen=True)
class RateLimits:
    """The limits of one app, from its settings; None: that limit is off."""

    per_key: RateLimitItem | None
    per_keyed_ip: RateLimitItem | None
    per_ip: RateLimitItem | None
    per_pay_token: RateLimitItem | None
    per_provider_ip: RateLimitItem | None
    storage_uri: str

    @classmethod
    def from_settings(cls, edge: GatewaySettings) -> RateLimits:
        return cls(
            per_key=_limit("DUNNING_GATEWAY_RATE_LIMIT_PER_KEY", edge.rate_limit_per_key),
            per_keyed_ip=_limit("DUNNING_GATEWAY_RATE_LIMIT_KEYED_PER_IP", edge.rate_limit_keyed_per_ip),
            per_ip=_limit("DUNNING_GATEWAY_RATE_LIMIT_PER_IP", edge.rate_limit_per_ip),
            per_pay_token=_limit("DUNNING_GATEWAY_RATE_LIMIT_PER_PAY_TOKEN", edge.rate_limit_per_pay_token),
            per_provider_ip=_limit("DUNNING_GATEWAY_RATE_LIMIT_PROVIDERS", edge.rate_limit_providers),
            storage_uri=edge.rate_limit_storage or "memory://",
        )

    def buckets(self, scope: dict) -> list[tuple[str, RateLimitItem | None, str]]:
        """(bucket, limit, whose) for each counter this request is counted in."""
        path: str = scope.get("path", "")
        client = scope.get("client")
        address = str(client[0]) if client else "unknown"
        if path.startswith("/pay/"):
            token = path.split("/")[2]
            return [("ip", self.per_ip, address), ("pay-token", self.per_pay_token, _digest(token))]
        if path in _PROVIDER_PATHS or path.startswith(_PROVIDER_PREFIXES):
            return [("provider-ip", self.per_provider_ip, address)]
        bearer = _bearer(scope)
        if bearer:
            # The key as sent (a caller holding one key is counted as one), and
            # the address at the same rate: whoever invents a new bearer value
            # for every request is still counted where the requests come from.
            return [("keyed-ip", self.per_keyed_ip, address), ("key", self.per_key, _digest(bearer))]
        return [("ip", self.per_ip, address)]


def _bearer(scope: dict) -> str | None:
    for name, value in scope.get("headers") or ():
        if name == b"authorization":
            scheme, _, credentials = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and credentials.strip():
                return credentials.strip()
    return None


class RateLimit:
    """429 with Retry-After once a request's key, address or pay token is over its limit."""

    def __init__(self, app, limits: RateLimits) -> None:
        self.app, self.limits = app, limits
        self.storage = storage_from_string(limits.storage_uri)
        self.limiter = MovingWindowRateLimiter(self.storage)
        # The in-memory counters answer at once; a network storage is asked
        # from a worker thread so the event loop never waits on it.
        self._local = isinstance(self.storage, MemoryStorage)

    async def _call(self, function, *args):
        return function(*args) if self._local else await anyio.to_thread.run_sync(function, *args)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for bucket, item, whose in self.limits.buckets(scope):
            if item is None:
                continue
            try:
                allowed = await self._call(self.limiter.hit, item, bucket, whose)
            except Exception as error:  # the storage is down: serve rather than refuse everyone
                log.warning("rate_limit_storage_failed", error=str(error)[:200])
                break
            if not allowed:
                stats = await self._call(self.limiter.get_window_stats, item, bucket, whose)
                retry_after = max(1, math.ceil(stats.reset_time - time.time()))
                log.warning("rate_limited", bucket=bucket, limit=str(item))
                return await _too_many(send, retry_after)
        await self.app(scope, receive, send)


async def _too_many(send, retry_after: int) -> None:
    body = json.dumps({"detail": "too many requests"}).encode()
    await send({
        "type": "http.response.start",
        "status": 429,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", str(retry_after).encode()),
        ],
    })
    await send({"type": "http.response.body", "body": body})
