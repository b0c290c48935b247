"""A local order book per symbol, kept from the diff-depth stream as Binance documents it.

Events carry ``U`` (first) and ``u`` (last update id). Until the book is synchronised it loads a
REST snapshot (again while the snapshot is older than the event, ``lastUpdateId + 1 < U``),
drops events with ``u <= lastUpdateId`` and applies the rest. Once synchronised, an event with
``U > previous u + 1`` is a gap: the book is thrown away and resynchronised. Events come one at
a time from the stream's lane, which buffers them while the snapshot call is awaited.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections.abc import Awaitable, Callable

from shared.clock import Clock
from shared.errors import TradingBotError
from shared.messages import DepthBook

log = logging.getLogger(__name__)

SNAPSHOT_ATTEMPTS = 3
RETRY_AFTER_FAILURE_S = 1.0


class LocalBook:
    """One symbol's book; ``on_event`` takes diff events in stream order."""

    def __init__(self, symbol: str, snapshot: Callable[[], Awaitable[dict]],
                 emit: Callable[[DepthBook], None], clock: Clock, levels: int = 20) -> None:
        self.symbol = symbol
        self._snapshot = snapshot
        self._emit = emit
        self.clock = clock
        self.levels = levels
        self.synced = False
        self.last_update_id = 0
        self.bids: dict[float, float] = {}
        self.asks: dict[float, float] = {}
        self.snapshots = 0
        self.gaps = 0
        self._retry_at = 0.0

    async def on_event(self, event: dict) -> None:
        first_id, last_id = int(event["U"]), int(event["u"])
        if self.synced and first_id > self.last_update_id + 1:
            self.gaps += 1
            log.warning("%s depth gap: expected U <= %d, got U=%d; resynchronising",
                        self.symbol, self.last_update_id + 1, first_id)
            self.synced = False
        if not self.synced and not await self._resync(first_id):
            return
        if last_id <= self.last_update_id:
            return  # already in the snapshot
        self._apply(self.bids, event.get("b", ()))
        self._apply(self.asks, event.get("a", ()))
        self.last_update_id = last_id
        self._publish(int(event.get("E") or self.clock.time_ms()))

    def reset(self) -> None:
        """Forget the book (the stream was reconnected); the next event resynchronises."""
        self.synced = False

    async def _resync(self, first_id: int) -> bool:
        if self.clock.monotonic() < self._retry_at:
            return False
        for _ in range(SNAPSHOT_ATTEMPTS):
            try:
                snap = await self._snapshot()
            except TradingBotError as exc:
                log.warning("%s depth snapshot failed: %s", self.symbol, exc)
                break
            if int(snap["lastUpdateId"]) + 1 >= first_id:
                self._load(snap)
                self._publish(self.clock.time_ms())
                return True
            await asyncio.sleep(0.05)  # the snapshot is older than the stream: ask again
        self._retry_at = self.clock.monotonic() + RETRY_AFTER_FAILURE_S
        return False

    def _load(self, snap: dict) -> None:
        self.bids = {float(p): float(q) for p, q in snap["bids"] if float(q) > 0}
        self.asks = {float(p): float(q) for p, q in snap["asks"] if float(q) > 0}
        self.last_update_id = int(snap["lastUpdateId"])
        self.synced = True
        self.snapshots += 1

    @staticmethod
    def _apply(side: dict[float, float], levels) -> None:
        for price_s, qty_s in levels:
            price, qty = float(price_s), float(qty_s)
            if qty == 0.0:
                side.pop(price, None)
            else:
                side[price] = qty

    def top(self) -> tuple[tuple[tuple[float, float], ...], tuple[tuple[float, float], ...]]:
        bids = tuple(heapq.nlargest(self.levels, self.bids.items()))
        asks = tuple(heapq.nsmallest(self.levels, self.asks.items()))
        return bids, asks

    def _publish(self, ts_ms: int) -> None:
        bids, asks = self.top()
        self._emit(DepthBook(symbol=self.symbol, bids=bids, asks=asks,
                             last_update_id=self.last_update_id, ts_ms=ts_ms))
