"""The Strategy interface and the values that cross it: candles and books in, order intents out.

A strategy is a pure object: no I/O, no threads, no clock. It is built from validated params, fed
closed candles (``on_candle``) and/or book updates (``on_book``), told about the bot's real
position (``on_fill`` / ``on_position``), and answers with a list of ``OrderIntent``. Time comes
only from the data, so a replay of the same inputs yields the same intents with the same ids.
Sizing, rounding to symbol filters and risk checks are execution's job; a strategy may hint a
size (``quote_amount`` for a BUY, ``base_qty`` for a SELL).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from shared.params import ParamSchema

if TYPE_CHECKING:
    from shared.filters import SymbolFilters

Side = Literal["BUY", "SELL"]
OrderType = Literal["MARKET", "LIMIT"]

SIDES = ("BUY", "SELL")
ORDER_TYPES = ("MARKET", "LIMIT")

KLINE_INTERVALS_MS: dict[str, int] = {
    "1s": 1_000,
    "1m": 60_000,
    "3m": 180_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
    "2h": 7_200_000,
    "4h": 14_400_000,
    "6h": 21_600_000,
    "8h": 28_800_000,
    "12h": 43_200_000,
    "1d": 86_400_000,
    "3d": 259_200_000,
    "1w": 604_800_000,
    "1M": 2_678_400_000,  # the longest month (31 days); calendar months vary
}
"""Binance Spot kline intervals and their length in ms."""

SYMBOL_PATTERN = r"[A-Z0-9]{2,20}"
"""A Binance Spot symbol as the API spells it (upper case, e.g. ``BTCUSDT``)."""


def to_decimal(value: float | int | str | Decimal) -> Decimal:
    """A price or quantity as Decimal; floats by their shortest repr (``0.1`` -> ``0.1``)."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"not a finite number: {value!r}")
        return Decimal(repr(value))
    return Decimal(value)


@dataclass(frozen=True)
class Candle:
    """One kline; strategies act on closed ones only (``closed=False`` updates are ignored)."""

    open_time_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    closed: bool = True


@dataclass(frozen=True)
class Book:
    """Top of book (bookTicker) plus, when known, the top depth levels as ``(price, qty)`` pairs,
    best first. ``ts_ms`` is the data's own timestamp, which strategies use as their clock."""

    ts_ms: int
    bid: float
    bid_qty: float
    ask: float
    ask_qty: float
    bids: tuple[tuple[float, float], ...] = ()
    asks: tuple[tuple[float, float], ...] = ()

    @property
    def mid(self) -> float:
        return (self.bid + self.ask) / 2.0


@dataclass(frozen=True)
class Fill:
    """A (partial) execution of one of the bot's orders, as execution reported it."""

    side: Side
    price: Decimal
    base_qty: Decimal
    ts_ms: int
    intent_id: str | None = None

    def __post_init__(self) -> None:
        if self.side not in SIDES:
            raise ValueError(f"side must be one of {SIDES}, not {self.side!r}")
        object.__setattr__(self, "price", to_decimal(self.price))
        object.__setattr__(self, "base_qty", to_decimal(self.base_qty))


@dataclass(frozen=True)
class Position:
    """The bot's real long position: base quantity held, average entry price and entry time."""

    base_qty: Decimal = Decimal(0)
    entry_price: Decimal | None = None
    entry_time_ms: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "base_qty", to_decimal(self.base_qty))
        if self.entry_price is not None:
            object.__setattr__(self, "entry_price", to_decimal(self.entry_price))

    @property
    def is_open(self) -> bool:
        return self.base_qty > 0 and self.entry_price is not None

    def apply(self, fill: Fill) -> Position:
        """The position after ``fill``: a BUY averages in, a SELL reduces (flat at zero)."""
        if fill.side == "BUY":
            qty = self.base_qty + fill.base_qty
            if qty <= 0:
                return Position()
            old_cost = self.base_qty * (self.entry_price or Decimal(0))
            entry_price = (old_cost + fill.base_qty * fill.price) / qty
            entry_time_ms = self.entry_time_ms if self.is_open else fill.ts_ms
            return Position(qty, entry_price, entry_time_ms)
        qty = self.base_qty - fill.base_qty
        if qty <= 0:
            return Position()
        return Position(qty, self.entry_price, self.entry_time_ms)


FLAT = Position()


@dataclass(frozen=True)
class MarketInfo:
    """Facts about the symbol from exchangeInfo that a strategy may need (not user params)."""

    tick_size: Decimal = Decimal("0.01")

    def __post_init__(self) -> None:
        object.__setattr__(self, "tick_size", to_decimal(self.tick_size))
        if self.tick_size <= 0:
            raise ValueError("tick_size must be > 0")

    @classmethod
    def of(cls, filters: SymbolFilters) -> MarketInfo:
        """The facts a strategy may need from ``filters`` (the symbol's exchangeInfo)."""
        return cls(tick_size=filters.tick_size)


