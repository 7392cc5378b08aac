"""JSON log lines with structlog, for our code and for the SDK's loggers.

The workflow logs through `workflow.logger` (replay-safe: silent while a
workflow replays history) and activities through structlog; both end up as one
JSON object per line carrying loan_id, workflow_id, run_id and activity
wherever they apply.

The gateway logs through the same setup (gateway/app.py calls
`configure_logging` when uvicorn loads it): uvicorn's own loggers, its access
log included, are routed into the same JSON handler, and every line passes
`RedactSecrets` first, so a pay-link token (`/pay/<token>`, `?token=`) never
reaches a log file, whoever logged the URL.
"""

from __future__ import annotations

import logging
import re
import sys

import structlog

_configured = False


# Attributes every LogRecord has; anything else on a record came as `extra=`.
# (uvicorn's `color_message` is its console's copy of the message: dropped.)
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName", "color_message"}


def _lift_temporal_context(_logger, _method, event: dict) -> dict:
    """Fields passed as `extra=` become JSON keys; the SDK's loggers put the
    workflow's or activity's identity under `temporal_workflow` /
    `temporal_activity`, which become workflow_id, run_id and activity."""
    record = event.get("_record")
    if record is None:
        return event
    for name, value in vars(record).items():
        if name in _RECORD_ATTRIBUTES or name.startswith("_"):
            continue
        if name in ("temporal_workflow", "temporal_activity") and isinstance(value, dict):
            event.setdefault("workflow_id", value.get("workflow_id"))
            event.setdefault("run_id", value.get("run_id"))
            if name == "temporal_activity":
                event.setdefault("activity", value.get("activity_type"))
        else:
            event.setdefault(name, value)
    return event


# A pay-link token is a 30-day bearer credential for a borrower's page: the
# path segment after /pay/ and any token= query value are replaced.
_PAY_PATH = re.compile(r"(/pay/)[^/?#\s\"']+")
_TOKEN_QUERY = re.compile(r"([?&](?:token|pay_token)=)[^&#\s\"']+", re.IGNORECASE)
REDACTED = "[redacted]"
_UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")


def redact(text: str) -> str:
    """`text` without pay-link tokens."""
    return _TOKEN_QUERY.sub(rf"\g<1>{REDACTED}", _PAY_PATH.sub(rf"\g<1>{REDACTED}", text))


class RedactSecrets(logging.Filter):
    """Takes pay-link tokens out of a record's message and arguments (uvicorn's
    access line is `'%s - "%s %s HTTP/%s" %d'` with the path as an argument),
    and gives an access line its method, path and status as JSON fields."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(arg) if isinstance(arg, str) else arg for arg in record.args)
            if record.name == "uvicorn.access" and len(record.args) == 5:
                _client, record.http_method, record.path, _version, record.status = record.args
        elif isinstance(record.args, dict):
            record.args = {key: redact(value) if isinstance(value, str) else value for key, value in record.args.items()}
        return True


def configure_logging(level: str = "INFO") -> None:
    global _configured
    if _configured:
        return
    _configured = True
    shared = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactSecrets())
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, _lift_temporal_context],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                structlog.processors.JSONRenderer(ensure_ascii=False),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn gives its loggers console handlers of their own that do not
    # propagate: they go through ours instead, as JSON, redacted. The filter
    # sits on the access logger too, before any handler a later
    # configuration might add to it.
    for name in _UVICORN_LOGGERS:
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers[:] = []
        uvicorn_logger.propagate = True
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(existing, RedactSecrets) for existing in access.filters):
        access.addFilter(RedactSecrets())
    # The workflow logger's info goes into fields, not into the message text.
    from temporalio import activity, workflow

    workflow.logger.workflow_info_on_message = False
    activity.logger.activity_info_on_message = False
