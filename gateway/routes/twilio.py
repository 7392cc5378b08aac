"""Twilio's webhooks: message and call status callbacks (the outbox), the
answering-machine report, a recorded call's recording (kept with its
contact), inbound SMS (stored; keywords become actions, anything else a task
for an agent: services/inbound.py) and the call's keypad menu. Each is
refused with a 403 unless Twilio signed it."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Any

import structlog
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from db import outbox, recordings
from db import tasks as agent_tasks
from db.write_once import in_transaction
from dunning import contract
from gateway import ivr
from gateway.deps import Gateway, gateway
from gateway.openapi import OUTBOX_KEY, TWILIO_SIGNATURE, form_body
from gateway.plans import propose_offer
from gateway.twilio_form import twilio_form
from services.inbound import Lender, LoanPort, callback_task, handle_sms
from services.inbound_keywords import NO_KEYWORDS, InboundConfigError, keywords_path, load_keywords

log = structlog.get_logger(__name__)

router = APIRouter(tags=["webhooks"], responses={403: {"description": "missing or forged X-Twilio-Signature"}})

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

# Twilio waits 15 seconds for a <Gather> action's TwiML.
IVR_UPDATE_TIMEOUT_SECONDS = 10.0


def call_outcome(call_status: str, answered_by: str) -> str | None:
    """A finished call's outcome in the contract's words, or None while it runs."""
    if call_status == "completed":
        return "voicemail" if answered_by.startswith(("machine", "fax")) else "answered"
    return {"no-answer": "no_answer", "busy": "busy", "failed": "failed", "canceled": "failed"}.get(call_status)


def sms_outcome(message_status: str) -> str | None:
    return "delivered" if message_status in SMS_DELIVERED else ("undelivered" if message_status in SMS_FAILED else None)


@router.post(
    "/webhooks/twilio/status",
    status_code=204,
    openapi_extra={
        "parameters": [OUTBOX_KEY, TWILIO_SIGNATURE],
        **form_body(
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
async def twilio_status(
    request: Request, params: dict[str, Any] = Depends(twilio_form), gw: Gateway = Depends(gateway)
) -> Response:
    """Message and call status callbacks: update the outbox row named by `key`."""
    key = request.query_params.get("key")
    sid = str(params.get("MessageSid") or params.get("CallSid") or "")
    is_call = bool(params.get("CallSid")) and not params.get("MessageSid")
    raw = str(params.get("CallStatus") if is_call else params.get("MessageStatus") or params.get("SmsStatus") or "")
    if not key:
        return Response(status_code=204)
    code = str(params.get("ErrorCode") or "")
    kind = "call" if is_call else "sms"
    with gw.sessions().begin() as db:
        row = outbox.find(db, key)
        if row is None:
            log.warning("twilio_status_unknown_key", key=key[:255], status=raw)
            return Response(status_code=204)
        outbox.note_provider_message(row, "twilio", sid)  # a send whose record was lost: reconciled from the callback
        succeeded = (raw in CALL_COMPLETED) if is_call else (raw in SMS_ACCEPTED)
        if succeeded or (is_call and raw in CALL_NOT_REACHED | CALL_PLACED):
            # Twilio took it: a send a crashed worker left in doubt is confirmed, and audited.
            outbox.confirm_sent(db, row, datetime.now(timezone.utc))
            if is_call and raw in CALL_NOT_REACHED:
                row.error = f"twilio {kind} {raw}"  # noted, not a failure: the row stays sent
        elif raw in (CALL_FAILED if is_call else SMS_FAILED):
            outbox.record_provider_failure(row, f"twilio {kind} {raw}" + (f" (error {code})" if code else ""))
        workflow_id = row.workflow_id
    log.info("twilio_status", key=key[:255], channel=kind, status=raw)
    outcome = call_outcome(raw, str(params.get("AnsweredBy") or "")) if is_call else sms_outcome(raw)
    await gw.tell_contact_outcome(workflow_id, key, outcome)
    return Response(status_code=204)


@router.post(
    "/webhooks/twilio/amd",
    status_code=204,
    openapi_extra={
        "parameters": [OUTBOX_KEY, TWILIO_SIGNATURE],
        **form_body({"CallSid": "call id", "AnsweredBy": "human, machine_start, machine_end_beep, fax, unknown"}),
    },
)
async def twilio_amd(
    request: Request, params: dict[str, Any] = Depends(twilio_form), gw: Gateway = Depends(gateway)
) -> Response:
    """Answering-machine detection: a machine or fax must not hear the debt.

    The call is ended at once (through Twilio's REST API when the worker's
    Twilio credentials are set here too) and the workflow is told it was
    a voicemail, which counts as an attempt but not a conversation."""
    key = request.query_params.get("key") or ""
    answered_by = str(params.get("AnsweredBy") or "")
    if not answered_by.startswith(("machine", "fax")) or not key:
        return Response(status_code=204)
    call_sid = str(params.get("CallSid") or "")
    core = gw.core
    if call_sid and core.twilio_account_sid and core.twilio_auth_token:
        from channels.twilio_sms import make_twilio_client

        client = make_twilio_client(core.twilio_account_sid, core.twilio_auth_token.get_secret_value(),
                                    core.twilio_api_base_url)
        try:
            await asyncio.to_thread(lambda: client.calls(call_sid).update(status="completed"))
        except Exception as error:  # the call may have ended already
            log.warning("twilio_amd_hangup_failed", key=key[:255], error=str(error)[:200])
    with gw.sessions().begin() as db:
        row = outbox.find(db, key)
        if row is None:
            return Response(status_code=204)
        row.error = f"twilio call answered by {answered_by[:32]}: ended before the message"
        workflow_id = row.workflow_id
    await gw.tell_contact_outcome(workflow_id, key, "voicemail")
    log.info("twilio_amd_machine", key=key[:255], answered_by=answered_by[:32])
    return Response(status_code=204)


@router.post(
    "/webhooks/twilio/recording",
    status_code=204,
    openapi_extra={
        "parameters": [OUTBOX_KEY, TWILIO_SIGNATURE],
        **form_body(
            {
                "CallSid": "call id",
                "RecordingSid": "the recording's id (RE...)",
                "RecordingStatus": "completed, absent, failed",
                "RecordingDuration": "seconds",
            }
        ),
    },
)
async def twilio_recording(
    request: Request, params: dict[str, Any] = Depends(twilio_form), gw: Gateway = Depends(gateway)
) -> Response:
    """A recorded call's recording (RecordingStatusCallback): its sid and
    length are kept on the contact row named by `key`, once, with an audit
    entry; the retention job deletes it when it is past the profile's
    records_retention_years. The same callback again changes nothing."""
    key = request.query_params.get("key") or ""
    sid = str(params.get("RecordingSid") or "")
    status = str(params.get("RecordingStatus") or "")
    if not key or status != "completed" or not recordings.RECORDING_SID.match(sid):
        log.info("twilio_recording_ignored", key=key[:255], status=status[:32], sid=sid[:64])
        return Response(status_code=204)
    duration = str(params.get("RecordingDuration") or "")
    seconds = int(duration) if duration.isdigit() and len(duration) < 9 else None
    at = datetime.now(timezone.utc)
    result = in_transaction(gw.sessions(), lambda db: recordings.store_recording(db, key, sid, seconds, at))
    if result in (recordings.OTHER, recordings.UNKNOWN_KEY):
        # Another recording than the one the row keeps, or no such row: not
        # kept, so the retention job cannot delete it; an operator must.
        log.warning("twilio_recording_not_kept", key=key[:255], sid=sid, reason=result)
    else:
        log.info("twilio_recording", key=key[:255], sid=sid, seconds=seconds, result=result)
    return Response(status_code=204)


@router.post(
    "/webhooks/twilio/inbound",
    response_class=Response,
    openapi_extra={
        "parameters": [TWILIO_SIGNATURE],
        **form_body({"MessageSid": "SMS id", "From": "sender (E.164)", "Body": "text"}),
    },
)
async def twilio_inbound(params: dict[str, Any] = Depends(twilio_form), gw: Gateway = Depends(gateway)) -> Response:
    """Inbound SMS: stored, then what its keyword asks (config/inbound_keywords.toml:
    STOP, HELP, PAY, DISPUTE, AGENT in en, zh_CN, zh_TW), or a task for an
    agent; once per MessageSid (services/inbound.py). TwiML, with the reply if any."""
    from twilio.twiml.messaging_response import MessagingResponse

    try:
        keywords = load_keywords(keywords_path(gw.core.config_dir))
    except InboundConfigError as error:
        # The message is still stored, and goes to an agent as unrecognised:
        # a broken file must not lose what a borrower asked.
        log.error("inbound_keywords_unreadable", error=str(error)[:300])
        keywords = NO_KEYWORDS
    handled = await handle_sms(
        gw.sessions(), keywords, LoanPort(gw.signal, gw.loan_status), Lender(gw.core.lender_name, gw.edge.lender_contact),
        str(params.get("MessageSid") or ""), str(params.get("From") or ""), str(params.get("Body") or ""),
    )
    response = MessagingResponse()
    if handled.reply:
        response.message(handled.reply)
    return Response(str(response), media_type="application/xml")


@router.post(
    "/webhooks/twilio/gather",
    response_class=Response,
    openapi_extra={
        "parameters": [
            {"name": "language", "in": "query", "required": False, "schema": {"type": "string", "enum": ["zh_CN", "zh_TW", "en"]}},
            TWILIO_SIGNATURE,
        ],
        **form_body({"CallSid": "call id", "Digits": "the keys pressed"}),
    },
)
async def twilio_gather(
    request: Request, params: dict[str, Any] = Depends(twilio_form), gw: Gateway = Depends(gateway)
) -> Response:
    """The call's keypad menu: 1 repayment link by SMS, 2 the policy's first plan offer, 3 agent or dispute."""
    from twilio.twiml.voice_response import VoiceResponse

    key = request.query_params.get("key") or ""
    row_language = workflow_id = loan_id = borrower_id = None
    if key:
        with gw.sessions().begin() as db:
            row = outbox.find(db, key)
            if row is not None:
                row_language, workflow_id, loan_id, borrower_id = row.language, row.workflow_id, row.loan_id, row.borrower_id
    # The call's own language (from its outbox row), else the query's.
    language = row_language or request.query_params.get("language", "en")
    digits = str(params.get("Digits") or "").strip()[:1]
    call_sid = str(params.get("CallSid") or "")
    answer = ivr.KEYPAD.get(digits, ivr.NOT_AN_OPTION)
    # A keypress acts once per call: the same signed request replayed (or
    # retried by Twilio) sends no second SMS and makes no second offer.
    acts = (digits == "1" and workflow_id) or (digits == "2" and loan_id)
    once = gather_key(call_sid, key, digits)
    first = bool(acts) and gw.messages_seen.add(once)
    if digits == "2" and not (first and await plan_set_up(gw, loan_id)):
        # The policy's first plan offer, through the workflow's own checks;
        # its plan_confirmation SMS follows like any other contact. Pressed
        # again (a replay): no second offer, an agent calls back.
        answer = ivr.PLAN_NOT_SET_UP
    words, say_language = ivr.keypad_answer(gw.templates(), language, answer)
    response = VoiceResponse()
    response.say(words, language=say_language)
    response.hangup()
    if digits == "1" and first:
        # The SMS goes out through the workflow, like every contact: window, opt-out and outbox apply.
        try:
            await gw.signal(workflow_id, contract.SIGNAL_SEND_PAY_LINK, {})
        except BaseException:
            gw.messages_seen.discard(once)  # not delivered: Twilio's retry may try again
            raise
    if digits == "3" and workflow_id:
        # Issue 17: "an agent will call you back" is a task for a person,
        # once per call (its key), due within a working day (the answer says so).
        with gw.sessions().begin() as db:
            agent_tasks.create(db, callback_task(
                f"{workflow_id}/task/callback/{call_sid[:64] or key}", loan_id, borrower_id, workflow_id, "keypad_3",
            ))
    log.info("twilio_gather", call_sid=call_sid[:64], digits=digits, replay=bool(acts) and not first)
    return Response(str(response), media_type="application/xml")


def gather_key(call_sid: str, key: str, digits: str) -> str:
    """The once-only key of a keypress: the call (its CallSid, else its outbox key) and the digit."""
    return f"gather/{call_sid or 'key:' + key}/{digits}"


async def plan_set_up(gw: Gateway, loan_id: str) -> bool:
    """Keypad 2: the first offer of the loan's policy. True if accepted."""
    try:
        answer, _ = await propose_offer(gw, loan_id, 0, IVR_UPDATE_TIMEOUT_SECONDS)
    except Exception as error:  # whatever happened, Twilio gets TwiML: an agent calls back
        log.info("ivr_plan_not_set_up", loan_id=loan_id, error=type(error).__name__,
                 reason=str(getattr(error, "detail", None) or error)[:300])
        return False
    log.info("ivr_plan_set_up", loan_id=loan_id, plan_no=answer.get("plan_no") if isinstance(answer, dict) else None)
    return True
