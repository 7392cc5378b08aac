"""The field team's visit reports: `record_visit` with ids only, the notes
into the database (never into Temporal)."""

from __future__ import annotations

import hmac
import re

import structlog
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials
from sqlalchemy.exc import SQLAlchemyError

from dunning.inputs import ID_PATTERN
from gateway.auth import AUTH_RESPONSES, Caller, authenticate, bearer
from gateway.bodies import parse_model
from gateway.deps import Gateway, gateway, temporal_errors
from gateway.openapi import json_body
from services.visits import FieldReport, NoSuchLoan, NotesNotStored, UpdateTimedOut, report_visit

log = structlog.get_logger(__name__)

router = APIRouter(tags=["field"])


def _plain(secret) -> str:
    # The setting may be a str or a SecretStr.
    return secret.get_secret_value() if hasattr(secret, "get_secret_value") else (secret or "")


def field_caller(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Depends(bearer),
    gw: Gateway = Depends(gateway),
) -> Caller:
    """A key with `visits:report`; or, kept for field apps set up before API
    keys (the contract promised it), the old DUNNING_FIELD_API_TOKEN when it is
    set. Refusals are the generic 401/403 of gateway/auth.py either way."""
    legacy = _plain(gw.core.field_api_token)
    if legacy and credentials is not None and hmac.compare_digest(
        credentials.credentials.strip().encode("utf-8", "replace"), legacy.encode("utf-8")
    ):
        return Caller("field-api-token", "DUNNING_FIELD_API_TOKEN", frozenset({"visits:report"}))
    return authenticate(gw, request, credentials, "visits:report")


@router.post(
    "/visits/{visit_id}/report",
    responses={
        **AUTH_RESPONSES,
        404: {"description": "no such field visit"},
        409: {"description": "the workflow rejected the report (the detail names the key), or the loan is closed"},
        503: {"description": "Temporal or the database is unavailable"},
    },
    openapi_extra=json_body(FieldReport.model_json_schema()),
)
async def visit_report(
    visit_id: str,
    request: Request,
    caller: Caller = Depends(field_caller),
    gw: Gateway = Depends(gateway),
) -> JSONResponse:
    """A field visit's outcome from the field team's app: `record_visit` with
    ids only, then the notes into the database (never into Temporal)."""
    if not re.fullmatch(ID_PATTERN, visit_id):
        raise RequestValidationError(
            [{"type": "string_pattern_mismatch", "loc": ("path", "visit_id"), "msg": "not a visit id", "input": None}]
        )
    report, _ = parse_model(await request.body(), FieldReport)
    client = await gw.temporal()
    try:
        with temporal_errors():
            result = await report_visit(client, gw.sessions(), visit_id, report)
    except NoSuchLoan as error:
        raise HTTPException(409, f"loan: {error}") from None
    except (UpdateTimedOut, NotesNotStored) as error:
        raise HTTPException(503, str(error)) from None
    except SQLAlchemyError as error:
        log.warning("field_visit_database_error", visit_id=visit_id, error=type(error).__name__)
        raise HTTPException(503, "the database is not available; send the report again") from None
    # Ids and the outcome only: the notes are not logged either.
    log.info("field_visit_report", visit_id=visit_id, outcome=report.outcome, result=result.result, key_id=caller.key_id)
    if result.result == "unknown":
        raise HTTPException(404, result.error)
    if result.result == "rejected":
        raise HTTPException(409, result.error)
    return JSONResponse(result.answer, status_code=200)
