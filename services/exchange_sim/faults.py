"""Faults switchable at run time through ``POST /sim/faults`` and at start by ``SIM_FAULTS``.

Counters fail that many of the next REST calls (``http_429``, ``http_418``, ``http_5xx``) or
order placements (``unknown_status``: -1007 is answered and the order was placed or not — the
caller must ask by client id). Rates (``rate_http_429``... ``rate_unknown_status``, 0 to 1) fail
each call with that probability. Whether a -1007 order was placed is drawn with probability
``unknown_status_placed``. Every draw comes from one generator seeded by ``seed`` (``SIM_SEED``),
so a given seed and the same sequence of calls give the same faults. ``latency_ms`` delays every
REST reply and WebSocket frame. ``stall_ws`` keeps WebSockets open but silent — ``true`` or
``"all"``, ``"streams"``, ``"ws_api"``; ``false`` resumes. ``drop_ws`` is an action: open
WebSockets of that target are closed at once.
"""

from __future__ import annotations

import json
import random
import threading
from dataclasses import asdict, dataclass, fields
from typing import Any

from shared.errors import ValidationError

COUNTERS = ("http_429", "http_418", "http_5xx", "unknown_status")
RATES = tuple(f"rate_{name}" for name in COUNTERS) + ("unknown_status_placed",)
DROP_TARGETS = ("all", "streams", "ws_api")
READ_ONLY = ("ws_dropped",)
ACTIONS = ("drop_ws",)


def drop_target(value: object) -> str | None:
    """Which sockets a ``drop_ws``/``stall_ws`` value names (None: none); ValueError if bad."""
    if value is False or value is None or value == "":
        return None
    if value is True:
        return "all"
    if value in DROP_TARGETS:
        return str(value)
    raise ValueError(f"must be true, false or one of {list(DROP_TARGETS)}")


@dataclass
class FaultSettings:
    """The faults in force; the defaults are a well-behaved venue."""

    http_429: int = 0
    http_418: int = 0
    http_5xx: int = 0
    unknown_status: int = 0
    rate_http_429: float = 0.0
    rate_http_418: float = 0.0
    rate_http_5xx: float = 0.0
    rate_unknown_status: float = 0.0
    unknown_status_placed: float = 0.5  # chance that an order answered -1007 was placed
    latency_ms: int = 0
    retry_after_s: int = 1
    stall_ws: str = ""  # "", "all", "streams" or "ws_api"
    seed: int = 7
    ws_dropped: int = 0  # how many times drop_ws was requested (read-only)


def _problem(name: str, value: Any) -> str | None:
    """What is wrong with ``name = value`` (None if it is fine)."""
    if name in ACTIONS or name == "stall_ws":
        try:
            drop_target(value)
        except ValueError as exc:
            return str(exc)
        return None
    allowed = {f.name for f in fields(FaultSettings)} - set(READ_ONLY)
    if name not in allowed:
        return f"unknown fault; allowed: {sorted(allowed | set(ACTIONS))}"
    if name in RATES:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1
        return None if ok else "must be a number from 0 to 1"
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return "must be an integer >= 0"
    return None


def parse_fault_text(text: str) -> dict[str, Any]:
    """``SIM_FAULTS`` text → changes: a JSON object or ``name=value,name=value``."""
    text = text.strip()
    if not text:
        return {}
    if text.startswith("{"):
        value = json.loads(text)
        if not isinstance(value, dict):
            raise ValueError("a JSON object is needed")
        return value
    changes: dict[str, Any] = {}
    for item in text.split(","):
        name, sep, raw = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"{item.strip()!r} is not name=value")
        changes[name.strip()] = _scalar(raw.strip())
    return changes


def _scalar(raw: str) -> Any:
    lowered = raw.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            pass
    return raw


class Faults:
    """Thread-safe holder of :class:`FaultSettings`: one-shot counters and seeded rates."""

    def __init__(self, seed: int = 7) -> None:
        self._lock = threading.Lock()
        self._settings = FaultSettings(seed=seed)
        self._rng = random.Random(seed)

    def snapshot(self) -> dict:
        with self._lock:
            return asdict(self._settings)

    @staticmethod
    def validate(changes: dict) -> None:
        """Raise ValidationError naming every bad field of ``changes``."""
        problems = {}
        for name, value in changes.items():
            problem = _problem(str(name), value)
            if problem:
                problems[str(name)] = problem
        if problems:
            raise ValidationError(problems, "bad fault settings")

    def update(self, changes: dict) -> dict:
        """Apply ``changes`` (see the module doc); unknown or bad fields raise ValidationError."""
        self.validate(changes)
        with self._lock:
            for name, value in changes.items():
                if name == "stall_ws":
                    self._settings.stall_ws = drop_target(value) or ""
                elif name not in ACTIONS:
                    setattr(self._settings, name, value)
            if "seed" in changes:
                self._rng = random.Random(changes["seed"])
            if drop_target(changes.get("drop_ws")):
                self._settings.ws_dropped += 1
            return asdict(self._settings)

    def clear(self) -> dict:
        """Back to a well-behaved venue (the seed and the drop count are kept)."""
        with self._lock:
            kept = FaultSettings(seed=self._settings.seed, ws_dropped=self._settings.ws_dropped)
            self._settings = kept
            return asdict(self._settings)

    def take(self, name: str) -> bool:
        """True if fault ``name`` fires now: a shot of its counter, else a draw at its rate."""
        with self._lock:
            left = getattr(self._settings, name)
            if left > 0:
                setattr(self._settings, name, left - 1)
                return True
            rate = getattr(self._settings, f"rate_{name}")
            return rate > 0 and self._rng.random() < rate

    def placed_anyway(self) -> bool:
        """Seeded draw: was the order answered -1007 placed all the same?"""
        with self._lock:
            return self._rng.random() < self._settings.unknown_status_placed

    def stalled(self, kind: str) -> bool:
        """True while the WebSockets of ``kind`` ("streams" or "ws_api") must stay silent."""
        with self._lock:
            return self._settings.stall_ws in ("all", kind)

    @property
    def latency_s(self) -> float:
        with self._lock:
            return self._settings.latency_ms / 1000

    @property
    def retry_after_s(self) -> int:
        with self._lock:
            return self._settings.retry_after_s
