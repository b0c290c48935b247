"""The single market-stream connection: python-binance's combined socket, kept alive by us.

``StreamSupervisor`` runs an asyncio loop in a thread of its own. It opens one
``BinanceSocketManager.multiplex_socket`` for every stream the bots want and reopens it when
that set changes (python-binance never sends live SUBSCRIBE frames). python-binance's own
reconnect loop is switched off for the socket (``MAX_RECONNECTS = 0``): on a drop, an error
event or silence longer than ``silence_s`` the supervisor closes the socket and reconnects
after an exponential backoff with jitter, reset once a connection delivers data. Events are
normalised and published on ``md.*``: book tickers at once; klines through a
:class:`KlineTracker` (gap fill by REST) and diff depth through a :class:`LocalBook` (snapshot
resync), each on a :class:`Lane` of its own so their REST calls never delay other streams.
Everything here runs on the loop thread; the service thread only reads counters and submits.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import random
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from binance.exceptions import ReadLoopClosed
from binance.ws.streams import BinanceSocketManager

from shared.clock import Clock
from shared.messages import BookTicker, Candle, DepthBook, Message
from shared.strategies.base import KLINE_INTERVALS_MS

from .candles import KlineTracker, candle_from_event
from .depth import LocalBook
from .history import CandleCache, History
from .rest import RestGateway, WeightBudget
from .settings import MarketdataSettings
from .subscriptions import StreamKey

log = logging.getLogger(__name__)

TICK_S = 0.25  # how often the consumer looks at the silence timer and the wanted set
SOCKET_READ_TIMEOUT_S = 0.5  # python-binance's per-read timeout: bounds how long a close takes
CONNECT_TIMEOUT_S = 10.0
CLOSE_TIMEOUT_S = 3.0

Publish = Callable[[str, Message], None]


class StreamFault(Exception):
    """The connection failed or went quiet; reconnect after a backoff."""


def backoff_delay(attempt: int, settings: MarketdataSettings, rng: random.Random) -> float:
    """Exponential backoff with "equal jitter": half fixed, half random."""
    ceiling = min(settings.backoff_max_s, settings.backoff_min_s * 2 ** attempt)
    return ceiling / 2 + rng.uniform(0, ceiling / 2)


RESET = object()  # put on a depth lane: the next event resynchronises the book


class Lane:
    """The events of one kline or depth stream, handled in order on a task of their own, so a
    REST call for one stream (gap fill, snapshot) holds up neither the others nor the books;
    events that come meanwhile wait here (Binance's "buffer the events" step)."""

    def __init__(self, name: str, handler: Callable[[Any], Awaitable[None]]) -> None:
        self.name = name
        self._handler = handler
        self._queue: asyncio.Queue = asyncio.Queue()
        self._task = asyncio.create_task(self._run(), name=f"lane {name}")

    def put(self, item: Any) -> None:
        self._queue.put_nowait(item)

    def close(self) -> None:
        self._task.cancel()

    async def _run(self) -> None:
        while True:
            item = await self._queue.get()
            try:
                await self._handler(item)
            except Exception:  # one bad event must not stop the stream
                log.exception("%s: handling an event failed", self.name)


def _book_handler(book: LocalBook) -> Callable[[Any], Awaitable[None]]:
    async def handle(item: Any) -> None:
        if item is RESET:
            book.reset()
        else:
            await book.on_event(item)

    return handle


class StreamSupervisor:
    """Owns the event loop thread, the socket, the REST gateway, the trackers and books."""

    def __init__(self, settings: MarketdataSettings, rest_url: str, stream_url: str,
                 publish: Publish, clock: Clock, rng: random.Random | None = None) -> None:
        self.settings = settings
        self.rest_url = rest_url
        self.stream_url = stream_url
        self._publish = publish
        self.clock = clock
        self._rng = rng or random.Random()
        self.cache = CandleCache(settings.cache_candles)
        self.trackers: dict[tuple[str, str], KlineTracker] = {}
        self.books: dict[str, LocalBook] = {}
        self.lanes: dict[StreamKey, Lane] = {}
        self.rest: RestGateway | None = None
        self.history: History | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._wanted: frozenset[StreamKey] = frozenset()
        self._generation = 0  # bumped whenever what should be streamed may have changed
        self._changed: asyncio.Event | None = None
        self._stopping: asyncio.Event | None = None
        self._attempt = 0
        # health, read by the service thread
        self.connected = False
        self.streams: tuple[str, ...] = ()
        self.reconnects = 0
        self.last_message_at: float | None = None
        self.messages = 0
        self.symbols: frozenset[str] | None = None  # the venue's symbols, once known
        self.on_health: Callable[[], None] = lambda: None

    # ---- called from the service thread -------------------------------------------------------

    def start(self, timeout_s: float = 5.0) -> None:
        # python-binance logs each socket fault at ERROR although we reconnect; our own
        # warning says what happened and what we do about it.
        logging.getLogger("binance.ws.reconnecting_websocket").setLevel(logging.CRITICAL)
        self._thread = threading.Thread(target=self._run, name="marketdata-streams", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise RuntimeError("market stream loop did not start")

    def stop(self, timeout_s: float = 1.5) -> None:
        if self.loop is not None and self._stopping is not None and self.loop.is_running():
            self.loop.call_soon_threadsafe(self._stopping.set)
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.warning("market stream loop did not stop within %.1f s", timeout_s)

    def set_wanted(self, keys: frozenset[StreamKey]) -> None:
        """Stream exactly ``keys`` from now on (reconnecting if the set changed)."""
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self._apply_wanted, frozenset(keys))

    def submit(self, coro: Coroutine[Any, Any, Any]) -> concurrent.futures.Future:
        """Run ``coro`` on the stream loop; the future completes on that thread."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def message_age_s(self) -> float:
        if self.last_message_at is None:
            return -1.0
        return round(self.clock.monotonic() - self.last_message_at, 3)

    def live_newest(self, symbol: str, interval: str) -> int | None:
        """Open time of the newest closed candle the live stream has published, if live."""
        tracker = self.trackers.get((symbol, interval))
        return tracker.last_closed_ms if tracker is not None and self.connected else None

    def backfilled(self) -> int:
        return sum(t.backfilled for t in tuple(self.trackers.values()))  # tuple(): atomic copy

    def depth_snapshots(self) -> int:
        return sum(b.snapshots for b in tuple(self.books.values()))

    # ---- the loop thread ----------------------------------------------------------------------

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self.loop = loop
        try:
            loop.run_until_complete(self._main())
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _main(self) -> None:
        self._changed = asyncio.Event()
        self._stopping = asyncio.Event()
        budget = WeightBudget(self.settings.weight_budget_1m, self.clock)
        self.rest = RestGateway.create(self.rest_url, budget, self.settings.rest_timeout_s)
        self.history = History(self.rest, self.cache, self.live_newest)
        self._ready.set()
        self._task = asyncio.create_task(self._supervise())
        self._symbols_task = asyncio.create_task(self._load_symbols())
        await self._stopping.wait()
        others = asyncio.all_tasks() - {asyncio.current_task()}  # the socket, history requests
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        await self.rest.close()

    async def _load_symbols(self) -> None:
        """Learn the venue's symbols, retrying with backoff while it is away."""
        assert self.rest is not None
        attempt = 0
        while self.symbols is None:
            try:
                self.symbols = await self.rest.symbols()
                log.info("venue lists %d symbols", len(self.symbols))
                if self._changed is not None and self._listed(self._wanted) != self._wanted:
                    self._generation += 1  # drop the unlisted ones that may be failing the rest
                    self._changed.set()
            except Exception as exc:
                delay = backoff_delay(attempt, self.settings, self._rng)
                attempt += 1
                log.info("symbol list not available (%s); retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)

    def _apply_wanted(self, keys: frozenset[StreamKey]) -> None:
        if keys != self._wanted:
            self._wanted = keys
            self._generation += 1
            assert self._changed is not None
            self._changed.set()

    async def _supervise(self) -> None:
        assert self._changed is not None
        while True:
            wanted, generation = self._listed(self._wanted), self._generation
            if not wanted:
                if self.streams:
                    self.streams = ()
                    self.on_health()
                self._changed.clear()
                await self._changed.wait()
                await asyncio.sleep(self.settings.resubscribe_delay_s)  # coalesce a burst
                continue
            self._changed.clear()
            try:
                await self._connection(wanted, generation)
            except Exception as exc:  # a fault, or a bug on one message: never stop streaming
                if not isinstance(exc, StreamFault):
                    log.exception("market stream handling failed")
                self.reconnects += 1
                delay = backoff_delay(self._attempt, self.settings, self._rng)
                self._attempt += 1
                log.warning("market streams: %s; reconnecting in %.2f s", exc, delay)
                await asyncio.sleep(delay)
            else:
                await asyncio.sleep(self.settings.resubscribe_delay_s)

    def _listed(self, keys: frozenset[StreamKey]) -> frozenset[StreamKey]:
        """``keys`` without unlisted symbols: one bad name would make the venue refuse all."""
        if self.symbols is None:
            return keys
        return frozenset(k for k in keys if k.symbol in self.symbols)

    async def _connection(self, wanted: frozenset[StreamKey], generation: int) -> None:
        """One socket for ``wanted``; returns when the wanted set changes, raises on a fault."""
        assert self.rest is not None
        self._prepare(wanted)
        speed = self.settings.depth_speed_ms
        routes = {key.stream_name(speed): key for key in sorted(wanted)}
        manager = BinanceSocketManager(self.rest.client, max_queue_size=self.settings.queue_size)
        manager.STREAM_URL = manager.STREAM_TESTNET_URL = self.stream_url
        socket = manager.multiplex_socket(list(routes))
        socket.MAX_RECONNECTS = 0  # reconnecting is ours: backoff, jitter, backfill
        socket.TIMEOUT = SOCKET_READ_TIMEOUT_S
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                await socket.__aenter__()
        except Exception as exc:
            await self._close(socket)
            raise StreamFault(f"cannot connect to {self.stream_url}: "
                              f"{type(exc).__name__}: {exc}") from None
        log.info("market streams connected: %s", ", ".join(routes))
        self.connected, self.streams = True, tuple(routes)
        self.on_health()
        try:
            await self._consume(socket, generation, routes)
        finally:
            self.connected = False
            await self._close(socket)
            self.on_health()

    async def _close(self, socket) -> None:
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await socket.__aexit__(None, None, None)
        except Exception:
            log.debug("closing the stream socket failed", exc_info=True)

    def _prepare(self, wanted: frozenset[StreamKey]) -> None:
        """Keep the trackers, books and lanes of wanted streams, drop the rest, reset books."""
        stateful = {k for k in wanted if k.kind in ("kline", "depth")}
        for key in set(self.lanes) - stateful:
            self.lanes.pop(key).close()
            self.trackers.pop((key.symbol, key.interval), None)
            if key.kind == "depth":
                self.books.pop(key.symbol, None)
        for key in stateful - set(self.lanes):
            if key.kind == "kline":
                tracker = self.trackers[(key.symbol, key.interval)] = self._tracker(
                    key.symbol, key.interval)
                self.lanes[key] = Lane(key.topic, tracker.on_candle)
            else:
                book = self.books[key.symbol] = self._book(key.symbol)
                self.lanes[key] = Lane(key.topic, _book_handler(book))
        for key, lane in self.lanes.items():
            if key.kind == "depth":
                lane.put(RESET)  # a new connection's diff stream does not continue the old one

    def _tracker(self, symbol: str, interval: str) -> KlineTracker:
        assert self.rest is not None
        rest, topic = self.rest, StreamKey("kline", symbol, interval).topic

        async def fetch(start_ms: int, end_ms: int, limit: int) -> list[list]:
            return await rest.klines(symbol, interval, start_ms=start_ms, end_ms=end_ms,
                                     limit=limit)

        def emit(candle: Candle) -> None:
            self.cache.put(candle)
            self._publish(topic, candle)

        return KlineTracker(symbol, interval, KLINE_INTERVALS_MS[interval], fetch, emit,
                            self.settings.max_backfill)

    def _book(self, symbol: str) -> LocalBook:
        assert self.rest is not None
        rest, topic, limit = self.rest, StreamKey("depth", symbol).topic, \
            self.settings.depth_snapshot_limit

        async def snapshot() -> dict:
            return await rest.depth(symbol, limit)

        def emit(book: DepthBook) -> None:
            self._publish(topic, book)

        return LocalBook(symbol, snapshot, emit, self.clock, self.settings.depth_levels)

    async def _consume(self, socket, generation: int, routes: dict[str, StreamKey]) -> None:
        silence_s = self.settings.silence_s
        last = self.clock.monotonic()
        # recv() arms a timer per message; when frames are already queued, take them directly.
        queue = getattr(socket, "_queue", None)
        queue = queue if isinstance(queue, asyncio.Queue) else None
        while self._generation == generation:
            try:
                if queue is not None and not queue.empty():
                    msg = queue.get_nowait()
                else:
                    async with asyncio.timeout(TICK_S):
                        msg = await socket.recv()
            except TimeoutError:
                quiet = self.clock.monotonic() - last
                if quiet > silence_s:
                    raise StreamFault(f"no message for {quiet:.1f} s") from None
                continue
            except ReadLoopClosed:
                raise StreamFault("the socket's read loop ended") from None
            last = self.last_message_at = self.clock.monotonic()
            self.messages += 1
            self._attempt = 0  # data flows: the next fault starts the backoff afresh
            self._dispatch(msg, routes)

    def _dispatch(self, msg: dict, routes: dict[str, StreamKey]) -> None:
        if msg.get("e") == "error":
            raise StreamFault(f"{msg.get('type')}: {msg.get('m')}")
        key = routes.get(msg.get("stream", ""))
        data = msg.get("data")
        if key is None or not isinstance(data, dict):
            if isinstance(data, dict) and data.get("e") == "serverShutdown":
                raise StreamFault("the server announced a shutdown")
            return
        if key.kind == "book":
            self._publish(key.topic, BookTicker(
                symbol=key.symbol, bid=float(data["b"]), bid_qty=float(data["B"]),
                ask=float(data["a"]), ask_qty=float(data["A"]), ts_ms=self.clock.time_ms(),
                update_id=int(data.get("u", 0))))
        elif key.kind == "kline":
            self.lanes[key].put(candle_from_event(data["k"]))
        else:
            self.lanes[key].put(data)
