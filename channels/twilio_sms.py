"""SMS through Twilio's Programmable Messaging, with the official `twilio` SDK.

Also the parts the voice channel shares: the REST client (pointed at
`TWILIO_API_BASE_URL`, so tests can put a spec-checking server behind it),
`TwilioChannel` (client, callback URLs, sender, receipt) and the mapping of
Twilio's errors onto the channel interface:

- 429 and 5xx, and no answer at all (connection refused, timeout): the
  message may go later, `TransientSendError` (the activity is retried);
- any other 4xx (a bad number, an unverified sender, a blocked destination):
  `PermanentSendError` (recorded `failed`, never retried), with Twilio's
  error code in the message and the recipient masked.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import requests
import structlog
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from channels.base import (
    OutboundMessage,
    PermanentSendError,
    ProviderReceipt,
    TransientSendError,
    callback_url,
    mask,
)

log = structlog.get_logger("channels.twilio")

TWILIO_API = "https://api.twilio.com"
STATUS_PATH = "/webhooks/twilio/status"


class RebasedTwilioHttpClient(TwilioHttpClient):
    """The SDK's own HTTP client, sending what it would send to
    https://api.twilio.com to another base URL instead (a regional proxy, or a
    test server). Everything else (auth, form encoding, headers) is the SDK's."""

    def __init__(self, base_url: str = TWILIO_API, timeout: float | None = 30.0) -> None:
        super().__init__(timeout=timeout)
        self.base_url = base_url.rstrip("/")

    def request(self, method, url, params=None, data=None, headers=None, auth=None, timeout=None,
                allow_redirects=False) -> Response:
        if self.base_url != TWILIO_API and url.startswith(TWILIO_API):
            url = self.base_url + url[len(TWILIO_API):]
        return super().request(method, url, params=params, data=data, headers=headers, auth=auth,
                               timeout=timeout, allow_redirects=allow_redirects)


def make_twilio_client(account_sid: str, auth_token: str, base_url: str = TWILIO_API,
                       timeout: float | None = 30.0) -> Client:
    return Client(account_sid, auth_token, http_client=RebasedTwilioHttpClient(base_url, timeout))


def twilio_error(error: Exception, recipient: str, what: str) -> Exception:
    """The channel error for what the SDK raised: transient or permanent, the
    recipient masked wherever Twilio quoted it."""
    if isinstance(error, (TwilioRestException, TwilioServiceException)):
        # The legacy error body ({"code", "message", "more_info", "status"})
        # or the RFC 9457 one ({"type", "title", "status", "code", "detail"}).
        if isinstance(error, TwilioRestException):
            text = error.msg or ""
        else:
            text = error.detail or error.title or ""
        text = str(text).replace(recipient, mask(recipient))
        status = int(error.status or 0)
        detail = f"twilio {what} refused: HTTP {status}, error {error.code}: {text}"
        if status == 429 or status >= 500 or status == 0:
            return TransientSendError(detail)
        return PermanentSendError(detail)
    if isinstance(error, (requests.RequestException, TwilioException)):
        return TransientSendError(f"twilio {what} not reached: {type(error).__name__}")
    return error


class TwilioChannel:
    """What the SMS and voice channels share: the SDK client, the gateway's
    base URL for Twilio's callbacks, the sender, and one way to create a
    message or call and answer with its receipt."""

    idempotent_by_key = False  # no idempotency key: an interrupted send is never repeated

    def __init__(self, client: Client, public_base_url: str, from_number: str) -> None:
        self._client = client
        self._public_base_url = public_base_url
        self._from = from_number

    def _callback(self, path: str, key: str) -> str:
        return callback_url(self._public_base_url, path, key)

    def _created(self, what: str, message: OutboundMessage, create: Callable[[], Any]) -> ProviderReceipt:
        """create() (the SDK's messages.create or calls.create) with the errors
        mapped, logged as twilio_<what>_created."""
        try:
            created = create()
        except Exception as error:  # mapped; anything unexpected propagates as itself
            raise twilio_error(error, message.recipient, what) from None
        log.info(f"twilio_{what}_created", key=message.key, sid=created.sid, status=created.status,
                 recipient=mask(message.recipient))
        return ProviderReceipt(provider="twilio", message_id=created.sid)


class TwilioSmsChannel(TwilioChannel):
    name = "sms"

    def __init__(
        self,
        client: Client,
        public_base_url: str,
        from_number: str = "",
        messaging_service_sid: str = "",
    ) -> None:
        if not (from_number or messaging_service_sid):
            raise ValueError("a Twilio SMS channel needs a from number or a messaging service sid")
        super().__init__(client, public_base_url, from_number)
        self._service = messaging_service_sid

    def send(self, message: OutboundMessage) -> ProviderReceipt:
        sender = {"messaging_service_sid": self._service} if self._service else {"from_": self._from}
        return self._created("message", message, lambda: self._client.messages.create(
            to=message.recipient,
            body=message.text,
            status_callback=self._callback(STATUS_PATH, message.key),
            **sender,
        ))
