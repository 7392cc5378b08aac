"""The HTTP edge: backends, the payment service, Twilio, SendGrid and borrowers
reach the workflows through here (docs/gateway.md).

    uvicorn gateway.app:app --port 8000

Every request that changes something is authenticated: payments with an
HMAC-SHA256 signature (401 when missing, forged or stale), Twilio webhooks
with X-Twilio-Signature (403), SendGrid events with the signed event webhook
key (403). A malformed body is a 422 whose `loc` names the field. Nothing
personal is sent to Temporal: signals carry ids, money and channel names.

`create_app` only assembles: one router per concern (gateway/routes/), over
one shared `Gateway` (gateway/deps.py: settings, database, Temporal client,
signal and query helpers), with one answer for malformed input
(gateway/bodies.py).
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError

from gateway.bodies import unprocessable
from gateway.deps import ClientFactory, Gateway
from gateway.routes import loans, pay_page, payments, sendgrid, twilio, visits
from gateway.settings import GatewaySettings, get_gateway_settings
from runtime.settings import Settings, get_settings

ROUTERS = (loans.router, payments.router, twilio.router, sendgrid.router, visits.router, pay_page.router)


def create_app(
    settings: Settings | None = None,
    client_factory: ClientFactory | None = None,
    gateway_settings: GatewaySettings | None = None,
) -> FastAPI:
    """The gateway. `client_factory` returns a connected Temporal client (or an
    awaitable of one); by default it connects with the settings."""
    app = FastAPI(
        title="dunning gateway",
        version="0.1.0",
        description="The HTTP edge of the dunning service: placing loans, payments, provider webhooks, the repayment page.",
    )
    app.state.gateway = Gateway(settings or get_settings(), gateway_settings or get_gateway_settings(), client_factory)
    app.add_exception_handler(RequestValidationError, unprocessable)
    for router in ROUTERS:
        app.include_router(router)
    return app


def __getattr__(name: str):
    # `uvicorn gateway.app:app`: built on first access, from the environment.
    if name == "app":
        built = globals()["app"] = create_app()
        return built
    raise AttributeError(name)
