"""Which ``md.*`` topics the running bots need, and the Binance stream behind each.

A worker sends ``SetMarketStreams(subscriber, topics, ttl_s)`` and renews it; a subscriber
whose TTL ran out (a dead worker) no longer counts. The service streams the union.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from shared.errors import ValidationError
from shared.strategies.base import KLINE_INTERVALS_MS, SYMBOL_PATTERN

_SYMBOL = re.compile(f"^{SYMBOL_PATTERN}$")


@dataclass(frozen=True, order=True)
class StreamKey:
    """One market stream: ``kind`` is kline, book or depth; ``interval`` only for klines."""

    kind: str
    symbol: str
    interval: str = ""

    @property
    def topic(self) -> str:
        if self.kind == "kline":
            return f"md.kline.{self.symbol}.{self.interval}"
        return f"md.{self.kind}.{self.symbol}"

    def stream_name(self, depth_speed_ms: int = 100) -> str:
        """The Binance stream name (lower-case symbol), e.g. ``btcusdt@kline_1m``."""
        low = self.symbol.lower()
        if self.kind == "kline":
            return f"{low}@kline_{self.interval}"
        if self.kind == "book":
            return f"{low}@bookTicker"
        return f"{low}@depth@{depth_speed_ms}ms" if depth_speed_ms != 1000 else f"{low}@depth"


def check_symbol(symbol: str) -> str:
    if not isinstance(symbol, str) or not _SYMBOL.match(symbol):
        raise ValidationError({"symbol": "upper-case Binance symbol such as BTCUSDT"})
    return symbol


def check_interval(interval: str) -> str:
    if interval not in KLINE_INTERVALS_MS or interval == "1M":
        allowed = ", ".join(i for i in KLINE_INTERVALS_MS if i != "1M")
        raise ValidationError({"interval": f"one of {allowed}"})
    return interval


def parse_topic(topic: str) -> StreamKey:
    """``md.kline.BTCUSDT.1m`` / ``md.book.BTCUSDT`` / ``md.depth.BTCUSDT`` to a key."""
    parts = topic.split(".") if isinstance(topic, str) else []
    if len(parts) == 4 and parts[:2] == ["md", "kline"]:
        return StreamKey("kline", check_symbol(parts[2]), check_interval(parts[3]))
    if len(parts) == 3 and parts[0] == "md" and parts[1] in ("book", "depth"):
        return StreamKey(parts[1], check_symbol(parts[2]))
    raise ValidationError({"topics": f"{topic!r} is not md.kline.<SYMBOL>.<interval>, "
                                     "md.book.<SYMBOL> or md.depth.<SYMBOL>"})


class SubscriptionRegistry:
    """Topics per subscriber with an expiry on a monotonic clock; not thread-safe."""

    def __init__(self) -> None:
        self._subs: dict[str, tuple[frozenset[StreamKey], float]] = {}

    def set(self, subscriber: str, keys: frozenset[StreamKey], expires_at: float) -> None:
        if keys:
            self._subs[subscriber] = (keys, expires_at)
        else:
            self._subs.pop(subscriber, None)

    def expire(self, now: float) -> list[str]:
        """Drop subscribers whose TTL ran out; return their names."""
        gone = [name for name, (_, until) in self._subs.items() if until <= now]
        for name in gone:
            del self._subs[name]
        return gone

    def wanted(self) -> frozenset[StreamKey]:
        out: set[StreamKey] = set()
        for keys, _ in self._subs.values():
            out |= keys
        return frozenset(out)

    def subscribers(self) -> int:
        return len(self._subs)
