"""Structured logs: one JSON object per line with `ts`, `level`, `event` and the request id."""

from __future__ import annotations

import logging
import sys
from typing import Any

import orjson
import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def _stderr_logger(*_args: Any) -> structlog.BytesLogger:
    # Looked up at each use, never held: whoever swapped sys.stderr (a test runner) may have closed the old one.
    return structlog.BytesLogger(sys.stderr.buffer)


def configure_logging(level: str, *, to_stderr: bool = False) -> None:
    """JSON lines at `level` and above, to standard output (a server's log) or standard error (a command's)."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
            # Frame locals could hold secrets or payload values, which never go into logs.
            structlog.processors.ExceptionRenderer(structlog.tracebacks.ExceptionDictTransformer(show_locals=False)),
            structlog.processors.JSONRenderer(serializer=orjson.dumps),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=_stderr_logger if to_stderr else structlog.BytesLoggerFactory(),
        cache_logger_on_first_use=False,
    )
