"""Faults switchable at run time through ``POST /sim/faults``.

Counters fail that many of the next REST calls (``http_429``, ``http_418``, ``http_5xx``) or
order placements (``unknown_status``: the order is executed, then -1007 is answered, so the
caller must ask by client id). ``latency_ms`` delays every REST reply and WebSocket frame.
``drop_ws`` is an action: open WebSockets are closed at once — ``true`` or ``"all"`` for
every socket, ``"streams"`` for market streams only, ``"ws_api"`` for WebSocket API (user data)
connections only.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, fields

from shared.errors import ValidationError

COUNTERS = ("http_429", "http_418", "http_5xx", "unknown_status")
DROP_TARGETS = ("all", "streams", "ws_api")


def drop_target(value: object) -> str | None:
    """Which sockets a ``drop_ws`` value asks to close (None: none); ValueError if invalid."""
    if value is False or value is None:
        return None
    if value is True:
        return "all"
    if value in DROP_TARGETS:
        return str(value)
    raise ValueError(f"must be true, false or one of {list(DROP_TARGETS)}")


@dataclass
class FaultSettings:
    """The faults in force; all zero means a well-behaved venue."""

    http_429: int = 0
    http_418: int = 0
    http_5xx: int = 0
    unknown_status: int = 0
    latency_ms: int = 0
    retry_after_s: int = 1
    ws_dropped: int = 0  # how many times drop_ws was requested (read-only)


class Faults:
    """Thread-safe holder of :class:`FaultSettings` with take-one-shot counters."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._settings = FaultSettings()

    def snapshot(self) -> dict:
        with self._lock:
            return asdict(self._settings)

    def update(self, changes: dict) -> dict:
        """Apply ``changes`` (field → non-negative int); unknown fields raise ValidationError."""
        allowed = {f.name for f in fields(FaultSettings)} - {"ws_dropped"}
        problems = {}
        for name, value in changes.items():
            if name == "drop_ws":
                try:
                    drop_target(value)
                except ValueError as exc:
                    problems[name] = str(exc)
                continue
            if name not in allowed:
                problems[name] = f"unknown fault; allowed: {sorted(allowed | {'drop_ws'})}"
            elif isinstance(value, bool) or not isinstance(value, int) or value < 0:
                problems[name] = "must be an integer >= 0"
        if problems:
            raise ValidationError(problems, "bad fault settings")
        with self._lock:
            for name, value in changes.items():
                if name != "drop_ws":
                    setattr(self._settings, name, value)
            if drop_target(changes.get("drop_ws")):
                self._settings.ws_dropped += 1
            return asdict(self._settings)

    def clear(self) -> dict:
        with self._lock:
            dropped = self._settings.ws_dropped
            self._settings = FaultSettings(ws_dropped=dropped)
            return asdict(self._settings)

    def take(self, name: str) -> bool:
        """Use one shot of counter ``name``; True if the fault fires now."""
        with self._lock:
            left = getattr(self._settings, name)
            if left <= 0:
                return False
            setattr(self._settings, name, left - 1)
            return True

    @property
    def latency_s(self) -> float:
        with self._lock:
            return self._settings.latency_ms / 1000

    @property
    def retry_after_s(self) -> int:
        with self._lock:
            return self._settings.retry_after_s
