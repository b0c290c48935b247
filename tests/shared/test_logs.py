"""Log redaction: the API key and secret never reach stderr or the bus."""

from __future__ import annotations

import io
import logging
import time

from shared.bus import Publisher, Subscriber
from shared.logs import BusLogHandler, RedactFilter, setup_logging
from shared.messages import LogRecord

KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"


def capture_logger(redactor: RedactFilter) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(redactor)
    logger = logging.getLogger(f"test.redact.{time.monotonic_ns()}")
    logger.propagate = False
    logger.addHandler(handler)
    return logger, stream


def test_key_and_secret_are_redacted_in_message_and_args():
    logger, out = capture_logger(RedactFilter([KEY, SECRET]))

    logger.warning("key=%s secret %s", KEY, SECRET)
    logger.warning(f"inline {SECRET}")

    text = out.getvalue()
    assert KEY not in text and SECRET not in text
    assert text.count("***") == 3


def test_secret_in_a_traceback_is_redacted():
    logger, out = capture_logger(RedactFilter([SECRET]))
    try:
        raise ValueError(f"bad request with {SECRET}")
    except ValueError:
        logger.exception("call failed")

    text = out.getvalue()
    assert "ValueError: bad request with ***" in text
    assert SECRET not in text


def test_signatures_in_urls_are_redacted_even_when_unknown():
    logger, out = capture_logger(RedactFilter([]))
    logger.error("GET /api/v3/order?symbol=BTCUSDT&signature=%s", "ab12" * 16)
    assert "signature=***" in out.getvalue()


def test_published_log_records_are_redacted(bus, ctx, endpoints):
    pub = Publisher(ctx, endpoints.bus_xsub)
    sub = Subscriber(ctx, endpoints.bus_xpub, ["log.execution"])
    handler = BusLogHandler(pub, "execution", "i-1")
    handler.addFilter(RedactFilter([KEY, SECRET]))
    logger = logging.getLogger("test.redact.bus")
    logger.propagate = False
    logger.addHandler(handler)

    deadline = time.monotonic() + 5
    got = None
    while got is None and time.monotonic() < deadline:
        logger.warning("placing with %s / %s", KEY, SECRET)
        got = sub.recv(timeout_ms=50)

    assert got is not None
    topic, record = got
    assert topic == "log.execution" and isinstance(record, LogRecord)
    assert record.message == "placing with *** / ***"
    assert record.level == "WARNING" and record.service == "execution"
    logger.removeHandler(handler)
    pub.close()
    sub.close()


def test_setup_logging_puts_the_filter_on_every_handler():
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        setup_logging("gateway", "INFO", [SECRET])
        assert root.handlers and all(
            any(isinstance(f, RedactFilter) for f in h.filters) for h in root.handlers
        )
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
