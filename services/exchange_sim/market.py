"""Price paths per symbol and everything derived from them: klines, trades, order books.

A path is a sequence of prices on a fixed step (1 s by default) starting at ``origin_ms``. It is
a seeded random walk, a replay of a real 1m kline CSV or a replay of a recorded bookTicker CSV
(whose best bid/ask then top the book). Klines of any interval, the trade
tape and the order book at a step are pure functions of the path, so REST history and the live
streams always agree. "Now" comes from a :class:`~shared.clock.Clock`.
"""

from __future__ import annotations

import functools
import gzip
import math
import threading
import zlib
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import numpy as np

from shared.clock import Clock

MINUTE_MS = 60_000
DAY_MS = 86_400_000
WEEK_OFFSET_MS = 4 * DAY_MS  # Binance weeks open on Monday; the epoch was a Thursday
INTERVAL_MS: dict[str, int] = {
    "1s": 1_000, "1m": MINUTE_MS, "3m": 3 * MINUTE_MS, "5m": 5 * MINUTE_MS,
    "15m": 15 * MINUTE_MS, "30m": 30 * MINUTE_MS, "1h": 60 * MINUTE_MS, "2h": 120 * MINUTE_MS,
    "4h": 240 * MINUTE_MS, "6h": 360 * MINUTE_MS, "8h": 480 * MINUTE_MS, "12h": 720 * MINUTE_MS,
    "1d": DAY_MS, "3d": 3 * DAY_MS, "1w": 7 * DAY_MS,
}
FIRST_TRADE_ID = 100_000_000
FIRST_UPDATE_ID = 1_000_000_000
QUOTES_PREFIX = "quotes:"
_CHUNK_STEPS = 4096


def fmt(value: float | Decimal, places: int = 8) -> str:
    """Binance's decimal-string form of a number: fixed point with ``places`` decimals."""
    return f"{value:.{places}f}"


def candle_open_ms(ts_ms: int, interval_ms: int) -> int:
    """Open time of the candle of ``interval_ms`` that holds ``ts_ms``."""
    offset = WEEK_OFFSET_MS if interval_ms == INTERVAL_MS["1w"] else 0
    return (ts_ms - offset) // interval_ms * interval_ms + offset


@dataclass(frozen=True)
class SymbolSpec:
    """What the market needs to know about a symbol: assets, grid sizes, a typical price."""

    symbol: str
    base_asset: str
    quote_asset: str
    tick_size: Decimal
    step_size: Decimal
    start_price: float
    level_notional: float = 20_000.0  # typical quote value resting on one book level

    @property
    def tick(self) -> float:
        return float(self.tick_size)

    @property
    def step(self) -> float:
        return float(self.step_size)


