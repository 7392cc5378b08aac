"""What one request may cost the gateway, enforced before a route reads its
body: `install_limits(app, settings)` puts them on an app (the internal and
the public one alike).

In the order a request meets them:

1. rate limits (gateway/rate_limits.py): 429 with Retry-After;
2. a signed endpoint's signature header must be there (`POST /payments`:
   401; Twilio and SendGrid webhooks: 403) before one byte of the body is read:
   an unsigned 400 MB POST /payments had grown the gateway by 600 MB before it
   answered 401;
3. the body size (`DUNNING_GATEWAY_MAX_BODY_BYTES`, 1 MiB by default): a
   Content-Length over it is a 413 at once; a body without one (chunked) is
   counted as it streams and cut off with a 413 the moment it is over, so no
   more than the limit (and one chunk) is ever held;
4. JSON depth and size (gateway/bodies.py's limits) on a JSON body FastAPI
   would parse for a route's body model, before anything is built from it: 422
   naming the limit. Routes that read their raw body (payments, webhooks, field
   reports) run the same check themselves, after their signature or key
   (`gateway.bodies.parse_json`).

Pure ASGI middlewares, keyed on the path, so no route module changes for them.
"""

from __future__ import annotations

import json

from gateway.bodies import json_limit_problem
from gateway.rate_limits import RateLimit, RateLimits
from gateway.settings import GatewaySettings

# (method, path or path prefix, headers that must all be present, refusal status, text).
# The texts are generic: a refusal says nothing about how the endpoint is configured.
SIGNED: tuple[tuple[str, str, tuple[bytes, ...], int, str], ...] = (
    ("POST", "/payments", (b"x-dunning-signature",), 401, "unauthorized"),
    ("POST", "/payments/reversals", (b"x-dunning-signature",), 401, "unauthorized"),  # issue 18, item 3
    ("POST", "/webhooks/twilio/", (b"x-twilio-signature",), 403, "forbidden"),
    ("POST", "/webhooks/sendgrid/events",
     (b"x-twilio-email-event-webhook-signature", b"x-twilio-email-event-webhook-timestamp"), 403, "forbidden"),
    ("POST", "/webhooks/lob/events", (b"lob-signature", b"lob-signature-timestamp"), 403, "forbidden"),
)

_NO_BODY_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _signed_rule(scope: dict) -> tuple[tuple[bytes, ...], int, str] | None:
    path, method = scope.get("path", ""), scope.get("method", "")
    for rule_method, rule_path, headers, status, text in SIGNED:
        if method == rule_method and (path == rule_path or (rule_path.endswith("/") and path.startswith(rule_path))):
            return headers, status, text
    return None


def _headers(scope: dict) -> dict[bytes, bytes]:
    return {name.lower(): value for name, value in scope.get("headers") or ()}


async def _answer(send, status: int, detail, extra: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra],
    })
    await send({"type": "http.response.body", "body": body})


class SignatureFirst:
    """A signed endpoint without its signature header is refused unread."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            rule = _signed_rule(scope)
            if rule is not None:
                required, status, text = rule
                present = _headers(scope)
                if not all(present.get(name, b"").strip() for name in required):
                    return await _answer(send, status, text)
        await self.app(scope, receive, send)


class BodyTooLarge(Exception):
    """Raised into the app by `receive` once the body is over the limit."""


class BodySizeLimit:
    """413 for a body over `max_bytes`, before or while it is read."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    def _refusal(self) -> str:
        return f"the request body is larger than the limit of {self.max_bytes:,} bytes"

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = _headers(scope).get(b"content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                return await _answer(send, 400, "Content-Length is not a number")
            if int(declared) > self.max_bytes:
                return await _answer(send, 413, self._refusal(), ((b"connection", b"close"),))

        received, over, started = 0, False, False

        async def capped_receive():
            nonlocal received, over
            if over:
                raise BodyTooLarge
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    over = True
                    raise BodyTooLarge
            return message

        async def guarded_send(message) -> None:
            nonlocal started
            if over:
                return  # whatever the app made of the cut-off body, the answer is the 413 below
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, capped_receive, guarded_send)
        except Exception:
            if not over:
                raise
        if over and not started:
            await _answer(send, 413, self._refusal(), ((b"connection", b"close"),))


def _is_json(scope: dict) -> bool:
    """Would FastAPI parse this body as JSON? (no Content-Type, or a JSON one)."""
    content_type = _headers(scope).get(b"content-type")
    if content_type is None:
        return True
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (media.startswith(b"application/") and media.endswith(b"+json"))


# Routes that read their raw body and parse it with `gateway.bodies.parse_json`
# (the same limits) once their signature or key is checked: a caller who is not
# allowed in is refused as such, whatever the body. FastAPI parses every other
# JSON body itself, before the route's dependencies (authentication) run, so
# checking those here first changes no answer but the limit's.
PARSE_THEIR_OWN_BODY = ("/payments", "/payments/reversals", "/webhooks/", "/visits/")


def _parses_its_own_body(scope: dict) -> bool:
    path = scope.get("path", "")
    return any(path == p or (p.endswith("/") and path.startswith(p)) for p in PARSE_THEIR_OWN_BODY)


class JsonShapeLimit:
    """422 naming the limit for a JSON body nested too deep or holding too
    many keys and items, before FastAPI parses it for a route's body model.
    The body is at most the size limit here."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if (scope["type"] != "http" or scope.get("method") in _NO_BODY_METHODS
                or _parses_its_own_body(scope) or not _is_json(scope)):
            return await self.app(scope, receive, send)
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away before its body was complete
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        problem = json_limit_problem(body)
        if problem is not None:
            return await _answer(send, 422, problem.errors())
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def install_limits(app, edge: GatewaySettings) -> None:
    """Every limit above on `app` (Starlette adds the last one outermost)."""
    app.add_middleware(JsonShapeLimit)
    app.add_middleware(BodySizeLimit, max_bytes=edge.max_body_bytes)
    app.add_middleware(SignatureFirst)
    app.add_middleware(RateLimit, limits=RateLimits.from_settings(edge))
