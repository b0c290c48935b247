"""SCALPING: order-book imbalance at a tight spread, on bookTicker + depth (long only).

Entry: the spread is at most ``max_spread_ticks`` ticks and the bid/ask quantity ratio over the
top ``depth_levels`` levels is above ``imbalance_threshold`` (when the book carries no depth
levels, the best bid/ask sizes stand in). The BUY is a LIMIT at the best ask (as the original
bot placed it, with its time-in-force and a ``ttl_ms`` after which execution cancels it) or a
MARKET order. Exit, checked on every book update against the best bid: stop-loss, take-profit,
the position held for ``max_hold_s`` or longer, or (``imbalance_exit``) the ratio falling below
``1 / imbalance_threshold``.

Time is the data's: a book's ``ts_ms`` against the position's ``entry_time_ms`` (the fill's
time). If the feed's timestamps come from another clock than the fills' (e.g. a recorder's
receive time), the holding time is off by that clock difference.

Params carried over from the original bot: SCALPING_ORDER_TYPE, SCALPING_LIMIT_TIF,
SCALPING_LIMIT_ORDER_TIMEOUT_MS, SCALPING_DEPTH_LEVELS, SCALPING_DEPTH_SPEED,
SCALPING_IMBALANCE_THRESHOLD, the ImbalanceExit exit, STOP_LOSS_PERCENTAGE,
TAKE_PROFIT_1_PERCENTAGE, TIME_STOP_MINUTES (now ``max_hold_s``), ORDER_COOLDOWN_MS. The
relative SCALPING_SPREAD_THRESHOLD became ``max_spread_ticks``; the tick size comes from
``MarketInfo`` (exchangeInfo), not from the user.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from shared.params import ParamSchema, ParamSpec
from shared.strategies.base import (
    KLINE_INTERVALS_MS,
    SYMBOL_PATTERN,
    Book,
    MarketInfo,
    OrderIntent,
    Position,
    Strategy,
    to_decimal,
)

SCALPING_PARAMS = ParamSchema(
    [
        ParamSpec("symbol", "str", "BTCUSDT", "Binance Spot symbol traded.",
                  pattern=SYMBOL_PATTERN),
        ParamSpec("timeframe", "choice", "1m",
                  "Kline interval of the bot's chart; SCALPING itself reads only the book.",
                  choices=tuple(KLINE_INTERVALS_MS)),
        ParamSpec("order_type", "choice", "LIMIT",
                  "Entry order: LIMIT at the best ask, or MARKET.", choices=("LIMIT", "MARKET")),
        ParamSpec("limit_tif", "choice", "GTC", "Time in force of a LIMIT entry.",
                  choices=("GTC", "IOC", "FOK")),
        ParamSpec("limit_order_timeout_ms", "int", 5000,
                  "An unfilled entry is cancelled after this long; a new one may follow.",
                  min=100, max=600_000, unit="ms"),
        ParamSpec("depth_levels", "choice", 5, "Book levels summed for the imbalance.",
                  choices=(5, 10, 20)),
        ParamSpec("depth_speed", "choice", "1000ms", "Depth stream update speed.",
                  choices=("100ms", "1000ms")),
        ParamSpec("max_spread_ticks", "int", 2, "Enter only when ask - bid is at most this.",
                  min=1, max=100_000, unit="ticks"),
        ParamSpec("imbalance_threshold", "decimal", Decimal("1.5"),
                  "Enter when bid quantity / ask quantity over the top levels is above this.",
                  min=Decimal("1"), max=Decimal("1000"), unit="ratio"),
        ParamSpec("imbalance_exit", "bool", True,
                  "Exit when the ratio falls below 1 / imbalance_threshold."),
        ParamSpec("stop_loss_pct", "decimal", Decimal("0.1"),
                  "Stop-loss below entry, in percent (checked against the best bid).",
                  min=Decimal("0.001"), max=Decimal("50"), unit="%"),
        ParamSpec("take_profit_pct", "decimal", Decimal("0.1"),
                  "Take-profit above entry, in percent (checked against the best bid).",
                  min=Decimal("0.001"), max=Decimal("100"), unit="%"),
        ParamSpec("max_hold_s", "int", 900,
                  "Exit a position held this long (was TIME_STOP_MINUTES = 15).",
                  min=1, max=86_400, unit="s"),
        ParamSpec("cooldown_ms", "int", 2000,
                  "Minimum time between two intents (was ORDER_COOLDOWN_MS).",
                  min=0, max=3_600_000, unit="ms"),
        ParamSpec("order_quote_amount", "decimal", Decimal("20"),
                  "Quote amount to spend per entry (a hint; execution sizes and risk-checks).",
                  min=Decimal("0.00000001"), unit="quote asset"),
    ]
)


class ScalpingStrategy(Strategy):
    """Order-book imbalance scalper with TP/SL and a maximum holding time, on data time."""

    name = "SCALPING"
    params_schema = SCALPING_PARAMS
    needs = frozenset({"book", "depth"})

    def __init__(
        self, bot_id: str, params: Mapping[str, Any], market: MarketInfo | None = None
    ) -> None:
        super().__init__(bot_id, params, market)
        self._tick = float(self.market.tick_size)
        self._threshold = float(self.params["imbalance_threshold"])
        self._last_ts_ms: int | None = None
        self._last_intent_ms: int | None = None
        self._entry_time_ms: int | None = None
        self._ratio: float | None = None
        self._spread_ticks: float | None = None

    @property
    def entry_time_ms(self) -> int | None:
        return self._entry_time_ms

    def on_book(self, book: Book) -> list[OrderIntent]:
        if self._last_ts_ms is not None and book.ts_ms < self._last_ts_ms:
            return []  # out of order: data time never goes back
        self._last_ts_ms = book.ts_ms
        if book.bid <= 0 or book.ask <= 0 or book.ask < book.bid:
            return []
        self._ratio = self.imbalance(book)
        self._spread_ticks = (book.ask - book.bid) / self._tick
        if self._pending_side(book.ts_ms, self.params["limit_order_timeout_ms"]) is not None:
            return []
        if self.position.is_open:
            if self._entry_time_ms is None:
                self._entry_time_ms = book.ts_ms  # position learnt without a time: start now
            reason = self._exit_reason(book)
            if reason is None:
                return []
            self._last_intent_ms = book.ts_ms
            return [self._exit(book.ts_ms, reason)]
        if not self._entry_signal(book.ts_ms):
            return []
        self._last_intent_ms = book.ts_ms
        return [self._entry(book)]

    def imbalance(self, book: Book) -> float:
        """Bid quantity / ask quantity over the top ``depth_levels`` (L1 sizes without depth)."""
        levels = self.params["depth_levels"]
        if book.bids and book.asks:
            bid_qty = math.fsum(qty for _, qty in book.bids[:levels])
            ask_qty = math.fsum(qty for _, qty in book.asks[:levels])
        else:
            bid_qty, ask_qty = book.bid_qty, book.ask_qty
        if ask_qty <= 0:
            return math.inf if bid_qty > 0 else 0.0
        return bid_qty / ask_qty

    def snapshot(self) -> dict[str, Any]:
        levels = self._levels()
        return {
            "imbalance": self._ratio,
            "spread_ticks": self._spread_ticks,
            "entry_time_ms": self._entry_time_ms,
            "stop_loss": levels[0] if levels else None,
            "take_profit": levels[1] if levels else None,
        }

    # -- decisions ---------------------------------------------------------------------------

    def _position_changed(self, old: Position, new: Position) -> None:
        if not new.is_open:
            self._entry_time_ms = None
        elif not old.is_open or new.entry_time_ms is not None:
            self._entry_time_ms = new.entry_time_ms

    def _entry_signal(self, now_ms: int) -> bool:
        """Spread tight enough, imbalance above threshold, and not within the cooldown."""
        ratio, spread_ticks = self._ratio, self._spread_ticks
        if ratio is None or spread_ticks is None:
            return False
        # A spread of n ticks computes as n +- float noise; allow that noise, not a tick more.
        if spread_ticks > self.params["max_spread_ticks"] + 1e-6 or not ratio > self._threshold:
            return False
        last = self._last_intent_ms
        return last is None or now_ms - last >= self.params["cooldown_ms"]

    def _entry(self, book: Book) -> OrderIntent:
        p = self.params
        stop_loss, take_profit = self._levels_for(book.ask)
        limit = p["order_type"] == "LIMIT"
        reason = (
            f"imbalance: bid/ask {self._ratio:.2f} > {self._threshold:g} over "
            f"{p['depth_levels']} levels, spread {self._spread_ticks:.0f} ticks"
        )
        return self._intent(
            "BUY", p["order_type"], book.ts_ms,
            quote_amount=p["order_quote_amount"],
            limit_price=to_decimal(book.ask) if limit else None,
            time_in_force=p["limit_tif"] if limit else None,
            ttl_ms=p["limit_order_timeout_ms"] if limit else None,
            stop_loss=to_decimal(stop_loss),
            take_profit=to_decimal(take_profit),
            reason=reason,
        )

    def _levels_for(self, entry: float) -> tuple[float, float]:
        p = self.params
        return (entry * (1.0 - float(p["stop_loss_pct"]) / 100.0),
                entry * (1.0 + float(p["take_profit_pct"]) / 100.0))

    def _levels(self) -> tuple[float, float] | None:
        if not self.position.is_open:
            return None
        return self._levels_for(float(self.position.entry_price))  # type: ignore[arg-type]

    def _exit_reason(self, book: Book) -> str | None:
        levels = self._levels()
        assert levels is not None and self._entry_time_ms is not None
        stop_loss, take_profit = levels
        if book.bid <= stop_loss:
            return f"stop_loss: bid {book.bid:.8g} <= {stop_loss:.8g}"
        if book.bid >= take_profit:
            return f"take_profit: bid {book.bid:.8g} >= {take_profit:.8g}"
        held_ms = book.ts_ms - self._entry_time_ms
        if held_ms >= self.params["max_hold_s"] * 1000:
            return f"max_hold_time: held {held_ms / 1000:.1f} s >= {self.params['max_hold_s']} s"
        ratio, floor = self._ratio, 1.0 / self._threshold
        if self.params["imbalance_exit"] and ratio is not None and ratio < floor:
            return f"imbalance_exit: bid/ask {ratio:.2f} < {floor:.2f}"
        return None