class PricePath:
    """Prices and traded volumes on a fixed step from ``origin_ms``; grows lazily, never changes."""

    def __init__(self, spec: SymbolSpec, origin_ms: int, step_ms: int) -> None:
        self.spec = spec
        self.origin_ms = origin_ms
        self.step_ms = step_ms
        self._prices = np.empty(0)
        self._volumes = np.empty(0)
        self._lock = threading.Lock()

    def index_at(self, ts_ms: int) -> int:
        """Index of the step holding ``ts_ms`` (-1 before the origin)."""
        if ts_ms < self.origin_ms:
            return -1
        return (ts_ms - self.origin_ms) // self.step_ms

    def time_of(self, index: int) -> int:
        return self.origin_ms + index * self.step_ms

    def arrays(self, upto_index: int) -> tuple[np.ndarray, np.ndarray]:
        """Prices and volumes for steps ``0..upto_index`` (views; do not modify)."""
        with self._lock:
            if len(self._prices) <= upto_index:
                first = len(self._prices) // _CHUNK_STEPS
                chunks = [self._generate(c) for c in range(first, upto_index // _CHUNK_STEPS + 1)]
                self._prices = np.concatenate([self._prices, *(c[0] for c in chunks)])
                self._volumes = np.concatenate([self._volumes, *(c[1] for c in chunks)])
            return self._prices[: upto_index + 1], self._volumes[: upto_index + 1]

    def price(self, index: int) -> float:
        return float(self.arrays(max(index, 0))[0][max(index, 0)])

    def _generate(self, chunk: int) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _on_grid(self, prices: np.ndarray, volumes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        tick, step = self.spec.tick, self.spec.step
        prices = np.maximum(np.round(prices / tick), 1) * tick
        volumes = np.maximum(np.round(volumes / step), 1) * step
        return prices, volumes


class RandomWalkPath(PricePath):
    """Geometric random walk, deterministic by ``seed`` and symbol whatever the access order."""

    def __init__(self, spec: SymbolSpec, origin_ms: int, step_ms: int = 1000, seed: int = 7,
                 daily_volatility: float = 0.03) -> None:
        super().__init__(spec, origin_ms, step_ms)
        self.seed = seed
        self._sigma = daily_volatility / math.sqrt(DAY_MS / step_ms)
        self._last_log_price = math.log(spec.start_price)
        self._salt = zlib.crc32(spec.symbol.encode())

    def _generate(self, chunk: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, self._salt, chunk])
        log_prices = self._last_log_price + np.cumsum(rng.normal(0.0, self._sigma, _CHUNK_STEPS))
        self._last_log_price = float(log_prices[-1])
        mean_qty = self.spec.level_notional / 40 / self.spec.start_price
        volumes = rng.lognormal(math.log(mean_qty), 1.0, _CHUNK_STEPS)
        return self._on_grid(np.exp(log_prices), volumes)


def read_table(path: str | Path, columns: tuple[str, ...]) -> np.ndarray:
    """The named columns of a numeric CSV (gzip if ``.gz``) with a header line, as float64.

    Parsed in one numpy call: a month of 1m candles loads in a few tens of milliseconds.
    """
    raw = Path(path).read_bytes()
    text = (gzip.decompress(raw) if str(path).endswith(".gz") else raw).decode("ascii")
    header, _, body = text.partition("\n")
    names = [n.strip() for n in header.split(",")]
    missing = [c for c in columns if c not in names]
    if missing:
        raise ValueError(f"{path}: no column {missing}; header is {names}")
    lines = body.split()
    if not lines:
        return np.empty((0, len(columns)))
    cells = np.array(",".join(lines).split(","), dtype=np.float64)
    table = cells.reshape(len(lines), len(names))
    return table[:, [names.index(c) for c in columns]]


@dataclass(frozen=True)
class Candles:
    """Rows of a kline CSV (header ``open_time_ms,open,high,low,close,volume``)."""

    interval_ms: int
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    @classmethod
    def read_csv(cls, path: str | Path, interval_ms: int = MINUTE_MS) -> Candles:
        table = read_table(path, ("open", "high", "low", "close", "volume"))
        if not len(table):
            raise ValueError(f"{path}: no candles")
        return cls(interval_ms, *(table[:, i] for i in range(5)))

    def __len__(self) -> int:
        return len(self.open)


class ReplayPath(PricePath):
    """Replays real candles one after another from ``origin_ms``, looping at the end.

    Inside a candle the price goes open → low → high → close for a rising candle and open →
    high → low → close for a falling one, in straight lines, so re-aggregating the path gives
    back the recorded OHLC exactly. Volume is spread evenly over the candle's steps.
    """

    def __init__(self, spec: SymbolSpec, candles: Candles, origin_ms: int,
                 step_ms: int = 1000) -> None:
        if candles.interval_ms % step_ms or candles.interval_ms // step_ms < 4:
            raise ValueError("a candle must be a whole number of steps, at least 4")
        super().__init__(spec, origin_ms, step_ms)
        self.candles = candles
        self._per_candle = candles.interval_ms // step_ms

    def _generate(self, chunk: int) -> tuple[np.ndarray, np.ndarray]:
        n = self._per_candle
        first = chunk * _CHUNK_STEPS
        index = np.arange(first, first + _CHUNK_STEPS)
        k = (index // n) % len(self.candles)
        j = index % n  # step within the candle; waypoints at steps 0, n/3, 2n/3, n-1
        waypoints = np.array([0, n // 3, 2 * n // 3, n - 1])
        c = self.candles
        rising = c.close[k] >= c.open[k]
        ys = np.stack([c.open[k], np.where(rising, c.low[k], c.high[k]),
                       np.where(rising, c.high[k], c.low[k]), c.close[k]])
        seg = (j >= waypoints[1]).astype(int) + (j >= waypoints[2])
        x0, x1 = waypoints[seg], waypoints[seg + 1]
        cols = np.arange(len(j))
        y0, y1 = ys[seg, cols], ys[seg + 1, cols]
        prices = y0 + (y1 - y0) * (j - x0) / (x1 - x0)
        return self._on_grid(prices, c.volume[k] / n)


@dataclass(frozen=True)
class Quotes:
    """Rows of a bookTicker CSV (header ``ts_ms,bid,bid_qty,ask,ask_qty,...``), time-ordered."""

    ts_ms: np.ndarray
    bid: np.ndarray
    bid_qty: np.ndarray
    ask: np.ndarray
    ask_qty: np.ndarray

    @classmethod
    def read_csv(cls, path: str | Path) -> Quotes:
        table = read_table(path, ("ts_ms", "bid", "bid_qty", "ask", "ask_qty"))
        if len(table) < 2:
            raise ValueError(f"{path}: at least two quotes are needed")
        table = table[np.argsort(table[:, 0], kind="stable")]
        return cls(table[:, 0].astype(np.int64), *(table[:, i] for i in range(1, 5)))

    @property
    def duration_ms(self) -> int:
        return int(self.ts_ms[-1] - self.ts_ms[0]) + 1

    def __len__(self) -> int:
        return len(self.ts_ms)


class QuoteReplayPath(PricePath):
    """Replays recorded best bid/ask from ``origin_ms``, looping at the end of the recording.

    Step ``i`` shows the last quote at or before ``first_ts + i * step_ms`` of the recording.
    Its public trade prints at the ask when the mid went up and at the bid otherwise, with a
    seeded size; the book's top levels are the recorded ones (see :meth:`top`).
    """

    def __init__(self, spec: SymbolSpec, quotes: Quotes, origin_ms: int, step_ms: int = 1000,
                 seed: int = 7) -> None:
        super().__init__(spec, origin_ms, step_ms)
        self.quotes = quotes
        self.seed = seed
        self._salt = zlib.crc32(spec.symbol.encode()) ^ 0x5157

    def quote_index(self, index: np.ndarray) -> np.ndarray:
        """Row of the recording shown at each step of ``index``."""
        q = self.quotes
        rec_ms = q.ts_ms[0] + (np.maximum(index, 0) * self.step_ms) % q.duration_ms
        return np.maximum(np.searchsorted(q.ts_ms, rec_ms, side="right") - 1, 0)

    def top(self, index: int) -> tuple[float, float, float, float]:
        """(bid, bid_qty, ask, ask_qty) recorded for step ``index``."""
        row = int(self.quote_index(np.array([index]))[0])
        q = self.quotes
        return float(q.bid[row]), float(q.bid_qty[row]), float(q.ask[row]), float(q.ask_qty[row])

    def _generate(self, chunk: int) -> tuple[np.ndarray, np.ndarray]:
        first = chunk * _CHUNK_STEPS
        rows = self.quote_index(np.arange(first - 1, first + _CHUNK_STEPS))
        q = self.quotes
        mid = (q.bid[rows] + q.ask[rows]) / 2
        rising = mid[1:] > mid[:-1]
        prices = np.where(rising, q.ask[rows[1:]], q.bid[rows[1:]])
        rng = np.random.default_rng([self.seed, self._salt, chunk])
        mean_qty = self.spec.level_notional / 40 / float(q.bid[0])
        volumes = rng.lognormal(math.log(mean_qty), 1.0, _CHUNK_STEPS)
        return self._on_grid(prices, volumes)


class ScaledClock(Clock):
    """Market time that runs ``speed`` times faster than ``base`` from the moment it is made."""

    def __init__(self, base: Clock, speed: float) -> None:
        if speed <= 0:
            raise ValueError("speed must be > 0")
        self.base = base
        self.speed = speed
        self._anchor = base.time()
        self._anchor_mono = base.monotonic()

    def time(self) -> float:
        return self._anchor + (self.base.time() - self._anchor) * self.speed

    def monotonic(self) -> float:
        return self._anchor_mono + (self.base.monotonic() - self._anchor_mono) * self.speed


@dataclass(frozen=True)
class Trade:
    """One public trade of the tape."""

    trade_id: int
    price: float
    qty: float
    time_ms: int
    is_buyer_maker: bool


@dataclass(frozen=True)
class Book:
    """Top of the order book at one update id; bids high→low, asks low→high."""

    symbol: str
    update_id: int
    bids: list[tuple[str, str]]
    asks: list[tuple[str, str]]


def _mix(values: np.ndarray, salt: int) -> np.ndarray:
    """splitmix64 of ``values`` xor ``salt``: a cheap deterministic hash, vectorised."""
    with np.errstate(over="ignore"):
        z = values.astype(np.uint64) ^ np.uint64(salt & 0xFFFFFFFFFFFFFFFF)
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _uniform(values: np.ndarray, salt: int) -> np.ndarray:
    return (_mix(values, salt) >> np.uint64(11)).astype(np.float64) / float(1 << 53) + 1e-12


class Market:
    """All symbols' paths, read at the clock's now: prices, klines, trades, books."""

    def __init__(self, clock: Clock, paths: dict[str, PricePath], book_levels: int = 100,
                 seed: int = 7) -> None:
        self.clock = clock
        self.paths = paths
        self.book_levels = book_levels
        self._seed = seed
        self._book_cache: dict[tuple[str, int], Book] = {}

    @property
    def symbols(self) -> list[str]:
        return list(self.paths)

    def spec(self, symbol: str) -> SymbolSpec:
        return self.paths[symbol].spec

    def now_index(self, symbol: str) -> int:
        return max(self.paths[symbol].index_at(self.clock.time_ms()), 0)

    def last_price(self, symbol: str) -> float:
        return self.paths[symbol].price(self.now_index(symbol))

    # ---- klines -------------------------------------------------------------------------------

    def klines(self, symbol: str, interval: str, start_ms: int | None = None,
               end_ms: int | None = None, limit: int = 500) -> list[list]:
        """Binance kline rows; the same selection rules as ``GET /api/v3/klines``."""
        path = self.paths[symbol]
        interval_ms = INTERVAL_MS[interval]
        now_ms = self.clock.time_ms()
        first_open = candle_open_ms(path.origin_ms, interval_ms)
        last_open = candle_open_ms(now_ms, interval_ms)
        if end_ms is not None:
            last_open = min(last_open, candle_open_ms(end_ms, interval_ms))
        if start_ms is not None:
            lo = max(first_open, candle_open_ms(start_ms, interval_ms))
            if lo < start_ms:
                lo += interval_ms
            opens = range(lo, last_open + 1, interval_ms)[:limit]
        else:
            hi_count = (last_open - first_open) // interval_ms + 1
            lo = last_open - (min(limit, max(hi_count, 0)) - 1) * interval_ms
            opens = range(lo, last_open + 1, interval_ms)
        return [self._kline_row(path, open_ms, interval_ms, now_ms) for open_ms in opens
                if open_ms >= first_open]

    def kline(self, symbol: str, interval: str, open_ms: int | None = None) -> list:
        """The candle holding ``open_ms`` (default: the one open now), as a REST row."""
        interval_ms = INTERVAL_MS[interval]
        now_ms = self.clock.time_ms()
        open_ms = candle_open_ms(now_ms if open_ms is None else open_ms, interval_ms)
        return self._kline_row(self.paths[symbol], open_ms, interval_ms, now_ms)

    def _kline_row(self, path: PricePath, open_ms: int, interval_ms: int, now_ms: int) -> list:
        close_ms = open_ms + interval_ms - 1
        i0 = max(path.index_at(open_ms), 0)
        i1 = path.index_at(min(close_ms, now_ms))
        prices, volumes = path.arrays(max(i1, 0))
        p, v = prices[i0: i1 + 1], volumes[i0: i1 + 1]
        if len(p) == 0:
            price = fmt(path.price(i0))
            return [open_ms, price, price, price, price, fmt(0), close_ms, fmt(0), 0,
                    fmt(0), fmt(0), "0"]
        quote = float(np.dot(p, v))
        up = np.concatenate([[True], p[1:] >= p[:-1]])
        return [open_ms, fmt(p[0]), fmt(p.max()), fmt(p.min()), fmt(p[-1]), fmt(v.sum()),
                close_ms, fmt(quote), int(len(p)), fmt(v[up].sum()),
                fmt(float(np.dot(p[up], v[up]))), "0"]

    def avg_price(self, symbol: str, mins: int = 5) -> float:
        """Volume-weighted price over the last ``mins`` minutes."""
        path = self.paths[symbol]
        now = self.now_index(symbol)
        first = max(path.index_at(self.clock.time_ms() - mins * MINUTE_MS), 0)
        prices, volumes = path.arrays(now)
        p, v = prices[first: now + 1], volumes[first: now + 1]
        return float(np.dot(p, v) / v.sum()) if v.sum() > 0 else float(p[-1])

    def ticker_24h(self, symbol: str) -> dict:
        """The rolling 24 h statistics of ``GET /api/v3/ticker/24hr``."""
        path = self.paths[symbol]
        now_ms = self.clock.time_ms()
        now = self.now_index(symbol)
        first = max(path.index_at(now_ms - DAY_MS), 0)
        prices, volumes = path.arrays(now)
        p, v = prices[first: now + 1], volumes[first: now + 1]
        book = self.book(symbol)
        open_price, last = float(p[0]), float(p[-1])
        return {
            "symbol": symbol, "priceChange": fmt(last - open_price),
            "priceChangePercent": fmt(100 * (last - open_price) / open_price, 3),
            "weightedAvgPrice": fmt(float(np.dot(p, v) / v.sum())),
            "prevClosePrice": fmt(float(prices[max(first - 1, 0)])), "lastPrice": fmt(last),
            "lastQty": fmt(v[-1]), "bidPrice": book.bids[0][0], "bidQty": book.bids[0][1],
            "askPrice": book.asks[0][0], "askQty": book.asks[0][1], "openPrice": fmt(open_price),
            "highPrice": fmt(p.max()), "lowPrice": fmt(p.min()), "volume": fmt(v.sum()),
            "quoteVolume": fmt(float(np.dot(p, v))), "openTime": path.time_of(first),
            "closeTime": now_ms, "firstId": FIRST_TRADE_ID + first,
            "lastId": FIRST_TRADE_ID + now, "count": now - first + 1,
        }

    # ---- trades -------------------------------------------------------------------------------

    def trades(self, symbol: str, after_index: int, upto_index: int) -> list[Trade]:
        """Public trades of steps ``after_index+1 .. upto_index`` (one trade per step)."""
        path = self.paths[symbol]
        first = max(after_index + 1, 0)
        if upto_index < first:
            return []
        prices, volumes = path.arrays(upto_index)
        out = []
        for i in range(first, upto_index + 1):
            uptick = i == 0 or prices[i] >= prices[i - 1]
            out.append(Trade(FIRST_TRADE_ID + i, float(prices[i]), float(volumes[i]),
                             path.time_of(i), not uptick))
        return out

    def recent_trades(self, symbol: str, limit: int = 500) -> list[Trade]:
        now = self.now_index(symbol)
        return self.trades(symbol, now - limit, now)

    # ---- order book ---------------------------------------------------------------------------

    def update_id(self, symbol: str, index: int | None = None) -> int:
        """Book update id of step ``index`` (default now); one id per step, dense."""
        return FIRST_UPDATE_ID + (self.now_index(symbol) if index is None else index)

    def book(self, symbol: str, index: int | None = None) -> Book:
        """The order book after step ``index`` (default now), ``book_levels`` deep per side.

        The best bid is the last trade price on a down-tick and one tick under it on an up-tick;
        the ask is one tick above the bid. Deeper levels and sizes hang off absolute price
        ticks, so consecutive books differ only near the top and the diff stream stays small.
        """
        index = self.now_index(symbol) if index is None else index
        key = (symbol, index)
        cached = self._book_cache.get(key)
        if cached is not None:
            return cached
        book = self._build_book(symbol, index)
        if len(self._book_cache) > 64:
            self._book_cache.clear()
        self._book_cache[key] = book
        return book

    def _build_book(self, symbol: str, index: int) -> Book:
        path = self.paths[symbol]
        spec = path.spec
        prices, _ = path.arrays(max(index, 0))
        top = path.top(index) if isinstance(path, QuoteReplayPath) else None
        if top is None:
            price_ticks = int(round(prices[index] / spec.tick))
            uptick = index == 0 or prices[index] >= prices[index - 1]
            best_bid = price_ticks - 1 if uptick else price_ticks
            best_ask = best_bid + 1
        else:
            best_bid, best_ask = int(round(top[0] / spec.tick)), int(round(top[2] / spec.tick))
        salt = zlib.crc32(spec.symbol.encode()) ^ (self._seed << 32)
        bids = self._side(spec, np.arange(best_bid, best_bid - 4 * self.book_levels, -1),
                          salt, index)
        asks = self._side(spec, np.arange(best_ask, best_ask + 4 * self.book_levels),
                          salt, index)
        if top is not None:  # the recorded sizes at the top, synthetic depth behind
            bids[0] = (bids[0][0], fmt(top[1]))
            asks[0] = (asks[0][0], fmt(top[3]))
        return Book(symbol, FIRST_UPDATE_ID + index, bids, asks)

    def _side(self, spec: SymbolSpec, ticks: np.ndarray, salt: int,
              index: int) -> list[tuple[str, str]]:
        ticks = ticks[ticks > 0]
        present = _uniform(ticks, salt) < 0.6
        present[:3] = True
        ticks = ticks[present][: self.book_levels]
        depth = np.arange(len(ticks))
        base = -np.log(_uniform(ticks, salt + 1))  # exponential sizes per price level
        wobble = 0.5 + _uniform(ticks * 7919 + index // 5, salt + 2)  # slow change over time
        price = ticks * spec.tick
        qty = spec.level_notional / price * base * wobble * (1 + depth / 25) / 4
        qty = np.maximum(np.round(qty / spec.step), 1) * spec.step
        return [(fmt(p), fmt(q)) for p, q in zip(price, qty, strict=True)]

    def depth_snapshot(self, symbol: str, limit: int = 100) -> dict:
        book = self.book(symbol)
        return {"lastUpdateId": book.update_id, "bids": [list(b) for b in book.bids[:limit]],
                "asks": [list(a) for a in book.asks[:limit]]}

    def book_diff(self, symbol: str, old_index: int, new_index: int) -> tuple[list, list]:
        """Levels that changed from the book of ``old_index`` to that of ``new_index``.

        A level that disappeared is sent with quantity "0", as Binance does.
        """
        old, new = self.book(symbol, old_index), self.book(symbol, new_index)
        return _diff_side(old.bids, new.bids), _diff_side(old.asks, new.asks)


def _diff_side(old: list[tuple[str, str]], new: list[tuple[str, str]]) -> list[list[str]]:
    old_map, new_map = dict(old), dict(new)
    changed = [[p, q] for p, q in new if old_map.get(p) != q]
    removed = [[p, fmt(0)] for p in old_map if p not in new_map]
    return changed + removed


@functools.lru_cache(maxsize=8)
def load_quotes(path: str) -> Quotes:
    """A bookTicker CSV read once per process (the arrays are shared: never modify them)."""
    quotes = Quotes.read_csv(path)
    for column in (quotes.ts_ms, quotes.bid, quotes.bid_qty, quotes.ask, quotes.ask_qty):
        column.setflags(write=False)
    return quotes


@functools.lru_cache(maxsize=8)
def load_candles(path: str) -> Candles:
    """A kline CSV read once per process (the arrays are shared: never modify them)."""
    candles = Candles.read_csv(path)
    for column in (candles.open, candles.high, candles.low, candles.close, candles.volume):
        column.setflags(write=False)
    return candles


DEFAULT_SPECS: dict[str, SymbolSpec] = {
    "BTCUSDT": SymbolSpec("BTCUSDT", "BTC", "USDT", Decimal("0.01"), Decimal("0.00001"), 60_000.0),
    "ETHUSDT": SymbolSpec("ETHUSDT", "ETH", "USDT", Decimal("0.01"), Decimal("0.0001"), 3_000.0),
    "BNBUSDT": SymbolSpec("BNBUSDT", "BNB", "USDT", Decimal("0.1"), Decimal("0.001"), 600.0),
}


def build_market(clock: Clock, sources: dict[str, str] | None = None, seed: int = 7,
                 history_s: int = 2 * 86_400, step_ms: int = 1000,
                 specs: dict[str, SymbolSpec] | None = None, book_levels: int = 100) -> Market:
    """A market whose paths start ``history_s`` before now (aligned to the minute).

    ``sources`` maps a symbol to ``"random"``, to the path of a 1m kline CSV to replay, or to
    ``"quotes:<path>"`` for a bookTicker CSV; symbols not named get a random walk.
    """
    specs = dict(DEFAULT_SPECS if specs is None else specs)
    sources = sources or {}
    unknown = sorted(set(sources) - set(specs))
    if unknown:
        raise ValueError(f"no symbol spec for {unknown}; known: {sorted(specs)}")
    origin_ms = candle_open_ms(clock.time_ms() - history_s * 1000, MINUTE_MS)
    paths: dict[str, PricePath] = {}
    for symbol, spec in specs.items():
        source = sources.get(symbol, "random")
        if source == "random":
            paths[symbol] = RandomWalkPath(spec, origin_ms, step_ms, seed)
        elif source.startswith(QUOTES_PREFIX):
            quotes = load_quotes(source[len(QUOTES_PREFIX):])
            paths[symbol] = QuoteReplayPath(spec, quotes, origin_ms, step_ms, seed)
        else:
            paths[symbol] = ReplayPath(spec, load_candles(source), origin_ms, step_ms)
    return Market(clock, paths, book_levels=book_levels, seed=seed)
