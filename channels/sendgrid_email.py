"""E-mail through SendGrid's v3 Mail Send, with the official `sendgrid` SDK.

Text and HTML bodies; `custom_args` carries only the outbox key (SendGrid
echoes it in every event webhook, so the gateway finds the row without any
address); categories name the stage for SendGrid's statistics.

Every message carries a one-click unsubscribe (RFC 8058): `List-Unsubscribe`
with the message's signed URL on the gateway (channels/unsubscribe.py; the
gateway's POST /webhooks/email/unsubscribe signals `opt_out` email) and
`List-Unsubscribe-Post: List-Unsubscribe=One-Click`. When an unsubscribe group
is configured (SENDGRID_UNSUBSCRIBE_GROUP_ID), `asm.group_id` names it too, so
SendGrid suppresses the address and reports `group_unsubscribe` events, which
the event webhook also turns into `opt_out`.

202 Accepted is a receipt with SendGrid's `X-Message-Id`; 429 and 5xx (and no
answer at all) are transient; any other 4xx is permanent.
"""

from __future__ import annotations

import json
import socket
from urllib.error import URLError

import structlog
from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import Asm, Category, CustomArg, Email, GroupId, Header, Mail, To

from channels.base import OutboundMessage, PermanentSendError, ProviderReceipt, TransientSendError, mask
from channels.unsubscribe import unsubscribe_url
from dunning.contract import STAGES

log = structlog.get_logger("channels.sendgrid")

KEY_ARG = "dunning_key"
BASE_CATEGORY = "dunning"


def category_for(message: OutboundMessage) -> str:
    """The message's stage: given, or read from its key (`<workflow id>/<stage>/...`)."""
    if message.category:
        return message.category[:255]
    for part in message.key.split("/"):
        if part in STAGES:
            return part
    return BASE_CATEGORY


def _error_text(body) -> str:
    """SendGrid's error messages ({"errors": [{"message", "field"}]}), short."""
    try:
        errors = json.loads(body or b"{}").get("errors") or []
        return "; ".join(f"{e.get('field') or '-'}: {e.get('message')}" for e in errors)[:300]
    except (ValueError, AttributeError):
        return ""


class SendGridEmailChannel:
    idempotent_by_key = False  # no idempotency key: an interrupted send is never repeated
    name = "email"

    def __init__(
        self,
        api_key: str,
        from_email: str,
        from_name: str | None = None,
        host: str = "https://api.sendgrid.com",
        timeout: float | None = 30.0,
        *,
        public_base_url: str = "",
        unsubscribe_secret: str = "",
        unsubscribe_group_id: int | None = None,
    ) -> None:
        self._client = SendGridAPIClient(api_key=api_key, host=host.rstrip("/"))
        self._client.client.timeout = timeout  # python_http_client passes it to urlopen
        self._from = Email(from_email, from_name)
        # The one-click unsubscribe: both or neither (runtime/channels.py gives both).
        self._public_base_url = public_base_url
        self._unsubscribe_secret = unsubscribe_secret
        self._group_id = unsubscribe_group_id

    def build(self, message: OutboundMessage) -> Mail:
        mail = Mail(
            from_email=self._from,
            to_emails=To(message.recipient),
            subject=message.subject or None,
            plain_text_content=message.text,
            html_content=message.html or None,
        )
        mail.custom_arg = CustomArg(KEY_ARG, message.key)
        category = category_for(message)
        mail.category = [Category(c) for c in dict.fromkeys((BASE_CATEGORY, category))]
        if self._public_base_url and self._unsubscribe_secret:
            url = unsubscribe_url(self._public_base_url, self._unsubscribe_secret, message.key)
            mail.header = [Header("List-Unsubscribe", f"<{url}>"),
                           Header("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")]
        if self._group_id is not None:
            mail.asm = Asm(GroupId(self._group_id))
        return mail

    def send(self, message: OutboundMessage) -> ProviderReceipt:
        try:
            response = self._client.send(self.build(message))
        except HTTPError as error:
            status = int(error.status_code)
            detail = f"sendgrid refused: HTTP {status}: {_error_text(error.body)}".replace(
                message.recipient, mask(message.recipient)
            )
            if status == 429 or status >= 500:
                raise TransientSendError(detail) from None
            raise PermanentSendError(detail) from None
        except (URLError, socket.timeout, TimeoutError, ConnectionError) as error:
            raise TransientSendError(f"sendgrid not reached: {type(error).__name__}") from None
        if response.status_code not in (200, 202):
            raise TransientSendError(f"sendgrid answered HTTP {response.status_code}")
        message_id = response.headers.get("X-Message-Id") or ""
        log.info("sendgrid_message_accepted", key=message.key, message_id=message_id,
                 recipient=mask(message.recipient))
        return ProviderReceipt(provider="sendgrid", message_id=message_id or f"sendgrid-{message.key}")
