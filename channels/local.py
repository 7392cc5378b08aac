"""The default provider: captures messages on this machine instead of sending.

The outbox row in `contacts` holds the full message; this adds one structured
log line per message, with the recipient masked and no body or subject (they
may name the borrower), so a demo shows what would have gone out without any
credentials.
"""

from __future__ import annotations

import structlog

from channels.base import OutboundMessage, ProviderReceipt, mask

log = structlog.get_logger("channels.local")


class LocalCaptureChannel:
    idempotent_by_key = True  # a capture is keyed by the outbox key
    def __init__(self, channel: str) -> None:
        self.name = channel

    def send(self, message: OutboundMessage) -> ProviderReceipt:
        log.info(
            "message_captured",
            key=message.key,
            channel=message.channel,
            recipient=mask(message.recipient),
            language=message.language,
            length=len(message.text),
        )
        return ProviderReceipt(provider="local", message_id=f"local-{message.key}")
