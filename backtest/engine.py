"""Event-driven backtest: real strategy classes, real fill model (``shared.matching``), candles in.

One candle at a time, in the order the live system sees it:

1. **Open of candle i** (``Broker.open_candle``): intents decided at the close of candle i-1
   are sent as execution would send them (MARKET BUY for ``quote_amount``, MARKET SELL,
   LIMIT with its time in force), and fill against a book derived from the open.
   After an entry fills, the bot's stop-loss / take-profit go on the exchange as one native
   SELL OCO (LIMIT_MAKER at the take-profit, STOP_LOSS_LIMIT at the stop-loss), as execution
   does (issue 7). While orders rest, the candle's price path is walked through the engine.
2. **Close of candle i**: the strategy's ``on_candle`` runs; its intents wait for candle i+1.

Market derived from a candle (deterministic, the simulator's replay rules):

* Price path (``services/exchange_sim/market.ReplayPath``): open -> low -> high -> close for a
  rising candle (close >= open), open -> high -> low -> close for a falling one, straight lines
  between waypoints at steps 0, n/3, 2n/3 and n-1, one step a second (n = 60 for 1m candles; 4
  to 60 steps for other intervals), each price rounded to the tick.
* At each step ``p``: the book is set (``set_book``; on an up-tick the best ask is ``p`` and the
  bid one tick lower, on a down-tick the best bid is ``p`` and the ask one tick higher: the
  simulator's rule), then a trade prints at ``p`` (``on_trade``: sets the last price, triggers
  stops, fills limits traded through). ``book_levels`` levels a side, one tick apart, each
  holding ``max(candle volume / book_levels, min_level_quote / p)`` base, so a big order walks
  the book and pays for it.

The engine is consulted only at candles where something can happen (queued intents, a resting
order whose price the candle's range can reach within two ticks, or a triggered stop), and only
at the steps of the path within reach of a resting order; elsewhere it provably does nothing.
Protective orders follow the strategy's stop (a trailing stop): they are cancel-replaced to the
strategy's levels as of the previous close, at the next candle where they could matter, which
gives the same fills as replacing at every close.

``Backtest.step(i)`` is the one hook every driver uses: the pure driver (``Backtest.run``) asks
the strategy object, ``backtest.fast`` a compiled copy of SWING with the same ``Broker``, and a
parity test can feed candles the same way: the same candles give the same trades whichever
driver feeds them. A MARKET SELL that closes the position sells all the free base (dust of
earlier trips included); a partial exit sells what it asks.
"""

from __future__ import annotations

import gc
import logging
import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np

from backtest.history import CandleArrays
from shared.clock import Clock
from shared.errors import ExchangeError
from shared.filters import (
    ROUND_DOWN,
    ROUND_NEAREST,
    ROUND_UP,
    SymbolFilters,
    can_sell,
    default_symbols,
    round_price,
    round_to_step,
)
from shared.matching import ExecutionEvent, MatchingEngine, OcoRequest, OrderRequest
from shared.strategies import build_strategy, get_strategy
from shared.strategies.base import (
    KLINE_INTERVALS_MS,
    Candle,
    Fill,
    MarketInfo,
    OrderIntent,
    Position,
    Strategy,
)

log = logging.getLogger(__name__)

ACCOUNT = "backtest"
ZERO = Decimal(0)
TOUCH_MARGIN_TICKS = 2


@dataclass(frozen=True)
class BacktestConfig:
    """What a run needs besides candles. Money is Decimal; ``fee_rate`` is maker and taker."""

    strategy: str = "SWING"
    symbol: str = "BTCUSDT"
    interval: str = "1m"
    params: Mapping[str, Any] = field(default_factory=dict)
    starting_quote: Decimal = Decimal("10000")
    fee_rate: Decimal = Decimal("0.001")
    protective: str = "oco"  # "oco": native SL/TP on the exchange; "none": strategy exits only
    sl_limit_offset_pct: Decimal = Decimal("0.1")  # STOP_LOSS_LIMIT limit this far below stop
    book_levels: int = 5
    min_level_quote: Decimal = Decimal("1000")
    bot_id: str = "bt"

    def strategy_params(self) -> dict[str, Any]:
        """The complete, validated params: given ones over the schema's defaults
        (``ValidationError`` naming every bad field)."""
        given = {**dict(self.params), "symbol": self.symbol, "timeframe": self.interval}
        return get_strategy(self.strategy).params_schema.validate(given, partial=True)

    def to_dict(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy, "symbol": self.symbol, "interval": self.interval,
            "params": {k: (str(v) if isinstance(v, Decimal) else v)
                       for k, v in self.params.items()},
            "starting_quote": str(self.starting_quote), "fee_rate": str(self.fee_rate),
            "protective": self.protective, "sl_limit_offset_pct": str(self.sl_limit_offset_pct),
            "book_levels": self.book_levels, "min_level_quote": str(self.min_level_quote),
        }


