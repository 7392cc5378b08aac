"""The field team's visit reports: `record_visit` with ids only, the notes
into the database (never into Temporal)."""

from __future__ import annotations

import hmac
import re

import structlog
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError

from dunning.inputs import ID_PATTERN
from gateway.bodies import parse_model
from gateway.deps import Gateway, gateway, temporal_errors
from gateway.openapi import header, json_body
from services.visits import FieldReport, NoSuchLoan, NotesNotStored, UpdateTimedOut, report_visit

log = structlog.get_logger(__name__)

router = APIRouter(tags=["field"])


def check_field_token(gw: Gateway, request: Request) -> None:
    """503 when no field token is configured, 401 unless the request bears it."""
    if not gw.core.field_api_token:
        raise HTTPException(503, "field visit reports are not configured (DUNNING_FIELD_API_TOKEN)")
    scheme, _, presented = (request.headers.get("Authorization") or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        presented.strip().encode("utf-8", "replace"), gw.core.field_api_token.encode("utf-8")
    ):
        log.warning("field_token_refused", path="/visits/{visit_id}/report")
        raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})


@router.post(
    "/visits/{visit_id}/report",
    responses={
        401: {"description": "missing or wrong bearer token"},
        404: {"description": "no such field visit"},
        409: {"description": "the workflow rejected the report (the detail names the key), or the loan is closed"},
        503: {"description": "DUNNING_FIELD_API_TOKEN is not set, or Temporal or the database is unavailable"},
    },
    openapi_extra={
        "parameters": [header("Authorization", description="Bearer <DUNNING_FIELD_API_TOKEN>")],
        **json_body(FieldReport.model_json_schema()),
    },
)
async def visit_report(visit_id: str, request: Request, gw: Gateway = Depends(gateway)) -> JSONResponse:
    """A field visit's outcome from the field team's app: `record_visit` with
    ids only, then the notes into the database (never into Temporal)."""
    check_field_token(gw, request)
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
    log.info("field_visit_report", visit_id=visit_id, outcome=report.outcome, result=result.result)
    if result.result == "unknown":
        raise HTTPException(404, result.error)
    if result.result == "rejected":
        raise HTTPException(409, result.error)
    return JSONResponse(result.answer, status_code=200)
