"""A local Twilio for the provider tests and the crash tests: `FakeTwilio`
checks each request against Twilio's published OpenAPI spec
(tests/specs/twilio_api_v2010_subset.json; DeleteRecording from
tests/specs/twilio_api_v2010_recordings_subset.json) and the rules its docs
state in prose, and answers like api.twilio.com, including its errors
(`TWILIO_ERRORS`), for the account `ACCOUNT_SID` / `AUTH_TOKEN` sending from
`FROM_NUMBER`; a call created with `Record=true` makes a recording the fake
keeps (`recordings`) until it is deleted; and `call_script`, a call's menu
and goodbye as the worker renders them for the Twilio voice channel."""

from __future__ import annotations

import base64
import json
import re
import secrets
from pathlib import Path

import jsonschema
from werkzeug import Request, Response

from activities.rendering import TemplateRenderer
from channels.twilio_voice import CallWords
from runtime.channels import call_script as render_call_script
from tests.conftest import BORROWER

SPECS = Path(__file__).resolve().parent.parent / "specs"
TEMPLATES = Path(__file__).resolve().parents[2] / "config" / "templates"
TWILIO_SPEC = json.loads((SPECS / "twilio_api_v2010_subset.json").read_text())
# DeleteRecording (the records retention job), from twilio-oai at the commit its `source` names.
TWILIO_RECORDINGS_SPEC = json.loads((SPECS / "twilio_api_v2010_recordings_subset.json").read_text())

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "test-auth-token"
FROM_NUMBER = "+14155550100"
PHONE = BORROWER["phone"]


def call_script(templates_dir: Path = TEMPLATES) -> dict[str, CallWords]:
    """A call's keypad menu and goodbye, rendered from `templates_dir` (the
    project's config/templates unless told) as runtime/channels.py renders
    them for TwilioVoiceChannel."""
    return render_call_script(TemplateRenderer(templates_dir))


def _operation_for(path: str, method: str = "post") -> tuple[dict, dict] | None:
    """The spec's operation for `method` whose path template matches, and its path params."""
    for spec in (TWILIO_SPEC, TWILIO_RECORDINGS_SPEC):
        for template, item in spec["paths"].items():
            pattern = "^" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template)) + "$"
            match = re.match(pattern, path)
            if match and method in item:
                return item[method], match.groupdict()
    return None


def _typed_form(form: dict[str, list[str]], properties: dict) -> dict:
    """Form fields as the JSON the schema describes (arrays repeat the key;
    booleans and integers arrive as text)."""
    typed = {}
    for name, values in form.items():
        kind = properties.get(name, {}).get("type", "string")
        if kind == "array":
            typed[name] = values
            continue
        value = values[-1]
        if kind == "integer":
            typed[name] = int(value) if re.fullmatch(r"-?\d+", value) else value
        elif kind == "boolean":
            typed[name] = {"true": True, "false": False}.get(value.lower(), value)
        else:
            typed[name] = value
        if len(values) > 1:
            typed[name] = values  # a scalar sent twice: the schema will refuse it
    return typed


def _validator(schema: dict) -> jsonschema.Validator:
    """A validator for a schema fragment of the Twilio spec, with its $refs."""
    root = {**schema, "components": TWILIO_SPEC["components"]}
    return jsonschema.Draft202012Validator(root, format_checker=jsonschema.FormatChecker())


def check_twilio_request(request: Request) -> list[str]:
    """Everything wrong with a request, by Twilio's OpenAPI spec (paths,
    security, request body schema) and by the rules its docs state in prose."""
    found = _operation_for(request.path, request.method.lower())
    if found is None:
        return [f"no operation for {request.method} {request.path} in the spec"]
    operation, params = found
    problems = []
    for param in operation.get("parameters", []):
        if param["in"] == "path":
            value = params.get(param["name"], "")
            if param["schema"].get("pattern") and not re.match(param["schema"]["pattern"], value):
                problems.append(f"path parameter {param['name']}={value!r} does not match {param['schema']['pattern']}")
    if params.get("AccountSid") != ACCOUNT_SID:
        problems.append("the path names another account")
    # security: HTTP basic with the account SID and the auth token
    [scheme_name] = operation["security"][0]
    scheme = TWILIO_SPEC["components"]["securitySchemes"][scheme_name]
    assert scheme == {"scheme": "basic", "type": "http"}
    expected = "Basic " + base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
    if request.headers.get("Authorization") != expected:
        problems.append("Authorization is not Basic <AccountSid>:<AuthToken>")
    if "requestBody" not in operation:  # DeleteRecording: its path is all it takes
        if request.get_data():
            problems.append(f"{operation['operationId']} takes no body")
        return problems
    # the body
    [(media_type, body)] = operation["requestBody"]["content"].items()
    if request.mimetype != media_type:
        problems.append(f"Content-Type {request.mimetype!r}, the spec says {media_type!r}")
    schema = dict(body["schema"], additionalProperties=False)  # an unknown name is a typo
    form = request.form.to_dict(flat=False)
    typed = _typed_form(form, schema["properties"])
    problems += [f"{'/'.join(map(str, e.path)) or 'body'}: {e.message}" for e in _validator(schema).iter_errors(typed)]
    # Rules Twilio's API reference states in prose (not in the schema).
    if operation["operationId"] == "CreateMessage":
        if not ({"From", "MessagingServiceSid"} & form.keys()):
            problems.append("CreateMessage needs From or MessagingServiceSid")
        if not ({"Body", "MediaUrl", "ContentSid"} & form.keys()):
            problems.append("CreateMessage needs Body, MediaUrl or ContentSid")
    if operation["operationId"] == "CreateCall":
        if len({"Url", "Twiml", "ApplicationSid"} & form.keys()) != 1:
            problems.append("CreateCall needs exactly one of Url, Twiml, ApplicationSid")
    return problems


