"""Structured logs: one JSON line per event, scalars only, no tracebacks."""

from __future__ import annotations

import io
import json
import logging

from parley_relay.logs import JsonFormatter, log_event, setup_logging


def capture(logger_name: str = "parley_relay") -> io.StringIO:
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setFormatter(JsonFormatter())
    for name in ("parley_relay", "socketio", "engineio"):
        logging.getLogger(name).handlers[:] = [handler]
    return buf


def test_one_json_line_with_scalar_fields_only():
    logger = setup_logging("INFO")
    buf = capture()
    log_event(
        logger, "joined", sid="s1", room="r", members=2, payload={"secret": "x"}, blob=["secret"]
    )
    lines = buf.getvalue().splitlines()
    assert len(lines) == 1
    line = json.loads(lines[0])
    assert line["event"] == "joined" and line["level"] == "info"
    assert line["sid"] == "s1" and line["members"] == 2
    assert "payload" not in line and "blob" not in line and "secret" not in lines[0]


def test_exceptions_become_one_line_without_traceback():
    logger = setup_logging("INFO")
    buf = capture()
    try:
        raise ValueError("bad thing")
    except ValueError:
        log_event(logger, "handler_error", logging.ERROR, exc_info=True)
    out = buf.getvalue()
    assert "Traceback" not in out
    assert json.loads(out)["error"] == "ValueError: bad thing"


def test_library_server_loggers_have_no_plain_handlers():
    setup_logging("INFO")
    for name in ("socketio.server", "engineio.server"):
        lib = logging.getLogger(name)
        assert lib.handlers == [] and lib.level == logging.ERROR and lib.propagate


def test_level_filters_debug():
    logger = setup_logging("WARNING")
    buf = capture()
    log_event(logger, "rejected", logging.INFO, code="bad_request")
    assert buf.getvalue() == ""
