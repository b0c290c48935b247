"""What the gateway knows live, from the bus: books, candles, logs, execution events, state.

``LiveData`` holds the data the WebSocket snapshots are made of and turns each bus message
into a numbered update on the ``Hub``; every change happens under the hub's lock, so a
snapshot and the updates after it always agree. It opens no sockets (``feeds`` does), so
tests drive it with plain messages.
"""

from __future__ import annotations

import copy
import logging
import re
import threading
import time
from collections import deque
from typing import Any

from services.gateway.health import HealthBook
from services.gateway.hub import Hub
from shared import messages as m
from shared.replica import View
from shared.strategies.base import KLINE_INTERVALS_MS

log = logging.getLogger(__name__)

LOG_RING_SIZE = 2000
LOG_SNAPSHOT = 200
STATE_RECENT = 50
LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}
ORDER_KINDS = ("order", "trade", "trade_deleted")
SYMBOL = re.compile(r"^[A-Z0-9]{2,20}$")
STREAM_INTERVALS = frozenset(KLINE_INTERVALS_MS) - {"1M"}  # no monthly kline stream


class LogRing:
    """The last ``size`` log records heard on ``log.*``, numbered, filterable."""

    def __init__(self, size: int = LOG_RING_SIZE) -> None:
        self._items: deque[dict[str, Any]] = deque(maxlen=size)
        self._lock = threading.Lock()
        self._seq = 0

    def add(self, record: m.LogRecord) -> dict[str, Any]:
        with self._lock:
            self._seq += 1
            item = {"seq": self._seq, "ts": record.ts, "level": record.level,
                    "service": record.service, "instance": record.instance,
                    "logger": record.logger, "message": record.message}
            self._items.append(item)
            return item

    def query(self, level: str = "", service: str = "", limit: int = 200) -> list[dict]:
        """The newest ``limit`` records at ``level`` or above from ``service``, oldest first."""
        floor = LEVELS.get(level.upper(), 0) if level else 0
        with self._lock:
            items = list(self._items)
        picked = [i for i in items if matches(i, floor, service)]
        return picked[-limit:] if limit else []


def matches(item: dict[str, Any], floor: int, service: str) -> bool:
    return LEVELS.get(item["level"], 0) >= floor and (not service or item["service"] == service)


def book_dict(book: m.BookTicker) -> dict[str, Any]:
    return {"symbol": book.symbol, "bid": book.bid, "ask": book.ask, "bid_qty": book.bid_qty,
            "ask_qty": book.ask_qty, "mid": (book.bid + book.ask) / 2, "ts_ms": book.ts_ms}


def candle_dict(candle: m.Candle) -> dict[str, Any]:
    out = candle.to_dict()
    out.pop("type", None)
    out.pop("v", None)
    return out


