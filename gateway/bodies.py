"""Reading request bodies, and the 422 that names what was wrong with one.

Every JSON body the gateway reads by hand (it must see the raw bytes first:
a signature covers them, or a token is checked before anything is parsed)
goes through `parse_json` / `parse_model`, so a body that is not JSON, not
the expected shape, or not valid for its model is the same 422 wherever it
is sent: `loc` names the field, or `(payload)` for the body as a whole.
"""

from __future__ import annotations

import json
import math
import re
import reprlib
from typing import Any, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError

Model = TypeVar("Model", bound=BaseModel)

_SURROGATES = re.compile("[\ud800-\udfff]")
_ABRIDGED = reprlib.Repr()
_ABRIDGED.maxlevel, _ABRIDGED.maxstring, _ABRIDGED.maxother = 2, 100, 100


def storable(text: str) -> bool:
    """Text a database can hold: no NUL (PostgreSQL refuses it), no lone surrogate (not UTF-8)."""
    return "\x00" not in text and not _SURROGATES.search(text)


def invalid(field: str, message: str, kind: str = "value_error") -> RequestValidationError:
    """A 422 naming one field of the body."""
    return RequestValidationError([{"type": kind, "loc": ("body", field), "msg": message, "input": None}])


def parse_json(body: bytes, shape: type[dict] | type[list], what: str, wrong_shape: str) -> Any:
    """The body as JSON of the given shape (a dict or a list), else a 422 on
    `(payload)` saying it must be `what`."""
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise invalid("(payload)", f"must be {what}", "json_invalid") from None
    if not isinstance(data, shape):
        raise invalid("(payload)", f"must be {what}", wrong_shape)
    return data


def parse_model(body: bytes, model: type[Model]) -> tuple[Model, dict]:
    """The body validated as `model`, and the JSON object it came from; a 422
    naming the field (without echoing the bad value) otherwise."""
    data = parse_json(body, dict, "a JSON object", "model_attributes_type")
    try:
        return model.model_validate(data), data
    except ValidationError as error:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"]), "input": None, "ctx": None} for e in error.errors()]
        ) from None


def _json_safe(value: Any, depth: int = 0) -> Any:
    """`value` as a JSON answer can carry it (a 422 echoes the bad input):
    lone surrogates escaped, NaN and infinities as text, deep or long values abridged."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if abs(value) < 10**64 else _ABRIDGED.repr(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, str):
        return value[:1000].encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, (list, tuple, dict)):
        if depth >= 4:
            return _ABRIDGED.repr(value)
        if isinstance(value, dict):
            return {str(_json_safe(k, depth + 1)): _json_safe(v, depth + 1) for k, v in list(value.items())[:50]}
        return [_json_safe(v, depth + 1) for v in value[:50]]
    return _json_safe(str(value), depth)


async def unprocessable(request: Request, error: RequestValidationError) -> JSONResponse:
    """422 naming the field. FastAPI's own answer echoes the bad value as it
    came, and one holding a NaN, a lone surrogate or deep nesting made the
    answer itself fail (a 500)."""
    detail = [{key: _json_safe(value) for key, value in item.items()} for item in error.errors()]
    return JSONResponse({"detail": detail}, status_code=422)
