"""The gateway's own settings, from the environment (pydantic-settings).

The core settings (Temporal, database, pay-link secret) stay in
runtime/settings.py; these are only what the HTTP edge needs. Left unset, a
secret refuses every request it would verify: an unconfigured webhook is
closed, never open.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import SettingsConfigDict

from runtime.settings import SecretSettings


def _env(name: str, **kwargs):
    return Field(validation_alias=AliasChoices(name), **kwargs)


class GatewaySettings(SecretSettings):
    """Secrets are SecretStr: repr(settings) shows `**********` for them."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=False)

    # HMAC-SHA256 secret(s) shared with the payment service (POST /payments):
    # one, or several (comma-separated, or a JSON list) while a key is rotated;
    # a signature made with any of them is accepted (gateway/payment_signature.py).
    payments_secret: SecretStr = _env("DUNNING_PAYMENTS_SECRET", default=SecretStr(""))
    # How old a signed payment notification may be (its `t=`), in seconds.
    payments_max_age_seconds: int = _env("DUNNING_PAYMENTS_MAX_AGE_SECONDS", default=300)
    # Twilio's auth token: X-Twilio-Signature is checked with it.
    twilio_auth_token: SecretStr = _env("TWILIO_AUTH_TOKEN", default=SecretStr(""))
    # The gateway's public address as Twilio sees it (signatures cover the full URL).
    public_base_url: str = _env("DUNNING_PUBLIC_BASE_URL", default="http://localhost:8000")
    # SendGrid's signed event webhook verification key (base64 DER, as the console shows it).
    sendgrid_webhook_public_key: str = _env("SENDGRID_WEBHOOK_PUBLIC_KEY", default="")
    # How far (seconds, either way) a signed event's X-Twilio-Email-Event-Webhook-Timestamp
    # may be from now: an older signed body replayed is refused (403).
    sendgrid_max_age_seconds: int = _env("DUNNING_SENDGRID_MAX_AGE_SECONDS", default=600, ge=1)
    # The lender's own payment page; the pay page's buttons go to `<url>?handoff=<token>`,
    # a token signed with `lender_handoff_secret` (gateway/handoff.py, docs/gateway.md).
    lender_pay_url: str = _env("DUNNING_LENDER_PAY_URL", default="https://lender.example/pay")
    # Shared with the lender, who verifies the hand-off with it. Unset, one is
    # derived from the pay-link secret: fine for a demo, but then the lender has
    # no copy; set it in production.
    lender_handoff_secret: SecretStr = _env("DUNNING_LENDER_HANDOFF_SECRET", default=SecretStr(""))
    # How long a hand-off stays valid after the pay page was shown, in seconds.
    lender_handoff_max_age_seconds: int = _env("DUNNING_LENDER_HANDOFF_MAX_AGE_SECONDS", default=900, ge=30)
    # How a borrower reaches the lender, as the inbound SMS HELP reply gives it
    # (a phone number, an address, a web page: config/inbound_keywords.toml).
    # Unset, the reply offers the AGENT callback instead.
    lender_contact: str = _env("DUNNING_LENDER_CONTACT", default="", max_length=160)
    # Limits (gateway/limits.py). A larger body is refused (413) before it is read.
    max_body_bytes: int = _env("DUNNING_GATEWAY_MAX_BODY_BYTES", default=1_048_576, ge=1)
    # Rate limits ("<n>/<second|minute|hour|day>"; "" turns one off): per API key
    # on the internal API, per client address (pay pages, and requests with no
    # key), per pay token, per address on the providers' signed webhooks.
    rate_limit_per_key: str = _env("DUNNING_GATEWAY_RATE_LIMIT_PER_KEY", default="600/minute")
    rate_limit_per_ip: str = _env("DUNNING_GATEWAY_RATE_LIMIT_PER_IP", default="120/minute")
    rate_limit_per_pay_token: str = _env("DUNNING_GATEWAY_RATE_LIMIT_PER_PAY_TOKEN", default="60/minute")
    rate_limit_providers: str = _env("DUNNING_GATEWAY_RATE_LIMIT_PROVIDERS", default="3000/minute")
    # Requests carrying a bearer value, per address, whatever the value: one
    # host's several real keys are served, a stranger inventing a new value
    # for every request is still counted where the requests come from.
    rate_limit_keyed_per_ip: str = _env("DUNNING_GATEWAY_RATE_LIMIT_KEYED_PER_IP", default="1200/minute")
    # Where the counters live: this process ("memory://"), or shared by every
    # gateway process ("redis://host:6379", any storage the `limits` library knows).
    rate_limit_storage: str = _env("DUNNING_GATEWAY_RATE_LIMIT_STORAGE", default="memory://")
    # /docs, /redoc and /openapi.json: off unless enabled (they map every route
    # for whoever can reach the port).
    docs_enabled: bool = _env("DUNNING_GATEWAY_DOCS", default=False)


@lru_cache(maxsize=1)
def get_gateway_settings() -> GatewaySettings:
    return GatewaySettings()