class LiveData:
    """Snapshots and updates of the five WebSocket channels, fed by the bus."""

    def __init__(self, health: HealthBook, clock=time) -> None:
        self.health = health
        self.clock = clock
        self.hub = Hub(self.snapshot)
        self.logs = LogRing()
        self.books: dict[str, dict[str, Any]] = {}
        self.candles: dict[str, dict[str, Any]] = {}
        self.execution: dict[str, Any] = {}
        self.state: View | None = None

    # --- snapshots (called under the hub's lock) -----------------------------------------

    def snapshot(self, channel: str) -> Any:
        return getattr(self, f"_snapshot_{channel}")()

    def _snapshot_state(self) -> dict[str, Any]:
        if self.state is None:
            return {"synced": False, "seq": None}
        return {"synced": True, **self.state.to_snapshot()}

    def _snapshot_orders(self) -> dict[str, Any]:
        if self.state is None:
            return {"synced": False, "open_orders": [], "recent_orders": [], "recent_trades": []}
        snap = self.state.to_snapshot()
        return {"synced": True, "open_orders": snap["open_orders"],
                "recent_orders": snap["recent_orders"], "recent_trades": snap["recent_trades"]}

    def _snapshot_ticker(self) -> dict[str, Any]:
        return {"books": dict(self.books), "candles": dict(self.candles)}

    def _snapshot_logs(self) -> dict[str, Any]:
        return {"items": self.logs.query(limit=LOG_SNAPSHOT)}

    def _snapshot_health(self) -> dict[str, Any]:
        return {**self.health.view(), "execution": dict(self.execution)}

    # --- reads for REST ------------------------------------------------------------------

    def mid_price(self, symbol: str) -> float | None:
        with self.hub.lock:
            book = self.books.get(symbol)
            return None if book is None else book["mid"]

    def balances(self) -> dict[str, dict[str, Any]] | None:
        """Account balances by asset from the state mirror, None before it is in sync."""
        with self.hub.lock:
            return None if self.state is None else copy.deepcopy(self.state.balances)

    def lease(self, bot_id: int) -> dict[str, Any] | None:
        """The bot's worker lease (owner, epoch, expiry) from the state mirror."""
        with self.hub.lock:
            found = None if self.state is None else self.state.leases.get(bot_id)
            return None if found is None else dict(found)

    def market_topics(self) -> tuple[str, ...]:
        """The book and kline topics of every bot's symbol and timeframe."""
        with self.hub.lock:
            bots = [] if self.state is None else list(self.state.bots.values())
        topics = set()
        for bot in bots:
            symbol, interval = bot.get("symbol", ""), bot.get("timeframe", "")
            if not SYMBOL.match(symbol or ""):
                continue
            topics.add(f"md.book.{symbol}")
            if interval in STREAM_INTERVALS:
                topics.add(f"md.kline.{symbol}.{interval}")
        return tuple(sorted(topics))

    def execution_status(self) -> dict[str, Any]:
        with self.hub.lock:
            return dict(self.execution)

    # --- bus input -----------------------------------------------------------------------

    def on_message(self, topic: str, msg: m.Message) -> None:
        """Route one bus message to its channel."""
        handler = _HANDLERS.get(type(msg))
        if handler is not None:
            handler(self, msg)

    def on_book(self, book: m.BookTicker) -> None:
        def change():
            self.books[book.symbol] = data = book_dict(book)
            return {"kind": "book", **data}
        self.hub.update(change, "ticker")

    def on_candle(self, candle: m.Candle) -> None:
        def change():
            self.candles[f"{candle.symbol}.{candle.interval}"] = data = candle_dict(candle)
            return {"kind": "candle", **data}
        self.hub.update(change, "ticker")

    def on_log(self, record: m.LogRecord) -> None:
        self.hub.update(lambda: self.logs.add(record), "logs")

    def on_heartbeat(self, beat: m.Heartbeat) -> None:
        self.health.record(beat)  # health updates go out once a second, see publish_health

    def publish_health(self) -> None:
        self.hub.update(lambda: {"kind": "health", **self.health.view()}, "health")

    def on_exec_order(self, event: m.OrderUpdated) -> None:
        self.hub.publish("orders", {"kind": "exec_order", "row": _plain(event)})

    def on_exec_event(self, kind: str, fields: dict[str, Any], event: m.Message) -> None:
        def change():
            self.execution.update(fields)
            return {"kind": kind, **_plain(event)}
        self.hub.update(change, "health")

    def set_execution_status(self, status: dict[str, Any]) -> None:
        with self.hub.lock:
            self.execution.update(status)
            self.execution["status_ts"] = self.clock.time()

    # --- state mirror (called from the replica's thread) ---------------------------------

    def on_state_resync(self, snapshot: dict[str, Any]) -> None:
        with self.hub.lock:
            self.state = View(copy.deepcopy(snapshot), STATE_RECENT)
            self.hub.broadcast_snapshot("state")
            self.hub.broadcast_snapshot("orders")

    def on_state_change(self, change: m.StateChanged) -> None:
        with self.hub.lock:
            if self.state is None or change.seq <= self.state.seq:
                return
            self.state.apply(change.kind, copy.deepcopy(change.payload))
            self.state.seq = change.seq
            self.hub.publish("state", {"state_seq": change.seq, "kind": change.kind,
                                       "payload": change.payload})
            if change.kind in ORDER_KINDS:
                self.hub.publish("orders", {"kind": change.kind, "row": change.payload})


def _plain(msg: m.Message) -> dict[str, Any]:
    out = msg.to_dict()
    out.pop("v", None)
    out["event"] = out.pop("type")
    return out


_HANDLERS = {
    m.BookTicker: LiveData.on_book,
    m.Candle: LiveData.on_candle,
    m.LogRecord: LiveData.on_log,
    m.Heartbeat: LiveData.on_heartbeat,
    m.OrderUpdated: LiveData.on_exec_order,
    m.KillSwitchChanged: lambda self, e: self.on_exec_event(
        "killswitch", {"kill_switch": e.enabled, "kill_switch_reason": e.reason}, e),
    m.TradingPaused: lambda self, e: self.on_exec_event(
        "paused", {"paused_until_ts": e.until_ts, "halted": e.halted,
                   "pause_reason": e.reason}, e),
    m.AccountReconciled: lambda self, e: self.on_exec_event("sync", {"last_sync_ts": e.ts}, e),
    m.RateBudget: lambda self, e: self.on_exec_event(
        "budget", {"used_weight_1m": e.used_weight_1m, "weight_limit_1m": e.weight_limit_1m}, e),
    m.ProtectionChanged: lambda self, e: self.on_exec_event("protection", {}, e),
}
