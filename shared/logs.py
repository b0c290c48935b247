"""Logging set-up shared by every service: stderr plus publication on ``log.<service>``.

A ``RedactFilter`` on every handler replaces the API key, the API secret and any other
configured secret with ``***`` in the final text, arguments and tracebacks included.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable

from shared import topics
from shared.bus import Publisher
from shared.messages import LogRecord

REDACTED = "***"
# Query-string signatures and secrets that slip into a URL or an exception text.
_PATTERNS = [
    re.compile(r"(signature=)[0-9a-fA-F]{16,}"),
    re.compile(r"(secret[\"']?\s*[=:]\s*[\"']?)[^\s\"'&,]+", re.I),
]


class RedactFilter(logging.Filter):
    """Rewrites each record's text so no secret survives; attach it to handlers."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        for pattern in _PATTERNS:
            text = pattern.sub(lambda m: m.group(1) + REDACTED, text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
            record.exc_text = None
        if record.stack_info:
            text += "\n" + record.stack_info
            record.stack_info = None
        record.msg = self.redact(text)
        record.args = None
        return True


class BusLogHandler(logging.Handler):
    """Publishes each record as a ``LogRecord`` message on ``log.<service>``."""

    def __init__(self, publisher: Publisher, service: str, instance: str) -> None:
        super().__init__()
        self.publisher = publisher
        self.service = service
        self.instance = instance
        self.topic = topics.log(service)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = LogRecord(
                service=self.service,
                instance=self.instance,
                level=record.levelname,
                logger=record.name,
                message=record.getMessage(),
                ts=record.created,
            )
            self.publisher.publish(self.topic, msg)
        except Exception:  # logging must never take a service down
            self.handleError(record)


def setup_logging(
    service: str,
    level: str,
    secrets: Iterable[str],
    publisher: Publisher | None = None,
    instance: str = "",
) -> RedactFilter:
    """Configure the root logger for a service process; return the redaction filter."""
    redactor = RedactFilter(secrets)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handlers: list[logging.Handler] = [stderr]
    if publisher is not None:
        handlers.append(BusLogHandler(publisher, service, instance))
    for handler in handlers:
        handler.addFilter(redactor)
        root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("werkzeug").setLevel(max(logging.getLevelName(level), logging.WARNING))
    return redactor
