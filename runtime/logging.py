"""JSON log lines with structlog, for our code and for the SDK's loggers.

The workflow logs through `workflow.logger` (replay-safe: silent while a
workflow replays history) and activities through structlog; both end up as one
JSON object per line carrying loan_id, workflow_id, run_id and activity
wherever they apply.
"""

from __future__ import annotations

import logging
import sys

import structlog

_configured = False


# Attributes every LogRecord has; anything else on a record came as `extra=`.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


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
    # The workflow logger's info goes into fields, not into the message text.
    from temporalio import activity, workflow

    workflow.logger.workflow_info_on_message = False
    activity.logger.activity_info_on_message = False
