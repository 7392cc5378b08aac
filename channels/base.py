"""The interface every provider adapter implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlencode

from dunning.masking import mask  # noqa: F401  (the channels' masking, from the core)


@dataclass(frozen=True)
class OutboundMessage:
    key: str  # the outbox key; providers that support it get it as an idempotency key
    channel: str
    recipient: str  # phone (E.164), e-mail address, or push target
    language: str
    text: str
    subject: str | None = None
    html: str | None = None
    # A short, non-personal label for provider reports (SendGrid categories):
    # the stage. None lets the provider derive it from the key.
    category: str | None = None
    # A call to be recorded (the profile's rules.record_calls): its script
    # announces it. Channels other than voice ignore it.
    record: bool = False


# The most HTML a print-and-mail provider takes inline for a letter (Lob's
# `file` parameter: 10,000 characters); the renderer keeps letters within it.
LETTER_HTML_MAX_CHARS = 10_000


@dataclass(frozen=True)
class ProviderReceipt:
    provider: str
    message_id: str


class ProviderConfigError(Exception):
    """A selected provider lacks a setting it needs; raised when the worker starts."""


class PermanentSendError(Exception):
    """The provider refused the message for good (bad number, bad request): do not retry."""


class TransientSendError(Exception):
    """The provider could not take the message now (rate limit, outage): retry later."""


class Channel(Protocol):
    name: str
    # True when sending the same key twice delivers once (local capture; the
    # push endpoint's Idempotency-Key). Twilio and SendGrid take no such key,
    # so a send interrupted after the request went out is never repeated.
    idempotent_by_key: bool

    def send(self, message: OutboundMessage) -> ProviderReceipt: ...


def callback_url(public_base_url: str, path: str, key: str) -> str:
    """A webhook URL on the gateway that names the outbox row (`?key=`): the
    key is workflow id + step, ids only, never an address."""
    return f"{public_base_url.rstrip('/')}{path}?{urlencode({'key': key})}"