@dataclass(frozen=True)
class FillRecord:
    """One fill of one of the bot's orders, as the report and the parity test compare them."""

    ts_ms: int
    side: str
    price: Decimal
    qty: Decimal
    commission: Decimal
    commission_asset: str
    order_type: str
    client_order_id: str
    is_maker: bool
    reason: str
    closes_trade: bool = False  # the position was flat (or dust) after this fill

    def key(self) -> tuple[int, str, str, str]:
        """What two drivers must agree on: time, side, quantity and price."""
        return (self.ts_ms, self.side, str(self.qty), str(self.price))


@dataclass(frozen=True)
class Rejection:
    """An intent the venue or the sizing refused, with the reason a user reads."""

    ts_ms: int
    intent_id: str
    side: str
    reason: str


class DataClock(Clock):
    """The engine's clock: the data's time, moved by the backtest."""

    def __init__(self) -> None:
        self.now_ms = 0

    def time(self) -> float:
        return self.now_ms / 1000

    def monotonic(self) -> float:
        return self.time()

    def time_ms(self) -> int:
        return self.now_ms


def _dec(value: float) -> Decimal:
    return Decimal(repr(float(value)))


def _path(c: CandleArrays, i: int) -> tuple[float, float, float, float]:
    """Candle ``i``'s waypoints: open, low, high, close if it rose, else open, high, low, close."""
    o, h, lo, cl = float(c.open[i]), float(c.high[i]), float(c.low[i]), float(c.close[i])
    return (o, lo, h, cl) if cl >= o else (o, h, lo, cl)


def may_touch(low: float, high: float, prev_close: float,
              oco_raw: tuple[float, float] | None, wanted_raw: tuple[float, float] | None,
              tick: float) -> bool:
    """Whether a candle (with the previous close) comes within two ticks of a protective level.

    A superset of the candles where the engine can fill or trigger a protective order; the
    compiled driver evaluates the very same expression on the very same floats.
    """
    if oco_raw is None and wanted_raw is None:
        return False
    levels = [lv for lv in (oco_raw, wanted_raw) if lv is not None]
    stop = max(lv[0] for lv in levels)
    take = min(lv[1] for lv in levels)
    margin = TOUCH_MARGIN_TICKS * tick
    lo, hi = min(low, prev_close), max(high, prev_close)
    return lo - margin <= stop or hi + margin >= take


# --------------------------------------------------------------------------- the broker


