"""Masking a borrower's address for logs, outcomes and audit details."""

from __future__ import annotations


def mask(recipient: str) -> str:
    """Enough of an address to tell two apart in a log, not enough to use it."""
    if "@" in recipient:
        local, _, domain = recipient.partition("@")
        return f"{local[:1]}***@{domain}"
    return f"{recipient[:3]}***{recipient[-2:]}" if len(recipient) > 6 else "***"
