"""Reading request bodies, and the 422 that names what was wrong with one.

Every JSON body the gateway reads by hand (it must see the raw bytes first:
a signature covers them, or a token is checked before anything is parsed)
goes through `parse_json` / `parse_model`, so a body that is not JSON, not
the expected shape, or not valid for its model is the same 422 wherever it
is sent: `loc` names the field, or `(payload)` for the body as a whole.

Before `json.loads` builds anything, `json_limit_problem` scans the raw bytes
once and refuses JSON nested deeper than `MAX_JSON_DEPTH` or holding more than
`MAX_JSON_ITEMS` keys and items in all: a flat object of 2 million keys is
refused after its first 10,001 members are seen, not after Python built it
(gateway/limits.py runs the same check on the bodies FastAPI parses itself).
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


# No request the gateway serves comes near these; they bound what a hostile
# body can make the parser build (the body size is bounded before this).
MAX_JSON_DEPTH = 32
MAX_JSON_ITEMS = 10_000

# The tokens that shape a JSON text: a string (skipped whole, so brackets and
# commas inside it do not count; an unterminated one runs to the end, so the
# scan stays linear), a bracket or a comma. Numbers and literals need no token.
_JSON_TOKENS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)|[\[\]{},]', re.DOTALL)
_OPEN, _CLOSE, _COMMA = frozenset(b"[{"), frozenset(b"]}"), ord(",")


class JsonLimit(ValueError):
    """A JSON body over a limit: `loc` names where (the field whose value
    nests too deep; `(payload)` for too many items in all), `msg` which limit."""

    def __init__(self, loc: tuple, msg: str) -> None:
        super().__init__(msg)
        self.loc, self.msg = loc, msg

    def errors(self) -> list[dict]:
        """As a 422's `detail`."""
        return [{"type": "json_too_complex", "loc": ("body", *self.loc), "msg": self.msg, "input": None}]


def _key_text(body: bytes, span: tuple[int, int]) -> str:
    raw = body[span[0]:span[1]]
    try:
        key = json.loads(raw)
    except ValueError:
        key = raw.strip(b'"').decode("utf-8", "replace")
    return key[:64] if isinstance(key, str) else "(payload)"


def json_limit_problem(body: bytes, max_depth: int = MAX_JSON_DEPTH, max_items: int = MAX_JSON_ITEMS) -> JsonLimit | None:
    """Why `body` is too deep or too big to parse (naming the limit, and for
    depth the field), or None.

    One pass over the raw bytes, stopping at the first token over a limit.
    Items are counted as each object key and each list item, an empty object
    or list counting as one (each container counts one, each comma one more).
    Text that is not JSON passes if it stays within the limits: `json.loads`
    refuses it next."""
    items = 0
    # One entry per open container: [is an object, its current key's span or list index].
    open_: list[list] = []
    expect_key = False
    for token in _JSON_TOKENS.finditer(body):
        first = body[token.start()]
        if first in _OPEN:
            if len(open_) >= max_depth:
                # The field whose value nests too deep, and where in it; a
                # body that is a list is the payload as a whole.
                path = [_key_text(body, at) if is_object else at for is_object, at in open_ if at is not None]
                loc = tuple(path[:8]) if open_[0][0] and path else ("(payload)",)
                return JsonLimit(loc, f"is nested deeper than the limit of {max_depth} levels")
            is_object = first == ord("{")
            open_.append([is_object, None if is_object else 0])
            expect_key = is_object
            items += 1
        elif first in _CLOSE:
            if open_:
                open_.pop()
            expect_key = False
        elif first == _COMMA:
            items += 1
            if open_ and not open_[-1][0]:
                open_[-1][1] += 1
            expect_key = bool(open_) and open_[-1][0]
        elif expect_key and open_:
            open_[-1][1] = token.span()
            expect_key = False
        if items > max_items:
            return JsonLimit(("(payload)",), f"has more than the limit of {max_items:,} keys and items in all")
    return None


def parse_json(body: bytes, shape: type[dict] | type[list], what: str, wrong_shape: str) -> Any:
    """The body as JSON of the given shape (a dict or a list), else a 422 on
    `(payload)` saying it must be `what` (or naming the depth or size limit
    it is over, before anything is built)."""
    problem = json_limit_problem(body)
    if problem is not None:
        raise RequestValidationError(problem.errors())
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
