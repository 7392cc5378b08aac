"""App push: the lender's own app backend delivers the notification.

POSTs JSON `{"target", "title", "body", "key"}` to `DUNNING_PUSH_URL` with
`Authorization: Bearer <DUNNING_PUSH_TOKEN>` and `Idempotency-Key: <key>`.
`target` is the borrower's device token, or the borrower id the app signs in
with. 2xx is a receipt (the answer's `id` or `message_id` when it has one);
429 and 5xx (and no answer at all) are transient; any other 4xx is permanent.
"""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request

import structlog

from channels.base import OutboundMessage, PermanentSendError, ProviderReceipt, TransientSendError, mask

log = structlog.get_logger("channels.push")


class AppPushChannel:
    name = "push"
    idempotent_by_key = True  # the endpoint gets the outbox key as Idempotency-Key

    def __init__(self, url: str, token: str, default_title: str, timeout: float = 30.0) -> None:
        self._url = url
        self._token = token
        self._title = default_title
        self._timeout = timeout

    def send(self, message: OutboundMessage) -> ProviderReceipt:
        payload = {
            "target": message.recipient,
            "title": message.subject or self._title,
            "body": message.text,
            "key": message.key,
        }
        request = urllib.request.Request(
            self._url,
            data=json.dumps(payload, ensure_ascii=False).encode(),
            method="POST",
            headers={
                "Content-Type": "application/json; charset=utf-8",
                "Accept": "application/json",
                "Authorization": f"Bearer {self._token}",
                "Idempotency-Key": message.key,
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:
                status, body = response.status, response.read()
        except urllib.error.HTTPError as error:
            detail = f"push endpoint refused: HTTP {error.code}"
            if error.code == 429 or error.code >= 500:
                raise TransientSendError(detail) from None
            raise PermanentSendError(detail) from None
        except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError) as error:
            raise TransientSendError(f"push endpoint not reached: {type(error).__name__}") from None
        message_id = ""
        try:
            answer = json.loads(body or b"{}")
            if isinstance(answer, dict):
                message_id = str(answer.get("id") or answer.get("message_id") or "")
        except ValueError:
            pass
        log.info("push_accepted", key=message.key, status=status, recipient=mask(message.recipient))
        return ProviderReceipt(provider="push", message_id=message_id or f"push-{message.key}")
