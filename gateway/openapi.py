"""OpenAPI descriptions of what the routes read by hand (forms, raw JSON
bodies, headers), so /openapi.json (and the schema-driven tests) see every
input although the routes parse it themselves."""

from __future__ import annotations


def form_body(properties: dict[str, str], required: list[str] | None = None) -> dict:
    """An application/x-www-form-urlencoded body of string fields."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {
                        "type": "object",
                        "properties": {name: {"type": "string", "description": text} for name, text in properties.items()},
                        "required": required or [],
                    }
                }
            },
        }
    }


def json_body(schema: dict) -> dict:
    """A required application/json body of this schema."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def header(name: str, *, required: bool = False, description: str | None = None) -> dict:
    parameter = {"name": name, "in": "header", "required": required, "schema": {"type": "string"}}
    return parameter | ({"description": description} if description else {})


# `?key=`: the outbox row a provider's callback is about (channels/base.py callback_url).
OUTBOX_KEY = {"name": "key", "in": "query", "required": False, "schema": {"type": "string"}, "description": "the outbox key"}
TWILIO_SIGNATURE = header("X-Twilio-Signature")
