"""Topic names: dotted, from general to specific, so prefix subscription works."""

from __future__ import annotations

import re

_PART = re.compile(r"^[A-Za-z0-9_\-]+$")


def _join(*parts: str) -> str:
    for part in parts:
        if not _PART.match(part):
            raise ValueError(f"bad topic part {part!r}: letters, digits, '_' and '-' only")
    return ".".join(parts)


def health(service: str) -> str:
    return _join("health", service)


def log(service: str) -> str:
    return _join("log", service)


def book(symbol: str) -> str:
    return _join("md", "book", symbol.upper())


def depth(symbol: str) -> str:
    return _join("md", "depth", symbol.upper())


def kline(symbol: str, interval: str) -> str:
    return _join("md", "kline", symbol.upper(), interval)


def exec_order(bot_id: str) -> str:
    return _join("exec", "order", bot_id)


def state(kind: str) -> str:
    return _join("state", kind)


def control(kind: str) -> str:
    return _join("ctl", kind)


def prefix_of(topic: str, depth_: int = 2) -> str:
    """The first ``depth_`` parts of a topic: the bus counts rates per such prefix."""
    return ".".join(topic.split(".", depth_)[:depth_])
