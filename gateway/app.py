"""The HTTP edge: backends, the payment service, Twilio, SendGrid and borrowers
reach the workflows through here (docs/gateway.md).

    uvicorn gateway.app:app --port 8000

Every request that changes something is authenticated: payments with an
HMAC-SHA256 signature (401 when missing, forged or stale), Twilio webhooks
with X-Twilio-Signature (403), SendGrid events with the signed event webhook
key (403). A malformed body is a 422 whose `loc` names the field. Nothing
personal is sent to Temporal: signals carry ids, money and channel names.
"""

from __future__ import annotations

import asyncio

import hashlib
import hmac
import inspect
import json
import math
import re
import reprlib
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import structlog
from fastapi import FastAPI, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import BaseModel, ConfigDict, ValidationError
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from temporalio.client import Client, WorkflowQueryFailedError, WorkflowQueryRejectedError
from temporalio.service import RPCError, RPCStatusCode

from activities.dunning_activities import STATUS_PENDING, STATUS_SENDING, STATUS_UNCONFIRMED, audit_contact
from activities.pay_link import PayLinkInvalid, read_pay_token
from channels.base import mask
from db.directory import upsert_placements
from db.migrate import upgrade_to_head
from db.models import Borrower, Contact, Loan, Payment, WebhookDelivery
from db.session import make_engine, make_session_factory
from dunning import contract
from dunning.arrangements import split
from dunning.inputs import ID_PATTERN, Currency, Identifier, Instant
from dunning.money import format_amount, parse_amount
from dunning.policy import PlanOffer, Policy, PolicyError
from loaders.config_files import load_policy
from gateway.settings import GatewaySettings, get_gateway_settings
from services.placement import Placement
from services.placing import closed_outcomes, start_placement

# Outbox rows a provider's report can confirm as sent: not yet finished, or
# left in doubt by a worker that stopped while calling the provider.
UNCONFIRMED_SEND = (STATUS_PENDING, STATUS_SENDING, STATUS_UNCONFIRMED)
from runtime.settings import Settings, get_settings
from services.visits import (
    UPDATE_TIMEOUT_SECONDS,
    FieldReport,
    NoSuchLoan,
    NotesNotStored,
    UpdateRejected,
    UpdateTimedOut,
    execute_update,
    report_visit,
)

log = structlog.get_logger(__name__)

ClientFactory = Callable[[], "Client | Awaitable[Client]"]

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"

# Inbound SMS words that opt the sender out of SMS (carrier keywords, and the
# Chinese 退订 / TD that Chinese senders use).
STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "退订", "TD"})
SMS_DELIVERED = {"delivered"}
# Any of these proves Twilio took the message: a `pending` outbox row (a worker
# that crashed between sending and recording) becomes `sent`, so the retried
# activity, which Temporal runs only after its timeout, finds it and does not
# send again.
SMS_ACCEPTED = {"accepted", "queued", "sending", "sent", "delivered"}
SMS_FAILED = {"undelivered", "failed"}
CALL_COMPLETED = {"completed"}
CALL_PLACED = {"initiated", "ringing", "in-progress", "answered"}  # the call exists: reconciles a pending row
CALL_NOT_REACHED = {"no-answer", "busy"}  # an attempt was made: it still counts towards call caps
CALL_FAILED = {"failed", "canceled"}


# SendGrid events the loan's status shows on the e-mail contact.
SENDGRID_OUTCOMES = {"delivered": "delivered", "bounce": "bounced", "dropped": "bounced", "open": "opened", "click": "clicked"}


def call_outcome(call_status: str, answered_by: str) -> str | None:
    """A finished call's outcome in the contract's words, or None while it runs."""
    if call_status == "completed":
        return "voicemail" if answered_by.startswith(("machine", "fax")) else "answered"
    return {"no-answer": "no_answer", "busy": "busy", "failed": "failed", "canceled": "failed"}.get(call_status)
SENDGRID_OPT_OUT = {"unsubscribe", "spamreport", "group_unsubscribe"}
SENDGRID_FAILED = {"bounce", "dropped"}


class PaymentNotification(BaseModel):
    """POST /payments: what the payment service reports (becomes the `repayment` signal)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    loan_id: Identifier
    payment_id: Identifier
    currency: Currency
    amount: str
    paid_at: Instant | None = None


class _Seen:
    """Delivery keys the gateway has acted on, kept in the database
    (`webhook_deliveries`), so every gateway process and restart sees them."""

    def __init__(self, sessions: Callable[[], Any], prefix: str) -> None:
        self._sessions, self._prefix = sessions, prefix

    def add(self, key: str) -> bool:
        """True if the key is new (and now recorded)."""
        try:
            with self._sessions().begin() as db:
                db.add(WebhookDelivery(key=f"{self._prefix}/{key}"[:255]))
        except IntegrityError:
            return False
        return True

    def discard(self, key: str) -> None:
        """Forget a key whose work did not happen, so a retry can try again."""
        with self._sessions().begin() as db:
            db.execute(delete(WebhookDelivery).where(WebhookDelivery.key == f"{self._prefix}/{key}"[:255]))


def _form_schema(properties: dict[str, str], required: list[str] | None = None) -> dict:
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


_SURROGATES = re.compile("[\ud800-\udfff]")
_ABRIDGED = reprlib.Repr()
_ABRIDGED.maxlevel, _ABRIDGED.maxstring, _ABRIDGED.maxother = 2, 100, 100


def _storable(text: str) -> bool:
    """Text a database can hold: no NUL (PostgreSQL refuses it), no lone surrogate (not UTF-8)."""
    return "\x00" not in text and not _SURROGATES.search(text)


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


def _invalid(field: str, message: str, kind: str = "value_error") -> RequestValidationError:
    return RequestValidationError([{"type": kind, "loc": ("body", field), "msg": message, "input": None}])


def sign_payment(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The X-Dunning-Signature header for `body` (what the payment service computes)."""
    t = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def check_payment_signature(secret: str, header: str | None, body: bytes, max_age: int, now: float | None = None) -> str | None:
    """None if the signature is good, else why not."""
    if not secret:
        return "no payments secret is configured"
    if not header:
        return "missing X-Dunning-Signature"
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        name, _, value = item.strip().partition("=")
        parts.setdefault(name, []).append(value)
    try:
        t = int(parts["t"][0])
    except (KeyError, ValueError):
        return "malformed X-Dunning-Signature: no t=<unix time>"
    now = time.time() if now is None else now
    if not -(2**53) < t < 2**53 or abs(now - t) > max_age:  # (a t= too large for a float is stale too)
        return "stale X-Dunning-Signature: outside the replay window"
    expected = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    if not any(hmac.compare_digest(expected.encode(), v.encode("utf-8", "replace")) for v in parts.get("v1", [])):
        return "X-Dunning-Signature does not match"
    return None


