"""JSON-lines logging, one configuration for gunicorn and the app.

``logging_config(level)`` is the dictConfig that gunicorn.conf.py passes as ``logconfig_dict``:
every record (gunicorn's own and the service's) goes to stderr as one JSON object with time,
level, logger, message, process id, the current request id, and any ``extra={...}`` fields.
gunicorn's access log is silenced because the service writes a richer line per request
(model, version, latency) itself.  The service's worker (service.worker) never builds gunicorn's
access-log fields; ``GunicornLogger`` (gunicorn.conf.py's ``logger_class``) makes gunicorn's own
workers skip them too when they run with this configuration (bench/ compares them), instead of
building them for every request before the silenced logger drops them.  ``LineHandler`` writes
each line with one system call.

A log line is cheap: no caller lookup (the lines name their logger, not a source line), one
orjson call, the time formatted once a second.
"""

from __future__ import annotations

import logging
import os
import random
import re
import time
from contextvars import ContextVar

import orjson
from gunicorn import glogging

# Where a record was logged from (a walk up the stack) and the thread's name: nothing prints them.
logging._srcfile = None
logging.logThreads = False
logging.logMultiprocessing = False


def new_request_id() -> str:
    """32 hex digits.  Unique, not secret: random's generator is seeded from the OS, reseeded in
    every forked child, and needs no system call per id as os.urandom does."""
    return f"{random.getrandbits(128):032x}"


# Set for the duration of a request by the HTTP layer, read by every log line in between.
request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
# An incoming X-Request-ID is kept when it matches this (printable, up to 128 characters).
ACCEPTABLE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}$")

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD_ATTRIBUTES = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def _utc_time(created: float, _cache: list = [-1, ""]) -> str:  # noqa: B006 (the per-second cache)
    """ISO 8601 with milliseconds, "2026-01-01T12:00:00.123+00:00"."""
    seconds = int(created)
    if seconds != _cache[0]:
        _cache[:] = [seconds, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))]
    return f"{_cache[1]}.{int((created - seconds) * 1000):03d}+00:00"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": _utc_time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        current_request = request_id.get()
        if current_request is not None:
            entry["request_id"] = current_request
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRIBUTES:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


class LineHandler(logging.StreamHandler):
    """A StreamHandler that writes each line with one os.write on the stream's file descriptor:
    no text layer to encode through, no buffer to flush (a quarter of a line's cost otherwise)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            descriptor = self.stream.fileno()
        except (AttributeError, OSError, ValueError):  # not a file (a test's capture, say)
            super().emit(record)
            return
        try:
            line = memoryview((self.format(record) + "\n").encode())
            while line:
                line = line[os.write(descriptor, line):]
        except Exception:
            self.handleError(record)


class GunicornLogger(glogging.Logger):
    """gunicorn's logger, building its access-log line only when the access logger prints it."""

    @property
    def access_log_enabled(self) -> bool:
        return self.access_log.isEnabledFor(logging.INFO) and super().access_log_enabled


def logging_config(level: str = "INFO") -> dict:
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {
            "stderr": {"class": "service.logs.LineHandler", "formatter": "json", "stream": "ext://sys.stderr"}
        },
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {
            "gunicorn.error": {"level": level, "handlers": [], "propagate": True},
            "gunicorn.access": {"level": "WARNING", "handlers": [], "propagate": False},
        },
    }