def _created_resource(operation: dict, form: dict[str, list[str]]) -> tuple[int, dict]:
    """Twilio's answer to a good create: the status the spec names and a
    resource that validates against the spec's response schema."""
    [(status, response)] = operation["responses"].items()
    schema = response["content"]["application/json"]["schema"]
    resource_schema = TWILIO_SPEC["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    is_call = operation["operationId"] == "CreateCall"
    sid = ("CA" if is_call else "SM") + secrets.token_hex(16)
    common = {
        "sid": sid, "account_sid": ACCOUNT_SID, "api_version": "2010-04-01", "to": form["To"][0],
        "from": form.get("From", [None])[0], "status": "queued",
        "date_created": "Thu, 05 Nov 2026 02:00:00 +0000", "date_updated": "Thu, 05 Nov 2026 02:00:00 +0000",
        "uri": f"/2010-04-01/Accounts/{ACCOUNT_SID}/{'Calls' if is_call else 'Messages'}/{sid}.json",
        "price": None, "price_unit": "USD", "subresource_uris": {},
    }
    if is_call:
        resource = {**common, "direction": "outbound-api", "answered_by": None, "parent_call_sid": None,
                    "phone_number_sid": None, "start_time": None, "end_time": None, "duration": None,
                    "to_formatted": form["To"][0], "from_formatted": form["From"][0], "forwarded_from": None,
                    "group_sid": None, "caller_name": None, "queue_time": "0", "trunk_sid": None}
    else:
        resource = {**common, "body": form.get("Body", [""])[0], "num_segments": "1", "num_media": "0",
                    "direction": "outbound-api", "error_code": None, "error_message": None, "date_sent": None,
                    "messaging_service_sid": form.get("MessagingServiceSid", [None])[0]}
    unknown = set(resource) - set(resource_schema["properties"])
    assert not unknown, f"the fake answers fields Twilio's schema lacks: {unknown}"
    return int(status), resource


TWILIO_ERRORS = {
    429: {"code": 20429, "message": "Too Many Requests"},
    503: {"code": 20503, "message": "Service Unavailable"},
    400: {"code": 21211, "message": f"The 'To' number {PHONE} is not a valid phone number."},
    404: {"code": 20404, "message": "The requested resource was not found"},
}


class FakeTwilio:
    """Answers like api.twilio.com: checks each request, then answers the
    queued error statuses first and creates the resource after them."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.problems: list[str] = []
        self.errors: list[int] = []
        self.created: list[dict] = []
        # Recordings Twilio keeps (sids), the call each one is of, and those deleted.
        self.recordings: dict[str, str] = {}
        self.deleted: list[str] = []

    def handle(self, request: Request) -> Response:
        problems = check_twilio_request(request)
        self.problems += problems
        form = request.form.to_dict(flat=False)
        self.requests.append({"path": request.path, "form": form, "method": request.method})
        if problems:  # what Twilio does with a bad request
            return self._error(400, {"code": 21201, "message": "; ".join(problems)})
        if self.errors:
            status = self.errors.pop(0)
            return self._error(status, TWILIO_ERRORS[status])
        operation, params = _operation_for(request.path, request.method.lower())
        if operation["operationId"] == "DeleteRecording":
            if self.recordings.pop(params["Sid"], None) is None:
                return self._error(404, TWILIO_ERRORS[404])
            self.deleted.append(params["Sid"])
            [status] = operation["responses"]
            return Response(b"", status=int(status))
        status, resource = _created_resource(operation, form)
        self.created.append(resource)
        if operation["operationId"] == "CreateCall" and form.get("Record") == ["true"]:
            self.recordings["RE" + secrets.token_hex(16)] = resource["sid"]
        return Response(json.dumps(resource), status=status, content_type="application/json")

    def recording_of(self, call_sid: str) -> str:
        """The sid of the recording a recorded call made."""
        [sid] = [sid for sid, call in self.recordings.items() if call == call_sid]
        return sid

    @staticmethod
    def _error(status: int, error: dict) -> Response:
        body = {**error, "more_info": f"https://www.twilio.com/docs/errors/{error['code']}", "status": status}
        return Response(json.dumps(body), status=status, content_type="application/json")
