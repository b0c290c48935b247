"""One claimed bot inside a worker: its spec, its strategy object and where it is in its life.

A runner is built from what state says the bot should run (``BotSpec``: strategy, symbol,
timeframe, params and their version). ``begin`` builds the strategy and says what history
it needs; closed candles that arrive during the warm-up are kept and replayed after it, so
none is missed between the history and the live stream. Market data then goes in and
``OrderIntent`` lists come out. A new spec (any param change, strategy type, symbol and
timeframe included) goes through ``begin`` again: rebuilt and re-warmed, same lease.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from shared import messages as m
from shared import topics
from shared.filters import known_filters, sellable
from shared.strategies import (
    Book,
    Candle,
    MarketInfo,
    OrderIntent,
    Position,
    Strategy,
    build_strategy,
)

log = logging.getLogger(__name__)

STARTING, RUNNING, STOPPING, STOPPED, ERROR = "STARTING", "RUNNING", "STOPPING", "STOPPED", "ERROR"
MAX_BUFFERED = 5_000  # closed candles kept while a warm-up is under way


@dataclass(frozen=True)
class BotSpec:
    """What a bot should run, as state has it; a new ``version`` means rebuild."""

    strategy: str
    symbol: str
    timeframe: str
    params: dict[str, Any]
    version: int

    @classmethod
    def from_state(cls, bot: dict[str, Any], params: dict[str, Any] | None) -> BotSpec | None:
        """None until the replica has the bot's current params version."""
        if params is None or params.get("version") != bot.get("params_version"):
            return None
        return cls(params["strategy"], params["symbol"], params["timeframe"],
                   dict(params["params"]), params["version"])

    def build(self, bot_id: int) -> Strategy:
        values = {**self.params, "symbol": self.symbol, "timeframe": self.timeframe}
        filters = known_filters(self.symbol)  # the symbol's tick, as the backtester uses it
        market = MarketInfo.of(filters) if filters is not None else None
        return build_strategy(self.strategy, str(bot_id), values, market)

    def topics_for(self, needs: Iterable[str]) -> frozenset[str]:
        wanted = set()
        for need in needs:
            if need == "kline":
                wanted.add(topics.kline(self.symbol, self.timeframe))
            elif need == "book":
                wanted.add(topics.book(self.symbol))
            elif need == "depth":
                wanted.add(topics.depth(self.symbol))
        return frozenset(wanted)


def position_of(row: dict[str, Any] | None) -> Position:
    """The strategy's view of a state position row (flat when there is none)."""
    if not row:
        return Position()
    try:
        qty = Decimal(row.get("qty") or "0")
        entry = row.get("avg_entry_price")
        if entry and not sellable(str(row.get("symbol", "")), qty, Decimal(entry)):
            return Position()  # a remainder the exchange would not sell: nothing to exit
        return Position(qty, Decimal(entry) if entry else None, row.get("opened_at_ms"))
    except (InvalidOperation, TypeError, ValueError):
        log.warning("unreadable position %r: taken as flat", row)
        return Position()


def to_candle(msg: m.Candle) -> Candle:
    return Candle(msg.open_time_ms, msg.open, msg.high, msg.low, msg.close, msg.volume,
                  msg.closed)


def to_book(ticker: m.BookTicker, depth: m.DepthBook | None) -> Book:
    bids = depth.bids if depth is not None else ()
    asks = depth.asks if depth is not None else ()
    return Book(ticker.ts_ms, ticker.bid, ticker.bid_qty, ticker.ask, ticker.ask_qty,
                tuple(bids), tuple(asks))


