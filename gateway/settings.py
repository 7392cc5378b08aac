"""The gateway's own settings, from the environment (pydantic-settings).

The core settings (Temporal, database, pay-link secret) stay in
runtime/settings.py; these are only what the HTTP edge needs. Left unset, a
secret refuses every request it would verify: an unconfigured webhook is
closed, never open.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from runtime.settings import STATE_DIR


def _env(name: str, **kwargs):
    return Field(validation_alias=AliasChoices(name), **kwargs)


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=False)

    # HMAC-SHA256 secret shared with the payment service (POST /payments).
    payments_secret: str = _env("DUNNING_PAYMENTS_SECRET", default="")
    # How old a signed payment notification may be (its `t=`), in seconds.
    payments_max_age_seconds: int = _env("DUNNING_PAYMENTS_MAX_AGE_SECONDS", default=300)
    # Twilio's auth token: X-Twilio-Signature is checked with it.
    twilio_auth_token: str = _env("TWILIO_AUTH_TOKEN", default="")
    # The gateway's public address as Twilio sees it (signatures cover the full URL).
    public_base_url: str = _env("DUNNING_PUBLIC_BASE_URL", default="http://localhost:8000")
    # SendGrid's signed event webhook verification key (base64 DER, as the console shows it).
    sendgrid_webhook_public_key: str = _env("SENDGRID_WEBHOOK_PUBLIC_KEY", default="")
    # The lender's own payment page; the pay page's button goes to `<url>?loan=<loan_id>`.
    lender_pay_url: str = _env("DUNNING_LENDER_PAY_URL", default="https://lender.example/pay")
    # Inbound SMS replies for an agent (JSON lines; holds phone numbers and text, like the database).
    inbound_replies_path: str = _env("DUNNING_INBOUND_REPLIES_PATH", default=str(STATE_DIR / "inbound_replies.jsonl"))


@lru_cache(maxsize=1)
def get_gateway_settings() -> GatewaySettings:
    return GatewaySettings()
