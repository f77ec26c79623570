"""Structured logs: one JSON object per line, one line per event, never a payload.

Callers pass only metadata (sid, room, name, code, counts). There is deliberately no way to
log an event's payload: `log_event` accepts scalars only and drops anything else.
"""

from __future__ import annotations

import json
import logging
import sys
import time

LOGGER_NAME = "parley_relay"
_SCALARS = (str, int, float, bool, type(None))


class JsonFormatter(logging.Formatter):
    """Render a record as one JSON line: ts, level, event and the record's `fields`."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "event": record.getMessage(),
        }
        line.update(getattr(record, "fields", {}))
        if record.exc_info and record.exc_info[0] is not None:
            # The exception type and text only: a traceback could quote a payload.
            line["error"] = f"{record.exc_info[0].__name__}: {record.exc_info[1]}"[:300]
        return json.dumps(line, ensure_ascii=False, default=str)


def setup_logging(level: str) -> logging.Logger:
    """Send the relay's logs as JSON lines to stderr at `level`; quiet noisy libraries."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(LOGGER_NAME)
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False
    # socketio/engineio log payload-bearing lines at INFO; keep them to errors only, as JSON.
    for noisy in ("socketio", "engineio", "geventwebsocket"):
        lib = logging.getLogger(noisy)
        lib.handlers[:] = [handler]
        lib.setLevel(logging.ERROR)
        lib.propagate = False
    # python-socketio and python-engineio attach a plain StreamHandler (which prints full
    # tracebacks) to these loggers if their level is still NOTSET when the server is built.
    for child in ("socketio.server", "engineio.server"):
        lib = logging.getLogger(child)
        lib.handlers.clear()
        lib.setLevel(logging.ERROR)
        lib.propagate = True
    return logger


def log_event(
    logger: logging.Logger,
    event: str,
    level: int = logging.INFO,
    exc_info: bool = False,
    **fields: object,
) -> None:
    """Log `event` with scalar metadata fields; non-scalar values are dropped on purpose."""
    if not logger.isEnabledFor(level):
        return
    clean = {k: v for k, v in fields.items() if isinstance(v, _SCALARS)}
    logger.log(level, event, extra={"fields": clean}, exc_info=exc_info)
