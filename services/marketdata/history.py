"""Candle history for warm-up: served from a cache of closed candles, paged from REST when short.

The newest closed candle is known from the live stream when one is running for the pair, else
from one small REST call (the newest row Binance returns is the candle still open, so the one
before it is the newest closed). Missing older candles are fetched 1000 per call, newest first,
and kept in the cache, which the live stream also feeds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from shared.messages import Candle

from .candles import candle_from_row
from .rest import KLINES_PAGE, RestGateway

log = logging.getLogger(__name__)

Key = tuple[str, str]


class CandleCache:
    """Closed candles per (symbol, interval) by open time; keeps the newest ``cap``."""

    def __init__(self, cap: int = 5000) -> None:
        self.cap = cap
        self._data: dict[Key, dict[int, Candle]] = {}

    def put(self, candle: Candle) -> None:
        if not candle.closed:
            return
        series = self._data.setdefault((candle.symbol, candle.interval), {})
        series[candle.open_time_ms] = candle
        if len(series) > self.cap + self.cap // 10:
            for open_ms in sorted(series)[: len(series) - self.cap]:
                del series[open_ms]

    def run(self, key: Key, newest_ms: int, limit: int, interval_ms: int) -> list[Candle]:
        """Up to ``limit`` contiguous candles ending at ``newest_ms``, oldest first."""
        series = self._data.get(key, {})
        out = []
        open_ms = newest_ms
        while len(out) < limit:
            candle = series.get(open_ms)
            if candle is None:
                break
            out.append(candle)
            open_ms -= interval_ms
        out.reverse()
        return out

    def __len__(self) -> int:
        return sum(len(s) for s in self._data.values())


class History:
    """Answers ``GetCandles`` from the cache and REST; runs on the event loop."""

    def __init__(self, rest: RestGateway, cache: CandleCache,
                 live_newest: Callable[[str, str], int | None]) -> None:
        self.rest = rest
        self.cache = cache
        self._live_newest = live_newest
        self.rest_pages = 0

    async def candles(self, symbol: str, interval: str, interval_ms: int, limit: int,
                      end_time_ms: int | None = None) -> list[Candle]:
        anchor = self._live_newest(symbol, interval)
        if anchor is None:
            anchor = await self._newest_closed(symbol, interval)
        if anchor is None:
            return []
        newest = anchor
        if end_time_ms is not None:
            behind = -(-(anchor + interval_ms - end_time_ms) // interval_ms)  # ceil
            newest = anchor - max(0, behind) * interval_ms
        oldest = newest - (limit - 1) * interval_ms
        key = (symbol, interval)
        have = self.cache.run(key, newest, limit, interval_ms)
        while len(have) < limit:
            missing = newest - len(have) * interval_ms
            want = min(KLINES_PAGE, (missing - oldest) // interval_ms + 1)
            rows = await self.rest.klines(symbol, interval, end_ms=missing + interval_ms - 1,
                                          limit=want)
            self.rest_pages += 1
            for row in rows:
                if int(row[0]) <= anchor:
                    self.cache.put(candle_from_row(symbol, interval, row))
            before, have = len(have), self.cache.run(key, newest, limit, interval_ms)
            if len(rows) < want or len(have) == before:
                break  # the venue has no older history (or a hole in it)
        return have

    async def _newest_closed(self, symbol: str, interval: str) -> int | None:
        rows = await self.rest.klines(symbol, interval, limit=2)
        self.rest_pages += 1
        if len(rows) < 2:
            return None
        self.cache.put(candle_from_row(symbol, interval, rows[-2]))
        return int(rows[-2][0])
