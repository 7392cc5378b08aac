"""The gateway as its tests set it up: its secrets (`PAYMENTS_SECRET`,
`TWILIO_TOKEN`, a SendGrid webhook key pair made per session),
`gateway_settings`, webhook headers signed the way Twilio (`twilio_signed`)
and SendGrid (`sendgrid_signed`) sign them, and `loan_status_when`, a loan's
GET /loans/{id} polled on the time-skipping server's clock."""

from __future__ import annotations

import base64
import time
from datetime import timedelta

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from twilio.request_validator import RequestValidator

from gateway.settings import GatewaySettings
from tests.support.polling import poll_until

PAYMENTS_SECRET = "payments-test-secret"
TWILIO_TOKEN = "twilio-test-token"
PUBLIC = "https://gw.example.com"

_SENDGRID_KEY = ec.generate_private_key(ec.SECP256R1())
SENDGRID_PUBLIC_KEY = base64.b64encode(
    _SENDGRID_KEY.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
).decode()


def gateway_settings(tmp_path) -> GatewaySettings:
    return GatewaySettings(
        DUNNING_PAYMENTS_SECRET=PAYMENTS_SECRET,
        TWILIO_AUTH_TOKEN=TWILIO_TOKEN,
        DUNNING_PUBLIC_BASE_URL=PUBLIC,
        SENDGRID_WEBHOOK_PUBLIC_KEY=SENDGRID_PUBLIC_KEY,
        DUNNING_LENDER_PAY_URL="https://lender.example/pay",
        DUNNING_INBOUND_REPLIES_PATH=str(tmp_path / "inbound.jsonl"),
    )


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
