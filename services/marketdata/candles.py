"""Klines from the stream made exact: each closed candle once, in order, gaps filled by REST.

A ``KlineTracker`` follows one (symbol, interval). It remembers the open time of the last closed
candle it published; an event that is a repeat is dropped, and an event further ahead than one
interval (a reconnect lost some) first fetches the missing closed candles by REST. Every
candle before the one an event describes is closed, so the fill needs no clock.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from shared.errors import TradingBotError
from shared.messages import Candle

log = logging.getLogger(__name__)

PAGE = 1000

FetchRows = Callable[[int, int, int], Awaitable[list[list]]]  # (start_ms, end_ms, limit) -> rows


def candle_from_event(k: dict) -> Candle:
    """The ``k`` object of a kline stream event as a ``Candle``."""
    return Candle(symbol=k["s"], interval=k["i"], open_time_ms=int(k["t"]),
                  close_time_ms=int(k["T"]), open=float(k["o"]), high=float(k["h"]),
                  low=float(k["l"]), close=float(k["c"]), volume=float(k["v"]),
                  closed=bool(k["x"]))


def candle_from_row(symbol: str, interval: str, row: list, closed: bool = True) -> Candle:
    """A REST kline row (12 fields) as a ``Candle``."""
    return Candle(symbol=symbol, interval=interval, open_time_ms=int(row[0]),
                  close_time_ms=int(row[6]), open=float(row[1]), high=float(row[2]),
                  low=float(row[3]), close=float(row[4]), volume=float(row[5]), closed=closed)


class KlineTracker:
    """Turns one kline stream into an exactly-once, in-order sequence of closed candles."""

    def __init__(self, symbol: str, interval: str, interval_ms: int, fetch: FetchRows,
                 emit: Callable[[Candle], None], max_backfill: int = 5000) -> None:
        self.symbol = symbol
        self.interval = interval
        self.interval_ms = interval_ms
        self._fetch = fetch
        self._emit = emit
        self.max_backfill = max_backfill
        self.last_closed_ms: int | None = None
        self.backfilled = 0

    async def on_candle(self, candle: Candle) -> None:
        """Handle one stream event; may await a REST fill first."""
        last = self.last_closed_ms
        if last is not None and candle.open_time_ms > last + self.interval_ms:
            try:
                await self._backfill(candle.open_time_ms)
            except TradingBotError as exc:
                # Publish nothing newer until the gap is filled: the next event retries.
                log.warning("%s %s: backfill failed (%s); will retry", self.symbol,
                            self.interval, exc)
                return
        last = self.last_closed_ms
        if candle.closed:
            if last is not None and candle.open_time_ms <= last:
                return  # already published (the stream repeated it, or REST gave it first)
            self.last_closed_ms = candle.open_time_ms
            self._emit(candle)
        elif last is None or candle.open_time_ms > last:
            self._emit(candle)

    async def _backfill(self, before_ms: int) -> None:
        """Publish the closed candles from the last published one up to ``before_ms``."""
        assert self.last_closed_ms is not None
        start = self.last_closed_ms + self.interval_ms
        missing = (before_ms - start) // self.interval_ms
        if missing > self.max_backfill:
            log.warning("%s %s: %d candles missed, filling only the last %d", self.symbol,
                        self.interval, missing, self.max_backfill)
            start = before_ms - self.max_backfill * self.interval_ms
        log.info("%s %s: backfilling %d closed candle(s) by REST", self.symbol, self.interval,
                 (before_ms - start) // self.interval_ms)
        while start < before_ms:
            rows = await self._fetch(start, before_ms - 1, PAGE)
            fresh = [r for r in rows if start <= int(r[0]) < before_ms]
            for row in fresh:
                self.last_closed_ms = int(row[0])
                self.backfilled += 1
                self._emit(candle_from_row(self.symbol, self.interval, row))
            if len(rows) < PAGE or not fresh:
                break
            start = self.last_closed_ms + self.interval_ms
        if self.last_closed_ms < before_ms - self.interval_ms:
            log.warning("%s %s: REST has no candles before %d; moving on", self.symbol,
                        self.interval, before_ms)
            self.last_closed_ms = before_ms - self.interval_ms
