"""The gateway as its tests set it up: its secrets (`PAYMENTS_SECRET`,
`TWILIO_TOKEN`, a SendGrid webhook key pair made per session),
`gateway_settings`, API keys for the internal routes (`keyed`: headers
with an all-scopes key in the app's database), webhook headers signed the way Twilio (`twilio_signed`)
and SendGrid (`sendgrid_signed`) sign them, and `loan_status_when`, a loan's
GET /loans/{id} polled on the time-skipping server's clock."""

from __future__ import annotations

import base64
import time
from datetime import timedelta

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from twilio.request_validator import RequestValidator

from db.api_keys import SCOPES, create_key
from gateway.settings import GatewaySettings
from tests.support.polling import poll_until

PAYMENTS_SECRET = "payments-test-secret"
TWILIO_TOKEN = "twilio-test-token"
PUBLIC = "https://gw.example.com"

_SENDGRID_KEY = ec.generate_private_key(ec.SECP256R1())
SENDGRID_PUBLIC_KEY = base64.b64encode(
    _SENDGRID_KEY.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
).decode()


def gateway_settings(tmp_path, docs: bool = False) -> GatewaySettings:
    return GatewaySettings(
        DUNNING_GATEWAY_DOCS=docs,
        DUNNING_PAYMENTS_SECRET=PAYMENTS_SECRET,
        TWILIO_AUTH_TOKEN=TWILIO_TOKEN,
        DUNNING_PUBLIC_BASE_URL=PUBLIC,
        SENDGRID_WEBHOOK_PUBLIC_KEY=SENDGRID_PUBLIC_KEY,
        DUNNING_LENDER_PAY_URL="https://lender.example/pay",
    )


def api_key(app, scopes=SCOPES, name: str = "tests") -> str:
    """A new API key with `scopes` (all of them by default), in `app`'s database."""
    return create_key(app.state.gateway.sessions(), name, tuple(scopes))[1]


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def keyed(app, scopes=SCOPES) -> dict:
    """Headers for a client of `app` that carries a valid key (all scopes by
    default): `httpx.AsyncClient(..., headers=keyed(app))`."""
    return bearer(api_key(app, scopes))


def twilio_signed(path: str, params: dict, token: str = TWILIO_TOKEN) -> dict:
    return {"X-Twilio-Signature": RequestValidator(token).compute_signature(PUBLIC + path, params)}


def sendgrid_signed(body: str, key=_SENDGRID_KEY) -> dict:
    timestamp = str(int(time.time()))
    signature = key.sign((timestamp + body).encode(), ec.ECDSA(hashes.SHA256()))
    return {
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
        "Content-Type": "application/json",
    }


async def loan_status_when(http, time_env, loan_id: str, condition, tries: int) -> dict:
    """The gateway's status of the loan once `condition` holds, moving the
    server's clock 30 seconds between tries: the workflow only gets on by its
    timers firing, which real time does not do on the time-skipping server."""
    async def fetch() -> dict:
        return (await http.get(f"/loans/{loan_id}")).json()

    return await poll_until(
        fetch, condition, lambda: time_env.sleep(timedelta(seconds=30)), tries,
        lambda answer: f"status never met the condition: {answer}",
    )


class RecordedSignals:
    """A Temporal client that records every signal instead of sending it."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, dict]] = []

    def get_workflow_handle(self, workflow_id: str):
        signals = self

        class Handle:
            async def signal(self, name: str, payload: dict) -> None:
                signals.sent.append((workflow_id, name, payload))

        return Handle()
