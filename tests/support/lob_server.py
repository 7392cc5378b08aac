"""A local Lob for the letter channel's tests: `FakeLob` checks each request
against Lob's published OpenAPI spec (tests/specs/lob_letters_v1.json, the
letter create operation from lob/lob-openapi, see its `source`) and the
rules Lob's documentation states in prose, and answers like api.lob.com,
including its error shape (`{"error": {"message", "status_code", "code"}}`),
for the API key `API_KEY` sending from the saved address `FROM_ADDRESS_ID`.

What is checked:
- the path and method (POST /v1/letters, the spec's server + path);
- security: HTTP basic, the API key as the user name and no password;
- the parameters: Idempotency-Key (header) and idempotency_key (query) by
  their schemas, Lob-Version by its pattern;
- the body, JSON, form (deepObject `to[name]=...`) or multipart, against the
  request schema `letter_editable` (OpenAPI 3.0 schema objects, read as JSON
  Schema draft 4 with `nullable` applied), and no name outside it;
- Lob's prose rules: a letter's `use_type` may not be null
  (mail_use_type_can_not_be_null), metadata of at most 20 keys of at most 40
  characters, values of at most 500 without `"` or `\\`.

What Lob does that the fake does too: a create repeated with an
Idempotency-Key it has seen answers the letter created the first time and
creates none; queued error statuses (`errors`) are answered before creating.
Every answer it gives validates against the spec's response schemas.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
from pathlib import Path

import jsonschema
from werkzeug import Request, Response

SPECS = Path(__file__).resolve().parent.parent / "specs"
LOB_SPEC = json.loads((SPECS / "lob_letters_v1.json").read_text())

API_KEY = "test_0123456789abcdef0123456789abcdef"
FROM_ADDRESS_ID = "adr_210a8d4b0b76d77b"
LETTERS_PATH = "/v1/letters"
OPERATION = LOB_SPEC["paths"]["/letters"]["post"]
CREATED_AT = "2026-11-05T02:00:00.000Z"  # fixed: answers do not depend on the clock

# The saved address the letters go from (what Lob expands `from: adr_...` into).
FROM_ADDRESS = {
    "id": FROM_ADDRESS_ID, "name": "EXAMPLE LENDER", "company": None, "phone": None, "email": None,
    "address_line1": "210 KING ST", "address_line2": None, "address_city": "SAN FRANCISCO",
    "address_state": "CA", "address_zip": "94107-1702", "address_country": "UNITED STATES",
    "metadata": {}, "object": "address", "date_created": CREATED_AT, "date_modified": CREATED_AT,
}


# ------------------------------------------------------------ the spec


def _nullable(schema):
    """An OpenAPI 3.0 schema object as JSON Schema: `nullable: true` lets null
    through (a type list, and null in an enum only where the spec has it)."""
    if isinstance(schema, list):
        return [_nullable(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for key, value in schema.items():
        if key in ("properties", "patternProperties", "definitions"):
            out[key] = {name: _nullable(sub) for name, sub in value.items()}
        elif key in ("enum", "required", "default", "example"):
            out[key] = value
        else:
            out[key] = _nullable(value)
    if out.pop("nullable", False) is True:
        return {"anyOf": [{"type": "null"}, out]}
    return out


_COMPONENTS = _nullable(LOB_SPEC["components"])


def validator(ref: str) -> jsonschema.Validator:
    """A draft-4 validator for `#/components/...` of the spec (draft 4, as
    OpenAPI 3.0's schema objects are: a `$ref` replaces its siblings)."""
    root = {"$ref": ref, "components": _COMPONENTS}
    return jsonschema.Draft4Validator(root, format_checker=jsonschema.FormatChecker())


def _parameter(ref: str) -> dict:
    return LOB_SPEC["components"]["parameters"][ref.rsplit("/", 1)[1]]


REQUEST_SCHEMA = "#/components/schemas/letter_editable"
LETTER_SCHEMA = "#/components/schemas/letter"
ERROR_SCHEMA = "#/components/schemas/error"


def _property_names(ref: str) -> set[str]:
    """Every property a schema names, through its allOf/oneOf/anyOf and $refs:
    a name outside them is a typo (Lob answers `"x" is not allowed`)."""
    names: set[str] = set()

    def walk(schema: dict) -> None:
        if "$ref" in schema:
            walk(LOB_SPEC["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]])
            return
        names.update(schema.get("properties", {}))
        for key in ("allOf", "oneOf", "anyOf"):
            for sub in schema.get(key, []):
                walk(sub)

    walk({"$ref": ref})
    return names


REQUEST_FIELDS = _property_names(REQUEST_SCHEMA)
_REQUEST = validator(REQUEST_SCHEMA)
_LETTER = validator(LETTER_SCHEMA)
_ERROR = validator(ERROR_SCHEMA)


def _errors(checker: jsonschema.Validator, value) -> list[str]:
    """Each error at its deepest place: through a oneOf/anyOf, the branch
    error furthest into the body (`to/address_zip: ... does not match`)."""
    def leaves(error):
        if not error.context:
            yield error
        for sub in error.context or []:
            yield from leaves(sub)

    problems = []
    for error in checker.iter_errors(value):
        error = max(leaves(error), key=lambda leaf: len(leaf.absolute_path))  # the first of the deepest
        where = "/".join(map(str, error.absolute_path)) or "body"
        problems.append(f"{where}: {error.message[:200]}")
    return problems


# --------------------------------------------------------- the request


def _deep_object(fields: dict[str, list[str]]) -> dict:
    """Form or multipart fields (`to[name]=...`, the spec's deepObject style)
    as the JSON object they encode; booleans and integers arrive as text."""
    body: dict = {}
    for name, values in fields.items():
        value = values[-1] if len(values) == 1 else values
        match = re.fullmatch(r"(\w+)\[(\w+)\]", name)
        if match:
            body.setdefault(match.group(1), {})[match.group(2)] = value
        else:
            body[name] = value
    for name in ("color", "double_sided", "fsc"):
        if isinstance(body.get(name), str) and body[name].lower() in ("true", "false"):
            body[name] = body[name].lower() == "true"
    if isinstance(body.get("perforated_page"), str) and body["perforated_page"].isdigit():
        body["perforated_page"] = int(body["perforated_page"])
    return body


def parse_body(request: Request) -> tuple[dict | None, list[str]]:
    """The request body as the JSON object the schema describes, or a problem."""
    media_types = OPERATION["requestBody"]["content"]
    if request.mimetype not in media_types:
        return None, [f"Content-Type {request.mimetype!r}, the spec takes {sorted(media_types)}"]
    if request.mimetype == "application/json":
        try:
            body = json.loads(request.get_data() or b"null")
        except ValueError:
            return None, ["body is not JSON"]
        if not isinstance(body, dict):
            return None, ["body is not a JSON object"]
        return body, []
    fields = request.form.to_dict(flat=False)
    for name, upload in request.files.items():  # multipart: a file part for `file`
        fields[name] = [upload.read().decode("utf-8", "replace")]
    return _deep_object(fields), []


def check_lob_request(request: Request) -> tuple[dict | None, list[str]]:
    """The parsed body and everything wrong with the request, by Lob's spec
    (path, security, parameters, request body schema) and its prose rules."""
    problems = []
    if request.method != "POST" or request.path != LETTERS_PATH:
        return None, [f"no operation for {request.method} {request.path} in the spec"]
    # security: HTTP basic, the API key as the user name, no password
    [requirement] = OPERATION.get("security", LOB_SPEC["security"])
    [scheme_name] = requirement
    assert LOB_SPEC["components"]["securitySchemes"][scheme_name] == {"type": "http", "scheme": "basic"}
    expected = "Basic " + base64.b64encode(f"{API_KEY}:".encode()).decode()
    if request.headers.get("Authorization") != expected:
        problems.append("Authorization is not Basic <api key>:")
    # parameters
    for ref in OPERATION["parameters"]:
        parameter = _parameter(ref["$ref"])
        source = request.headers if parameter["in"] == "header" else request.args
        value = source.get(parameter["name"])
        if value is None:
            if parameter.get("required"):
                problems.append(f"{parameter['in']} parameter {parameter['name']} is required")
            continue
        checker = jsonschema.Draft4Validator(_nullable(parameter["schema"]))
        problems += [f"{parameter['name']}: {e.message}" for e in checker.iter_errors(value)]
    body, body_problems = parse_body(request)
    problems += body_problems
    if body is None:
        return None, problems
    problems += _errors(_REQUEST, body)
    unknown = sorted(set(body) - REQUEST_FIELDS)
    problems += [f'"{name}" is not allowed' for name in unknown]
    # Rules Lob's API reference states in prose.
    if "use_type" in body and body["use_type"] is None:
        problems.append("use_type: a letter's use_type may not be null (mail_use_type_can_not_be_null)")
    metadata = body.get("metadata")
    if isinstance(metadata, dict):
        if len(metadata) > 20:
            problems.append("metadata: at most 20 keys")
        for key, value in metadata.items():
            if len(key) > 40 or not isinstance(value, str) or len(value) > 500 or re.search(r'["\\]', key + str(value)):
                problems.append(f"metadata[{key[:40]}]: keys of at most 40 characters, values of at most 500, no \" or \\")
    return body, problems


# ---------------------------------------------------------- the answers


def _address(body: dict) -> dict:
    """The `to` address as Lob answers it: an address object with an id,
    upper-cased, the country's full name."""
    sent = body["to"]
    if isinstance(sent, str):
        return {**FROM_ADDRESS, "id": sent}
    country = sent.get("address_country", "US")
    address = {
        "id": "adr_" + secrets.token_hex(8), "name": (sent.get("name") or "").upper() or None,
        "company": sent.get("company"), "phone": None, "email": None,
        "address_line1": sent["address_line1"].upper(), "address_line2": (sent.get("address_line2") or "").upper() or None,
        "address_city": (sent.get("address_city") or "").upper(), "address_state": sent.get("address_state"),
        "address_zip": sent.get("address_zip"), "metadata": {}, "object": "address",
        "date_created": CREATED_AT, "date_modified": CREATED_AT,
    }
    if country == "US":
        address["address_country"] = "UNITED STATES"
    else:
        address["address_country"] = {"CA": "CANADA", "GB": "UNITED KINGDOM", "CN": "CHINA"}.get(country, "CANADA")
    return address


def letter_for(body: dict) -> dict:
    """Lob's answer to a good create: a letter object that validates against
    the spec's `letter` schema (a regular letter: no extra service)."""
    letter_id = "ltr_" + secrets.token_hex(8)
    letter = {
        "id": letter_id, "description": body.get("description"), "metadata": body.get("metadata", {}),
        "to": _address(body), "from": {**FROM_ADDRESS, "id": body["from"]} if isinstance(body["from"], str) else _address({"to": body["from"]}),
        "color": body["color"], "double_sided": body.get("double_sided", True),
        "address_placement": body.get("address_placement", "top_first_page"),
        "return_envelope": body.get("return_envelope", False) in (True, "true"),
        "perforated_page": body.get("perforated_page"), "custom_envelope": None,
        "extra_service": None, "mail_type": body.get("mail_type", "usps_first_class"),
        "use_type": body["use_type"], "fsc": False, "carrier": "USPS", "thumbnails": [],
        "merge_variables": body.get("merge_variables"), "send_date": CREATED_AT,
        "expected_delivery_date": "2026-11-10", "tracking_events": [],
        "date_created": CREATED_AT, "date_modified": CREATED_AT, "object": "letter",
    }
    problems = _errors(_LETTER, letter)
    assert not problems, f"the fake answers a letter Lob's schema refuses: {problems}"
    return letter


LOB_ERRORS = {
    401: ("unauthorized", "Your API key is not valid. Please sign up on lob.com to get a valid api key."),
    404: ("not_found", "address not found"),
    422: ("invalid", "address_zip must be in a valid zip or zip+4 format"),
    429: ("rate_limit_exceeded", "Rate limit exceeded. Please wait 1 second and try your request again."),
    500: ("internal_server_error", "An internal server error occurred."),
}


def error_body(status: int, code: str, message: str) -> dict:
    body = {"error": {"message": message, "status_code": status, "code": code}}
    problems = _errors(_ERROR, body)
    assert not problems, f"the fake answers an error Lob's schema refuses: {problems}"
    return body


class FakeLob:
    """Answers like api.lob.com's POST /v1/letters: checks each request, then
    answers the queued error statuses first and creates the letter after
    them (once per Idempotency-Key)."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.problems: list[str] = []
        self.errors: list[int | tuple[int, str, str]] = []
        self.letters: list[dict] = []
        self._by_key: dict[str, dict] = {}

    def handle(self, request: Request) -> Response:
        body, problems = check_lob_request(request)
        self.problems += problems
        key = request.headers.get("Idempotency-Key") or request.args.get("idempotency_key")
        self.requests.append({"path": request.path, "body": body, "idempotency_key": key,
                              "content_type": request.mimetype, "lob_version": request.headers.get("Lob-Version")})
        if any(problem.startswith("Authorization") for problem in problems):
            return self._error(401, *LOB_ERRORS[401])
        if problems:  # what Lob does with a request its validation refuses
            return self._error(422, "invalid", "; ".join(problems)[:1000])
        if self.errors:
            queued = self.errors.pop(0)  # a status, or (status, code, message)
            status, code, message = queued if isinstance(queued, tuple) else (queued, *LOB_ERRORS[queued])
            return self._error(status, code, message)
        if key is not None and key in self._by_key:
            letter = self._by_key[key]  # Lob's idempotency: the first answer again, no new letter
        else:
            letter = letter_for(body)
            self.letters.append(letter)
            if key is not None:
                self._by_key[key] = letter
        return Response(json.dumps(letter), status=200, content_type="application/json",
                        headers={"ratelimit-limit": "150", "ratelimit-remaining": "149", "ratelimit-reset": "1793930400"})

    @staticmethod
    def _error(status: int, code: str, message: str) -> Response:
        return Response(json.dumps(error_body(status, code, message)), status=status, content_type="application/json")
