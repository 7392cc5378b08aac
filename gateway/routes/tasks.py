"""Agent tasks on the internal face (issue 17): the collectors' desk lists
them (`tasks:read`), claims and completes them (`tasks:write`). Completing
one sends what its outcome sends to the loan (config/tasks.toml) before the
task is marked done (services/tasks.py, shared with `starter.py tasks`).

    GET  /tasks?status=&kind=&loan_id=&borrower_id=&assignee=&limit=
    POST /tasks/{task_id}/claim     {"assignee": "A-7"}
    POST /tasks/{task_id}/complete  {"assignee": "A-7", "outcome": "verified", "note"?: "VER-2"}

404 no such task; 409 claimed by another agent, done already, or the loan did
not take what the outcome sends (the task is then not done); 422 naming the
field (an outcome not of the task's kind lists the kind's outcomes); 503
Temporal or the database unavailable.
"""

from __future__ import annotations

from typing import Annotated, Literal

import structlog
from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import SQLAlchemyError

from db.tasks import KINDS, NOTE_MAX_CHARS, STATUSES
from dunning.inputs import ID_PATTERN
from gateway.auth import AUTH_RESPONSES, Caller, require_scope
from gateway.deps import Gateway, gateway, temporal_errors
from services.tasks import (
    LoanUnreachable,
    NoSuchTask,
    TaskConfigError,
    TaskConflict,
    TaskError,
    TaskRules,
    UnknownOutcome,
    claim_task,
    complete_task,
    list_tasks,
    load_task_rules,
    rules_path,
)

log = structlog.get_logger(__name__)

router = APIRouter(tags=["tasks"])

TaskId = Annotated[int, PathParam(ge=1, le=2**31 - 1, description="the task's id (GET /tasks)")]
Status = Literal[STATUSES]  # type: ignore[valid-type]
Kind = Literal[KINDS]  # type: ignore[valid-type]
AgentId = Annotated[str, Field(pattern=ID_PATTERN, description="the agent's id, never a name")]


class ClaimBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    assignee: AgentId


class CompleteBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    assignee: AgentId
    outcome: Annotated[str, Field(min_length=1, max_length=32, description="one of the task kind's outcomes (config/tasks.toml)")]
    note: Annotated[str, Field(max_length=NOTE_MAX_CHARS, description="ids and codes only, never personal data")] | None = None


_TASK_RESPONSES = {
    **AUTH_RESPONSES,
    404: {"description": "no such task"},
    409: {"description": "claimed by another agent, done already, or the loan did not take what the outcome sends"},
}


def _invalid(error: TaskError) -> RequestValidationError:
    where = ("query", error.field) if error.field in ("status", "kind", "loan_id", "borrower_id", "limit") else ("body", error.field)
    item = {"type": "value_error", "loc": where, "msg": error.message, "input": None}
    if isinstance(error, UnknownOutcome):
        item["ctx"] = {"allowed": list(error.allowed)}
    return RequestValidationError([item])


def _conflict(error: TaskConflict) -> HTTPException:
    return HTTPException(409, {"message": error.message, "status": error.status, "assignee": error.assignee})


def _rules(gw: Gateway) -> TaskRules:
    try:
        return load_task_rules(rules_path(gw.core.config_dir))
    except TaskConfigError as error:
        log.error("task_config_unreadable", error=str(error)[:300])
        raise HTTPException(503, "the task configuration cannot be read") from None


@router.get("/tasks", responses=AUTH_RESPONSES)
def tasks(
    status: Status | None = None,
    kind: Kind | None = None,
    loan_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    borrower_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    assignee: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    caller: Caller = Depends(require_scope("tasks:read")),
    gw: Gateway = Depends(gateway),
) -> dict:
    """Tasks matching every filter given, most urgent first (priority, higher
    first; then due_at). 200 `{"tasks": [...], "count": n}`."""
    try:
        found = list_tasks(gw.sessions(), status=status, kind=kind, loan_id=loan_id, borrower_id=borrower_id,
                           assignee=assignee, limit=limit)
    except TaskError as error:
        raise _invalid(error) from None
    except SQLAlchemyError as error:
        log.warning("tasks_database_error", error=type(error).__name__)
        raise HTTPException(503, "the database is not available") from None
    return {"tasks": found, "count": len(found)}


@router.post("/tasks/{task_id}/claim", responses=_TASK_RESPONSES)
def claim(
    body: ClaimBody,
    task_id: TaskId,
    caller: Caller = Depends(require_scope("tasks:write")),
    gw: Gateway = Depends(gateway),
) -> dict:
    """Claim an open task for an agent; the same agent again is the same
    answer. 200: the task."""
    try:
        task = claim_task(gw.sessions(), task_id, body.assignee)
    except NoSuchTask:
        raise HTTPException(404, "no such task") from None
    except TaskConflict as error:
        raise _conflict(error) from None
    except TaskError as error:
        raise _invalid(error) from None
    except SQLAlchemyError as error:
        log.warning("tasks_database_error", error=type(error).__name__)
        raise HTTPException(503, "the database is not available") from None
    log.info("task_claimed", task_id=task_id, assignee=body.assignee, key_id=caller.key_id)
    return task


@router.post("/tasks/{task_id}/complete", responses={**_TASK_RESPONSES, 503: {"description": "Temporal or the database is unavailable"}})
async def complete(
    body: CompleteBody,
    task_id: TaskId,
    caller: Caller = Depends(require_scope("tasks:write")),
    gw: Gateway = Depends(gateway),
) -> dict:
    """Complete a task with one of its kind's outcomes: what the outcome sends
    goes to the loan first, then the task is done. 200 `{"task", "sent":
    [{"signal" | "update": name}], "duplicate"}`."""
    rules = _rules(gw)
    try:
        with temporal_errors():
            done = await complete_task(gw.temporal, gw.sessions(), rules, task_id, body.assignee, body.outcome, body.note)
    except NoSuchTask:
        raise HTTPException(404, "no such task") from None
    except TaskConflict as error:
        raise _conflict(error) from None
    except TaskError as error:
        raise _invalid(error) from None
    except LoanUnreachable as error:
        raise HTTPException(503 if error.retry else 409, error.message) from None
    except SQLAlchemyError as error:
        log.warning("tasks_database_error", error=type(error).__name__)
        raise HTTPException(503, "the database is not available; the task is not done") from None
    log.info("task_completed", task_id=task_id, assignee=body.assignee, outcome=body.outcome,
             sent=[next(iter(item.values())) for item in done.sent], duplicate=done.duplicate, key_id=caller.key_id)
    return done.as_dict()
