"""Twilio's webhook forms, read only once X-Twilio-Signature proves Twilio
sent them (403 otherwise): the `twilio_form` dependency of every Twilio route."""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import Depends, HTTPException, Request

from gateway.bodies import invalid, storable
from gateway.deps import Gateway, gateway

log = structlog.get_logger(__name__)


async def twilio_form(request: Request, gw: Gateway = Depends(gateway)) -> dict[str, Any]:
    """The form, after X-Twilio-Signature is checked against the public URL; else 403."""
    form = await request.form()
    params: dict[str, Any] = {}
    for name in form.keys():
        values = [v for v in form.getlist(name) if isinstance(v, str)]
        params[name] = values if len(values) > 1 else (values[0] if values else "")
    signature = request.headers.get("X-Twilio-Signature")
    if not gw.edge.twilio_auth_token or not signature:
        raise HTTPException(403, "missing or unverifiable X-Twilio-Signature")
    from twilio.request_validator import RequestValidator

    url = gw.edge.public_base_url.rstrip("/") + request.url.path + (f"?{request.url.query}" if request.url.query else "")
    try:
        good = RequestValidator(gw.edge.twilio_auth_token.get_secret_value()).validate(url, params, signature)
    except Exception:  # a form the validator cannot read (repeated keys, ...) is not verified
        good = False
    if not good:
        log.warning("twilio_signature_refused", path=request.url.path)
        raise HTTPException(403, "X-Twilio-Signature does not match")
    for name, value in [*params.items(), *request.query_params.items()]:
        if not all(storable(text) for text in [name, *(value if isinstance(value, list) else [value])]):
            raise invalid(name[:64], "must not contain NUL characters")
    return params