class BotRunner:
    """A bot this worker holds the lease of; driven by the worker's loop, never threaded."""

    def __init__(self, bot_id: int, spec: BotSpec) -> None:
        self.bot_id = bot_id
        self.spec = spec
        self.status = STOPPED
        self.reason = ""
        self.unreported: collections.deque[tuple[str, str]] = collections.deque()
        self.strategy: Strategy | None = None
        self.topics: frozenset[str] = frozenset()
        self.generation = 0  # bumped by every begin: a late warm-up of an old build is ignored
        self.warmup_limit = 0
        self.failures = 0
        self.refusals = 0  # intents refused by execution in a row
        self.retry_at: float | None = None
        self._buffer: list[Candle] = []
        self._last_open_ms: int | None = None

    @property
    def trading(self) -> bool:
        return self.status == RUNNING and self.strategy is not None

    def begin(self, spec: BotSpec) -> int:
        """Build the strategy for ``spec``; return how many candles its warm-up needs.

        Raises ValidationError (bad params) after switching to ERROR.
        """
        self.spec = spec
        self.generation += 1
        self._set(STARTING)
        self.strategy, self._buffer, self._last_open_ms = None, [], None
        self.retry_at = None
        try:
            strategy = spec.build(self.bot_id)
        except Exception as exc:
            self.fail(f"cannot build {spec.strategy}: {exc}")
            raise
        self.strategy = strategy
        self.topics = spec.topics_for(strategy.needs)
        self.warmup_limit = strategy.warmup_candles() if "kline" in strategy.needs else 0
        return self.warmup_limit

    def finish_warmup(self, history: list[m.Candle], position: Position) -> list[OrderIntent]:
        """Feed the history, then the live candles kept meanwhile; the bot is RUNNING."""
        assert self.strategy is not None
        candles = [to_candle(c) for c in history if c.closed]
        self.strategy.warm_up(candles)
        if candles:
            self._last_open_ms = candles[-1].open_time_ms
        self.strategy.on_position(position)
        self.failures = 0
        self._set(RUNNING)
        intents: list[OrderIntent] = []
        buffered, self._buffer = self._buffer, []
        for candle in buffered:
            intents += self._feed(candle)
        log.info("bot %d running %s %s %s (params v%d, %d candles of history)", self.bot_id,
                 self.spec.strategy, self.spec.symbol, self.spec.timeframe, self.spec.version,
                 len(candles))
        return intents

    def fail(self, reason: str) -> None:
        """Stop trading and say why; the worker decides whether and when to try again."""
        self._set(ERROR, reason)
        self.strategy = None
        self.failures += 1
        log.error("bot %d failed: %s", self.bot_id, reason)

    def stop(self) -> None:
        """Desired stop: no more trading; STOPPING until ``stopped``."""
        self.strategy, self._buffer, self.topics = None, [], frozenset()
        self._set(STOPPING)

    def stopped(self) -> None:
        self._set(STOPPED)

    def _set(self, status: str, reason: str = "") -> None:
        """Move to ``status``; the worker records each move with state, in order."""
        if (status, reason) != (self.status, self.reason):
            self.unreported.append((status, reason))
        self.status, self.reason = status, reason

    def on_candle(self, msg: m.Candle) -> list[OrderIntent]:
        candle = to_candle(msg)
        if self.status == STARTING and self.strategy is not None:
            if len(self._buffer) < MAX_BUFFERED:
                self._buffer.append(candle)
            return []
        return self._feed(candle) if self.trading else []

    def _feed(self, candle: Candle) -> list[OrderIntent]:
        if self._last_open_ms is not None and candle.open_time_ms <= self._last_open_ms:
            return []  # already in the history (or a repeat): each candle once
        self._last_open_ms = candle.open_time_ms
        return self.strategy.on_candle(candle)

    def on_book(self, book: Book) -> list[OrderIntent]:
        return self.strategy.on_book(book) if self.trading else []

    def on_position(self, position: Position) -> list[OrderIntent]:
        return self.strategy.on_position(position) if self.strategy is not None else []

    def describe(self) -> dict[str, Any]:
        """For the heartbeat: what this worker runs for the bot."""
        return {"status": self.status, "reason": self.reason, "strategy": self.spec.strategy,
                "symbol": self.spec.symbol, "timeframe": self.spec.timeframe,
                "version": self.spec.version}