@dataclass(frozen=True)
class OrderIntent:
    """What a strategy wants done; execution sizes, rounds, risk-checks and places it.

    ``intent_id`` is ``"<bot_id>-<ts_ms>-<seq>"``: the triggering data time plus a sequence
    within that time, so a replay reproduces it and execution can derive an idempotent
    ``newClientOrderId`` from it.
    """

    intent_id: str
    bot_id: str
    symbol: str
    side: Side
    order_type: OrderType
    ts_ms: int
    base_qty: Decimal | None = None
    quote_amount: Decimal | None = None
    limit_price: Decimal | None = None
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None
    time_in_force: str | None = None
    ttl_ms: int | None = None
    reason: str = ""

    def __post_init__(self) -> None:
        if self.side not in SIDES:
            raise ValueError(f"side must be one of {SIDES}, not {self.side!r}")
        if self.order_type not in ORDER_TYPES:
            raise ValueError(f"order_type must be one of {ORDER_TYPES}, not {self.order_type!r}")
        if self.order_type == "LIMIT" and self.limit_price is None:
            raise ValueError("a LIMIT intent needs a limit_price")
        for name in ("base_qty", "quote_amount", "limit_price", "stop_loss", "take_profit"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, to_decimal(value))

    def to_dict(self) -> dict[str, Any]:
        """JSON/msgpack-safe dict: decimals as strings."""
        return {k: (str(v) if isinstance(v, Decimal) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OrderIntent:
        return cls(**dict(data))


@dataclass
class _IntentIds:
    """Deterministic ids: same bot, same data time, same order within that time -> same id."""

    bot_id: str
    last_ts_ms: int | None = None
    seq: int = 0

    def next(self, ts_ms: int) -> str:
        if ts_ms == self.last_ts_ms:
            self.seq += 1
        else:
            self.last_ts_ms, self.seq = ts_ms, 0
        return f"{self.bot_id}-{ts_ms}-{self.seq}"


@dataclass
class _Pending:
    """An intent sent whose effect on the position is not yet known."""

    side: Side | None = None
    ts_ms: int = 0


class Strategy:
    """Base of every strategy. Subclasses set ``name``, ``params_schema`` and ``needs`` and
    override the ``on_*`` hooks they use; the base keeps the position and mints intent ids.

    ``needs`` names the market streams the worker must feed: ``"kline"`` (``on_candle``),
    ``"book"`` and ``"depth"`` (``on_book``). Every schema has ``symbol`` and ``timeframe``
    params (a bot is strategy + symbol + timeframe + params, whether or not it reads klines).

    Lifecycle: build, ``warm_up`` with ``warmup_candles()`` closed candles, ``on_position``
    with the bot's real position, then live ``on_*`` calls. Param changes rebuild it.
    """

    name: ClassVar[str] = ""
    params_schema: ClassVar[ParamSchema]
    needs: ClassVar[frozenset[str]] = frozenset()

    def __init__(
        self, bot_id: str, params: Mapping[str, Any], market: MarketInfo | None = None
    ) -> None:
        self.bot_id = bot_id
        self.params: dict[str, Any] = self.params_schema.validate(params)
        self.market = market or MarketInfo()
        self.symbol: str = self.params["symbol"]
        self.position: Position = FLAT
        self._ids = _IntentIds(bot_id)
        self._pending = _Pending()

    # -- what the worker and the backtester call ---------------------------------------------

    def warmup_candles(self) -> int:
        """Closed candles needed before the strategy's decisions are trustworthy."""
        return 0

    def warm_up(self, candles: Iterable[Candle]) -> None:
        """Feed history before going live: decisions taken on it are dropped and nothing is left
        pending. Call ``on_position`` afterwards if the bot already holds a position."""
        for candle in candles:
            self.on_candle(candle)
        self._pending = _Pending()

    def on_candle(self, candle: Candle) -> list[OrderIntent]:
        return []

    def on_book(self, book: Book) -> list[OrderIntent]:
        return []

    def on_fill(self, fill: Fill) -> list[OrderIntent]:
        """Learn a fill of this bot's order; the position follows it."""
        self._set_position(self.position.apply(fill))
        return []

    def on_position(self, position: Position) -> list[OrderIntent]:
        """Learn the bot's real position (snapshot, reconciliation, or a refused intent)."""
        self._set_position(position)
        return []

    def snapshot(self) -> dict[str, Any]:
        """Indicator values and levels for live views; JSON-safe."""
        return {}

    # -- helpers for subclasses --------------------------------------------------------------

    def _set_position(self, position: Position) -> None:
        """Store the position and re-arm: any pending intent is now answered."""
        old, self.position = self.position, position
        self._pending = _Pending()
        self._position_changed(old, position)

    def _position_changed(self, old: Position, new: Position) -> None:
        """Hook: a subclass resets or derives its exit levels here."""

    def _pending_side(self, now_ms: int, timeout_ms: int | None = None) -> Side | None:
        """The side of the unanswered intent, or None once answered or older than timeout."""
        pending = self._pending
        expired = timeout_ms is not None and now_ms - pending.ts_ms >= timeout_ms
        if pending.side is not None and expired:
            self._pending = _Pending()
        return self._pending.side

    def _intent(self, side: Side, order_type: OrderType, ts_ms: int, **fields: Any) -> OrderIntent:
        """Mint an intent with the next deterministic id and remember it as pending."""
        self._pending = _Pending(side, ts_ms)
        return OrderIntent(
            intent_id=self._ids.next(ts_ms),
            bot_id=self.bot_id,
            symbol=self.symbol,
            side=side,
            order_type=order_type,
            ts_ms=ts_ms,
            **fields,
        )

    def _exit(self, ts_ms: int, reason: str) -> OrderIntent:
        """A MARKET SELL of the whole known position."""
        return self._intent("SELL", "MARKET", ts_ms, base_qty=self.position.base_qty, reason=reason)