class Broker:
    """Execution's part, offline: sizes intents, sends them to ``MatchingEngine``, places and
    moves the protective OCO, and turns the engine's events into fills for the strategy."""

    def __init__(self, config: BacktestConfig, candles: CandleArrays,
                 filters: SymbolFilters, on_fill: Callable[[Fill], None],
                 on_position: Callable[[Position], None]) -> None:
        self.config = config
        self.candles = candles
        self.filters = filters
        self.tick = filters.tick_size
        self._tick_f = float(filters.tick_size)
        self.interval_ms = KLINE_INTERVALS_MS[config.interval]
        # the path's grid: one step a second (the simulator's), 4 to 60 steps a candle
        self._steps = max(4, min(self.interval_ms // 1000, 60))
        self._step_ms = self.interval_ms // self._steps
        self.clock = DataClock()
        # user_data_stream=False: the broker reads what each call returns, never the stream
        self.engine = MatchingEngine({filters.symbol: filters}, self.clock,
                                     maker_commission=config.fee_rate,
                                     taker_commission=config.fee_rate, user_data_stream=False)
        self.ledger = self.engine.ledger
        self.engine.deposit(ACCOUNT, filters.quote_asset, config.starting_quote)
        # the book's level offsets from the best bid, k * tick, as _book uses them
        self._bid_offsets = [k * self.tick for k in range(config.book_levels)]
        self._ask_offsets = [(k + 1) * self.tick for k in range(config.book_levels)]
        self._on_fill = on_fill
        self._on_position = on_position
        self.position = Position()
        self.fills: list[FillRecord] = []
        self.rejections: list[Rejection] = []
        self.balance_marks: list[tuple[int, float, float]] = []  # (candle index, quote, base)
        self._queued: list[OrderIntent] = []
        self._limits: dict[str, int] = {}  # open LIMIT entries: client id -> expiry ms
        self._reasons: dict[str, str] = {}
        # Protective levels (stop, take-profit): what rests, what the strategy wants; the raw
        # floats decide when to consult the engine (the fast path computes the same floats).
        self.oco_levels: tuple[Decimal, Decimal] | None = None
        self.wanted_levels: tuple[Decimal, Decimal] | None = None
        self.oco_raw: tuple[float, float] | None = None
        self.wanted_raw: tuple[float, float] | None = None
        self.watch_always = False  # a triggered stop leg or a LIMIT entry rests
        self.protected_qty: Decimal | None = None  # what the entry brought in, net of fees
        self._open_orders: list[Any] = []  # the account's open orders after the last event

    # -- what the loop calls ------------------------------------------------------------------

    def queue(self, intents: list[OrderIntent]) -> None:
        self._queued.extend(intents)

    def listen(self, on_fill: Callable[[Fill], None],
               on_position: Callable[[Position], None]) -> None:
        """Send fills and position corrections to another strategy (the compiled driver)."""
        self._on_fill, self._on_position = on_fill, on_position

    def want_levels(self, stop: float | None, take_profit: float | None) -> None:
        """The strategy's protective levels after a close (None: keep what rests)."""
        if not self.position.is_open or stop is None or take_profit is None:
            return
        self._want(stop, take_profit)

    def _want(self, stop: float, take_profit: float) -> None:
        if self.config.protective == "oco":
            self.wanted_raw = (stop, take_profit)
            self.wanted_levels = self._protective_prices(stop, take_profit)

    def needs_open(self, i: int) -> bool:
        """Whether the engine could do anything at candle ``i``'s open or along its path."""
        if self._queued or self.watch_always:
            return True
        c = self.candles
        return may_touch(float(c.low[i]), float(c.high[i]),
                         float(c.close[i - 1]) if i > 0 else float(c.open[i]),
                         self.oco_raw, self.wanted_raw, self._tick_f)

    def open_candle(self, i: int) -> None:
        """Candle ``i`` opens: send queued intents, keep protection in place, walk the path."""
        if not self.needs_open(i):
            return
        c = self.candles
        t0 = int(c.open_time_ms[i])
        if self.wanted_levels is not None and self.wanted_levels != self.oco_levels and i > 0:
            n, ys = self._steps, _path(c, i - 1)
            marks = (0, n // 3, 2 * n // 3, n - 1)
            t_close = int(c.open_time_ms[i - 1]) + (n - 1) * self._step_ms
            self._market_at(self._grid_price(ys, marks, n - 1),
                            self._grid_price(ys, marks, n - 2), t_close, float(c.volume[i - 1]))
            self._replace_protection(t_close)
        prev = float(c.close[i - 1]) if i > 0 else float(c.open[i])
        self._market_at(float(c.open[i]), prev, t0, float(c.volume[i]))
        self._expire_limits(t0)
        queued, self._queued = self._queued, []
        for intent in queued:
            self._execute(intent, t0)
        self._walk(i)
        self.balance_marks.append((i, *self.balances()))

    def balances(self) -> tuple[float, float]:
        """Total quote and base of the account (free + locked), as floats."""
        quote = self.ledger.balance(ACCOUNT, self.filters.quote_asset)
        base = self.ledger.balance(ACCOUNT, self.filters.base_asset)
        return float(quote.free + quote.locked), float(base.free + base.locked)

    # -- the market -----------------------------------------------------------------------------

    def _book(self, price: Decimal, uptick: bool, volume: float) -> tuple[list, list]:
        best_bid = price - self.tick if uptick else price
        per_level = max(_dec(volume) / self.config.book_levels,
                        self.config.min_level_quote / price)
        qty = round_to_step(per_level, self.filters.step_size, ROUND_UP)
        bids = [(best_bid - offset, qty) for offset in self._bid_offsets]
        asks = [(best_bid + offset, qty) for offset in self._ask_offsets]
        return bids, asks

    def _market_at(self, price: float, prev: float, ts_ms: int, volume: float) -> None:
        """Set the book around ``price`` (up-tick or down-tick from ``prev``, the path's previous
        price) then print a trade there, both at ``ts_ms``."""
        self.clock.now_ms = ts_ms
        uptick = price >= prev
        p = round_price(_dec(price), self.filters, ROUND_NEAREST)
        bids, asks = self._book(p, uptick, volume)
        events = self.engine.set_book(self.filters.symbol, bids, asks, ts_ms)
        events += self.engine.on_trade(self.filters.symbol, p, bids[0][1], ts_ms)
        self._handle(events)

    def _walk(self, i: int) -> None:
        """The rest of candle ``i`` after its open, step by step on the simulator's grid, where
        a resting order is within reach (the other steps provably do nothing)."""
        reach = self._reach()
        if reach is None:
            return  # nothing rests
        c = self.candles
        ys = _path(c, i)
        if max(ys) + self._tick_f < reach[1] and min(ys) - self._tick_f > reach[0]:
            return  # the whole candle stays out of reach (so does each leg below)
        t0, volume = int(c.open_time_ms[i]), float(c.volume[i])
        n = self._steps
        marks = (0, n // 3, 2 * n // 3, n - 1)
        for k, (first, stop) in enumerate(((1, marks[1]), (marks[1], marks[2]), (marks[2], n))):
            if reach is None:
                return  # nothing rests any more
            low, high = sorted((ys[k], ys[k + 1]))
            if high + self._tick_f < reach[1] and low - self._tick_f > reach[0]:
                continue  # this leg of the path stays out of reach
            for j in range(first, stop):
                price = self._grid_price(ys, marks, j)
                if reach is not None and (price >= reach[1] or price <= reach[0]):
                    prev = self._grid_price(ys, marks, j - 1)
                    self._market_at(price, prev, t0 + j * self._step_ms, volume)
                    reach = self._reach()

    def _grid_price(self, ys: tuple[float, ...], marks: tuple[int, ...], j: int) -> float:
        """The price at step ``j`` as ``ReplayPath`` makes it: straight lines between the
        waypoints at steps 0, n/3, 2n/3 and n-1, rounded to the tick (half to even)."""
        seg = (j >= marks[1]) + (j >= marks[2])
        x0, x1, y0, y1 = marks[seg], marks[seg + 1], ys[seg], ys[seg + 1]
        return round((y0 + (y1 - y0) * (j - x0) / (x1 - x0)) / self._tick_f) * self._tick_f

    def _resting(self) -> bool:
        return bool(self._open_orders)

    def _reach(self) -> tuple[float, float] | None:
        """``(low, high)``: a price at or below ``low`` or at or above ``high`` (two ticks of
        slack for the book around a price) may trigger or fill a resting order; None when
        nothing rests."""
        if not self._open_orders:
            return None
        margin = TOUCH_MARGIN_TICKS * self._tick_f
        low, high = -math.inf, math.inf
        for order in self._open_orders:
            below = (order.side == "SELL") != order.is_working  # a sell stop waits below
            level = float(order.price if order.is_working else order.stop_price)
            if below:
                low = max(low, level + margin)
            else:
                high = min(high, level - margin)
        return low, high

    # -- orders ---------------------------------------------------------------------------------

    def _execute(self, intent: OrderIntent, now: int) -> None:
        try:
            if intent.side == "SELL":
                self._cancel_protection(now)
            request = self._request(intent)
            if request is None:
                self._reject(intent, now, "below the symbol's minimum quantity")
                return
            self._reasons[request.client_order_id or ""] = intent.reason
            events = self.engine.place(ACCOUNT, request)
        except ExchangeError as exc:
            self._reject(intent, now, str(getattr(exc, "msg", exc)))
            return
        self._handle(events)
        if request.type == "LIMIT" and intent.ttl_ms and self._resting():
            self._limits[request.client_order_id or ""] = now + intent.ttl_ms
        if intent.side == "BUY" and self.position.is_open:
            self.protected_qty = self._entry_net_qty(request.client_order_id or "")
            if intent.stop_loss is not None and intent.take_profit is not None:
                self._want(float(intent.stop_loss), float(intent.take_profit))
            self._replace_protection(now)

    def _request(self, intent: OrderIntent) -> OrderRequest | None:
        """The order execution would send for ``intent`` (None: below the minimum quantity)."""
        f = self.filters
        cid = intent.intent_id[-36:]
        if intent.side == "BUY" and intent.order_type == "MARKET" and intent.base_qty is None:
            if intent.quote_amount is None:
                raise ValueError("a MARKET BUY intent needs quote_amount or base_qty")
            return OrderRequest(f.symbol, "BUY", "MARKET", quote_order_qty=intent.quote_amount,
                                client_order_id=cid)
        qty = round_to_step(self._order_qty(intent), f.step_size, ROUND_DOWN)
        if qty < f.min_qty or qty <= 0:
            return None
        if intent.order_type == "MARKET":
            return OrderRequest(f.symbol, intent.side, "MARKET", quantity=qty, client_order_id=cid)
        price = round_price(intent.limit_price or ZERO, f, ROUND_NEAREST)
        return OrderRequest(f.symbol, intent.side, "LIMIT", quantity=qty, price=price,
                            time_in_force=intent.time_in_force or "GTC", client_order_id=cid)

    def _order_qty(self, intent: OrderIntent) -> Decimal:
        """Base quantity before rounding. A SELL closing the whole position sells every free
        unit (dust left by earlier trips included), as execution does for a bot's exit."""
        if intent.side == "BUY":
            if intent.base_qty is not None:
                return intent.base_qty
            return (intent.quote_amount or ZERO) / (intent.limit_price or Decimal(1))
        held = self.ledger.balance(ACCOUNT, self.filters.base_asset).free
        asked = intent.base_qty if intent.base_qty is not None else held
        return held if asked >= self.position.base_qty else min(asked, held)

    def _reject(self, intent: OrderIntent, now: int, reason: str) -> None:
        self.rejections.append(Rejection(now, intent.intent_id, intent.side, reason))
        self._on_position(self.position)

    def _expire_limits(self, now: int) -> None:
        for cid, expiry in list(self._limits.items()):
            if now < expiry:
                continue
            del self._limits[cid]
            try:
                self._handle(self.engine.cancel(ACCOUNT, self.filters.symbol,
                                                orig_client_order_id=cid))
            except ExchangeError:
                continue  # filled (or gone) before its time was up
            self._on_position(self.position)

    def _protective_prices(self, stop: float, take: float) -> tuple[Decimal, Decimal]:
        """Stop rounded down and take-profit up to the tick: never nearer than asked."""
        return (round_price(_dec(stop), self.filters, ROUND_DOWN),
                round_price(_dec(take), self.filters, ROUND_UP))

    def _cancel_protection(self, now: int) -> None:
        self.clock.now_ms = now
        lists_done: set[int] = set()
        for order in list(self._open_orders):
            if order.order_list_id in lists_done:
                continue  # cancelling one leg of an OCO cancelled the whole list
            if order.order_list_id >= 0:
                lists_done.add(order.order_list_id)
            if order.order_list_id >= 0 or order.type == "STOP_LOSS_LIMIT":
                try:
                    self._handle(self.engine.cancel(ACCOUNT, self.filters.symbol,
                                                    order_id=order.order_id))
                except ExchangeError:
                    pass
        self.oco_levels = self.oco_raw = None

    def _entry_net_qty(self, client_order_id: str) -> Decimal:
        """Base the entry order brought in, net of base fees (execution's ``_net_qty``).

        Called right after the entry is placed, so its fills are the newest: scan back from the
        end and stop at the first fill of another order (a full scan made runs quadratic)."""
        net = ZERO
        for f in reversed(self.fills):
            if f.client_order_id != client_order_id:
                break
            net += f.qty - (f.commission if f.commission_asset == self.filters.base_asset
                            else ZERO)
        return net

    def _replace_protection(self, now: int) -> None:
        """(Re)place the SELL OCO at ``wanted_levels`` for what the entry brought in, net of
        fees, rounded down (as execution's ``protect.py`` does: dust left by earlier trips is
        not protected; a strategy exit sells it)."""
        wanted = self.wanted_levels
        if wanted is None or not self.position.is_open:
            return
        self._cancel_protection(now)
        f = self.filters
        held = self.ledger.balance(ACCOUNT, f.base_asset).free
        protected = held if self.protected_qty is None else min(self.protected_qty, held)
        qty = round_to_step(protected, f.step_size, ROUND_DOWN)
        stop, take = wanted
        limit = round_price(stop * (1 - self.config.sl_limit_offset_pct / 100), f, ROUND_DOWN)
        oco = OcoRequest(f.symbol, "SELL", qty, above_type="LIMIT_MAKER",
                         below_type="STOP_LOSS_LIMIT",
                         above_price=take, below_price=limit, below_stop_price=stop,
                         below_time_in_force="GTC")
        self.oco_levels, self.oco_raw = wanted, self.wanted_raw
        try:
            self._handle(self.engine.place_oco(ACCOUNT, oco))
        except ExchangeError as exc:
            self.oco_levels = self.oco_raw = None
            self.rejections.append(Rejection(now, "protective-oco", "SELL",
                                             str(getattr(exc, "msg", exc))))

    # -- events -----------------------------------------------------------------------------

    def _handle(self, events: list[ExecutionEvent]) -> None:
        if not events:
            return  # no order changed: the open orders are those we already know
        for event in events:
            if event.execution_type == "TRADE" and event.account == ACCOUNT:
                self._record(event)
        resting = self._open_orders = self.engine.open_orders(ACCOUNT, self.filters.symbol)
        has_oco = watch = False
        for o in resting:
            has_oco = has_oco or o.order_list_id >= 0
            watch = watch or o.type == "LIMIT" or (o.type == "STOP_LOSS_LIMIT" and o.is_working)
        if not has_oco:
            self.oco_levels = self.oco_raw = None
        self.watch_always = watch

    def _record(self, event: ExecutionEvent) -> None:
        qty, price = event.last_executed_qty, event.last_executed_price
        commission = event.commission
        base_fee = event.commission_asset == self.filters.base_asset
        reason = self._reasons.get(event.client_order_id, "")
        if event.order_list_id >= 0:
            reason = "protective_take_profit" if event.order_type == "LIMIT_MAKER" else (
                "protective_stop_loss")
        held = qty - commission if event.side == "BUY" and base_fee else qty
        fill = Fill(event.side, price, held, event.transaction_time_ms,
                    event.client_order_id)
        self.position = self.position.apply(fill)
        self._on_fill(fill)
        if event.side == "SELL" and self.position.is_open and self._is_dust(price):
            self.position = Position()
            self._on_position(self.position)
        self.fills.append(FillRecord(event.transaction_time_ms, event.side, price, qty,
                                     commission, event.commission_asset or "",
                                     event.order_type, event.client_order_id, event.is_maker,
                                     reason, not self.position.is_open))
        if not self.position.is_open:
            self.wanted_levels = self.wanted_raw = None

    def _is_dust(self, price: Decimal) -> bool:
        return not can_sell(self.filters, self.position.base_qty, price)


# --------------------------------------------------------------------------- the run


@dataclass
class BacktestResult:
    """Everything the report needs: config, fills, rejections and the equity curve."""

    config: BacktestConfig
    candles: CandleArrays
    start_index: int
    fills: list[FillRecord]
    rejections: list[Rejection]
    equity: np.ndarray  # quote value at each candle close from ``start_index``
    base_held: np.ndarray  # base quantity held at each candle close from ``start_index``
    elapsed_s: float = 0.0
    driver: str = "pure"

    def trade_keys(self) -> list[tuple[int, str, str, str]]:
        return [f.key() for f in self.fills]


def equity_curve(n: int, start: int, marks: list[tuple[int, float, float]],
                 close: np.ndarray, starting_quote: float) -> tuple[np.ndarray, np.ndarray]:
    """Mark-to-close equity from the balance after each consulted candle (piecewise constant):
    candle ``i`` uses the last mark at or before ``i``, else the starting balance."""
    count = n - start
    if not marks:
        return np.full(count, starting_quote), np.zeros(count)
    idx = np.array([m[0] for m in marks], dtype=np.int64)
    quote_marks = np.array([m[1] for m in marks], dtype=np.float64)
    base_marks = np.array([m[2] for m in marks], dtype=np.float64)
    j = np.searchsorted(idx, np.arange(start, n), side="right") - 1
    before = j < 0
    j = np.maximum(j, 0)
    quote = np.where(before, starting_quote, quote_marks[j])
    base = np.where(before, 0.0, base_marks[j])
    return quote + base * close[start:n], base


def symbol_filters(symbol: str) -> SymbolFilters:
    symbols = default_symbols()
    if symbol not in symbols:
        raise ValueError(f"no exchange filters for {symbol!r}; known: {sorted(symbols)}")
    return symbols[symbol]


class Backtest:
    """One run: a strategy object (or a compiled stand-in), the broker, and the candles."""

    def __init__(self, config: BacktestConfig, candles: CandleArrays,
                 filters: SymbolFilters | None = None) -> None:
        self.config = config
        self.candles = candles
        self.filters = filters or symbol_filters(config.symbol)
        self.strategy: Strategy = build_strategy(config.strategy, config.bot_id,
                                                 config.strategy_params(),
                                                 MarketInfo.of(self.filters))
        if "kline" not in self.strategy.needs:
            raise ValueError(f"{config.strategy} reads the order book; kline history has none "
                             "(record bookTicker/depth to backtest it)")
        self.broker = Broker(config, candles, self.filters, self.strategy.on_fill,
                             self.strategy.on_position)
        self.warmup = min(self.strategy.warmup_candles(), len(candles))
        self._trailing = bool(self.strategy.params.get("trailing_stop"))

    def candle(self, i: int) -> Candle:
        c = self.candles
        return Candle(int(c.open_time_ms[i]), float(c.open[i]), float(c.high[i]),
                      float(c.low[i]), float(c.close[i]), float(c.volume[i]))

    def warm_up(self) -> None:
        """The first ``warmup_candles()`` candles only warm the strategy up (no trading)."""
        self.strategy.warm_up(self.candle(i) for i in range(self.warmup))

    def step(self, i: int) -> None:
        """Candle ``i``: its open through the broker, then its close through the strategy."""
        self.broker.open_candle(i)
        intents = self.strategy.on_candle(self.candle(i))
        if intents:
            self.broker.queue(intents)
        if self._trailing and self.broker.position.is_open:
            snap = self.strategy.snapshot()
            self.broker.want_levels(snap.get("stop_loss"), snap.get("take_profit"))

    def run(self, progress: bool = False) -> BacktestResult:
        import time

        from tqdm import tqdm

        started = time.perf_counter()
        self.warm_up()
        n = len(self.candles)
        for i in tqdm(range(self.warmup, n), disable=not progress, unit="candle",
                      mininterval=0.5, desc="backtest"):
            self.step(i)
        return self.result(time.perf_counter() - started, "pure")

    def result(self, elapsed_s: float, driver: str) -> BacktestResult:
        n = len(self.candles)
        equity, base = equity_curve(n, self.warmup, self.broker.balance_marks,
                                    self.candles.close, float(self.config.starting_quote))
        return BacktestResult(self.config, self.candles, self.warmup, self.broker.fills,
                              self.broker.rejections, equity, base, elapsed_s, driver)


@contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off for the length of one run.

    A run keeps every order, trade and fill it makes (tens of thousands of small records, none
    of them in a reference cycle: reference counting frees whatever is dropped). The collector's
    full passes over that growing heap find nothing and cost about a tenth of a 1M-candle run.
    It is switched back on afterwards (if it was on), which collects the one cycle a run leaves
    (broker and strategy refer to each other) as usual.
    """
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


def run_backtest(config: BacktestConfig, candles: CandleArrays, driver: str = "auto",
                 progress: bool = False) -> BacktestResult:
    """Run ``config`` over ``candles``: ``driver`` "pure" (the strategy class), "fast" (the
    compiled SWING, same trades) or "auto" (fast when it supports the strategy)."""
    with collector_paused():
        if driver in ("fast", "auto"):
            from backtest import fast

            if fast.supports(config):
                return fast.run(config, candles, progress=progress)
            if driver == "fast":
                raise ValueError(f"no fast path for {config.strategy}")
        return Backtest(config, candles).run(progress=progress)