def create_app(
    settings: Settings | None = None,
    client_factory: ClientFactory | None = None,
    gateway_settings: GatewaySettings | None = None,
) -> FastAPI:
    """The gateway. `client_factory` returns a connected Temporal client (or an
    awaitable of one); by default it connects with the settings."""
    core = settings or get_settings()
    gw = gateway_settings or get_gateway_settings()

    async def _default_factory() -> Client:
        from runtime.temporal import connect

        return await connect(core)

    factory = client_factory or _default_factory
    state: dict[str, Any] = {}
    migrate_lock = threading.Lock()
    pages = Environment(loader=FileSystemLoader(TEMPLATES_DIR), autoescape=select_autoescape(["html"]))

    app = FastAPI(
        title="dunning gateway",
        version="0.1.0",
        description="The HTTP edge of the dunning service: placing loans, payments, provider webhooks, the repayment page.",
    )

    @app.exception_handler(RequestValidationError)
    async def unprocessable(request: Request, error: RequestValidationError) -> JSONResponse:
        """422 naming the field. FastAPI's own answer echoes the bad value as it
        came, and one holding a NaN, a lone surrogate or deep nesting made the
        answer itself fail (a 500)."""
        detail = [{key: _json_safe(value) for key, value in item.items()} for item in error.errors()]
        return JSONResponse({"detail": detail}, status_code=422)

    # ------------------------------------------------------------ helpers

    async def temporal() -> Client:
        client = state.get("client")
        if client is None:
            try:
                client = factory()
                if inspect.isawaitable(client):
                    client = await client
            except Exception as error:
                log.warning("temporal_unavailable", error=str(error)[:300])
                raise HTTPException(503, "Temporal is not reachable") from None
            state["client"] = client
        return client

    def sessions():
        factory_ = state.get("sessions")
        if factory_ is None:
            with migrate_lock:
                factory_ = state.get("sessions")
                if factory_ is None:
                    upgrade_to_head(core.database_url)
                    factory_ = state["sessions"] = make_session_factory(make_engine(core.database_url))
        return factory_

    payments_seen, messages_seen, events_seen = _Seen(sessions, "payment"), _Seen(sessions, "twilio"), _Seen(sessions, "sendgrid")

    async def signal(workflow_id: str, name: str, payload: dict) -> bool:
        """True if delivered; False if there is no such (open) workflow."""
        client = await temporal()
        try:
            await client.get_workflow_handle(workflow_id).signal(name, payload)
        except RPCError as error:
            if error.status == RPCStatusCode.NOT_FOUND:
                return False
            if error.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
                raise HTTPException(503, "Temporal is not reachable") from None
            raise
        log.info("gateway_signal", workflow_id=workflow_id, signal=name)
        return True

    async def loan_status(loan_id: str) -> dict | None:
        client = await temporal()
        try:
            return await client.get_workflow_handle(contract.workflow_id_for(loan_id)).query(contract.QUERY_STATUS)
        except RPCError as error:
            if error.status == RPCStatusCode.NOT_FOUND:
                return None
            if error.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
                raise HTTPException(503, "Temporal is not reachable") from None
            raise
        except (WorkflowQueryFailedError, WorkflowQueryRejectedError) as error:
            raise HTTPException(502, f"the status query failed: {str(error)[:200]}") from None

    def loan_policy(status: dict) -> Policy | None:
        """The policy named by the loan (its status, else the `loans` table), as
        config/policies/ has it now; None if it cannot be read."""
        name = status.get("policy")
        if not name:
            with sessions()() as db:
                name = db.scalar(select(Loan.policy).where(Loan.loan_id == status.get("loan_id")))
        try:
            return load_policy(str(name or ""), core.policies_dir)
        except PolicyError as error:
            log.warning("policy_unreadable", loan_id=status.get("loan_id"), error=str(error)[:300])
            return None

    async def propose_offer(loan_id: str, index: int, timeout: float) -> tuple[dict, dict]:
        """Propose the loan's policy's offer number `index` (propose_plan): the
        update's answer and the status it was built on. Raises LookupError (no
        such loan or offer), UpdateRejected, UpdateTimedOut, NoSuchLoan or
        HTTPException(503)."""
        status = await loan_status(loan_id)
        if status is None:
            raise LookupError(f"no workflow {contract.workflow_id_for(loan_id)}")
        policy = loan_policy(status)
        offers = policy.plans.offers if policy is not None else ()
        today = loan_today(status)
        if not 0 <= index < len(offers) or today is None:
            raise LookupError(f"offer: this loan's policy has no offer {index}")
        client = await temporal()
        try:
            answer = await execute_update(
                client, loan_id, contract.UPDATE_PROPOSE_PLAN, offer_proposal(offers[index], today), timeout=timeout
            )
        except RPCError as error:
            if error.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
                raise HTTPException(503, "Temporal is not reachable") from None
            raise
        return answer, status

    async def ivr_plan(loan_id: str) -> bool:
        """Keypad 2: the first offer of the loan's policy. True if accepted."""
        try:
            answer, _ = await propose_offer(loan_id, 0, IVR_UPDATE_TIMEOUT_SECONDS)
        except Exception as error:  # whatever happened, Twilio gets TwiML: an agent calls back
            log.info("ivr_plan_not_set_up", loan_id=loan_id, error=type(error).__name__,
                     reason=str(getattr(error, "detail", None) or error)[:300])
            return False
        log.info("ivr_plan_set_up", loan_id=loan_id, plan_no=answer.get("plan_no") if isinstance(answer, dict) else None)
        return True

    async def twilio_params(request: Request) -> dict[str, Any]:
        """The form, after X-Twilio-Signature is checked against the public URL; else 403."""
        form = await request.form()
        params: dict[str, Any] = {}
        for name in form.keys():
            values = [v for v in form.getlist(name) if isinstance(v, str)]
            params[name] = values if len(values) > 1 else (values[0] if values else "")
        signature = request.headers.get("X-Twilio-Signature")
        if not gw.twilio_auth_token or not signature:
            raise HTTPException(403, "missing or unverifiable X-Twilio-Signature")
        from twilio.request_validator import RequestValidator

        url = gw.public_base_url.rstrip("/") + request.url.path + (f"?{request.url.query}" if request.url.query else "")
        try:
            good = RequestValidator(gw.twilio_auth_token).validate(url, params, signature)
        except Exception:  # a form the validator cannot read (repeated keys, ...) is not verified
            good = False
        if not good:
            log.warning("twilio_signature_refused", path=request.url.path)
            raise HTTPException(403, "X-Twilio-Signature does not match")
        for name, value in [*params.items(), *request.query_params.items()]:
            if not all(_storable(text) for text in [name, *(value if isinstance(value, list) else [value])]):
                raise _invalid(name[:64], "must not contain NUL characters")
        return params

    # ------------------------------------------------------------ loans

    @app.post("/loans/overdue", status_code=201, tags=["loans"])
    async def place_loan(placement: Placement) -> dict:
        """Place one overdue loan (the starter's record: workflow input + `borrower` block); idempotent."""
        client = await temporal()  # before writing: no Temporal, nothing written
        db = sessions()
        summary = upsert_placements(db, [placement])
        for conflict in summary.conflicts:
            log.warning("placement_conflict", detail=conflict)
        closed = closed_outcomes(db, [placement.loan_id])
        try:
            result = await start_placement(client, core.task_queue, placement, closed.get(placement.loan_id))
        except RPCError as error:
            if error.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
                raise HTTPException(503, "Temporal is not reachable") from None
            raise
        log.info("loan_placed", loan_id=placement.loan_id, state=result.state)
        return {
            "workflow_id": result.workflow_id,
            "run_id": result.run_id,
            "started": result.started,
            "state": result.state,
        }

    @app.get("/loans/{loan_id}", tags=["loans"], responses={404: {"description": "no such loan workflow"}})
    async def get_loan(loan_id: str = PathParam(..., pattern=ID_PATTERN)) -> dict:
        """The loan workflow's `status` query answer."""
        answer = await loan_status(loan_id)
        if answer is None:
            raise HTTPException(404, f"no workflow {contract.workflow_id_for(loan_id)}")
        return answer

    # ------------------------------------------------------------ payments

    @app.post(
        "/payments",
        status_code=202,
        tags=["payments"],
        responses={401: {"description": "missing, forged or stale X-Dunning-Signature"}},
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": PaymentNotification.model_json_schema()}},
            },
            "parameters": [
                {
                    "name": "X-Dunning-Signature",
                    "in": "header",
                    "required": True,
                    "schema": {"type": "string"},
                    "description": 't=<unix time>,v1=<hex HMAC-SHA256 of f"{t}.{raw body}">',
                }
            ],
        },
    )
    async def payment(request: Request) -> JSONResponse:
        """A payment notification: signals `repayment` to dunning-<loan_id>, once per payment_id."""
        body = await request.body()
        problem = check_payment_signature(
            gw.payments_secret, request.headers.get("X-Dunning-Signature"), body, gw.payments_max_age_seconds
        )
        if problem is not None:
            log.warning("payment_signature_refused", reason=problem)
            raise HTTPException(401, problem)
        try:
            data = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            raise _invalid("(payload)", "must be a JSON object", "json_invalid") from None
        if not isinstance(data, dict):
            raise _invalid("(payload)", "must be a JSON object", "model_attributes_type")
        try:
            notice = PaymentNotification.model_validate(data)
        except ValidationError as error:
            raise RequestValidationError(
                [{**e, "loc": ("body", *e["loc"]), "input": None, "ctx": None} for e in error.errors()]
            ) from None
        try:
            parse_amount(notice.amount, notice.currency)
        except ValueError as error:
            raise _invalid("amount", str(error)) from None

        workflow_id = contract.workflow_id_for(notice.loan_id)
        answer = {"loan_id": notice.loan_id, "payment_id": notice.payment_id, "workflow_id": workflow_id}
        key = f"{notice.loan_id}/{notice.payment_id}"
        with sessions()() as db:
            recorded = db.scalar(
                select(Payment.id).where(
                    Payment.loan_id == notice.loan_id, Payment.payment_id == notice.payment_id, Payment.applied.is_(True)
                )
            )
        if recorded is not None or not payments_seen.add(key):
            log.info("payment_duplicate", loan_id=notice.loan_id, payment_id=notice.payment_id)
            return JSONResponse({**answer, "signaled": False, "duplicate": True}, status_code=202)
        payload = {"payment_id": notice.payment_id, "amount": notice.amount, "currency": notice.currency}
        if notice.paid_at is not None:
            payload["paid_at"] = data["paid_at"]
        try:
            delivered = await signal(workflow_id, contract.SIGNAL_REPAYMENT, payload)
        except BaseException:
            payments_seen.discard(key)  # not delivered: a retry may try again
            raise
        if not delivered:
            payments_seen.discard(key)
            raise HTTPException(404, f"no open workflow {workflow_id}")
        return JSONResponse({**answer, "signaled": True, "duplicate": False}, status_code=202)

    # ------------------------------------------------------------ Twilio

    @app.post(
        "/webhooks/twilio/status",
        status_code=204,
        tags=["webhooks"],
        responses={403: {"description": "missing or forged X-Twilio-Signature"}},
        openapi_extra={
            "parameters": [
                {"name": "key", "in": "query", "required": False, "schema": {"type": "string"}, "description": "the outbox key"},
                {"name": "X-Twilio-Signature", "in": "header", "required": False, "schema": {"type": "string"}},
            ],
            **_form_schema(
                {
                    "MessageSid": "SMS id",
                    "MessageStatus": "queued, sent, delivered, undelivered, failed",
                    "CallSid": "call id",
                    "CallStatus": "completed, no-answer, busy, failed",
                    "ErrorCode": "Twilio error code",
                }
            ),
        },
    )
    async def twilio_status(request: Request) -> Response:
        """Message and call status callbacks: update the outbox row named by `key`."""
        params = await twilio_params(request)
        key = request.query_params.get("key")
        sid = str(params.get("MessageSid") or params.get("CallSid") or "")
        is_call = bool(params.get("CallSid")) and not params.get("MessageSid")
        raw = str(params.get("CallStatus") if is_call else params.get("MessageStatus") or params.get("SmsStatus") or "")
        if not key:
            return Response(status_code=204)
        code = str(params.get("ErrorCode") or "")
        kind = "call" if is_call else "sms"
        with sessions().begin() as db:
            row = db.scalar(select(Contact).where(Contact.key == key))
            if row is None:
                log.warning("twilio_status_unknown_key", key=key[:255], status=raw)
                return Response(status_code=204)
            if sid and not row.provider_message_id:
                row.provider_message_id = sid[:128]  # a send whose record was lost: reconciled from the callback
                row.provider = row.provider or "twilio"
            succeeded = (raw in CALL_COMPLETED) if is_call else (raw in SMS_ACCEPTED)
            if succeeded or (is_call and raw in CALL_NOT_REACHED | CALL_PLACED):
                if row.status in UNCONFIRMED_SEND:
                    # Twilio took it: a send a crashed worker left in doubt is confirmed, and audited.
                    row.status, row.sent_at = "sent", row.sent_at or datetime.now(timezone.utc)
                    db.flush()
                    audit_contact(db, row, row.sent_at)
                if is_call and raw in CALL_NOT_REACHED:
                    row.error = f"twilio {kind} {raw}"
            elif raw in (CALL_FAILED if is_call else SMS_FAILED):
                if row.status in ("pending", "sent", *UNCONFIRMED_SEND):
                    row.status = "failed"
                row.error = f"twilio {kind} {raw}" + (f" (error {code})" if code else "")
        log.info("twilio_status", key=key[:255], channel=kind, status=raw)
        if is_call:
            outcome = call_outcome(raw, str(params.get("AnsweredBy") or ""))
        else:
            outcome = "delivered" if raw in SMS_DELIVERED else ("undelivered" if raw in SMS_FAILED else None)
        if outcome is not None and key.count("/") >= 2:
            # The workflow counts call attempts and conversations for its caps.
            await signal(row.workflow_id, "contact_outcome", {"step": key.split("/", 2)[2], "result": outcome})
        return Response(status_code=204)

    @app.post(
        "/webhooks/twilio/amd",
        status_code=204,
        tags=["webhooks"],
        responses={403: {"description": "missing or forged X-Twilio-Signature"}},
        openapi_extra={
            "parameters": [
                {"name": "key", "in": "query", "required": False, "schema": {"type": "string"}, "description": "the outbox key"},
                {"name": "X-Twilio-Signature", "in": "header", "required": False, "schema": {"type": "string"}},
            ],
            **_form_schema({"CallSid": "call id", "AnsweredBy": "human, machine_start, machine_end_beep, fax, unknown"}),
        },
    )
    async def twilio_amd(request: Request) -> Response:
        """Answering-machine detection: a machine or fax must not hear the debt.

        The call is ended at once (through Twilio's REST API when the worker's
        Twilio credentials are set here too) and the workflow is told it was
        a voicemail, which counts as an attempt but not a conversation."""
        params = await twilio_params(request)
        key = request.query_params.get("key") or ""
        answered_by = str(params.get("AnsweredBy") or "")
        if not answered_by.startswith(("machine", "fax")) or not key:
            return Response(status_code=204)
        call_sid = str(params.get("CallSid") or "")
        core_settings = core
        if call_sid and core_settings.twilio_account_sid and core_settings.twilio_auth_token:
            from channels.twilio_sms import make_twilio_client

            client = make_twilio_client(core_settings.twilio_account_sid, core_settings.twilio_auth_token, core_settings.twilio_api_base_url)
            try:
                await asyncio.to_thread(lambda: client.calls(call_sid).update(status="completed"))
            except Exception as error:  # the call may have ended already
                log.warning("twilio_amd_hangup_failed", key=key[:255], error=str(error)[:200])
        with sessions().begin() as db:
            row = db.scalar(select(Contact).where(Contact.key == key))
            if row is None:
                return Response(status_code=204)
            row.error = f"twilio call answered by {answered_by[:32]}: ended before the message"
            workflow_id = row.workflow_id
        if key.count("/") >= 2:
            await signal(workflow_id, "contact_outcome", {"step": key.split("/", 2)[2], "result": "voicemail"})
        log.info("twilio_amd_machine", key=key[:255], answered_by=answered_by[:32])
        return Response(status_code=204)

    @app.post(
        "/webhooks/twilio/inbound",
        tags=["webhooks"],
        responses={403: {"description": "missing or forged X-Twilio-Signature"}},
        response_class=Response,
        openapi_extra={
            "parameters": [{"name": "X-Twilio-Signature", "in": "header", "required": False, "schema": {"type": "string"}}],
            **_form_schema({"MessageSid": "SMS id", "From": "sender (E.164)", "Body": "text"}),
        },
    )
    async def twilio_inbound(request: Request) -> Response:
        """Inbound SMS: a stop word opts the sender's open loans out of SMS; other replies are kept for an agent."""
        params = await twilio_params(request)
        sender = str(params.get("From") or "")
        text = str(params.get("Body") or "").strip()
        sid = str(params.get("MessageSid") or "")
        with sessions()() as db:
            borrower_ids = list(db.scalars(select(Borrower.borrower_id).where(Borrower.phone == sender))) if sender else []
            loans = (
                list(
                    db.scalars(
                        select(Loan.loan_id).where(Loan.borrower_id.in_(borrower_ids), Loan.outcome.is_(None))
                    )
                )
                if borrower_ids
                else []
            )
        from twilio.twiml.messaging_response import MessagingResponse

        first_word = text.split()[0].upper() if text.split() else ""
        if first_word in STOP_WORDS or text in STOP_WORDS:
            if not sid or messages_seen.add(f"stop/{sid}"):
                for loan_id in loans:
                    await signal(contract.workflow_id_for(loan_id), contract.SIGNAL_OPT_OUT, {"channel": "sms"})
            log.info("sms_opt_out", sender=mask(sender), loans=loans)
        elif text:
            if not sid or messages_seen.add(f"reply/{sid}"):
                _keep_reply(
                    {
                        "received_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                        "message_sid": sid,
                        "from": sender,
                        "borrower_ids": borrower_ids,
                        "loan_ids": loans,
                        "body": text[:1600],
                    }
                )
            log.info("sms_reply_received", sender=mask(sender), loans=loans, message_sid=sid)
        return Response(str(MessagingResponse()), media_type="application/xml")

    def _keep_reply(record: dict) -> None:
        path = Path(gw.inbound_replies_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with migrate_lock, path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")

    @app.post(
        "/webhooks/twilio/gather",
        tags=["webhooks"],
        responses={403: {"description": "missing or forged X-Twilio-Signature"}},
        response_class=Response,
        openapi_extra={
            "parameters": [
                {"name": "language", "in": "query", "required": False, "schema": {"type": "string", "enum": ["zh_CN", "zh_TW", "en"]}},
                {"name": "X-Twilio-Signature", "in": "header", "required": False, "schema": {"type": "string"}},
            ],
            **_form_schema({"CallSid": "call id", "Digits": "the keys pressed"}),
        },
    )
    async def twilio_gather(request: Request) -> Response:
        """The call's keypad menu: 1 repayment link by SMS, 2 the policy's first plan offer, 3 agent or dispute."""
        params = await twilio_params(request)
        from twilio.twiml.voice_response import VoiceResponse

        key = request.query_params.get("key") or ""
        row_language = workflow_id = loan_id = None
        if key:
            with sessions().begin() as db:
                row = db.scalar(select(Contact).where(Contact.key == key))
                if row is not None:
                    row_language, workflow_id, loan_id = row.language, row.workflow_id, row.loan_id
        # The call's own language (from its outbox row), else the query's.
        language = row_language or request.query_params.get("language", "en")
        words = _GATHER_WORDS.get(language, _GATHER_WORDS["en"])
        digits = str(params.get("Digits") or "").strip()[:1]
        said = words.get(digits, words["other"])
        if digits == "2":
            # The policy's first plan offer, through the workflow's own checks;
            # its plan_confirmation SMS follows like any other contact.
            said = words["2"] if loan_id and await ivr_plan(loan_id) else words["2_failed"]
        response = VoiceResponse()
        response.say(said, language=words["voice"])
        response.hangup()
        if digits == "1" and workflow_id:
            # The SMS goes out through the workflow, like every contact: window, opt-out and outbox apply.
            await signal(workflow_id, "send_pay_link", {})
        log.info("twilio_gather", call_sid=str(params.get("CallSid") or "")[:64], digits=digits)
        return Response(str(response), media_type="application/xml")

    # ------------------------------------------------------------ SendGrid

    @app.post(
        "/webhooks/sendgrid/events",
        tags=["webhooks"],
        responses={403: {"description": "missing or forged event webhook signature"}},
        openapi_extra={
            "parameters": [
                {"name": "X-Twilio-Email-Event-Webhook-Signature", "in": "header", "required": False, "schema": {"type": "string"}},
                {"name": "X-Twilio-Email-Event-Webhook-Timestamp", "in": "header", "required": False, "schema": {"type": "string"}},
            ],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"type": "array", "items": {"type": "object"}}}},
            },
        },
    )
    async def sendgrid_events(request: Request) -> dict:
        """SendGrid's signed event webhook: delivery results to the outbox, unsubscribes to `opt_out` email."""
        body = await request.body()
        signature = request.headers.get("X-Twilio-Email-Event-Webhook-Signature")
        timestamp = request.headers.get("X-Twilio-Email-Event-Webhook-Timestamp")
        if not (gw.sendgrid_webhook_public_key and signature and timestamp):
            raise HTTPException(403, "missing or unverifiable event webhook signature")
        from sendgrid.helpers.eventwebhook import EventWebhook

        try:
            verifier = EventWebhook()
            key = verifier.convert_public_key_to_ecdsa(gw.sendgrid_webhook_public_key)
            good = verifier.verify_signature(body.decode("utf-8"), signature, timestamp, key)
        except Exception:  # bad base64, bad DER, not UTF-8, bad key: not verified
            good = False
        if not good:
            log.warning("sendgrid_signature_refused")
            raise HTTPException(403, "event webhook signature does not match")
        try:
            events = json.loads(body)
        except (json.JSONDecodeError, RecursionError):
            raise _invalid("(payload)", "must be a JSON array of events", "json_invalid") from None
        if not isinstance(events, list):
            raise _invalid("(payload)", "must be a JSON array of events", "list_type")
        processed = opted_out = 0
        for event in events:
            if not isinstance(event, dict):
                continue
            kind, key = event.get("event"), event.get("dunning_key")
            if not isinstance(kind, str) or not isinstance(key, str) or not key:
                continue
            if not all(_storable(v) for v in (kind, key, *(event.get(f) for f in ("sg_event_id", "sg_message_id", "status"))) if isinstance(v, str)):
                continue  # NUL or a lone surrogate: no outbox row has such a key, and no database could store it
            event_id = event.get("sg_event_id")
            if isinstance(event_id, str) and not events_seen.add(event_id):
                continue
            with sessions().begin() as db:
                row = db.scalar(select(Contact).where(Contact.key == key))
                if row is None:
                    continue
                workflow_id = row.workflow_id
                message_id = event.get("sg_message_id")
                if isinstance(message_id, str) and not row.provider_message_id:
                    row.provider_message_id, row.provider = message_id[:128], row.provider or "sendgrid"
                if kind == "delivered" and row.status in UNCONFIRMED_SEND:
                    row.status, row.sent_at = "sent", row.sent_at or datetime.now(timezone.utc)
                    db.flush()
                    audit_contact(db, row, row.sent_at)
                elif kind in SENDGRID_FAILED:
                    if row.status in ("pending", "sent", *UNCONFIRMED_SEND):
                        row.status = "failed"
                    code = event.get("status") if isinstance(event.get("status"), str) else ""
                    row.error = f"sendgrid {kind}" + (f" ({code[:16]})" if code else "")
            processed += 1
            outcome = SENDGRID_OUTCOMES.get(kind)
            if outcome is not None and key.count("/") >= 2:
                await signal(workflow_id, contract.SIGNAL_CONTACT_OUTCOME, {"step": key.split("/", 2)[2], "result": outcome})
            if kind in SENDGRID_OPT_OUT:
                await signal(workflow_id, contract.SIGNAL_OPT_OUT, {"channel": "email"})
                opted_out += 1
            log.info("sendgrid_event", key=key[:255], kind=kind)
        return {"processed": processed, "opted_out": opted_out}

    # ------------------------------------------------------------ the field team

    @app.post(
        "/visits/{visit_id}/report",
        tags=["field"],
        responses={
            401: {"description": "missing or wrong bearer token"},
            404: {"description": "no such field visit"},
            409: {"description": "the workflow rejected the report (the detail names the key), or the loan is closed"},
            503: {"description": "DUNNING_FIELD_API_TOKEN is not set, or Temporal or the database is unavailable"},
        },
        openapi_extra={
            "parameters": [{"name": "Authorization", "in": "header", "required": False, "schema": {"type": "string"},
                            "description": "Bearer <DUNNING_FIELD_API_TOKEN>"}],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": FieldReport.model_json_schema()}},
            },
        },
    )
    async def visit_report(visit_id: str, request: Request) -> JSONResponse:
        """A field visit's outcome from the field team's app: `record_visit` with
        ids only, then the notes into the database (never into Temporal)."""
        if not core.field_api_token:
            raise HTTPException(503, "field visit reports are not configured (DUNNING_FIELD_API_TOKEN)")
        scheme, _, presented = (request.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            presented.strip().encode("utf-8", "replace"), core.field_api_token.encode("utf-8")
        ):
            log.warning("field_token_refused", path="/visits/{visit_id}/report")
            raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})
        if not re.fullmatch(ID_PATTERN, visit_id):
            raise RequestValidationError(
                [{"type": "string_pattern_mismatch", "loc": ("path", "visit_id"), "msg": "not a visit id", "input": None}]
            )
        try:
            data = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            raise _invalid("(payload)", "must be a JSON object", "json_invalid") from None
        if not isinstance(data, dict):
            raise _invalid("(payload)", "must be a JSON object", "model_attributes_type")
        try:
            report = FieldReport.model_validate(data)
        except ValidationError as error:
            raise RequestValidationError(
                [{**e, "loc": ("body", *e["loc"]), "input": None, "ctx": None} for e in error.errors()]
            ) from None
        client = await temporal()
        try:
            result = await report_visit(client, sessions(), visit_id, report)
        except NoSuchLoan as error:
            raise HTTPException(409, f"loan: {error}") from None
        except (UpdateTimedOut, NotesNotStored) as error:
            raise HTTPException(503, str(error)) from None
        except SQLAlchemyError as error:
            log.warning("field_visit_database_error", visit_id=visit_id, error=type(error).__name__)
            raise HTTPException(503, "the database is not available; send the report again") from None
        except RPCError as error:
            if error.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
                raise HTTPException(503, "Temporal is not reachable") from None
            raise
        # Ids and the outcome only: the notes are not logged either.
        log.info("field_visit_report", visit_id=visit_id, outcome=report.outcome, result=result.result)
        if result.result == "unknown":
            raise HTTPException(404, result.error)
        if result.result == "rejected":
            raise HTTPException(409, result.error)
        return JSONResponse(result.answer, status_code=200)

    # ------------------------------------------------------------ the repayment page

    def page(name: str, status: int, **values) -> HTMLResponse:
        return HTMLResponse(pages.get_template(name).render(**values), status_code=status)

    @app.get("/pay/{token}", response_class=HTMLResponse, tags=["borrowers"])
    async def pay_page(token: str) -> HTMLResponse:
        """The one-click repayment page of a signed pay link (403 forged, 410 expired),
        with the plan offers of the loan's policy."""
        loan_id = pay_token_loan(token)
        if isinstance(loan_id, HTMLResponse):
            return loan_id
        try:
            status = await loan_status(loan_id)
        except HTTPException as error:
            return page("link_refused.html", error.status_code, unavailable=True)
        if status is None:
            return page("link_refused.html", 404, missing=True)
        query = {"loan": loan_id}
        closed = status.get("stage") == contract.STAGE_CLOSED or _is_zero(status.get("outstanding"))
        plan = status.get("plan") if (status.get("plan") or {}).get("status") == "active" else None
        offers = []
        policy = None if closed or plan else loan_policy(status)
        today = loan_today(status)
        if policy is not None and today is not None and offers_open(policy, status):
            for index, offer in enumerate(policy.plans.offers):
                schedule = offer_schedule(offer, status, today)
                if schedule is not None:
                    offers.append({"index": index, "interval_days": offer.interval_days, **schedule})
        return page(
            "pay.html",
            200,
            loan_id=loan_id,
            outstanding=status.get("outstanding"),
            currency=status.get("currency"),
            days_past_due=status.get("days_past_due"),
            closed=closed,
            plan=plan,
            offers=offers,
            plan_action=f"{token}/plan",
            pay_url=f"{gw.lender_pay_url}?{urlencode(query)}",
            plan_url=f"{gw.lender_pay_url}?{urlencode({**query, 'action': 'plan'})}",
            dispute_url=f"{gw.lender_pay_url}?{urlencode({**query, 'action': 'dispute'})}",
            lender_name=core.lender_name,
        )

    def pay_token_loan(token: str) -> str | HTMLResponse:
        """The loan id of a pay-link token, or the refusal page (403 forged, 410 expired)."""
        try:
            return read_pay_token(core.signing_secret(), token, core.pay_link_max_age_days * 86400)
        except PayLinkInvalid as error:
            expired = "expired" in str(error)
            return page("link_refused.html", 410 if expired else 403, expired=expired)

    @app.post(
        "/pay/{token}/plan",
        response_class=HTMLResponse,
        tags=["borrowers"],
        responses={
            403: {"description": "forged or altered pay-link token"},
            409: {"description": "the workflow rejected the plan (the page says which rule)"},
            410: {"description": "expired pay-link token"},
            422: {"description": "no such offer"},
        },
        openapi_extra=_form_schema({"offer": "the offer's number on the page (0 for the first)"}, ["offer"]),
    )
    async def pay_plan(token: str, request: Request) -> HTMLResponse:
        """The borrower chose a plan offer on the pay page: `propose_plan` with its
        schedule from today; the accepted schedule, or the rejection (409)."""
        loan_id = pay_token_loan(token)
        if isinstance(loan_id, HTMLResponse):
            return loan_id
        try:
            form = await request.form()
            raw = form.get("offer")
        except Exception:  # not a form (a multipart body it cannot read, ...)
            raw = None
        index = int(raw) if isinstance(raw, str) and raw.strip().isdigit() and len(raw.strip()) <= 3 else None
        if index is None:
            return page("plan_result.html", 422, lender_name=core.lender_name, loan_id=loan_id, back=f"../{token}",
                        problem="offer: choose one of the plans on the page")
        try:
            answer, status = await propose_offer(loan_id, index, UPDATE_TIMEOUT_SECONDS)
        except LookupError as error:
            if str(error).startswith("offer"):
                return page("plan_result.html", 422, lender_name=core.lender_name, loan_id=loan_id, back=f"../{token}",
                            problem=str(error))
            return page("link_refused.html", 404, missing=True)
        except NoSuchLoan:
            return page("link_refused.html", 404, missing=True)
        except UpdateRejected as error:
            log.info("pay_page_plan_rejected", loan_id=loan_id, offer=index, reason=error.message)
            return page("plan_result.html", 409, lender_name=core.lender_name, loan_id=loan_id, back=f"../{token}",
                        rejected=error.message)
        except (UpdateTimedOut, HTTPException):
            return page("link_refused.html", 503, unavailable=True)
        log.info("pay_page_plan_accepted", loan_id=loan_id, offer=index, plan_no=answer.get("plan_no"))
        return page("plan_result.html", 200, lender_name=core.lender_name, loan_id=loan_id, back=f"../{token}",
                    plan=answer, currency=status.get("currency", ""))

    return app


