"""The HTTP edge: backends, the payment service, Twilio, SendGrid and borrowers
reach the workflows through here (docs/gateway.md, docs/security.md).

Two faces, each its own ASGI app, so each can listen on its own port behind
its own network boundary (docs/operations.md):

    uvicorn gateway.app:internal_app --port 8001   the lender's systems: placing and
                                                   reading loans, field visits, operator
                                                   actions (make gateway-internal)
    uvicorn gateway.app:public_app --port 8000     the internet: pay page, provider
                                                   webhooks, payments, health
                                                   (make gateway-public)
    uvicorn gateway.app:app --port 8000            both on one port (make gateway, the demo)

Every request that changes something is authenticated: internal routes with a
scoped API key as `Authorization: Bearer` (gateway/auth.py; 401/403 with a
generic text), payments with an HMAC-SHA256 signature (401 when missing,
forged or stale), Twilio webhooks with X-Twilio-Signature (403), SendGrid
events with the signed event webhook key (403). A malformed body is a 422
whose `loc` names the field. Nothing personal is sent to Temporal: signals
carry ids, money and channel names. /docs, /redoc and /openapi.json are off
unless DUNNING_GATEWAY_DOCS=1.

`create_app` only assembles: one router per concern (gateway/routes/), over
one shared `Gateway` (gateway/deps.py: settings, database, Temporal client,
signal and query helpers), with one answer for malformed input
(gateway/bodies.py).
"""

from __future__ import annotations

from typing import Literal

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError

from gateway.bodies import unprocessable
from gateway.deps import ClientFactory, Gateway
from gateway.limits import install_limits
from gateway.routes import borrowers, email_unsubscribe, health, loans, lob, pay_page, payments, sendgrid, tasks, twilio, visits
from gateway.settings import GatewaySettings, get_gateway_settings
from runtime.logging import configure_logging
from runtime.settings import Settings, get_settings

Face = Literal["both", "internal", "public"]

# The lender's own systems, each route behind a scoped API key.
INTERNAL_ROUTERS = (loans.router, visits.router, borrowers.router, tasks.router)
# What the internet reaches: each route trusts only its own signature or token.
PUBLIC_ROUTERS = (payments.router, twilio.router, sendgrid.router, lob.router, email_unsubscribe.router, pay_page.router)
# Served by both faces.
COMMON_ROUTERS = (health.router,)
ROUTERS = (*INTERNAL_ROUTERS, *PUBLIC_ROUTERS, *COMMON_ROUTERS)
FACES: dict[str, tuple] = {
    "both": ROUTERS,
    "internal": (*INTERNAL_ROUTERS, *COMMON_ROUTERS),
    "public": (*PUBLIC_ROUTERS, *COMMON_ROUTERS),
}


def create_app(
    settings: Settings | None = None,
    client_factory: ClientFactory | None = None,
    gateway_settings: GatewaySettings | None = None,
    face: Face = "both",
) -> FastAPI:
    """The gateway, or one face of it. `client_factory` returns a connected
    Temporal client (or an awaitable of one); by default it connects with the settings."""
    if face not in FACES:
        raise ValueError(f"face: {face!r} is not one of both, internal, public")
    edge = gateway_settings or get_gateway_settings()
    docs = edge.docs_enabled
    app = FastAPI(
        title="dunning gateway" if face == "both" else f"dunning gateway ({face})",
        version="0.1.0",
        description="The HTTP edge of the dunning service: placing loans, payments, provider webhooks, the repayment page.",
        # A map of every route for whoever reaches the port: only when asked for.
        openapi_url="/openapi.json" if docs else None,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
    )
    app.state.gateway = Gateway(settings or get_settings(), edge, client_factory)
    app.state.face = face
    app.add_exception_handler(RequestValidationError, unprocessable)
    for router in FACES[face]:
        app.include_router(router)
    # Rate, signature-header, body-size and JSON limits, before any route reads a body.
    install_limits(app, edge)
    return app


_FACE_OF = {"app": "both", "internal_app": "internal", "public_app": "public"}


def __getattr__(name: str):
    # `uvicorn gateway.app:app` (or :internal_app, :public_app): built on
    # first access, from the environment.
    if name in _FACE_OF:
        # The worker's JSON log lines, uvicorn's access log included, with
        # pay-link tokens redacted (runtime/logging.py). uvicorn configured
        # its own console logging before loading the app; this replaces it.
        configure_logging(get_settings().log_level)
        built = globals()[name] = create_app(face=_FACE_OF[name])
        return built
    raise AttributeError(name)
