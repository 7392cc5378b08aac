"""Which provider serves which channel, from settings."""

from __future__ import annotations

from channels.base import Channel
from channels.local import LocalCaptureChannel
from dunning.contract import CHANNELS
from runtime.settings import Settings


def build_channels(settings: Settings) -> dict[str, Channel]:
    # Only local capture so far; Twilio, SendGrid and app push plug in here.
    return {channel: LocalCaptureChannel(channel) for channel in CHANNELS}