# Twilio waits 15 seconds for a <Gather> action's TwiML.
IVR_UPDATE_TIMEOUT_SECONDS = 10.0


def loan_today(status: dict) -> date | None:
    """The borrower's local date on the loan's own clock (due date + days past
    due, which the status query counts in the borrower's zone), the date the
    workflow checks a plan's first due date against."""
    try:
        return date.fromisoformat(str(status["due_date"])) + timedelta(days=int(status["days_past_due"]))
    except (KeyError, TypeError, ValueError):
        return None


def offer_proposal(offer: PlanOffer, today: date) -> dict:
    """The propose_plan payload for a policy's plan offer, accepted today."""
    return {
        "installments": offer.installments,
        "first_due_date": (today + timedelta(days=offer.first_due_in_days)).isoformat(),
        "interval_days": offer.interval_days,
        "waive_fees": offer.waive_fees,
        "waive_interest": offer.waive_interest,
    }


def _money(value: Any) -> Decimal:
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return Decimal("0")


def offer_schedule(offer: PlanOffer, status: dict, today: date) -> dict | None:
    """What an offer would be if accepted today (the workflow's own arithmetic:
    the balance less what the offer waives, split with the cents on the first
    installment); None if there is nothing to split."""
    currency = str(status.get("currency") or "")
    total = _money(status.get("outstanding"))
    if offer.waive_fees:
        total -= _money(status.get("fees"))
    if offer.waive_interest:
        total -= _money(status.get("interest"))
    if total <= 0 or not currency:
        return None
    first = today + timedelta(days=offer.first_due_in_days)
    amounts = split(total, offer.installments, currency)
    return {
        "total": format_amount(total, currency),
        "waive_fees": offer.waive_fees and _money(status.get("fees")) > 0,
        "waive_interest": offer.waive_interest and _money(status.get("interest")) > 0,
        "installments": [
            {"number": i + 1, "due_date": (first + timedelta(days=offer.interval_days * i)).isoformat(),
             "amount": format_amount(amount, currency)}
            for i, amount in enumerate(amounts)
        ],
    }


