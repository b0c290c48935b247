"""Market streams as Binance names them, each a small poller over the :class:`Market`.

``open_stream("btcusdt@kline_1m", market)`` returns a source whose ``poll()`` gives the payloads
due since its last poll. Every payload is derived from the same path as the REST endpoints:
kline events equal ``GET /klines`` rows, diff-depth ``U``/``u`` are dense and the REST depth
``lastUpdateId`` is the ``u`` of the book it shows.
"""

from __future__ import annotations

import re

from .market import FIRST_TRADE_ID, INTERVAL_MS, Market, candle_open_ms, fmt

MAX_CATCH_UP = 100  # events of one kind sent at most per poll after the clock jumped
_NAME = re.compile(r"^(?P<symbol>[a-z0-9]+)@(?P<kind>[A-Za-z]+)(?P<arg>_\w+|\d+)?"
                   r"(@(?P<speed>\d+)ms)?$")


class UnknownStream(ValueError):
    """The stream name is not one this venue serves."""


class StreamSource:
    """One subscribed stream; ``poll()`` returns the payloads due now, oldest first."""

    def __init__(self, name: str, market: Market, symbol: str) -> None:
        self.name = name
        self.market = market
        self.symbol = symbol

    def poll(self) -> list[dict]:
        raise NotImplementedError


class KlineStream(StreamSource):
    """``<s>@kline_<i>``: the open candle every second, each closed candle once (``x`` true)."""

    def __init__(self, name: str, market: Market, symbol: str, interval: str) -> None:
        super().__init__(name, market, symbol)
        self.interval = interval
        self.interval_ms = INTERVAL_MS[interval]
        self._open_ms: int | None = None
        self._sent_ms = 0

    def poll(self) -> list[dict]:
        now_ms = self.market.clock.time_ms()
        open_ms = candle_open_ms(now_ms, self.interval_ms)
        out = []
        if self._open_ms is not None and open_ms > self._open_ms:
            first = max(self._open_ms, open_ms - MAX_CATCH_UP * self.interval_ms)
            for closed in range(first, open_ms, self.interval_ms):
                out.append(self._event(self.market.kline(self.symbol, self.interval, closed),
                                       True, now_ms))
        if self._open_ms != open_ms or now_ms - self._sent_ms >= 1000:
            out.append(self._event(self.market.kline(self.symbol, self.interval), False, now_ms))
            self._sent_ms = now_ms
        self._open_ms = open_ms
        return out

    def _event(self, row: list, closed: bool, now_ms: int) -> dict:
        count = row[8]
        first_id = FIRST_TRADE_ID + max(self.market.paths[self.symbol].index_at(row[0]), 0)
        return {"e": "kline", "E": now_ms, "s": self.symbol, "k": {
            "t": row[0], "T": row[6], "s": self.symbol, "i": self.interval,
            "f": first_id, "L": first_id + count - 1, "o": row[1], "c": row[4], "h": row[2],
            "l": row[3], "v": row[5], "n": count, "x": closed, "q": row[7], "V": row[9],
            "Q": row[10], "B": "0"}}


class BookTickerStream(StreamSource):
    """``<s>@bookTicker``: best bid/ask whenever the book changes (no ``e``/``E``)."""

    def __init__(self, name: str, market: Market, symbol: str) -> None:
        super().__init__(name, market, symbol)
        self._last_id = -1

    def poll(self) -> list[dict]:
        book = self.market.book(self.symbol)
        if book.update_id == self._last_id:
            return []
        self._last_id = book.update_id
        (bid, bid_qty), (ask, ask_qty) = book.bids[0], book.asks[0]
        return [{"u": book.update_id, "s": self.symbol, "b": bid, "B": bid_qty, "a": ask,
                 "A": ask_qty}]


class _Paced(StreamSource):
    """A stream sent at most every ``speed_ms``."""

    def __init__(self, name: str, market: Market, symbol: str, speed_ms: int) -> None:
        super().__init__(name, market, symbol)
        self.speed_ms = speed_ms
        self._due_ms = 0

    def _due(self) -> bool:
        now_ms = self.market.clock.time_ms()
        if now_ms < self._due_ms:
            return False
        self._due_ms = now_ms + self.speed_ms
        return True


class PartialDepthStream(_Paced):
    """``<s>@depth<N>[@100ms]``: the top N levels every period (no ``e``/``E``)."""

    def __init__(self, name: str, market: Market, symbol: str, levels: int,
                 speed_ms: int) -> None:
        super().__init__(name, market, symbol, speed_ms)
        self.levels = levels

    def poll(self) -> list[dict]:
        return [self.market.depth_snapshot(self.symbol, self.levels)] if self._due() else []


