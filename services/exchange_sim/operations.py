"""Every Binance operation the venue answers, once, for REST and the WebSocket API alike.

An :class:`Operation` says how much request weight it costs, whether it must be signed, how many
new orders it counts, and how it runs against the :class:`Venue`. ``REST_ROUTES`` and
``WS_API_METHODS`` only map Binance's names onto these.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .api_error import ApiError, bad_interval
from .market import INTERVAL_MS, fmt
from .params import Params
from .venue import Venue

Weight = int | Callable[[Params], int]


@dataclass(frozen=True)
class Operation:
    """One Binance call: ``run(venue, account, params)`` → JSON body."""

    run: Callable[[Venue, str | None, Params], Any]
    weight: Weight
    signed: bool = False
    new_orders: int = 0  # counted against the ORDERS limits; subject to the -1007 fault
    free_on_success: bool = False  # place/cancel calls weigh 0 when they succeed (2026-04-02)

    def weight_of(self, params: Params) -> int:
        return self.weight(params) if callable(self.weight) else self.weight


# ---------------------------------------------------------------------------- public data


def exchange_info(venue: Venue, p: Params) -> dict:
    symbol = p.text("symbol")
    return venue.exchange_info([symbol] if symbol else p.symbols())


def klines(venue: Venue, p: Params) -> list:
    symbol = venue.require_symbol(p.text("symbol"))
    interval = p.required("interval")
    if interval not in INTERVAL_MS:
        raise bad_interval()
    return venue.market.klines(symbol, interval, p.integer("startTime"), p.integer("endTime"),
                               p.integer("limit", 500, 1, 1000) or 500)


def depth(venue: Venue, p: Params) -> dict:
    symbol = venue.require_symbol(p.text("symbol"))
    return venue.market.depth_snapshot(symbol, p.integer("limit", 100, 1, 5000) or 100)


def recent_trades(venue: Venue, p: Params) -> list:
    symbol = venue.require_symbol(p.text("symbol"))
    return [{"id": t.trade_id, "price": fmt(t.price), "qty": fmt(t.qty),
             "quoteQty": fmt(t.price * t.qty), "time": t.time_ms,
             "isBuyerMaker": t.is_buyer_maker, "isBestMatch": True}
            for t in venue.market.recent_trades(symbol, p.integer("limit", 500, 1, 1000) or 500)]


def agg_trades(venue: Venue, p: Params) -> list:
    symbol = venue.require_symbol(p.text("symbol"))
    return [{"a": t.trade_id, "p": fmt(t.price), "q": fmt(t.qty), "f": t.trade_id,
             "l": t.trade_id, "T": t.time_ms, "m": t.is_buyer_maker, "M": True}
            for t in venue.market.recent_trades(symbol, p.integer("limit", 500, 1, 1000) or 500)]


def _for_symbols(venue: Venue, p: Params, one: Callable[[str], dict]) -> dict | list:
    symbol = p.text("symbol")
    if symbol:
        return one(venue.require_symbol(symbol))
    return [one(venue.require_symbol(name)) for name in p.symbols() or venue.market.symbols]


def ticker_price(venue: Venue, p: Params) -> dict | list:
    market = venue.market
    return _for_symbols(venue, p, lambda s: {"symbol": s, "price": fmt(market.last_price(s))})


def book_ticker(venue: Venue, p: Params) -> dict | list:
    def one(symbol: str) -> dict:
        book = venue.market.book(symbol)
        return {"symbol": symbol, "bidPrice": book.bids[0][0], "bidQty": book.bids[0][1],
                "askPrice": book.asks[0][0], "askQty": book.asks[0][1]}

    return _for_symbols(venue, p, one)


def ticker_24h(venue: Venue, p: Params) -> dict | list:
    return _for_symbols(venue, p, venue.market.ticker_24h)


def avg_price(venue: Venue, p: Params) -> dict:
    symbol = venue.require_symbol(p.text("symbol"))
    return {"mins": 5, "price": fmt(venue.market.avg_price(symbol, 5)),
            "closeTime": venue.clock.time_ms()}


def order_rate_limit(venue: Venue, account: str | None, p: Params) -> list:
    count_10s, count_1d = venue.limiter.order_counts(account or "")
    limits = venue.limiter.limits
    return [{"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10,
             "limit": limits.orders_per_10s, "count": count_10s},
            {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1,
             "limit": limits.orders_per_day, "count": count_1d}]


def listen_key_gone(venue: Venue, account: str | None, p: Params) -> dict:
    raise ApiError(410, -1000, "listenKey user data streams were removed on 2026-02-20; "
                               "use userDataStream.subscribe.signature on the WebSocket API.")


# ---------------------------------------------------------------------------- the table


def _public(fn: Callable[[Venue, Params], Any], weight: Weight) -> Operation:
    return Operation(lambda venue, _account, p: fn(venue, p), weight)


def _signed(name: str, weight: Weight, new_orders: int = 0, free_on_success: bool = False,
            **kwargs: Any) -> Operation:
    """An operation running ``Venue.<name>(account, params, **kwargs)``."""
    return Operation(lambda venue, account, p: getattr(venue, name)(account, p, **kwargs),
                     weight, signed=True, new_orders=new_orders, free_on_success=free_on_success)


def _by_symbols(one: int, many: int) -> Callable[[Params], int]:
    return lambda p: one if "symbol" in p or "symbols" in p else many


def _depth_weight(p: Params) -> int:
    limit = p.integer("limit", 100) or 100
    return 5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250


OPERATIONS: dict[str, Operation] = {
    "ping": _public(lambda venue, p: {}, 1),
    "time": _public(lambda venue, p: {"serverTime": venue.signing_clock.time_ms()}, 1),
    "exchangeInfo": _public(exchange_info, 20),
    "klines": _public(klines, 2),
    "depth": _public(depth, _depth_weight),
    "trades": _public(recent_trades, 25),
    "aggTrades": _public(agg_trades, 2),
    "ticker.price": _public(ticker_price, _by_symbols(2, 4)),
    "ticker.book": _public(book_ticker, _by_symbols(2, 4)),
    "ticker.24hr": _public(ticker_24h, _by_symbols(2, 80)),
    "avgPrice": _public(avg_price, 2),
    "account": _signed("account_info", 20),
    "order.place": _signed("place_order", 1, new_orders=1, free_on_success=True),
    "order.test": Operation(lambda venue, _account, p: venue.test_order(p), 1, signed=True),
    "order.status": _signed("get_order", 4),
    "order.cancel": _signed("cancel_order", 1, free_on_success=True),
    "openOrders.status": _signed("open_orders", _by_symbols(6, 80)),
    "openOrders.cancelAll": _signed("cancel_all", 1),
    "allOrders": _signed("all_orders", 20),
    "myTrades": _signed("my_trades", lambda p: 5 if "orderId" in p else 20),
    "orderList.place.oco": _signed("place_oco", 1, new_orders=2, free_on_success=True),
    "orderList.place.oco.legacy": _signed("place_oco", 1, new_orders=2, free_on_success=True,
                                          legacy=True),
    "orderList.cancel": _signed("cancel_order_list", 1, free_on_success=True),
    "orderList.status": _signed("get_order_list", 4),
    "openOrderLists.status": _signed("open_order_lists", 6),
    "account.rateLimits.orders": Operation(order_rate_limit, 40, signed=True),
    "userDataStream.listenKey": Operation(listen_key_gone, 2),
}

REST_ROUTES: list[tuple[str, str, str]] = [
    ("GET", "ping", "ping"), ("GET", "time", "time"), ("GET", "exchangeInfo", "exchangeInfo"),
    ("GET", "klines", "klines"), ("GET", "uiKlines", "klines"), ("GET", "depth", "depth"),
    ("GET", "trades", "trades"), ("GET", "aggTrades", "aggTrades"),
    ("GET", "ticker/price", "ticker.price"), ("GET", "ticker/bookTicker", "ticker.book"),
    ("GET", "ticker/24hr", "ticker.24hr"), ("GET", "avgPrice", "avgPrice"),
    ("GET", "account", "account"), ("POST", "order", "order.place"),
    ("POST", "order/test", "order.test"), ("GET", "order", "order.status"),
    ("DELETE", "order", "order.cancel"), ("GET", "openOrders", "openOrders.status"),
    ("DELETE", "openOrders", "openOrders.cancelAll"), ("GET", "allOrders", "allOrders"),
    ("GET", "myTrades", "myTrades"), ("POST", "orderList/oco", "orderList.place.oco"),
    ("POST", "order/oco", "orderList.place.oco.legacy"),
    ("DELETE", "orderList", "orderList.cancel"), ("GET", "orderList", "orderList.status"),
    ("GET", "openOrderList", "openOrderLists.status"),
    ("GET", "rateLimit/order", "account.rateLimits.orders"),
    ("POST", "userDataStream", "userDataStream.listenKey"),
    ("PUT", "userDataStream", "userDataStream.listenKey"),
    ("DELETE", "userDataStream", "userDataStream.listenKey"),
]

WS_API_METHODS: dict[str, str] = {
    name: name for name in (
        "ping", "time", "exchangeInfo", "klines", "depth", "avgPrice", "ticker.price",
        "ticker.book", "order.place", "order.test", "order.status", "order.cancel",
        "openOrders.status", "openOrders.cancelAll", "allOrders", "myTrades",
        "orderList.place.oco", "orderList.status", "openOrderLists.status",
        "account.rateLimits.orders")
} | {"uiKlines": "klines", "trades.recent": "trades", "trades.aggregate": "aggTrades",
     "ticker": "ticker.24hr", "account.status": "account", "orderList.cancel": "orderList.cancel"}