def offers_open(policy: Policy, status: dict) -> bool:
    """Whether the page offers plans now: the policy has offers, the loan is in
    a stage that takes plans, not on hold, owes something and has no plan running.
    (The workflow checks again when one is chosen.)"""
    rules = policy.plans
    stage = status.get("stage")
    plan = status.get("plan") or {}
    return bool(
        rules.enabled
        and rules.offers
        and stage in contract.STAGES
        and contract.STAGES.index(stage) >= contract.STAGES.index(rules.from_stage)
        and plan.get("status") != "active"
        and not status.get("paused")
        and not status.get("disputed")
        and not status.get("open_complaints")
        and _money(status.get("outstanding")) > 0
    )


def _is_zero(amount: Any) -> bool:
    try:
        return float(amount) <= 0
    except (TypeError, ValueError):
        return False


_GATHER_WORDS: dict[str, dict[str, str]] = {
    "en": {
        "voice": "en-US",
        "1": "Thank you. We are sending the repayment link to your phone by text message.",
        "2": "Thank you. A repayment plan has been set up for you. You will receive its schedule by text message.",
        "2_failed": "Sorry, we could not set up a repayment plan now. An agent will call you back to agree on a plan or a promise to pay.",
        "3": "Thank you. An agent will contact you about your question or dispute.",
        "other": "Sorry, that is not an option. Goodbye.",
    },
    "zh_CN": {
        "voice": "zh-CN",
        "1": "谢谢。我们将通过短信把还款链接发送到您的手机。",
        "2": "谢谢。我们已为您设立分期还款计划，还款安排将通过短信发送给您。",
        "2_failed": "抱歉，目前无法为您设立分期还款计划。客服将回电与您商定还款计划或还款承诺。",
        "3": "谢谢。客服将就您的问题或异议与您联系。",
        "other": "抱歉，没有这个选项。再见。",
    },
    "zh_TW": {
        "voice": "zh-TW",
        "1": "謝謝。我們將透過簡訊把還款連結傳送到您的手機。",
        "2": "謝謝。我們已為您設立分期還款計畫，還款安排將透過簡訊傳送給您。",
        "2_failed": "抱歉，目前無法為您設立分期還款計畫。客服將回電與您商定還款計畫或還款承諾。",
        "3": "謝謝。客服將就您的問題或異議與您聯絡。",
        "other": "抱歉，沒有這個選項。再見。",
    },
}


def __getattr__(name: str):
    # `uvicorn gateway.app:app`: built on first access, from the environment.
    if name == "app":
        built = globals()["app"] = create_app()
        return built
    raise AttributeError(name)
