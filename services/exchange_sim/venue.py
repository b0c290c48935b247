"""The simulated venue: market, matching engine, accounts, limits and faults in one place.

The HTTP/WebSocket server is a thin skin over :class:`Venue`. Every engine call goes through the
venue's lock, so the server loop and any other thread may use it. User-data events drained from
the engine are handed to the listeners registered for their account.
"""

from __future__ import annotations

import itertools
import logging
import secrets
import threading
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from shared.clock import SYSTEM_CLOCK, Clock
from shared.errors import ExchangeError
from shared.filters import SymbolFilters, check_order, default_symbols
from shared.matching import MatchingEngine, OcoRequest, OrderRequest

from .api_error import ApiError, bad_symbol, mandatory
from .auth import ApiKey, Authenticator
from .faults import Faults
from .market import FIRST_TRADE_ID, Market, SymbolSpec, build_market, fmt
from .params import Params
from .ratelimit import RateLimiter, RateLimits

log = logging.getLogger(__name__)

DATA_DIR = Path(__file__).resolve().parents[2] / "data" / "klines"
DEFAULT_REPLAY = {
    "BTCUSDT": DATA_DIR / "BTCUSDT_1m_20210420-20210520.csv.gz",
    "ETHUSDT": DATA_DIR / "ETHUSDT_1m_20210420-20210520.csv.gz",
}
START_PRICES = {"BTCUSDT": 60_000.0, "ETHUSDT": 3_000.0, "BNBUSDT": 600.0}
ENGINE_BOOK_LEVELS = 50
DEFAULT_HISTORY_S = 7 * 86_400  # a week of 1 s steps: 168 hourly candles for warm-up
MAX_FED_TRADES = 2_000
ORDER_TYPES = ("LIMIT", "MARKET", "LIMIT_MAKER", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT")
TIME_IN_FORCE = ("GTC", "IOC", "FOK")
SIDES = ("BUY", "SELL")
RESP_TYPES = ("ACK", "RESULT", "FULL")

UserListener = Callable[[dict], None]


@dataclass(frozen=True)
class AccountConfig:
    """One simulated account: its key pair and what it starts with."""

    api_key: str = "sim-key"
    api_secret: str = "sim-secret"
    name: str = "sim"
    funding: dict[str, Decimal] = field(default_factory=lambda: {"USDT": Decimal("10000")})


def default_sources(replay: bool = True) -> dict[str, str]:
    """Replay the real 1m klines in ``data/klines`` where present, else random walks."""
    if not replay:
        return {}
    return {sym: str(path) for sym, path in DEFAULT_REPLAY.items() if path.exists()}


def spec_for(filters: SymbolFilters) -> SymbolSpec:
    return SymbolSpec(filters.symbol, filters.base_asset, filters.quote_asset, filters.tick_size,
                      filters.step_size, START_PRICES.get(filters.symbol, 100.0))


def new_client_id() -> str:
    """A Binance-looking generated client order id (22 url-safe characters)."""
    return secrets.token_urlsafe(16)[:22]


class Venue:
    """Binance Spot as a Python object: market data, accounts, orders, limits and faults."""

    def __init__(self, clock: Clock = SYSTEM_CLOCK, accounts: list[AccountConfig] | None = None,
                 *, market: Market | None = None, seed: int = 7, replay: bool = True,
                 history_s: int = DEFAULT_HISTORY_S, step_ms: int = 1000,
                 sources: dict[str, str] | None = None,
                 limits: RateLimits | None = None,
                 symbols: dict[str, SymbolFilters] | None = None,
                 signing_clock: Clock | None = None, local_feed: bool = True) -> None:
        """Build the venue; every account in ``accounts`` is funded at once.

        ``clock`` drives the market, whose history starts ``history_s`` before now. ``replay``
        replays the real BTCUSDT/ETHUSDT 1m candles in ``data/klines`` (other symbols walk
        randomly from ``seed``); ``sources`` overrides that per symbol ("random", the path
        of a 1m kline CSV, or "quotes:<path>" of a bookTicker CSV). The price moves, trades
        print and the book changes every ``step_ms``. ``signing_clock`` (default: ``clock``)
        is what request timestamps and rate limits are checked against, e.g. the real clock
        under an accelerated market. ``local_feed=False`` (paper mode) leaves the engine's
        book and trades to :meth:`feed_book` and :meth:`feed_trade`, called with the real
        market's.
        """
        self.clock = clock
        self.signing_clock = signing_clock or clock
        self.symbols = symbols or default_symbols()
        specs = {name: spec_for(f) for name, f in self.symbols.items()}
        if sources is None:
            sources = default_sources(replay)
        self.market = market or build_market(clock, sources, seed=seed, history_s=history_s,
                                             step_ms=step_ms, specs=specs)
        self.accounts = accounts or [AccountConfig()]
        self.auth = Authenticator(
            [ApiKey(a.name, a.api_key, a.api_secret) for a in self.accounts],
            self.signing_clock)
        self.local_feed = local_feed
        self.limiter = RateLimiter(self.signing_clock, limits)
        self.faults = Faults(seed)
        self._lock = threading.RLock()
        self._listeners: dict[str, dict[int, UserListener]] = defaultdict(dict)
        self._listener_ids = itertools.count(1)
        self._fed_index: dict[str, int] = {}
        self.engine = MatchingEngine(self.symbols, clock)
        for account in self.accounts:
            for asset, amount in account.funding.items():
                self.engine.deposit(account.name, asset, Decimal(amount))
        self.engine.drain_events()
        self.sync_market()

    # ---- public data --------------------------------------------------------------------------

    def exchange_info(self, names: list[str] | None = None) -> dict[str, Any]:
        if names is not None:
            for name in names:
                self.require_symbol(name)
        chosen = [self.symbols[n] for n in (names or self.symbols)]
        return {"timezone": "UTC", "serverTime": self.clock.time_ms(),
                "rateLimits": self.limiter.limits.to_exchange_info(), "exchangeFilters": [],
                "symbols": [f.to_exchange_info() for f in chosen]}

    def require_symbol(self, symbol: str | None) -> str:
        if not symbol:
            raise mandatory("symbol")
        if symbol not in self.symbols or symbol not in self.market.paths:
            raise bad_symbol()
        return symbol

    def deposit(self, account: str, asset: str, amount: Decimal) -> None:
        """Credit ``account`` (a balanceUpdate and an outboundAccountPosition follow)."""
        if account not in {a.name for a in self.accounts}:
            raise KeyError(f"unknown account {account!r}")
        self._engine_call(self.engine.deposit, account, asset, amount)

    # ---- market feed into the engine ----------------------------------------------------------

    def sync_market(self) -> None:
        """Feed the engine every market step up to now: trades, then the latest book.

        While a stop order waits for its trigger on a symbol, each step's own book is set just
        before its trade (the book after that trade, as ``Market.book`` defines it), so a stop
        triggered by a trade fills against the book of that second, not the book of the last
        sync (a price the market had already left): its fill then does not depend on how many
        steps one sync covers (``SIM_SPEED``), and matches the backtester's replay.
        """
        with self._lock:
            if not self.local_feed:
                self._dispatch()
                return
            for symbol in self.market.symbols:
                now = self.market.now_index(symbol)
                last = self._fed_index.get(symbol)
                if last is not None and now <= last:
                    continue
                first = now - 1 if last is None else max(last, now - MAX_FED_TRADES)
                per_step = self._stop_waiting(symbol)
                for trade in self.market.trades(symbol, first, now):
                    if per_step:
                        self._set_book(symbol, trade.trade_id - FIRST_TRADE_ID, trade.time_ms)
                    self.engine.on_trade(symbol, Decimal(fmt(trade.price)),
                                         Decimal(fmt(trade.qty)), trade.time_ms)
                self._set_book(symbol, now, self.clock.time_ms())
                self._fed_index[symbol] = now
            self._dispatch()

    def _stop_waiting(self, symbol: str) -> bool:
        return any(not order.is_working for a in self.accounts
                   for order in self.engine.open_orders(a.name, symbol))

    def _set_book(self, symbol: str, index: int, ts_ms: int) -> None:
        book = self.market.book(symbol, index)
        self.engine.set_book(
            symbol,
            [(Decimal(p), Decimal(q)) for p, q in book.bids[:ENGINE_BOOK_LEVELS]],
            [(Decimal(p), Decimal(q)) for p, q in book.asks[:ENGINE_BOOK_LEVELS]],
            ts_ms)

    def feed_book(self, symbol: str, bids: list[tuple[Decimal, Decimal]],
                  asks: list[tuple[Decimal, Decimal]]) -> None:
        """An order book from outside (paper mode): resting orders it crosses fill."""
        with self._lock:
            self.engine.set_book(symbol, bids[:ENGINE_BOOK_LEVELS], asks[:ENGINE_BOOK_LEVELS],
                                 self.clock.time_ms())
            self._dispatch()

    def feed_trade(self, symbol: str, price: Decimal, qty: Decimal, ts_ms: int) -> None:
        """A public trade from outside (paper mode): stops trigger, resting orders fill."""
        with self._lock:
            self.engine.on_trade(symbol, price, qty, ts_ms)
            self._dispatch()

    def avg_price(self, symbol: str) -> Decimal:
        """The price the PERCENT_PRICE filters compare with: the market's 5 min average, or in
        paper mode the engine's last trade / mid."""
        if self.local_feed:
            return Decimal(fmt(self.market.avg_price(symbol)))
        with self._lock:
            ref = self.engine.reference_price(symbol)
        if ref is None:
            raise ApiError(400, -1013, "No market data yet for this symbol.")
        return ref

    # ---- user-data listeners ------------------------------------------------------------------

    def add_user_listener(self, account: str, listener: UserListener) -> int:
        """Call ``listener(event_dict)`` for every user-data event of ``account``."""
        with self._lock:
            token = next(self._listener_ids)
            self._listeners[account][token] = listener
            return token

    def remove_user_listener(self, token: int) -> None:
        with self._lock:
            for listeners in self._listeners.values():
                listeners.pop(token, None)

    def _dispatch(self) -> None:
        for event in self.engine.drain_events():
            listeners = list(self._listeners.get(event.account, {}).values())
            if not listeners:
                continue
            payload = event.to_dict()
            for listener in listeners:
                try:
                    listener(payload)
                except Exception:  # a broken listener must not stop the others
                    log.exception("user-data listener failed")

    def _engine_call(self, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        """Run one engine operation under the lock, mapping engine errors to ApiError."""
        with self._lock:
            self.sync_market()
            try:
                return fn(*args, **kwargs)
            except ExchangeError as exc:
                raise ApiError.from_exchange_error(exc) from exc
            finally:
                self._dispatch()

    # ---- orders -------------------------------------------------------------------------------

    def order_request(self, p: Params) -> tuple[OrderRequest, str]:
        """Parse POST /api/v3/order params; returns the request and the response type."""
        symbol = self.require_symbol(p.text("symbol"))
        side = p.choice("side", SIDES, ApiError(400, -1117, "Invalid side."), required=True)
        order_type = p.choice("type", ORDER_TYPES, ApiError(400, -1116, "Invalid orderType."),
                              required=True)
        tif = p.choice("timeInForce", TIME_IN_FORCE,
                       ApiError(400, -1115, "Invalid timeInForce."))
        quantity, quote_qty = p.decimal("quantity"), p.decimal("quoteOrderQty")
        price, stop_price = p.decimal("price"), p.decimal("stopPrice")
        _check_order_shape(order_type, tif, quantity, quote_qty, price, stop_price)
        default_resp = "FULL" if order_type in ("MARKET", "LIMIT") else "ACK"
        resp_type = p.choice("newOrderRespType", RESP_TYPES, default=default_resp)
        request = OrderRequest(symbol=symbol, side=side, type=order_type, quantity=quantity,
                               quote_order_qty=quote_qty, price=price, stop_price=stop_price,
                               time_in_force=tif, client_order_id=p.text("newClientOrderId"))
        return request, resp_type or default_resp

    def test_order(self, p: Params) -> dict:
        """POST /api/v3/order/test: every check of a real order, nothing placed."""
        request, _ = self.order_request(p)
        filters = self.symbols[request.symbol]
        avg = self.avg_price(request.symbol)
        try:
            check_order(filters, request.side, request.type, request.price, request.quantity,
                        stop_price=request.stop_price, quote_order_qty=request.quote_order_qty,
                        avg_price=avg)
        except ExchangeError as exc:
            raise ApiError.from_exchange_error(exc) from exc
        return {}

    def place_order(self, account: str, p: Params) -> dict:
        request, resp_type = self.order_request(p)
        with self._lock:
            events = self._engine_call(self.engine.place, account, request)
            order = self.engine.get_order(account, request.symbol, events[0].order_id)
        return order.to_response(resp_type, events[0].transaction_time_ms)

    def get_order(self, account: str, p: Params) -> dict:
        symbol = self.require_symbol(p.text("symbol"))
        order_id, client_id = _order_ref(p, "orderId", "origClientOrderId")
        order = self._engine_call(self.engine.get_order, account, symbol, order_id, client_id)
        return order.to_dict()

    def cancel_order(self, account: str, p: Params) -> dict:
        symbol = self.require_symbol(p.text("symbol"))
        order_id, client_id = _order_ref(p, "orderId", "origClientOrderId")
        cancel_id = p.text("newClientOrderId") or new_client_id()
        with self._lock:
            events = self._engine_call(self.engine.cancel, account, symbol, order_id, client_id,
                                       cancel_id)
            target = next((e for e in events if e.execution_type == "CANCELED"
                           and (order_id is None or e.order_id == order_id)
                           and (client_id is None or e.orig_client_order_id == client_id)),
                          events[0])
            order = self.engine.get_order(account, symbol, target.order_id)
        return order.to_cancel_response(cancel_id, target.transaction_time_ms)

    def cancel_all(self, account: str, p: Params) -> list[dict]:
        symbol = self.require_symbol(p.text("symbol"))
        with self._lock:
            events = self._engine_call(self.engine.cancel_all, account, symbol)
            out = []
            for event in events:
                if event.execution_type != "CANCELED":
                    continue
                order = self.engine.get_order(account, symbol, event.order_id)
                out.append(order.to_cancel_response(event.client_order_id,
                                                    event.transaction_time_ms))
        return out

    def open_orders(self, account: str, p: Params) -> list[dict]:
        symbol = p.text("symbol")
        if symbol is not None:
            self.require_symbol(symbol)
        return [o.to_dict() for o in self._engine_call(self.engine.open_orders, account, symbol)]

    def all_orders(self, account: str, p: Params) -> list[dict]:
        symbol = self.require_symbol(p.text("symbol"))
        limit = p.integer("limit", 500, 1, 1000)
        start, end = p.integer("startTime"), p.integer("endTime")
        orders = self._engine_call(self.engine.all_orders, account, symbol,
                                   p.integer("orderId"), 1_000_000)
        orders = [o for o in orders if (start is None or o.time_ms >= start)
                  and (end is None or o.time_ms <= end)]
        from_start = p.integer("orderId") is not None or start is not None
        return [o.to_dict() for o in _page(orders, limit or 500, from_start)]

    def my_trades(self, account: str, p: Params) -> list[dict]:
        symbol = self.require_symbol(p.text("symbol"))
        limit = p.integer("limit", 500, 1, 1000)
        start, end = p.integer("startTime"), p.integer("endTime")
        trades = self._engine_call(self.engine.my_trades, account, symbol, p.integer("fromId"),
                                   p.integer("orderId"), 1_000_000)
        trades = [t for t in trades if (start is None or t.time_ms >= start)
                  and (end is None or t.time_ms <= end)]
        from_start = p.integer("fromId") is not None or start is not None
        return [t.to_dict() for t in _page(trades, limit or 500, from_start)]

    def account_info(self, account: str, p: Params) -> dict:
        omit = (p.text("omitZeroBalances") or "false").lower() == "true"
        return self._engine_call(self.engine.account_dict, account, omit)

    # ---- order lists (OCO) --------------------------------------------------------------------

    def place_oco(self, account: str, p: Params, legacy: bool = False) -> dict:
        request = _legacy_oco(self, p) if legacy else _oco(self, p)
        with self._lock:
            events = self._engine_call(self.engine.place_oco, account, request)
            order_list = self.engine.get_order_list(account, events[0].order_list_id)
            return self.engine.order_list_response(order_list)

    def cancel_order_list(self, account: str, p: Params) -> dict:
        symbol = self.require_symbol(p.text("symbol"))
        list_id, list_client_id = _order_ref(p, "orderListId", "listClientOrderId")
        with self._lock:
            self._engine_call(self.engine.cancel_order_list, account, symbol, list_id,
                              list_client_id)
            order_list = self._engine_call(self.engine.get_order_list, account, list_id,
                                           list_client_id)
            return self.engine.order_list_response(order_list)

    def get_order_list(self, account: str, p: Params) -> dict:
        """GET /api/v3/orderList by orderListId or origClientOrderId."""
        list_id, list_client_id = _order_ref(p, "orderListId", "origClientOrderId")
        with self._lock:
            order_list = self._engine_call(self.engine.get_order_list, account, list_id,
                                           list_client_id)
            body = self.engine.order_list_response(order_list)
        body.pop("orderReports", None)
        return body

    def open_order_lists(self, account: str, p: Params) -> list[dict]:
        with self._lock:
            lists = self._engine_call(self.engine.open_order_lists, account)
            out = []
            for order_list in lists:
                body = self.engine.order_list_response(order_list)
                body.pop("orderReports", None)
                out.append(body)
            return out


def _page(rows: list, limit: int, from_start: bool) -> list:
    """The first ``limit`` rows from a start point, else Binance's default: the most recent."""
    return rows[:limit] if from_start else rows[-limit:]


def _order_ref(p: Params, id_name: str, client_name: str) -> tuple[int | None, str | None]:
    order_id, client_id = p.integer(id_name), p.text(client_name)
    if order_id is None and client_id is None:
        raise ApiError(400, -1102, f"Param '{client_name}' or '{id_name}' must be sent, but both "
                                   "were empty/null!")
    return order_id, client_id


def _not_required(name: str) -> ApiError:
    return ApiError(400, -1106, f"Parameter '{name}' sent when not required.")


def _check_order_shape(order_type: str, tif: str | None, quantity: Decimal | None,
                       quote_qty: Decimal | None, price: Decimal | None,
                       stop_price: Decimal | None) -> None:
    """The mandatory and forbidden parameters of each order type (-1102 / -1106)."""
    if order_type == "MARKET":
        _check_market_shape(tif, quantity, quote_qty, price, stop_price)
        return
    needed = {"quantity": quantity, "price": price}
    forbidden = {"quoteOrderQty": quote_qty}
    if order_type in ("LIMIT", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"):
        needed["timeInForce"] = tif
    else:
        forbidden["timeInForce"] = tif
    if order_type in ("STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"):
        needed["stopPrice"] = stop_price
    else:
        forbidden["stopPrice"] = stop_price
    _require(needed, forbidden)


def _check_market_shape(tif: str | None, quantity: Decimal | None, quote_qty: Decimal | None,
                        price: Decimal | None, stop_price: Decimal | None) -> None:
    if quantity is None and quote_qty is None:
        raise ApiError(400, -1102, "Param 'quantity' or 'quoteOrderQty' must be sent, but "
                                   "both were empty/null!")
    if quantity is not None and quote_qty is not None:
        raise _not_required("quoteOrderQty")
    _require({}, {"timeInForce": tif, "price": price, "stopPrice": stop_price})


def _require(needed: dict[str, Any], forbidden: dict[str, Any]) -> None:
    for name, value in forbidden.items():
        if value is not None:
            raise _not_required(name)
    for name, value in needed.items():
        if value is None:
            raise mandatory(name)


_OCO_ABOVE = ("STOP_LOSS_LIMIT", "LIMIT_MAKER", "TAKE_PROFIT_LIMIT")
_OCO_BELOW = ("STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT", "LIMIT_MAKER")


def _oco(venue: Venue, p: Params) -> OcoRequest:
    """POST /api/v3/orderList/oco params → OcoRequest."""
    bad_type = ApiError(400, -1116, "Invalid orderType.")
    return OcoRequest(
        symbol=venue.require_symbol(p.text("symbol")),
        side=p.choice("side", SIDES, ApiError(400, -1117, "Invalid side."), required=True),
        quantity=p.decimal("quantity", required=True),
        above_type=p.choice("aboveType", _OCO_ABOVE, bad_type, required=True),
        below_type=p.choice("belowType", _OCO_BELOW, bad_type, required=True),
        above_price=p.decimal("abovePrice"), above_stop_price=p.decimal("aboveStopPrice"),
        above_time_in_force=p.choice("aboveTimeInForce", TIME_IN_FORCE),
        above_client_order_id=p.text("aboveClientOrderId"),
        below_price=p.decimal("belowPrice"), below_stop_price=p.decimal("belowStopPrice"),
        below_time_in_force=p.choice("belowTimeInForce", TIME_IN_FORCE),
        below_client_order_id=p.text("belowClientOrderId"),
        list_client_order_id=p.text("listClientOrderId"),
    )


def _legacy_oco(venue: Venue, p: Params) -> OcoRequest:
    """Deprecated POST /api/v3/order/oco params (price, stopPrice, stopLimitPrice...)."""
    side = p.choice("side", SIDES, ApiError(400, -1117, "Invalid side."), required=True)
    limit_leg = {"price": p.decimal("price", required=True), "stop": None, "tif": None,
                 "type": "LIMIT_MAKER", "cid": p.text("limitClientOrderId")}
    stop_limit_price = p.decimal("stopLimitPrice")
    stop_leg = {"price": stop_limit_price, "stop": p.decimal("stopPrice", required=True),
                "tif": p.choice("stopLimitTimeInForce", TIME_IN_FORCE),
                "type": "STOP_LOSS_LIMIT", "cid": p.text("stopClientOrderId")}
    if stop_limit_price is None:
        raise ApiError(400, -1102, "Mandatory parameter 'stopLimitPrice' was not sent, was "
                                   "empty/null, or malformed.")
    if stop_leg["tif"] is None:
        raise mandatory("stopLimitTimeInForce")
    above, below = (limit_leg, stop_leg) if side == "SELL" else (stop_leg, limit_leg)
    return OcoRequest(
        symbol=venue.require_symbol(p.text("symbol")), side=side,
        quantity=p.decimal("quantity", required=True),
        above_type=above["type"], below_type=below["type"],
        above_price=above["price"], above_stop_price=above["stop"],
        above_time_in_force=above["tif"], above_client_order_id=above["cid"],
        below_price=below["price"], below_stop_price=below["stop"],
        below_time_in_force=below["tif"], below_client_order_id=below["cid"],
        list_client_order_id=p.text("listClientOrderId"),
    )