class DiffDepthStream(_Paced):
    """``<s>@depth[@100ms]``: changed levels with dense ``U``/``u`` (``U`` = previous u + 1)."""

    def __init__(self, name: str, market: Market, symbol: str, speed_ms: int) -> None:
        super().__init__(name, market, symbol, speed_ms)
        self._last_index = market.now_index(symbol)

    def poll(self) -> list[dict]:
        now = self.market.now_index(self.symbol)
        if now <= self._last_index or not self._due():
            return []
        bids, asks = self.market.book_diff(self.symbol, self._last_index, now)
        event = {"e": "depthUpdate", "E": self.market.clock.time_ms(), "s": self.symbol,
                 "U": self.market.update_id(self.symbol, self._last_index + 1),
                 "u": self.market.update_id(self.symbol, now), "b": bids, "a": asks}
        self._last_index = now
        return [event]


class TradeStream(StreamSource):
    """``<s>@trade`` and ``<s>@aggTrade``: one event per public trade of the tape."""

    def __init__(self, name: str, market: Market, symbol: str, aggregate: bool) -> None:
        super().__init__(name, market, symbol)
        self.aggregate = aggregate
        self._last_index = market.now_index(symbol)

    def poll(self) -> list[dict]:
        now = self.market.now_index(self.symbol)
        first = max(self._last_index, now - MAX_CATCH_UP)
        trades = self.market.trades(self.symbol, first, now)
        self._last_index = now
        event_ms = self.market.clock.time_ms()
        out = []
        for t in trades:
            body = {"E": event_ms, "s": self.symbol, "p": fmt(t.price), "q": fmt(t.qty),
                    "T": t.time_ms, "m": t.is_buyer_maker, "M": True}
            if self.aggregate:
                out.append({"e": "aggTrade", **body, "a": t.trade_id, "f": t.trade_id,
                            "l": t.trade_id})
            else:
                out.append({"e": "trade", **body, "t": t.trade_id})
        return out


class TickerStream(_Paced):
    """``<s>@ticker`` / ``<s>@miniTicker``: rolling 24 h statistics every second."""

    def __init__(self, name: str, market: Market, symbol: str, mini: bool) -> None:
        super().__init__(name, market, symbol, 1000)
        self.mini = mini

    def poll(self) -> list[dict]:
        if not self._due():
            return []
        t = self.market.ticker_24h(self.symbol)
        base = {"E": self.market.clock.time_ms(), "s": self.symbol, "c": t["lastPrice"],
                "o": t["openPrice"], "h": t["highPrice"], "l": t["lowPrice"], "v": t["volume"],
                "q": t["quoteVolume"]}
        if self.mini:
            return [{"e": "24hrMiniTicker", **base}]
        return [{"e": "24hrTicker", **base, "p": t["priceChange"], "P": t["priceChangePercent"],
                 "w": t["weightedAvgPrice"], "x": t["prevClosePrice"], "Q": t["lastQty"],
                 "b": t["bidPrice"], "B": t["bidQty"], "a": t["askPrice"], "A": t["askQty"],
                 "O": t["openTime"], "C": t["closeTime"], "F": t["firstId"], "L": t["lastId"],
                 "n": t["count"]}]


def open_stream(name: str, market: Market) -> StreamSource:
    """The source for stream ``name`` (``btcusdt@kline_1m``...); UnknownStream if not served."""
    match = _NAME.match(name)
    if not match:
        raise UnknownStream(name)
    symbol = match["symbol"].upper()
    if symbol not in market.paths:
        raise UnknownStream(name)
    kind, arg, speed = match["kind"], match["arg"] or "", match["speed"]
    if kind == "kline" and arg.startswith("_") and arg[1:] in INTERVAL_MS and not speed:
        return KlineStream(name, market, symbol, arg[1:])
    if arg.startswith("_"):
        raise UnknownStream(name)
    if kind == "depth" and speed in (None, "100", "1000"):
        speed_ms = int(speed or 1000)
        if arg in ("5", "10", "20"):
            return PartialDepthStream(name, market, symbol, int(arg), speed_ms)
        if not arg:
            return DiffDepthStream(name, market, symbol, speed_ms)
    if arg or speed:
        raise UnknownStream(name)
    simple = {
        "bookTicker": lambda: BookTickerStream(name, market, symbol),
        "trade": lambda: TradeStream(name, market, symbol, aggregate=False),
        "aggTrade": lambda: TradeStream(name, market, symbol, aggregate=True),
        "ticker": lambda: TickerStream(name, market, symbol, mini=False),
        "miniTicker": lambda: TickerStream(name, market, symbol, mini=True),
    }
    if kind not in simple:
        raise UnknownStream(name)
    return simple[kind]()
